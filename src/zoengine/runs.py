"""Discover run directories (started by the CLI or the app) and read their history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.events import Event, event_from_record
from zoengine.io import read_jsonl
from zoengine.paths import runs_home


@dataclass
class RunSummary:
    path: Path
    name: str
    status: str
    model: str
    task: str
    adapter: str
    optimizer: str
    steps_done: int
    total_steps: int
    best_dev_accuracy: float | None
    test_accuracy: float | None
    started: float


def summarize(run_dir: Path) -> RunSummary | None:
    """Summary of one run directory, or None if it is not one."""
    from zoengine.engine import read_state

    run_dir = Path(run_dir)
    try:
        cfg = RunConfig.load(run_dir / "config.toml")
    except (ZOError, OSError):
        return None
    state = read_state(run_dir)
    status = state.get("status", "created")
    if status in ("loading", "running", "paused", "stopping"):
        # a live status in a dir nobody updates any more means the process died: say so
        import time

        if time.time() - float(state.get("updated", 0)) > 600:
            status = "interrupted"
    test = state.get("test") or {}
    return RunSummary(
        path=run_dir,
        name=run_dir.name,
        status=status,
        model=cfg.model.name,
        task=cfg.task.name,
        adapter=cfg.adapter.method,
        optimizer=cfg.optimizer.name,
        steps_done=int(state.get("step", 0)),
        total_steps=cfg.run.steps,
        best_dev_accuracy=state.get("best_dev_accuracy"),
        test_accuracy=test.get("accuracy"),
        started=_started(run_dir),
    )


def _started(run_dir: Path) -> float:
    """Time of the run's first event (one line read, however long the log), else the config's mtime."""
    import json

    try:
        with open(run_dir / "metrics.jsonl", encoding="utf-8") as fh:
            return float(json.loads(fh.readline())["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return (run_dir / "config.toml").stat().st_mtime


def list_runs(home: str | Path | None = None) -> list[RunSummary]:
    """All runs under ``home`` (default: the runs home), newest first."""
    root = Path(home) if home is not None else runs_home()
    if not root.is_dir():
        return []
    found = [s for d in root.iterdir() if d.is_dir() and (s := summarize(d)) is not None]
    return sorted(found, key=lambda s: s.started, reverse=True)


def read_events(run_dir: str | Path) -> list[Event]:
    return [e for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if (e := event_from_record(r)) is not None]
