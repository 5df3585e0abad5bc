"""Events a run publishes: to its bounded queue (live UI) and to ``metrics.jsonl`` (replay).

Each event is a frozen dataclass; ``to_record()`` gives the JSON line (``{"event": "step", ...}``)
and ``event_from_record()`` turns a line back into the event, so a UI that tails the log of a run
it did not start sees exactly what a live subscriber sees.

``RunStatus`` names every status a run can be in. It is a ``StrEnum``: a status compares equal to
its string, and JSON, f-strings and ``state.json`` hold the plain string, so logs written before it
existed read the same.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar


class RunStatus(StrEnum):
    """Where a run stands (``Run.status``, ``StatusChanged.status``, ``state.json``)."""

    CREATED = "created"
    LOADING = "loading"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"  # a stop was sent to a multi-process run (the app's ``SubprocessRun``)
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"
    # never written by a run: ``zoengine.runs`` derives them when it lists run directories
    INTERRUPTED = "interrupted"  # says live, but no process holds its lock: it died
    CORRUPT = "corrupt"  # a file of the run is damaged


# a process is (or should be) writing the run
LIVE_STATUSES = (
    RunStatus.CREATED,
    RunStatus.LOADING,
    RunStatus.RUNNING,
    RunStatus.PAUSED,
    RunStatus.STOPPING,
)
# the run's thread has ended; nothing more will be written
TERMINAL_STATUSES = (RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED, RunStatus.DIVERGED)


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_record(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class StepLogged(Event):
    """One optimizer step. ``projected_grads`` has one scalar per query."""

    kind: ClassVar[str] = "step"
    step: int
    loss: float
    lr: float
    projected_grads: list[float]
    queries: int  # queries (two-point estimates) used in this step
    forward_passes: int  # cumulative forward passes of the run, evaluation excluded
    tokens: int  # cumulative training tokens fed to the model
    seconds: float  # wall time of this step
    extra: dict[str, Any] = field(default_factory=dict)  # method state: Q_k, annealing, gate sparsity ...


@dataclass(frozen=True)
class EvalDone(Event):
    """An evaluation on ``split`` (dev during training, test at the end)."""

    kind: ClassVar[str] = "eval"
    step: int
    split: str
    loss: float
    accuracy: float
    examples: int


@dataclass(frozen=True)
class EvalProgress(Event):
    """An evaluation under way: ``done`` of ``total`` batches of ``split`` (emitted when it starts,
    then at most about once a second, and never for the last batch: ``EvalDone`` follows)."""

    kind: ClassVar[str] = "eval_progress"
    step: int
    split: str
    done: int
    total: int
    examples: int  # examples in the split


@dataclass(frozen=True)
class StatusChanged(Event):
    """The run's status changed (a ``RunStatus``; a plain string when read back from the log)."""

    kind: ClassVar[str] = "status"
    status: str
    message: str = ""


@dataclass(frozen=True)
class CheckpointSaved(Event):
    """``checkpoints/last`` (or ``checkpoints/best`` when ``best``) now holds ``step``."""

    kind: ClassVar[str] = "checkpoint"
    step: int
    best: bool = False


@dataclass(frozen=True)
class LogMessage(Event):
    kind: ClassVar[str] = "log"
    level: str  # info | warning | error
    text: str


@dataclass(frozen=True)
class RunInfo(Event):
    """Facts known once the model is loaded: sizes, trainable count, steps per epoch."""

    kind: ClassVar[str] = "info"
    model: str
    total_params: int
    trainable_params: int
    n_train: int
    n_dev: int
    n_test: int
    total_steps: int
    details: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (StepLogged, EvalDone, EvalProgress, StatusChanged, CheckpointSaved, LogMessage, RunInfo)
}


def event_from_record(record: dict[str, Any]) -> Event | None:
    """Rebuild an event from its JSON line; unknown kinds and extra keys are ignored (the ``_crc``
    of the line, and fields older versions wrote: ``EvalDone.seconds``, ``CheckpointSaved.path``)."""
    cls = EVENT_TYPES.get(record.get("event", ""))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in record.items() if k in names})
    except TypeError:
        return None
