"""Adapter registry: one table of methods x one common tester, then method-specific checks.

Tiny models are built from configs (Llama from conftest; GPT-2, OPT, BERT, RoBERTa here), so the
whole file runs in seconds on a CPU.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import make_tiny_llama
from zoengine.adapters import (
    ADAPTERS,
    AdapterHandle,
    apply_adapter,
    base_weights_hash,
    export_adapter,
    load_native,
    validate_config,
)
from zoengine.adapters.sora import lambda_at
from zoengine.adapters.tt import TTLinear, factorize
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError, ConfigError

VOCAB = 110  # ≥ len(tiny tokenizer); ids below are drawn from [7, VOCAB)


# --- tiny models -------------------------------------------------------------------------------


def tiny_gpt2(seed: int = 0) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=5, eos_token_id=6
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_opt(seed: int = 0) -> nn.Module:
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        ffn_dim=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        word_embed_proj_dim=32,
        pad_token_id=0,
        bos_token_id=5,
        eos_token_id=6,
    )
    return OPTForCausalLM(cfg).eval()


def tiny_bert(seed: int = 0, kind: str = "bert") -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM, RobertaConfig, RobertaForMaskedLM

    torch.manual_seed(seed)
    common = dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    if kind == "roberta":
        return RobertaForMaskedLM(RobertaConfig(max_position_embeddings=70, pad_token_id=1, **common)).eval()
    return BertForMaskedLM(BertConfig(max_position_embeddings=64, **common)).eval()


def tiny_llama(seed: int = 0) -> nn.Module:
    return make_tiny_llama(VOCAB, seed=seed)


BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "opt": tiny_opt, "bert": tiny_bert}


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(7, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits.float()


def perturb_trainables(handle: AdapterHandle, scale: float = 0.05, seed: int = 3) -> None:
    """Stand-in for training: move every trainable tensor (gates kept away from zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in handle.named_trainable():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


# --- the method table --------------------------------------------------------------------------


@dataclass
class Case:
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    targets: list[str] | None = None
    arch: str = "llama"
    exact_identity: bool = True  # zero-initialised: step 0 equals the base exactly
    starts_at_base: bool = True  # False: the default init changes the model
    peft: bool = False  # has an exact PEFT LoRA export
    merge: bool = True

    @property
    def id(self) -> str:
        return self.method

    def cfg(self) -> AdapterConfig:
        return AdapterConfig(method=self.method, targets=self.targets, options=dict(self.options))

    def build(self, seed: int = 0) -> nn.Module:
        return BUILDERS[self.arch](seed)


CASES = [
    Case("full"),
    Case("subset", targets=["model.layers.1.mlp", "norm"]),
    Case("bitfit", arch="gpt2"),
    Case("lora", {"r": 4, "alpha": 8}, peft=True),
    Case("lora_xs", {"r": 4}, exact_identity=False, peft=True),
    Case("sora", {"r": 4}, peft=True),
    Case("tt", {"r": 3, "bottleneck": 16}, merge=False),
]
PARAMS = [pytest.param(c, id=c.id) for c in CASES]


def test_table_covers_registry() -> None:
    assert sorted(c.method for c in CASES) == sorted(ADAPTERS)


@pytest.mark.parametrize("case", PARAMS)
def test_identity_at_init(case: Case, ids: torch.Tensor) -> None:
    model = case.build()
    base = logits(model, ids)
    apply_adapter(model, case.cfg(), seed=0)
    out = logits(model, ids)
    if not case.starts_at_base:  # e.g. TT with zero_init_up=False (the authors' random up map)
        assert not torch.allclose(out, base, atol=1e-3)
    elif case.exact_identity:
        assert torch.equal(out, base)
    else:  # LoRA-XS: R ~ N(0, 1e-10) is tiny but not zero
        assert (out - base).abs().max() < 1e-3


@pytest.mark.parametrize("case", PARAMS)
def test_only_adapter_params_trainable(case: Case) -> None:
    model = case.build()
    handle = apply_adapter(model, case.cfg(), seed=0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    groups = handle.param_groups(0.1)
    names = [n for g in groups for n in g["names"]]
    assert len(names) == len(set(names)) and set(names) == trainable
    assert all(len(g["names"]) == len(g["params"]) for g in groups)
    for g in groups:  # matrices decay, vectors (biases, norms, gates) do not; empty groups are left out
        assert g["params"] and all((p.ndim >= 2) == (g["weight_decay"] == 0.1) for p in g["params"])
    assert [g["weight_decay"] for g in groups] == sorted((g["weight_decay"] for g in groups), reverse=True)
    assert all(p.dtype == torch.float32 for g in groups for p in g["params"])
    assert handle.num_trainable() == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert handle.num_total() == sum(p.numel() for p in model.parameters())
    if case.method not in ("full", "subset", "bitfit"):
        assert all(".zo_" in n for n in trainable)
        assert all(
            not p.requires_grad for n, p in model.named_parameters() if "norm" in n
        )  # LayerNorm frozen
    # a fresh application with the same seed lists the same tensors with the same values
    again = apply_adapter(case.build(), case.cfg(), seed=0)
    assert [n for g in again.param_groups(0.1) for n in g["names"]] == names
    for (_, a), (_, b) in zip(handle.named_trainable(), again.named_trainable(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", PARAMS)
def test_after_step_and_stats(case: Case) -> None:
    handle = apply_adapter(case.build(), case.cfg(), seed=0)
    before = handle.trainable_state_dict()
    handle.after_step(0, 1e-3)
    stats = handle.stats()
    if case.method == "sora":
        assert set(stats) >= {"gate_sparsity", "effective_rank", "per_module", "lambda"}
        assert (
            stats["gate_sparsity"] == 0.0 and stats["effective_rank"] == 4
        )  # ones-init gates survive one step
    else:
        assert stats == {}
        for k, v in handle.trainable_state_dict().items():
            assert torch.equal(v, before[k])  # no-op
    method = ADAPTERS[case.method]
    assert method.description and all(o.help for o in method.settings())
    assert repr(handle).startswith("AdapterHandle(method=")


@pytest.mark.parametrize("case", PARAMS)
def test_state_dict_round_trip(case: Case, ids: torch.Tensor) -> None:
    model = case.build()
    handle = apply_adapter(model, case.cfg(), seed=0)
    perturb_trainables(handle)
    sd = handle.trainable_state_dict()
    want = logits(model, ids)
    other = case.build()
    h2 = apply_adapter(other, case.cfg(), seed=1)  # different init, then restored
    h2.load_trainable_state_dict(sd)
    assert torch.equal(logits(other, ids), want)
    for k, v in h2.trainable_state_dict().items():
        assert torch.equal(v, sd[k])
    with pytest.raises(AdapterError, match="checkpoint does not fit"):
        h2.load_trainable_state_dict({k + "x": v for k, v in sd.items()})


@pytest.mark.parametrize("case", PARAMS)
def test_native_export_reproduces_logits(case: Case, ids: torch.Tensor, tmp_path: Path) -> None:
    model = case.build()
    base_hash = base_weights_hash(model)
    handle = apply_adapter(model, case.cfg(), seed=0)
    perturb_trainables(handle)
    want = logits(model, ids)
    files = export_adapter(
        model, handle, tmp_path / "a", "native", base_model_id="tiny", base_model_hash=base_hash
    )
    assert sorted(f.name for f in files) == ["zoengine_adapter.json", "zoengine_adapter.safetensors"]
    meta = json.loads((tmp_path / "a" / "zoengine_adapter.json").read_text())
    assert meta["format"] == "zoengine-adapter" and meta["schema_version"] == 2
    assert (
        meta["method"] == case.method
        and meta["base_model_hash"] == base_hash
        and meta["targets"] == handle.targets
    )
    assert "zoengine_version" in meta and meta["base_model_id"] == "tiny"
    fresh = case.build()
    assert base_weights_hash(fresh) == base_hash
    h2 = load_native(fresh, tmp_path / "a")
    assert h2.method == case.method and h2.targets == handle.targets
    assert (logits(fresh, ids) - want).abs().max() <= 1e-5


@pytest.mark.parametrize("case", PARAMS)
def test_peft_export(case: Case, ids: torch.Tensor, tmp_path: Path) -> None:
    model = case.build()
    handle = apply_adapter(model, case.cfg(), seed=0)
    perturb_trainables(handle)
    if not case.peft:
        with pytest.raises(AdapterError) as err:
            export_adapter(model, handle, tmp_path / "p", "peft-lora", base_model_id="t", base_model_hash="h")
        assert "\n" not in str(err.value) and "native" in str(err.value)
        assert not (tmp_path / "p").exists()
        return
    from peft import PeftModel

    want = logits(model, ids)
    export_adapter(model, handle, tmp_path / "p", "peft-lora", base_model_id="tiny", base_model_hash="h")
    peft_model = PeftModel.from_pretrained(case.build(), tmp_path / "p")
    assert (logits(peft_model, ids) - want).abs().max() <= 1e-4


@pytest.mark.parametrize("case", PARAMS)
def test_merged_export(case: Case, ids: torch.Tensor, tmp_path: Path) -> None:
    model = case.build()
    handle = apply_adapter(model, case.cfg(), seed=0)
    perturb_trainables(handle)
    if not case.merge:
        with pytest.raises(AdapterError, match="non-linear") as err:
            export_adapter(model, handle, tmp_path / "m", "merged", base_model_id="t", base_model_hash="h")
        assert "\n" not in str(err.value) and "use native" in str(err.value)
        return
    from transformers import AutoModelForCausalLM

    want = logits(model, ids)
    export_adapter(model, handle, tmp_path / "m", "merged", base_model_id="tiny", base_model_hash="h")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert not any("zo_" in k for k in reloaded.state_dict())
    assert (logits(reloaded, ids) - want).abs().max() <= 1e-5


# --- exports: extra cases ----------------------------------------------------------------------


def test_sora_peft_export_prunes_zero_gates(ids: torch.Tensor, tmp_path: Path) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file

    model = tiny_llama()
    handle = apply_adapter(model, AdapterConfig(method="sora", options={"r": 4}), seed=0)
    perturb_trainables(handle)
    mods = list(handle.adapter_modules.values())
    with torch.no_grad():
        mods[0].g[1:3] = 0.0  # rank 4 -> 2
        mods[1].g[:] = 0.0  # rank 0: exported as a zero rank-1 LoRA
        mods[2].g[0] = 0.0  # rank 3
    want = logits(model, ids)
    export_adapter(model, handle, tmp_path / "p", "peft-lora", base_model_id="tiny", base_model_hash="h")
    cfg = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4
    assert sorted(cfg["rank_pattern"].values()) == [1, 2, 3] and cfg["alpha_pattern"] == cfg["rank_pattern"]
    tensors = load_file(tmp_path / "p" / "adapter_model.safetensors")
    first = handle.targets[0]
    assert tensors[f"base_model.model.{first}.lora_A.weight"].shape[0] == 2
    assert handle.stats()["per_module"][first]["rank"] == 2
    peft_model = PeftModel.from_pretrained(tiny_llama(), tmp_path / "p")
    assert (logits(peft_model, ids) - want).abs().max() <= 1e-4


def test_lora_peft_export_gpt2_conv1d(ids: torch.Tensor, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = tiny_gpt2()
    handle = apply_adapter(model, AdapterConfig(method="lora_xs", options={"r": 4}), seed=0)
    perturb_trainables(handle, scale=5.0)
    want = logits(model, ids)
    assert (want - logits(tiny_gpt2(), ids)).abs().max() > 1e-3  # the adapter does something
    export_adapter(model, handle, tmp_path / "p", "peft-lora", base_model_id="tiny-gpt2", base_model_hash="h")
    assert json.loads((tmp_path / "p" / "adapter_config.json").read_text())["fan_in_fan_out"] is True
    peft_model = PeftModel.from_pretrained(tiny_gpt2(), tmp_path / "p")
    assert (logits(peft_model, ids) - want).abs().max() <= 1e-4
    export_adapter(model, handle, tmp_path / "m", "merged", base_model_id="tiny-gpt2", base_model_hash="h")
    assert (logits(AutoModelForCausalLM.from_pretrained(tmp_path / "m"), ids) - want).abs().max() <= 1e-5


def test_export_is_atomic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import safetensors.torch

    model = tiny_llama()
    handle = apply_adapter(model, AdapterConfig(method="lora", options={"r": 2}), seed=0)
    dest = tmp_path / "out"
    export_adapter(model, handle, dest, "native", base_model_id="tiny", base_model_hash="h1")
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        export_adapter(model, handle, dest, "native", base_model_id="tiny", base_model_hash="h2")
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp dirs left behind
    with pytest.raises(AdapterError, match="unknown export format"):
        export_adapter(model, handle, dest, "onnx", base_model_id="tiny", base_model_hash="h")


def test_merged_export_with_tokenizer(tiny_tokenizer: Any, tmp_path: Path) -> None:
    model = tiny_llama()
    handle = apply_adapter(model, AdapterConfig(method="lora", options={"r": 2}), seed=0)
    files = export_adapter(
        model,
        handle,
        tmp_path / "m",
        "merged",
        base_model_id="tiny",
        base_model_hash="h",
        tokenizer=tiny_tokenizer,
    )
    names = {f.name for f in files}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert all(f.exists() for f in files)


def test_load_native_rejects_other_dirs(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="not a native zoengine adapter"):
        load_native(tiny_llama(), tmp_path)


def test_base_weights_hash_is_stable_and_sensitive() -> None:
    a, b = tiny_llama(), tiny_llama()
    assert base_weights_hash(a) == base_weights_hash(b)
    apply_adapter(b, AdapterConfig(method="lora"), seed=0)  # adapters do not change the base hash
    assert base_weights_hash(a) == base_weights_hash(b)
    assert base_weights_hash(tiny_llama(seed=1)) != base_weights_hash(a)
    assert base_weights_hash(a).startswith("sha256-bf16:")
    assert base_weights_hash(a.to(torch.bfloat16)) == base_weights_hash(tiny_llama())  # dtype-independent
    assert base_weights_hash(a, scheme="sha256").startswith("sha256:")  # schema-1 exports


# --- default targets per architecture ----------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "per_layer", "placement"),
    [
        (
            "llama",
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            ["o_proj", "down_proj"],
        ),
        ("gpt2", ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"], ["attn.c_proj", "mlp.c_proj"]),
        ("opt", ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"], ["out_proj", "fc2"]),
        (
            "bert",
            ["query", "key", "value", "attention.output.dense", "intermediate.dense", "2.output.dense"],
            ["attention.output.dense", "2.output.dense"],
        ),
        (
            "roberta",
            ["query", "key", "value", "attention.output.dense", "intermediate.dense", "2.output.dense"],
            ["attention.output.dense", "2.output.dense"],
        ),
    ],
)
def test_default_targets_and_tt_placement(arch: str, per_layer: list[str], placement: list[str]) -> None:
    build = (lambda: tiny_bert(kind="roberta")) if arch == "roberta" else BUILDERS[arch]
    ids = torch.randint(7, VOCAB, (1, 5), generator=torch.Generator().manual_seed(0))
    model = build()
    handle = apply_adapter(model, AdapterConfig(method="lora", options={"r": 2}), seed=0)
    assert len(handle.targets) == 2 * len(per_layer)
    layer0 = [t for t in handle.targets if ".0." in t]
    # "2.output.dense" marks BERT's FFN output (".{layer}.output.dense"); compare by suffix, any order
    suffixes = [s.replace("2.", "0.") if s.startswith("2.") else s for s in per_layer]
    assert all(sum(t.endswith(s) for t in layer0) >= 1 for s in suffixes), layer0
    model = build()
    base = logits(model, ids)
    tt_options = {"r": 2, "bottleneck": 8, "zero_init_up": True}
    tt = apply_adapter(model, AdapterConfig(method="tt", options=tt_options), seed=0)
    assert len(tt.targets) == 4
    for t, suffix in zip([t for t in tt.targets if ".0." in t], placement, strict=True):
        assert t.endswith(suffix.replace("2.", "0.") if suffix.startswith("2.") else suffix), (t, suffix)
    assert all(t.split(".")[-1] in {s.split(".")[-1] for s in placement} for t in tt.targets)
    assert torch.equal(logits(model, ids), base)  # zero_init_up: step 0 is the base
    perturb_trainables(tt)
    assert not torch.allclose(logits(model, ids), base)  # the hooks are live
    assert all(not p.requires_grad for n, p in model.named_parameters() if "LayerNorm" in n or "ln_" in n)


def test_target_patterns() -> None:
    model = tiny_llama()
    h = apply_adapter(
        model, AdapterConfig(method="lora", targets=["layers.1.self_attn"], options={"r": 2}), seed=0
    )
    assert h.targets == [f"model.layers.1.self_attn.{m}" for m in ("q_proj", "k_proj", "v_proj", "o_proj")]
    h = apply_adapter(
        tiny_llama(), AdapterConfig(method="lora", targets=["*.0.*_proj"], options={"r": 2}), seed=0
    )
    assert len(h.targets) == 7
    h = apply_adapter(
        tiny_llama(), AdapterConfig(method="lora", targets=[r"re:.*\.(q|v)_proj"], options={"r": 2})
    )
    assert len(h.targets) == 4


# --- LoRA-XS -----------------------------------------------------------------------------------


def test_lora_xs_counts_and_svd() -> None:
    model = tiny_llama()
    h = apply_adapter(model, AdapterConfig(method="lora_xs", options={"r": 3}), seed=0)
    assert h.num_trainable() == 3 * 3 * len(h.targets) == 9 * 14
    for name, mod in h.adapter_modules.items():
        w = model.get_submodule(name.rsplit(".", 1)[0]).weight.float()
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        # B A is the best rank-3 approximation of W (Eckart-Young), B has orthonormal columns
        assert torch.allclose(mod.B @ mod.A, (u[:, :3] * s[:3]) @ vh[:3], atol=1e-5)
        assert torch.allclose(mod.B.T @ mod.B, torch.eye(3), atol=1e-5)
        assert not mod.A.requires_grad and not mod.B.requires_grad and mod.R.shape == (3, 3)
    again = apply_adapter(tiny_llama(), AdapterConfig(method="lora_xs", options={"r": 3}), seed=0)
    for a, b in zip(h.adapter_modules.values(), again.adapter_modules.values(), strict=True):
        assert torch.equal(a.A, b.A) and torch.equal(a.B, b.B)  # deterministic signs


def test_lora_xs_randomized_svd_and_scaling() -> None:
    cfg = AdapterConfig(method="lora_xs", options={"r": 2, "svd": "randomized", "svd_niter": 6, "alpha": 8})
    h1 = apply_adapter(tiny_llama(), cfg, seed=5)
    h2 = apply_adapter(tiny_llama(), cfg, seed=5)
    exact = apply_adapter(tiny_llama(), AdapterConfig(method="lora_xs", options={"r": 2}), seed=5)
    for a, b, e in zip(
        h1.adapter_modules.values(), h2.adapter_modules.values(), exact.adapter_modules.values(), strict=True
    ):
        assert torch.equal(a.A, b.A)  # seeded
        assert a.scaling == 4.0 and e.scaling == 1.0
        assert torch.allclose(a.B @ a.A, e.B @ e.A, atol=5e-2)  # randomized ≈ exact top-2 subspace


# --- SoRA --------------------------------------------------------------------------------------


def test_sora_prox_exact_zeros_and_sparsity_grows() -> None:
    sparsities = []
    for lam in (0.0, 0.5, 1.0, 2.0):
        model = tiny_llama()
        h = apply_adapter(
            model, AdapterConfig(method="sora", options={"r": 8, "gate_init": "randn", "lambda": lam}), seed=0
        )
        gates_before = [m.g.detach().clone() for m in h.adapter_modules.values()]
        h.after_step(0, 1.0)  # threshold = lr * lambda
        for before, mod in zip(gates_before, h.adapter_modules.values(), strict=True):
            expected = torch.sign(before) * torch.clamp(before.abs() - lam, min=0)
            assert torch.equal(mod.g.detach(), expected)
            assert bool(((mod.g == 0) == (before.abs() <= lam)).all())  # exact zeros
        stats = h.stats()
        sparsities.append(stats["gate_sparsity"])
        assert stats["lambda"] == lam and set(stats["per_module"]) == set(h.targets)
        ranks = [v["rank"] for v in stats["per_module"].values()]
        assert stats["effective_rank"] == pytest.approx(sum(ranks) / len(ranks))
    assert sparsities[0] == 0.0 and sparsities == sorted(sparsities) and sparsities[-1] > 0.8


def test_sora_counts_and_threshold_modes() -> None:
    h = apply_adapter(
        tiny_llama(), AdapterConfig(method="sora", options={"r": 4, "gate_init": "ones", "lambda": 0.1}), seed=0
    )
    dims = [(m.in_features, m.out_features) for m in h.adapter_modules.values()]
    assert h.num_trainable() == sum(4 * (i + o) + 4 for i, o in dims)
    h.after_step(0, 1e-3)  # gates start at 1, threshold 1e-4: no zeros yet
    assert h.stats()["gate_sparsity"] == 0.0
    h = apply_adapter(
        tiny_llama(),
        AdapterConfig(
            method="sora", options={"r": 4, "lambda": 2.0, "threshold": "absolute", "gate_init": "ones"}
        ),
        seed=0,
    )
    h.after_step(0, 1e-9)  # absolute threshold ignores the learning rate
    assert h.stats()["gate_sparsity"] == 1.0 and h.stats()["effective_rank"] == 0


def test_sora_lambda_schedules() -> None:
    base = {"lambda": 0.1, "lambda_max": 0.7, "lambda_stages": 7, "stage_steps": 10}
    lin = {**base, "lambda_schedule": "linear"}
    assert [round(lambda_at(lin, s), 6) for s in (0, 9, 10, 60, 500)] == [0.1, 0.1, 0.2, 0.7, 0.7]
    exp = {**base, "lambda_schedule": "exp_linear"}
    assert lambda_at(exp, 30) == pytest.approx(math.sqrt(0.1 * 0.7))
    loglin = {**base, "lambda_schedule": "log_linear"}
    assert lambda_at(loglin, 0) == pytest.approx(0.1) and lambda_at(loglin, 60) == pytest.approx(0.7)
    assert lambda_at({**base, "lambda_schedule": "constant"}, 60) == 0.1
    h = apply_adapter(tiny_llama(), AdapterConfig(method="sora", options={"r": 2, **lin}), seed=0)
    h.after_step(25, 1e-3)
    assert h.stats()["lambda"] == pytest.approx(0.3)


# --- tensor train ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "fin", "fout", "count"),
    [([16, 16, 16, 4, 4, 4], 4096, 64, 1100), ([8, 8, 16, 8, 8], 1024, 64, 880)],
)
def test_tt_parameter_counts(shape: list[int], fin: int, fout: int, count: int) -> None:
    gen = torch.Generator().manual_seed(0)
    down = TTLinear(fin, fout, shape, 5, gen, bias=False)
    up = TTLinear(fout, fin, shape[::-1], 5, gen, bias=False)
    assert down.num_core_params() == count and up.num_core_params() == count
    assert TTLinear(fin, fout, shape, 5, gen).num_core_params() == count  # bias counted separately


@pytest.mark.parametrize("batch_shape", [(1,), (1, 1), (3, 5), (2, 1, 4)])
def test_tt_parallel_equals_sequential(batch_shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    layer = TTLinear(96, 12, [4, 4, 6, 3, 4], 4, gen)
    x = torch.randn(*batch_shape, 96, generator=gen)
    y = layer(x)
    assert y.shape == (*batch_shape, 12)
    assert torch.allclose(y, layer.forward_sequential(x), atol=1e-6, rtol=1e-5)


def test_tt_rank_bound_and_shapes() -> None:
    gen = torch.Generator().manual_seed(0)
    layer = TTLinear(64, 64, [4, 4, 4, 4, 4, 4], 3, gen)
    w = layer.full_weight()
    assert torch.linalg.matrix_rank(w) <= 3  # bipartite W = L R with middle rank r_o = 3
    left, right = layer.factors()
    assert left.shape == (64, 3) and right.shape == (3, 64) and torch.allclose(left @ right, w, atol=1e-6)
    assert (
        factorize(4096, 3) == [16, 16, 16]
        and factorize(64, 3) == [4, 4, 4]
        and factorize(576, 3) == [9, 8, 8]
    )
    assert factorize(37, 3) == [37]


def test_tt_adapter_module_paths(ids: torch.Tensor) -> None:
    model = tiny_llama()
    h = apply_adapter(model, AdapterConfig(method="tt", options={"r": 3, "tt_shape": [4, 8, 2, 4]}), seed=0)
    mod = next(iter(h.adapter_modules.values()))
    assert mod.down.shape == [4, 8, 2, 4] and mod.up.shape == [4, 2, 8, 4] and mod.bottleneck == 8
    perturb_trainables(h)
    parallel = logits(model, ids)
    for m in h.adapter_modules.values():
        m.sequential = True
    assert torch.allclose(logits(model, ids), parallel, atol=1e-5)
    expected = sum(
        m.down.num_core_params() + m.up.num_core_params() + m.in_features + m.bottleneck
        for m in h.adapter_modules.values()
    )
    assert h.num_trainable() == expected
    nobias = apply_adapter(tiny_llama(), AdapterConfig(method="tt", options={"r": 5, "bias": False}), seed=0)
    assert nobias.num_trainable() == sum(
        m.down.num_core_params() * 2 for m in nobias.adapter_modules.values()
    )


# Which tensors of one TT adapter ([4,8,2,4]: 4 cores per map, plus biases) are zero, and which
# get a first-order signal at step 0 (a ZO projected gradient ∇ℓ·z sees only those), per init.
TT_TENSORS = {f"{m}.cores.{i}" for m in ("down", "up") for i in range(4)} | {"down.bias", "up.bias"}
TT_INIT = [
    pytest.param({}, {"up.cores.3", "up.bias"}, {"up.cores.3", "up.bias"}, True, id="default=zero_init_up"),
    pytest.param({"zero_init_up": False}, set(), TT_TENSORS, False, id="authors"),
    pytest.param(
        {"zero_init_up": True}, {"up.cores.3", "up.bias"}, {"up.cores.3", "up.bias"}, True, id="zero_init_up"
    ),
]


@pytest.mark.parametrize(("options", "zero", "signal", "identity"), TT_INIT)
def test_tt_init_zero_tensors_and_step0_signal(
    options: dict[str, Any], zero: set[str], signal: set[str], identity: bool, ids: torch.Tensor
) -> None:
    model = tiny_llama()
    base_logits = logits(model, ids)
    cfg = AdapterConfig(method="tt", options={"r": 3, "tt_shape": [4, 8, 2, 4], **options})
    h = apply_adapter(model, cfg, seed=0)
    assert torch.equal(logits(model, ids), base_logits) == identity
    loss = model(ids, labels=ids).loss
    loss.backward()
    for mod in h.adapter_modules.values():
        tensors = dict(mod.named_parameters())
        assert set(tensors) == TT_TENSORS
        assert {n for n, p in tensors.items() if not p.any()} == zero
        assert {n for n, p in tensors.items() if p.grad is not None and p.grad.abs().max() > 0} == signal
    # ZO view: moving every tensor without signal, alone, leaves the loss unchanged (exactly,
    # when the zeroed up core blocks them); moving any tensor with signal changes it.
    silent = [p for m in h.adapter_modules.values() for n, p in m.named_parameters() if n not in signal]
    with torch.no_grad():
        for p in silent:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.1)
        assert not silent or float(model(ids, labels=ids).loss) == float(loss)
        for p in (p for m in h.adapter_modules.values() for n, p in m.named_parameters() if n in signal):
            p.add_(0.1)
        assert float(model(ids, labels=ids).loss) != float(loss)


def test_tt_init_scale_matches_the_authors_code() -> None:
    """Cores randn/√r_i · σ^(1/n), σ = √(1/(in+out)): E[W²] = σ² (Glorot); bias U(±1/√out)."""
    mean_sq, bias_max = [], 0.0
    for seed in range(200):
        layer = TTLinear(16, 8, [4, 4, 2, 4], 3, torch.Generator().manual_seed(seed))
        mean_sq.append(float(layer.full_weight().detach().pow(2).mean()))
        bias_max = max(bias_max, float(layer.bias.detach().abs().max()))
    assert 0.7 < sum(mean_sq) / len(mean_sq) * (16 + 8) < 1.3
    assert 0.9 / math.sqrt(8) < bias_max <= 1 / math.sqrt(8)


# --- low-precision bases -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "arch", "targets"),
    [
        ("lora", "llama", None),
        ("tt", "llama", None),
        ("bitfit", "gpt2", None),
        ("subset", "llama", ["layers.0.mlp.up_proj", "norm"]),
        ("full", "gpt2", None),
    ],
)
def test_bf16_base_trains_float32(
    method: str, arch: str, targets: list[str] | None, ids: torch.Tensor
) -> None:
    model = BUILDERS[arch]().to(torch.bfloat16)
    h = apply_adapter(model, AdapterConfig(method=method, targets=targets), seed=0)
    assert all(p.dtype == torch.float32 for _, p in h.named_trainable())
    perturb_trainables(h)
    out = model(ids).logits
    assert torch.isfinite(out).all()


# --- errors ------------------------------------------------------------------------------------


def _one_line(exc: BaseException, field_name: str) -> None:
    assert "\n" not in str(exc) and str(exc).startswith(field_name + ":"), str(exc)


@pytest.mark.parametrize(
    ("cfg", "field_name", "match"),
    [
        (AdapterConfig(method="dora"), "adapter.method", "allowed: full, subset"),
        (AdapterConfig(method="lora", options={"r": 0}), "adapter.r", "> 0"),
        (AdapterConfig(method="lora", options={"r": -2}), "adapter.r", "> 0"),
        (AdapterConfig(method="lora", options={"r": 2.5}), "adapter.r", "integer"),
        (AdapterConfig(method="lora", options={"r": float("inf")}), "adapter.r", "integer"),
        (AdapterConfig(method="lora", options={"alpha": "big"}), "adapter.alpha", "number"),
        (
            AdapterConfig(method="tt", options={"zero_init_up": "yes"}),
            "adapter.zero_init_up",
            "true or false",
        ),
        (AdapterConfig(method="lora", options={"rank": 4}), "adapter.rank", "allowed: r, alpha"),
        (AdapterConfig(method="lora_xs", options={"svd": "fast"}), "adapter.svd", "exact, randomized"),
        (AdapterConfig(method="sora", options={"lambda": -1.0}), "adapter.lambda", ">= 0"),
        (
            AdapterConfig(method="sora", options={"lambda_schedule": "exp_linear", "lambda": 0.0}),
            "adapter.lambda",
            "exp_linear",
        ),
        (
            AdapterConfig(method="sora", options={"lambda_schedule": "cosine"}),
            "adapter.lambda_schedule",
            "log_linear",
        ),
        (AdapterConfig(method="tt", options={"tt_shape": "16,x"}), "adapter.tt_shape", "integers"),
        (AdapterConfig(method="tt", options={"bottleneck": 0}), "adapter.bottleneck", "> 0"),
        (AdapterConfig(method="subset"), "adapter.targets", "needs target patterns"),
        (AdapterConfig(method="full", targets=["q_proj"]), "adapter.targets", "subset"),
        (AdapterConfig(method="lora", targets=["re:("]), "adapter.targets", "bad regex"),
    ],
)
def test_config_errors(cfg: AdapterConfig, field_name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        validate_config(cfg)
    _one_line(err.value, field_name)
    with pytest.raises(ConfigError):  # apply_adapter checks the same things first
        apply_adapter(tiny_llama(), cfg)


@pytest.mark.parametrize(
    ("arch", "cfg", "field_name", "match"),
    [
        ("llama", AdapterConfig(method="lora", options={"r": 17}), "adapter.r", "larger than layer .*k_proj"),
        (
            "llama",
            AdapterConfig(method="lora_xs", options={"r": 40}),
            "adapter.r",
            "use r <= 16 for these targets",
        ),
        (
            "llama",
            AdapterConfig(method="lora", targets=["qproj"]),
            "adapter.targets",
            "matches no module; linear modules include: model.layers.0",
        ),
        ("llama", AdapterConfig(method="lora", targets=["input_layernorm"]), "adapter.targets", "non-linear"),
        (
            "llama",
            AdapterConfig(method="subset", targets=["nothing_here"]),
            "adapter.targets",
            "parameters include",
        ),
        (
            "llama",
            AdapterConfig(method="tt", options={"tt_shape": [4, 4, 3, 8]}),
            "adapter.tt_shape",
            "no prefix whose product is 32",
        ),
        (
            "llama",
            AdapterConfig(method="tt", options={"tt_shape": [4, 8, 4, 4], "bottleneck": 8}),
            "adapter.tt_shape",
            "bottleneck",
        ),
        ("llama", AdapterConfig(method="bitfit"), "adapter.method", "no bias parameters"),
    ],
)
def test_model_errors(arch: str, cfg: AdapterConfig, field_name: str, match: str) -> None:
    validate_config(cfg)  # model-independent checks pass
    with pytest.raises(AdapterError, match=match) as err:
        apply_adapter(BUILDERS[arch](), cfg)
    _one_line(err.value, field_name)


def test_second_adapter_is_refused() -> None:
    model = tiny_llama()
    apply_adapter(model, AdapterConfig(method="lora"), seed=0)
    with pytest.raises(AdapterError, match="already carries an adapter"):
        apply_adapter(model, AdapterConfig(method="sora"), seed=0)


def test_validate_accepts_defaults_and_cli_strings() -> None:
    for name in ADAPTERS:
        validate_config(AdapterConfig(method=name, targets=["q_proj"] if name == "subset" else None))
    validate_config(AdapterConfig(method="tt", options={"tt_shape": "[16, 16, 16, 4, 4, 4]", "r": 5.0}))


# --- a 10-line MeZO loop per method ------------------------------------------------------------


def mezo(handle: AdapterHandle, loss_fn: Any, steps: int, lr: float, eps: float = 1e-3) -> None:
    """MeZO-SGD: seeded ±eps perturbation along z, projected gradient, z regenerated for the update."""
    params = [p for g in handle.param_groups(0.0) for p in g["params"]]

    def move(step: int, scale: float) -> None:
        gen = torch.Generator().manual_seed(1000 + step)
        for p in params:
            p.add_(torch.randn(p.shape, generator=gen) * scale)

    with torch.no_grad():
        for step in range(steps):
            move(step, eps)
            plus = loss_fn()
            move(step, -2 * eps)
            minus = loss_fn()
            move(step, eps)
            move(step, -lr * (plus - minus) / (2 * eps))
            handle.after_step(step, lr)


STEPS = {"sora": 60}  # SoRA: 30 steps gave a 0.009 drop here, at the edge of the 0.01 bar
LR = {"full": 3e-3, "subset": 1e-1, "bitfit": 1e-2, "lora": 1e-2, "lora_xs": 3.0, "sora": 3e-2, "tt": 1e-2}


@pytest.mark.parametrize("case", PARAMS)
def test_mezo_training_reduces_loss(case: Case) -> None:
    model = case.build()
    batch = torch.randint(7, VOCAB, (4, 12), generator=torch.Generator().manual_seed(1))
    handle = apply_adapter(model, case.cfg(), seed=0)

    def loss() -> float:
        with torch.no_grad():
            return float(model(batch, labels=batch).loss)

    before = loss()
    mezo(handle, loss, steps=STEPS.get(case.method, 30), lr=LR[case.method])
    after = loss()
    assert after < before - 0.01, (before, after)
