"""What the dashboard knows about a run, built only from events (live queue or ``metrics.jsonl``).

One source of truth per run: the live dashboard, a replay of a finished run and the comparison
overlay all fold the same event stream into a ``RunState``. ``version`` increases on every change,
so widgets redraw only when something new arrived.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from zoengine.events import (
    CheckpointSaved,
    EvalDone,
    EvalProgress,
    Event,
    LogMessage,
    RunInfo,
    RunStatus,
    StatusChanged,
    StepLogged,
)
from zotui.series import DecimatedSeries, Ema

RATE_WINDOW = 64  # recent steps the speed and the ETA are measured over


@dataclass
class EvalPoint:
    step: int
    split: str
    loss: float
    accuracy: float


@dataclass
class RunState:
    """Folded view of one run's events."""

    status: str = RunStatus.CREATED
    status_message: str = ""
    info: RunInfo | None = None
    total_steps: int = 0
    last_step: StepLogged | None = None
    steps_seen: int = 0
    loss: DecimatedSeries = field(default_factory=DecimatedSeries)
    smoothed: DecimatedSeries = field(default_factory=DecimatedSeries)
    grad: DecimatedSeries = field(default_factory=DecimatedSeries)
    queries: DecimatedSeries = field(default_factory=DecimatedSeries)
    lr: DecimatedSeries = field(default_factory=DecimatedSeries)
    sparsity: DecimatedSeries = field(default_factory=DecimatedSeries)
    evals: list[EvalPoint] = field(default_factory=list)
    per_module: dict[str, dict[str, Any]] = field(default_factory=dict)
    effective_rank: float | None = None
    last_checkpoint: int | None = None  # step of checkpoints/last
    prev_checkpoint: int | None = None  # step of checkpoints/prev (the last before last)
    best_checkpoint: int | None = None  # step of checkpoints/best
    logs: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=500))
    log_total: int = 0  # lines ever logged; a viewer shows the ones it has not seen yet
    version: int = 0
    _ema: Ema = field(default_factory=Ema)
    evaluating: EvalProgress | None = None  # the evaluation under way, if any
    _timing: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> RunState:
        state = cls()
        state.feed(events)
        return state

    # --- folding --------------------------------------------------------------------------------

    def feed(self, events: Iterable[Event]) -> int:
        """Fold events in; returns how many were consumed."""
        n = 0
        for ev in events:
            n += 1
            if isinstance(ev, StepLogged):
                self._on_step(ev)
            elif isinstance(ev, EvalProgress):
                self.evaluating = ev
            elif isinstance(ev, EvalDone):
                self.evaluating = None
                self.evals.append(EvalPoint(ev.step, ev.split, ev.loss, ev.accuracy))
                self._log(
                    "info",
                    f"eval {ev.split} @ step {ev.step}: loss {ev.loss:.4f}, accuracy {ev.accuracy:.3f}",
                )
            elif isinstance(ev, StatusChanged):
                self.status, self.status_message = ev.status, ev.message
                if ev.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
                    self.evaluating = None  # an evaluation cut short by a stop or a failure
                tail = f" ({ev.message})" if ev.message else ""
                level = "error" if ev.status in (RunStatus.FAILED, RunStatus.DIVERGED) else "info"
                self._log(level, f"status: {ev.status}{tail}")
            elif isinstance(ev, RunInfo):
                self.info, self.total_steps = ev, ev.total_steps
                self._log(
                    "info", f"model {ev.model}: {ev.trainable_params:,} of {ev.total_params:,} trainable"
                )
            elif isinstance(ev, CheckpointSaved):
                if ev.best:
                    self.best_checkpoint = ev.step
                else:
                    if self.last_checkpoint is not None and self.last_checkpoint != ev.step:
                        self.prev_checkpoint = self.last_checkpoint
                    self.last_checkpoint = ev.step
            elif isinstance(ev, LogMessage):
                self._log(ev.level, ev.text)
        if n:
            self.version += 1
        return n

    def _on_step(self, ev: StepLogged) -> None:
        x = float(ev.step)
        previous = self.last_step
        self.evaluating = None
        self.last_step = ev
        self.steps_seen += 1
        self.loss.append(x, ev.loss)
        smooth = self._ema.update(ev.loss)
        if smooth is not None:
            self.smoothed.append(x, smooth)
        if ev.projected_grads:
            self.grad.append(x, sum(abs(g) for g in ev.projected_grads) / len(ev.projected_grads))
        self.queries.append(x, float(ev.queries))
        self.lr.append(x, ev.lr)
        extra = ev.extra or {}
        if "gate_sparsity" in extra:
            self.sparsity.append(x, float(extra["gate_sparsity"]))
        if isinstance(extra.get("per_module"), dict):
            self.per_module = extra["per_module"]
        if extra.get("effective_rank") is not None:
            self.effective_rank = float(extra["effective_rank"])
        passes = ev.forward_passes - previous.forward_passes if previous else 0
        if passes <= 0 or (previous and ev.step != previous.step + 1):  # first step, resume, rollback
            passes = max(1, 2 * ev.queries)
        self._timing.append((max(0.0, ev.seconds), passes))

    def _log(self, level: str, text: str) -> None:
        self.logs.append((level, text))
        self.log_total += 1

    def logs_since(self, seen: int) -> list[tuple[str, str]]:
        """Lines logged after the first ``seen`` (as many as the bounded history still holds)."""
        new = min(self.log_total - seen, len(self.logs))
        return list(self.logs)[len(self.logs) - new :] if new > 0 else []

    # --- derived numbers --------------------------------------------------------------------------

    @property
    def step(self) -> int:
        """Steps completed: ``StepLogged.step`` counts from 1 (the step just done)."""
        return self.last_step.step if self.last_step else 0

    def seconds_per_step(self) -> float | None:
        """Mean wall time of the recent steps themselves: pauses and evaluations are not in it."""
        if not self._timing:
            return None
        total = sum(t for t, _ in self._timing)
        return total / len(self._timing) if total > 0 else None

    def steps_per_second(self) -> float | None:
        per_step = self.seconds_per_step()
        return 1.0 / per_step if per_step else None

    def forward_passes_left(self) -> int | None:
        """Training forward passes still to do, from the run's schedule (AdaZeta's growing Q is
        known in advance) or, without one, the recent passes per step for every step left."""
        if not self.total_steps:
            return None
        done = self.step
        schedule = (self.info.details.get("forward_schedule") if self.info else None) or []
        if schedule:
            return remaining_passes(schedule, done, self.total_steps)
        if not self._timing:
            return None
        per_step = sum(p for _, p in self._timing) / len(self._timing)
        return round(per_step * max(0, self.total_steps - done))

    def eta_seconds(self) -> float | None:
        """Training time left: forward passes still to do × the recent seconds per forward pass
        (pauses and evaluations excluded)."""
        if not self._timing or not self.total_steps:
            return None
        seconds = sum(t for t, _ in self._timing)
        passes = sum(p for _, p in self._timing)
        left = self.forward_passes_left()
        if left is None or seconds <= 0 or passes <= 0:
            return None
        return left * seconds / passes

    def best_dev(self) -> EvalPoint | None:
        dev = [e for e in self.evals if e.split == "dev" and math.isfinite(e.accuracy)]
        return max(dev, key=lambda e: e.accuracy) if dev else None

    def dev_accuracy_at(self, step: int | None) -> float | None:
        """Dev accuracy of the evaluation at ``step`` (the last one there), None without one."""
        found = [e.accuracy for e in self.evals if e.split == "dev" and e.step == step]
        return found[-1] if found else None

    def kept_checkpoints(self) -> list[int]:
        """Steps of the checkpoints the run keeps (best, last, the one before last), ascending."""
        steps = (self.best_checkpoint, self.last_checkpoint, self.prev_checkpoint)
        return sorted({s for s in steps if s is not None})

    def dev_points(self) -> list[EvalPoint]:
        return [e for e in self.evals if e.split == "dev"]


def remaining_passes(schedule: list[list[int]], done: int, total: int) -> int:
    """Forward passes of steps ``done+1 .. total`` from a run-length schedule ``[[first, passes]]``."""
    left = 0
    for i, (first, passes) in enumerate(schedule):
        end = schedule[i + 1][0] - 1 if i + 1 < len(schedule) else total  # last step of this run
        lo = max(first, done + 1)
        hi = min(end, total)
        if hi >= lo:
            left += (hi - lo + 1) * passes
    return left


def format_duration(seconds: float | None) -> str:
    """``3725`` → ``"1:02:05"``; None → ``"--"``."""
    if seconds is None or not math.isfinite(seconds):
        return "--"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_count(n: float | None) -> str:
    """Compact counts for narrow panels: ``12345`` → ``"12.3k"``."""
    if n is None:
        return "--"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"
