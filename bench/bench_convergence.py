"""Convergence table: held-out accuracy and loss vs forward passes, every method, one budget.

Each method trains ``smollm2-135m-instruct`` on ``rotten-tomatoes`` (prompt "{text} It was
great/terrible") through the real engine (``zoengine train``, one subprocess per method so runs do
not share memory), with the same number of *training forward passes*: for Q=1 methods that is
``budget / 2`` steps; AdaZeta's schedule is walked to find how many steps fit in the budget.
The dev set is evaluated at about a third, two thirds and the end of the budget; the test set
(held out, never used for selection) at the end.

    python bench/bench_convergence.py                           # all methods, budget 200 passes
    python bench/bench_convergence.py --methods mezo-lora,lora-xs --budget 160 --batch 8

Prints one JSON object; ``--out DIR`` keeps the run directories (default: a temp dir).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# name -> (adapter method, adapter options, optimizer, lr, eps, optimizer options)
# Learning rates are set for a short CPU budget (a few hundred forward passes), not the papers'
# 10k-20k steps: ZO with a tiny trainable set tolerates (and needs) a much larger lr.
METHODS: dict[str, tuple[str, dict[str, Any], str, float, float, dict[str, Any]]] = {
    "mezo-full": ("full", {}, "mezo_sgd", 2e-6, 1e-3, {}),
    "mezo-final-norm": ("subset", {"targets": ["model.norm"]}, "mezo_sgd", 5e-3, 1e-3, {}),
    "mezo-lora": ("lora", {"r": 8}, "mezo_sgd", 2e-4, 1e-2, {}),
    "lora-xs": ("lora_xs", {"r": 8}, "mezo_sgd", 1e-4, 1e-3, {}),
    "sora": ("sora", {"r": 8, "lambda": 10.0}, "mezo_sgd", 2e-4, 1e-2, {}),
    "tt-adazeta": ("tt", {}, "adazeta", 1e-3, 1e-3, {}),
    "zo-adamu-lora": ("lora", {"r": 8}, "zo_adamu", 2e-4, 1e-2, {}),
    "zo-adam-lora": ("lora", {"r": 8}, "zo_adam", 1e-4, 1e-2, {}),
}


def steps_for_budget(optimizer: str, opts: dict[str, Any], budget: int, steps_per_epoch: int) -> int:
    """Most steps whose training forward passes (2·Q per step) fit in ``budget``."""
    if optimizer != "adazeta":
        return max(1, budget // (2 * int(opts.get("q", 1))))
    from zoengine.optim.schedules import adazeta_beta, adazeta_query_count

    alpha = float(opts.get("alpha", 0.85))
    q_target, q_max = float(opts.get("q_target", 20)), int(opts.get("q_max", 15))
    best = 1
    for steps in range(1, budget // 2 + 1):
        beta = opts.get("beta")
        if beta is None:
            beta = adazeta_beta(q_target, alpha, steps / steps_per_epoch)
        passes = sum(2 * adazeta_query_count(k, steps_per_epoch, alpha, beta, q_max) for k in range(steps))
        if passes <= budget:
            best = steps
    return best


def run_method(name: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    adapter, a_opts, optimizer, lr, eps, o_opts = METHODS[name]
    steps_per_epoch = math.ceil(args.n_train / args.batch)
    steps = steps_for_budget(optimizer, o_opts, args.budget, steps_per_epoch)
    run_dir = out / name
    sets = {
        "task.n_train": args.n_train,
        "task.n_dev": args.n_dev,
        "task.n_test": args.n_test,
        "adapter.method": adapter,
        "optimizer.name": optimizer,
        "optimizer.lr": lr,
        "optimizer.eps": eps,
        "run.steps": steps,
        "run.batch_size": args.batch,
        "run.eval_every": max(1, math.ceil(steps / 3)),
        "run.checkpoint_every": 0,
        "run.zero_shot_eval": "false",
        "run.seed": args.seed,
    }
    sets.update({f"adapter.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in a_opts.items()})
    sets.update({f"optimizer.{k}": v for k, v in o_opts.items()})
    argv = [sys.executable, "-m", "zoengine.cli", "train", "--quiet", "--output", str(run_dir)]
    argv += ["--model", args.model, "--task", args.task]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    t0 = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.time() - t0
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit {proc.returncode}", "steps": steps}
    return summarize(run_dir, steps, wall) | {
        "adapter": adapter,
        "adapter_options": a_opts,
        "optimizer": optimizer,
        "lr": lr,
        "eps": eps,
    }


def summarize(run_dir: Path, steps: int, wall: float) -> dict[str, Any]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    step_rows = [r for r in records if r["event"] == "step"]
    passes_at = {r["step"]: r["forward_passes"] for r in step_rows}
    info = next(r for r in records if r["event"] == "info")
    curve = [
        {
            "step": r["step"],
            "forward_passes": passes_at.get(r["step"], 0),
            "dev_loss": round(r["loss"], 4),
            "dev_accuracy": r["accuracy"],
        }
        for r in records
        if r["event"] == "eval" and r["split"] == "dev"
    ]
    test = next((r for r in records if r["event"] == "eval" and r["split"] == "test"), None)
    k = max(1, len(step_rows) // 5)
    return {
        "steps": steps,
        "forward_passes": step_rows[-1]["forward_passes"] if step_rows else 0,
        "trainable_params": info["trainable_params"],
        "train_loss_first_fifth": round(sum(r["loss"] for r in step_rows[:k]) / k, 4),
        "train_loss_last_fifth": round(sum(r["loss"] for r in step_rows[-k:]) / k, 4),
        "dev_curve": curve,
        "test_accuracy": test["accuracy"] if test else None,
        "test_loss": round(test["loss"], 4) if test else None,
        "last_step_state": step_rows[-1].get("extra", {}) if step_rows else {},
        "seconds_per_step": round(sum(r["seconds"] for r in step_rows) / max(1, len(step_rows)), 3),
        "wall_s": round(wall, 1),
    }


def zero_shot(args: argparse.Namespace) -> dict[str, Any]:
    """Zero-shot dev and test accuracy of the base model on the same split."""
    from zoengine.config import RunConfig
    from zoengine.evaluation import evaluate

    cfg = RunConfig()
    cfg.set("model.name", args.model)
    cfg.set("task.name", args.task)
    for k in ("n_train", "n_dev", "n_test"):
        cfg.set(f"task.{k}", getattr(args, k))
    return {split: evaluate(cfg, split=split) for split in ("dev", "test")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--budget", type=int, default=200, help="training forward passes per method")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--task", default="rotten-tomatoes")
    p.add_argument("--n-train", dest="n_train", type=int, default=256)
    p.add_argument("--n-dev", dest="n_dev", type=int, default=100)
    p.add_argument("--n-test", dest="n_test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="keep run directories here")
    p.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot baseline")
    args = p.parse_args(argv)
    names = [m for m in args.methods.split(",") if m]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        print(
            f"error: --methods: unknown {', '.join(unknown)}; allowed: {', '.join(METHODS)}", file=sys.stderr
        )
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="zo-conv-"))
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "model": args.model,
        "task": args.task,
        "budget_forward_passes": args.budget,
        "batch": args.batch,
        "split": {"n_train": args.n_train, "n_dev": args.n_dev, "n_test": args.n_test},
        "zero_shot": None if args.no_zero_shot else zero_shot(args),
        "methods": {},
    }
    print(f"zero-shot: {json.dumps(report['zero_shot'])}", file=sys.stderr, flush=True)
    for name in names:
        report["methods"][name] = res = run_method(name, args, out)
        print(
            f"{name}: {json.dumps({k: v for k, v in res.items() if k != 'dev_curve'})}",
            file=sys.stderr,
            flush=True,
        )
    report["run_dirs"] = str(out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
