"""Divergence guard: notice a run that blew up, roll back to the last good state, lower the lr, give up.

What counts as a divergence (checked by the engine after every step and every dev evaluation):

* the step's loss is NaN/inf;
* the loss of two steps in a row is above ``run.divergence_factor`` × the median of the last
  ``WINDOW`` accepted step losses, the median floored at the chance-level loss ``ln K`` of a
  K-class task (``LOSS_FLOOR`` when unknown): a model worse than a uniform guess by that factor is
  broken, while a hard batch late in training, when the median is tiny, is not. A single spike is
  tolerated (not added to the median, its pre-step state not taken as good) because data order is
  replayed exactly after a rollback: one hard batch would otherwise fail every retry. The test
  starts once ``MIN_HISTORY`` losses are known; factor 0 turns it off;
* a projected gradient (``optimizer.last_stats["projected_grads"]``) is NaN/inf;
* a trainable tensor is NaN/inf after the update;
* a dev evaluation's loss is NaN/inf (such an evaluation is never "best").

The reaction: restore the last good trainable tensors *and* the optimizer and scheduler state
(momenta, step counter, seed stream), multiply the lr by ``run.divergence_lr_factor`` (the
scheduler's ``base_lrs`` and the groups' ``initial_lr``/``lr``, so the lower lr persists and is
saved with the next checkpoint), log a warning, and redo the steps from there. After
``run.divergence_retries`` recoveries that did not get past the point of failure, the run stops
with status ``diverged``.

Which state is good: the loss a step reports is measured on the parameters *before* its update,
so the state θ_k left by step k is only known good once step k+1 has measured a sane loss on it.
The guard keeps two snapshots: ``candidate`` (taken before a step) and ``good`` (the latest
candidate whose loss was then confirmed). A bad loss rolls back to ``good``; a bad update (a
non-finite projected gradient or tensor) after a sane loss rolls back to the pre-step state,
which that loss has just confirmed.

Memory trade-off (a snapshot = trainable tensors + optimizer state; at most two are held):

* trainable tensors up to ``SNAPSHOT_EVERY_STEP_BYTES`` (adapters: LoRA, TT, BitFit, a layer
  subset): a snapshot before every step, on the tensors' own device. Cost: up to 2 × (trainable
  + optimizer state) extra memory and one device-local copy per step; a rollback loses one step.
* larger (full fine-tuning): a snapshot every ``interval`` steps (the checkpoint period), in host
  memory, so accelerator memory is not doubled. Cost: up to 2 × (trainable + optimizer state)
  of host RAM (a 135M-parameter model in float32: 0.54 GB per copy, plus its optimizer state)
  and one copy per interval; a rollback loses up to ``interval`` steps, redone with the lower lr.
* ``run.divergence_retries = 0`` keeps no snapshot at all: the first divergence stops the run
  and the last checkpoint on disk is what can be resumed or exported.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "LOSS_FLOOR",
    "MIN_HISTORY",
    "SNAPSHOT_EVERY_STEP_BYTES",
    "WINDOW",
    "DivergenceGuard",
    "Snapshot",
]

WINDOW = 32
MIN_HISTORY = 4
LOSS_FLOOR = 0.25
SNAPSHOT_EVERY_STEP_BYTES = 64 * 2**20


def clone_tree(obj: Any, device: torch.device | None = None) -> Any:
    """Deep copy of a (nested) state dict whose tensors are cloned (moved to ``device`` if given).

    ``Optimizer.load_state_dict`` keeps the very tensors it is given when dtype and device match,
    so a snapshot must be cloned again on every restore or the optimizer would mutate it.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to(device=device if device is not None else obj.device, copy=True)
    if isinstance(obj, dict):
        return {k: clone_tree(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone_tree(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(clone_tree(v, device) for v in obj)
    return copy.deepcopy(obj)


@dataclass
class Snapshot:
    """Everything a rollback restores: the engine's step, trainable tensors, optimizer, scheduler."""

    step: int
    trainable: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]


class DivergenceGuard:
    """Detection, snapshots and the retry count of one run (the engine does the restoring)."""

    def __init__(
        self,
        handle: Any,
        optimizer: Any,
        scheduler: Any,
        *,
        factor: float,
        lr_factor: float,
        retries: int,
        interval: int,
        floor: float = LOSS_FLOOR,
    ) -> None:
        self.handle, self.optimizer, self.scheduler = handle, optimizer, scheduler
        self.factor = float(factor)
        self.lr_factor = float(lr_factor)
        self.retries = int(retries)
        self.floor = float(floor)
        self.suspect = False  # the previous step's loss was a spike
        nbytes = sum(p.numel() * p.element_size() for _, p in handle.named_trainable())
        small = nbytes <= SNAPSHOT_EVERY_STEP_BYTES
        self.every = 1 if small else max(1, int(interval))
        self.device: torch.device | None = None if small else torch.device("cpu")
        self.keep = self.retries > 0
        self.losses: deque[float] = deque(maxlen=WINDOW)
        self.good: Snapshot | None = None
        self.candidate: Snapshot | None = None
        self.failures = 0  # divergences since the run last got past a point of failure
        self.total = 0  # divergences over the whole run
        self.recover_until: int | None = None  # the step a recovery must complete to count as one

    @classmethod
    def for_run(
        cls, run: Any, handle: Any, optimizer: Any, scheduler: Any, num_classes: int
    ) -> DivergenceGuard:
        """The guard of a run with settings ``run`` (``RunConfig.run``); the loss floor is the
        chance-level loss of a task with ``num_classes`` >= 2 classes, ``LOSS_FLOOR`` otherwise."""
        return cls(
            handle,
            optimizer,
            scheduler,
            factor=run.divergence_factor,
            lr_factor=run.divergence_lr_factor,
            retries=run.divergence_retries,
            interval=run.checkpoint_every or 100,
            floor=math.log(num_classes) if num_classes >= 2 else LOSS_FLOOR,
        )

    # --- snapshots -------------------------------------------------------------------------------

    def snapshot(self, step: int) -> Snapshot:
        return Snapshot(
            step=step,
            trainable={
                n: p.detach().to(device=self.device or p.device, copy=True)
                for n, p in self.handle.named_trainable()
            },
            optimizer=clone_tree(self.optimizer.state_dict(), self.device),
            scheduler=copy.deepcopy(self.scheduler.state_dict()),
        )

    def before_step(self, step: int) -> None:
        """Take the pre-step snapshot when one is due (every step for small trainable sets)."""
        if self.keep and (self.good is None or step % self.every == 0):
            self.candidate = self.snapshot(step)

    def target(self) -> Snapshot | None:
        """The state a rollback goes to now: the last confirmed one, else the pre-step one."""
        return self.good if self.good is not None else self.candidate

    # --- detection -------------------------------------------------------------------------------

    def spike(self, loss: float) -> str | None:
        """Why ``loss`` is far above the running median (None when it is not, or too early to tell)."""
        if self.factor > 0 and len(self.losses) >= MIN_HISTORY:
            median = statistics.median(self.losses)
            if loss > self.factor * max(median, self.floor):
                return (
                    f"loss {loss:.4g} is above {self.factor:g} x the median {median:.4g} "
                    f"of the last {len(self.losses)} steps (twice in a row)"
                )
        return None

    def check_step(self, loss: float, projected_grads: Iterable[float]) -> str | None:
        """Problem of the step just taken, or None. A sane loss confirms the pre-step snapshot."""
        if not math.isfinite(loss):
            return f"loss is {loss}"
        spike = self.spike(loss)
        if spike is not None:
            if self.suspect:
                return spike
            self.suspect = True
            self.candidate = None  # the state this loss was measured on is not confirmed
        else:
            self.suspect = False
            if self.candidate is not None:  # its loss was just measured sane: it is good
                self.good, self.candidate = self.candidate, None
        bad = [g for g in projected_grads if not math.isfinite(g)]
        if bad:
            return f"projected gradient is {bad[0]}"
        name = self.first_non_finite()
        if name is not None:
            return f"trainable tensor {name} is not finite after the update"
        return None

    def first_non_finite(self) -> str | None:
        """Name of a trainable tensor holding NaN/inf (one reduction + one sync per device)."""
        sums: dict[torch.device, torch.Tensor] = {}
        named = self.handle.named_trainable()
        for _, p in named:
            s = p.detach().sum(dtype=torch.float32)
            sums[p.device] = s if p.device not in sums else sums[p.device] + s
        if all(math.isfinite(float(s)) for s in sums.values()):
            return None
        for n, p in named:  # rare path: say which one
            if not bool(torch.isfinite(p.detach()).all()):
                return n
        return named[0][0] if named else "?"  # finite values whose sum overflows: still an explosion

    def accept(self, step: int, loss: float) -> None:
        """Record a step that passed; a recovery counts once the run got past its point of failure."""
        if not self.suspect:  # a spike stays out of the median it is measured against
            self.losses.append(float(loss))
        if self.recover_until is not None and step >= self.recover_until:
            self.failures, self.recover_until = 0, None

    # --- reaction --------------------------------------------------------------------------------

    def record(self, resume_at: int) -> bool:
        """Count a divergence; True if a rollback may be tried, False if the run must stop."""
        self.failures += 1
        self.total += 1
        self.recover_until = max(self.recover_until or 0, resume_at)
        return self.failures <= self.retries and self.target() is not None

    def roll_back(self, problem: str, *, at: int, resume_at: int) -> tuple[int | None, str, bool]:
        """React to ``problem`` seen at step ``at``: ``(step restored or None, one line, recovered)``.

        Recovered: the last good state is back and the lr lowered; the line is the warning to log.
        Not recovered (retries spent, or nothing to return to): the last good state, if any, is
        back all the same (not the broken weights) and the line says why the run diverged. The
        recovery counts as done once step ``resume_at`` has been accepted again.
        """
        recovered = self.record(resume_at)
        target = self.target()
        if target is not None:
            self.restore(target)
        step = target.step if target is not None else None
        if not recovered:
            if self.retries == 0:
                why = "run.divergence_retries = 0"
            elif target is None:
                why = "no earlier good state to return to"
            else:
                why = f"{self.retries} recoveries failed"
            return step, f"diverged at step {at}: {problem} ({why})", False
        lr = self.reduce_lr()
        line = (
            f"divergence at step {at}: {problem}; rolled back to step {step}, "
            f"lr x{self.lr_factor:g} -> {lr:.3g} (recovery {self.failures} of {self.retries})"
        )
        return step, line, True

    def restore(self, snap: Snapshot) -> None:
        """Put trainable tensors, optimizer and scheduler back as they were at ``snap``.

        The lr is *not* taken from the snapshot: reductions made since it was taken are kept.
        """
        base = list(self.scheduler.base_lrs)
        self.handle.load_trainable_state_dict(snap.trainable)  # copies into the live tensors
        self.optimizer.load_state_dict(clone_tree(snap.optimizer))
        self.scheduler.load_state_dict(copy.deepcopy(snap.scheduler))
        self.set_base_lrs(base)
        self.candidate, self.suspect = None, False

    def reduce_lr(self) -> float:
        """Multiply the base lr of every group by ``lr_factor``; returns the new first-group lr."""
        self.set_base_lrs([b * self.lr_factor for b in self.scheduler.base_lrs])
        return float(self.optimizer.param_groups[0]["lr"])

    def set_base_lrs(self, base: list[float]) -> None:
        sched, groups = self.scheduler, self.optimizer.param_groups
        sched.base_lrs = list(base)
        lambdas = getattr(sched, "lr_lambdas", None) or [None] * len(groups)
        for group, b, fn in zip(groups, base, lambdas, strict=True):
            group["initial_lr"] = b
            group["lr"] = b * (fn(sched.last_epoch) if fn is not None else 1.0)
        sched._last_lr = [group["lr"] for group in groups]
