"""Stand-alone evaluation: a config's model zero-shot, or a run's best checkpoint."""

from __future__ import annotations

from pathlib import Path

from zoengine.config import RunConfig
from zoengine.errors import CheckpointError, ConfigError


def evaluate(
    cfg: RunConfig | None, *, run_dir: str | Path | None = None, split: str = "test"
) -> dict[str, float]:
    from zoengine.models import load_model
    from zoengine.objectives import Objective
    from zoengine.tasks import load_task

    if split not in ("dev", "test"):
        raise ConfigError(f"must be dev or test (got {split!r})", field="--split")
    handle = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        if not (run_dir / "config.toml").exists():
            raise CheckpointError(f"not a run directory (no config.toml): {run_dir}", field="--run")
        cfg = RunConfig.load(run_dir / "config.toml")
    assert cfg is not None
    task = load_task(cfg.task)
    loaded = load_model(cfg.model, label_texts=task.label_words or task.label_names)
    if run_dir is not None:
        from safetensors.torch import load_file

        from zoengine.adapters import apply_adapter

        ckpt = run_dir / "checkpoints" / "best" / "trainable.safetensors"
        if not ckpt.exists():
            ckpt = run_dir / "checkpoints" / "last" / "trainable.safetensors"
        if not ckpt.exists():
            raise CheckpointError(f"run has no checkpoint: {run_dir}", field="--run")
        handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
        handle.load_trainable_state_dict(load_file(ckpt))
    objective = Objective(loaded, task, cfg.model.max_length)
    examples = getattr(task, split)
    loss, acc = objective.evaluate(examples, cfg.run.eval_batch_size)
    return {"loss": loss, "accuracy": acc, "examples": len(examples)}
