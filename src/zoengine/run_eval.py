"""Evaluation during a run: loss and accuracy on a split, sharded over the ranks, with progress events.

Stand-alone evaluation of a config or a finished run is ``zoengine.evaluation``; this is the
engine's, which reports as it goes (``EvalProgress``, then ``EvalDone``) and decides what is "best".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from zoengine.events import EvalDone, EvalProgress, Event

EVAL_PROGRESS_SECONDS = 1.0  # at most one EvalProgress event per second of an evaluation


def evaluate(
    objective: Any,
    examples: list[Any],
    split: str,
    *,
    step: int,
    batch_size: int,
    dist: Any,
    emit: Callable[[Event], None],
) -> EvalDone:
    """Loss and accuracy on ``examples`` (the whole ``split``), emitted and returned as ``EvalDone``.

    With ``dist`` (a multi-process run) each rank scores its shard and the ranks add up the sums,
    so every rank gets the whole split's result; ``dist=None``: this process scores it all."""
    mine = dist.eval_shard(examples) if dist is not None else examples
    last = [-math.inf]

    def progress(done: int, total: int) -> None:
        """EvalProgress at the start, then at most once per EVAL_PROGRESS_SECONDS (not at the
        end: EvalDone says that), so a long test evaluation shows where it is (in a
        multi-process run: where this rank is in its shard)."""
        now = time.monotonic()
        if done < total and (done == 0 or now - last[0] >= EVAL_PROGRESS_SECONDS):
            last[0] = now
            emit(EvalProgress(step=step, split=split, done=done, total=total, examples=len(examples)))

    sums = objective.eval_sums(mine, batch_size, progress=progress)
    if dist is not None:  # 3 float64 per rank; every rank joins, an empty shard with zeros
        sums = tuple(dist.all_reduce_sum(sums))
    total_loss, correct, seen = sums
    loss, acc = (total_loss / seen, correct / seen) if seen else (math.nan, math.nan)
    event = EvalDone(step=step, split=split, loss=loss, accuracy=acc, examples=len(examples))
    emit(event)
    return event


def is_new_best(accuracy: float, best: float | None) -> bool:
    """Whether a dev accuracy beats the best so far (the first one always does; NaN never)."""
    return not math.isnan(accuracy) and (best is None or accuracy > best)
