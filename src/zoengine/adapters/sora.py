"""SoRA (arXiv 2311.11696): LoRA of rank r_max with a gate g between down and up projection.

Δy = s · B diag(g) A x, s = alpha / r_max. After every optimizer update the gate takes the proximal
step of the L1 penalty λ‖g‖₁ (soft-threshold): g ← sign(g) · max(|g| − ξ, 0), which creates exact
zeros; a zero gate removes one rank. ξ = lr · λ_t (paper, ``threshold = "lr"``) or ξ = λ_t (authors'
code, ``threshold = "absolute"``).

λ_t is constant or follows the authors' sparsifying scheduler: K = ``lambda_stages`` values from
``lambda`` to ``lambda_max`` on a linear / log-linear / exp-linear grid, one stage every
``stage_steps`` optimizer steps (the last value is held).

Export prunes zero-gate ranks and folds gate and scale into B: a plain LoRA of rank r' per module.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from zoengine.adapters.base import (
    AdapterHandle,
    AdapterMethod,
    OptionSpec,
    inject,
    linear_dims,
    rank_option,
)
from zoengine.adapters.lora import LoraDelta
from zoengine.config import AdapterConfig
from zoengine.errors import ConfigError

SCHEDULES = ("constant", "linear", "log_linear", "exp_linear")


class SoraDelta(LoraDelta):
    kind = "sora"

    def __init__(
        self, fin: int, fout: int, r: int, alpha: float, gate_init: str, gen: torch.Generator
    ) -> None:
        super().__init__(fin, fout, r, alpha, gen)
        g = torch.randn(r, generator=gen) if gate_init == "randn" else torch.ones(r)
        self.g = nn.Parameter(g)

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor, None]:
        return (x @ self.A.T) * (self.g * self.scaling), self.B.T, None

    def prox_(self, xi: float) -> None:
        """Soft-threshold in place: exact zeros for |g| <= xi."""
        with torch.no_grad():
            self.g.copy_(torch.sign(self.g) * torch.clamp(self.g.abs() - xi, min=0.0))

    def rank(self) -> int:
        return int((self.g != 0).sum())

    def lora_factors(self) -> tuple[Tensor, Tensor]:
        keep = self.g.detach() != 0
        a = self.A.detach()[keep]
        b = self.B.detach()[:, keep] * (self.g.detach()[keep] * self.scaling)
        return a, b

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "rank": self.rank()}


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


class Sora(AdapterMethod):
    name = "sora"
    help = "gated LoRA of rank r_max; a proximal L1 step on the gates prunes ranks during training"
    options = (
        rank_option(8, "maximum rank r_max (gate length)"),
        OptionSpec("alpha", "float", 16.0, "scale alpha / r_max", minimum=0.0),
        OptionSpec(
            "lambda",
            "float",
            0.1,
            "L1 strength λ (first value of a schedule)",
            minimum=0.0,
            inclusive_min=True,
        ),
        OptionSpec(
            "threshold",
            "str",
            "lr",
            "threshold ξ = lr·λ (paper) or λ (authors' code)",
            choices=("lr", "absolute"),
        ),
        OptionSpec(
            "lambda_schedule",
            "str",
            "constant",
            "constant | linear | log_linear | exp_linear",
            choices=SCHEDULES,
        ),
        OptionSpec("lambda_max", "float", 1.0, "last λ of a schedule", minimum=0.0, inclusive_min=True),
        OptionSpec("lambda_stages", "int", 5, "number of λ values in a schedule", minimum=0),
        OptionSpec("stage_steps", "int", 100, "optimizer steps per schedule stage", minimum=0),
        OptionSpec("gate_init", "str", "ones", "ones | randn (authors' code)", choices=("ones", "randn")),
    )

    def check_options(self, opts: dict[str, Any]) -> None:
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
        handle.state["lambda"] = lambda_at(opts, 0)
        return handle

    def after_step(self, handle: AdapterHandle, step: int, lr: float) -> None:
        lam = lambda_at(handle.options, step)
        xi = lam * lr if handle.options["threshold"] == "lr" else lam
        for mod in handle.adapter_modules.values():
            mod.prox_(xi)  # type: ignore[operator]
        handle.state.update({"lambda": lam, "threshold": xi})

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
            "lambda": handle.state.get("lambda", lambda_at(handle.options, 0)),
        }
