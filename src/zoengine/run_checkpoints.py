"""A run's checkpoints as the engine uses them: write ``last`` and ``best``, resume from ``last``,
test on ``best``. The format (safetensors + JSON, sha256 manifest, no pickle) is ``zoengine.checkpoint``.

Plain functions over explicit arguments: the engine passes its adapter handle, optimizer and
counters in and assigns what comes back, so which run state a checkpoint holds is visible here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoengine import checkpoint
from zoengine.errors import CheckpointError
from zoengine.io import kill_point

Log = Callable[..., None]  # ``log(text)`` or ``log(text, "warning")``, as ``Run._log``


def trainable_cpu(handle: Any) -> dict[str, torch.Tensor]:
    """The trainable tensors on the CPU, contiguous (what safetensors writes)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in handle.trainable_state_dict().items()}


def save_last(
    run_dir: Path,
    *,
    step: int,
    handle: Any,
    optimizer: Any,
    scheduler: Any,
    forward_passes: int,
    tokens: int,
    best_dev_accuracy: float | None,
) -> Path:
    """Write the resume point ``checkpoints/last`` (the one before it kept as ``prev``)."""
    kill_point("checkpoint-start")
    data, tensors = checkpoint.pack(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "forward_passes": forward_passes,
            "tokens": tokens,
            "best_dev_accuracy": best_dev_accuracy,
            "torch_rng": torch.get_rng_state(),
        }
    )
    return checkpoint.write(
        run_dir / "checkpoints",
        "last",
        kind="last",
        step=step,
        tensors={checkpoint.TRAINABLE: trainable_cpu(handle), checkpoint.STATE_TENSORS: tensors},
        jsons={checkpoint.STATE_JSON: data},
        keep_prev=True,
    )


def save_best(run_dir: Path, *, step: int, handle: Any, dev_accuracy: float | None) -> Path:
    """Write ``checkpoints/best``: the trainable tensors of the best dev accuracy so far."""
    return checkpoint.write(
        run_dir / "checkpoints",
        "best",
        kind="best",
        step=step,
        tensors={checkpoint.TRAINABLE: trainable_cpu(handle)},
        info={"dev_accuracy": dev_accuracy},
    )


@dataclass(frozen=True)
class Resumed:
    """What a resumed run continues from (handle, optimizer and scheduler are restored in place)."""

    step: int
    forward_passes: int
    tokens: int
    best_so_far: Any  # the best dev accuracy the checkpoint recorded (see ``best_accuracy``)
    label: str  # "checkpoints/last", or "checkpoints/prev" when last failed verification


def load_last(run_dir: Path, *, handle: Any, optimizer: Any, scheduler: Any, log: Log) -> Resumed | None:
    """Restore the last intact checkpoint (reporting any that fails verification); None without one."""
    found, notes = checkpoint.find(run_dir, "last", require=checkpoint.RESUME_FILES)
    if found is None:
        if notes:
            raise CheckpointError(
                f"no intact checkpoint to resume from ({'; '.join(notes)})",
                field="run",
                hint=f"delete {run_dir / 'checkpoints'} to restart from step 0",
            )
        log("the run has no checkpoint yet: restarting it from step 0", "warning")
        return None
    for note in notes:
        log(f"{note}; resuming from {found.describe()} instead", "warning")
    try:
        state = found.trainer_state()
        handle.load_trainable_state_dict(found.tensors())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        forward_passes = int(state["forward_passes"])
        tokens = int(state["tokens"])
        torch.set_rng_state(state["torch_rng"])
        best_so_far = state["best_dev_accuracy"]
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        raise CheckpointError(
            f"{found.label}: unusable trainer state ({type(exc).__name__}: {exc})".splitlines()[0],
            field="run",
        ) from None
    if step != found.step:
        raise CheckpointError(f"{found.label}: state step {step} != manifest step {found.step}", field="run")
    return Resumed(step, forward_passes, tokens, best_so_far, found.label)


def best_accuracy(run_dir: Path, best_so_far: Any, log: Log) -> float | None:
    """The best dev accuracy is the one of an intact ``best`` checkpoint; without one it is forgotten
    (so the next evaluation writes a new ``best`` instead of comparing against a missing one)."""
    best, notes = checkpoint.find(run_dir, "best")
    acc = best.info.get("dev_accuracy") if best is not None else None
    if isinstance(acc, int | float) and not isinstance(acc, bool) and math.isfinite(acc):
        return float(acc)
    if best_so_far is not None:
        why = "; ".join(notes) or "checkpoints/best: missing"
        log(
            f"{why}: the best dev accuracy so far ({best_so_far}) has no intact checkpoint; "
            "the best is chosen again from the next evaluation on",
            "warning",
        )
    return None


def load_best_for_test(run_dir: Path, *, handle: Any, step: int, has_dev: bool, log: Log) -> tuple[str, int]:
    """Put the best dev checkpoint in place for the test and name it, or say what is used instead:
    ``("best", its step)`` or ``("last", step)`` (the weights in memory)."""
    if not has_dev:
        return "last", step
    best, notes = checkpoint.find(run_dir, "best")
    if best is None:
        why = "; ".join(notes) or "checkpoints/best: missing"
        log(f"{why}; testing the final weights (checkpoints/last, step {step}) instead", "warning")
        return "last", step
    handle.load_trainable_state_dict(best.tensors())
    acc = best.info.get("dev_accuracy")
    log(f"test evaluation uses checkpoints/best (step {best.step}, dev accuracy {acc})")
    return "best", best.step


def failure_note(run_dir: Path, saved_step: int | None, *, resuming: bool, step: int) -> str:
    """What a failed run left to resume from, for its one-line report (``saved_step``: the step of
    the checkpoint this process wrote; a resumed run that wrote none still has the one it resumed)."""
    if saved_step is None and resuming and (run_dir / "checkpoints" / "last").is_dir():
        saved_step = step
    if saved_step is None:
        return "no checkpoint was written yet"
    return f"the last checkpoint at step {saved_step} is intact"
