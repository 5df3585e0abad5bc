"""What a run trains with: task, model, adapter, objective, optimizer and scheduler, built from a config.

``build`` is the engine's setup step, kept apart from the loop so ``zoengine.engine`` reads top to
bottom; it loads and checks, logs what a user should know, and returns the pieces in a ``Setup``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.events import RunInfo

Log = Callable[..., None]  # ``log(text)`` or ``log(text, "warning")``, as ``Run._log``


@dataclass
class Setup:
    """The objects one run trains with (the engine keeps them as attributes of ``Run``)."""

    task: Any
    loaded: Any  # zoengine.models.LoadedModel
    objective: Any  # zoengine.objectives.Objective
    handle: Any  # the adapter handle (zoengine.adapters)
    optimizer: Any
    scheduler: Any
    lr: float
    steps_per_epoch: int


def build(cfg: RunConfig, task: Any, *, dist: Any, log: Log, model_info_dir: Path | None) -> Setup:
    """Load everything ``cfg`` names (``task`` too unless given: the CLI loads it first, to refuse
    bad data before touching the disk). ``model_info_dir``: the run directory when this process owns
    it, to record what an export needs so it never reloads the task (``zoengine.exporting``)."""
    from zoengine.adapters import apply_adapter
    from zoengine.models import load_model
    from zoengine.objectives import Objective
    from zoengine.optim import build_optimizer, lr_rule_text, make_lr_lambda, resolved_lr
    from zoengine.optim.calibration import depth_factor
    from zoengine.tasks import check_label_words, load_task

    torch.manual_seed(cfg.run.seed)  # adapter inits; perturbations use the optimizer's own generator
    if task is None:
        task = load_task(cfg.task)
    for note in task.notes:
        log(f"data: {note}")
    if not task.train:
        raise ZOError("the training split is empty", field="task.n_train")
    label_texts = task.label_words or task.label_names
    loaded = load_model(cfg.model, label_texts=label_texts)
    if model_info_dir is not None:
        from zoengine.adapters import base_weights_hash
        from zoengine.exporting import write_model_info

        base_hash = base_weights_hash(loaded.model)
        write_model_info(model_info_dir, loaded.kind, loaded.model, label_texts, base_hash)
    if loaded.kind != "classifier":
        for w in check_label_words(task, loaded.tokenizer) or []:
            log(w, "warning")
    objective = Objective(loaded, task, cfg.model.max_length)
    for w in objective.warnings:
        log(w, "warning")
    handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
    handle.set_run_length(cfg.run.steps)
    prefix = objective.share_prefix(cfg.run.share_prefix)
    if prefix is not None and prefix.active:
        log(
            f"blocks 0-{prefix.start - 1} of {prefix.n_layers} hold nothing trainable: they run once per "
            "batch and every query of a step reuses their output"
        )
    groups = handle.param_groups(cfg.optimizer.weight_decay)
    steps_per_epoch = math.ceil(len(task.train) / cfg.run.batch_size)
    depth = depth_factor(cfg.adapter.method, handle.block_positions())
    lr = resolved_lr(cfg, handle.num_trainable(), depth=depth)
    if cfg.optimizer.lr is None:
        log(lr_rule_text(cfg.optimizer.name, cfg.adapter.method, handle.num_trainable(), cfg.run.steps, depth))
    optimizer = build_optimizer(
        cfg.optimizer,
        groups,
        seed=cfg.run.seed,
        total_steps=cfg.run.steps,
        steps_per_epoch=steps_per_epoch,
        lr=lr,
    )
    for note in getattr(optimizer, "notes", []):
        log(note, "warning")
    if dist is not None and dist.enabled:
        if optimizer.uses_backward:
            raise ZOError(
                f"{cfg.optimizer.name} is first-order: multi-process runs take zeroth-order methods",
                field="optimizer.name",
            )
        optimizer.query_split = dist.query_split()
        log(f"distributed: {dist.describe()}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, make_lr_lambda(cfg.optimizer, cfg.run.steps))
    return Setup(task, loaded, objective, handle, optimizer, scheduler, lr, steps_per_epoch)


def run_info(cfg: RunConfig, s: Setup, *, resumed_at: int | None) -> RunInfo:
    """The event that ends setup: sizes and the forward-pass schedule a UI estimates time left from."""
    return RunInfo(
        model=cfg.model.name,
        total_params=s.loaded.num_params(),
        trainable_params=s.handle.num_trainable(),
        n_train=len(s.task.train),
        n_dev=len(s.task.dev),
        n_test=len(s.task.test),
        total_steps=cfg.run.steps,
        details={
            "kind": s.loaded.kind,
            "device": str(s.loaded.device),
            "dtype": str(s.loaded.dtype).removeprefix("torch."),
            "steps_per_epoch": s.steps_per_epoch,
            "adapter_targets": len(s.handle.targets),
            "resumed_at": resumed_at,
            "forward_schedule": forward_schedule(s.optimizer, cfg.run.steps),
        },
    )


def summary(cfg: RunConfig, s: Setup) -> str:
    """One log line: model, sizes, device and splits."""
    return (
        f"{cfg.model.name} ({s.loaded.kind}, {s.loaded.num_params():,} params, "
        f"{s.handle.num_trainable():,} trainable) on {s.loaded.device}; "
        f"train/dev/test = {len(s.task.train)}/{len(s.task.dev)}/{len(s.task.test)}"
    )


def forward_schedule(optimizer: Any, total_steps: int) -> list[list[int]]:
    """Forward passes per training step over the whole run, run-length encoded as
    ``[[first_step, passes_per_step], ...]`` (1-based steps): known in advance for every method,
    AdaZeta's growing Q included, so a UI can estimate the time left from the passes still to do."""
    queries = getattr(optimizer, "queries_for_step", None)
    if getattr(optimizer, "uses_backward", False) or queries is None:
        queries = None  # first order: one forward (and one backward) per step
    out: list[list[int]] = []
    for t in range(1, max(0, total_steps) + 1):
        passes = 2 * int(queries(t)) if queries is not None else 1
        if not out or out[-1][1] != passes:
            out.append([t, passes])
    return out
