"""Adapter exports: ``native`` (ours, exact), ``peft-lora`` (PEFT's LoRA files) and ``merged``.

All formats are built in a temp directory beside ``dest`` and swapped in at the end
(``zoengine.io.atomic_dir``), so an existing export is never half-overwritten.

native     adapter_model.safetensors (adapter tensors, trainable and frozen, e.g. LoRA-XS A/B; for
           full/subset/bitfit the trained base tensors) + adapter_config.json (method, targets, options,
           seed, per-module shapes/ranks, base model id and hash, zoengine version). ``load_native``
           re-applies it onto a fresh base and reproduces the logits.
peft-lora  adapter_config.json + adapter_model.safetensors loadable by ``PeftModel.from_pretrained``.
           Exact for lora, lora_xs (R folded: A' = R A) and sora (zero-gate ranks dropped, gate and
           scale folded into B, per-module ranks in rank_pattern). Scales are folded into B and
           lora_alpha = r, so PEFT's scaling is 1.
merged     the base with linear adapters added into the weights (or the trained weights of
           full/subset/bitfit), written by ``save_pretrained``; TT adapters are not linear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoengine.adapters.base import ADAPTER_PREFIX, AdapterHandle, is_conv1d
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError
from zoengine.io import atomic_dir

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("native", "peft-lora", "merged")
NATIVE_FORMAT = "zoengine-adapter"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def _is_adapter_key(name: str) -> bool:
    return any(part.startswith(ADAPTER_PREFIX) for part in name.split("."))


def base_weights_hash(model: nn.Module, samples: int = 8, per_tensor: int = 1024) -> str:
    """Fingerprint of the base weights, cheap enough for a 7B model.

    sha256 over (a) every base parameter's name and shape, in sorted order, and (b) for up to
    ``samples`` tensors spread evenly over that order (first and last included), ``per_tensor``
    evenly strided values as float32. Independent of device; float32 vs bf16 copies of a model
    differ (their values differ). Compute it on the freshly loaded base, before training.
    """
    params = sorted((n, p) for n, p in model.named_parameters() if not _is_adapter_key(n))
    h = hashlib.sha256()
    for n, p in params:
        h.update(f"{n}:{tuple(p.shape)};".encode())
    if params:
        k = min(samples, len(params))
        picks = sorted({round(i * (len(params) - 1) / max(k - 1, 1)) for i in range(k)})
        for i in picks:
            flat = params[i][1].detach().reshape(-1)
            step = max(1, flat.numel() // per_tensor)
            h.update(flat[::step][:per_tensor].float().cpu().contiguous().numpy().tobytes())
    return "sha256:" + h.hexdigest()


def export_adapter(
    model: nn.Module,
    handle: AdapterHandle,
    dest: Path,
    fmt: str,
    *,
    base_model_id: str,
    base_model_hash: str,
    tokenizer: Any = None,
) -> list[Path]:
    """Write ``handle``'s adapter to directory ``dest`` in format ``fmt``; return the files written.

    ``tokenizer`` (optional) is saved alongside, which makes a ``merged`` export self-contained.
    Raises AdapterError (one line) where a format cannot represent the method exactly.
    """
    if fmt not in EXPORT_FORMATS:
        raise AdapterError(
            f"unknown export format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}", field="export.format"
        )
    writer = {"native": _write_native, "peft-lora": _write_peft, "merged": _write_merged}[fmt]
    if fmt == "peft-lora" and handle._method.no_lora_reason:
        raise AdapterError(handle._method.no_lora_reason, field="export.format")
    if fmt == "merged" and handle._method.no_merge_reason:
        raise AdapterError(handle._method.no_merge_reason, field="export.format")
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        writer(model, handle, tmp, base_model_id, base_model_hash)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        names = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
    return [dest / n for n in names]


# --- native ------------------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _write_native(model: nn.Module, handle: AdapterHandle, tmp: Path, base_id: str, base_hash: str) -> None:
    from safetensors.torch import save_file

    from zoengine import __version__

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in handle.native_state_dict().items()}
    cfg = handle.config
    meta = {
        "format": NATIVE_FORMAT,
        "format_version": 1,
        "zoengine_version": __version__,
        "method": handle.method,
        "config": {"method": cfg.method, "targets": cfg.targets, "options": dict(cfg.options or {})},
        "options": handle.options,
        "seed": handle.seed,
        "targets": handle.targets,
        "modules": handle.describe(),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "num_trainable": handle.num_trainable(),
        "base_model_id": base_id,
        "base_model_hash": base_hash,
        "base_model_class": type(model).__name__,
    }
    save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoengine_method": handle.method})
    (tmp / CONFIG_NAME).write_text(
        json.dumps(_json_safe(meta), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def load_native(model: nn.Module, dest: Path) -> AdapterHandle:
    """Re-apply a native export onto a freshly loaded base ``model`` and load its tensors."""
    from safetensors.torch import load_file

    from zoengine.adapters import _internal_apply

    dest = Path(dest)
    cfg_path, weights_path = dest / CONFIG_NAME, dest / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights_path.is_file():
        raise AdapterError(
            f"{dest} is not a native zoengine adapter (needs {CONFIG_NAME} and {WEIGHTS_NAME})",
            field="export.path",
        )
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    if meta.get("format") != NATIVE_FORMAT:
        raise AdapterError(
            f"{cfg_path} is not a native zoengine adapter (format {meta.get('format')!r})",
            field="export.path",
        )
    base_hash = base_weights_hash(model)
    if meta.get("base_model_hash") and meta["base_model_hash"] != base_hash:
        log.warning(
            "adapter %s was trained on different base weights (hash %s, this model %s)",
            dest,
            meta["base_model_hash"],
            base_hash,
        )
    c = meta["config"]
    cfg = AdapterConfig(method=c["method"], targets=c["targets"], options=dict(c["options"]))
    handle = _internal_apply(model, cfg, int(meta.get("seed", 0)), _skip_init=True)
    if handle.targets != meta["targets"]:
        raise AdapterError(
            f"adapter targets {len(meta['targets'])} modules that do not match this model ({len(handle.targets)} found)",
            field="adapter.targets",
        )
    own = handle.native_state_dict()
    tensors = load_file(str(weights_path))
    if set(own) != set(tensors):
        missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        raise AdapterError(
            f"adapter file does not fit (missing {missing[:3]}, unexpected {extra[:3]})", field="export.path"
        )
    with torch.no_grad():
        for k, t in own.items():
            if tuple(t.shape) != tuple(tensors[k].shape):
                raise AdapterError(
                    f"tensor {k} has shape {tuple(tensors[k].shape)}, expected {tuple(t.shape)}",
                    field="export.path",
                )
            t.copy_(tensors[k])
    return handle


# --- peft-lora ---------------------------------------------------------------------------------


def _task_type(model: nn.Module) -> str | None:
    return "CAUSAL_LM" if type(model).__name__.endswith("ForCausalLM") else None


def _write_peft(model: nn.Module, handle: AdapterHandle, tmp: Path, base_id: str, base_hash: str) -> None:
    from peft import LoraConfig
    from safetensors.torch import save_file

    factors = handle.lora_factors()
    tensors: dict[str, Tensor] = {}
    ranks: dict[str, int] = {}
    for target, (a, b) in factors.items():
        if a.shape[0] == 0:  # every gate of this module is zero: keep a rank-1 zero LoRA (PEFT needs r >= 1)
            a, b = torch.zeros(1, a.shape[1]), torch.zeros(b.shape[0], 1)
        ranks[target] = int(a.shape[0])
        prefix = f"base_model.model.{target}"
        tensors[f"{prefix}.lora_A.weight"] = a.detach().float().cpu().contiguous()
        tensors[f"{prefix}.lora_B.weight"] = b.detach().float().cpu().contiguous()
    r = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {re.escape(t): rk for t, rk in ranks.items() if rk != r}
    conv = any(is_conv1d(model.get_submodule(t)) for t in factors)
    config = LoraConfig(
        r=r,
        lora_alpha=r,  # scales are folded into lora_B: PEFT scaling alpha/r must be 1
        target_modules=list(factors),
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        lora_dropout=0.0,
        bias="none",
        fan_in_fan_out=conv,
        base_model_name_or_path=base_id,
        task_type=_task_type(model),
    )
    config.save_pretrained(str(tmp))
    save_file(
        tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoengine_base_model_hash": base_hash}
    )


# --- merged ------------------------------------------------------------------------------------


def _write_merged(model: nn.Module, handle: AdapterHandle, tmp: Path, base_id: str, base_hash: str) -> None:
    sd = {k: v for k, v in model.state_dict().items() if not _is_adapter_key(k)}
    if handle.adapter_modules:
        for target, (a, b) in handle.lora_factors().items():
            key = f"{target}.weight"
            w = sd[key]
            delta = b.float() @ a.float()  # out×in
            if is_conv1d(model.get_submodule(target)):
                delta = delta.T  # GPT-2 Conv1D stores in×out
            sd[key] = (w.float() + delta.to(w.device)).to(w.dtype)
    for name, dtype in handle.orig_dtypes.items():
        if name in sd:
            sd[name] = sd[name].to(dtype)
    model.save_pretrained(str(tmp), state_dict=sd)
    (tmp / "zoengine_merged.json").write_text(
        json.dumps(
            {"method": handle.method, "base_model_id": base_id, "base_model_hash": base_hash}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )
