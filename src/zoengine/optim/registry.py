"""The optimizer registry: name → class, options (with help), description, paper preset, memory.

Method-specific options arrive as a flat dict from the ``[optimizer]`` TOML table (e.g.
``{"q_max": 15, "alpha": 0.85}``); ``parse_options`` type-checks them against the method's options
dataclass and range-checks them, raising a one-line ``ConfigError`` naming ``optimizer.<key>``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from zoengine.errors import ConfigError
from zoengine.optim.base import NOISE_KINDS, RESTORE_MODES, ZOOptimizer
from zoengine.optim.fo_adamw import FOAdamW
from zoengine.optim.zo_adam import ZOAdam
from zoengine.optim.zo_adamu import ZOAdaMU
from zoengine.optim.zo_sgd import AdaZeta, MezoSGD, ZOSGDMomentum, ZOSGDSign

__all__ = ["OPTIMIZERS", "OptimizerSpec", "parse_options"]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


# --- options dataclasses (one per method; shared fields via inheritance) -------------------------


@dataclass
class Options:
    """Base of every options dataclass: fields carry ``help`` metadata; ``check`` range-checks."""

    def check(self) -> None:
        pass


@dataclass
class ZOOptions(Options):
    restore: str = field(
        default="auto",
        metadata=_help(
            "auto | exact (snapshot, bit-exact, +1x trainable) | inplace (+eps,-2eps,+eps, 0 extra)"
        ),
    )
    noise: str = field(
        default="gaussian",
        metadata=_help(
            "perturbation distribution: gaussian (MeZO) | rademacher (±1 per coordinate, SPSA's choice; "
            "same unbiased two-point estimate, cheaper to draw)"
        ),
    )

    def check(self) -> None:
        if self.restore not in RESTORE_MODES:
            _fail("restore", f"must be one of {', '.join(RESTORE_MODES)} (got {self.restore!r})")
        if self.noise not in NOISE_KINDS:
            _fail("noise", f"must be one of {', '.join(NOISE_KINDS)} (got {self.noise!r})")


@dataclass
class QueryOptions(ZOOptions):
    q: int = field(
        default=1, metadata=_help("queries (two-point estimates) per step on the same batch, >= 1")
    )

    def check(self) -> None:
        super().check()
        if self.q < 1:
            _fail("q", f"must be >= 1 (got {self.q})")


@dataclass
class MezoSGDOptions(QueryOptions):
    pass


@dataclass
class ZOSGDSignOptions(QueryOptions):
    pass


@dataclass
class ZOSGDMomentumOptions(QueryOptions):
    momentum: float = field(default=0.9, metadata=_help("heavy-ball momentum, in [0, 1)"))

    def check(self) -> None:
        super().check()
        if not (0.0 <= self.momentum < 1.0):
            _fail("momentum", f"must be in [0, 1) (got {self.momentum})")


@dataclass
class AdaZetaOptions(ZOOptions):
    alpha: float = field(
        default=0.85, metadata=_help("query scale factor α of Q_k = min(max(⌊α·k^β⌋, min_q), q_max) at epoch k, > 0")
    )
    beta: float | None = field(
        default=None,
        metadata=_help(
            "growth exponent β in (0, 1]; empty = derived from q_target at the last epoch, clamped to 1"
        ),
    )
    q_target: float = field(
        default=20.0, metadata=_help("uncapped query count reached at the last epoch (derives β), > 0")
    )
    q_max: int = field(default=15, metadata=_help("maximum queries per step Q_max, >= 1"))
    min_q: int = field(default=1, metadata=_help("minimum queries per step, 1 <= min_q <= q_max"))

    def check(self) -> None:
        super().check()
        if not self.alpha > 0:
            _fail("alpha", f"must be > 0 (got {self.alpha})")
        if self.beta is not None and not (0 < self.beta <= 1):
            _fail("beta", f"must be in (0, 1] (the paper's regime) or empty (got {self.beta})")
        if not self.q_target > self.alpha:
            _fail("q_target", f"must be > alpha ({self.alpha:g}) so Q can grow (got {self.q_target})")
        if self.q_max < 1:
            _fail("q_max", f"must be >= 1 (got {self.q_max})")
        if not (1 <= self.min_q <= self.q_max):
            _fail("min_q", f"must be in [1, q_max={self.q_max}] (got {self.min_q})")


@dataclass
class ZOAdaMUOptions(ZOOptions):
    T1: int | None = field(
        default=None, metadata=_help("end of warm-up (no momentum), steps; empty = t1_fraction·T3")
    )
    T2: int | None = field(
        default=None, metadata=_help("end of the cosine decay, steps; empty = t2_fraction·T3")
    )
    T3: int | None = field(default=None, metadata=_help("annealing horizon, steps; empty = total steps"))
    t1_fraction: float = field(
        default=0.05, metadata=_help("T1 as a share of the run when T1 is empty (paper: 1024/20000), in [0, 1]")
    )
    t2_fraction: float = field(
        default=0.8, metadata=_help("T2 as a share of the run when T2 is empty (paper: 16000/20000), in [0, 1]")
    )
    phi_alpha: float = field(default=1.0, metadata=_help("φ of the uncertainty α schedule, >= 0"))
    phi_beta1: float = field(default=0.1, metadata=_help("φ of the fresh-noise weight β1 schedule, >= 0"))
    phi_beta2: float = field(default=1.5, metadata=_help("φ of the second-moment weight β2 schedule, >= 0"))
    sigma: float = field(default=1e-8, metadata=_help("σ in θ −= η·g·u/√(v+σ), > 0"))
    third_phase: str = field(
        default="hold", metadata=_help("after T2: hold (reconstruction) | const0.9 (as printed)")
    )

    def check(self) -> None:
        super().check()
        for name in ("T1", "T2", "T3"):
            value = getattr(self, name)
            if value is not None and value < 1:
                _fail(name, f"must be >= 1 (got {value})")
        check_adamu_horizon(self.T1, self.T2, self.T3)
        for name in ("t1_fraction", "t2_fraction"):
            if not (0.0 <= getattr(self, name) <= 1.0):
                _fail(name, f"must be in [0, 1] (got {getattr(self, name)})")
        if self.t1_fraction > self.t2_fraction:
            _fail("t1_fraction", f"must be <= t2_fraction ({self.t2_fraction:g}) (got {self.t1_fraction:g})")
        for name in ("phi_alpha", "phi_beta1", "phi_beta2"):
            if getattr(self, name) < 0:
                _fail(name, f"must be >= 0 (got {getattr(self, name)})")
        if not self.sigma > 0:
            _fail("sigma", f"must be > 0 (got {self.sigma})")
        if self.third_phase not in ("hold", "const0.9"):
            _fail("third_phase", f"must be one of hold, const0.9 (got {self.third_phase!r})")


def check_adamu_horizon(T1: int | None, T2: int | None, T3: int | None) -> None:
    """One-line errors for T1 > T2 and T2 > T3 (only between values that are set)."""
    if T1 is not None and T2 is not None and T1 > T2:
        _fail("T1", f"must be <= T2 (got T1={T1} > T2={T2})")
    if T2 is not None and T3 is not None and T2 > T3:
        _fail("T2", f"must be <= T3 (got T2={T2} > T3={T3})")
    if T1 is not None and T3 is not None and T1 > T3:
        _fail("T1", f"must be <= T3 (got T1={T1} > T3={T3})")


@dataclass
class AdamOptions(Options):
    beta1: float = field(default=0.9, metadata=_help("first-moment decay, in [0, 1)"))
    beta2: float = field(default=0.999, metadata=_help("second-moment decay, in [0, 1)"))
    adam_eps: float = field(default=1e-8, metadata=_help("Adam's denominator term, > 0"))

    def check(self) -> None:
        super().check()
        for name in ("beta1", "beta2"):
            if not (0.0 <= getattr(self, name) < 1.0):
                _fail(name, f"must be in [0, 1) (got {getattr(self, name)})")
        if not self.adam_eps > 0:
            _fail("adam_eps", f"must be > 0 (got {self.adam_eps})")


@dataclass
class ZOAdamOptions(AdamOptions):
    q: int = field(
        default=1, metadata=_help("queries (two-point estimates) per step on the same batch, >= 1")
    )
    restore: str = field(default="auto", metadata=ZOOptions.__dataclass_fields__["restore"].metadata)
    noise: str = field(default="gaussian", metadata=ZOOptions.__dataclass_fields__["noise"].metadata)

    def check(self) -> None:
        super().check()
        ZOOptions.check(self)  # type: ignore[arg-type]
        if self.q < 1:
            _fail("q", f"must be >= 1 (got {self.q})")


@dataclass
class FOAdamWOptions(AdamOptions):
    max_grad_norm: float = field(default=1.0, metadata=_help("clip the global gradient norm; 0 = off"))

    def check(self) -> None:
        super().check()
        if self.max_grad_norm < 0:
            _fail("max_grad_norm", f"must be >= 0 (got {self.max_grad_norm})")


def _fail(key: str, message: str) -> typing.NoReturn:
    raise ConfigError(message, field=f"optimizer.{key}")


# --- registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything a CLI/app needs to offer a method: build it, explain it, preset it."""

    name: str
    cls: type[ZOOptimizer]
    options: type[Options]
    description: str
    preset: dict[str, Any]
    memory: str
    uses_backward: bool = False
    buffers: int = 0  # float32 copies of the trainable set kept across steps (moments, gradients)

    def bytes_per_trainable(self) -> int:
        """Persistent bytes per trainable parameter beyond the float32 weight itself."""
        return 4 * self.buffers

    def queries_text(self) -> str:
        """Queries (two-point estimates, 2 forward passes each) per step, as ``zoengine methods``
        prints it."""
        if self.uses_backward:
            return "none: 1 forward + 1 backward per step"
        names = {f.name: f for f in dataclasses.fields(self.options)}
        if "q_max" in names:
            return f"Q_k per epoch k, from min_q up to q_max (default {names['q_max'].default}); known in advance"
        if "q" in names:
            return f"q (default {names['q'].default})"
        return "1"

    def option_help(self) -> dict[str, str]:
        """Option name → help text (for ``zoengine methods`` and the app's form)."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(self.options)}


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            "mezo_sgd",
            MezoSGD,
            MezoSGDOptions,
            "ZO-SGD with MeZO's in-place seeded perturbation (q queries per step, default 1)",
            {"lr": 1e-6, "eps": 1e-3, "weight_decay": 0.0, "lr_schedule": "constant", "q": 1},
            "+0 (seed only; exact restore snapshots trainable tensors when <= 64 MiB)",
        ),
        OptimizerSpec(
            "zo_sgd_mmt",
            ZOSGDMomentum,
            ZOSGDMomentumOptions,
            "ZO-SGD with heavy-ball momentum on the ZO estimate (ZO-Bench ZO-SGD-MMT)",
            {"lr": 1e-6, "eps": 1e-3, "momentum": 0.9, "lr_schedule": "constant"},
            "+1x trainable (momentum buffer)",
            buffers=1,
        ),
        OptimizerSpec(
            "zo_sgd_sign",
            ZOSGDSign,
            ZOSGDSignOptions,
            "ZO-SGD on the sign of the ZO estimate (ZO-Bench ZO-SGD-Sign)",
            {"lr": 1e-6, "eps": 1e-3, "lr_schedule": "constant"},
            "+0 (seed only; one tensor-sized temporary)",
        ),
        OptimizerSpec(
            "adazeta",
            AdaZeta,
            AdaZetaOptions,
            "multi-query RGE with AdaZeta's per-epoch schedule Q_k = min(max(⌊α·k^β⌋, 1), Q_max) at epoch k",
            {
                "lr": 1e-4,
                "eps": 1e-3,
                "weight_decay": 0.01,
                "lr_schedule": "constant",
                "alpha": 0.85,
                "q_target": 20,
                "q_max": 15,
            },
            "+0 (Q seeds and Q scalars per step)",
        ),
        OptimizerSpec(
            "zo_adamu",
            ZOAdaMU,
            ZOAdaMUOptions,
            "ZO-AdaMU: momentum-centred perturbation, second-moment normalisation, annealed α/β1/β2",
            {
                "lr": 1e-4,
                "eps": 1e-3,
                "weight_decay": 0.0,
                "lr_schedule": "constant",
                "t1_fraction": 0.05,  # the paper's T1 = 1024 of 20000 steps
                "t2_fraction": 0.8,  # the paper's T2 = 16000 of 20000 steps
                "phi_alpha": 1.0,
                "phi_beta1": 0.1,
                "phi_beta2": 1.5,
            },
            "+1x trainable (perturbation momentum)",
            buffers=1,
        ),
        OptimizerSpec(
            "zo_adam",
            ZOAdam,
            ZOAdamOptions,
            "ZO-Adam (ZO-AdaMM): Adam moments on the ZO estimate",
            {"lr": 1e-5, "eps": 1e-3, "lr_schedule": "constant", "beta1": 0.9, "beta2": 0.999},
            "+2x trainable (Adam moments)",
            buffers=2,
        ),
        OptimizerSpec(
            "fo_adamw",
            FOAdamW,
            FOAdamWOptions,
            "first-order AdamW with backprop on the same trainable set (baseline)",
            {"lr": 1e-5, "weight_decay": 0.0, "lr_schedule": "linear"},
            "+2x trainable (Adam moments) + gradients + activations kept for backward",
            uses_backward=True,
            buffers=3,
        ),
    )
}


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Check a TOML value against a field annotation ("int", "float | None", "str")."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        if "None" in kinds:
            return None
        _fail(key, "must not be empty")
    if "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
        return value
    if "int" in kinds and isinstance(value, float) and value.is_integer():
        return int(value)
    if "float" in kinds and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if "str" in kinds and isinstance(value, str):
        return value
    if "bool" in kinds and isinstance(value, bool):
        return value
    _fail(key, f"expected {kinds[0]} (got {value!r})")


def parse_options(name: str, options: dict[str, Any]) -> Options:
    """The method's options dataclass from a flat dict; unknown keys and bad values raise."""
    spec = OPTIMIZERS[name]
    fields = {f.name: f for f in dataclasses.fields(spec.options)}
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            allowed = ", ".join(fields) or "none"
            _fail(key, f"unknown option for {name}; allowed: {allowed}")
        values[key] = _coerce(key, value, str(fields[key].type))
    opts = spec.options(**values)
    opts.check()
    return opts
