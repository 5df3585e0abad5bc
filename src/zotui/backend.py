"""The engine as the app sees it: a small surface that the real engine and the demo engine share.

The app never imports ``zoengine.engine`` directly; it goes through a ``Backend`` built by
``engine_backend()`` (the real engine, imported lazily so the app starts in a fraction of a second
and still opens when the engine is missing) or ``demo_backend()`` (a scripted engine for tests,
benchmarks and ``zotui --demo``). Tests inject their own backend through ``make_app``.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.events import EvalDone, Event, RunInfo, StatusChanged, StepLogged, event_from_record

ACTIVE_STATUSES = ("created", "loading", "running", "paused", "stopping")
RESUMABLE_STATUSES = ("stopped", "failed", "interrupted")


class RunHandle(Protocol):
    """What the app needs from ``zoengine.engine.Run`` (and what the demo engine provides)."""

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
    def export(self, fmt: str, dest: Path) -> list[Path]: ...


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
    export_run: Callable[[Path, str, Path], list[Path]]  # (run_dir, format, destination) -> files
    prepare: Callable[[], None] = lambda: None  # called in the engine worker before a run starts
    options: dict[str, Any] = field(default_factory=dict)


def _missing_engine(*_: Any) -> RunHandle:
    raise ZOError(
        "the training engine (zoengine.engine) is not available in this install", hint="try zotui --demo"
    )


def engine_backend() -> Backend:
    """The real engine; every import is deferred to the first call so a missing piece degrades."""

    def new_run(config: RunConfig) -> RunHandle:
        try:
            from zoengine.engine import Run
        except ImportError:
            return _missing_engine()
        return Run(config)  # the engine names the run directory (run.output_dir or the runs home)

    def resume_run(run_dir: Path) -> RunHandle:
        try:
            from zoengine.engine import Run
        except ImportError:
            return _missing_engine()
        return Run.resume_from(run_dir)

    def list_runs() -> list[RunRow]:
        try:
            from zoengine.runs import list_runs as engine_list_runs
        except ImportError:
            return scan_runs()
        return [row_from_summary(s) for s in engine_list_runs()]

    def read_events(run_dir: Path) -> list[Event]:
        try:
            from zoengine.runs import read_events as engine_read_events
        except ImportError:
            return read_metrics(run_dir)
        return list(engine_read_events(run_dir))

    def export_run(run_dir: Path, fmt: str, dest: Path) -> list[Path]:
        try:
            from zoengine.exporting import export_run as engine_export_run
        except ImportError:
            return resume_run(run_dir).export(fmt, dest)
        return list(engine_export_run(run_dir, fmt, dest))

    def prepare() -> None:
        from zotui.catalog import warm_imports

        warm_imports()

    return Backend("engine", new_run, resume_run, list_runs, read_events, export_run, prepare)


def row_from_summary(summary: Any) -> RunRow:
    """Copy a ``RunSummary`` field by field, tolerating fields it does not have (yet)."""
    path = Path(summary.path)
    return RunRow(
        path=path,
        name=str(getattr(summary, "name", "") or path.name),
        status=str(getattr(summary, "status", "") or "unknown"),
        model=str(getattr(summary, "model", "") or ""),
        task=str(getattr(summary, "task", "") or ""),
        adapter=str(getattr(summary, "adapter", "") or ""),
        optimizer=str(getattr(summary, "optimizer", "") or ""),
        steps_done=int(getattr(summary, "steps_done", 0) or 0),
        total_steps=int(getattr(summary, "total_steps", 0) or 0),
        best_dev_accuracy=getattr(summary, "best_dev_accuracy", None),
        started=float(getattr(summary, "started", 0.0) or 0.0),
    )


# --- reading run directories without zoengine.runs ----------------------------------------------


def read_metrics(run_dir: Path) -> list[Event]:
    """Events from ``run_dir/metrics.jsonl`` (a torn last line is skipped)."""
    from zoengine.io import read_jsonl

    events = (event_from_record(r) for r in read_jsonl(Path(run_dir) / "metrics.jsonl"))
    return [e for e in events if e is not None]


def summarise(run_dir: Path) -> RunRow:
    """A ``RunRow`` from a run directory's config snapshot and metrics log."""
    run_dir = Path(run_dir)
    try:
        cfg = RunConfig.load(run_dir / "config.toml")
    except ZOError:
        cfg = RunConfig()
    status, steps_done, total, best, started = "unknown", 0, cfg.run.steps, None, 0.0
    for ev in read_metrics(run_dir):
        started = started or ev.time
        if isinstance(ev, StatusChanged):
            status = ev.status
        elif isinstance(ev, StepLogged):
            steps_done = max(steps_done, ev.step)
        elif isinstance(ev, RunInfo):
            total = ev.total_steps
        elif isinstance(ev, EvalDone) and ev.split == "dev":
            best = ev.accuracy if best is None else max(best, ev.accuracy)
    return RunRow(
        path=run_dir,
        name=cfg.run.name or run_dir.name,
        status=status,
        model=cfg.model.name,
        task=cfg.task.name,
        adapter=cfg.adapter.method,
        optimizer=cfg.optimizer.name,
        steps_done=steps_done,
        total_steps=total,
        best_dev_accuracy=best,
        started=started or run_dir.stat().st_mtime,
    )


def scan_runs(home: Path | None = None) -> list[RunRow]:
    """Every run directory under ``home`` (default: the runs home), newest first."""
    from zoengine.paths import runs_home

    root = Path(home) if home is not None else runs_home()
    if not root.is_dir():
        return []
    rows = [
        summarise(d) for d in root.iterdir() if (d / "metrics.jsonl").exists() or (d / "config.toml").exists()
    ]
    return sorted(rows, key=lambda r: r.started, reverse=True)


def demo_backend(step_delay: float = 0.05, **options: Any) -> Backend:
    """The scripted engine of ``zotui.demo``; ``options`` go to every ``DemoRun``."""
    from zotui.demo import DemoRun

    def new_run(config: RunConfig) -> RunHandle:
        return DemoRun(config, step_delay=step_delay, **options)

    def resume_run(run_dir: Path) -> RunHandle:
        return DemoRun.resume_from(run_dir, step_delay=step_delay, **options)

    def export_run(run_dir: Path, fmt: str, dest: Path) -> list[Path]:
        return DemoRun(RunConfig.load(Path(run_dir) / "config.toml"), run_dir=run_dir).export(fmt, dest)

    return Backend(
        "demo", new_run, resume_run, scan_runs, read_metrics, export_run, options={"step_delay": step_delay}
    )
