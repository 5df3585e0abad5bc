"""Rows from a source: a zoo data set, a local CSV/TSV/JSONL/JSON/parquet file or folder, or the hub.

Rows are plain dicts; held-out rows (a folder's val/test files, the hub's validation split) come
separately so the splits can keep them apart.
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoengine.errors import DataError
from zoengine.tasks.registry import ZOO_HINT

Row = dict[str, Any]
Held = dict[str, list[Row]]  # held-out rows of the source: "dev" and/or "test"

FILE_TYPES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SPLIT_NAMES = {"train": ("train",), "test": ("validation", "val", "dev")}  # hub splits
_FOLDER_SPLITS = {"train": ("train",), "dev": ("validation", "val", "dev"), "test": ("test",)}


def _dataset_dir(name: str) -> Path:
    """Directory of a zoo data set (``data.jsonl`` + ``meta.json``); the seam tests patch."""
    try:
        from zoengine import assets
    except ImportError as exc:  # pragma: no cover - assets ships with the package
        raise DataError(f"zoo data sets are unavailable ({exc})", field="task.name") from None
    return Path(assets.ensure(name))


def read_zoo(name: str) -> tuple[list[Row], list[str], list[str]]:
    """Rows, label names and text columns of a zoo data set."""
    folder = _dataset_dir(name)
    meta_path, data_path = folder / "meta.json", folder / "data.jsonl"
    if not meta_path.is_file() or not data_path.is_file():
        raise DataError(
            f"zoo data set {name!r} is incomplete at {folder} (need meta.json and data.jsonl)",
            field="task.name",
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable {meta_path}: {exc}", field="task.name") from None
    label_names = [str(n) for n in meta.get("labels") or []]
    if len(label_names) < 2:
        raise DataError(f"{meta_path} lists fewer than two labels", field="task.name")
    try:
        rows = read_table(data_path, "jsonl")
    except DataError as exc:  # there is no task.path for zoo data: point at the data set
        raise DataError(f"zoo data set {name!r}: {exc.message}", field="task.name") from None
    text_columns = [str(c) for c in meta.get("text_columns") or ["text"]]
    return rows, label_names, text_columns


def read_source(path: str | None, hub_id: str | None, hub_config: str | None) -> tuple[list[Row], Held, str]:
    """Rows of a local file or folder, else of a hub data set; plus held-out rows when the source has them."""
    if not path:
        if hub_id is None:  # pragma: no cover - callers check
            raise DataError("no data source given", field="task.path")
        train, test = _read_hub(hub_id, hub_config)
        return train, {"test": test} if test else {}, f"{hub_id}:{hub_config}" if hub_config else hub_id
    p = Path(path).expanduser()
    if p.is_dir():
        return (*_read_folder(p), str(p))
    if p.is_file():
        return read_table(p), {}, str(p)
    if not _looks_like_hub_id(path):
        raise DataError(f"no such file: {path}", field="task.path")
    repo, _, config = path.partition(":")
    train, test = _read_hub(repo, config or hub_config)
    return train, {"test": test} if test else {}, path


def _looks_like_hub_id(text: str) -> bool:
    if Path(text).suffix.lower() in FILE_TYPES or text.startswith(("/", ".", "~")) or "\\" in text:
        return False
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?(:[\w.-]+)?", text) is not None


def _read_hub(repo: str, config: str | None) -> tuple[list[Row], list[Row] | None]:
    """``datasets.load_dataset``: 'train' is the pool, 'validation' the held-out test pool (as MeZO)."""
    hint = f"give a local CSV/JSONL/parquet file in task.path, or use a zoo data set: {ZOO_HINT}"
    name = f"{repo}:{config}" if config else repo
    if not _hub_usable():
        raise DataError(
            f"not a local file, and hub data set {name!r} cannot be loaded: the hub is not reachable "
            "(set HF_HUB_OFFLINE=1 to use a cached copy)",
            field="task.path",
            hint=hint,
        )
    try:
        import datasets

        loaded = datasets.load_dataset(repo, config) if config else datasets.load_dataset(repo)
    except Exception as exc:  # any failure means "cannot get it", said in one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(
            f"not a local file, and hub data set {name!r} could not be loaded (hub not reachable? {reason})",
            field="task.path",
            hint=hint,
        ) from None
    splits = dict(loaded) if isinstance(loaded, Mapping) else {"train": loaded}
    train = next((splits[s] for s in _SPLIT_NAMES["train"] if s in splits), None)
    if train is None:
        train = next(iter(splits.values()))
    test = next((splits[s] for s in _SPLIT_NAMES["test"] if s in splits), None)
    return list(train.to_list()), list(test.to_list()) if test is not None else None


def _hub_usable(timeout: float = 3.0) -> bool:
    """Fail fast offline: ``load_dataset`` would retry for ~25 s, logging to stderr under the TUI."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of datasets
        return True
    if constants.HF_HUB_OFFLINE:
        return True  # offline mode reads the local cache without touching the network
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy decides what is reachable; let datasets try
    url = urllib.parse.urlsplit(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _read_folder(folder: Path) -> tuple[list[Row], Held]:
    """A data folder: train.* is the pool, test.* the test split, val.*/validation.*/dev.* the dev
    split (or the test split when there is no labelled test file, as in SuperGLUE's folders)."""

    def find(stems: Sequence[str]) -> Path | None:
        for stem in stems:
            for suffix in FILE_TYPES:
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
        return None

    train = find(_FOLDER_SPLITS["train"])
    if train is None:
        raise DataError(f"folder {folder} has no train.jsonl/.csv/.parquet file", field="task.path")
    held: Held = {}
    for key in ("dev", "test"):
        found = find(_FOLDER_SPLITS[key])
        if found is not None:
            held[key] = read_table(found)
    return read_table(train), held


def read_table(path: Path, kind: str | None = None) -> list[Row]:
    """Rows of one CSV/TSV/JSONL/JSON/parquet file as dicts; errors name the file and the line."""
    kind = kind or FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"unsupported file type {path.suffix or '(none)'!r} for {path.name}; use .csv, .tsv, .jsonl, .json or .parquet",
            field="task.path",
        )
    try:
        if kind in ("csv", "tsv"):
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows: list[Any] = list(csv.DictReader(fh, delimiter="," if kind == "csv" else "\t"))
        elif kind == "jsonl":
            rows = []
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise DataError(
                                f"{path.name} line {lineno} is not valid JSON ({exc.msg})", field="task.path"
                            ) from None
        elif kind == "json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data if isinstance(data, list) else data.get("data") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise DataError(f"{path.name} must hold a list of objects (or JSON Lines)", field="task.path")
        else:
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", field="task.path") from None
    except Exception as exc:  # pyarrow raises its own error types
        raise DataError(f"cannot read {path.name}: {type(exc).__name__}: {exc}", field="task.path") from None
    if not rows:
        raise DataError(f"{path.name} has no rows", field="task.path")
    if not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path.name}: every row must be an object with named columns", field="task.path")
    return rows


def column_names(rows: Sequence[Row], exclude: str | None = None) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:1000]:  # enough to see every column of a regular table
        for key in row:
            seen.setdefault(str(key))
    return [c for c in seen if c != exclude]


def flatten(rows: list[Row]) -> list[Row]:
    """Lift one level of nested objects (original SuperGLUE WSC keeps spans under 'target')."""
    out = []
    for row in rows:
        flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
        for value in row.values():
            if isinstance(value, dict):
                for k, v in value.items():
                    flat.setdefault(k, v)
        out.append(flat)
    return out


def expand_multirc(rows: list[Row]) -> list[Row]:
    """Original MultiRC nests questions and answers in a passage; make one row per answer."""
    if not rows or not isinstance(rows[0].get("passage"), dict):
        return rows
    out: list[Row] = []
    for row in rows:
        passage = row.get("passage") or {}
        for q in passage.get("questions") or []:
            for a in q.get("answers") or []:
                out.append(
                    {
                        "paragraph": passage.get("text", ""),
                        "question": q.get("question", ""),
                        "answer": a.get("text", ""),
                        "label": a.get("label"),
                    }
                )
    return out
