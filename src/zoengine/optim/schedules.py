"""Pure schedule functions: learning rate, AdaZeta query count, ZO-AdaMU annealing.

They are pure (no optimizer state) so the tables in ``zo-methods.md`` can be tested directly
and so a UI can plot a schedule before a run starts.

    >>> adazeta_query_count(step=63 * 4, steps_per_epoch=63, alpha=0.85, beta=0.6223, q_max=15)
    2
    >>> round(adamu_anneal(4, T1=1, T2=4, T3=6, phi=1.0), 3)
    0.146
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["adamu_anneal", "adazeta_beta", "adazeta_beta_note", "adazeta_raw_beta", "adazeta_query_count", "lr_factor", "make_lr_lambda"]


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """Multiplier of the base lr at 0-based ``step``.

    Warm-up is linear from ``1/warmup_steps`` (never 0: a step with lr 0 would waste 2·Q forward
    passes) up to 1. After it, ``linear`` decays towards 0 at ``total_steps`` and ``cosine`` follows
    half a cosine to 0; ``constant`` stays at 1.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}; allowed: constant, linear, cosine")


def make_lr_lambda(cfg: Any, total_steps: int) -> Callable[[int], float]:
    """``LambdaLR`` factor function for an ``OptimizerConfig`` (``lr_schedule``, ``warmup_steps``)."""
    schedule = str(cfg.lr_schedule)
    warmup = int(cfg.warmup_steps) or round(float(getattr(cfg, "warmup_ratio", 0.0)) * total_steps)
    lr_factor(0, total_steps, schedule, warmup)  # fail now on an unknown schedule, not mid-run

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, schedule, warmup)

    return factor


def adazeta_beta(q_target: float, alpha: float, total_epochs: float) -> float:
    """Exponent that makes the uncapped schedule reach ``q_target`` at the last epoch, in (0, 1].

    This is how the AdaZeta code derives β (``ln(NUM/SHRINK)/ln(E_total)``) instead of tuning it.
    The paper's regime is β in (0, 1) (Q grows sub-linearly with the epoch); on a run too short for
    the requested growth (about 24 epochs for q_target 20) the raw value leaves it, so β is clamped
    to 1 and the run reaches ``alpha·E`` queries instead (see :func:`adazeta_beta_note`).
    """
    raw = adazeta_raw_beta(q_target, alpha, total_epochs)
    return min(1.0, raw) if raw > 0 else 1.0


def adazeta_raw_beta(q_target: float, alpha: float, total_epochs: float) -> float:
    """The unclamped ``ln(q_target/α)/ln(E_total)`` (0 for a run of one epoch or less)."""
    if total_epochs <= 1:
        return 0.0  # a single epoch: ln(1) = 0, the schedule never leaves epoch 0 anyway
    return math.log(q_target / alpha) / math.log(total_epochs)


def adazeta_beta_note(q_target: float, alpha: float, total_epochs: float, q_max: int) -> str | None:
    """A warning when the derived β had to be clamped (the run is too short for ``q_target``)."""
    raw = adazeta_raw_beta(q_target, alpha, total_epochs)
    if raw <= 1.0:
        return None
    last = min(q_max, max(1, math.floor(alpha * max(0.0, math.ceil(total_epochs) - 1))))
    return (
        f"AdaZeta: a run of {total_epochs:.1f} epochs is too short to grow Q to q_target={q_target:g} "
        f"(needs β={raw:.2f} > 1); β clamped to 1, Q reaches {last} at the last epoch"
    )


def adazeta_query_count(
    step: int, steps_per_epoch: int, alpha: float, beta: float, q_max: int, min_q: int = 1
) -> int:
    """Queries Q_k at 0-based global ``step``: ``min(max(floor(alpha·k^beta), min_q), q_max)``.

    ``k = step // steps_per_epoch`` is the 0-based epoch, so Q is constant within an epoch and
    epoch 0 gets ``min_q`` (0^β = 0 is clamped), as in the authors' code.
    """
    epoch = step // max(1, steps_per_epoch)
    raw = math.floor(alpha * epoch**beta) if epoch > 0 else 0
    return int(min(max(raw, min_q), q_max))


def adamu_anneal(
    t: float,
    T1: float,
    T2: float,
    T3: float,
    phi: float,
    third_phase: Literal["hold", "const0.9"] = "hold",
) -> float:
    """ZO-AdaMU's three-phase annealing (Eq. 7, reconstruction of zo-methods.md §B.4).

    * ``t < T1``: 1 (warm-up, no momentum);
    * ``T1 <= t < T2``: ``0.5 + 0.5·cos(π·(t−T1) / (T3 − (t−T1)·φ·(T3−T2)/(T2−T1)))``;
    * ``t >= T2``: held at its value at ``T2`` (``"hold"``, matches Fig. 1 and the authors'
      code) or the printed constant 0.9 (``"const0.9"``, kept only for comparison).

    The numerator uses ``t − T1`` (not the printed ``T3 − T1``) so the curve is continuous at T1.
    """
    if t < T1:
        return 1.0
    if t >= T2:
        if third_phase == "const0.9":
            return 0.9
        t = T2
    if T2 <= T1:  # empty decay phase: nothing anneals
        return 1.0
    span = T3 - (t - T1) * phi * (T3 - T2) / (T2 - T1)
    if span <= 0:  # the cosine argument would pass infinity; fall back to its value at π
        return 0.0
    return 0.5 + 0.5 * math.cos(math.pi * (t - T1) / span)
