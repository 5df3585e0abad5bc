"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, a manifest to verify.

A checkpoint is a folder (``checkpoints/last``, ``checkpoints/best``, ``checkpoints/prev``)::

    trainable.safetensors        the trainable tensors (adapter or model weights)
    trainer_state.json           optimizer / scheduler / counters (last only), tensors by reference
    trainer_state.safetensors    the tensors that state refers to (moments, generator states)
    manifest.json                format, kind, step, info, size + sha256 of every file, and its own hash

Nothing is ever unpickled: a run directory someone sends you is untrusted input. Every load verifies
the manifest first (``verify``); a folder that fails is reported in one line and the next candidate is
used (``find``): for ``last`` that is ``prev`` (the checkpoint before it), then what an interrupted swap
left behind (``.last.old``, a complete ``.last.*.tmp``).

Writing (``write``) builds the folder as ``.NAME.*.tmp`` (files and folder fsynced, manifest last),
then swaps it in with two renames: ``NAME -> .NAME.old``, ``tmp -> NAME``; the old one becomes
``prev`` (for ``last``) or is deleted. ``recover`` (called by the writer, under the run lock) repairs
what a kill between those renames left and deletes stale temps.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoengine.errors import CheckpointError
from zoengine.io import file_sha256, fsync_dir, kill_point

FORMAT = "zoengine-checkpoint/1"
MANIFEST = "manifest.json"
TRAINABLE = "trainable.safetensors"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
RESUME_FILES = (TRAINABLE, STATE_JSON, STATE_TENSORS)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


# --- state <-> (JSON, tensors) ------------------------------------------------------------------


def pack(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, tensors, scalars) into JSON data and tensors.

    Tensors become ``{"$tensor": "tN"}``; tuples ``{"$tuple": [...]}``; dicts whose keys are not all
    plain strings ``{"$items": [[key, value], ...]}`` (optimizer state is keyed by int).
    """
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()

    def enc(o: Any) -> Any:
        if isinstance(o, torch.Tensor):
            name = f"t{len(tensors)}"
            t = o.detach().to("cpu").contiguous()
            key = (t.untyped_storage().data_ptr(), t.storage_offset())
            if t.numel() and key in seen:  # safetensors refuses shared storage: copy the alias
                t = t.clone()
            seen.add(key)
            tensors[name] = t
            return {"$tensor": name}
        if isinstance(o, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in o):
                return {k: enc(v) for k, v in o.items()}
            return {"$items": [[enc(k), enc(v)] for k, v in o.items()]}
        if isinstance(o, tuple):
            return {"$tuple": [enc(v) for v in o]}
        if isinstance(o, list):
            return [enc(v) for v in o]
        if o is None or isinstance(o, bool | int | float | str):
            return o
        raise TypeError(f"cannot store {type(o).__name__} in a checkpoint")

    return enc(obj), tensors


def unpack(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``pack``; a reference to a missing tensor is a ``CheckpointError``."""

    def dec(o: Any) -> Any:
        if isinstance(o, dict):
            if set(o) == {"$tensor"}:
                try:
                    return tensors[o["$tensor"]]
                except (KeyError, TypeError):
                    raise CheckpointError(f"refers to a missing tensor {o['$tensor']!r}", field=STATE_JSON) from None
            if set(o) == {"$tuple"} and isinstance(o["$tuple"], list):
                return tuple(dec(v) for v in o["$tuple"])
            if set(o) == {"$items"} and isinstance(o["$items"], list):
                return {_hashable(dec(k)): dec(v) for k, v in (_pair(p) for p in o["$items"])}
            return {k: dec(v) for k, v in o.items()}
        if isinstance(o, list):
            return [dec(v) for v in o]
        return o

    return dec(data)


def _pair(p: Any) -> tuple[Any, Any]:
    if not (isinstance(p, list) and len(p) == 2):
        raise CheckpointError("malformed $items entry", field=STATE_JSON)
    return p[0], p[1]


def _hashable(k: Any) -> Any:
    if isinstance(k, dict | list | torch.Tensor):
        raise CheckpointError("malformed dict key", field=STATE_JSON)
    return k


# --- manifest ----------------------------------------------------------------------------------


sha256_file = file_sha256  # the manifest's per-file digest (zoengine.io)


def _digest(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class Checkpoint:
    """A verified checkpoint folder."""

    path: Path
    label: str  # how messages name it: "checkpoints/last", "checkpoints/prev", ...
    kind: str  # "last" or "best"
    step: int
    info: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"{self.label} (step {self.step})"

    def tensors(self, name: str = TRAINABLE) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(self.path / name)
        except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot read {name}: {exc}".splitlines()[0], field=self.label) from None

    def trainer_state(self) -> dict[str, Any]:
        """The resume state (optimizer, scheduler, counters, RNG), rebuilt from JSON + tensors."""
        try:
            data = json.loads((self.path / STATE_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {STATE_JSON}: {exc}".splitlines()[0], field=self.label) from None
        try:
            state = unpack(data, self.tensors(STATE_TENSORS))
        except CheckpointError as exc:
            raise CheckpointError(f"{exc.field}: {exc.message}", field=self.label) from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{STATE_JSON} is not an object", field=self.label)
        return state


def verify(path: Path, label: str | None = None, require: tuple[str, ...] = (TRAINABLE,)) -> Checkpoint:
    """Check ``path`` against its manifest (sizes and sha256 of every file); raise a one-line error."""
    path = Path(path)
    label = label or f"checkpoints/{path.name}"
    if not path.is_dir():
        raise CheckpointError("missing", field=label)
    try:
        raw = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        legacy = " (written by an older zoengine, which pickled its state)" if (path / "state.pt").exists() else ""
        raise CheckpointError(f"no {MANIFEST}{legacy}", field=label) from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {MANIFEST}: {exc.strerror}", field=label) from None
    try:
        m = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{MANIFEST} is not valid JSON", field=label) from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CheckpointError(f"{MANIFEST} is not a {FORMAT} manifest", field=label)
    if m.get("manifest_sha256") != _digest(m):
        raise CheckpointError(f"{MANIFEST} checksum mismatch (corrupt or edited)", field=label)
    step, files, kind, info = m.get("step"), m.get("files"), m.get("kind"), m.get("info", {})
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        raise CheckpointError(f"{MANIFEST}: step must be an integer >= 0", field=label)
    if kind not in ("last", "best") or not isinstance(info, dict) or not isinstance(files, dict):
        raise CheckpointError(f"{MANIFEST} has the wrong shape", field=label)
    for name in require:
        if name not in files:
            raise CheckpointError(f"{MANIFEST} lists no {name}", field=label)
    for name, meta in files.items():
        if not (
            isinstance(name, str)
            and _SAFE_NAME.fullmatch(name)
            and name != MANIFEST
            and isinstance(meta, dict)
            and isinstance(meta.get("size"), int)
            and isinstance(meta.get("sha256"), str)
            and _HEX64.fullmatch(meta["sha256"])
        ):
            raise CheckpointError(f"{MANIFEST} has a malformed entry {name!r}", field=label)
        f = path / name
        try:
            size = f.stat().st_size
        except FileNotFoundError:
            raise CheckpointError(f"{name} is missing", field=label) from None
        if size != meta["size"]:
            raise CheckpointError(f"{name} has {size} bytes, the manifest says {meta['size']}", field=label)
        if sha256_file(f) != meta["sha256"]:
            raise CheckpointError(f"{name} fails its sha256 check (corrupt)", field=label)
    return Checkpoint(path, label, kind, step, info, tuple(files))


# --- writing -----------------------------------------------------------------------------------


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def write(
    parent: Path,
    name: str,
    *,
    kind: str,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    jsons: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    keep_prev: bool = False,
) -> Path:
    """Write checkpoint ``parent/name`` atomically; with ``keep_prev`` the replaced one becomes ``prev``."""
    from safetensors.torch import save_file

    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        for fname, tdict in tensors.items():
            _save_tensors(save_file, tdict, tmp / fname)
        for fname, data in (jsons or {}).items():
            (tmp / fname).write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
        files: dict[str, dict[str, Any]] = {}
        for f in sorted(tmp.iterdir()):
            _fsync_file(f)
            files[f.name] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
        kill_point("checkpoint-before-manifest", name)
        manifest: dict[str, Any] = {"format": FORMAT, "kind": kind, "step": step, "info": info or {}, "files": files}
        manifest["manifest_sha256"] = _digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _fsync_file(tmp / MANIFEST)
        fsync_dir(tmp)
        kill_point("checkpoint-before-swap", name)
        _swap(parent, name, tmp, keep_prev)
    finally:
        if tmp.exists():
            _rmtree(tmp)
    return parent / name


def _save_tensors(save_file: Any, tdict: dict[str, torch.Tensor], path: Path) -> None:
    """``save_file``, with a failed write (disk full ...) raised as the ``OSError`` it is."""
    from safetensors import SafetensorError

    try:
        save_file(tdict, str(path), metadata={"format": "pt"})
    except SafetensorError as exc:
        code = re.search(r"code: (\d+)", str(exc))
        if code is None:
            raise
        errno_ = int(code.group(1))
        raise OSError(errno_, os.strerror(errno_), str(path)) from None


def _swap(parent: Path, name: str, tmp: Path, keep_prev: bool) -> None:
    target, old = parent / name, parent / f".{name}.old"
    if old.exists():  # a leftover the writer's recover() judged superseded
        _rmtree(old)
    if target.exists():
        os.replace(target, old)
        fsync_dir(parent)
        kill_point("swap-after-old-rename", name)
    os.replace(tmp, target)
    fsync_dir(parent)
    kill_point("swap-after-new-rename", name)
    if old.exists():
        if keep_prev:
            prev = parent / "prev"
            _rmtree(prev)
            os.replace(old, prev)
            fsync_dir(parent)
        else:
            _rmtree(old)


# --- finding and recovering ----------------------------------------------------------------------


def _try(path: Path, label: str, require: tuple[str, ...]) -> tuple[Checkpoint | None, str | None]:
    try:
        return verify(path, label, require), None
    except CheckpointError as exc:
        return None, exc.one_line()


def _leftovers(parent: Path, name: str) -> list[Path]:
    """What an interrupted write of ``name`` may have left: ``.name.old`` and ``.name.*.tmp``."""
    if not parent.is_dir():
        return []
    found = [p for p in parent.glob(f".{name}.*.tmp") if p.is_dir()]
    old = parent / f".{name}.old"
    return ([old] if old.is_dir() else []) + sorted(found)


def find(
    run_dir: Path, name: str, require: tuple[str, ...] = (TRAINABLE,)
) -> tuple[Checkpoint | None, list[str]]:
    """The newest intact checkpoint of ``name`` ("last" or "best") and one line per one that failed.

    Candidates: ``name``, then (for last) ``prev``, then what an interrupted swap left. Read-only:
    readers (eval, export, the app) never change the run directory.
    """
    parent = Path(run_dir) / "checkpoints"
    notes: list[str] = []
    primary, problem = _try(parent / name, f"checkpoints/{name}", require)
    if primary is not None:
        return primary, notes
    if (parent / name).exists():
        notes.append(str(problem))
    if name == "last" and (parent / "prev").exists():
        prev, problem = _try(parent / "prev", "checkpoints/prev", require)
        if prev is not None:
            return prev, notes
        notes.append(str(problem))
    good = [c for p in _leftovers(parent, name) if (c := _try(p, f"checkpoints/{p.name}", require)[0])]
    if good:
        return max(good, key=lambda c: c.step), notes
    return None, notes


def choose(run_dir: Path, which: str = "best") -> tuple[Checkpoint, str | None]:
    """The checkpoint to evaluate or export: ``which`` ("best" or "last"), else the next intact one.

    Returns it and, when it is not the one asked for, one line saying what failed and what is used
    instead; raises a one-line ``CheckpointError`` when the run has no intact checkpoint at all.
    """
    if which not in ("best", "last"):
        raise CheckpointError(f"must be best or last (got {which!r})", field="--checkpoint")
    found, problems = find(run_dir, which)
    if found is None and which == "best":
        problems = problems or ["checkpoints/best: missing"]
        found, more = find(run_dir, "last")
        problems += more
    if found is None:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise CheckpointError(f"run has no intact checkpoint: {run_dir}{detail}", field="run")
    if found.label == f"checkpoints/{which}":
        return found, None
    problems = problems or [f"checkpoints/{which}: missing"]
    return found, f"{'; '.join(problems)}; using {found.describe()} instead"


def choose_any(run_dir: Path, which: str = "best") -> tuple[Checkpoint, str | None]:
    """``choose`` plus ``which`` = a step number: the intact checkpoint (best, last or prev) saved
    at that step, or a one-line error naming the steps the run has."""
    if not str(which).isdigit():
        return choose(run_dir, which)
    step = int(which)
    parent = Path(run_dir) / "checkpoints"
    found: list[Checkpoint] = []
    for name in ("best", "last", "prev"):
        ckpt, _ = _try(parent / name, f"checkpoints/{name}", (TRAINABLE,))
        if ckpt is not None:
            found.append(ckpt)
    for ckpt in found:
        if ckpt.step == step:
            return ckpt, None
    have = ", ".join(f"{c.step} ({c.label.removeprefix('checkpoints/')})" for c in found) or "none"
    raise CheckpointError(
        f"no checkpoint at step {step}; this run keeps best, last and the one before last: steps {have}",
        field="--checkpoint",
    )


def recover(run_dir: Path) -> list[str]:
    """Repair an interrupted swap and delete stale temps; the writer calls this under the run lock.

    ``last`` (or ``best``) missing but a complete ``.last.old`` / ``.last.*.tmp`` present: the newest
    intact one is renamed back. A leftover ``.last.old`` beside an intact ``last`` becomes ``prev``.
    Returns one line per repair.
    """
    parent = Path(run_dir) / "checkpoints"
    notes: list[str] = []
    if not parent.is_dir():
        return notes
    for name in ("last", "best"):
        target = parent / name
        left = _leftovers(parent, name)
        if not target.exists():
            good = [c for p in left if (c := _try(p, p.name, ())[0])]
            if good:
                pick = max(good, key=lambda c: (c.step, c.path.name.endswith(".tmp")))
                os.replace(pick.path, target)
                fsync_dir(parent)
                notes.append(
                    f"checkpoints/{name}: restored from {pick.path.name} (step {pick.step}) "
                    "after an interrupted checkpoint write"
                )
        old = parent / f".{name}.old"
        if old.is_dir():
            if name == "last" and _try(target, name, ())[0] is not None:
                kept, _ = _try(old, old.name, ())
                prev, _ = _try(parent / "prev", "prev", ())
                if kept is not None and (prev is None or prev.step <= kept.step):
                    _rmtree(parent / "prev")
                    os.replace(old, parent / "prev")
                    fsync_dir(parent)
            if old.exists() and target.exists():
                _rmtree(old)
        for p in parent.glob(f".{name}.*.tmp"):
            _rmtree(p)
    return notes


def has_resume_point(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a resume checkpoint (``last``, ``prev`` or a leftover of a ``last``
    write), intact or not: such a run is continued with resume, never overwritten by train."""
    parent = Path(run_dir) / "checkpoints"
    return (parent / "last").exists() or (parent / "prev").exists() or bool(_leftovers(parent, "last"))


def any_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds any checkpoint folder or leftover (intact or not)."""
    parent = Path(run_dir) / "checkpoints"
    if not parent.is_dir():
        return False
    return any(p.is_dir() for p in parent.iterdir())
