"""Exports, table-driven: format x adapter method x model kind, each loaded back by the library that
consumes it (zoengine, PEFT, transformers, transformers' GGUF reader, llama-cpp-python if installed)
and compared with the trained model's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zoengine import export_formats
from zoengine.cli import main
from zoengine.config import RunConfig
from zoengine.errors import ConfigError

# --- the registry ------------------------------------------------------------------------------


def test_registry_matches_the_adapter_methods() -> None:
    """Every method is listed, and peft-lora/merged/gguf claim exactly what the methods can do."""
    from zoengine.adapters import ADAPTERS

    assert set(export_formats.METHODS) == set(ADAPTERS)
    for name, method in ADAPTERS.items():
        assert export_formats.REGISTRY["native"].supports(name)
        assert export_formats.REGISTRY["peft-lora"].supports(name) == (not method.no_lora_reason), name
        assert export_formats.REGISTRY["merged"].supports(name) == (not method.no_merge_reason), name
        assert export_formats.REGISTRY["gguf"].supports(name) == (not method.no_merge_reason), name


def test_catalog_and_cli_read_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from zotui import catalog

    assert list(catalog.export_formats()) == list(export_formats.FORMATS)
    assert main(["export", "/no/such/run", "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --format") and "\n" not in err
    assert all(f in err for f in export_formats.FORMATS)


@pytest.mark.parametrize(
    ("fmt", "method", "kind", "supports"),
    [
        ("peft-lora", "tt", "causal_lm", "native"),
        ("merged", "tt", None, "native"),
        ("gguf", "lora", "classifier", "native, peft-lora"),
        ("merged", "sora", "classifier", "native, peft-lora"),
        ("peft-lora", "bitfit", None, "native, merged, gguf"),
    ],
)
def test_unsupported_pair_is_one_line_listing_what_is_supported(
    fmt: str, method: str, kind: str | None, supports: str
) -> None:
    with pytest.raises(ConfigError) as err:
        export_formats.check(fmt, method, kind)
    text = str(err.value)
    assert "\n" not in text and text.startswith("--format:") and text.endswith(f"this run supports: {supports}")


def test_cli_refuses_an_unsupported_format_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoengine.rundir import write_config

    cfg = RunConfig()
    cfg.set("adapter.method", "tt")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(cfg.validate(), run_dir)
    assert main(["export", str(run_dir), "--format", "peft-lora"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: --format: peft-lora cannot export a tt adapter")
    assert err.endswith("this run supports: native")


# --- trained tiny runs -------------------------------------------------------------------------

CHAT_TEMPLATE = "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"


def make_bpe_tokenizer():
    """A tiny byte-level BPE tokenizer (GPT-2 / SmolLM2 style), trained on the test words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from conftest import WORDS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([" ".join(WORDS)] * 5, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama + byte-level BPE tokenizer (with a chat template) saved as a model directory."""
    from conftest import make_tiny_llama

    path = tmp_path_factory.mktemp("base") / "tiny-llama"
    tok = make_bpe_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    make_tiny_llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


_RUNS: dict[str, Path] = {}


@pytest.fixture(scope="module")
def train_run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory):
    """``train_run(method)``: a 4-step run of ``method`` on the tiny base (trained once per module)."""
    options = {"lora": ["adapter.r=2"], "lora_xs": ["adapter.r=2"], "sora": ["adapter.r=2"], "tt": []}

    def make(method: str) -> Path:
        if method in _RUNS:
            return _RUNS[method]
        root = tmp_path_factory.mktemp(f"run-{method}")
        data = root / "d.csv"
        data.write_text("text,label\n" + "great fun movie,positive\nawful boring film,negative\n" * 10)
        argv = ["train", "--model", str(tiny_base), "--task", "file", "--data", str(data)]
        sets = [
            "task.template={text} it was {label}",
            "task.label_words=terrible,great",
            'task.label_map={negative = "terrible", positive = "great"}',
            "task.n_train=10",
            "task.n_dev=4",
            "task.n_test=4",
            *options.get(method, []),
        ]
        for item in sets:
            argv += ["--set", item]
        argv += ["--adapter", method, "--lr", "1e-2", "--eps", "1e-2", "--steps", "4", "--batch-size", "4"]
        argv += ["--eval-every", "2", "--output", str(root / "run"), "--quiet"]
        assert main(argv) == 0
        _RUNS[method] = root / "run"
        return root / "run"

    return make


def trained(run_dir: Path, which: str = "best"):
    """The trained model the export must reproduce: base + adapter + the checkpoint's tensors."""
    from zoengine.adapters import apply_adapter
    from zoengine.checkpoint import choose_any
    from zoengine.models import load_model
    from zoengine.rundir import load_config

    cfg = load_config(run_dir)
    label_texts = json.loads((run_dir / "model_info.json").read_text())["label_texts"]
    loaded = load_model(cfg.model, label_texts=label_texts)
    handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
    handle.load_trainable_state_dict(choose_any(run_dir, which)[0].tensors())
    return loaded.model, loaded.tokenizer


def logits_of(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


PROMPT = "the movie was great and the story was fun"

# --- merged ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "dtype", "tol"),
    [
        ("lora", None, 1e-5),
        ("lora", "float16", 2e-2),
        ("lora", "bfloat16", 1e-1),
        ("lora_xs", None, 1e-5),
        ("sora", None, 1e-5),
        ("full", "float32", 1e-5),
    ],
)
def test_merged_loads_with_tokenizer_and_same_logits(
    train_run, tmp_path: Path, method: str, dtype: str | None, tol: float
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoengine.exporting import export_run

    run_dir = train_run(method)
    files = export_run(run_dir, "merged", tmp_path / "m", dtype=dtype, checkpoint="last")
    names = {f.name for f in files}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tok.chat_template == CHAT_TEMPLATE
    if dtype is not None:
        assert model.dtype == getattr(torch, dtype)
        assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == dtype
    want_model, want_tok = trained(run_dir, "last")
    ids = want_tok(PROMPT, return_tensors="pt").input_ids
    assert torch.equal(tok(PROMPT, return_tensors="pt").input_ids, ids)
    assert (logits_of(model, ids) - logits_of(want_model, ids)).abs().max() <= tol


def test_trained_runs_differ_from_the_base(train_run, tiny_base: Path) -> None:
    """The comparisons above mean something: training moved the logits."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    for method in ("lora", "full"):
        model, tok = trained(train_run(method), "last")
        ids = tok(PROMPT, return_tensors="pt").input_ids
        assert (logits_of(model, ids) - logits_of(base, ids)).abs().max() > 1e-4, method


# --- gguf --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "gguf_type", "tol"),
    [
        ("lora", "f32", 1e-4),
        ("lora", "f16", 5e-3),
        ("lora", "q8_0", 5e-2),
        ("sora", "f16", 5e-3),
        ("full", "f32", 1e-4),
    ],
)
def test_gguf_loads_in_transformers_with_same_logits(
    train_run, tmp_path: Path, method: str, gguf_type: str, tol: float
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zoengine.exporting import export_run

    run_dir = train_run(method)
    files = export_run(run_dir, "gguf", tmp_path / "g", gguf_type=gguf_type, checkpoint="last")
    name = f"model-{gguf_type}.gguf"
    assert sorted(f.name for f in files) == sorted(["Modelfile", name, "zoengine_export.json"])
    assert (tmp_path / "g" / "Modelfile").read_text() == f"FROM ./{name}\n"
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "g", gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tmp_path / "g", gguf_file=name)
    assert tok.chat_template == CHAT_TEMPLATE
    want_model, want_tok = trained(run_dir, "last")
    ids = want_tok(PROMPT, return_tensors="pt").input_ids
    assert torch.equal(tok(PROMPT, return_tensors="pt").input_ids, ids)
    got, want = logits_of(model, ids), logits_of(want_model, ids)
    assert (got - want).abs().max() <= tol * want.abs().max(), (got - want).abs().max()
    assert torch.equal(got[0, -1].topk(3).indices, want[0, -1].topk(3).indices)


def test_gguf_metadata_is_what_llama_cpp_reads(train_run, tmp_path: Path) -> None:
    from gguf import GGUFReader

    from zoengine.exporting import export_run

    export_run(train_run("lora"), "gguf", tmp_path / "g", gguf_type="f16", checkpoint="last")
    reader = GGUFReader(tmp_path / "g" / "model-f16.gguf")

    def value(key: str):
        return reader.fields[key].contents()

    assert value("general.architecture") == "llama"
    assert value("llama.block_count") == 2 and value("llama.attention.head_count_kv") == 2
    assert value("llama.rope.dimension_count") == 8 and value("tokenizer.ggml.model") == "gpt2"
    assert value("tokenizer.ggml.pre") == "gpt-2" and len(value("tokenizer.ggml.tokens")) == 400
    assert value("tokenizer.ggml.eos_token_id") == 2 and value("tokenizer.chat_template") == CHAT_TEMPLATE
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output_norm.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd


def test_gguf_refuses_what_it_cannot_write_in_one_line(tmp_path: Path) -> None:
    from conftest import make_tiny_llama, make_tiny_tokenizer
    from test_adapters import tiny_gpt2
    from zoengine.adapters import apply_adapter, export_adapter
    from zoengine.config import AdapterConfig
    from zoengine.errors import AdapterError

    cases = [
        (tiny_gpt2(), make_bpe_tokenizer(), "maps the Llama family"),
        (make_tiny_llama(110), make_tiny_tokenizer(), "writes byte-level BPE"),
    ]
    for model, tok, match in cases:
        handle = apply_adapter(model, AdapterConfig(method="lora", options={"r": 2}), seed=0)
        with pytest.raises(AdapterError, match=match) as err:
            export_adapter(model, handle, tmp_path / "g", "gguf", base_model_id="t", base_model_hash="h", tokenizer=tok)
        assert "\n" not in str(err.value)
        assert not (tmp_path / "g").exists()


def test_gguf_pre_tokenizer_names() -> None:
    from tokenizers import Regex, pre_tokenizers

    from zoengine.adapters.gguf import _LLAMA3_SPLIT, tokenizer_pre

    tok = make_bpe_tokenizer()
    assert tokenizer_pre(tok) == "gpt-2"
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    assert tokenizer_pre(tok) == "smollm"
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    assert tokenizer_pre(tok) == "llama-bpe"


def test_gguf_runs_in_llama_cpp(train_run, tmp_path: Path) -> None:
    """Second, independent reader: llama.cpp itself (via llama-cpp-python) tokenizes the prompt the
    same way and picks the same next token. Optional: `pip install llama-cpp-python` (it builds
    llama.cpp from source where no wheel fits the platform), then run this file."""
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (no prebuilt wheel here; its sdist compiles llama.cpp)"
    )
    from zoengine.exporting import export_run

    run_dir = train_run("lora")
    export_run(run_dir, "gguf", tmp_path / "g", gguf_type="f32", checkpoint="last")
    llm = llama_cpp.Llama(str(tmp_path / "g" / "model-f32.gguf"), n_ctx=64, logits_all=True, verbose=False)
    want_model, want_tok = trained(run_dir, "last")
    ids = want_tok(PROMPT, return_tensors="pt").input_ids
    assert llm.tokenize(PROMPT.encode(), add_bos=False, special=False) == ids[0].tolist()
    llm.eval(ids[0].tolist())
    got = torch.tensor(llm.scores[: ids.shape[1]])
    want = logits_of(want_model, ids)[0]
    assert int(got[-1].argmax()) == int(want[-1].argmax())
    assert (got - want).abs().max() <= 1e-3 * want.abs().max() + 1e-4


# --- native ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "tt", "full"])
def test_native_has_its_own_names_and_reloads(train_run, tmp_path: Path, method: str) -> None:
    from zoengine.adapters import load_native
    from zoengine.exporting import export_run
    from zoengine.models import load_model
    from zoengine.rundir import load_config

    run_dir = train_run(method)
    files = export_run(run_dir, "native", tmp_path / "n", checkpoint="last")
    assert sorted(f.name for f in files) == ["zoengine_adapter.json", "zoengine_adapter.safetensors"]
    meta = json.loads((tmp_path / "n" / "zoengine_adapter.json").read_text())
    assert meta["schema_version"] == 2 and meta["base_model_hash"].startswith("sha256-bf16:")
    fresh = load_model(load_config(run_dir).model)
    load_native(fresh.model, tmp_path / "n")
    want_model, tok = trained(run_dir, "last")
    ids = tok(PROMPT, return_tensors="pt").input_ids
    assert (logits_of(fresh.model, ids) - logits_of(want_model, ids)).abs().max() <= 1e-5


def test_native_refuses_another_base_in_one_line(train_run, tmp_path: Path) -> None:
    from conftest import make_tiny_llama
    from zoengine.adapters import load_native
    from zoengine.errors import AdapterError
    from zoengine.exporting import export_run

    export_run(train_run("lora"), "native", tmp_path / "n")
    other = make_tiny_llama(400, seed=1)
    with pytest.raises(AdapterError, match="was trained on other base weights") as err:
        load_native(other, tmp_path / "n")
    assert "\n" not in str(err.value)
    load_native(other, tmp_path / "n", allow_other_base=True)  # on request


def test_native_still_loads_schema_1(train_run, tmp_path: Path) -> None:
    """Exports written before schema 2 used PEFT's file names and the float32 hash."""
    from zoengine.adapters import base_weights_hash, load_native
    from zoengine.exporting import export_run
    from zoengine.models import load_model
    from zoengine.rundir import load_config

    run_dir = train_run("lora")
    export_run(run_dir, "native", tmp_path / "n")
    meta = json.loads((tmp_path / "n" / "zoengine_adapter.json").read_text())
    fresh = load_model(load_config(run_dir).model).model
    meta.pop("schema_version")
    meta["format_version"] = 1
    meta["base_model_hash"] = base_weights_hash(fresh, scheme="sha256")
    (tmp_path / "n" / "adapter_config.json").write_text(json.dumps(meta))
    (tmp_path / "n" / "zoengine_adapter.json").unlink()
    (tmp_path / "n" / "zoengine_adapter.safetensors").rename(tmp_path / "n" / "adapter_model.safetensors")
    handle = load_native(fresh, tmp_path / "n")
    assert handle.method == "lora"


# --- which checkpoint, and no task reload ------------------------------------------------------


def test_export_by_step_and_a_missing_step_is_one_line(train_run, tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file

    from zoengine.checkpoint import choose_any
    from zoengine.errors import CheckpointError
    from zoengine.exporting import export_run

    run_dir = train_run("lora")
    last = choose_any(run_dir, "last")[0]
    lines: list[str] = []
    export_run(run_dir, "native", tmp_path / "a", checkpoint=str(last.step), report=lines.append)
    assert lines == [f"exporting checkpoints/last (step {last.step}) of {run_dir}"]
    export_run(run_dir, "native", tmp_path / "b", checkpoint="last")
    a, b = (load_file(tmp_path / d / "zoengine_adapter.safetensors") for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match="no checkpoint at step 3; .* steps ") as err:
        export_run(run_dir, "native", tmp_path / "c", checkpoint="3")
    assert "\n" not in str(err.value) and not (tmp_path / "c").exists()
    capsys.readouterr()
    assert main(["export", str(run_dir), "--checkpoint", "latest", "--out", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.strip() == "error: --checkpoint: must be best, last or a step number (got 'latest')"
    assert main(["export", str(run_dir), "--checkpoint", "3", "--out", str(tmp_path / "d")]) == 2
    assert "no checkpoint at step 3" in capsys.readouterr().err


def test_export_does_not_reload_the_task(train_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zoengine.tasks

    def no_task(*args, **kwargs):
        raise AssertionError("export reloaded the task")

    monkeypatch.setattr(zoengine.tasks, "load_task", no_task)
    run_dir = train_run("lora")
    info = json.loads((run_dir / "model_info.json").read_text())
    assert info["kind"] == "causal_lm" and info["label_texts"] == ["terrible", "great"]
    from zoengine.exporting import export_run

    assert export_run(run_dir, "native", tmp_path / "n")


# --- the encoder classifier (zoengine's pooling head) ------------------------------------------


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory: pytest.TempPathFactory):
    """``encoder_run(method)``: a tiny BERT encoder (no head) trained as a 2-label classifier."""
    from transformers import BertConfig, BertModel

    from conftest import make_tiny_tokenizer

    root = tmp_path_factory.mktemp("encoder")
    tok = make_tiny_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    BertModel(cfg).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    data = root / "d.csv"
    data.write_text("text,label\n" + "great fun movie,positive\nawful boring film,negative\n" * 10)
    runs: dict[str, Path] = {}

    def make(method: str) -> Path:
        if method not in runs:
            argv = ["train", "--model", str(root / "base"), "--task", "file", "--data", str(data)]
            for item in (
                "task.label_words=terrible,great",
                'task.label_map={negative = "terrible", positive = "great"}',
                "task.n_train=10",
                "task.n_dev=4",
                "task.n_test=4",
                "adapter.r=2",
            ):
                argv += ["--set", item]
            argv += ["--adapter", method, "--lr", "1e-2", "--eps", "1e-2", "--steps", "4", "--batch-size", "4"]
            assert main([*argv, "--output", str(root / method), "--quiet"]) == 0
            runs[method] = root / method
        return runs[method]

    return make


def encoder_logits(model, tok) -> torch.Tensor:
    enc = tok(["great fun movie", "awful boring film and plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).float()


@pytest.mark.parametrize("method", ["lora", "lora_xs", "sora"])
def test_peft_encoder_classifier_loads_on_the_plain_encoder_with_its_head(
    encoder_run, tmp_path: Path, method: str
) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel

    from zoengine.exporting import export_run
    from zoengine.rundir import load_config

    run_dir = encoder_run(method)
    export_run(run_dir, "peft-lora", tmp_path / "p", checkpoint="last")
    keys = load_file(tmp_path / "p" / "adapter_model.safetensors")
    assert not any(k.startswith("base_model.model.encoder.encoder.") for k in keys)  # no wrapper prefix
    assert {"base_model.model.classifier.weight", "base_model.model.classifier.bias"} <= set(keys)
    assert json.loads((tmp_path / "p" / "adapter_config.json").read_text())["modules_to_save"] == ["classifier"]
    card = (tmp_path / "p" / "README.md").read_text()
    assert "library_name: peft" in card and f"zoengine, {method}" in card and "checkpoints/last" in card

    base = load_config(run_dir).model.name
    encoder = AutoModel.from_pretrained(base)
    encoder.classifier = torch.nn.Linear(32, 2)
    model = PeftModel.from_pretrained(encoder, tmp_path / "p").eval()

    def peft_classifier(input_ids, attention_mask):  # the README's recipe
        h = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)
        return model.base_model.model.classifier(pooled)

    want_model, tok = trained(run_dir, "last")
    want = encoder_logits(want_model, tok)
    assert (encoder_logits(peft_classifier, tok) - want).abs().max() <= 1e-4


def test_encoder_classifier_export_needs_no_task_and_old_runs_fall_back(
    encoder_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zoengine.tasks
    from zoengine.adapters import load_native
    from zoengine.errors import ConfigError
    from zoengine.exporting import export_run
    from zoengine.models import load_model
    from zoengine.rundir import load_config

    run_dir = encoder_run("lora")
    real_load_task = zoengine.tasks.load_task
    calls: list[str] = []

    def counting(*args, **kwargs):
        calls.append("load_task")
        return real_load_task(*args, **kwargs)

    monkeypatch.setattr(zoengine.tasks, "load_task", counting)
    export_run(run_dir, "native", tmp_path / "n", checkpoint="last")
    assert calls == []  # label texts came from model_info.json
    with pytest.raises(ConfigError, match="this run supports: native, peft-lora$"):
        export_run(run_dir, "merged", tmp_path / "m")
    fresh = load_model(load_config(run_dir).model, label_texts=["terrible", "great"]).model
    load_native(fresh, tmp_path / "n")
    want_model, tok = trained(run_dir, "last")
    assert (encoder_logits(fresh, tok) - encoder_logits(want_model, tok)).abs().max() <= 1e-5

    (run_dir / "model_info.json").rename(tmp_path / "model_info.json")  # a run from before that file
    try:
        export_run(run_dir, "native", tmp_path / "old", checkpoint="last")
    finally:
        (tmp_path / "model_info.json").rename(run_dir / "model_info.json")
    assert calls == ["load_task"]


@pytest.mark.parametrize("method", ["lora", "lora_xs", "sora"])
def test_peft_causal_loads_with_same_logits_and_a_model_card(train_run, tmp_path: Path, method: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from zoengine.exporting import export_run
    from zoengine.rundir import load_config

    run_dir = train_run(method)
    export_run(run_dir, "peft-lora", tmp_path / "p", checkpoint="last")
    card = (tmp_path / "p" / "README.md").read_text()
    for text in ("base_model:", f"{method} (", "task: file", "checkpoints/last", "PeftModel.from_pretrained"):
        assert text in card, text
    base = AutoModelForCausalLM.from_pretrained(load_config(run_dir).model.name)
    model = PeftModel.from_pretrained(base, tmp_path / "p")
    want_model, tok = trained(run_dir, "last")
    ids = tok(PROMPT, return_tensors="pt").input_ids
    assert (logits_of(model, ids) - logits_of(want_model, ids)).abs().max() <= 1e-4


# --- masked LMs (export_adapter directly) ------------------------------------------------------


@pytest.mark.parametrize("fmt", ["native", "peft-lora", "merged"])
def test_masked_lm_exports_load_with_same_logits(tmp_path: Path, fmt: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForMaskedLM

    from test_adapters import perturb_trainables, tiny_bert
    from zoengine.adapters import apply_adapter, base_weights_hash, export_adapter, load_native
    from zoengine.config import AdapterConfig

    model = tiny_bert()
    base_hash = base_weights_hash(model)
    handle = apply_adapter(model, AdapterConfig(method="lora", options={"r": 2}), seed=0)
    perturb_trainables(handle, scale=0.5)
    ids = torch.randint(7, 100, (2, 9), generator=torch.Generator().manual_seed(1))
    want = logits_of(model, ids)
    assert (want - logits_of(tiny_bert(), ids)).abs().max() > 1e-4  # the adapter does something
    export_adapter(model, handle, tmp_path / "x", fmt, base_model_id="tiny-bert", base_model_hash=base_hash)
    if fmt == "native":
        loaded = tiny_bert()
        load_native(loaded, tmp_path / "x")
    elif fmt == "peft-lora":
        loaded = PeftModel.from_pretrained(tiny_bert(), tmp_path / "x")
    else:
        loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "x")
    assert (logits_of(loaded, ids) - want).abs().max() <= 1e-4


# --- the table: every (format, model kind) the registry offers has a loading test here ---------

VERIFIED = {  # (format, kind): (methods exercised, test)
    ("native", "causal_lm"): (("lora", "tt", "full"), test_native_has_its_own_names_and_reloads),
    ("native", "masked_lm"): (("lora",), test_masked_lm_exports_load_with_same_logits),
    ("native", "classifier"): (("lora",), test_encoder_classifier_export_needs_no_task_and_old_runs_fall_back),
    ("peft-lora", "causal_lm"): (("lora", "lora_xs", "sora"), test_peft_causal_loads_with_same_logits_and_a_model_card),
    ("peft-lora", "masked_lm"): (("lora",), test_masked_lm_exports_load_with_same_logits),
    ("peft-lora", "classifier"): (
        ("lora", "lora_xs", "sora"),
        test_peft_encoder_classifier_loads_on_the_plain_encoder_with_its_head,
    ),
    ("merged", "causal_lm"): (("lora", "lora_xs", "sora", "full"), test_merged_loads_with_tokenizer_and_same_logits),
    ("merged", "masked_lm"): (("lora",), test_masked_lm_exports_load_with_same_logits),
    ("gguf", "causal_lm"): (("lora", "sora", "full"), test_gguf_loads_in_transformers_with_same_logits),
}


def test_every_supported_format_and_kind_is_verified() -> None:
    offered = {
        (fmt, kind)
        for fmt, f in export_formats.REGISTRY.items()
        for kind in export_formats.KINDS
        if any(f.supports(m, kind) for m in export_formats.METHODS)
    }
    assert offered == set(VERIFIED)
    for (fmt, kind), (methods, _test) in VERIFIED.items():
        assert all(export_formats.REGISTRY[fmt].supports(m, kind) for m in methods), (fmt, kind)
