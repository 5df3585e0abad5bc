"""Every adapter on the real zoo model (SmolLM2-135M-Instruct, float32): counts, forward, a few MeZO
steps, and exports. The base is loaded once and deep-copied per method; about a minute on 2 CPUs.

    OMP_NUM_THREADS=1 pytest -m integration tests/test_adapters_integration.py
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from zoengine.adapters import AdapterHandle, apply_adapter, base_weights_hash, export_adapter, load_native
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError

pytestmark = pytest.mark.integration

NAME = "smollm2-135m-instruct"
LAYERS, HIDDEN, KV, FFN = 30, 576, 192, 1536
# (in, out) of the 7 default linears of one SmolLM2 block: q, k, v, o, gate, up, down
LINEARS = [
    (HIDDEN, HIDDEN),
    (HIDDEN, KV),
    (HIDDEN, KV),
    (HIDDEN, HIDDEN),
    (HIDDEN, FFN),
    (HIDDEN, FFN),
    (FFN, HIDDEN),
]


def _model_dir() -> Path:
    try:
        from zoengine import assets

        return Path(assets.ensure(NAME))
    except Exception as exc:  # noqa: BLE001 - fall back to a local converted copy while developing
        local = Path(os.environ.get("ZOENGINE_SMOLLM2_DIR", "/tmp/smollm2-f32"))
        if (local / "config.json").exists():
            return local
        pytest.skip(f"{NAME} not available: {exc}")


@pytest.fixture(scope="module")
def base() -> tuple[nn.Module, Any, Path]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _model_dir()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path), path


@pytest.fixture(scope="module")
def batch(base: tuple[nn.Module, Any, Path]) -> torch.Tensor:
    tok = base[1]
    text = ["The movie was wonderful and the acting was great.", "A boring, awful film with a terrible plot."]
    return tok(text, return_tensors="pt", padding="max_length", max_length=16, truncation=True)["input_ids"]


def _loss(model: nn.Module, batch: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(batch, labels=batch).loss)


def _mezo(handle: AdapterHandle, model: nn.Module, batch: torch.Tensor, steps: int, lr: float) -> None:
    params = [p for g in handle.param_groups(0.0) for p in g["params"]]

    def move(step: int, scale: float) -> None:
        gen = torch.Generator().manual_seed(step)
        for p in params:
            p.add_(torch.randn(p.shape, generator=gen) * scale)

    with torch.no_grad():
        for step in range(steps):
            move(step, 1e-3)
            plus = _loss(model, batch)
            move(step, -2e-3)
            minus = _loss(model, batch)
            move(step, 1e-3)
            move(step, -lr * (plus - minus) / 2e-3)
            handle.after_step(step, lr)


CASES = [
    ("lora", {"r": 8}, sum(8 * (i + o) for i, o in LINEARS) * LAYERS, 1e-3),
    ("lora_xs", {"r": 8, "svd": "randomized"}, 64 * 7 * LAYERS, 1e-4),
    ("sora", {"r": 8}, sum(8 * (i + o) + 8 for i, o in LINEARS) * LAYERS, 1e-3),
    ("tt", {}, None, 1e-3),
    ("subset", {}, None, 1e-4),
    ("full", {}, None, 1e-5),
]


@pytest.mark.parametrize(("method", "options", "count", "lr"), CASES, ids=[c[0] for c in CASES])
def test_method_on_smollm2(
    method: str,
    options: dict[str, Any],
    count: int | None,
    lr: float,
    base: tuple[nn.Module, Any, Path],
    batch: torch.Tensor,
    tmp_path: Path,
) -> None:
    model = copy.deepcopy(base[0])
    targets = ["model.layers.29", "model.norm"] if method == "subset" else None
    handle = apply_adapter(model, AdapterConfig(method=method, targets=targets, options=options), seed=0)
    if count is not None:
        assert handle.num_trainable() == count
    if method == "tt":  # 2 adapters per block, 576 -> 64 -> 576 with [9,8,8] x [4,4,4] cores, rank 5, biases
        assert len(handle.targets) == 2 * LAYERS
        mod = next(iter(handle.adapter_modules.values()))
        assert mod.down.shape == [9, 8, 8, 4, 4, 4] and mod.bottleneck == 64
    before = _loss(model, batch)
    _mezo(handle, model, batch, steps=6, lr=lr)
    after = _loss(model, batch)
    assert after < before, (before, after)
    if method in ("lora", "tt"):  # native round trip on a fresh copy of the base
        with torch.no_grad():
            want = model(batch, logits_to_keep=1).logits
        base_hash = base_weights_hash(base[0])
        export_adapter(model, handle, tmp_path / "n", "native", base_model_id=NAME, base_model_hash=base_hash)
        fresh = copy.deepcopy(base[0])
        load_native(fresh, tmp_path / "n")
        with torch.no_grad():
            assert (fresh(batch, logits_to_keep=1).logits - want).abs().max() <= 1e-5
    if method == "sora":
        from peft import PeftModel

        with torch.no_grad():
            want = model(batch, logits_to_keep=1).logits
        export_adapter(model, handle, tmp_path / "p", "peft-lora", base_model_id=NAME, base_model_hash="x")
        peft_model = PeftModel.from_pretrained(copy.deepcopy(base[0]), tmp_path / "p")
        with torch.no_grad():
            assert (peft_model(batch, logits_to_keep=1).logits - want).abs().max() <= 1e-4


def test_bitfit_refused_and_hash(base: tuple[nn.Module, Any, Path]) -> None:
    model = base[0]
    with pytest.raises(AdapterError, match="no bias parameters"):
        apply_adapter(copy.deepcopy(model), AdapterConfig(method="bitfit"))
    h = base_weights_hash(model)
    assert h == base_weights_hash(copy.deepcopy(model)) and len(h) == len("sha256-bf16:") + 64
