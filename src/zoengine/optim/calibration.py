"""Default learning rates measured on a real model, and the rule that carries them to other sizes.

Why a rule and not a number: a two-point ZO step moves θ by ``η·(zᵀg)·z``. Its expected effect on
the loss is ``−η‖g‖² + ½η²‖g‖²·tr(H)`` (z Gaussian, d large), so the best step is
``η* ≈ 1/tr(H)`` and anything above ``2/tr(H)`` diverges. ``tr(H)`` is a sum over the d trainable
coordinates, so for one kind of parameter (same per-coordinate curvature) **η must scale as 1/d**:
doubling a LoRA rank or the number of target modules halves the lr. Paper presets tuned for
OPT-13B at d ≈ 10⁷ and 20k steps are therefore far off for a 576-parameter norm scale, and the
other way round for LoRA on a 135M model.

Adaptive-scale methods (sign and Adam-style updates) move every coordinate by about η whatever
the estimate's size, so their step norm is ``η·√d``: **η scales as 1/√d** for them.

The constants ``c`` are per adapter method (per-coordinate curvature differs by orders of magnitude
between a norm scale, a LoRA B matrix and a tensor-train core) and were measured with
``zoengine tune`` on smollm2-135m-instruct + rotten-tomatoes (batch 8, 20 steps, 96 dev examples;
see ``bench/results/calibration.json``): ``c = η_tuned · d`` (or ``· √d``) at the measured d.
The default is set a factor ≈ 5 below the sweep's pick: a 16-step sweep rewards steps that a
150–300-step run does not survive (short-horizon bias). Measured: TT at the pick/2 (lr 3.0e-3) went
from zero-shot test accuracy 0.58 to 0.51 at half a 150-step run and 0.475 at its end (the prior
over-corrected, `bench/results/matrix_superseded/`), while lr 1e-3 (v0.1's hand-set TT value) had
learned to 0.705; the final-norm constant (2.9, lr 5e-3) was measured over 300 steps.
Adaptive constants were first derived (an Adam/sign step moves a coordinate by about
``lr_sgd·|projected_grad|`` of the SGD step it replaces, |projected_grad| ≈ 1 on TT, 0.2 on the norm
scale, times 0.7 for safety: ``c_adaptive ≈ 0.7·c_sgd·|pg|/√d``). That was 3.6× too small for sign
steps on LoRA: at lr 7.7e-4 ZO-SGD-Sign gained only 4 points in 600 passes (0.580 → 0.6225, still
climbing, ``matrix_superseded/``), and the tuner's sweep (``calibration.json``, lora:zo_sgd_sign, d =
2.44M) picked 1.37e-2 with 4.3e-2 diverging. ``SIGN_CONSTANTS`` holds that measured constant, /5
like the SGD ones. ZO-Adam uses it too: its step ``m̂/√v̂`` carries about the same signal per
coordinate as a sign step (``g_i/rms(pg)`` against ``√(2/π)·g_i/rms(pg)``) and about a quarter of
its noise (m̂ averages ~10 estimates: ``|m̂/√v̂| ≈ √((1−β1)/(1+β1)) ≈ 0.23`` on pure noise), so an lr
a sign step survives is safe for it. At the derived constant it gained 6 points in 600 passes,
still climbing (``matrix_superseded/``). ZO-AdaMU keeps the derived constant (+12.5 points).
A user's own model, rank or targets then get ``c/d`` for their d; ``zoengine tune`` refines it.

**Depth.** ``tr(H)`` is a sum over coordinates, but a coordinate's curvature need not be the same
in every block. For TT it falls with depth: on the top 15 of the 30 blocks the tuner's sweep
(``calibration.json``, tt-top15:mezo_sgd, d = 59,100) picked 3.56e-2, 6.7× the all-blocks pick
(5.3e-3 at d = 118,200) where c/d predicts 2×, and at the c/d default (1.41e-3) the 600-pass matrix
run gained only 3.5 points (``matrix_superseded/``). So the rule counts coordinates weighted by
``w(x) ∝ exp(−κ·x)`` (x: block position, input 0 → output 1, mean w over the stack = 1, tensors
outside the stack weigh 1): ``η = c / Σ wᵢ`` for ZO-SGD, ``c / √Σ wᵢ`` for adaptive steps. An adapter
spread evenly over all blocks gets plain c/d; ``DEPTH_DECAY`` holds κ per method, fitted to that
sweep for TT (top-half share of tr(H) = e^(−κ/2)/(1 + e^(−κ/2)) = 0.15 → κ = 3.5). LoRA keeps κ = 0:
its top-15 row learned best of all at the c/d lr (0.772 against 0.734 on all blocks).

**Run length.** The constants hold for runs of up to ``REFERENCE_STEPS`` = 150 steps (every adapter
learned +10 to +14 points there, ``bench/results/matrix_300/``). A longer run at the same constant lr
over-corrects: LoRA at 1.1e-3 was at 0.7225 test accuracy after 150 steps and at 0.5225 (test loss
2.1) after 300 (``bench/results/matrix_superseded/``). For T steps of noisy SGD the best constant step
scales as 1/√T, so the default is multiplied by ``min(1, √(150 / run.steps))`` — the same rule the
tuner applies to its pick (``zoengine.tune``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "ADAPTIVE",
    "DEPTH_DECAY",
    "LR_CONSTANTS",
    "REFERENCE_STEPS",
    "default_lr",
    "depth_factor",
    "horizon_factor",
    "lr_rule_text",
    "resolved_lr",
]

# optimizers whose per-coordinate step size does not depend on the estimate's scale
ADAPTIVE = ("zo_sgd_sign", "zo_adam", "zo_adamu")
# momentum amplifies the step of a plain-SGD update by 1/(1-μ) in steady state
MOMENTUM_OPTIMIZERS = ("zo_sgd_mmt",)

# adapter method -> (c for η = c/d with ZO-SGD, c for η = c/√d with adaptive methods)
LR_CONSTANTS: dict[str, tuple[float, float]] = {
    "subset": (2.9, 0.05),
    "full": (2.9, 0.05),
    "bitfit": (2.9, 0.05),
    "lora": (2.7e3, 1.2),
    "lora_xs": (4.5, 0.03),
    "sora": (2.7e3, 1.2),
    "tt": (118.0, 0.24),
}
_FALLBACK = (2.9, 0.12)
# adapter method -> c for η = c/√d with SIGN_CONSTANT_OPTIMIZERS, measured with sign steps (tuner
# pick·√d / 5); other adapters and optimizers: LR_CONSTANTS
SIGN_CONSTANTS: dict[str, float] = {"lora": 4.3, "sora": 4.3}
SIGN_CONSTANT_OPTIMIZERS = ("zo_sgd_sign", "zo_adam")
FIRST_ORDER_LR = 1e-4


REFERENCE_STEPS = 150  # the run length the constants were validated at

# adapter method -> κ of the per-coordinate curvature profile exp(−κ·x) over the block stack's depth
# x (0 = input, 1 = output); methods not listed: flat (κ = 0, plain c/d)
DEPTH_DECAY: dict[str, float] = {"tt": 3.5}


def depth_factor(adapter: str, positions: list[tuple[int, float | None]]) -> float:
    """``Σ w(x)·size / Σ size`` over the trainable tensors' ``(size, position)`` (see **Depth**):
    1 for an adapter spread evenly over the stack, below 1 for one on the top blocks of a method
    whose curvature falls with depth. The lr rule's d is multiplied by it."""
    kappa = DEPTH_DECAY.get(adapter, 0.0)
    total = sum(size for size, _ in positions)
    if kappa <= 0 or total <= 0:
        return 1.0
    mean = (1.0 - math.exp(-kappa)) / kappa  # of exp(−κx) over x in [0, 1]
    weighted = sum(size * (1.0 if x is None else math.exp(-kappa * x) / mean) for size, x in positions)
    return weighted / total


def horizon_factor(total_steps: int | None, reference: int = REFERENCE_STEPS) -> float:
    """``min(1, √(reference / total_steps))``: the best constant step of T noisy SGD steps scales as
    1/√T, so an lr good for ``reference`` steps is scaled down for longer runs (never up)."""
    if not total_steps or total_steps <= reference:
        return 1.0
    return math.sqrt(max(1, reference) / total_steps)


def constant(optimizer: str, adapter: str) -> float:
    """``c`` of the rule for this pair: η = c/d (ZO-SGD type) or c/√d (``ADAPTIVE``)."""
    c_sgd, c_adaptive = LR_CONSTANTS.get(adapter, _FALLBACK)
    if optimizer in SIGN_CONSTANT_OPTIMIZERS:
        return SIGN_CONSTANTS.get(adapter, c_adaptive)
    return c_adaptive if optimizer in ADAPTIVE else c_sgd


def default_lr(
    optimizer: str,
    adapter: str,
    trainable: int,
    options: dict[str, Any] | None = None,
    total_steps: int | None = None,
    depth: float = 1.0,
) -> float:
    """The calibrated default lr for ``optimizer`` on ``trainable`` parameters of ``adapter``, for a
    run of ``total_steps`` (None: the reference length); ``depth`` is ``depth_factor``'s weight."""
    if optimizer == "fo_adamw":
        return FIRST_ORDER_LR
    d = max(1.0, float(trainable) * depth)
    c = constant(optimizer, adapter)
    if optimizer in ADAPTIVE:
        lr = c / math.sqrt(d)
    else:
        lr = c / d
        if optimizer in MOMENTUM_OPTIMIZERS:
            mu = float((options or {}).get("momentum", 0.9))
            lr *= 1.0 - mu
    return float(f"{lr * horizon_factor(total_steps):.3g}")


def lr_rule_text(
    optimizer: str, adapter: str, trainable: int, total_steps: int | None = None, depth: float = 1.0
) -> str:
    """One line saying where a default lr came from (logged at run start)."""
    if optimizer == "fo_adamw":
        return f"lr {FIRST_ORDER_LR:g} (first-order default)"
    c = constant(optimizer, adapter)
    lr = default_lr(optimizer, adapter, trainable, total_steps=total_steps, depth=depth)
    factor = horizon_factor(total_steps)
    horizon = f" × √({REFERENCE_STEPS}/{total_steps} steps)" if factor < 1 else ""
    dim = f"d = {trainable:,}"
    if abs(depth - 1.0) > 1e-3:
        dim += f" weighted by depth ×{depth:.3g} (DEPTH_DECAY)"
    if optimizer in ADAPTIVE:
        return f"lr {lr:.3g} = {c:g}/√d{horizon} for {adapter} with {optimizer}, {dim}"
    extra = " × (1 − momentum)" if optimizer in MOMENTUM_OPTIMIZERS else ""
    return f"lr {lr:.3g} = {c:g}/d{extra}{horizon} for {adapter} with {optimizer}, {dim}"


def resolved_lr(cfg: Any, trainable: int, total_steps: int | None = None, depth: float = 1.0) -> float:
    """``cfg.optimizer.lr`` when the user set one, else the calibrated default for this d (weighted
    by ``depth``, see ``depth_factor``) and a run of ``total_steps`` (default ``cfg.run.steps``)."""
    if cfg.optimizer.lr is not None:
        return float(cfg.optimizer.lr)
    steps = cfg.run.steps if total_steps is None else total_steps
    return default_lr(cfg.optimizer.name, cfg.adapter.method, trainable, cfg.optimizer.options, steps, depth)
