"""ZO-Adam (ZO-AdaMM, Chen et al. 2019): Adam's moments on the averaged ZO estimate.

    ĝ = (1/Q) Σ pg_q z_q;  m ← β1 m + (1−β1) ĝ;  v ← β2 v + (1−β2) ĝ²
    θ ← θ(1 − ηλ) − η · m̂ / (√v̂ + adam_eps)        (bias-corrected, decoupled decay)

This is plain Adam(W) on the ZO estimate (MeZO-Adam / ZO-Bench's ZO-Adam). ZO-AdaMM's own
algorithm is the AMSGrad form (v̂ = max(v̂, v), no bias correction); that variant is not offered.
``tests/test_update_rules.py`` checks every step against the rule above.

Two trainable-sized buffers (+2x trainable): negligible with adapters, heavy for full tuning.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zoengine.optim.base import Pieces, ZOOptimizer

__all__ = ["ZOAdam"]


class ZOAdam(ZOOptimizer):
    """Adam on ZO estimates; ``adam_eps`` is Adam's denominator term (``eps`` is the perturbation)."""

    fused_restore = True

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-4,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        adam_eps: float = 1e-8,
        q: int = 1,
        seed: int = 0,
        restore: str = "auto",
        noise: str = "gaussian",
    ) -> None:
        defaults = {
            "lr": lr,
            "eps": eps,
            "weight_decay": weight_decay,
            "beta1": beta1,
            "beta2": beta2,
            "adam_eps": adam_eps,
            "q": int(q),
        }
        super().__init__(params, defaults, seed=seed, restore=restore, noise=noise)

    def _update(
        self,
        params: Pieces,
        seeds: list[int],
        pgs: list[float],
        pending_restore: bool,
    ) -> None:
        t = self._t
        for i, piece in enumerate(params):
            p, group = piece.x, piece.group
            g = self._estimate(p, i, seeds, pgs, pending_restore)
            b1, b2 = group["beta1"], group["beta2"]
            m, v = self._state_view(piece, "exp_avg"), self._state_view(piece, "exp_avg_sq")
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = (v / (1.0 - b2**t)).sqrt_().add_(group["adam_eps"])
            self._decay(p, group)
            p.addcdiv_(m, denom, value=-group["lr"] / (1.0 - b1**t))
