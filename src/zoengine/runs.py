"""Discover run directories (started by the CLI or the app) and read their history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoengine.errors import ZOError
from zoengine.events import LIVE_STATUSES, Event, RunStatus, event_from_record
from zoengine.io import read_jsonl
from zoengine.paths import runs_home


@dataclass
class RunSummary:
    path: Path
    name: str
    status: str  # a RunStatus: the run's own, or "interrupted" / "corrupt" (see summarize)
    model: str
    task: str
    adapter: str
    optimizer: str
    steps_done: int
    total_steps: int
    best_dev_accuracy: float | None
    test_accuracy: float | None
    started: float
    problem: str | None = None  # one line when a file of the run is damaged


def _looks_like_run(run_dir: Path) -> bool:
    return any((run_dir / n).exists() for n in ("config.toml", "state.json", "metrics.jsonl", "checkpoints"))


def summarize(run_dir: Path) -> RunSummary | None:
    """Summary of one run directory, or None if it is not one. A damaged run is listed as "corrupt"
    with a one-line ``problem``, never left out and never shown with made-up numbers."""
    from zoengine.checkpoint import any_checkpoint
    from zoengine.rundir import is_locked, load_config, read_state

    run_dir = Path(run_dir)
    if not _looks_like_run(run_dir):
        return None
    problems: list[str] = []
    try:
        cfg = load_config(run_dir, validate=False)
    except ZOError as exc:
        cfg = None
        problems.append(exc.one_line())
    state, state_problem = read_state(run_dir)
    if state_problem:
        problems.append(state_problem)
    elif not state and any_checkpoint(run_dir):  # a run with checkpoints always wrote its state
        problems.append("state.json: missing")
    status = str(state.get("status", RunStatus.CREATED))
    locked = is_locked(run_dir)
    if locked:
        status = status if status in LIVE_STATUSES else RunStatus.RUNNING
    elif status in (RunStatus.LOADING, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.STOPPING) and (
        state or cfg is not None
    ):
        status = RunStatus.INTERRUPTED  # says live, but no process holds its lock: it died
    if problems and not locked:
        status = RunStatus.CORRUPT
    test = state.get("test") or {}
    best = state.get("best_dev_accuracy")
    return RunSummary(
        path=run_dir,
        name=run_dir.name,
        status=status,
        model=cfg.model.name if cfg else "?",
        task=cfg.task.name if cfg else "?",
        adapter=cfg.adapter.method if cfg else "?",
        optimizer=cfg.optimizer.name if cfg else "?",
        steps_done=int(state.get("step", 0)),
        total_steps=cfg.run.steps if cfg else int(state.get("total_steps", 0)),
        best_dev_accuracy=float(best) if best is not None else None,
        test_accuracy=test.get("accuracy"),
        started=_started(run_dir),
        problem="; ".join(problems) or None,
    )


def _started(run_dir: Path) -> float:
    """Time of the run's first event (one line read, however long the log), else the folder's mtime."""
    from zoengine.io import parse_jsonl_line

    try:
        with open(run_dir / "metrics.jsonl", "rb") as fh:
            record = parse_jsonl_line(fh.readline())
        if record is not None and isinstance(record.get("time"), int | float):
            return float(record["time"])
    except OSError:
        pass
    for name in ("config.toml", "."):
        try:
            return (run_dir / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def list_runs(home: str | Path | None = None) -> list[RunSummary]:
    """All runs under ``home`` (default: the runs home), newest first; a damaged run is listed too."""
    root = Path(home) if home is not None else runs_home()
    if not root.is_dir():
        return []
    found: list[RunSummary] = []
    for d in root.iterdir():
        try:
            if d.is_dir() and (summary := summarize(d)) is not None:
                found.append(summary)
        except (OSError, ValueError, TypeError) as exc:  # one unreadable folder must not hide the rest
            found.append(
                RunSummary(d, d.name, RunStatus.CORRUPT, "?", "?", "?", "?", 0, 0, None, None, 0.0, f"{exc}".splitlines()[0])
            )
    return sorted(found, key=lambda s: s.started, reverse=True)


def read_events(run_dir: str | Path) -> list[Event]:
    return [e for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if (e := event_from_record(r)) is not None]
