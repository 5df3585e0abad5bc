"""Each optimizer's options schema: defaults, ranges, help and paper presets, written once.

The ``[optimizer]`` TOML table carries the common keys (``lr``, ``eps``, ``weight_decay``,
``lr_schedule``, warm-up; ``zoengine.config.OptimizerConfig``) and the method's own keys, declared
here with :func:`zoengine.schema.setting`. ``zoengine.schema.build`` coerces and range-checks them;
``check()`` holds only the rules between fields. ``PRESETS`` are the papers' settings of the common
keys (and the batch size); a preset leaves method options at these defaults, which are the papers'.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from zoengine.errors import ConfigError
from zoengine.optim.base import NOISE_KINDS, RESTORE_MODES
from zoengine.schema import setting

QUERIES_HELP = "queries (two-point estimates) per step on the same batch"


def _fail(key: str, message: str) -> typing.NoReturn:
    raise ConfigError(message, field=f"optimizer.{key}")


@dataclass
class Options:
    """Base of every options schema. ``presets``: label -> the common keys a paper used."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def check(self) -> None:
        """Rules between fields (single-field ranges live in the field's ``setting``)."""


@dataclass
class ZOOptions(Options):
    restore: str = setting(
        "auto",
        help="how a step undoes its perturbation: auto | exact (snapshot, bit-exact, +1x trainable) "
        "| inplace (+eps,-2eps,+eps, 0 extra)",
        choices=RESTORE_MODES,
    )
    noise: str = setting(
        "gaussian",
        help="perturbation distribution: gaussian (MeZO) | rademacher (±1 per coordinate, SPSA's "
        "choice; same unbiased two-point estimate, cheaper to draw)",
        choices=NOISE_KINDS,
    )


@dataclass
class MezoSGDOptions(ZOOptions):
    q: int = setting(1, help=QUERIES_HELP, ge=1)
    # ZO-AdaMU paper, Appendix B Table 3 (the MeZO rows): batch size 64, constant lr
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "MeZO full FT: lr 1e-6, eps 1e-3": {"lr": 1e-6, "eps": 1e-3, "run.batch_size": 64},
        "MeZO prefix: lr 1e-4, eps 1e-2": {"lr": 1e-4, "eps": 1e-2, "run.batch_size": 64},
        "MeZO LoRA: lr 1e-2, eps 1e-1": {"lr": 1e-2, "eps": 1e-1, "run.batch_size": 64},
    }


@dataclass
class ZOSGDSignOptions(ZOOptions):
    q: int = setting(1, help=QUERIES_HELP, ge=1)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "ZO-Bench ZO-SGD-Sign: lr 1e-6, eps 1e-3": {"lr": 1e-6, "eps": 1e-3, "lr_schedule": "constant"}
    }


@dataclass
class ZOSGDMomentumOptions(ZOOptions):
    q: int = setting(1, help=QUERIES_HELP, ge=1)
    momentum: float = setting(0.9, help="heavy-ball momentum", ge=0, lt=1)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "ZO-Bench ZO-SGD-MMT: lr 1e-6, eps 1e-3": {"lr": 1e-6, "eps": 1e-3, "lr_schedule": "constant"}
    }


@dataclass
class AdaZetaOptions(ZOOptions):
    alpha: float = setting(
        0.85, help="query scale factor α of Q_k = min(max(⌊α·k^β⌋, min_q), q_max) at epoch k", gt=0
    )
    beta: float | None = setting(
        None,
        help="growth exponent β; empty = derived from q_target at the last epoch, clamped to 1",
        gt=0,
        le=1,
    )
    q_target: float = setting(20.0, help="uncapped query count reached at the last epoch (derives β)", gt=0)
    q_max: int = setting(15, help="maximum queries per step Q_max", ge=1)
    min_q: int = setting(1, help="minimum queries per step, at most q_max", ge=1)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "AdaZeta paper: lr 1e-4, eps 1e-3, weight decay 0.01": {
            "lr": 1e-4,
            "eps": 1e-3,
            "weight_decay": 0.01,
            "lr_schedule": "constant",
        }
    }

    def check(self) -> None:
        if not self.q_target > self.alpha:
            _fail("q_target", f"must be > alpha ({self.alpha:g}) so Q can grow (got {self.q_target})")
        if self.min_q > self.q_max:
            _fail("min_q", f"must be in [1, q_max={self.q_max}] (got {self.min_q})")


@dataclass
class ZOAdaMUOptions(ZOOptions):
    T1: int | None = setting(None, help="end of warm-up (no momentum), steps; empty = t1_fraction·T3", ge=1)
    T2: int | None = setting(None, help="end of the cosine decay, steps; empty = t2_fraction·T3", ge=1)
    T3: int | None = setting(None, help="annealing horizon, steps; empty = total steps", ge=1)
    t1_fraction: float = setting(
        0.05, help="T1 as a share of the run when T1 is empty (paper: 1024/20000)", ge=0, le=1
    )
    t2_fraction: float = setting(
        0.8, help="T2 as a share of the run when T2 is empty (paper: 16000/20000)", ge=0, le=1
    )
    phi_alpha: float = setting(1.0, help="φ of the uncertainty α schedule", ge=0)
    phi_beta1: float = setting(0.1, help="φ of the fresh-noise weight β1 schedule", ge=0)
    phi_beta2: float = setting(1.5, help="φ of the second-moment weight β2 schedule", ge=0)
    sigma: float = setting(1e-8, help="σ in θ −= η·g·u/√(v+σ)", gt=0)
    third_phase: str = setting(
        "hold", help="after T2: hold (reconstruction) | const0.9 (as printed)", choices=("hold", "const0.9")
    )
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "ZO-AdaMU paper: lr 1e-4, eps 1e-3": {
            "lr": 1e-4,
            "eps": 1e-3,
            "weight_decay": 0.0,
            "lr_schedule": "constant",
        }
    }

    def check(self) -> None:
        check_adamu_horizon(self.T1, self.T2, self.T3)
        if self.t1_fraction > self.t2_fraction:
            _fail("t1_fraction", f"must be <= t2_fraction ({self.t2_fraction:g}) (got {self.t1_fraction:g})")


def check_adamu_horizon(T1: int | None, T2: int | None, T3: int | None) -> None:
    """One-line errors for T1 > T2 and T2 > T3 (only between values that are set)."""
    if T1 is not None and T2 is not None and T1 > T2:
        _fail("T1", f"must be <= T2 (got T1={T1} > T2={T2})")
    if T2 is not None and T3 is not None and T2 > T3:
        _fail("T2", f"must be <= T3 (got T2={T2} > T3={T3})")
    if T1 is not None and T3 is not None and T1 > T3:
        _fail("T1", f"must be <= T3 (got T1={T1} > T3={T3})")


@dataclass
class ZOAdamOptions(ZOOptions):
    q: int = setting(1, help=QUERIES_HELP, ge=1)
    beta1: float = setting(0.9, help="first-moment decay", ge=0, lt=1)
    beta2: float = setting(0.999, help="second-moment decay", ge=0, lt=1)
    adam_eps: float = setting(1e-8, help="Adam's denominator term", gt=0)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "ZO-Adam (ZO-Bench): lr 1e-5, eps 1e-3": {"lr": 1e-5, "eps": 1e-3, "lr_schedule": "constant"}
    }


@dataclass
class FOAdamWOptions(Options):
    beta1: float = setting(0.9, help="first-moment decay", ge=0, lt=1)
    beta2: float = setting(0.999, help="second-moment decay", ge=0, lt=1)
    adam_eps: float = setting(1e-8, help="Adam's denominator term", gt=0)
    max_grad_norm: float = setting(1.0, help="clip the global gradient norm; 0 = off", ge=0)
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "first-order baseline: lr 1e-5, linear decay": {
            "lr": 1e-5,
            "weight_decay": 0.0,
            "lr_schedule": "linear",
        }
    }
