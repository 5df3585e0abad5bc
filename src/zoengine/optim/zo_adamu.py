"""ZO-AdaMU (Jiang et al., AAAI 2024): momentum and uncertainty moved onto the perturbation.

Per step t, with annealed a = α(t), b1 = β1(t), b2 = β2(t) (``adamu_anneal``) and, for each
trainable tensor, two standard-normal draws ξ_h, ξ_c regenerated from the query seed:

    z̈ = m + √(1−a)·ξ_h         (momentum-centred, variance 1−a)
    ż = √a·ξ_c                 (zero-centred, variance a)
    u = b1·ż + (1−b1)·z̈        perturbation AND update direction; m ← u after the update
    v = b2·ż² + (1−b2)·z̈²      recomputed each step (not an EMA)
    g = (ℓ(θ+εu) − ℓ(θ−εu)) / 2ε
    θ ← θ(1 − ηλ) − η·g·u/√(v + σ)

Answers to the open questions of zo-methods.md §B.11 (all from its recommendations):

1. Eq. 7: the ``(t − T1)`` reconstruction, held constant from T2 (``third_phase="hold"``).
2. φ: the text/code assignment α↔1.0, β1↔0.1, β2↔1.5 (each configurable).
3. The text's final "α=0.5, β1=0.9, β2=0.01" is not reproduced by any schedule; not targeted.
4. T3 = total steps, T2 = 0.8·T3 (the code) and T1 = min(1024, 0.1·T3) unless given.
5. The same β1(t) mix for perturbation and update (the paper; the code's fixed 0.9/0.1 mix
   makes the update direction differ from the measured one).
6. m stores u (the paper), not sign(g)·u (the code).
7. m_0 = 0; during warm-up (a = b1 = 1) m ← u = ż, so momentum starts from the last warm-up draw.
8. Weight decay per group (0 for biases/norms), constant lr by default (paper preset: wd 0).
9. m exists only for the tensors handed to the optimizer (the trainable ones), created lazily.
13. The warm-up update is Algorithm 1's sign-normalised ``g·ż/√(ż²+σ)``, not plain MeZO.

Memory: one trainable-sized buffer (m), +1x trainable. One query per step (the method's
update is defined for a single direction).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from zoengine.optim.base import Pieces, ZOOptimizer
from zoengine.optim.options import ZOAdaMUOptions as _Options
from zoengine.optim.schedules import adamu_anneal

__all__ = ["ZOAdaMU", "resolve_adamu_horizon"]


def resolve_adamu_horizon(
    total_steps: int,
    T1: int | None,
    T2: int | None,
    T3: int | None,
    t1_fraction: float = 0.05,
    t2_fraction: float = 0.8,
) -> tuple[int, int, int]:
    """Fill unset T1/T2/T3 from the run length: T3 = total steps, T2 = t2_fraction·T3,
    T1 = t1_fraction·T3 (the paper's 1024 / 16000 / 20000 steps are fractions 0.05 / 0.8 / 1 of
    its run, so a 60-step run gets the same shape instead of a T2 it can never reach)."""
    t3 = int(T3) if T3 is not None else max(1, int(total_steps))
    t2 = int(T2) if T2 is not None else max(1, round(t2_fraction * t3))
    t1 = int(T1) if T1 is not None else max(1, round(t1_fraction * t3))
    return t1, t2, t3


class ZOAdaMU(ZOOptimizer):
    """ZO-AdaMU with three-phase annealing of α, β1, β2 over T1/T2/T3 (1-based steps)."""

    fused_restore = True  # _update restores +εu from the draws it makes anyway

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-4,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        T1: int = 1024,
        T2: int = 16000,
        T3: int = 20000,
        phi_alpha: float = _Options.phi_alpha,  # the defaults are the options schema's
        phi_beta1: float = _Options.phi_beta1,
        phi_beta2: float = _Options.phi_beta2,
        sigma: float = _Options.sigma,
        third_phase: str = _Options.third_phase,
        seed: int = 0,
        restore: str = _Options.restore,
        noise: str = _Options.noise,
    ) -> None:
        defaults = {"lr": lr, "eps": eps, "weight_decay": weight_decay, "sigma": sigma}
        super().__init__(params, defaults, seed=seed, restore=restore, noise=noise)
        if not (0 < T1 <= T2 <= T3):
            raise ValueError(f"need 0 < T1 <= T2 <= T3 (got {T1}, {T2}, {T3})")
        self.T1, self.T2, self.T3 = int(T1), int(T2), int(T3)
        self.phis = (float(phi_alpha), float(phi_beta1), float(phi_beta2))
        self.third_phase = third_phase
        self._coef = self.coefficients(1)

    def coefficients(self, t: int) -> tuple[float, float, float]:
        """(α, β1, β2) at 1-based step ``t``."""
        return tuple(  # type: ignore[return-value]
            adamu_anneal(t, self.T1, self.T2, self.T3, phi, self.third_phase)  # type: ignore[arg-type]
            for phi in self.phis
        )

    def _begin_step(self, t: int) -> None:
        self._coef = self.coefficients(t)

    def _parts(
        self, p: torch.Tensor, index: int, seed: int, slot: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ż, z̈) of this tensor; always two draws (history first) so replay stays aligned."""
        a = self._coef[0]
        xi_h, xi_c = self._noise(p, seed, index, count=2, slot=2 * slot)
        z_hist = xi_h.mul_(math.sqrt(max(0.0, 1.0 - a)))
        m = self._momentum(index)
        if m is not None:
            z_hist.add_(m)
        z_cur = xi_c.mul_(math.sqrt(a))
        return z_cur, z_hist

    def _momentum(self, index: int) -> torch.Tensor | None:
        """m of piece ``index`` (None before the first update: m_0 = 0 without allocating it)."""
        pieces = self._pieces
        if pieces is None or index >= len(pieces):
            return None
        piece = pieces[index]
        if "perturb_momentum" not in self.state[piece.param]:
            return None
        return self._state_view(piece, "perturb_momentum")

    def direction(self, p: torch.Tensor, index: int, seed: int, slot: int = 0) -> torch.Tensor:
        b1 = self._coef[1]
        z_cur, z_hist = self._parts(p, index, seed, slot)
        return z_cur.mul_(b1).add_(z_hist, alpha=1.0 - b1)

    def _update(
        self,
        params: Pieces,
        seeds: list[int],
        pgs: list[float],
        pending_restore: bool,
    ) -> None:
        _, b1, b2 = self._coef
        seed, g = seeds[0], pgs[0]
        for i, piece in enumerate(params):
            p, group = piece.x, piece.group
            z_cur, z_hist = self._parts(p, i, seed)
            v = (z_cur * z_cur).mul_(b2).addcmul_(z_hist, z_hist, value=1.0 - b2)
            u = z_cur.mul_(b1).add_(z_hist, alpha=1.0 - b1)
            del z_hist
            if pending_restore:  # p = θ − εu: put θ back first (the ops an unfused restore does)
                p.add_(u, alpha=float(self.defaults["eps"]))
            self._decay(p, group)
            p.addcdiv_(u, v.add_(group["sigma"]).sqrt_(), value=-group["lr"] * g)
            self._state_view(piece, "perturb_momentum").copy_(u)  # m ← u (u is scratch)

    def _method_stats(self) -> dict[str, Any]:
        a, b1, b2 = self._coef
        return {"anneal_alpha": a, "beta1": b1, "beta2": b2}

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["zo"]["coef"] = list(self._coef)
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._coef = self.coefficients(max(1, self._t))
