"""The optimizer registry: name → class, options schema, description, memory note.

Method-specific options arrive as a flat dict from the ``[optimizer]`` TOML table (e.g.
``{"q_max": 15, "alpha": 0.85}``); ``parse_options`` builds the method's schema
(``zoengine.optim.options``) from it, raising a one-line ``ConfigError`` naming
``optimizer.<key>``. Adding an optimizer = its module, its options schema and one entry here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from zoengine import schema
from zoengine.optim.base import ZOOptimizer
from zoengine.optim.fo_adamw import FOAdamW
from zoengine.optim.options import (
    AdaZetaOptions,
    FOAdamWOptions,
    MezoSGDOptions,
    Options,
    ZOAdamOptions,
    ZOAdaMUOptions,
    ZOSGDMomentumOptions,
    ZOSGDSignOptions,
    check_adamu_horizon,
)
from zoengine.optim.zo_adam import ZOAdam
from zoengine.optim.zo_adamu import ZOAdaMU
from zoengine.optim.zo_sgd import AdaZeta, MezoSGD, ZOSGDMomentum, ZOSGDSign

__all__ = ["OPTIMIZERS", "OptimizerSpec", "check_adamu_horizon", "parse_options"]


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything a CLI/app needs to offer a method: build it, explain it, preset it."""

    name: str
    cls: type[ZOOptimizer]
    options: type[Options]
    description: str
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
        """Option name → help text."""
        return {s.key: s.help for s in self.settings()}

    def settings(self) -> list[schema.Setting]:
        """The method's own options as ``zoengine methods``, the CLI and the app show them."""
        return schema.describe(self.options)

    @property
    def presets(self) -> dict[str, dict[str, Any]]:
        """Label -> the papers' common settings (``lr``, ``eps``, ..., ``run.batch_size``)."""
        return dict(self.options.presets)

    @property
    def preset(self) -> dict[str, Any]:
        """The first (the method's own paper's) preset."""
        return next(iter(self.options.presets.values()), {})


OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            "mezo_sgd",
            MezoSGD,
            MezoSGDOptions,
            "ZO-SGD with MeZO's in-place seeded perturbation (q queries per step, default 1)",
            "+0 (seed only; exact restore snapshots trainable tensors when <= 64 MiB)",
        ),
        OptimizerSpec(
            "zo_sgd_mmt",
            ZOSGDMomentum,
            ZOSGDMomentumOptions,
            "ZO-SGD with heavy-ball momentum on the ZO estimate (ZO-Bench ZO-SGD-MMT)",
            "+1x trainable (momentum buffer)",
            buffers=1,
        ),
        OptimizerSpec(
            "zo_sgd_sign",
            ZOSGDSign,
            ZOSGDSignOptions,
            "ZO-SGD on the sign of the ZO estimate (ZO-Bench ZO-SGD-Sign)",
            "+0 (seed only; one tensor-sized temporary)",
        ),
        OptimizerSpec(
            "adazeta",
            AdaZeta,
            AdaZetaOptions,
            "multi-query RGE with AdaZeta's per-epoch schedule Q_k = min(max(⌊α·k^β⌋, 1), Q_max) at epoch k",
            "+0 (Q seeds and Q scalars per step)",
        ),
        OptimizerSpec(
            "zo_adamu",
            ZOAdaMU,
            ZOAdaMUOptions,
            "ZO-AdaMU: momentum-centred perturbation, second-moment normalisation, annealed α/β1/β2",
            "+1x trainable (perturbation momentum)",
            buffers=1,
        ),
        OptimizerSpec(
            "zo_adam",
            ZOAdam,
            ZOAdamOptions,
            "ZO-Adam (ZO-AdaMM): Adam moments on the ZO estimate",
            "+2x trainable (Adam moments)",
            buffers=2,
        ),
        OptimizerSpec(
            "fo_adamw",
            FOAdamW,
            FOAdamWOptions,
            "first-order AdamW with backprop on the same trainable set (baseline)",
            "+2x trainable (Adam moments) + gradients + activations kept for backward",
            uses_backward=True,
            buffers=3,
        ),
    )
}


def parse_options(name: str, options: dict[str, Any]) -> Options:
    """The method's options schema from a flat dict; unknown keys and bad values raise."""
    return schema.build(OPTIMIZERS[name].options, options, "optimizer", name)
