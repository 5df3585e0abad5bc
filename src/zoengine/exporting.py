"""Export a run's trained adapter: rebuild base + adapter, load the checkpoint, write a format.

Formats come from ``zoengine.adapters.export_adapter``: ``native`` (zoengine), ``peft-lora``
(PEFT ``PeftModel.from_pretrained``) and ``merged`` (transformers ``from_pretrained``).
"""

from __future__ import annotations

from pathlib import Path

from zoengine.config import RunConfig
from zoengine.errors import CheckpointError, ConfigError

FORMATS = ("native", "peft-lora", "merged")
FORMAT_HELP = {
    "native": "zoengine's own format (all methods): load with `zoengine.adapters.load_native`",
    "peft-lora": "PEFT LoRA (lora, lora_xs, sora): load with `peft.PeftModel.from_pretrained`",
    "merged": "full model with the adapter merged (linear adapters): load with transformers `from_pretrained`",
}


def export_run(
    run_dir: str | Path, fmt: str, dest: str | Path | None = None, *, checkpoint: str = "best"
) -> list[Path]:
    """Export ``checkpoint`` ("best", falling back to "last") of ``run_dir`` as ``fmt``."""
    from safetensors.torch import load_file

    from zoengine.adapters import apply_adapter, base_weights_hash, export_adapter
    from zoengine.models import load_model
    from zoengine.tasks import load_task

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ConfigError(f"must be one of {', '.join(FORMATS)} (got {fmt!r})", field="--format")
    if not (run_dir / "config.toml").exists():
        raise CheckpointError(f"not a run directory (no config.toml): {run_dir}", field="run")
    ckpt = run_dir / "checkpoints" / checkpoint / "trainable.safetensors"
    if not ckpt.exists():
        ckpt = run_dir / "checkpoints" / "last" / "trainable.safetensors"
    if not ckpt.exists():
        raise CheckpointError(f"run has no checkpoint yet: {run_dir}", field="run")
    cfg = RunConfig.load(run_dir / "config.toml")
    task = load_task(cfg.task)
    loaded = load_model(cfg.model, label_texts=task.label_words or task.label_names)
    base_hash = base_weights_hash(loaded.model)
    handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
    handle.load_trainable_state_dict(load_file(ckpt))
    target = Path(dest) if dest is not None else run_dir / "exports" / fmt
    return export_adapter(
        loaded.model, handle, target, fmt, base_model_id=cfg.model.name, base_model_hash=base_hash
    )
