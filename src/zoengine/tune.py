"""Learning-rate tuner: short runs over a log-spaced lr grid on the same batches, pick by dev-loss
decrease per forward pass.

    result = tune(cfg, steps=20)            # or: zoengine tune --config run.toml --write tuned.toml
    cfg.optimizer.lr = result.lr

Why this shape: a ZO step's usefulness depends on lr·tr(H), which no paper's preset knows for the
user's model, adapter and batch size. Every candidate starts from the same adapter init, sees the
same batches and — through the optimizer's seeded generator — the same perturbation directions
(common random numbers), so the candidates differ only in lr (and ε). Each is scored on the same
held-out examples with a paired test: the decrease of the per-example loss must exceed
``min_z`` standard errors and 0.5 % of the loss (or the paired accuracy gain ``min_z`` standard
errors), otherwise the budget is too small to tell candidates apart and the tuner
refuses instead of picking noise. A candidate whose training loss goes non-finite or above
``diverge_factor`` × its first loss, or whose weights overflow, is marked diverged and never chosen.

When the grid comes from the lr rule (no explicit ``lrs``) and its largest lr is still the best with
nothing diverged, the sweep walks on upwards (up to ``max_extend`` more candidates): the rule's
constant was measured on one model, a user's may tolerate more.

The sweep's pick is not the lr to train with: a few-step sweep rewards steps that a long run does
not survive (short-horizon bias; measured: TT at half its 16-step pick over-corrected a 150-step run
from 0.58 to 0.475 test accuracy, a fifth of it learned to 0.72). For T steps of noisy SGD the best
constant step scales as 1/√T, so the lr written into a config is
``lr_for(run_steps) = pick · min(1, √(sweep_steps / run_steps))``; the pick is kept and shown.

Results are cached per (model, task, adapter, optimizer, batch size) under the user cache so the
app can offer "use tuned lr" without rerunning.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoengine.config import RunConfig
from zoengine.errors import ConfigError, ZOError

__all__ = ["Candidate", "TuneResult", "cache_key", "cached_result", "lr_grid", "tune"]


class TuneError(ZOError):
    """The sweep cannot pick a candidate (budget too small, everything diverged)."""


@dataclass
class Candidate:
    lr: float
    eps: float
    train_losses: list[float] = field(default_factory=list)
    dev_loss_before: float = math.nan
    dev_loss_after: float = math.nan
    decrease: float = math.nan  # mean paired per-example dev-loss decrease
    stderr: float = math.nan  # its standard error
    accuracy_gain: float = math.nan  # mean paired per-example dev-accuracy gain
    accuracy_stderr: float = math.nan
    forward_passes: int = 0
    diverged: bool = False
    seconds: float = 0.0

    @property
    def z_score(self) -> float:
        return self.decrease / self.stderr if self.stderr > 0 else 0.0

    @property
    def accuracy_z(self) -> float:
        return self.accuracy_gain / self.accuracy_stderr if self.accuracy_stderr > 0 else 0.0

    @property
    def decrease_per_pass(self) -> float:
        return self.decrease / self.forward_passes if self.forward_passes else math.nan


@dataclass
class TuneResult:
    key: str
    lr: float
    eps: float
    chosen: int  # index into candidates
    steps: int
    batch_size: int
    dev_examples: int
    candidates: list[Candidate]
    trainable: int
    default_lr: float
    seconds: float
    notes: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    def horizon_factor(self, run_steps: int) -> float:
        """``min(1, √(sweep steps / run steps))``: the 1/√T discount of the sweep's pick."""
        from zoengine.optim.calibration import horizon_factor

        return horizon_factor(int(run_steps), reference=max(1, self.steps))

    def lr_for(self, run_steps: int) -> float:
        """The lr to train ``run_steps`` steps with: the pick discounted for the longer horizon."""
        return float(f"{self.lr * self.horizon_factor(run_steps):.3g}")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TuneResult:
        cands = [Candidate(**c) for c in d.get("candidates", [])]
        return cls(**{**d, "candidates": cands})


Progress = Callable[[int, Candidate, int], None]
"""``progress(candidate_index, candidate, step)``: called after each training step of a candidate
(step >= 1) and once more with step 0 when a candidate starts; keep it cheap."""


def lr_grid(center: float, n: int = 5, spacing: float = math.sqrt(10.0)) -> list[float]:
    """``n`` log-spaced learning rates around ``center`` (factor ``spacing`` apart), ascending."""
    if n < 1:
        raise ConfigError(f"must be >= 1 (got {n})", field="tune.candidates")
    lo = -(n - 1) / 2
    return [float(f"{center * spacing ** (lo + i):.3g}") for i in range(n)]


def cache_key(cfg: RunConfig) -> str:
    """What a tuned lr depends on: model, task (and its data), adapter (method, targets, the blocks of
    ``adapter.layers``, options), optimizer method, batch. ``run.share_prefix`` is not in it: sharing
    the frozen prefix gives the same losses."""
    import dataclasses

    from zoengine.adapters import get_method
    from zoengine.optim.registry import parse_options

    # resolved options (defaults filled in), so an option given at its default value keys the same
    adapter_opts = {
        k: v
        for k, v in get_method(cfg.adapter.method).resolve_options(cfg.adapter).items()
        if not k.startswith("_")
    }
    optimizer_opts = dataclasses.asdict(parse_options(cfg.optimizer.name, dict(cfg.optimizer.options)))
    adapter: list[Any] = [cfg.adapter.method, cfg.adapter.targets, sorted(adapter_opts.items())]
    layers = "".join(str(cfg.adapter.layers or "").lower().split())
    if layers not in ("", "all"):  # other blocks train: another trainable set (all blocks keys as before)
        adapter.append({"layers": layers})
    parts = {
        "model": cfg.model.name,
        "max_length": cfg.model.max_length,
        "task": [cfg.task.name, cfg.task.path, cfg.task.template, cfg.task.label_words],
        "adapter": adapter,
        "optimizer": [cfg.optimizer.name, sorted(optimizer_opts.items())],
        "batch_size": cfg.run.batch_size,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cache_path(key: str) -> Path:
    from zoengine.paths import cache_dir

    return cache_dir() / "tune" / f"{key}.json"


def cached_result(cfg: RunConfig) -> TuneResult | None:
    """The cached sweep for this config's (model, task, adapter, optimizer, batch), if any and valid."""
    path = _cache_path(cache_key(cfg))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        result = TuneResult.from_json(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or unreadable: the cache is a convenience, never an error
    if not (math.isfinite(result.lr) and result.lr > 0):
        return None
    return result


def _save_cache(result: TuneResult) -> None:
    from zoengine.io import atomic_write_json

    try:
        atomic_write_json(_cache_path(result.key), result.to_json())
    except OSError:
        pass


def tune(
    cfg: RunConfig,
    *,
    steps: int = 20,
    lrs: list[float] | None = None,
    n_candidates: int = 5,
    eps_values: list[float] | None = None,
    dev_examples: int = 96,
    min_z: float = 2.0,
    min_relative_decrease: float = 0.005,
    diverge_factor: float = 3.0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    use_cache: bool = True,
    max_extend: int = 3,
) -> TuneResult:
    """Sweep lr (× ε when ``eps_values`` is given) and return the best candidate; see module doc."""
    from zoengine.adapters import apply_adapter
    from zoengine.engine import batch_indices
    from zoengine.models import load_model
    from zoengine.objectives import Objective
    from zoengine.optim import build_optimizer, resolved_lr
    from zoengine.optim.calibration import depth_factor
    from zoengine.tasks import load_task

    cfg = cfg.copy()
    cfg.validate()
    if steps < 2:
        raise ConfigError(f"must be >= 2 (got {steps})", field="tune.steps")
    if dev_examples < 8:
        raise ConfigError(f"must be >= 8 (got {dev_examples})", field="tune.dev_examples")
    if cfg.optimizer.name == "fo_adamw":
        raise ConfigError("the tuner sweeps zeroth-order optimizers only", field="optimizer.name")
    t_start = time.time()
    task = load_task(cfg.task)
    if not task.train:
        raise ConfigError("the training split is empty", field="task.n_train")
    # held-out examples: dev if present, else the test split (never the tuning batches)
    held = (task.dev or task.test)[:dev_examples]
    if len(held) < 8:
        raise TuneError(
            f"needs at least 8 dev examples to score candidates (has {len(held)})", field="task.n_dev"
        )
    loaded = load_model(cfg.model, label_texts=task.label_words or task.label_names)
    objective = Objective(loaded, task, cfg.model.max_length)
    torch.manual_seed(cfg.run.seed)
    handle = apply_adapter(loaded.model, cfg.adapter, seed=cfg.run.seed)
    handle.set_run_length(cfg.run.steps)
    objective.share_prefix(cfg.run.share_prefix)
    init_state = handle.trainable_state_dict()
    trainable = handle.num_trainable()
    depth = depth_factor(cfg.adapter.method, handle.block_positions())
    default_lr = resolved_lr(cfg, trainable, depth=depth)  # the run's default (for its length), shown with the result
    grid_from_rule = lrs is None
    if lrs is None:  # centred on the default for the sweep's own length; the pick is discounted later
        lrs = lr_grid(resolved_lr(cfg, trainable, total_steps=steps, depth=depth), n_candidates)
    eps_list = list(eps_values) if eps_values else [float(cfg.optimizer.eps)]
    for lr in lrs:
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"learning rates must be finite and > 0 (got {lr})", field="tune.lrs")
    eval_bs = cfg.run.eval_batch_size
    before, correct_before = objective.example_losses(held, eval_bs)
    steps_per_epoch = math.ceil(len(task.train) / cfg.run.batch_size)
    batches = [
        objective.make_batch(
            [task.train[i] for i in batch_indices(s, len(task.train), cfg.run.batch_size, cfg.run.seed)]
        )
        for s in range(steps)
    ]
    candidates: list[Candidate] = []

    def run_candidate(lr: float, eps: float) -> Candidate:
        cand = Candidate(lr=float(lr), eps=float(eps), dev_loss_before=float(before.mean()))
        candidates.append(cand)
        idx = len(candidates) - 1
        t0 = time.time()
        handle.load_trainable_state_dict(init_state)
        ocfg = cfg.optimizer
        ocfg.lr, ocfg.eps = float(lr), float(eps)
        opt = build_optimizer(
            ocfg,
            handle.param_groups(ocfg.weight_decay),
            seed=cfg.run.seed,
            total_steps=cfg.run.steps,
            steps_per_epoch=steps_per_epoch,
        )
        if progress:
            progress(idx, cand, 0)
        for step, batch in enumerate(batches, start=1):
            if should_stop is not None and should_stop():
                raise TuneError("stopped by the user", field="tune")
            with torch.no_grad():
                # pinned: every candidate replays the same batches, so their shared prefix runs once
                loss = float(opt.step(lambda b=batch: objective.loss(b, pin=True)))
            stats = opt.last_stats
            cand.forward_passes += int(stats.get("forward_passes", 2 * int(stats.get("queries", 1))))
            handle.after_step(step, float(stats.get("lr", lr)))
            cand.train_losses.append(loss)
            first = cand.train_losses[0]
            if not math.isfinite(loss) or (math.isfinite(first) and loss > diverge_factor * max(first, 1e-6)):
                cand.diverged = True
            elif not all(bool(torch.isfinite(p).all()) for _, p in handle.named_trainable()):
                cand.diverged = True  # weights overflowed although the loss saturated
            if progress:
                progress(idx, cand, step)
            if cand.diverged:
                break
        if not cand.diverged:
            after, correct_after = objective.example_losses(held, eval_bs)
            diff = before - after
            gain = correct_after - correct_before
            cand.accuracy_gain = float(gain.mean())
            cand.accuracy_stderr = float(gain.std(unbiased=True) / math.sqrt(len(gain)))
            cand.dev_loss_after = float(after.mean())
            if not math.isfinite(cand.dev_loss_after):
                cand.diverged = True
            else:
                cand.decrease = float(diff.mean())
                cand.stderr = float(diff.std(unbiased=True) / math.sqrt(len(diff)))
        cand.seconds = time.time() - t0
        return cand

    for lr in sorted(lrs):
        for eps in eps_list:
            run_candidate(lr, eps)
    # a grid chosen by the rule (not by the user) walks on upwards while the largest lr is still the
    # best and nothing has diverged: the rule's constant is per adapter kind, a user's model may differ
    if grid_from_rule:
        grid = sorted(lrs)
        spacing = grid[-1] / grid[-2] if len(grid) > 1 else math.sqrt(10.0)
        for _ in range(max_extend):
            finite = [c for c in candidates if not c.diverged and math.isfinite(c.decrease)]
            if any(c.diverged for c in candidates) or not finite:
                break
            best = max(finite, key=lambda c: c.decrease)
            if best.lr < max(c.lr for c in candidates):
                break
            next_lr = float(f"{best.lr * spacing:.3g}")
            for eps in eps_list:
                run_candidate(next_lr, eps)
    handle.load_trainable_state_dict(init_state)
    try:
        result = _choose(
            cfg, candidates, min_z=min_z, min_decrease=min_relative_decrease * float(before.mean())
        )
    except TuneError as exc:
        exc.candidates = candidates  # type: ignore[attr-defined]
        raise
    result.steps, result.batch_size, result.dev_examples = steps, cfg.run.batch_size, len(held)
    result.trainable, result.default_lr = trainable, default_lr
    result.seconds = time.time() - t_start
    if use_cache:
        _save_cache(result)
    return result


def _choose(cfg: RunConfig, candidates: list[Candidate], *, min_z: float, min_decrease: float) -> TuneResult:
    """Best dev-loss decrease per forward pass among non-diverged, significant candidates: the loss
    decrease is at least ``min_z`` standard errors on the paired test *and* ``min_decrease`` (a tiny
    lr can be significant and useless), or the paired accuracy gain is ``min_z`` standard errors
    (a shift of a wrong prior moves accuracy a lot and the mean loss little: the per-example losses
    of the two classes move in opposite directions)."""
    ok = [
        i
        for i, c in enumerate(candidates)
        if not c.diverged
        and ((c.z_score >= min_z and c.decrease >= min_decrease) or c.accuracy_z >= min_z)
    ]
    if not ok:
        usable = [c for c in candidates if not c.diverged]
        if not usable:
            raise TuneError(
                "every candidate diverged; lower the grid (e.g. --center with a smaller lr)", field="tune.lrs"
            )
        best = max(usable, key=lambda c: c.z_score)
        raise TuneError(
            f"budget too small to distinguish candidates: the best dev-loss decrease is "
            f"{best.decrease:+.4f} ± {best.stderr:.4f} (needs {min_z:g} standard errors and at least "
            f"{min_decrease:.4f}); "
            "raise --steps or --dev-examples",
            field="tune.steps",
        )
    chosen = max(ok, key=lambda i: candidates[i].decrease_per_pass)
    notes = []
    lrs = sorted({c.lr for c in candidates})
    c = candidates[chosen]
    if len(lrs) > 1 and c.lr == lrs[-1]:
        notes.append("the chosen lr is the largest in the grid; a larger one might learn faster")
    if len(lrs) > 1 and c.lr == lrs[0]:
        notes.append("the chosen lr is the smallest in the grid; larger ones diverged or did not help")
    return TuneResult(
        key=cache_key(cfg),
        lr=c.lr,
        eps=c.eps,
        chosen=chosen,
        steps=0,
        batch_size=0,
        dev_examples=0,
        candidates=candidates,
        trainable=0,
        default_lr=math.nan,
        seconds=0.0,
        notes=notes,
    )


def apply_result(cfg: RunConfig, result: TuneResult) -> RunConfig:
    """A copy of ``cfg`` with the tuned ε and the pick discounted for ``cfg.run.steps``."""
    out = cfg.copy()
    out.optimizer.lr = result.lr_for(cfg.run.steps)
    out.optimizer.eps = result.eps
    return out


def plot_text(result: TuneResult, width: int = 72, height: int = 16) -> str:
    """The candidates' training-loss curves as a plotext text plot (one line per candidate)."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    for c in result.candidates:
        if c.train_losses:
            finite = [x if math.isfinite(x) else float("nan") for x in c.train_losses]
            plt.plot(
                list(range(1, len(finite) + 1)),
                finite,
                label=f"lr {c.lr:.3g}{' (div)' if c.diverged else ''}",
            )
    plt.title("training loss per candidate (same batches, same perturbations)")
    plt.xlabel("step")
    return str(plt.build())


def format_table(result: TuneResult) -> str:
    """The sweep as a text table (one row per candidate, the chosen one marked)."""
    rows = [
        "     lr        eps      dev loss before → after   decrease ± se      z   acc gain ± se   passes  status"
    ]
    for i, c in enumerate(result.candidates):
        mark = "*" if i == result.chosen else " "
        status = "diverged" if c.diverged else ("chosen" if i == result.chosen else "")
        rows.append(
            f"{mark} {c.lr:<9.3g} {c.eps:<8.2g} {c.dev_loss_before:8.4f} → {c.dev_loss_after:8.4f}"
            f"   {c.decrease:+.4f} ± {c.stderr:.4f} {c.z_score:6.1f}   {c.accuracy_gain:+.3f} ± {c.accuracy_stderr:.3f}"
            f" {c.forward_passes:7d}  {status}"
        )
    return "\n".join(rows)
