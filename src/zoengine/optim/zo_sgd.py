"""ZO-SGD family: MeZO (Q fixed), AdaZeta (Q_k scheduled per epoch), momentum and sign variants.

    θ ← θ − η · (1/Q) Σ_q pg_q · z_q,    pg_q = (ℓ(θ+εz_q) − ℓ(θ−εz_q)) / 2ε

MeZO and AdaZeta need no trainable-sized buffer: the update regenerates each z_q tensor by
tensor and applies ``pg_q/Q · z_q`` sequentially. Momentum keeps one buffer (+1x trainable);
sign keeps none (a tensor-sized temporary while the tensor is updated).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zoengine.optim.base import Pieces, ZOOptimizer
from zoengine.optim.schedules import adazeta_beta, adazeta_beta_note, adazeta_query_count

__all__ = ["AdaZeta", "MezoSGD", "ZOSGDMomentum", "ZOSGDSign"]


class MezoSGD(ZOOptimizer):
    """ZO-SGD with MeZO's in-place seeded perturbation; ``q`` queries averaged on one batch."""

    fused_restore = True

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-6,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        q: int = 1,
        seed: int = 0,
        restore: str = "auto",
        noise: str = "gaussian",
    ) -> None:
        defaults = {"lr": lr, "eps": eps, "weight_decay": weight_decay, "q": int(q)}
        super().__init__(params, defaults, seed=seed, restore=restore, noise=noise)

    def _update(self, params: Pieces, seeds: list[int], pgs: list[float], pending_restore: bool) -> None:
        n = len(seeds)
        for i, (p, group, _, _) in enumerate(params):
            last_z = None
            if pending_restore:  # p = θ − εz_last: add +εz_last back first (exactly the unfused ops)
                last_z = self.direction(p, i, seeds[-1])
                p.add_(last_z, alpha=float(self.defaults["eps"]))
            self._decay(p, group)
            for j, (seed, pg) in enumerate(zip(seeds, pgs, strict=True)):
                z = last_z if (last_z is not None and j == n - 1) else self.direction(p, i, seed, slot=1)
                p.add_(z, alpha=-group["lr"] * pg / n)


class AdaZeta(MezoSGD):
    """Multi-query RGE with AdaZeta's schedule ``Q_k = min(max(⌊α·k^β⌋, min_q), q_max)`` at 0-based epoch k.

    ``k`` is the 0-based epoch of the step (``steps_per_epoch`` from the data loader). β is given
    directly or derived from ``q_target`` at the last epoch as the authors' code does:
    ``β = ln(q_target/α) / ln(E_total)``, ``E_total = total_steps / steps_per_epoch``, clamped to
    the paper's (0, 1]; a clamp leaves a warning in ``notes`` for the engine to log.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-4,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        alpha: float = 0.85,
        beta: float | None = None,
        q_target: float = 20.0,
        q_max: int = 15,
        min_q: int = 1,
        steps_per_epoch: int = 1,
        total_steps: int = 1,
        seed: int = 0,
        restore: str = "auto",
        noise: str = "gaussian",
    ) -> None:
        super().__init__(params, lr=lr, eps=eps, weight_decay=weight_decay, q=1, seed=seed, restore=restore, noise=noise)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        total_epochs = max(1, int(total_steps)) / self.steps_per_epoch
        self.alpha = float(alpha)
        self.beta = float(beta) if beta is not None else adazeta_beta(q_target, alpha, total_epochs)
        note = adazeta_beta_note(q_target, alpha, total_epochs, int(q_max)) if beta is None else None
        self.notes: list[str] = [note] if note else []
        self.q_max = int(q_max)
        self.min_q = int(min_q)

    def queries_for_step(self, t: int) -> int:
        return adazeta_query_count(t - 1, self.steps_per_epoch, self.alpha, self.beta, self.q_max, self.min_q)

    def _method_stats(self) -> dict[str, Any]:
        return {"q_k": self.queries_for_step(self._t), "epoch": (self._t - 1) // self.steps_per_epoch}


class ZOSGDMomentum(ZOOptimizer):
    """ZO-SGD-MMT (ZO-Bench): heavy-ball momentum on the ZO estimate, ``m ← μm + ĝ; θ ← θ − ηm``."""

    fused_restore = True

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-6,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        q: int = 1,
        seed: int = 0,
        restore: str = "auto",
        noise: str = "gaussian",
    ) -> None:
        defaults = {"lr": lr, "eps": eps, "weight_decay": weight_decay, "momentum": momentum, "q": int(q)}
        super().__init__(params, defaults, seed=seed, restore=restore, noise=noise)

    def _update(self, params: Pieces, seeds: list[int], pgs: list[float], pending_restore: bool) -> None:
        for i, piece in enumerate(params):
            p, group = piece.x, piece.group
            g = self._estimate(p, i, seeds, pgs, pending_restore)
            buf = self._state_view(piece, "momentum_buffer")  # zeros at first: m_1 = ĝ_1
            buf.mul_(group["momentum"]).add_(g)
            self._decay(p, group)
            p.add_(buf, alpha=-group["lr"])


class ZOSGDSign(ZOOptimizer):
    """ZO-SGD-Sign (ZO-Bench): ``θ ← θ − η·sign(ĝ)``; robust to the scale of the ZO estimate."""

    fused_restore = True

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-6,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        q: int = 1,
        seed: int = 0,
        restore: str = "auto",
        noise: str = "gaussian",
    ) -> None:
        defaults = {"lr": lr, "eps": eps, "weight_decay": weight_decay, "q": int(q)}
        super().__init__(params, defaults, seed=seed, restore=restore, noise=noise)

    def _update(self, params: Pieces, seeds: list[int], pgs: list[float], pending_restore: bool) -> None:
        for i, (p, group, _, _) in enumerate(params):
            g = self._estimate(p, i, seeds, pgs, pending_restore)
            self._decay(p, group)
            p.add_(g.sign_(), alpha=-group["lr"])
