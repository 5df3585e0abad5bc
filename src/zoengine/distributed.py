"""Data- and query-parallel zeroth-order training on ``torch.distributed`` (launched by torchrun).

ZO needs no gradient exchange: ranks that share the model and the optimizer's seed stream only have
to agree on a few floats per query. Two ways to split a step:

``data``  (DP) every rank takes a contiguous shard of the step's global batch (``shard``) and runs
          every query on it; the loss closure all-reduces ``(Σ shard losses, shard size)`` so the
          optimizer sees the mean over the combined batch *before* it forms the projected gradient.
          2 floats (16 bytes) per forward, whatever the model size.
``query`` (QP) every rank takes the whole batch and evaluates its share of the step's Q queries
          (round-robin); the optimizer all-gathers ``(seed, ℓ+, ℓ−)`` of every query, forms all
          projected gradients and every rank replays the same Q updates. 24 bytes per query.

Every rank applies the identical update, so the trainable tensors never need a broadcast. The
optimizer code stays single-process: DP lives in the closure (``Dist.reduce_closure``), QP in one
hook (``ZOOptimizer.query_split``, a ``QuerySplit``).

Dev and test evaluations are sharded in both modes (``eval_shard``): each rank scores its contiguous
shard of the split and the ranks all-reduce ``(Σ loss, correct, seen)``, so every rank gets the
whole split's loss and accuracy (the ranks then agree on the best checkpoint and on divergences).

Backend: NCCL when CUDA is available, gloo otherwise; every collective has a timeout
(``ZO_DIST_TIMEOUT`` seconds, default 300), so a dead rank ends the others with an error, not a hang.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from zoengine.errors import ZOError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MODES",
    "Dist",
    "DistributedError",
    "QuerySplit",
    "choose_backend",
    "from_env",
    "shard_bounds",
]

MODES = ("data", "query")
DEFAULT_TIMEOUT_S = 300.0


class DistributedError(ZOError):
    """A rank failed, timed out, or the ranks disagree (different seeds or batches)."""


def choose_backend(device: str = "auto") -> str:
    """``nccl`` when the model goes to CUDA (``model.device`` auto or cuda) and NCCL is built in,
    else ``gloo``."""
    if device != "cpu" and torch.cuda.is_available() and torch.distributed.is_nccl_available():
        return "nccl"
    return "gloo"


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, end)`` of rank's contiguous shard of ``n`` items (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class Dist:
    """This process's place in the job; a world of 1 (``Dist()``) makes every collective a no-op."""

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int = 0,
        *,
        backend: str | None = None,
        mode: str = "data",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        group: Any = None,
    ) -> None:
        if mode not in MODES:
            raise ZOError(f"parallel mode must be one of {', '.join(MODES)} (got {mode!r})", field="run.parallel")
        self.rank, self.world_size, self.local_rank = int(rank), int(world_size), int(local_rank)
        self.backend = backend
        self.mode = mode
        self.timeout_s = float(timeout_s)
        self.group = group
        self.bytes_sent = 0  # payload bytes this rank contributed to collectives (cumulative)
        self.collectives = 0

    # --- facts --------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes the run directory, metrics and checkpoints."""
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where collective buffers live: this rank's GPU for NCCL, CPU for gloo."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's contiguous shard of the step's global batch (DP); the whole batch otherwise."""
        if not self.enabled or self.mode != "data":
            return list(items)
        a, b = shard_bounds(len(items), self.rank, self.world_size)
        return list(items[a:b])

    def eval_shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's contiguous shard of an evaluation split, in either parallel mode: the ranks
        evaluate disjoint shards and add up ``(Σ loss, correct, seen)`` (``all_reduce_sum``)."""
        if not self.enabled:
            return list(items)
        a, b = shard_bounds(len(items), self.rank, self.world_size)
        return list(items[a:b])

    def query_split(self) -> QuerySplit | None:
        """The optimizer hook for query-parallel steps (None unless ``mode == "query"``)."""
        return QuerySplit(self) if self.enabled and self.mode == "query" else None

    def describe(self) -> str:
        if not self.enabled:
            return "single process"
        return f"rank {self.rank} of {self.world_size} ({self.backend}, {self.mode}-parallel)"

    # --- collectives (all with the process group's timeout) ---------------------------------------

    def _run(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except DistributedError:
            raise
        except (RuntimeError, ValueError) as exc:  # gloo/NCCL timeouts and closed peers surface here
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DistributedError(
                f"rank {self.rank}: {what} failed ({first}); another rank has probably failed or hung",
                field="run",
                hint="see that rank's error above; collectives time out after "
                f"{self.timeout_s:g}s (ZO_DIST_TIMEOUT)",
            ) from exc

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks in float64 (exact for the few floats ZO exchanges)."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.comm_device)
        self._run("all_reduce", lambda: torch.distributed.all_reduce(t, group=self.group))
        self.bytes_sent += t.numel() * t.element_size()
        self.collectives += 1
        return t.cpu().tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (e.g. a stop request)."""
        return self.all_reduce_sum([1.0 if flag else 0.0])[0] > 0

    def all_gather_rows(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """All-gather an equally shaped 2-D float64 tensor from every rank (rank order)."""
        if not self.enabled:
            return [rows]
        rows = rows.to(self.comm_device).contiguous()
        out = [torch.empty_like(rows) for _ in range(self.world_size)]
        self._run("all_gather", lambda: torch.distributed.all_gather(out, rows, group=self.group))
        self.bytes_sent += rows.numel() * rows.element_size()
        self.collectives += 1
        return [o.cpu() for o in out]

    def check_all(self, error: str | None, what: str) -> None:
        """Raise on every rank if ``error`` is set on any (so one rank's failure stops all, cleanly)."""
        if not self.enabled:
            if error:
                raise DistributedError(error, field="run")
            return
        errors: list[Any] = [None] * self.world_size
        self._run(what, lambda: torch.distributed.all_gather_object(errors, error, group=self.group))
        failed = [(r, e) for r, e in enumerate(errors) if e]
        if failed:
            r, e = failed[0]
            raise DistributedError(f"{what}: rank {r} failed: {e}", field="run")

    def gather_object(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        self._run(what, lambda: torch.distributed.all_gather_object(out, obj, group=self.group))
        return out

    def broadcast_object(self, obj: Any, what: str) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. the run directory it chose)."""
        if not self.enabled:
            return obj
        box = [obj]
        self._run(what, lambda: torch.distributed.broadcast_object_list(box, src=0, group=self.group))
        return box[0]

    def together(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on every rank; if it raises on any rank, every rank raises (no rank is left
        waiting in a later collective): the failing rank its own error, the others a
        ``DistributedError`` naming the failing rank."""
        if not self.enabled:
            return fn()
        try:
            out = fn()
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            try:
                self.check_all(text, what)
            except DistributedError:
                pass
            raise
        self.check_all(None, what)
        return out

    def barrier(self) -> None:
        if self.enabled:
            self._run("barrier", lambda: torch.distributed.barrier(group=self.group))

    # --- data-parallel loss ----------------------------------------------------------------------

    def reduce_closure(self, local_loss: Callable[[], Any], n_local: int) -> Callable[[], torch.Tensor]:
        """Wrap a closure returning the MEAN loss over this rank's shard of ``n_local`` examples into
        one returning the mean over the combined batch (all ranks' examples, each weighted once).

        A rank with an empty shard contributes nothing (no forward) but still joins the reduction.
        """
        if not self.enabled or self.mode != "data":  # query-parallel: each rank has the whole batch
            return local_loss

        def closure() -> torch.Tensor:
            local = 0.0
            if n_local > 0:
                loss = local_loss()
                local = float(loss.detach().item()) if isinstance(loss, torch.Tensor) else float(loss)
            total, count = self.all_reduce_sum([local * n_local, float(n_local)])
            return torch.tensor(total / count if count > 0 else math.nan, dtype=torch.float64)

        return closure

    # --- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy the process group. A script of its own that ends here should then leave with
        ``os._exit`` as ``zoengine train`` does (``cli/train.py:_finish_rank``): gloo's threads
        abort Python's interpreter teardown now and then (SIGABRT after a finished run)."""
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class QuerySplit:
    """``ZOOptimizer``'s query-parallel hook: which queries this rank evaluates, and the exchange.

    Query ``j`` of a step belongs to rank ``j % world``. Every rank draws every seed (the optimizer's
    generator stays in lockstep), so the exchanged seeds double as a consistency check.
    """

    def __init__(self, dist: Dist) -> None:
        self.dist = dist

    def owns(self, j: int, n_q: int) -> bool:
        return j % self.dist.world_size == self.dist.rank

    def gather(
        self, seeds: list[int], lps: list[float], lms: list[float]
    ) -> tuple[list[float], list[float]]:
        """All ranks' ``(ℓ+, ℓ−)`` for every query, from each rank's ``(seed, ℓ+, ℓ−)`` rows."""
        d = self.dist
        n_q = len(seeds)
        mine = [j for j in range(n_q) if self.owns(j, n_q)]
        per_rank = math.ceil(n_q / d.world_size)
        ints = torch.full((per_rank, 3), -1, dtype=torch.int64)
        rows = ints.view(torch.float64)  # column 0 carries the seed's bits, 1-2 the losses
        for k, j in enumerate(mine):
            ints[k, 0] = seeds[j]
            rows[k, 1] = lps[j]
            rows[k, 2] = lms[j]
        out_p, out_m = list(lps), list(lms)
        for r, got in enumerate(d.all_gather_rows(rows)):
            got_seeds = got.view(torch.int64)[:, 0].tolist()
            for k, j in enumerate(range(r, n_q, d.world_size)):
                if got_seeds[k] != seeds[j]:
                    raise DistributedError(
                        f"ranks out of step: query {j} has seed {got_seeds[k]} on rank {r} and "
                        f"{seeds[j]} on rank {d.rank} (different config, seed or resume point?)",
                        field="run",
                    )
                out_p[j], out_m[j] = float(got[k, 1]), float(got[k, 2])
        return out_p, out_m


def from_env(mode: str | None = None, timeout_s: float | None = None, device: str = "auto") -> Dist:
    """The job torchrun started (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``), initialised once; a plain
    process (no ``WORLD_SIZE`` or 1) gets ``Dist()`` and never touches ``torch.distributed``."""
    mode = mode or os.environ.get("ZO_DIST_MODE", "data")
    if timeout_s is None:
        timeout_s = float(os.environ.get("ZO_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist(mode=mode, timeout_s=timeout_s)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = choose_backend(device)
    if not torch.distributed.is_initialized():
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            if local_rank >= torch.cuda.device_count():
                raise DistributedError(
                    f"rank {rank} needs GPU {local_rank} but this machine has {torch.cuda.device_count()}",
                    field="--nproc",
                    hint="one process per GPU, or model.device = cpu for gloo on CPU",
                )
            torch.cuda.set_device(local_rank)
            kwargs["device_id"] = torch.device("cuda", local_rank)
        try:
            torch.distributed.init_process_group(
                backend=backend,
                init_method="env://",
                rank=rank,
                world_size=world,
                timeout=datetime.timedelta(seconds=timeout_s),
                **kwargs,
            )
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(
                f"rank {rank}: could not join the {world}-process job ({str(exc).splitlines()[0]})",
                field="run",
                hint="start it with `zoengine train --nproc N` or torchrun",
            ) from exc
    else:
        backend = torch.distributed.get_backend()
    return Dist(rank, world, local_rank, backend=backend, mode=mode, timeout_s=timeout_s)
