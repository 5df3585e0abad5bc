"""Where a converted asset lives in the cache, and whether what is there is the one the table expects.

A folder counts as fetched only when its marker (``zoo.json`` / ``meta.json``) names the checksum
the catalogue expects, so a catalogue bump re-fetches instead of serving stale data.
"""

from __future__ import annotations

import json
from pathlib import Path

from zoengine.assets.catalog import Asset, get_asset
from zoengine.errors import AssetError
from zoengine.paths import cache_dir

MARKER_MODEL = "zoo.json"
MARKER_DATASET = "meta.json"


def target_dir(name: str) -> Path:
    """Where the converted asset lives (whether or not it is fetched yet)."""
    asset = get_asset(name)
    return cache_dir() / f"{asset.kind}s" / asset.name


def _marker(asset: Asset, root: Path) -> Path:
    return root / (MARKER_MODEL if asset.kind == "model" else MARKER_DATASET)


def is_fetched(name: str) -> bool:
    asset = get_asset(name)
    root = target_dir(name)
    try:
        marker = json.loads(_marker(asset, root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    source = marker.get("source") if isinstance(marker, dict) else None
    if not isinstance(source, dict) or source.get("sha256") != asset.sha256:
        return False
    return asset.kind == "model" or (root / "data.jsonl").is_file()


def asset_path(name: str) -> Path:
    """The fetched asset's folder; not fetched yet is a one-line error naming the command to run."""
    if not is_fetched(name):
        raise AssetError("not fetched yet", field=name, hint=f"run `zoengine assets fetch {name}`")
    return target_dir(name)
