"""Atomic file writes: a run directory is always readable, even after a kill.

Everything a run writes goes through here: write to a temp file in the same directory, fsync,
then ``os.replace`` (atomic on POSIX and Windows). Appends to ``metrics.jsonl`` are line-sized
writes followed by flush, so a kill loses at most the line being written, which readers skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it replaces ``target`` atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        apply_umask(tmp_path)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def apply_umask(path: Path) -> None:
    """Give a temp file or folder the mode a plain ``open``/``mkdir`` would have: ``mkstemp`` and
    ``mkdtemp`` create them 0600/0700, and an export or run a user shares must not stay private."""
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~mask)
    except OSError:
        pass


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def kill_point(name: str, scope: str = "") -> None:
    """Test hook: ``ZOENGINE_TEST_KILL_AT=POINT[@N]`` SIGKILLs this process the N-th time (default
    the first) it passes ``POINT``, so tests can kill a real run at exact places (mid-swap ...).
    ``POINT`` is ``name`` or ``scope:name`` (e.g. ``last:swap-after-old-rename``)."""
    spec = os.environ.get("ZOENGINE_TEST_KILL_AT")
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point not in (name, f"{scope}:{name}"):
        return
    _KILL_COUNTS[point] = _KILL_COUNTS.get(point, 0) + 1
    if _KILL_COUNTS[point] >= int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


_KILL_COUNTS: dict[str, int] = {}


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(target: Path, data: Any) -> None:
    atomic_write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``target``; on success it replaces ``target`` whole.

    An existing ``target`` is moved aside first and deleted only after the new one is in place,
    so a crash leaves either the old or the new directory, never a half-written mix.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    old = target.parent / f".{target.name}.old"
    try:
        yield tmp
        apply_umask(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _crc(record: dict[str, Any]) -> int:
    return zlib.crc32(json.dumps(record, sort_keys=True, allow_nan=True).encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record with a ``_crc`` of its content, so a reader can drop a damaged line."""
    line = json.dumps({**record, "_crc": _crc(record)}, sort_keys=True, allow_nan=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()


def parse_jsonl_line(line: bytes | str) -> dict[str, Any] | None:
    """One log record, or None for a torn, undecodable, non-object or checksum-failing line."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        record = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    crc = record.pop("_crc", None)
    if crc is not None and crc != _crc(record):
        return None
    return record


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL log, skipping a torn last line left by a kill and any damaged line."""
    records: list[dict[str, Any]] = []
    try:
        fh = open(path, "rb")
    except OSError:
        return records
    with fh:
        for line in fh:
            if line.strip() and (record := parse_jsonl_line(line)) is not None:
                records.append(record)
    return records


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (``hashlib.file_digest``: chunked, no copy of the file)."""
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
