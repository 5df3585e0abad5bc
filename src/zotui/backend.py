"""The engine as the app sees it: a small surface over ``zoengine.engine.Run`` and the run directories.

The app never imports ``zoengine.engine`` directly; it goes through a ``Backend`` built by
``engine_backend()`` (the real engine, imported lazily so the app starts in a fraction of a second).
There is one engine: ``zotui --demo``, the tests and the benchmark run it on the tiny model of
``zotui.demo``. Tests inject their own backend through ``make_app``.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from zoengine.config import RunConfig
from zoengine.events import Event

if TYPE_CHECKING:
    from zoengine.runs import RunSummary

ACTIVE_STATUSES = ("created", "loading", "running", "paused", "stopping")
RESUMABLE_STATUSES = ("stopped", "failed", "interrupted", "diverged")  # diverged: from its last good state


class RunHandle(Protocol):
    """What the app needs from ``zoengine.engine.Run``."""

    run_dir: Path

    @property
    def status(self) -> str: ...

    @property
    def events(self) -> queue.Queue[Event]: ...

    def start(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def request_eval(self) -> None: ...
    def stop(self, save: bool = True) -> None: ...
    def join(self, timeout: float | None = None) -> bool: ...
    def export(
        self, fmt: str, dest: Path, *, checkpoint: str = "best", force: bool = False
    ) -> list[Path]: ...


@dataclass(frozen=True)
class RunRow:
    """One run directory as listed on the runs screen (a normalised ``zoengine.runs.RunSummary``)."""

    path: Path
    name: str
    status: str
    model: str = ""
    task: str = ""
    adapter: str = ""
    optimizer: str = ""
    steps_done: int = 0
    total_steps: int = 0
    best_dev_accuracy: float | None = None
    started: float = 0.0

    @property
    def method(self) -> str:
        return f"{self.optimizer}+{self.adapter}" if self.adapter else self.optimizer


@dataclass
class Backend:
    """Factories for runs plus run-directory readers; one instance per app."""

    name: str
    new_run: Callable[[RunConfig], RunHandle]
    resume_run: Callable[[Path], RunHandle]
    list_runs: Callable[[], list[RunRow]]
    read_events: Callable[[Path], list[Event]]
    export_run: Callable[..., list[Path]]  # (run_dir, format, dest, *, checkpoint="best", force=False)
    prepare: Callable[[], None] = lambda: None  # called in the engine worker before a run starts


def engine_backend() -> Backend:
    """The real engine; imports are deferred to the first call so the app opens before torch loads."""

    def new_run(config: RunConfig) -> RunHandle:
        from zoengine.engine import Run

        return Run(config)  # the engine names the run directory (run.output_dir or the runs home)

    def resume_run(run_dir: Path) -> RunHandle:
        from zoengine.engine import Run

        return Run.resume_from(run_dir)

    def export_run(
        run_dir: Path, fmt: str, dest: Path, *, checkpoint: str = "best", force: bool = False
    ) -> list[Path]:
        from zoengine.exporting import export_run as engine_export_run

        return list(engine_export_run(run_dir, fmt, dest, checkpoint=checkpoint, force=force))

    def prepare() -> None:
        from zotui.catalog import warm_imports

        warm_imports()

    return Backend("engine", new_run, resume_run, list_runs, read_events, export_run, prepare)


def list_runs() -> list[RunRow]:
    """Run directories under the runs home (CLI or app: one layout), newest first."""
    from zoengine.runs import list_runs as engine_list_runs

    return [row_from_summary(s) for s in engine_list_runs()]


def read_events(run_dir: Path) -> list[Event]:
    """Events from ``run_dir/metrics.jsonl`` (a torn last line is skipped)."""
    from zoengine.runs import read_events as engine_read_events

    return engine_read_events(run_dir)


def row_from_summary(summary: RunSummary) -> RunRow:
    return RunRow(
        path=Path(summary.path),
        name=summary.name,
        status=summary.status,
        model=summary.model,
        task=summary.task,
        adapter=summary.adapter,
        optimizer=summary.optimizer,
        steps_done=summary.steps_done,
        total_steps=summary.total_steps,
        best_dev_accuracy=summary.best_dev_accuracy,
        started=summary.started,
    )


def tail_events(run_dir: Path, offset: int = 0) -> tuple[list[Event], int]:
    """Events of the complete lines of ``run_dir/metrics.jsonl`` after byte ``offset``, and the
    offset after the last complete line (a line still being written is read on the next call)."""
    from zoengine.events import event_from_record
    from zoengine.io import parse_jsonl_line

    try:
        with open(Path(run_dir) / "metrics.jsonl", "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = [
        e
        for line in data[:end].splitlines()
        if line.strip()
        and (r := parse_jsonl_line(line)) is not None
        and (e := event_from_record(r)) is not None
    ]
    return events, offset + end


def is_live(run_dir: Path) -> bool:
    """Whether another process (a CLI ``train``/``resume``) holds the run directory's writer lock."""
    from zoengine.rundir import is_locked

    return is_locked(Path(run_dir))
