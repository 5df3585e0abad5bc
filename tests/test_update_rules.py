"""Update rules against their closed forms: known noise, known loss, every step checked.

The optimizer's noise source (``_noise``) and query-seed stream (``_draw_seed``) are replaced by
a stream the test knows in advance, and the loss is a separable quadratic
``ℓ(θ) = Σ_i Σ (½·c_i·θ_i² + b_i·θ_i)``, whose central difference is exactly ``∇ℓ(θ)·u`` (no
O(ε²) term), so every projected gradient is known in closed form. The references below re-derive
each method's step from its formula (zo-methods.md §B.3–B.5 for ZO-AdaMU; ZO-Bench's heavy-ball
and sign rules; Adam with bias correction and decoupled decay for ZO-Adam), keep their own state,
and never call the optimizer's code: each step's parameters must match to float64 rounding.

Covered: several steps (state carries over), per-group lr and weight decay (one group decays,
one does not), q > 1 (not ZO-AdaMU, which is defined for one query), both restore modes (the
in-place one exercises the update that restores the last query itself), and chunked tensors
(state buffers are sliced per chunk; the noise of a chunk has its own seed index).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from zoengine.optim import ZOAdam, ZOAdaMU, ZOSGDMomentum, ZOSGDSign, base

SHAPES = [(3, 4), (2, 3), (5,)]  # group 0: the two matrices (decayed), group 1: the vector
LR = (0.05, 0.08)
WD = 0.5
EPS = 1e-3
STEPS = 9
FIRST_SEED = 101
ADAMU_T = (3, 6, 8)  # 2 warm-up steps, decay over steps 3–5, held from step 6
ADAMU_PHI = (1.0, 0.1, 1.5)
SIGMA = 1e-8
MOMENTUM = 0.9
BETAS = (0.9, 0.99)
ADAM_EPS = 1e-8


def noise(seed: int, index: int, k: int, n: int) -> Tensor:
    """Draw ``k`` of piece ``index`` in the query with seed ``seed``: the injected stream."""
    g = torch.Generator().manual_seed(seed * 7919 + index * 31 + k)
    return torch.randn(n, generator=g, dtype=torch.float64)


Layout = list[list[tuple[int, int]]]


def piece_layout(chunk: int | None) -> Layout:
    """Per parameter: its pieces as (seed index, numel), in the optimizer's fixed order."""
    layout, index = [], 0
    for shape in SHAPES:
        n = math.prod(shape)
        size = n if chunk is None or n <= chunk else chunk
        pieces = []
        for a in range(0, n, size):
            pieces.append((index, min(size, n - a)))
            index += 1
        layout.append(pieces)
    return layout


def draws(seed: int, layout: Layout, k: int) -> list[Tensor]:
    """Draw ``k`` of every parameter for query ``seed``, assembled from its pieces."""
    return [
        torch.cat([noise(seed, i, k, n) for i, n in pieces]).view(shape)
        for pieces, shape in zip(layout, SHAPES, strict=True)
    ]


def problem() -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """(θ_0, c, b) of the quadratic; c > 0."""
    g = torch.Generator().manual_seed(0)
    theta = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    c = [torch.rand(s, generator=g, dtype=torch.float64) + 0.5 for s in SHAPES]
    b = [torch.randn(s, generator=g, dtype=torch.float64) for s in SHAPES]
    return theta, c, b


def grad(theta: list[Tensor], c: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    return [ci * t + bi for t, ci, bi in zip(theta, c, b, strict=True)]


def dot(xs: list[Tensor], ys: list[Tensor]) -> float:
    return float(sum((x * y).sum() for x, y in zip(xs, ys, strict=True)))


def group_of(i: int) -> int:
    return 0 if i < 2 else 1


def lr_wd(i: int, wd: float = WD) -> tuple[float, float]:
    return LR[group_of(i)], (wd if group_of(i) == 0 else 0.0)


# --- the closed-form references ----------------------------------------------------------------


class Reference:
    """θ and the method's state, advanced by the textbook rule; ``pgs`` of the latest step."""

    def __init__(
        self, theta: list[Tensor], c: list[Tensor], b: list[Tensor], layout: Layout, q: int, wd: float = WD
    ) -> None:
        self.theta = [t.clone() for t in theta]
        self.c, self.b, self.layout, self.q, self.wd = c, b, layout, q, wd
        self.t = 0
        self.seeds = itertools.count(FIRST_SEED)
        self.pgs: list[float] = []

    def estimate(self) -> list[Tensor]:
        """ĝ = (1/Q) Σ_q pg_q·z_q with z_q ~ the injected N(0, I), pg_q = ∇ℓ(θ)·z_q."""
        g = grad(self.theta, self.c, self.b)
        est = [torch.zeros_like(t) for t in self.theta]
        self.pgs = []
        for _ in range(self.q):
            z = draws(next(self.seeds), self.layout, 0)
            pg = dot(g, z)
            self.pgs.append(pg)
            for e, zi in zip(est, z, strict=True):
                e.add_(pg * zi / self.q)
        return est

    def step(self) -> None:
        self.t += 1
        self._step()

    def _step(self) -> None:
        raise NotImplementedError


class MomentumRef(Reference):
    """Heavy ball: m ← μm + ĝ;  θ ← θ(1 − ηλ) − ηm."""

    momentum = MOMENTUM

    def __init__(self, *args, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kw)
        self.m = [torch.zeros_like(t) for t in self.theta]

    def _step(self) -> None:
        for i, g in enumerate(self.estimate()):
            lr, wd = lr_wd(i, self.wd)
            self.m[i] = self.momentum * self.m[i] + g
            self.theta[i] = self.theta[i] * (1 - lr * wd) - lr * self.m[i]


class SignRef(Reference):
    """θ ← θ(1 − ηλ) − η·sign(ĝ)."""

    def _step(self) -> None:
        for i, g in enumerate(self.estimate()):
            lr, wd = lr_wd(i, self.wd)
            self.theta[i] = self.theta[i] * (1 - lr * wd) - lr * torch.sign(g)


class AdamRef(Reference):
    """m ← β1m + (1−β1)ĝ; v ← β2v + (1−β2)ĝ²; θ ← θ(1 − ηλ) − η·m̂/(√v̂ + δ), m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)."""

    def __init__(self, *args, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kw)
        self.m = [torch.zeros_like(t) for t in self.theta]
        self.v = [torch.zeros_like(t) for t in self.theta]

    def _step(self) -> None:
        b1, b2 = BETAS
        for i, g in enumerate(self.estimate()):
            lr, wd = lr_wd(i, self.wd)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            m_hat = self.m[i] / (1 - b1**self.t)
            v_hat = self.v[i] / (1 - b2**self.t)
            self.theta[i] = self.theta[i] * (1 - lr * wd) - lr * m_hat / (v_hat.sqrt() + ADAM_EPS)


def anneal(t: int, phi: float) -> float:
    """Eq. 7 as reconstructed in zo-methods.md §B.4: 1, then the cosine decay, then held at T2."""
    t1, t2, t3 = ADAMU_T
    if t < t1:
        return 1.0
    s = min(t, t2) - t1
    return 0.5 + 0.5 * math.cos(math.pi * s / (t3 - s * phi * (t3 - t2) / (t2 - t1)))


class AdaMURef(Reference):
    """ZO-AdaMU (Algorithm 1 / §B.5), draws ξ_h then ξ_c per tensor, m_0 = 0:

    z̈ = m + √(1−α)·ξ_h;  ż = √α·ξ_c;  u = β1·ż + (1−β1)·z̈;  v = β2·ż² + (1−β2)·z̈²
    g = ∇ℓ(θ)·u;  θ ← θ(1 − ηλ) − η·g·u/√(v + σ);  m ← u
    """

    def __init__(self, *args, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kw)
        self.m = [torch.zeros_like(t) for t in self.theta]
        self.coef: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def _step(self) -> None:
        a, b1, b2 = self.coef = tuple(anneal(self.t, phi) for phi in ADAMU_PHI)  # type: ignore[assignment]
        seed = next(self.seeds)
        xi_h, xi_c = draws(seed, self.layout, 0), draws(seed, self.layout, 1)
        z_hist = [m + math.sqrt(1 - a) * x for m, x in zip(self.m, xi_h, strict=True)]
        z_cur = [math.sqrt(a) * x for x in xi_c]
        u = [b1 * zc + (1 - b1) * zh for zc, zh in zip(z_cur, z_hist, strict=True)]
        v = [b2 * zc**2 + (1 - b2) * zh**2 for zc, zh in zip(z_cur, z_hist, strict=True)]
        g = dot(grad(self.theta, self.c, self.b), u)
        self.pgs = [g]
        for i in range(len(self.theta)):
            lr, wd = lr_wd(i, self.wd)
            self.theta[i] = self.theta[i] * (1 - lr * wd) - lr * g * u[i] / (v[i] + SIGMA).sqrt()
        self.m = u


# --- the optimizers under test -----------------------------------------------------------------


def build(name: str, params: list[Tensor], q: int, restore: str):  # noqa: ANN201
    groups = [
        {"params": params[:2], "lr": LR[0], "weight_decay": WD},
        {"params": params[2:], "lr": LR[1], "weight_decay": 0.0},
    ]
    common = {"lr": LR[0], "eps": EPS, "seed": 0, "restore": restore}
    if name == "zo_sgd_mmt":
        return ZOSGDMomentum(groups, momentum=MOMENTUM, q=q, **common)
    if name == "zo_sgd_sign":
        return ZOSGDSign(groups, q=q, **common)
    if name == "zo_adam":
        return ZOAdam(groups, beta1=BETAS[0], beta2=BETAS[1], adam_eps=ADAM_EPS, q=q, **common)
    t1, t2, t3 = ADAMU_T
    pa, pb1, pb2 = ADAMU_PHI
    return ZOAdaMU(
        groups, T1=t1, T2=t2, T3=t3, phi_alpha=pa, phi_beta1=pb1, phi_beta2=pb2, sigma=SIGMA, **common
    )


REFERENCES: dict[str, type[Reference]] = {
    "zo_sgd_mmt": MomentumRef,
    "zo_sgd_sign": SignRef,
    "zo_adam": AdamRef,
    "zo_adamu": AdaMURef,
}


def inject_noise(opt, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Query seeds FIRST_SEED, FIRST_SEED+1, …; piece noise from ``noise`` (fresh tensors)."""
    seeds = itertools.count(FIRST_SEED)

    def fake_noise(p: Tensor, seed: int, index: int, count: int = 1, slot: int = 0) -> list[Tensor]:
        return [noise(seed, index, k, p.numel()).view(p.shape).to(p.dtype) for k in range(count)]

    monkeypatch.setattr(opt, "_draw_seed", lambda: next(seeds))
    monkeypatch.setattr(opt, "_noise", fake_noise)


CASES = [
    pytest.param(name, q, restore, chunk, id=f"{name}-q{q}-{restore}-{'chunked' if chunk else 'whole'}")
    for name in REFERENCES
    for q in (1, 3)
    for restore in ("exact", "inplace")
    for chunk in (None, 5)
    if not (name == "zo_adamu" and q > 1)
]


@pytest.mark.parametrize(("name", "q", "restore", "chunk"), CASES)
def test_each_step_matches_the_closed_form_rule(
    name: str, q: int, restore: str, chunk: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if chunk is not None:
        monkeypatch.setattr(base, "CHUNK_NUMEL", chunk)
    theta0, c, b = problem()
    params = [t.clone() for t in theta0]
    opt = build(name, params, q, restore)
    assert opt.restore == restore
    layout = piece_layout(chunk)
    assert len(opt._param_list()) == sum(len(p) for p in layout)
    inject_noise(opt, monkeypatch)
    ref = REFERENCES[name](theta0, c, b, layout, q)

    def loss() -> Tensor:
        return sum((0.5 * ci * p * p + bi * p).sum() for p, ci, bi in zip(params, c, b, strict=True))

    moved = [False] * len(params)
    for t in range(1, STEPS + 1):
        before = [p.clone() for p in params]
        opt.step(loss)
        ref.step()
        stats = opt.last_stats
        assert stats["step"] == t and stats["queries"] == q and not stats["skipped"]
        assert stats["projected_grads"] == pytest.approx(ref.pgs, rel=1e-8, abs=1e-10), t
        for i, (p, want) in enumerate(zip(params, ref.theta, strict=True)):
            torch.testing.assert_close(
                p, want, rtol=1e-9, atol=1e-11, msg=lambda m, t=t, i=i: f"step {t} p{i}: {m}"
            )
            moved[i] |= not torch.equal(p, before[i])
        if name == "zo_adamu":
            assert (stats["anneal_alpha"], stats["beta1"], stats["beta2"]) == pytest.approx(
                ref.coef, abs=1e-12
            )
    assert all(moved)


def test_the_comparison_detects_a_missing_term(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard against a vacuous comparison: the rule without decay, or without momentum, is off."""
    theta0, c, b = problem()
    params = [t.clone() for t in theta0]
    opt = build("zo_sgd_mmt", params, 1, "exact")
    inject_noise(opt, monkeypatch)

    def loss() -> Tensor:
        return sum((0.5 * ci * p * p + bi * p).sum() for p, ci, bi in zip(params, c, b, strict=True))

    layout = piece_layout(None)
    no_momentum = MomentumRef(theta0, c, b, layout, 1)
    no_momentum.momentum = 0.0
    refs = {
        "full rule": MomentumRef(theta0, c, b, layout, 1),
        "no decay": MomentumRef(theta0, c, b, layout, 1, wd=0.0),
        "no momentum": no_momentum,
    }
    for _ in range(3):
        opt.step(loss)
        for ref in refs.values():
            ref.step()
    got = torch.cat([p.flatten() for p in params])
    close = {
        k: torch.allclose(got, torch.cat([t.flatten() for t in r.theta]), rtol=1e-6) for k, r in refs.items()
    }
    assert close == {"full rule": True, "no decay": False, "no momentum": False}
