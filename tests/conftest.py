"""Shared fixtures: tiny models built from configs (no downloads) and a tiny word tokenizer."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = (
    "the a an it was is this that movie film great terrible good bad fun boring awful wonderful "
    "yes no maybe true false i you we they he she not very really so and or but of to in on "
    "with for as at by from story plot actor acting music scene love hate best worst fine okay "
    "question answer does mean can infer sentence word same meaning pronoun refer passage because "
    "cause effect what sport politics business tech entertainment positive negative neutral news "
    "price market team game film star vote law phone computer happy sad"
).split()


def make_tiny_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(WORDS)) + list(".,?!:;\"'"))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="<s>",
        eos_token="</s>",
    )


def make_tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=0,
        bos_token_id=5,
        eos_token_id=6,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture
def tiny_tokenizer():
    return make_tiny_tokenizer()


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    return make_tiny_llama(len(tiny_tokenizer))


@pytest.fixture
def tiny_llama_dir(tmp_path, tiny_tokenizer, tiny_llama):
    """A tiny Llama + tokenizer saved as a local model directory (loadable by path)."""
    path = tmp_path / "tiny-llama"
    tiny_llama.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def _isolated_homes(tmp_path_factory, monkeypatch):
    """Runs go to a temp dir. The asset cache stays the user's (real assets are fetched once);
    tests of fetching itself point ZOENGINE_CACHE at a temp dir."""
    monkeypatch.setenv("ZOENGINE_RUNS", str(tmp_path_factory.getbasetemp() / "runs"))


SENTIMENT_POS = "great fun wonderful good best love happy fine".split()
SENTIMENT_NEG = "terrible awful boring bad worst hate sad".split()


@pytest.fixture
def sentiment_csv(tmp_path):
    """Two-class file (240 rows) whose label is readable from its words: learnable by a tiny model."""
    import random

    rng = random.Random(0)
    rows = ["text,label"]
    for i in range(240):
        pos = i % 2 == 0
        words = rng.sample(SENTIMENT_POS if pos else SENTIMENT_NEG, 3)
        words += rng.sample(["the", "movie", "film", "story", "plot"], 2)
        rng.shuffle(words)
        rows.append(f"{' '.join(words)},{'great' if pos else 'terrible'}")
    path = tmp_path / "sent.csv"
    path.write_text("\n".join(rows) + "\n")
    return path
