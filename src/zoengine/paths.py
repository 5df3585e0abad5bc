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


def check_writable(path: Path, field: str) -> None:
    """Refuse (one line, naming ``field``) a path whose nearest existing folder cannot take it:
    a file in the way, a read-only file system, no permission. Writes nothing."""
    import errno

    from zoengine.errors import ZOError, filesystem_error

    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe != Path(path) and not probe.is_dir():
        raise ZOError(f"a file is in the way (not a folder): {probe}", field=field)
    folder = probe if probe.is_dir() else probe.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except (OSError, AttributeError):
            read_only = False
        code = errno.EROFS if read_only else errno.EACCES
        err = filesystem_error(OSError(code, os.strerror(code), str(folder)), folder, field)
        raise err if err is not None else ZOError(f"cannot write {folder}", field=field)
