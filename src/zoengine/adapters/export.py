"""Adapter exports: ``native`` (ours, exact), ``peft-lora`` (PEFT's LoRA files) and ``merged``.

All formats are built in a temp directory beside ``dest`` and swapped in at the end
(``zoengine.io.atomic_dir``), so an existing export is never half-overwritten.

native     zoengine_adapter.safetensors (adapter tensors, trainable and frozen, e.g. LoRA-XS A/B; for
           full/subset/bitfit the trained base tensors) + zoengine_adapter.json (schema version,
           method, targets, options, seed, per-module shapes/ranks, base model id and weights hash,
           zoengine version). Own file names, so nothing mistakes it for a PEFT adapter.
           ``load_native`` re-applies it onto a fresh base, refusing a base whose hash differs, and
           reproduces the logits; it still reads schema-1 exports (PEFT's file names).
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

from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.targets import ADAPTER_PREFIX, is_conv1d
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError
from zoengine.export_formats import FORMATS as EXPORT_FORMATS  # the one registry
from zoengine.io import atomic_dir

log = logging.getLogger(__name__)

NATIVE_FORMAT = "zoengine-adapter"
NATIVE_SCHEMA = 2  # 1: PEFT's file names (read, never written); 2: zoengine_adapter.* + hash scheme
NATIVE_CONFIG = "zoengine_adapter.json"
NATIVE_WEIGHTS = "zoengine_adapter.safetensors"
CONFIG_NAME = "adapter_config.json"  # PEFT's names (peft-lora; native schema 1)
WEIGHTS_NAME = "adapter_model.safetensors"


def _is_adapter_key(name: str) -> bool:
    return any(part.startswith(ADAPTER_PREFIX) for part in name.split("."))


def base_weights_hash(
    model: nn.Module, samples: int = 8, per_tensor: int = 1024, *, scheme: str = "sha256-bf16"
) -> str:
    """Fingerprint of the base weights, cheap enough for a 7B model.

    sha256 over (a) every base parameter's name and shape, in sorted order, and (b) for up to
    ``samples`` tensors spread evenly over that order (first and last included), ``per_tensor``
    evenly strided values, rounded to bfloat16 (scheme ``sha256-bf16``: a float32 copy and the
    bf16 copy made from it hash the same) or kept float32 (``sha256``, the first scheme, which
    schema-1 exports hold). Independent of device. The result starts with ``<scheme>:``.
    """
    params = sorted((n, p) for n, p in model.named_parameters() if not _is_adapter_key(n))
    h = hashlib.sha256()
    for n, p in params:
        h.update(f"{n}:{tuple(p.shape)};".encode())
    if params:
        k = min(samples, len(params))
        picks = sorted({round(i * (len(params) - 1) / max(k - 1, 1)) for i in range(k)})
        for i in picks:
            flat = _offloaded_value(model, *params[i]).detach().reshape(-1)
            step = max(1, flat.numel() // per_tensor)
            values = flat[::step][:per_tensor]
            if scheme == "sha256-bf16":
                values = values.to(torch.bfloat16)
            h.update(values.float().cpu().contiguous().numpy().tobytes())
    return f"{scheme}:" + h.hexdigest()


def _offloaded_value(model: nn.Module, name: str, p: torch.Tensor) -> torch.Tensor:
    """``p`` itself, or its stored value when accelerate offloaded it (``meta`` + hook weights_map)."""
    if p.device.type != "meta":
        return p
    module_name, _, local = name.rpartition(".")
    hook = getattr(model.get_submodule(module_name) if module_name else model, "_hf_hook", None)
    weights = getattr(hook, "weights_map", None)
    if weights is None or local not in weights:
        raise ValueError(f"base tensor {name} is offloaded and its stored value cannot be found")
    return weights[local]


def export_adapter(
    model: nn.Module,
    handle: AdapterHandle,
    dest: Path,
    fmt: str,
    *,
    base_model_id: str,
    base_model_hash: str,
    tokenizer: Any = None,
    dtype: str | torch.dtype | None = None,
    gguf_type: str = "f16",
    gguf_pre: str | None = None,
    card: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``handle``'s adapter to directory ``dest`` in format ``fmt``; return the files written.

    ``tokenizer`` is saved with ``merged`` (tokenizer files and chat template: the folder is
    self-contained) and written into ``gguf``'s metadata; the adapter-only formats do not carry it.
    ``dtype`` (float32 | bfloat16 | float16) is the merged weights' dtype (default: the base's);
    ``gguf_type`` is f32 | f16 | q8_0, ``gguf_pre`` overrides the tokenizer's llama.cpp
    pre-tokenizer name (the zoo's SmolLM2 came from a GGUF that says "smollm"); ``card``
    (optimizer, task, checkpoint, metrics: one line each) goes into peft-lora's README.md. Raises AdapterError (one line) where a format cannot
    represent the method exactly.
    """
    if fmt not in EXPORT_FORMATS:
        raise AdapterError(
            f"unknown export format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}", field="export.format"
        )
    if fmt == "peft-lora" and handle._method.no_lora_reason:
        raise AdapterError(handle._method.no_lora_reason, field="export.format")
    if fmt in ("merged", "gguf") and handle._method.no_merge_reason:
        raise AdapterError(handle._method.no_merge_reason, field="export.format")
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        if fmt == "native":
            _write_native(model, handle, tmp, base_model_id, base_model_hash)
        elif fmt == "peft-lora":
            _write_peft(model, handle, tmp, base_model_id, base_model_hash, card)
        elif fmt == "merged":
            _write_merged(model, handle, tmp, base_model_id, base_model_hash, dtype=_dtype(dtype))
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        else:
            from zoengine.adapters.gguf import write_gguf

            sd = merged_state_dict(model, handle)
            write_gguf(model, sd, tmp, tokenizer, gguf_type, base_model_id, base_model_hash, pre=gguf_pre)
        names = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
    return [dest / n for n in names]


MERGED_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in MERGED_DTYPES:
        raise AdapterError(f"must be one of {', '.join(MERGED_DTYPES)} (got {dtype!r})", field="--dtype")
    return MERGED_DTYPES[dtype]


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
        "schema_version": NATIVE_SCHEMA,
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
    save_file(tensors, str(tmp / NATIVE_WEIGHTS), metadata={"format": "pt", "zoengine_method": handle.method})
    (tmp / NATIVE_CONFIG).write_text(
        json.dumps(_json_safe(meta), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def load_native(model: nn.Module, dest: Path, *, allow_other_base: bool = False) -> AdapterHandle:
    """Re-apply a native export onto a freshly loaded base ``model`` and load its tensors.

    Refuses (one line) a base whose weights hash differs from the one the adapter was trained on,
    unless ``allow_other_base``. Reads schema 2 (zoengine_adapter.*) and schema 1 (PEFT's names).
    """
    from safetensors.torch import load_file

    from zoengine.adapters import _internal_apply

    dest = Path(dest)
    cfg_path, weights_path = dest / NATIVE_CONFIG, dest / NATIVE_WEIGHTS
    if not cfg_path.is_file():  # schema 1 used PEFT's file names
        cfg_path, weights_path = dest / CONFIG_NAME, dest / WEIGHTS_NAME
    if not cfg_path.is_file() or not weights_path.is_file():
        raise AdapterError(
            f"{dest} is not a native zoengine adapter (needs {NATIVE_CONFIG} and {NATIVE_WEIGHTS})",
            field="export.path",
        )
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"cannot read {cfg_path}: {exc}".splitlines()[0], field="export.path") from None
    if not isinstance(meta, dict) or meta.get("format") != NATIVE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise AdapterError(
            f"{cfg_path} is not a native zoengine adapter (format {found!r})",
            field="export.path",
        )
    schema = int(meta.get("schema_version", meta.get("format_version", 1)))
    if schema > NATIVE_SCHEMA:
        raise AdapterError(
            f"{dest} is a schema-{schema} adapter; this zoengine reads up to {NATIVE_SCHEMA}: upgrade zoengine",
            field="export.path",
        )
    stored = meta.get("base_model_hash")
    if isinstance(stored, str) and stored.split(":", 1)[0] in ("sha256", "sha256-bf16"):
        have = base_weights_hash(model, scheme=stored.split(":", 1)[0])
        if have != stored:
            text = (
                f"{dest} was trained on other base weights ({meta.get('base_model_id')!r}, "
                f"{stored[:24]}…; this model: {have[:24]}…): load it onto that base"
            )
            if not allow_other_base:
                raise AdapterError(text, field="export.path")
            log.warning("%s (allowed)", text)
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


def _is_encoder_classifier(model: nn.Module) -> bool:
    """zoengine's own pooling classifier (``zoengine.models.EncoderClassifier``)."""
    return type(model).__name__ == "EncoderClassifier" and hasattr(model, "encoder") and hasattr(model, "classifier")


def _write_peft(
    model: nn.Module,
    handle: AdapterHandle,
    tmp: Path,
    base_id: str,
    base_hash: str,
    card: dict[str, Any] | None = None,
) -> None:
    """PEFT LoRA files. For zoengine's pooling classifier the adapter is written for the plain
    encoder (``AutoModel``: no ``encoder.`` wrapper prefix) and its head travels as PEFT's
    ``modules_to_save=["classifier"]``: attach ``nn.Linear(hidden, labels)`` as ``.classifier``
    to the encoder before ``PeftModel.from_pretrained``; logits are
    ``classifier(normalize(mean_pool(last_hidden_state)))`` (the README says so)."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    encoder_head = _is_encoder_classifier(model)
    strip = "encoder." if encoder_head else ""
    factors = handle.lora_factors()
    tensors: dict[str, Tensor] = {}
    ranks: dict[str, int] = {}
    for full_name, (a, b) in factors.items():
        target = full_name.removeprefix(strip)
        if a.shape[0] == 0:  # every gate of this module is zero: keep a rank-1 zero LoRA (PEFT needs r >= 1)
            a, b = torch.zeros(1, a.shape[1]), torch.zeros(b.shape[0], 1)
        ranks[target] = int(a.shape[0])
        prefix = f"base_model.model.{target}"
        tensors[f"{prefix}.lora_A.weight"] = a.detach().float().cpu().contiguous()
        tensors[f"{prefix}.lora_B.weight"] = b.detach().float().cpu().contiguous()
    if encoder_head:
        head = model.get_submodule("classifier")
        for k, v in head.state_dict().items():
            tensors[f"base_model.model.classifier.{k}"] = v.detach().float().cpu().contiguous()
    r = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {re.escape(t): rk for t, rk in ranks.items() if rk != r}
    conv = any(is_conv1d(model.get_submodule(t)) for t in factors)
    config = LoraConfig(
        r=r,
        lora_alpha=r,  # scales are folded into lora_B: PEFT scaling alpha/r must be 1
        target_modules=list(ranks),
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        lora_dropout=0.0,
        bias="none",
        fan_in_fan_out=conv,
        base_model_name_or_path=base_id,
        task_type=_task_type(model),
        modules_to_save=["classifier"] if encoder_head else None,
    )
    config.save_pretrained(str(tmp))
    save_file(
        tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "zoengine_base_model_hash": base_hash}
    )
    head_shape = tuple(model.get_submodule("classifier").weight.shape) if encoder_head else None
    (tmp / "README.md").write_text(_peft_card(handle, base_id, card or {}, head_shape), encoding="utf-8")


def _peft_card(handle: AdapterHandle, base_id: str, card: dict[str, Any], head: tuple[int, ...] | None) -> str:
    """A model card: base model, method, task, metrics, and how to load it."""
    lines = [
        "---",
        "library_name: peft",
        f"base_model: {base_id}",
        "tags: [zoengine, zeroth-order, lora]",
        "---",
        "",
        f"# LoRA adapter for {base_id} (zoengine, {handle.method})",
        "",
        f"- base model: `{base_id}`",
        f"- method: {handle.method} ({', '.join(f'{k}={v}' for k, v in sorted(handle.options.items()) if not str(k).startswith('_'))}),"
        " exported as an exact LoRA (scales folded into lora_B, lora_alpha = r)",
    ]
    for key, label in (("optimizer", "optimizer"), ("task", "task"), ("checkpoint", "checkpoint"), ("metrics", "metrics")):
        if card.get(key):
            lines.append(f"- {label}: {card[key]}")
    lines += ["", "## Load", "", "```python"]
    if head is None:
        lines += [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM  # or the base's AutoModel* class",
            f'base = AutoModelForCausalLM.from_pretrained("{base_id}")',
            'model = PeftModel.from_pretrained(base, "THIS_FOLDER")',
        ]
    else:
        labels, hidden = head
        lines += [
            "import torch",
            "from peft import PeftModel",
            "from transformers import AutoModel",
            f'encoder = AutoModel.from_pretrained("{base_id}")',
            f"encoder.classifier = torch.nn.Linear({hidden}, {labels})  # the trained head comes from modules_to_save",
            'model = PeftModel.from_pretrained(encoder, "THIS_FOLDER")',
            "h = model(input_ids=ids, attention_mask=mask).last_hidden_state",
            "m = mask.unsqueeze(-1).to(h.dtype)",
            "pooled = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1.0), dim=-1)",
            "logits = model.base_model.model.classifier(pooled)",
        ]
    lines += ["```", ""]
    return "\n".join(lines)


# --- merged ------------------------------------------------------------------------------------


def merged_state_dict(model: nn.Module, handle: AdapterHandle) -> dict[str, Tensor]:
    """The base's state dict with linear adapters added into the weights (and trained tensors of
    full/subset/bitfit back in their original dtype); no adapter keys."""
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
    return sd


def _write_merged(
    model: nn.Module,
    handle: AdapterHandle,
    tmp: Path,
    base_id: str,
    base_hash: str,
    dtype: torch.dtype | None = None,
) -> None:
    if not hasattr(model, "save_pretrained"):
        raise AdapterError(
            f"{type(model).__name__} (an encoder with zoengine's own pooling head) has no transformers "
            "class to load a merged folder: use native or peft-lora",
            field="export.format",
        )
    sd = merged_state_dict(model, handle)
    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.save_pretrained(str(tmp), state_dict=sd)
    if dtype is not None:  # save_pretrained names the live model's dtype; the files hold ``dtype``
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        for key in ("dtype", "torch_dtype"):
            if key in cfg or key == "dtype":
                cfg[key] = str(dtype).removeprefix("torch.")
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (tmp / "zoengine_merged.json").write_text(
        json.dumps(
            {"method": handle.method, "base_model_id": base_id, "base_model_hash": base_hash}, indent=2
        )
        + "\n",
        encoding="utf-8",
    )
