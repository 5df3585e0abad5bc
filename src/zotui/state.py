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

from zoengine.events import CheckpointSaved, EvalDone, Event, LogMessage, RunInfo, StatusChanged, StepLogged
from zotui.series import DecimatedSeries, Ema


@dataclass
class EvalPoint:
    step: int
    split: str
    loss: float
    accuracy: float


@dataclass
class RunState:
    """Folded view of one run's events."""

    status: str = "created"
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
    last_checkpoint: int | None = None
    logs: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=500))
    log_total: int = 0  # lines ever logged; a viewer shows the ones it has not seen yet
    version: int = 0
    _ema: Ema = field(default_factory=Ema)
    _rate: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

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
            elif isinstance(ev, EvalDone):
                self.evals.append(EvalPoint(ev.step, ev.split, ev.loss, ev.accuracy))
                self._log(
                    "info",
                    f"eval {ev.split} @ step {ev.step}: loss {ev.loss:.4f}, accuracy {ev.accuracy:.3f}",
                )
            elif isinstance(ev, StatusChanged):
                self.status, self.status_message = ev.status, ev.message
                tail = f" ({ev.message})" if ev.message else ""
                level = "error" if ev.status in ("failed", "diverged") else "info"
                self._log(level, f"status: {ev.status}{tail}")
            elif isinstance(ev, RunInfo):
                self.info, self.total_steps = ev, ev.total_steps
                self._log(
                    "info", f"model {ev.model}: {ev.trainable_params:,} of {ev.total_params:,} trainable"
                )
            elif isinstance(ev, CheckpointSaved):
                self.last_checkpoint = ev.step
            elif isinstance(ev, LogMessage):
                self._log(ev.level, ev.text)
        if n:
            self.version += 1
        return n

    def _on_step(self, ev: StepLogged) -> None:
        x = float(ev.step)
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
        self._rate.append((ev.time, ev.step))

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

    def steps_per_second(self) -> float | None:
        """Rate over the recent window of step events; None until two steps are known."""
        if len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def eta_seconds(self) -> float | None:
        rate = self.steps_per_second()
        if not rate or not self.total_steps:
            return None
        return max(0.0, (self.total_steps - self.step) / rate)

    def best_dev(self) -> EvalPoint | None:
        dev = [e for e in self.evals if e.split == "dev" and math.isfinite(e.accuracy)]
        return max(dev, key=lambda e: e.accuracy) if dev else None

    def dev_points(self) -> list[EvalPoint]:
        return [e for e in self.evals if e.split == "dev"]


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
