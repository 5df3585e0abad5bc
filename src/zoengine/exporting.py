"""Export a run's trained adapter: rebuild base + adapter, load the checkpoint, write a format.

Formats come from ``zoengine.adapters.export_adapter``: ``native`` (zoengine), ``peft-lora``
(PEFT ``PeftModel.from_pretrained``) and ``merged`` (transformers ``from_pretrained``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from zoengine.errors import CheckpointError, ConfigError

FORMATS = ("native", "peft-lora", "merged")
FORMAT_HELP = {
    "native": "zoengine's own format (all methods): load with `zoengine.adapters.load_native`",
    "peft-lora": "PEFT LoRA (lora, lora_xs, sora): load with `peft.PeftModel.from_pretrained`",
    "merged": "full model with the adapter merged (linear adapters): load with transformers `from_pretrained`",
}


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
    from zoengine.io import fsync_dir

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


def export_run(
    run_dir: str | Path,
    fmt: str,
    dest: str | Path | None = None,
    *,
    checkpoint: str = "best",
    force: bool = False,
    report: Callable[[str], None] | None = None,
) -> list[Path]:
    """Export ``checkpoint`` ("best", falling back to "last") of ``run_dir`` as ``fmt``.

    ``dest`` must be absent or an empty folder; ``force`` replaces what it holds, atomically: the
    export is written into a temp folder beside it, then swapped in by rename. ``report`` gets
    one line naming the checkpoint exported (and one first when another had to be used instead).
    """
    from zoengine.adapters import apply_adapter, base_weights_hash, export_adapter
    from zoengine.checkpoint import choose
    from zoengine.models import load_model
    from zoengine.rundir import load_config
    from zoengine.tasks import load_task

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"must be one of {', '.join(FORMATS)} (got {fmt!r})", field="--format")
    if not (run_dir / "config.toml").exists():
        raise CheckpointError(f"not a run directory (no config.toml): {run_dir}", field="run")
    target = Path(dest).expanduser() if dest is not None else run_dir / "exports" / fmt
    check_export_dest(target, force)
    cfg = load_config(run_dir)  # verified: a damaged config.toml is refused, never read as defaults
    chosen, note = choose(run_dir, checkpoint)  # verified against its manifest; best -> last with a note
    if report is not None:
        if note:
            report(f"warning: {note}")
        report(f"exporting {chosen.describe()} of {run_dir}")
    task = load_task(cfg.task)
    loaded = load_model(cfg.model, label_texts=task.label_words or task.label_names)
    base_hash = base_weights_hash(loaded.model)
    handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
    try:
        handle.load_trainable_state_dict(chosen.tensors())
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"does not fit the run's adapter: {exc}".splitlines()[0], field=chosen.label) from None
    with replacing_dir(target, force) as new:
        files = export_adapter(
            loaded.model, handle, new, fmt, base_model_id=cfg.model.name, base_model_hash=base_hash
        )
    return [target / f.relative_to(new) for f in files]
