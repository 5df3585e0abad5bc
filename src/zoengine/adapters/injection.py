"""Hook-based injection: freeze the base, build one side module per target and attach it.

Adapters never replace base modules. A low-rank or bottleneck adapter is attached as a child module
named ``zo_<method>`` of the layer it adapts and adds its output through a forward hook, so the
base model's parameter names stay unchanged (merged exports and base-weight hashes rely on that).
Modules are built in target order from one seeded generator (never the global RNG), so a seed
fixes the init.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.targets import (
    ADAPTER_PREFIX,
    default_linear_patterns,
    default_placement_patterns,
    linear_dims,
    resolve_linear_targets,
)
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError
from zoengine.layers import select_in_layers

if TYPE_CHECKING:
    from zoengine.adapters.base import AdapterMethod, AdapterModule


def uniform_(t: Tensor, bound: float, gen: torch.Generator) -> Tensor:
    """In-place U(-bound, bound) from our own generator (never the global RNG)."""
    with torch.no_grad():
        t.uniform_(-bound, bound, generator=gen)
    return t


def make_generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def attach(model: nn.Module, target: str, attr: str, adapter: AdapterModule) -> str:
    """Register ``adapter`` as child ``attr`` of ``target`` and hook it into the forward pass."""
    layer = model.get_submodule(target)
    layer.add_module(attr, adapter)
    layer.register_forward_hook(adapter.hook)
    return f"{target}.{attr}"


def layer_device(layer: nn.Module) -> torch.device:
    """Where ``layer`` computes: its weight's device, or accelerate's execution device when the
    weight is offloaded (``meta`` until the forward pass) under ``model.device_map``."""
    dev = layer.weight.device
    if dev.type == "meta":
        hook = getattr(layer, "_hf_hook", None)
        exec_dev = getattr(hook, "execution_device", None)
        if exec_dev is None and hook is None:
            return dev  # a weightless copy built only to count parameters (the app's preview)
        if exec_dev is None:
            raise AdapterError(
                "an adapted layer has no weights on any device (offloaded without a hook)",
                field="model.device_map",
            )
        dev = torch.device("cuda", exec_dev) if isinstance(exec_dev, int) else torch.device(exec_dev)
    return dev


def ensure_fresh(model: nn.Module) -> None:
    """A second adapter on the same model would stack silently; refuse instead."""
    if getattr(model, "_zo_adapter", None) is not None or any(
        part.startswith(ADAPTER_PREFIX) for name, _ in model.named_modules() for part in name.split(".")
    ):
        raise AdapterError(
            "model already carries an adapter; apply to a freshly loaded base", field="adapter.method"
        )


def check_rank(r: int, targets: Iterable[tuple[str, int, int]]) -> None:
    """Model-dependent rank check: r must not exceed min(in, out) of any adapted layer."""
    targets = list(targets)
    limit = min((min(fin, fout) for _, fin, fout in targets), default=r)
    for name, fin, fout in targets:
        if r > min(fin, fout):
            raise AdapterError(
                f"rank {r} is larger than layer {name} ({fin}->{fout}); use r <= {limit} for these targets",
                field="adapter.r",
            )


def inject(
    method: AdapterMethod,
    model: nn.Module,
    cfg: AdapterConfig,
    opts: dict[str, Any],
    seed: int,
    make: Any,
    *,
    placement: bool = False,
) -> AdapterHandle:
    """Freeze the base and attach ``make(target, layer, generator)`` to every resolved target.

    ``placement`` picks the Houlsby defaults (attention/FFN outputs) instead of all linears.
    Modules are built in target order from one seeded generator, so a seed fixes the init.
    """
    ensure_fresh(model)
    patterns = method.check_targets(cfg)
    if not patterns:
        patterns = default_placement_patterns(model) if placement else default_linear_patterns(model)
    targets = select_in_layers(model, resolve_linear_targets(model, patterns), cfg.layers)
    if "r" in opts and not placement:
        check_rank(opts["r"], [(t, *linear_dims(model.get_submodule(t))) for t in targets])
    freeze(model)
    gen = make_generator(seed)
    modules: dict[str, AdapterModule] = {}
    for target in targets:
        layer = model.get_submodule(target)
        adapter = make(target, layer, gen).to(device=layer_device(layer))
        modules[attach(model, target, ADAPTER_PREFIX + method.name, adapter)] = adapter
    model._zo_adapter = method.name
    return AdapterHandle(method, cfg, model, targets, opts, seed, adapter_modules=modules)
