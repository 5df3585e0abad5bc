"""SoRA (arXiv 2311.11696): LoRA of rank r_max with a gate g between down and up projection.

Δy = s · B diag(g) A x, s = alpha / r_max. After every optimizer update the gate takes the proximal
step of the L1 penalty λ‖g‖₁ (soft-threshold): g ← sign(g) · max(|g| − ξ, 0), which creates exact
zeros; a zero gate removes one rank.

Under zeroth-order training a zero gate would be revived at once: every step perturbs and updates
g with noise of size lr·|projected_grad|, far above any threshold that leaves live ranks alone. So a
pruned rank is *dead*: the ``alive`` mask multiplies the gate in the forward (ZO noise on a dead
gate cannot change the loss) and the prox step keeps it at exactly 0. ``rank()`` is the number of
live gates, monotone over a run, and identical whether read after any step or from a checkpoint
(the mask is rebuilt from ``g != 0`` on load).

Threshold ξ per step, two ways:
* **derived (default, ``lambda`` unset)**: a dense phase for the first ``dense_fraction`` of the
  run (ξ = 0, the adapter learns), then ξ = ``shrink`` / (remaining steps), so the gates shrink by
  ``shrink`` in total by the end of the run whatever its length. With the authors' ``randn`` gate
  init, |g| < shrink marks a rank for pruning unless training grows it; shrink 0.5 prunes about a
  third of the ranks. This replaces a λ that under ZO's calibrated lr would shrink gates by
  lr·λ ≈ 1e-8 per step.
* **paper (``lambda`` set)**: ξ = lr · λ_t (``threshold = "lr"``) or ξ = λ_t (authors' code,
  ``"absolute"``), λ_t constant or the authors' sparsifying scheduler: K = ``lambda_stages`` values
  from ``lambda`` to ``lambda_max`` on a linear / log-linear / exp-linear grid, one stage every
  ``stage_steps`` optimizer steps (the last value is held).

Export prunes zero-gate ranks and folds gate and scale into B: a plain LoRA of rank r' per module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from zoengine.adapters.base import AdapterMethod
from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.injection import inject
from zoengine.adapters.lora import LoraDelta
from zoengine.adapters.targets import linear_dims
from zoengine.config import AdapterConfig
from zoengine.errors import ConfigError
from zoengine.schema import setting

SCHEDULES = ("constant", "linear", "log_linear", "exp_linear")


class SoraDelta(LoraDelta):
    def __init__(
        self, fin: int, fout: int, r: int, alpha: float, gate_init: str, gen: torch.Generator
    ) -> None:
        super().__init__(fin, fout, r, alpha, gen)
        g = torch.randn(r, generator=gen) if gate_init == "randn" else torch.ones(r)
        self.g = nn.Parameter(g)
        self.register_buffer("alive", g != 0, persistent=False)

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor, None]:
        return (x @ self.A.T) * (self.g * self.alive * self.scaling), self.B.T, None

    def prox_(self, xi: float) -> None:
        """Soft-threshold in place (exact zeros for |g| <= xi); dead gates stay exactly 0."""
        with torch.no_grad():
            g = torch.sign(self.g) * torch.clamp(self.g.abs() - xi, min=0.0) * self.alive
            self.g.copy_(g)
            self.alive &= g != 0

    def sync_alive(self) -> None:
        """Rebuild the mask from the gate values (after loading a checkpoint)."""
        with torch.no_grad():
            self.alive.copy_(self.g != 0)

    def live(self) -> Tensor:
        """Ranks in use: alive and non-zero (a gate set to 0 by hand is dead too)."""
        return self.alive & (self.g.detach() != 0)

    def rank(self) -> int:
        return int(self.live().sum())

    def lora_factors(self) -> tuple[Tensor, Tensor]:
        keep = self.live()
        a = self.A.detach()[keep]
        b = self.B.detach()[:, keep] * (self.g.detach()[keep] * self.scaling)
        return a, b

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "rank": self.rank()}


def derived_threshold(opts: dict[str, Any], step: int, total_steps: int) -> float:
    """ξ at 1-based ``step`` of the derived schedule: 0 in the dense phase, then shrink/remaining."""
    dense = math.floor(opts["dense_fraction"] * total_steps)
    if step <= dense or total_steps <= dense:
        return 0.0
    return float(opts["shrink"]) / (total_steps - dense)


def lambda_at(opts: dict[str, Any], step: int) -> float:
    """λ_t of the schedule (SoRA's ``_build_lambda_list``), stage = step // stage_steps."""
    lam, schedule = opts["lambda"], opts["lambda_schedule"]
    if schedule == "constant":
        return float(lam)
    k_max, lam_max = opts["lambda_stages"], opts["lambda_max"]
    k = min(max(step, 0) // opts["stage_steps"], k_max - 1)
    frac = k / (k_max - 1) if k_max > 1 else 1.0
    if schedule == "linear":
        return lam + (lam_max - lam) * frac
    if schedule == "log_linear":
        return math.log(math.exp(lam) + (math.exp(lam_max) - math.exp(lam)) * frac)
    return math.exp(math.log(lam) + (math.log(lam_max) - math.log(lam)) * frac)  # exp_linear


@dataclass
class SoraOptions:
    r: int = setting(8, help="maximum rank r_max (gate length)", gt=0)
    alpha: float = setting(16.0, help="scale alpha / r_max", gt=0)
    lambda_: float | None = setting(
        None,
        help="L1 strength λ (first value of a schedule); unset = threshold derived from the run "
        "length (dense_fraction, shrink), set = the paper's ξ = lr·λ",
        ge=0,
        key="lambda",
    )
    dense_fraction: float = setting(
        0.3, help="derived schedule: share of the run trained without pruning", ge=0, lt=1
    )
    shrink: float = setting(
        0.5, help="derived schedule: total gate shrinkage after the dense phase (gates start ~N(0,1))", gt=0
    )
    threshold: str = setting(
        "lr", help="threshold ξ = lr·λ (paper) or λ (authors' code)", choices=("lr", "absolute")
    )
    lambda_schedule: str = setting(
        "constant", help="constant | linear | log_linear | exp_linear", choices=SCHEDULES
    )
    lambda_max: float = setting(1.0, help="last λ of a schedule", ge=0)
    lambda_stages: int = setting(5, help="number of λ values in a schedule", gt=0)
    stage_steps: int = setting(100, help="optimizer steps per schedule stage", gt=0)
    gate_init: str = setting(
        "randn",
        help="randn (authors' code: gates of different sizes, the small ones pruned first) | ones (paper text)",
        choices=("ones", "randn"),
    )


class Sora(AdapterMethod):
    name = "sora"
    help = "gated LoRA of rank r_max; a proximal L1 step on the gates prunes ranks during training"
    options = SoraOptions

    def check_options(self, opts: dict[str, Any]) -> None:
        if opts["lambda"] is None:
            return
        if opts["lambda_schedule"] == "exp_linear" and opts["lambda"] <= 0:
            raise ConfigError("exp_linear needs lambda > 0", field="adapter.lambda")
        if opts["lambda_schedule"] != "constant" and opts["lambda_max"] < opts["lambda"]:
            raise ConfigError(
                f"must be >= lambda ({opts['lambda']:g}) for a sparsifying schedule",
                field="adapter.lambda_max",
            )

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        def make(target: str, layer: nn.Module, gen: torch.Generator) -> SoraDelta:
            return SoraDelta(*linear_dims(layer), opts["r"], opts["alpha"], opts["gate_init"], gen)

        handle = inject(self, model, cfg, opts, seed, make)
        handle.state["lambda"] = lambda_at(opts, 0) if opts["lambda"] is not None else 0.0
        handle.state["threshold"] = 0.0
        return handle

    def threshold(self, handle: AdapterHandle, step: int, lr: float) -> tuple[float, float]:
        """(ξ, λ) after optimizer step ``step`` (1-based, as the engine counts)."""
        opts = handle.options
        if opts["lambda"] is None:
            total = int(handle.state.get("total_steps") or 0)
            xi = derived_threshold(opts, step, total) if total else 0.0
            return xi, (xi / lr if lr > 0 else 0.0)
        lam = lambda_at(opts, step)
        return (lam * lr if opts["threshold"] == "lr" else lam), lam

    def after_step(self, handle: AdapterHandle, step: int, lr: float) -> None:
        xi, lam = self.threshold(handle, step, lr)
        for mod in handle.adapter_modules.values():
            mod.prox_(xi)  # type: ignore[operator]
        handle.state.update({"lambda": lam, "threshold": xi})

    def after_load(self, handle: AdapterHandle) -> None:
        for mod in handle.adapter_modules.values():
            mod.sync_alive()  # type: ignore[operator]

    def stats(self, handle: AdapterHandle) -> dict[str, Any]:
        per_module: dict[str, dict[str, float | int]] = {}
        zeros = total = 0
        for name, mod in handle.adapter_modules.items():
            r = mod.rank()  # type: ignore[operator]
            n = mod.g.numel()
            zeros, total = zeros + n - r, total + n
            per_module[name.rsplit(".", 1)[0]] = {"sparsity": (n - r) / n, "rank": r}
        ranks = [v["rank"] for v in per_module.values()]
        return {
            "gate_sparsity": zeros / total if total else 0.0,
            "effective_rank": sum(ranks) / len(ranks) if ranks else 0.0,
            "total_rank": int(sum(ranks)),
            "per_module": per_module,
            "lambda": handle.state.get("lambda", 0.0),
            "threshold": handle.state.get("threshold", 0.0),
        }
