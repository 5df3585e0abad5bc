"""First-order baseline: ``torch.optim.AdamW`` with backprop on the same trainable set.

It exists so users can compare accuracy, speed and memory against ZO on their own model; it
shares the ZO optimizers' interface (``step(closure)``, ``last_stats``, ``state_dict``) but the
closure follows the torch convention: it zeroes grads, runs forward + backward, returns the loss.
It is called once, under ``enable_grad``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from zoengine.optim.base import ZOOptimizer

__all__ = ["FOAdamW"]


class FOAdamW(ZOOptimizer):
    """AdamW (decoupled decay per group) with optional global grad-norm clipping."""

    uses_backward = True

    def __init__(
        self,
        params: Iterable[Any],
        *,
        lr: float = 1e-5,
        eps: float = 1e-3,
        weight_decay: float = 0.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        adam_eps: float = 1e-8,
        max_grad_norm: float = 1.0,
        seed: int = 0,
        restore: str = "auto",
    ) -> None:
        # ``eps`` (perturbation scale) is unused here; in the groups "eps" is AdamW's own term.
        defaults = {"lr": lr, "eps": adam_eps, "weight_decay": weight_decay, "betas": (beta1, beta2)}
        torch.optim.Optimizer.__init__(self, params, defaults)
        self.seed = int(seed)
        self._seed_gen = torch.Generator(device="cpu")
        self._seed_gen.manual_seed(self.seed)
        self._noise_gens = {}
        self._t = 0
        self.restore = "exact"
        self.max_grad_norm = float(max_grad_norm)
        self.last_stats = {}
        # Share the group dicts, so an LR scheduler driving this object drives the inner AdamW.
        self._inner = torch.optim.AdamW(self.param_groups, lr=lr, eps=adam_eps, weight_decay=weight_decay)
        self._relink()

    def _relink(self) -> None:
        self.param_groups = self._inner.param_groups
        self.state = self._inner.state

    def step(self, closure: Callable[[], Any] | None = None) -> float:  # type: ignore[override]
        """Forward + backward (inside ``closure``), clip, AdamW update; returns the loss."""
        if closure is None:
            raise ValueError(
                "FOAdamW.step needs a closure that zeroes grads, backpropagates and returns the loss"
            )
        self._t += 1
        with torch.enable_grad():
            loss = closure()
        loss_value = float(loss.detach().item()) if isinstance(loss, torch.Tensor) else float(loss)
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if self.max_grad_norm > 0 and params:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
        else:
            norm = math.sqrt(sum(float(p.grad.detach().float().pow(2).sum()) for p in params))
        self._inner.step()
        self.last_stats = {
            "step": self._t,
            "queries": 0,
            "forward_passes": 1,
            "backward_passes": 1,
            "projected_grads": [],
            "loss_plus": [],
            "loss_minus": [],
            "lr": float(self.param_groups[0]["lr"]) if self.param_groups else 0.0,
            "grad_norm": norm,
            "skipped": False,
        }
        return loss_value

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        sd = self._inner.state_dict()
        sd["zo"] = {
            "step": self._t,
            "seed": self.seed,
            "generator": self._seed_gen.get_state(),
            "restore": "exact",
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        zo = sd.pop("zo", None)
        self._inner.load_state_dict(sd)
        self._relink()
        if zo is not None:
            self._t = int(zo["step"])
            self._seed_gen.set_state(zo["generator"])
