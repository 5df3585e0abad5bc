"""Parameter-efficient adapters behind one registry: full, subset, bitfit, lora, lora_xs, sora, tt.

    from zoengine.adapters import apply_adapter, export_adapter, load_native
    handle = apply_adapter(model, cfg.adapter, seed=0)       # freezes the base, injects adapters
    opt = SomeZOOptimizer(handle.param_groups(weight_decay=0.0), ...)
    ... opt.step(closure); handle.after_step(step, lr) ...    # SoRA's proximal gate step
    export_adapter(model, handle, Path("out"), "peft-lora", base_model_id=..., base_model_hash=...)

Every method is one module with an ``AdapterMethod`` subclass registered in ``ADAPTERS``; its
``options`` (a ``zoengine.schema`` dataclass: type, default, range, help) are the method's
``[adapter]`` keys.
``validate_config`` does the model-independent checks (ConfigError), ``apply_adapter`` the
model-dependent ones (AdapterError: rank vs layer size, targets matching nothing, TT shapes).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from zoengine.adapters.base import AdapterMethod
from zoengine.adapters.bitfit import BitFit
from zoengine.adapters.export import EXPORT_FORMATS, base_weights_hash, export_adapter, load_native
from zoengine.adapters.full import Full
from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.lora import Lora
from zoengine.adapters.lora_xs import LoraXS
from zoengine.adapters.sora import Sora
from zoengine.adapters.subset import Subset
from zoengine.adapters.tt import TensorTrain
from zoengine.config import AdapterConfig
from zoengine.errors import ConfigError

ADAPTERS: dict[str, AdapterMethod] = {}


def register(method: AdapterMethod) -> AdapterMethod:
    """Add a method to the registry (lowercase snake_case names, no duplicates)."""
    if method.name in ADAPTERS or not method.name.isidentifier() or method.name != method.name.lower():
        raise ValueError(f"bad or duplicate adapter name {method.name!r}")
    ADAPTERS[method.name] = method
    return method


for _m in (Full(), Subset(), BitFit(), Lora(), LoraXS(), Sora(), TensorTrain()):
    register(_m)


def get_method(name: str) -> AdapterMethod:
    if name not in ADAPTERS:
        raise ConfigError(
            f"unknown adapter; allowed: {', '.join(ADAPTERS)} (got {name!r})", field="adapter.method"
        )
    return ADAPTERS[name]


def validate_config(cfg: AdapterConfig) -> None:
    """Method known, options known and in range, target patterns well-formed (no model needed)."""
    method = get_method(cfg.method)
    method.resolve_options(cfg)
    method.check_targets(cfg)


def apply_adapter(model: nn.Module, cfg: AdapterConfig, *, seed: int = 0) -> AdapterHandle:
    """Freeze ``model``, inject the adapter described by ``cfg`` and return its handle.

    Trainable tensors are float32 whatever the base dtype. Raises ConfigError for bad options and
    AdapterError when the settings do not fit this model (field ``adapter.r``/``targets``/``tt_shape``).
    """
    method = get_method(cfg.method)
    opts = method.resolve_options(cfg)
    return method.apply(model, cfg, opts, seed)


def _internal_apply(model: nn.Module, cfg: AdapterConfig, seed: int, **flags: Any) -> AdapterHandle:
    """apply_adapter with internal flags (``_skip_init``: load_native overwrites the init)."""
    method = get_method(cfg.method)
    opts = method.resolve_options(cfg)
    opts.update(flags)
    return method.apply(model, cfg, opts, seed)


__all__ = [
    "ADAPTERS",
    "EXPORT_FORMATS",
    "AdapterHandle",
    "AdapterMethod",
    "apply_adapter",
    "base_weights_hash",
    "export_adapter",
    "get_method",
    "load_native",
    "register",
    "validate_config",
]
