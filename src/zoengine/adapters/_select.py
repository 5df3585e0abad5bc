"""Shared code of the methods that train base tensors in place (full, subset, bitfit).

Trainable tensors must be float32 (ZO perturbations of ±1e-3 vanish in bf16 rounding). On a
low-precision base the modules owning the selected tensors are upcast to float32 and wrapped by
hooks that cast their inputs up and their outputs back, so the rest of the model is untouched.
``orig_dtypes`` remembers what the merged export casts back to.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoengine.adapters.base import AdapterMethod
from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.injection import ensure_fresh, freeze
from zoengine.config import AdapterConfig


def _cast_in(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _make_cast_out(dtype: torch.dtype) -> Any:
    def cast_out(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if torch.is_tensor(output) and output.is_floating_point():
            return output.to(dtype)
        return output

    return cast_out


def train_in_place(
    method: AdapterMethod,
    model: nn.Module,
    cfg: AdapterConfig,
    opts: dict[str, Any],
    seed: int,
    names: list[str],
) -> AdapterHandle:
    """Freeze everything, then make ``names`` trainable float32 tensors."""
    ensure_fresh(model)
    freeze(model)
    params = dict(model.named_parameters())
    orig: dict[str, torch.dtype] = {}
    low = [n for n in names if params[n].dtype != torch.float32]
    if low and len(names) == len(params):
        orig = {n: p.dtype for n, p in params.items()}
        model.float()  # full fine-tuning: the whole model is trainable anyway
    elif low:
        owners = sorted({n.rsplit(".", 1)[0] if "." in n else "" for n in low})
        for owner in owners:
            mod = model.get_submodule(owner)
            dtype = next(mod.parameters()).dtype
            for pn, p in mod.named_parameters(recurse=False):
                orig[f"{owner}.{pn}" if owner else pn] = p.dtype
            mod.float()
            mod.register_forward_pre_hook(_cast_in)
            mod.register_forward_hook(_make_cast_out(dtype))
    for n in names:
        params[n].requires_grad_(True)
    model._zo_adapter = method.name
    return AdapterHandle(method, cfg, model, list(names), opts, seed, orig_dtypes=orig)
