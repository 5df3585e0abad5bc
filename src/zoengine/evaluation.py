"""Stand-alone evaluation: a config's model zero-shot, or a run's best checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoengine.config import RunConfig
from zoengine.errors import CheckpointError, ConfigError


def evaluate(
    cfg: RunConfig | None,
    *,
    run_dir: str | Path | None = None,
    split: str = "test",
    checkpoint: str = "best",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """loss, accuracy, examples; for a run also ``checkpoint`` (what was evaluated, e.g.
    "checkpoints/best"), ``step`` and ``note`` (a line when another checkpoint had to be used).

    ``progress(done, total)`` is called with evaluation batches done (see ``Objective.evaluate``)."""
    from zoengine.models import load_model
    from zoengine.objectives import Objective
    from zoengine.tasks import load_task

    if split not in ("dev", "test"):
        raise ConfigError(f"must be dev or test (got {split!r})", field="--split")
    handle = None
    chosen = None
    note: str | None = None
    if run_dir is not None:
        from zoengine.checkpoint import choose
        from zoengine.rundir import load_config

        run_dir = Path(run_dir)
        if not (run_dir / "config.toml").exists():
            raise CheckpointError(f"not a run directory (no config.toml): {run_dir}", field="--run")
        cfg = load_config(run_dir)
        chosen, note = choose(run_dir, checkpoint)  # verified against its manifest
    assert cfg is not None
    task = load_task(cfg.task)
    loaded = load_model(cfg.model, label_texts=task.label_words or task.label_names)
    if chosen is not None:
        from zoengine.adapters import apply_adapter

        handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
        try:
            handle.load_trainable_state_dict(chosen.tensors())
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"does not fit the run's adapter: {exc}".splitlines()[0], field=chosen.label) from None
    objective = Objective(loaded, task, cfg.model.max_length)
    examples = getattr(task, split)
    loss, acc = objective.evaluate(examples, cfg.run.eval_batch_size, progress=progress)
    result: dict[str, Any] = {"loss": loss, "accuracy": acc, "examples": len(examples)}
    if chosen is not None:
        result.update(checkpoint=chosen.label, step=chosen.step, note=note)
    return result
