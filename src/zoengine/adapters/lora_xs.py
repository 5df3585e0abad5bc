"""LoRA-XS (arXiv 2405.17604): Δy = s · B R A x with A, B frozen from the top-r SVD of the base weight.

With the base weight W (out×in) = Ũ Σ Ṽᵀ: A = Σ_r Ṽ_rᵀ (r×in; singular values on the input side, as
in the paper's A = U_r Σ_r of the transposed weight) and B = Ũ_r (out×r). Only R (r×r, N(0, σ²),
σ = 1e-5) trains, so an adapted matrix costs r² parameters.

SVD: ``svd = "exact"`` (default) uses ``torch.linalg.svd`` in float32; ``"randomized"`` uses
``torch.svd_lowrank`` seeded from the adapter seed (for big matrices). Signs are canonicalised
(largest-magnitude entry of every left singular vector positive), so the same weights and seed give
the same A and B. A and B are exported with R anyway: the trained R is tied to them.

Scaling: ``alpha`` unset gives s = 1 (paper); setting it gives s = alpha / r (authors' PEFT-based code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from zoengine.adapters.base import AdapterMethod, AdapterModule
from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.injection import inject
from zoengine.adapters.targets import linear_dims, weight_out_in
from zoengine.config import AdapterConfig
from zoengine.schema import setting


def top_r_svd(
    weight: Tensor, r: int, method: str = "exact", niter: int = 4, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """(A r×in, B out×r) with A = Σ_r V_rᵀ, B = U_r for ``weight`` (out×in), signs canonicalised."""
    w = weight.detach().float()
    if method == "exact":
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        u, s, vh = u[:, :r], s[:r], vh[:r]
    else:
        q = min(r + 8, min(w.shape))
        devices = [w.device] if w.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # svd_lowrank draws from the global RNG
            torch.manual_seed(seed)
            u, s, v = torch.svd_lowrank(w, q=q, niter=niter)
        order = torch.argsort(s, descending=True)[:r]
        u, s, vh = u[:, order], s[order], v[:, order].T
    # sign convention (sklearn's svd_flip): the largest |entry| of each column of U is positive
    idx = u.abs().argmax(dim=0)
    signs = torch.sign(u[idx, torch.arange(u.shape[1], device=u.device)])
    signs[signs == 0] = 1.0
    u, vh = u * signs, vh * signs[:, None]
    return (s[:, None] * vh).contiguous(), u.contiguous()


class LoraXSDelta(AdapterModule):
    def __init__(self, a: Tensor, b: Tensor, sigma: float, scaling: float, gen: torch.Generator) -> None:
        super().__init__()
        r = a.shape[0]
        self.in_features, self.out_features, self.r, self.scaling = a.shape[1], b.shape[0], r, scaling
        self.register_buffer("A", a.float())  # frozen, r×in
        self.register_buffer("B", b.float())  # frozen, out×r
        self.R = nn.Parameter(torch.randn(r, r, generator=gen) * sigma)

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor, None]:
        return (x @ self.A.T) @ (self.R.T * self.scaling), self.B.T, None

    def lora_factors(self) -> tuple[Tensor, Tensor]:
        # B R A = (B·s) (R A): R folds into the down projection, the scale into the up projection
        return (self.R.detach() @ self.A), self.B * self.scaling

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "r": self.r, "scaling": self.scaling}


@dataclass
class LoraXSOptions:
    r: int = setting(8, help="adapter rank", gt=0)
    alpha: float | None = setting(None, help="if set, scale by alpha/r (authors' code); unset: 1", gt=0)
    sigma: float = setting(1e-5, help="std of the N(0, σ²) init of R", ge=0)
    svd: str = setting(
        "exact", help="exact (torch.linalg.svd) | randomized (seeded svd_lowrank)", choices=("exact", "randomized")
    )
    svd_niter: int = setting(4, help="power iterations of the randomized SVD", ge=0)


class LoraXS(AdapterMethod):
    name = "lora_xs"
    help = "trainable r×r matrix between frozen SVD factors of the base weight (r² parameters per layer)"
    options = LoraXSOptions

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        r = opts["r"]
        scaling = 1.0 if opts["alpha"] is None else opts["alpha"] / r
        skip_svd = bool(opts.get("_skip_init"))  # load_native overwrites A, B from the file

        def make(target: str, layer: nn.Module, gen: torch.Generator) -> LoraXSDelta:
            fin, fout = linear_dims(layer)
            if skip_svd:
                a, b = torch.zeros(r, fin), torch.zeros(fout, r)
            else:
                a, b = top_r_svd(weight_out_in(layer), r, opts["svd"], opts["svd_niter"], seed)
            return LoraXSDelta(a, b, opts["sigma"], scaling, gen)

        return inject(self, model, cfg, opts, seed, make)
