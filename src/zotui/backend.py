"""The engine as the app sees it: a small surface over ``zoengine.engine.Run`` and the run directories.

The app never imports ``zoengine.engine`` directly; it goes through a ``Backend`` built by
``engine_backend()`` (the real engine, imported lazily so the app starts in a fraction of a second).
There is one engine: ``zotui --demo``, the tests and the benchmark run it on the tiny model of
``zotui.demo``. Tests inject their own backend through ``make_app``.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.events import LIVE_STATUSES, TERMINAL_STATUSES, Event, LogMessage, RunStatus, StatusChanged

if TYPE_CHECKING:
    from zoengine.runs import RunSummary

ACTIVE_STATUSES = LIVE_STATUSES
# diverged: from its last good state; interrupted: a run that died (zoengine.runs)
RESUMABLE_STATUSES = (RunStatus.STOPPED, RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.DIVERGED)


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

        if config.run.nproc > 1:  # torchrun ranks in a subprocess, followed through the run directory
            return SubprocessRun(config)
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


FOLLOW_SECONDS = 0.25  # how often a subprocess run's metrics.jsonl is read


class SubprocessRun:
    """A multi-process run (``run.nproc`` > 1): ``zoengine train --nproc N`` in a subprocess (which
    launches torchrun), shown by following the run directory rank 0 writes. Stop sends SIGINT (the
    ranks stop within one query and save a checkpoint); pause and "evaluate now" are not available."""

    def __init__(self, config: RunConfig) -> None:
        from zoengine.engine import new_run_dir

        self.config = config.validate()
        self.run_dir = new_run_dir(config)
        self.events: queue.Queue[Event] = queue.Queue()
        self._status: str = RunStatus.CREATED
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stop_sent: bool | None = None  # the save flag of the stop sent, if any
        self._tmp = Path()  # the launch folder (config TOML, launcher output), made by start()

    @property
    def status(self) -> str:
        return self._status

    def command(self, config_path: Path) -> list[str]:
        return [
            sys.executable, "-m", "zoengine.cli", "train", "--config", str(config_path),
            "--output", str(self.run_dir), "--nproc", str(self.config.run.nproc), "--quiet",
        ]  # fmt: skip

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("run already started")
        self._tmp = Path(tempfile.mkdtemp(prefix="zotui-nproc-"))
        toml = self._tmp / "config.toml"
        self.config.save(toml)
        self._set_status(RunStatus.LOADING, f"starting {self.config.run.nproc} processes")
        with open(self._tmp / "launch.log", "wb") as log:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                self.command(toml),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals launcher + torchrun
            )
        self._thread = threading.Thread(
            target=self._follow, name=f"zotui-follow-{self.run_dir.name}", daemon=True
        )
        self._thread.start()

    def _set_status(self, status: str, message: str = "") -> None:
        self._status = status
        self.events.put(StatusChanged(status, message))

    def _read(self, offset: int) -> int:
        events, offset = tail_events(self.run_dir, offset)
        for ev in events:
            if isinstance(ev, StatusChanged):
                self._status = ev.status
            self.events.put(ev)
        return offset

    def _follow(self) -> None:
        assert self._proc is not None
        offset = 0
        try:
            while self._proc.poll() is None:
                offset = self._read(offset)
                try:
                    self._proc.wait(FOLLOW_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
            offset = self._read(offset)  # what the ranks wrote before they exited
            if self._status not in TERMINAL_STATUSES:  # it ended before writing an end status
                code = self._proc.returncode
                if self._stop_sent is not None:
                    why = "" if self._stop_sent else "ended without saving (SIGTERM)"
                    self._set_status(RunStatus.STOPPED, why)
                elif code == 0:
                    self._set_status(RunStatus.FINISHED)
                else:
                    reason = self._launch_error() or f"zoengine train --nproc exited with status {code}"
                    self.events.put(LogMessage("error", reason))
                    self._set_status(RunStatus.FAILED, reason)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _launch_error(self) -> str:
        """The last ``error:`` line the launcher or a rank printed, else its last line."""
        try:
            lines = [ln.strip() for ln in (self._tmp / "launch.log").read_text(errors="replace").splitlines()]
        except OSError:
            return ""
        lines = [ln for ln in lines if ln]
        errors = [ln for ln in lines if ln.startswith("error: ")]
        return (errors or lines or [""])[-1].removeprefix("error: ")

    def pause(self) -> None:
        raise ZOError("pause is not available for a multi-process run", hint="stop and resume instead")

    def resume(self) -> None:
        self.pause()

    def request_eval(self) -> None:
        raise ZOError(
            "evaluate now is not available for a multi-process run",
            hint="it evaluates every run.eval_every steps",
        )

    def stop(self, save: bool = True) -> None:
        """SIGINT: the ranks stop within one query and save (as Ctrl-C in a terminal); without
        ``save``, SIGTERM ends them at once (the last periodic checkpoint stays)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._stop_sent = save
        if self._status not in TERMINAL_STATUSES:
            self._status = RunStatus.STOPPING
        try:
            os.killpg(proc.pid, signal.SIGINT if save else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def export(
        self, fmt: str, dest: Path | None = None, *, checkpoint: str = "best", force: bool = False
    ) -> list[Path]:
        from zoengine.exporting import export_run

        return list(export_run(self.run_dir, fmt, dest, checkpoint=checkpoint, force=force))
