"""``ZOOptimizer``: the two-point (SPSA / RGE) machinery every zeroth-order method shares.

All ZO methods here pay for the same thing, ``2·Q`` forward passes per step with seeded in-place
perturbations, and differ only in (a) the direction they perturb along and (b) how they turn the
``(seed, projected_grad)`` pairs into an update. The base class owns (a)'s default, the query
loop, the generator, restore and state; subclasses implement ``_update`` (and maybe ``direction``).

    opt = MezoSGD(groups, lr=1e-6, eps=1e-3, seed=0)
    loss = opt.step(lambda: model(**batch).loss)   # closure: loss on the *current* parameters

Determinism: a dedicated CPU ``torch.Generator`` (seeded from ``seed``) draws one 62-bit seed per
query; the noise of piece ``i`` (a tensor, or a 4M-element flat chunk of a bigger one) in that
query comes from a per-device generator re-seeded with ``tensor_seed(query_seed, i)``. So z never
depends on the global RNG, on how many draws other pieces made, or on where other tensors live,
and the optimizer never touches the global RNG. Pieces are visited in the fixed group order and
perturbed in place one at a time: extra peak memory is one chunk of noise (16 MiB), not a copy.

Stop safety: if the closure raises (the engine's stop request), parameters are restored and the
step counter and seed stream are rewound, so the partial step leaves no trace.

Restore: ``+ε, −2ε, +ε`` in float32 is *not* bit-exact (measured: ~47 % of elements end 1 ulp off
for eps=1e-3). ``restore="exact"`` snapshots the trainable tensors once per step and copies them
back after each query (bit-exact, +1x trainable memory); ``"inplace"`` is MeZO's ``+ε, −2ε, +ε``
(0 extra memory, a few ulps of drift per step); ``"auto"`` (default) picks ``exact`` when the
trainable tensors total at most ``EXACT_RESTORE_AUTO_BYTES`` (adapters) and ``inplace`` otherwise
(full fine-tuning, where a copy would double memory).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, NamedTuple

import torch

__all__ = [
    "CHUNK_NUMEL",
    "EXACT_RESTORE_AUTO_BYTES",
    "NOISE_KINDS",
    "RESTORE_MODES",
    "Piece",
    "ZOOptimizer",
    "tensor_seed",
]

RESTORE_MODES = ("auto", "exact", "inplace")
# Perturbation distributions. Both have E[z] = 0 and E[zzᵀ] = I, which is all the two-point
# estimator's unbiasedness (to O(ε²)) needs; Rademacher (SPSA's original) has the smaller
# variance (E[z⁴] = 1 vs 3) and costs one random bit per coordinate instead of a Box–Muller pair.
NOISE_KINDS = ("gaussian", "rademacher")
EXACT_RESTORE_AUTO_BYTES = 64 * 2**20
# Tensors above this many elements are perturbed/updated in flat chunks, each with its own seed,
# so the extra peak memory is one chunk (16 MiB of float32 noise), not the largest tensor
# (the 28M-element embedding of a 135M model would cost 108 MiB, +10 % over inference).
CHUNK_NUMEL = 1 << 22


class Piece(NamedTuple):
    """A unit of perturbation: ``x`` is ``param`` itself or a flat chunk view of it at ``start``."""

    x: torch.Tensor
    group: dict[str, Any]
    param: torch.Tensor
    start: int | None


Pieces = list[Piece]

_M64 = (1 << 64) - 1


def tensor_seed(query_seed: int, index: int) -> int:
    """Seed for tensor ``index`` of one query (splitmix64 mix, so nearby seeds give unrelated z)."""
    x = (query_seed + (index + 1) * 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return (x ^ (x >> 31)) & ((1 << 63) - 1)


_SIGN_TABLES: dict[torch.device, torch.Tensor] = {}


def rademacher_(z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Fill float32 ``z`` with independent ±1 from ``gen``, 8 coordinates per random byte.

    Each byte indexes a 256×8 table of signs, so the draw costs one random number per 8
    coordinates and one gather pass, instead of a Box–Muller pair per coordinate."""
    table = _SIGN_TABLES.get(z.device)
    if table is None:
        bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
        table = _SIGN_TABLES[z.device] = (bits * 2 - 1).to(device=z.device, dtype=torch.float32)
    flat = z.view(-1)
    n = flat.numel()
    full, rem = divmod(n, 8)
    idx = torch.randint(0, 256, (full + (1 if rem else 0),), generator=gen, device=z.device)
    if full:
        torch.index_select(table, 0, idx[:full], out=flat[: 8 * full].view(full, 8))
    if rem:
        flat[8 * full :] = table[idx[full], :rem]
    return z


def _as_float(loss: Any) -> float:
    return float(loss.detach().item()) if isinstance(loss, torch.Tensor) else float(loss)


class ZOOptimizer(torch.optim.Optimizer):
    """Base of every optimizer in the registry (``step(closure)`` is required).

    Subclasses set ``defaults`` (must contain ``lr``, ``eps``, ``weight_decay``), implement
    ``_update(params, seeds, pgs)`` and may override ``direction``, ``queries_for_step`` and
    ``_method_stats``. ``last_stats`` describes the latest step (see ``step``).
    """

    uses_backward: ClassVar[bool] = False
    # True where ``_update`` itself restores the last query (saves one noise pass per step).
    fused_restore: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        seed: int = 0,
        restore: str = "auto",
        noise: str = "gaussian",
    ) -> None:
        super().__init__(params, defaults)
        if restore not in RESTORE_MODES:
            raise ValueError(f"restore must be one of {', '.join(RESTORE_MODES)} (got {restore!r})")
        if noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {', '.join(NOISE_KINDS)} (got {noise!r})")
        self.noise = noise
        self.seed = int(seed)
        self._seed_gen = torch.Generator(device="cpu")
        self._seed_gen.manual_seed(self.seed)
        self._noise_gens: dict[torch.device, torch.Generator] = {}
        self._scratch: dict[tuple[torch.device, int], torch.Tensor] | None = None
        self._pieces: Pieces | None = None  # pieces of the latest step (index → piece for state)
        self._t = 0  # completed steps (1-based index of the step in progress while stepping)
        nbytes = sum(pc.x.numel() * pc.x.element_size() for pc in self._param_list())
        self.restore = (
            restore if restore != "auto" else ("exact" if nbytes <= EXACT_RESTORE_AUTO_BYTES else "inplace")
        )
        self.last_stats: dict[str, Any] = {}
        # Query-parallel hook (zoengine.distributed.QuerySplit): this rank evaluates only the queries
        # it ``owns`` and ``gather`` fills in the others' losses; None = every query here.
        self.query_split: Any = None

    # --- parameters and noise ------------------------------------------------------------------

    def _param_list(self) -> Pieces:
        """Pieces in the FIXED order of the groups; a piece's seed index = its position here.

        Contiguous tensors above ``CHUNK_NUMEL`` elements are split into flat chunk views.
        """
        pieces = []
        for group in self.param_groups:
            for p in group["params"]:
                n = p.numel()
                if n <= CHUNK_NUMEL or not p.is_contiguous():
                    pieces.append(Piece(p, group, p, None))
                    continue
                flat = p.view(-1)
                for a in range(0, n, CHUNK_NUMEL):
                    pieces.append(Piece(flat[a : a + CHUNK_NUMEL], group, p, a))
        return pieces

    def _state_view(self, piece: Piece, key: str) -> torch.Tensor:
        """This piece's slice of the per-parameter buffer ``key`` (created as zeros on first use)."""
        state = self.state[piece.param]
        buf = state.get(key)
        if buf is None:
            buf = state[key] = torch.zeros_like(piece.param)
        if piece.start is None:
            return buf
        return buf.view(-1)[piece.start : piece.start + piece.x.numel()]

    def _generator(self, device: torch.device) -> torch.Generator:
        """One noise generator per device (the CPU one for CPU tensors, a CUDA one per GPU)."""
        gen = self._noise_gens.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            self._noise_gens[device] = gen
        return gen

    def _noise(
        self, p: torch.Tensor, seed: int, index: int, count: int = 1, slot: int = 0
    ) -> list[torch.Tensor]:
        """``count`` noise tensors (``self.noise``: standard normal or ±1) shaped like ``p`` for
        tensor ``index`` of query ``seed``.

        Drawn in float32 (cast afterwards) so z is the same whatever the parameter dtype. Inside
        a pass (``_scratch_pass``) draw ``k`` lands in scratch buffer ``slot + k``, reused across
        tensors: refilling one buffer is ~40 % faster on CPU than page-faulting a fresh one.
        """
        gen = self._generator(p.device)
        gen.manual_seed(tensor_seed(seed, index))
        out = []
        for k in range(count):
            z = self._scratch_view(p, slot + k)
            if self.noise == "rademacher":
                rademacher_(z, gen)
            else:
                z.normal_(generator=gen)
            out.append(z if p.dtype == torch.float32 else z.to(p.dtype))
        return out

    def _scratch_view(self, p: torch.Tensor, slot: int) -> torch.Tensor:
        if self._scratch is None:
            return torch.empty(p.shape, device=p.device, dtype=torch.float32)
        key = (p.device, slot)
        buf = self._scratch.get(key)
        if buf is None:
            largest = max(pc.x.numel() for pc in self._param_list() if pc.x.device == p.device)
            buf = self._scratch[key] = torch.empty(largest, device=p.device, dtype=torch.float32)
        return buf[: p.numel()].view(p.shape)

    @contextlib.contextmanager
    def _scratch_pass(self) -> Iterator[None]:
        """Reuse noise buffers for one pass over the tensors; free them before the next forward."""
        self._scratch = {}
        try:
            yield
        finally:
            self._scratch = None

    def direction(self, p: torch.Tensor, index: int, seed: int, slot: int = 0) -> torch.Tensor:
        """Perturbation direction of tensor ``index`` for query ``seed`` (default: z ~ N(0, I)).

        Inside a pass the result may live in scratch ``slot``: use it before the next call with
        the same slot, and copy it if it must outlive the pass.
        """
        return self._noise(p, seed, index, slot=slot)[0]

    def _perturb(self, params: Pieces, seed: int, scale: float) -> None:
        """``p += scale·eps·u`` one tensor at a time (extra peak = the largest tensor's u)."""
        eps = float(self.defaults["eps"])  # one eps for all groups: pg divides by it
        with self._scratch_pass():
            for i, pc in enumerate(params):
                pc.x.add_(self.direction(pc.x, i, seed), alpha=scale * eps)

    def _draw_seed(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self._seed_gen).item())

    # --- hooks for subclasses ------------------------------------------------------------------

    def queries_for_step(self, t: int) -> int:
        """Queries for 1-based step ``t`` (fixed ``q`` unless a schedule overrides it)."""
        return int(self.defaults.get("q", 1))

    def _begin_step(self, t: int) -> None:
        """Called before any forward of step ``t`` (e.g. to compute annealed coefficients)."""

    def _update(
        self,
        params: Pieces,
        seeds: list[int],
        pgs: list[float],
        pending_restore: bool,
    ) -> None:
        raise NotImplementedError

    def _method_stats(self) -> dict[str, Any]:
        return {}

    # --- the step ------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> float:  # type: ignore[override]
        """One ZO step: Q two-point queries on the same batch, then the method's update.

        Returns the mean of ``(ℓ+ + ℓ−)/2`` over queries (the loss at θ up to O(ε²), at no extra
        forward). A non-finite loss skips the update (parameters are restored, ``skipped`` set).
        """
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss")
        gen_state = self._seed_gen.get_state()
        self._t += 1
        t = self._t
        self._begin_step(t)
        n_q = self.queries_for_step(t)
        params = self._pieces = self._param_list()
        try:
            seeds, pgs, lps, lms, pending = self._run_queries(closure, params, n_q)
        except BaseException:
            # The closure raised (e.g. a stop request): the step never happened. Parameters are
            # already restored by _run_queries; rewind the counter and the seed stream so a
            # resumed run draws exactly what an uninterrupted one would.
            self._t -= 1
            self._seed_gen.set_state(gen_state)
            self._begin_step(max(1, self._t))
            raise
        finite = all(math.isfinite(v) for v in lps + lms)
        if finite:
            with self._scratch_pass():
                self._update(params, seeds, pgs, pending)
        elif pending:
            self._perturb(params, seeds[-1], +1.0)
        self.last_stats = {
            "step": t,
            "queries": n_q,
            "forward_passes": 2 * n_q,
            "projected_grads": pgs,
            "seeds": seeds,  # query seeds: with the step's batch they reproduce every direction
            "loss_plus": lps,
            "loss_minus": lms,
            "lr": float(self.param_groups[0]["lr"]) if self.param_groups else 0.0,
            "skipped": not finite,
            **self._method_stats(),
        }
        return sum((a + b) / 2.0 for a, b in zip(lps, lms, strict=True)) / max(1, n_q)

    def _run_queries(
        self, closure: Callable[[], Any], params: Pieces, n_q: int
    ) -> tuple[list[int], list[float], list[float], list[float], bool]:
        """The 2·Q forwards: (seeds, projected grads, ℓ+, ℓ−, last restore pending).

        If the closure raises, parameters are put back before the exception propagates.
        """
        eps = float(self.defaults["eps"])
        snapshot = [pc.x.detach().clone() for pc in params] if self.restore == "exact" else None
        seeds: list[int] = []
        pgs: list[float] = []
        lps: list[float] = []
        lms: list[float] = []
        offset = 0.0  # current displacement, in units of eps·u(seed)
        seed = 0
        split = self.query_split
        try:
            for j in range(n_q):
                seed = self._draw_seed()
                mine = split is None or split.owns(j, n_q)
                if mine or snapshot is None:  # another rank's query: replay its ±ε (same float path)
                    self._perturb(params, seed, +1.0)
                offset = 1.0
                lp = _as_float(closure()) if mine else math.nan
                if mine or snapshot is None:
                    self._perturb(params, seed, -2.0)
                offset = -1.0
                lm = _as_float(closure()) if mine else math.nan
                if snapshot is not None:
                    self._copy_back(params, snapshot)
                    offset = 0.0
                elif not (self.fused_restore and j == n_q - 1):
                    self._perturb(params, seed, +1.0)
                    offset = 0.0
                # else: _update adds the last +ε while it regenerates that z anyway
                seeds.append(seed)
                pgs.append((lp - lm) / (2.0 * eps))
                lps.append(lp)
                lms.append(lm)
        except BaseException:
            if snapshot is not None:
                self._copy_back(params, snapshot)
            elif offset != 0.0:
                self._perturb(params, seed, -offset)
            raise
        if split is not None:  # every rank now holds every query's losses, hence the same pgs
            lps, lms = split.gather(seeds, lps, lms)
            pgs = [(lp - lm) / (2.0 * eps) for lp, lm in zip(lps, lms, strict=True)]
        return seeds, pgs, lps, lms, offset != 0.0

    @staticmethod
    def _copy_back(params: Pieces, snapshot: list[torch.Tensor]) -> None:
        for pc, saved in zip(params, snapshot, strict=True):
            pc.x.copy_(saved)

    # --- shared update helpers -----------------------------------------------------------------

    def _estimate(
        self, p: torch.Tensor, index: int, seeds: list[int], pgs: list[float], pending_restore: bool = False
    ) -> torch.Tensor:
        """This piece's gradient estimate ``(1/Q)·Σ pg_q·z_q`` (a piece-sized temporary).

        With ``pending_restore`` the piece still sits at θ − εz_last: the last z, regenerated here
        anyway, first adds the +ε back (same ops as an unfused restore, one noise pass saved).
        """
        n = len(seeds)
        g = torch.zeros_like(p)
        for j, (seed, pg) in enumerate(zip(seeds, pgs, strict=True)):
            z = self.direction(p, index, seed)
            if pending_restore and j == n - 1:
                p.add_(z, alpha=float(self.defaults["eps"]))
            g.add_(z, alpha=pg / n)
        return g

    @staticmethod
    def _decay(p: torch.Tensor, group: dict[str, Any]) -> None:
        """Decoupled weight decay, only in groups with ``weight_decay > 0`` (biases/norms: 0)."""
        wd = float(group.get("weight_decay", 0.0))
        if wd > 0:
            p.mul_(1.0 - group["lr"] * wd)

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus ``"zo"``: step counter and seed-generator state (exact resume)."""
        sd = super().state_dict()
        sd["zo"] = {
            "step": self._t,
            "seed": self.seed,
            "generator": self._seed_gen.get_state(),
            "restore": self.restore,
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sd = dict(state_dict)
        zo = sd.pop("zo", None)
        super().load_state_dict(sd)
        if zo is not None:
            self._t = int(zo["step"])
            self.seed = int(zo["seed"])
            self._seed_gen.set_state(zo["generator"])

    @property
    def step_count(self) -> int:
        """Completed steps (restored by ``load_state_dict``)."""
        return self._t
