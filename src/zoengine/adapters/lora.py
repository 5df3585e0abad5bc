"""LoRA: Δy = (alpha/r) · B A x with A (r×in) uniform(±1/√in) and B (out×r) zero, so step 0 is the base.

Dropout is fixed at 0: ZO training compares two forwards of the same batch, which must see the
same function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from zoengine.adapters.base import AdapterMethod, AdapterModule
from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.injection import inject, uniform_
from zoengine.adapters.targets import linear_dims
from zoengine.config import AdapterConfig
from zoengine.schema import setting


class LoraDelta(AdapterModule):
    """Trainable A, B; same A init as PEFT (kaiming-uniform with a=√5 is U(±1/√in))."""

    def __init__(self, fin: int, fout: int, r: int, alpha: float, gen: torch.Generator) -> None:
        super().__init__()
        self.in_features, self.out_features, self.r = fin, fout, r
        self.scaling = alpha / r
        self.A = nn.Parameter(uniform_(torch.empty(r, fin), 1.0 / math.sqrt(fin), gen))
        self.B = nn.Parameter(torch.zeros(fout, r))

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor, None]:
        return (x @ self.A.T) * self.scaling, self.B.T, None  # scale the rank-r side: cheaper

    def lora_factors(self) -> tuple[Tensor, Tensor]:
        return self.A.detach(), self.B.detach() * self.scaling

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "r": self.r, "scaling": self.scaling}


@dataclass
class LoraOptions:
    r: int = setting(8, help="adapter rank", gt=0)
    alpha: float = setting(16.0, help="scaling numerator: Δ = alpha/r · B A", gt=0)


class Lora(AdapterMethod):
    name = "lora"
    help = "low-rank update B·A on the target linears (B zero-initialised)"
    options = LoraOptions

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        def make(target: str, layer: nn.Module, gen: torch.Generator) -> LoraDelta:
            return LoraDelta(*linear_dims(layer), opts["r"], opts["alpha"], gen)

        return inject(self, model, cfg, opts, seed, make)
