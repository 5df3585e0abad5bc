"""Zeroth-order optimizers (and a first-order baseline) behind one ``torch.optim``-like API.

    from zoengine.optim import build_optimizer, make_lr_lambda
    opt = build_optimizer(cfg.optimizer, groups, seed=0, total_steps=500, steps_per_epoch=63)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, make_lr_lambda(cfg.optimizer, 500))
    loss = opt.step(lambda: loss_on(model, batch))   # ZO: called 2·Q times under no_grad
    opt.last_stats  # queries, forward_passes, projected_grads, loss_plus/minus, lr, method state

Registry names: ``mezo_sgd``, ``zo_sgd_mmt``, ``zo_sgd_sign``, ``adazeta``, ``zo_adamu``,
``zo_adam``, ``fo_adamw``. ``OPTIMIZERS[name]`` carries the class, options (with help), a one-line
description, the paper preset and a memory note.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from zoengine import schema
from zoengine.errors import ConfigError
from zoengine.optim.base import RESTORE_MODES, ZOOptimizer, tensor_seed
from zoengine.optim.calibration import default_lr, lr_rule_text, resolved_lr
from zoengine.optim.fo_adamw import FOAdamW
from zoengine.optim.registry import OPTIMIZERS, OptimizerSpec, check_adamu_horizon, parse_options
from zoengine.optim.schedules import (
    adamu_anneal,
    adazeta_beta,
    adazeta_query_count,
    lr_factor,
    make_lr_lambda,
)
from zoengine.optim.zo_adam import ZOAdam
from zoengine.optim.zo_adamu import ZOAdaMU, resolve_adamu_horizon
from zoengine.optim.zo_sgd import AdaZeta, MezoSGD, ZOSGDMomentum, ZOSGDSign

__all__ = [
    "OPTIMIZERS",
    "RESTORE_MODES",
    "AdaZeta",
    "FOAdamW",
    "MezoSGD",
    "OptimizerSpec",
    "ZOAdaMU",
    "ZOAdam",
    "ZOOptimizer",
    "ZOSGDMomentum",
    "ZOSGDSign",
    "adamu_anneal",
    "adazeta_beta",
    "adazeta_query_count",
    "build_optimizer",
    "check_run_length",
    "default_lr",
    "lr_rule_text",
    "resolved_lr",
    "lr_factor",
    "make_lr_lambda",
    "tensor_seed",
    "validate_config",
]

def validate_config(cfg: Any) -> None:
    """Check ``cfg.name`` and the common + method-specific settings; one-line ``ConfigError``."""
    if cfg.name not in OPTIMIZERS:
        allowed = ", ".join(OPTIMIZERS)
        raise ConfigError(f"unknown optimizer; allowed: {allowed} (got {cfg.name!r})", field="optimizer.name")
    if cfg.lr is not None and (not _is_number(cfg.lr) or not math.isfinite(cfg.lr) or not cfg.lr > 0):
        raise ConfigError(f"must be a finite number > 0 or auto (got {cfg.lr!r})", field="optimizer.lr")
    schema.check_instance("optimizer", cfg)  # eps, weight decay, schedule, warm-up: the config's schema
    parse_options(cfg.name, dict(cfg.options or {}))


def check_run_length(cfg: Any, total_steps: int) -> None:
    """Settings that depend on the run length, checked before anything loads (one-line errors)."""
    opts = parse_options(cfg.name, dict(cfg.options or {}))
    if cfg.name == "zo_adamu":
        t1, t2, t3 = resolve_adamu_horizon(
            total_steps, opts.T1, opts.T2, opts.T3, opts.t1_fraction, opts.t2_fraction  # type: ignore[attr-defined]
        )
        check_adamu_horizon(t1, t2, t3)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def build_optimizer(
    cfg: Any,
    param_groups: list[dict[str, Any]],
    *,
    seed: int,
    total_steps: int,
    steps_per_epoch: int,
    lr: float | None = None,
    adapter: str | None = None,
) -> ZOOptimizer:
    """Validate ``cfg`` and build its optimizer over ``param_groups``.

    Groups: ``{"params": [...], "names": [...], "weight_decay": float (optional)}``; a group
    without ``weight_decay`` gets ``cfg.weight_decay``. ``total_steps``/``steps_per_epoch`` feed
    the AdaZeta schedule (E_total = total/per-epoch) and ZO-AdaMU's default T1/T2/T3. ``lr``
    overrides ``cfg.lr``; when both are unset the calibrated default for ``adapter`` and the
    groups' size is used (plain c/d: the groups carry no model, so no ``depth_factor``; the engine
    passes ``lr`` with it).
    """
    validate_config(cfg)
    opts = parse_options(cfg.name, dict(cfg.options or {}))
    kwargs: dict[str, Any] = {
        k: v
        for k, v in dataclasses.asdict(opts).items()
        if k not in ("T1", "T2", "T3", "t1_fraction", "t2_fraction")
    }
    groups = [dict(g) for g in param_groups]
    if not groups or not any(g.get("params") for g in groups):
        raise ConfigError("no trainable parameters to optimize", field="optimizer.name")
    lr = cfg.lr if lr is None else lr
    if lr is None:  # auto: the calibrated rule for this trainable size (see optim.calibration)
        d = sum(p.numel() for g in groups for p in g.get("params", []))
        lr = default_lr(cfg.name, adapter or "full", d, dict(cfg.options or {}), total_steps)
    common = {
        "lr": float(lr),
        "eps": float(cfg.eps),
        "weight_decay": float(cfg.weight_decay),
        "seed": int(seed),
    }
    if cfg.name == "adazeta":
        kwargs.update(steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    if cfg.name == "zo_adamu":
        t1, t2, t3 = resolve_adamu_horizon(
            total_steps, opts.T1, opts.T2, opts.T3, opts.t1_fraction, opts.t2_fraction  # type: ignore[attr-defined]
        )
        check_adamu_horizon(t1, t2, t3)
        kwargs.update(T1=t1, T2=t2, T3=t3)
    return OPTIMIZERS[cfg.name].cls(groups, **common, **kwargs)
