"""Tensor-train bottleneck adapters (AdaZeta, arXiv 2406.18060): y ← y + s · up(ReLU(down(y))).

Both maps are TT layers: a weight W (in×out) is never a parameter; it is the contraction of cores
G_i (r_{i-1} × k_i × r_i), r_0 = r_n = 1, where the leading modes factor ``in`` and the trailing modes
factor ``out`` (row-major, as in the authors' code). Parameters per map: Σ r_{i-1} k_i r_i
([16,16,16,4,4,4], r=5 → 1100).

Forward is the *parallel (bipartite)* contraction: the input-side cores contract to L (in × r_s)
and the output-side cores to R (r_s × out), independently; y = (x L) R + b. W = L R is never
formed, and it has rank ≤ r_s. ``forward_sequential`` contracts the whole chain into W first and is
kept as the reference the tests compare against.

Shapes: derived by factorising each side into at most ``tt_modes`` balanced factors
(4096 → [16,16,16], 64 → [4,4,4]); ``tt_shape`` overrides them with the down map's modes (a prefix
multiplying to the layer width d, the rest to the bottleneck); the up map uses the reversed list.

Placement (Houlsby): hooks on the attention output projection and the FFN output projection, so
the adapter sees and corrects their output before the residual add (BERT: before LayerNorm). All
base tensors, LayerNorm included, stay frozen.

Init: every core is ``randn(r_{i-1}, k_i, r_i) / √r_i · σ^(1/n)`` with σ = √(1/(in + out)), so
W = contraction has entries of variance σ² (Glorot), and every bias is U(±1/√out) — the AdaZeta
code's init (the paper says nothing). Then, **by default** (``zero_init_up=True``), the up map's
last core and its bias are zeroed: step 0 equals the base model exactly (zero-shot evaluation is
the base's), but W_up = 0 blocks every other path, so at step 0 *only the up map's last core and
the up bias* get a signal (a ZO projected gradient ∇ℓ·z only sees tensors with non-zero gradient;
the down cores, the down bias and the other up cores have gradient 0 until the last up core has
moved away from 0). This default was measured to learn faster under ZO on the real model (README,
Results) and, on the tiny test model, 10× faster at the same lr.

``zero_init_up=False`` is the authors' code exactly: random cores and biases everywhere, so the
step-0 model differs from the base and every core and both biases have a non-zero gradient.
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
from zoengine.errors import AdapterError
from zoengine.schema import setting


def factorize(n: int, modes: int) -> list[int]:
    """Split n into at most ``modes`` factors with the smallest largest factor (4096 → [16,16,16],
    576 → [9,8,8]), largest first, 1s dropped."""

    def search(m: int, k: int, cap: int) -> list[int] | None:
        # best non-increasing factorisation of m into k factors, each <= cap
        if k == 1:
            return [m] if m <= cap else None
        best: list[int] | None = None
        for f in range(min(m, cap), 0, -1):
            if m % f or f**k < m:  # f must divide m; f^k < m means the rest cannot fit under f
                continue
            rest = search(m // f, k - 1, f)
            if rest is not None and (best is None or (f, -rest[-1]) < (best[0], -best[-1])):
                best = [f, *rest]
        return best

    found = search(n, max(1, modes), n) or [n]
    return [f for f in found if f > 1] or [1]


def split_point(shape: list[int], fin: int, fout: int) -> int | None:
    """Index s with prod(shape[:s]) == fin and prod(shape[s:]) == fout, or None."""
    prod = 1
    for s, k in enumerate(shape):
        if prod == fin and math.prod(shape[s:]) == fout and s > 0:
            return s
        prod *= k
    return None


class TTLinear(nn.Module):
    """Linear map in×out stored as TT cores; forward by bipartite contraction."""

    def __init__(
        self,
        fin: int,
        fout: int,
        shape: list[int],
        rank: int,
        gen: torch.Generator,
        *,
        bias: bool = True,
        zero_last: bool = False,
    ) -> None:
        super().__init__()
        split = split_point(shape, fin, fout)
        if split is None:
            raise AdapterError(
                f"TT shape {shape} does not factor {fin}->{fout} (a prefix must multiply to {fin}, the rest to {fout})",
                field="adapter.tt_shape",
            )
        self.in_features, self.out_features, self.shape, self.split = fin, fout, list(shape), split
        n = len(shape)
        self.ranks = [1] + [rank] * (n - 1) + [1]
        # authors' init: randn / sqrt(r_i) * sigma^(1/n), sigma = sqrt(1 / (in + out))
        scale = math.sqrt(1.0 / (fin + fout)) ** (1.0 / n)
        cores = []
        for i, k in enumerate(shape):
            g = (
                torch.randn(self.ranks[i], k, self.ranks[i + 1], generator=gen)
                / math.sqrt(self.ranks[i + 1])
                * scale
            )
            cores.append(nn.Parameter(g))
        if zero_last:
            cores[-1].data.zero_()
        self.cores = nn.ParameterList(cores)
        if bias:
            b = torch.zeros(fout) if zero_last else uniform_(torch.empty(fout), 1.0 / math.sqrt(fout), gen)
            self.bias: nn.Parameter | None = nn.Parameter(b)
        else:
            self.bias = None

    def num_core_params(self) -> int:
        return sum(c.numel() for c in self.cores)

    def factors(self) -> tuple[Tensor, Tensor]:
        """(L in×r_s, R r_s×out): the two halves of the chain, contracted independently."""
        left = self.cores[0].reshape(self.shape[0], self.ranks[1])
        for i in range(1, self.split):
            c = self.cores[i]
            left = (left @ c.reshape(c.shape[0], -1)).reshape(-1, c.shape[2])
        right = self.cores[self.split]
        right = right.reshape(right.shape[0], -1)
        for i in range(self.split + 1, len(self.shape)):
            c = self.cores[i]
            right = (right.reshape(-1, c.shape[0]) @ c.reshape(c.shape[0], -1)).reshape(right.shape[0], -1)
        return left, right.reshape(self.ranks[self.split], self.out_features)

    def full_weight(self) -> Tensor:
        """Sequential contraction of the whole chain into W (in×out) — the reference path."""
        t = self.cores[0]
        for c in self.cores[1:]:
            t = torch.tensordot(t, c, dims=([-1], [0]))
        return t.reshape(self.in_features, self.out_features)

    def forward(self, x: Tensor) -> Tensor:
        left, right = self.factors()
        y = (x.reshape(-1, self.in_features) @ left) @ right  # never forms W; flatten, never squeeze
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    def forward_sequential(self, x: Tensor) -> Tensor:
        y = x @ self.full_weight()
        return y + self.bias if self.bias is not None else y


class TTAdapter(AdapterModule):
    """Bottleneck d → b → d with TT maps and ReLU; acts on the hooked layer's *output*."""

    def __init__(
        self, d: int, b: int, shape: list[int], rank: int, opts: dict[str, Any], gen: torch.Generator
    ) -> None:
        super().__init__()
        self.in_features = self.out_features = d
        self.bottleneck, self.scale = b, opts["scale"]
        self.down = TTLinear(d, b, shape, rank, gen, bias=opts["bias"])
        self.up = TTLinear(b, d, shape[::-1], rank, gen, bias=opts["bias"], zero_last=opts["zero_init_up"])
        self.sequential = False  # reference path switch (tests, bench)

    def parts(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        bias = self.up.bias * self.scale if self.up.bias is not None else None
        if self.sequential:  # reference: materialise both W
            z = torch.relu(self.down.forward_sequential(y))
            return z * self.scale, self.up.full_weight(), bias
        z = torch.relu(self.down(y))
        left, right = self.up.factors()  # bipartite: (b×r_s), (r_s×d)
        return (z @ left) * self.scale, right, bias

    def hook(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
        return self.add_to(output, output)  # the adapter reads the layer's output (Houlsby)

    def describe(self) -> dict[str, Any]:
        return {
            "in": self.in_features,
            "out": self.out_features,
            "bottleneck": self.bottleneck,
            "tt_shape_down": self.down.shape,
            "tt_shape_up": self.up.shape,
            "tt_ranks": self.down.ranks,
        }


def tt_shape_for(d: int, opts: dict[str, Any], target: str) -> tuple[int, list[int]]:
    """(bottleneck, down-map TT shape) for a layer of width d."""
    if opts["tt_shape"] is not None:
        shape = list(opts["tt_shape"])
        prod, split = 1, None
        for s, k in enumerate(shape):
            if prod == d and s > 0:
                split = s
                break
            prod *= k
        if split is None:
            raise AdapterError(
                f"TT shape {shape} has no prefix whose product is {d} (width of {target}); "
                f"product of all modes is {math.prod(shape)}",
                field="adapter.tt_shape",
            )
        b = math.prod(shape[split:])
        if "bottleneck" in opts["_given"] and b != opts["bottleneck"]:
            raise AdapterError(
                f"TT shape {shape} gives bottleneck {b}, but bottleneck = {opts['bottleneck']}",
                field="adapter.tt_shape",
            )
        return b, shape
    b = min(opts["bottleneck"], d)
    return b, factorize(d, opts["tt_modes"]) + factorize(b, opts["tt_modes"])


@dataclass
class TTOptions:
    r: int = setting(5, help="TT rank (all interior ranks)", gt=0)
    bottleneck: int = setting(64, help="bottleneck width (capped at the layer width)", gt=0)
    tt_shape: list[int] | None = setting(None, help="explicit down-map modes, e.g. [16,16,16,4,4,4]", ge=1)
    tt_modes: int = setting(3, help="modes per side when deriving shapes", gt=0)
    bias: bool = setting(True, help="trainable TT biases (authors' code: yes)")
    zero_init_up: bool = setting(
        True,
        help="true (default): zero the up map's last core and bias, step 0 = base, only those two get "
        "signal at step 0; false (authors' code): random cores and biases, step 0 differs from the "
        "base, every core gets signal",
    )
    scale: float = setting(1.0, help="adapter output scale s", gt=0)


class TensorTrain(AdapterMethod):
    name = "tt"
    help = "AdaZeta tensor-train bottleneck adapters after attention and FFN outputs"
    no_lora_reason = "TT adapters are non-linear (ReLU bottleneck) and have no LoRA form: use native"
    no_merge_reason = "TT adapters are non-linear (ReLU bottleneck): use native"
    options = TTOptions

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        def make(target: str, layer: nn.Module, gen: torch.Generator) -> TTAdapter:
            d = linear_dims(layer)[1]
            b, shape = tt_shape_for(d, opts, target)
            return TTAdapter(d, b, shape, opts["r"], opts, gen)

        return inject(self, model, cfg, opts, seed, make, placement=True)
