"""Where zoengine keeps things: the asset cache and the runs home (XDG dirs, env overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """Asset cache: ``$ZOENGINE_CACHE`` or the user cache dir."""
    env = os.environ.get("ZOENGINE_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("zoengine"))


def runs_home() -> Path:
    """Default parent of run directories: ``$ZOENGINE_RUNS`` or the user data dir / runs."""
    env = os.environ.get("ZOENGINE_RUNS")
    return Path(env) if env else Path(platformdirs.user_data_dir("zoengine")) / "runs"
