"""Every adapter and every ZO optimizer at their calibrated defaults, one forward-pass budget.

Rows: each adapter (final-norm subset as reference, lora, lora_xs, sora, tt) with mezo_sgd, and each
ZO optimizer (mezo_sgd, zo_sgd_mmt, zo_sgd_sign, adazeta, zo_adamu, zo_adam) on ``--best-adapter``.
No row sets an lr: each uses the library's calibrated default (``zoengine.optim.calibration``), so
the table tests the defaults a user gets. Every row trains smollm2-135m-instruct on rotten-tomatoes
with the same split, through the real engine (``zoengine.engine.Run``), one subprocess per
(row, seed) so runs never share memory. Test accuracy is measured at half the budget and at the end
(the plot's points); the zero-shot test accuracy once.

Budget 600 forward passes (300 steps at Q = 1, batch 8): at 300 passes every adapter row had learned
(+10 to +14 points, ``bench/results/matrix_300/``) but LoRA was still climbing (0.668 → 0.723 from
150 to 300 passes) and the lr cannot be raised instead: LoRA at 2× its default went to 0.48 test
accuracy with test loss 2.9 (``matrix_superseded/lora-2x-lr-*``). The optimizer rows run on LoRA, the
best adapter row at 300 passes (TT 0.720 was flat from 150 to 300 passes) and the cheapest per step.
At 600 passes LoRA on the top 15 blocks (``lora-top15``) beat LoRA on all blocks (0.772 vs 0.734 mean
of 2 seeds) at 0.76× the step cost, so it is now ``--best-adapter``'s default: the optimizer rows run
on it.
Cost on this 2-core machine: about 7–9 minutes per run idle, 75 minutes per seed of the matrix.

Resumable: each (row, seed) writes ``bench/results/matrix_runs/<row>-s<seed>.json`` when it
finishes and a rerun skips what is there; ``bench/results/matrix.json`` is rebuilt from those files
after every run (rows with fewer seeds than asked are marked ``complete: false``).

    nice -n 19 python bench/bench_matrix.py                   # all rows, 2 seeds
    python bench/bench_matrix.py --rows tt:mezo_sgd --seeds 0  # one row
    python bench/bench_matrix.py --report                      # rebuild matrix.json + plot only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ADAPTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "final-norm": ("subset", {"targets": ["model.norm"]}),
    "lora": ("lora", {"r": 8}),
    "lora_xs": ("lora_xs", {"r": 8}),
    "sora": ("sora", {"r": 8}),
    "tt": ("tt", {}),
    # issue 13: adapters on the top half of the 30 blocks (the bottom 15 run once per batch)
    "lora-top15": ("lora", {"r": 8, "layers": "top:15"}),
    "tt-top15": ("tt", {"layers": "top:15"}),
}
EXTRA_ROWS = ("lora-top15:mezo_sgd", "tt-top15:mezo_sgd")  # adapter rows on the top half of the blocks
OPTIMIZERS = ("mezo_sgd", "zo_sgd_mmt", "zo_sgd_sign", "adazeta", "zo_adamu", "zo_adam")
RESULTS = Path(__file__).parent / "results"


def all_rows(best_adapter: str) -> list[str]:
    rows = [f"{a}:mezo_sgd" for a in ADAPTERS if f"{a}:mezo_sgd" not in EXTRA_ROWS]
    rows += [r for r in EXTRA_ROWS if r not in rows]  # the top-half rows: issue 13's comparison
    rows += [f"{best_adapter}:{o}" for o in OPTIMIZERS if o != "mezo_sgd"]
    return rows


def make_config(row: str, seed: int, args: argparse.Namespace) -> Any:
    from zoengine.config import RunConfig

    adapter_key, optimizer = row.split(":")
    method, options = ADAPTERS[adapter_key]
    cfg = RunConfig()
    cfg.model.name, cfg.task.name = args.model, args.task
    cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test, cfg.task.seed = args.n_train, 0, args.n_test, 42
    cfg.adapter.method = method
    for k, v in options.items():
        cfg.set(f"adapter.{k}", v)  # "layers" is a section field, the rest method options
    cfg.optimizer.name = optimizer
    cfg.run.batch_size = args.batch
    cfg.run.seed = seed
    cfg.run.eval_every = 0
    cfg.run.checkpoint_every = 0
    cfg.run.zero_shot_eval = False
    cfg.run.steps = steps_for_budget(cfg, args.budget)
    return cfg.validate()


def steps_for_budget(cfg: Any, budget: int) -> int:
    """Most steps whose training forward passes (2·Q per step) fit in ``budget``."""
    if cfg.optimizer.name != "adazeta":
        return max(1, budget // (2 * int(cfg.optimizer.options.get("q", 1))))
    from zoengine.optim.registry import parse_options
    from zoengine.optim.schedules import adazeta_beta, adazeta_query_count

    opts = parse_options("adazeta", dict(cfg.optimizer.options))
    spe = math.ceil(cfg.task.n_train / cfg.run.batch_size)
    best = 1
    for steps in range(1, budget // 2 + 1):
        beta = opts.beta if opts.beta is not None else adazeta_beta(opts.q_target, opts.alpha, steps / spe)
        passes = sum(
            2 * adazeta_query_count(k, spe, opts.alpha, beta, opts.q_max, opts.min_q) for k in range(steps)
        )
        if passes <= budget:
            best = steps
    return best


def run_one(row: str, seed: int, args: argparse.Namespace, out_file: Path) -> None:
    """Train one (row, seed) in this process and write its JSON (called in a subprocess)."""
    import tempfile

    import torch

    from zoengine.engine import Run
    from zoengine.events import StepLogged

    torch.set_num_threads(args.threads)
    cfg = make_config(row, seed, args)
    half = max(1, cfg.run.steps // 2)
    curve: list[dict[str, Any]] = []
    step_seconds: list[float] = []
    last_extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp) / "run")

        def on_event(ev: Any) -> None:
            if isinstance(ev, StepLogged):
                step_seconds.append(ev.seconds)
                last_extra.update(ev.extra)
                if ev.step == half:
                    loss, acc = run.objective.evaluate(run.task.test, cfg.run.eval_batch_size)
                    curve.append(
                        {
                            "step": ev.step,
                            "forward_passes": ev.forward_passes,
                            "test_acc": acc,
                            "test_loss": loss,
                        }
                    )

        run.subscribe(on_event)
        t0 = time.time()
        run.run()
        if run.status != "finished" or run.test_result is None:
            raise SystemExit(f"{row} seed {seed}: run ended {run.status}: {run.error}")
        curve.append(
            {
                "step": run.step,
                "forward_passes": run.forward_passes,
                "test_acc": run.test_result["accuracy"],
                "test_loss": run.test_result["loss"],
            }
        )
        result = {
            "row": row,
            "seed": seed,
            "adapter": cfg.adapter.method,
            "adapter_options": dict(cfg.adapter.options),
            "optimizer": cfg.optimizer.name,
            "lr": run.lr,
            "eps": cfg.optimizer.eps,
            "trainable": run.handle.num_trainable(),
            "steps": run.step,
            "forward_passes": run.forward_passes,
            "test_acc": run.test_result["accuracy"],
            "test_loss": run.test_result["loss"],
            "gate_sparsity": last_extra.get("gate_sparsity"),
            "seconds_per_step": statistics.median(step_seconds) if step_seconds else None,
            "wall_seconds": round(time.time() - t0, 1),
            "curve": curve,
        }
    tmp_out = out_file.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(out_file)


def zero_shot(args: argparse.Namespace) -> dict[str, Any]:
    """Test accuracy of the untouched model on the matrix's split (cached in matrix_runs/)."""
    path = RESULTS / "matrix_runs" / "zero-shot.json"
    if path.exists():
        return json.loads(path.read_text())
    import torch

    from zoengine.models import load_model
    from zoengine.objectives import Objective
    from zoengine.tasks import load_task

    torch.set_num_threads(args.threads)
    cfg = make_config("final-norm:mezo_sgd", 0, args)
    task = load_task(cfg.task)
    loaded = load_model(cfg.model, label_texts=task.label_words or task.label_names)
    loss, acc = Objective(loaded, task, cfg.model.max_length).evaluate(task.test, cfg.run.eval_batch_size)
    data = {"test_acc": acc, "test_loss": loss, "n_test": len(task.test)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def report(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Aggregate the per-seed files into matrix.json (and a PNG plot when matplotlib is there)."""
    runs_dir = RESULTS / "matrix_runs"
    zs = (
        json.loads((runs_dir / "zero-shot.json").read_text())
        if (runs_dir / "zero-shot.json").exists()
        else {}
    )
    rows_out = []
    for row in args.row_list:
        per_seed = [
            json.loads(p.read_text())
            for s in args.seed_list
            if (p := runs_dir / f"{row.replace(':', '-')}-s{s}.json").exists()
        ]
        if not per_seed:
            continue
        accs = [r["test_acc"] for r in per_seed]
        first = per_seed[0]
        curve = []
        for i, point in enumerate(first["curve"]):
            vals = [r["curve"][i]["test_acc"] for r in per_seed if len(r["curve"]) > i]
            curve.append({"forward_passes": point["forward_passes"], "test_acc_mean": statistics.mean(vals)})
        sparsity = [r["gate_sparsity"] for r in per_seed if r.get("gate_sparsity") is not None]
        rows_out.append(
            {
                "row": row,
                "adapter": first["adapter"],
                "adapter_options": first["adapter_options"],
                "optimizer": first["optimizer"],
                "lr": first["lr"],
                "eps": first["eps"],
                "trainable": first["trainable"],
                "steps": first["steps"],
                "forward_passes": first["forward_passes"],
                "seeds": [r["seed"] for r in per_seed],
                "complete": len(per_seed) == len(args.seed_list),
                "zero_shot_test_acc": zs.get("test_acc"),
                "test_acc_mean": statistics.mean(accs),
                "test_acc_min": min(accs),
                "test_loss_mean": statistics.mean(r["test_loss"] for r in per_seed),
                "gate_sparsity": statistics.mean(sparsity) if sparsity else None,
                "seconds_per_step": statistics.median(r["seconds_per_step"] for r in per_seed),
                "curve": curve,
            }
        )
    meta = {
        "model": args.model,
        "task": args.task,
        "split": {"n_train": args.n_train, "n_test": args.n_test, "seed": 42},
        "batch_size": args.batch,
        "budget_forward_passes": args.budget,
        "zero_shot": zs,
        "threads": args.threads,
    }
    out = RESULTS / "matrix.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows_out}, indent=1) + "\n")
    plot(rows_out, zs.get("test_acc"))
    return rows_out


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table: one line per row, the target columns first."""
    lines = [
        "| adapter | optimizer | lr (calibrated) | trainable | steps | forward passes | seeds "
        "| test acc mean (min) | vs zero-shot | test loss | gate sparsity | s/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        zs = r["zero_shot_test_acc"]
        delta = f"{100 * (r['test_acc_mean'] - zs):+.1f} pts" if zs is not None else "—"
        sparsity = f"{r['gate_sparsity']:.2f}" if r["gate_sparsity"] is not None else "—"
        seeds = ",".join(str(s) for s in r["seeds"]) + ("" if r["complete"] else " (partial)")
        lines.append(
            f"| {r['row'].split(':')[0]} | {r['optimizer']} | {r['lr']:.3g} | {r['trainable']:,} | {r['steps']} "
            f"| {r['forward_passes']} | {seeds} | **{r['test_acc_mean']:.3f}** ({r['test_acc_min']:.3f}) "
            f"| {delta} | {r['test_loss_mean']:.3f} | {sparsity} | {r['seconds_per_step']:.2f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], zero_shot_acc: float | None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.get_cmap("tab20").colors  # the 10 dark shades, then the light ones (12 rows)
    for i, r in enumerate(rows):
        xs = [0] + [p["forward_passes"] for p in r["curve"]]
        ys = [zero_shot_acc if zero_shot_acc is not None else math.nan] + [
            p["test_acc_mean"] for p in r["curve"]
        ]
        adapter_row = r["row"].endswith(":mezo_sgd")  # adapter rows solid, optimizer rows dashed
        ax.plot(xs, ys, marker="o", ls="-" if adapter_row else "--", color=colors[2 * (i % 10) + i // 10], label=r["row"])
    if zero_shot_acc is not None:
        ax.axhline(zero_shot_acc, color="grey", ls=":", lw=1, label="zero-shot")
    ax.set_xlabel("training forward passes")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("smollm2-135m-instruct, rotten-tomatoes, calibrated defaults")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(RESULTS / "matrix.png", dpi=110)
    plt.close(fig)


def main() -> None:
    global RESULTS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=None, help="adapter:optimizer,... (default: the whole matrix)")
    ap.add_argument("--best-adapter", default="lora-top15", choices=list(ADAPTERS))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="rotten-tomatoes")
    ap.add_argument("--n-train", type=int, default=256)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--budget", type=int, default=600, help="training forward passes per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", action="store_true", help="only rebuild matrix.json and the plot")
    ap.add_argument("--results", default=str(RESULTS), help="output folder (default bench/results)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: ROW:SEED:OUT
    args = ap.parse_args()
    RESULTS = Path(args.results)
    args.row_list = args.rows.split(",") if args.rows else all_rows(args.best_adapter)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    if args.one:
        row, seed, out = args.one.rsplit(":", 2)
        run_one(row, int(seed), args, Path(out))
        return
    if args.report:
        rows = report(args)
        print(markdown(rows))
        return
    runs_dir = RESULTS / "matrix_runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    zs = zero_shot(args)
    print(f"zero-shot test accuracy {zs['test_acc']:.4f}", flush=True)
    passthrough = [
        "--model",
        args.model,
        "--task",
        args.task,
        "--n-train",
        str(args.n_train),
        "--n-test",
        str(args.n_test),
        "--batch",
        str(args.batch),
        "--budget",
        str(args.budget),
        "--threads",
        str(args.threads),
    ]
    for seed in args.seed_list:  # seed-major: every row gets one seed before any gets two
        for row in args.row_list:
            out = runs_dir / f"{row.replace(':', '-')}-s{seed}.json"
            if out.exists():
                continue
            t0 = time.time()
            proc = subprocess.run(
                [sys.executable, __file__, *passthrough, "--one", f"{row}:{seed}:{out}"],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "TQDM_DISABLE": "1"},
            )
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
                print(f"{row} seed {seed}: FAILED: {tail}", flush=True)
                continue
            res = json.loads(out.read_text())
            print(
                f"{row} seed {seed}: lr {res['lr']:.3g}, test acc {res['test_acc']:.4f}, "
                f"{res['steps']} steps, {time.time() - t0:.0f} s",
                flush=True,
            )
            report(args)
    report(args)


if __name__ == "__main__":
    main()
