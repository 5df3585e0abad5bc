"""The demo model: a tiny Llama and a small data set built from code, so ``zotui --demo`` (and the
app's tests and benchmark) train with the real engine without downloading anything.

    home = build()              # once: <cache>/demo/v1/tiny-llama/ (weights + tokenizer), data.csv
    cfg = demo_config(home)     # a RunConfig that trains that model on that data, on the CPU

Nothing here trains or writes a run: a demo run is ``zoengine.engine.Run`` on this model, with a
real run directory. Where that directory goes is the caller's choice (``zotui --demo`` gives it a
temporary runs home, never the user's).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from zoengine.config import RunConfig

VERSION = 1  # bump when the model or the data change: a new folder is built beside the old one

POSITIVE = "great fun wonderful good best love happy fine".split()
NEGATIVE = "terrible awful boring bad worst hate sad".split()
FILLERS = "the a this it was movie film story plot acting music scene".split()
WORDS = sorted({*POSITIVE, *NEGATIVE, *FILLERS, "an", "is", "i", "not", "very", "and", "but"})
SPECIALS = ["[PAD]", "[UNK]", "<s>", "</s>"]
ROWS = 240
MODEL_DIR = "tiny-llama"  # the model folder in the demo home (its name shows in the app's header)

# what demo_config sets on top of any config: the model and the task are the demo's
MODEL_AND_TASK: dict[str, object] = {
    "model.device": "cpu",
    "model.max_length": 32,
    "task.name": "file",
    "task.template": "{text} it was {label}",
    "task.text_columns": ["text"],
    "task.label_column": "label",
    "task.label_words": ["terrible", "great"],
    "task.label_map": {"negative": "terrible", "positive": "great"},
    "task.n_train": 64,
    "task.n_dev": 16,
    "task.n_test": 16,
}
# and on a fresh config: a run that learns visibly in a few seconds
FRESH_RUN: dict[str, object] = {
    "optimizer.lr": 1e-3,
    "run.steps": 300,
    "run.batch_size": 8,
    "run.eval_every": 25,
    "run.checkpoint_every": 50,
}


def demo_home() -> Path:
    """Where ``build()`` puts the demo by default: ``demo/v<VERSION>`` in zoengine's cache."""
    from zoengine.paths import cache_dir

    return cache_dir() / "demo" / f"v{VERSION}"


def build(home: Path | None = None) -> Path:
    """Build the demo model and data into ``home`` unless they are there; returns ``home``.

    Written into a temporary sibling folder and renamed into place, so a folder that exists is
    complete (and two processes building at once both end with the same one)."""
    home = Path(home) if home is not None else demo_home()
    if is_built(home):
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=home.parent))
    try:
        _write_model(tmp / MODEL_DIR)
        _write_data(tmp / "data.csv")
        try:
            tmp.rename(home)
        except OSError:
            if not is_built(home):  # not another process's build winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return home


def is_built(home: Path) -> bool:
    return (home / MODEL_DIR / "config.json").is_file() and (home / "data.csv").is_file()


def demo_config(home: Path, base: RunConfig | None = None) -> RunConfig:
    """``base`` (or a fresh config with a short run) training the demo model on the demo data.

    The model and task sections become the demo's; a given ``base`` keeps its adapter, optimizer
    and run settings."""
    cfg = base.copy() if base is not None else RunConfig()
    fresh = RunConfig()
    cfg.model, cfg.task = fresh.model, fresh.task  # nothing of another model or data set is left
    values = {**MODEL_AND_TASK, "model.name": str(home / MODEL_DIR), "task.path": str(home / "data.csv")}
    if base is None:
        values.update(FRESH_RUN)
    for key, value in values.items():
        cfg.set(key, value)
    return cfg


def _write_model(path: Path) -> None:
    """A random 2-layer Llama (seed 0) and a word-level tokenizer, saved as a local model folder."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS + list(".,!?'\""))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>", eos_token="</s>"
    )
    with torch.random.fork_rng():  # the caller's random state is left as it was
        torch.manual_seed(0)
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=128,
                pad_token_id=vocab["[PAD]"],
                bos_token_id=vocab["<s>"],
                eos_token_id=vocab["</s>"],
                tie_word_embeddings=True,
            )
        )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _write_data(path: Path) -> None:
    """Two classes whose label is readable from the words: three sentiment words, two fillers."""
    rng = random.Random(0)
    rows = ["text,label"]
    for i in range(ROWS):
        positive = i % 2 == 0
        words = rng.sample(POSITIVE if positive else NEGATIVE, 3) + rng.sample(FILLERS, 2)
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{'positive' if positive else 'negative'}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
