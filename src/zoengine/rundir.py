"""A run directory as untrusted input, and the lock of the one process that writes it.

Layout (every file written atomically; readable after a kill):
    config.toml            the config snapshot
    metrics.jsonl          every event, one JSON line each (zoengine.events)
    state.json             status, step, best dev accuracy, final test result
    .lock                  held by the one process writing the run
    checkpoints/last/      trainable tensors + optimizer/scheduler/counter state (resume point)
    checkpoints/prev/      the checkpoint before last (used when last fails verification)
    checkpoints/best/      trainable tensors of the best dev accuracy (step 0 included)
    (no pickle anywhere: safetensors + JSON with a sha256 manifest, see zoengine.checkpoint)
    exports/               what `zoengine export` wrote

- ``config.toml`` starts with a checksum line (``# zoengine run config sha256=...``): a truncated,
  bit-flipped or edited file is refused in one line instead of being read as defaults. A file
  without the line (hand-made) must hold every section and required key.
- ``state.json`` carries a ``checksum`` of its other fields and a checked shape.
- ``.lock`` (``filelock``) is held by the writer (train, resume, the app's engine thread) for the
  whole run; a second writer is refused before it touches anything, and ``zoengine runs`` tells a
  live run from a dead one by trying that lock.
- ``new_run_dir`` names a new run's folder; ``open_for_writing`` takes it over for one writer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from zoengine.config import RunConfig
from zoengine.errors import CheckpointError, ZOError
from zoengine.paths import runs_home

LOCK_NAME = ".lock"
CONFIG_NAME = "config.toml"
STATE_NAME = "state.json"
_HEADER = re.compile(r"# zoengine run config sha256=([0-9a-f]{64})")


class RunBusy(CheckpointError):
    """Another process holds the run directory's lock."""


# --- a new run's folder --------------------------------------------------------------------------


def new_run_dir(cfg: RunConfig) -> Path:
    """``run.output_dir``, or a fresh ``<runs home>/<time>-<model>-<task>-<method>-<optimizer>``."""
    if cfg.run.output_dir:
        return Path(cfg.run.output_dir).expanduser()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (
        cfg.run.name
        or f"{Path(cfg.model.name).name}-{cfg.task.name}-{cfg.adapter.method}-{cfg.optimizer.name}"
    )
    base = re.sub(r"[^\w.\-]+", "_", base)
    path = runs_home() / f"{stamp}-{base}"
    n = 1
    while path.exists():
        n += 1
        path = runs_home() / f"{stamp}-{base}-{n}"
    return path


def open_for_writing(run_dir: Path, cfg: RunConfig, *, resuming: bool) -> tuple[Any, list[str]]:
    """Take ``run_dir``'s lock, then create the run (train) or repair it (resume); returns the held
    lock and notes worth a warning.

    Until this succeeds nothing is written: a second writer, or a train into a folder that holds
    a run with checkpoints, is refused without touching it. A folder whose run died before its
    first checkpoint (or failed to start) is started afresh.
    """
    from zoengine import checkpoint

    lock = acquire_lock(run_dir)
    try:
        notes: list[str] = []
        if resuming:
            notes = checkpoint.recover(run_dir)
        elif (run_dir / CONFIG_NAME).exists() or (run_dir / STATE_NAME).exists():
            if checkpoint.has_resume_point(run_dir):
                raise CheckpointError(
                    f"run directory already holds a run: {run_dir} (use resume)", field="run.output_dir"
                )
            for name in ("metrics.jsonl", STATE_NAME, CONFIG_NAME):
                (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a dead run's best, if any
            notes = [f"{run_dir} held a run that never reached a checkpoint: starting it afresh"]
        clean_temps(run_dir)
        if not resuming:
            write_config(cfg, run_dir)
    except BaseException:
        lock.release()
        raise
    return lock, notes


# --- lock ----------------------------------------------------------------------------------------


def acquire_lock(run_dir: Path, timeout: float = 1.0) -> Any:
    """Take ``run_dir``'s writer lock (creating the folder) or raise a one-line ``RunBusy``."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(run_dir / LOCK_NAME), timeout=timeout)
        lock.acquire()
    except Timeout:
        raise RunBusy(f"{run_dir} is being written by another process", field="run") from None
    except NotADirectoryError:
        raise CheckpointError(f"not a folder: {run_dir}", field="run.output_dir") from None
    except OSError as exc:
        raise CheckpointError(f"cannot write {run_dir}: {exc.strerror or exc}", field="run.output_dir") from None
    return lock


def is_locked(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s writer lock (never creates the lock file)."""
    from filelock import FileLock, Timeout

    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return False
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:  # read-only folder: nobody can be writing it
        return False
    lock.release()
    return False


# --- config.toml ---------------------------------------------------------------------------------


def config_text(cfg: RunConfig) -> str:
    body = cfg.to_toml()
    return f"# zoengine run config sha256={hashlib.sha256(body.encode()).hexdigest()}\n{body}"


def write_config(cfg: RunConfig, run_dir: Path) -> None:
    from zoengine.io import atomic_write_text

    atomic_write_text(Path(run_dir) / CONFIG_NAME, config_text(cfg))


# keys every zoengine version wrote; a config without the checksum line (hand-made, or from an older
# zoengine) must hold them all, so a truncated file is refused instead of being read as defaults
CORE_KEYS = {
    "model": ("name", "kind", "dtype", "device", "max_length"),
    "task": ("name", "label_column", "seed"),
    "adapter": ("method",),
    "optimizer": ("name", "eps", "weight_decay", "lr_schedule", "warmup_steps"),
    "run": ("steps", "batch_size", "eval_every", "eval_batch_size", "checkpoint_every", "zero_shot_eval", "seed"),
}


def load_config(run_dir: Path, *, validate: bool = True) -> RunConfig:
    """The run's config, verified; a one-line ``CheckpointError`` naming the file otherwise."""
    path = Path(run_dir) / CONFIG_NAME
    label = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"not a run directory (no {CONFIG_NAME}): {run_dir}", field="run") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read: {exc.strerror or exc}", field=label) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("not UTF-8 text (corrupt)", field=label) from None
    first, _, rest = text.partition("\n")
    header = _HEADER.fullmatch(first.strip())
    if header is not None:
        if hashlib.sha256(rest.encode()).hexdigest() != header.group(1):
            raise CheckpointError(
                "checksum mismatch: truncated, corrupt or edited (a run's config must not change)", field=label
            )
        text = rest
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise CheckpointError(f"not valid TOML: {exc}".splitlines()[0], field=label) from None
    if header is None:  # no checksum: at least refuse a truncated file instead of reading defaults
        for section, keys in CORE_KEYS.items():
            values = data.get(section)
            missing = [k for k in keys if not isinstance(values, dict) or k not in values]
            if missing:
                raise CheckpointError(
                    f"incomplete (truncated?): [{section}] lacks {', '.join(missing)}", field=label
                )
    try:
        cfg = RunConfig.from_dict(data)
        if validate:
            cfg.validate()
    except ZOError as exc:
        raise CheckpointError(exc.one_line(), field=label) from None
    return cfg


# --- state.json ----------------------------------------------------------------------------------


def _state_digest(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_state(run_dir: Path, data: dict[str, Any]) -> None:
    from zoengine.io import atomic_write_json

    atomic_write_json(Path(run_dir) / STATE_NAME, {**data, "checksum": _state_digest(data)})


_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "step": (int,),
    "total_steps": (int,),
    "best_dev_accuracy": (int, float, type(None)),
    "test": (dict, type(None)),
    "error": (str, type(None)),
    "updated": (int, float),
}


def read_state(run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """``state.json`` as a dict and None, or ``({}, problem)`` when it is damaged; missing is ``({}, None)``."""
    path = Path(run_dir) / STATE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"{STATE_NAME}: cannot read ({exc.strerror or exc})"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return {}, f"{STATE_NAME}: not valid JSON (corrupt)"
    if not isinstance(data, dict):
        return {}, f"{STATE_NAME}: not a JSON object (corrupt)"
    if "checksum" in data and data["checksum"] != _state_digest(data):
        return {}, f"{STATE_NAME}: checksum mismatch (corrupt)"
    for key, types in _STATE_TYPES.items():
        if key in data and (not isinstance(data[key], types) or isinstance(data[key], bool)):
            return {}, f"{STATE_NAME}: {key} has the wrong type (corrupt)"
    test = data.get("test")
    if isinstance(test, dict) and not isinstance(test.get("accuracy", 0.0), int | float):
        return {}, f"{STATE_NAME}: test.accuracy has the wrong type (corrupt)"
    data.pop("checksum", None)
    return data, None


# --- temps ---------------------------------------------------------------------------------------


def clean_temps(run_dir: Path) -> None:
    """Delete temp files a killed atomic write left in the run folder (writer only, under the lock)."""
    for p in Path(run_dir).glob(".*.tmp"):
        if p.is_file():
            p.unlink(missing_ok=True)
