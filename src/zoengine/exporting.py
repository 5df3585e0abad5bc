"""Export a run's trained adapter: rebuild base + adapter, load the checkpoint, write a format.

The formats and what each supports live in ``zoengine.export_formats`` (the one registry);
the writers are in ``zoengine.adapters.export``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zoengine.errors import CheckpointError, ConfigError
from zoengine.export_formats import FORMATS, help_lines

FORMAT_HELP = help_lines()


def check_export_dest(target: Path, force: bool = False, field: str = "--out") -> None:
    """An export never deletes: the destination must be absent or an empty folder, unless ``force``
    (then it is replaced atomically by ``export_run``). Also refuses what could not be written."""
    from zoengine.paths import check_writable

    target = Path(target)
    if target.is_dir():
        entries = sum(1 for _ in target.iterdir())
        if entries and not force:
            raise ConfigError(
                f"folder is not empty: {target} ({entries} entr{'y' if entries == 1 else 'ies'}); "
                "choose a new or empty folder, or add --force to replace it",
                field=field,
            )
    elif target.exists() or target.is_symlink():
        if not force:
            raise ConfigError(
                f"a file is in the way: {target}; choose a new folder, or add --force to replace it",
                field=field,
            )
    check_writable(target, field)


def _swap_in(new: Path, target: Path, aside: Path, force: bool) -> None:
    """Put the finished export ``new`` at ``target``. With ``force`` whatever is there is renamed
    into ``aside`` first (beside it, same file system) and restored if the second rename fails;
    without, a rename onto an empty folder succeeds and onto anything else fails. Never deletes."""
    from zoengine.io import apply_umask, fsync_dir

    for path in [new, *new.rglob("*")]:  # temp files are 0600: an export gets the user's umask
        apply_umask(path)
    moved = False
    if force and (target.exists() or target.is_symlink()):
        os.replace(target, aside)
        moved = True
    try:
        os.replace(new, target)
    except BaseException:  # OSError, or Ctrl-C between the renames: put the old one back
        if moved and not (target.exists() or target.is_symlink()):
            os.replace(aside, target)
        raise
    fsync_dir(target.parent)


@contextlib.contextmanager
def replacing_dir(target: Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh folder path beside ``target`` to write into; on success it becomes ``target``
    (``check_export_dest`` rules: absent or empty, or anything with ``force``). The old content
    is only removed once the new one is in place; on failure or Ctrl-C ``target`` is untouched."""
    target = Path(target)
    check_export_dest(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".export", dir=target.parent))
    try:
        yield staging / "new"
        _swap_in(staging / "new", target, staging / "old", force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


MODEL_INFO = "model_info.json"


def write_model_info(run_dir: Path, kind: str, model: object, label_texts: list[str] | None, base_hash: str) -> None:
    """What an export needs besides config.toml, so it never reloads the task (possibly from a hub):
    the model kind, the label texts a pooling classifier's head was built from, the base's hash.
    The trainer writes it once the model is loaded."""
    from zoengine.io import atomic_write_json

    atomic_write_json(
        Path(run_dir) / MODEL_INFO,
        {
            "kind": kind,
            "model_class": type(model).__name__,
            "label_texts": list(label_texts) if label_texts else None,
            "base_model_hash": base_hash,
        },
    )


def read_model_info(run_dir: Path) -> dict[str, Any]:
    """``model_info.json`` checked field by field (a run directory is untrusted input); ``{}`` when
    missing or damaged: the caller then falls back to what older runs did."""
    import json

    from zoengine.export_formats import KINDS

    try:
        data = json.loads((Path(run_dir) / MODEL_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    if data.get("kind") in KINDS:
        out["kind"] = data["kind"]
    texts = data.get("label_texts")
    if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
        out["label_texts"] = texts
    if isinstance(data.get("base_model_hash"), str):
        out["base_model_hash"] = data["base_model_hash"]
    return out


def _load_base(cfg: Any, info: dict[str, Any]) -> Any:
    """The run's base model on the CPU (a live run's accelerator is left alone), with the label
    texts from model_info.json; only a run from before that file reloads its task for them."""
    import dataclasses

    from zoengine.errors import ModelError
    from zoengine.models import load_model

    model_cfg = dataclasses.replace(cfg.model, device="cpu")
    try:
        return load_model(model_cfg, label_texts=info.get("label_texts"))
    except ModelError as exc:
        if exc.field != "task.label_words" or info.get("label_texts"):
            raise
    from zoengine.tasks import load_task

    task = load_task(cfg.task)
    return load_model(model_cfg, label_texts=task.label_words or task.label_names)


def _card(cfg: Any, chosen: Any) -> dict[str, str]:
    """The run facts a peft-lora model card lists."""
    metrics = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in sorted(chosen.info.items()) if isinstance(v, float))
    lr = f", lr {cfg.optimizer.lr}" if cfg.optimizer.lr is not None else ""
    return {
        "optimizer": f"{cfg.optimizer.name} (zeroth-order{lr}), {cfg.run.steps} steps",
        "task": str(cfg.task.name),
        "checkpoint": chosen.describe(),
        "metrics": metrics,
    }


def export_run(
    run_dir: str | Path,
    fmt: str,
    dest: str | Path | None = None,
    *,
    checkpoint: str = "best",
    force: bool = False,
    dtype: str | None = None,
    gguf_type: str = "f16",
    report: Callable[[str], None] | None = None,
) -> list[Path]:
    """Export ``checkpoint`` of ``run_dir`` as ``fmt``: "best" (falling back to "last"), "last",
    or a step number (one of the checkpoints the run keeps).

    Reads only config.toml, model_info.json and the checkpoint: the task is not reloaded and a
    live run is not disturbed (the base is loaded on the CPU). ``dest`` must be absent or an empty
    folder; ``force`` replaces what it holds, atomically: the export is written into a temp folder
    beside it, then swapped in by rename. ``dtype`` sets a merged export's weights; ``gguf_type``
    a GGUF's (f32 | f16 | q8_0). ``report`` gets one line naming the checkpoint exported (and
    one first when another had to be used instead).
    """
    from zoengine import export_formats
    from zoengine.adapters import apply_adapter, base_weights_hash, export_adapter
    from zoengine.checkpoint import choose_any
    from zoengine.rundir import load_config

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"must be one of {', '.join(FORMATS)} (got {fmt!r})", field="--format")
    if dtype is not None and fmt != "merged":
        raise ConfigError(f"sets a merged export's weights; {fmt} keeps its own (got --format {fmt})", field="--dtype")
    if not (run_dir / "config.toml").exists():
        raise CheckpointError(f"not a run directory (no config.toml): {run_dir}", field="run")
    target = Path(dest).expanduser() if dest is not None else run_dir / "exports" / fmt
    check_export_dest(target, force)
    cfg = load_config(run_dir)  # verified: a damaged config.toml is refused, never read as defaults
    info = read_model_info(run_dir)
    known_kind = info.get("kind") or (None if cfg.model.kind == "auto" else cfg.model.kind)
    export_formats.check(fmt, cfg.adapter.method, known_kind)
    chosen, note = choose_any(run_dir, checkpoint)  # verified against its manifest; best -> last with a note
    if report is not None:
        if note:
            report(f"warning: {note}")
        report(f"exporting {chosen.describe()} of {run_dir}")
    loaded = _load_base(cfg, info)
    export_formats.check(fmt, cfg.adapter.method, loaded.kind)
    base_hash = base_weights_hash(loaded.model)
    if report is not None and info.get("base_model_hash") not in (None, base_hash):
        report(f"warning: the base model {cfg.model.name!r} has changed since this run was trained")
    handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
    try:
        handle.load_trainable_state_dict(chosen.tensors())
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"does not fit the run's adapter: {exc}".splitlines()[0], field=chosen.label) from None
    from zoengine.assets import find_asset

    asset = find_asset(cfg.model.name)
    gguf_pre = asset.extra.get("gguf_tokenizer_pre") if asset is not None else None
    with replacing_dir(target, force) as new:
        files = export_adapter(
            loaded.model,
            handle,
            new,
            fmt,
            base_model_id=cfg.model.name,
            base_model_hash=base_hash,
            tokenizer=loaded.tokenizer,
            dtype=dtype,
            gguf_type=gguf_type,
            gguf_pre=gguf_pre,
            card=_card(cfg, chosen),
        )
    return [target / f.relative_to(new) for f in files]
