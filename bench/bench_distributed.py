"""1 process with 2 threads vs 2 processes (gloo) with 1 thread each, on CPU: s/step and bytes/step.

Four runs of the real engine (``zoengine train``; ``--nproc 2`` starts torchrun), each on the same
config but for its parallel layout:

    dp-1proc-2threads    mezo_sgd, q = 1, one process, 2 threads
    dp-2proc-1thread     the same, data-parallel: each rank takes half of the batch
    qp-1proc-2threads    mezo_sgd, q = 8, one process, 2 threads
    qp-2proc-1thread     the same, query-parallel: each rank evaluates 4 of the 8 queries

A row's ``s_per_step`` is the median wall time between consecutive step events of the run (the
whole step: batch, forwards, exchange, update), after ``--warmup`` untimed steps; ``opt_step_s`` is
the median time inside the optimizer step; ``comm_bytes_per_step`` is what rank 0 put into the
step's collectives (from ``metrics.jsonl``; 0 for one process). No evaluation, no checkpoint until
the run's end (not timed). The summary gives each layout's 2-process throughput over the
1-process-2-thread one (the issue's target for query-parallel: >= 0.9 where the cores are the limit).

Resumable: each configuration writes its row into ``bench/results/distributed.json`` as it finishes
and a rerun skips rows measured with the same settings (``--force`` redoes them).

    nice -n 5 python bench/bench_distributed.py                       # smollm2-135m-instruct, rotten-tomatoes
    python bench/bench_distributed.py --model /path/to/model --steps 3 --set task.n_train=64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

# name -> (parallel mode, optimizer options, processes, threads per process)
CONFIGS: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "dp-1proc-2threads": ("data", {"q": 1}, 1, 2),
    "dp-2proc-1thread": ("data", {"q": 1}, 2, 1),
    "qp-1proc-2threads": ("query", {"q": 8}, 1, 2),
    "qp-2proc-1thread": ("query", {"q": 8}, 2, 1),
}


def build_config(args: argparse.Namespace, name: str, run_dir: Path) -> Any:
    from zoengine.config import RunConfig

    mode, options, _, _ = CONFIGS[name]
    cfg = RunConfig()
    values: dict[str, Any] = {
        "model.name": args.model,
        "model.device": "cpu",  # gloo on CPU: the comparison this benchmark is about
        "task.name": args.task,
        "task.n_train": args.batch * (args.steps + args.warmup),  # each step a fresh batch
        "task.n_dev": 0,
        "task.n_test": 0,
        "adapter.method": args.adapter,
        "optimizer.name": "mezo_sgd",
        "run.steps": args.steps + args.warmup,
        "run.batch_size": args.batch,
        "run.eval_every": 0,
        "run.zero_shot_eval": False,
        "run.checkpoint_every": 0,
        "run.checkpoint_minutes": 0,
        "run.divergence_factor": 0,  # a benchmark measures time, it does not judge losses
        "run.parallel": mode,
        "run.output_dir": str(run_dir),
    }
    values.update({f"optimizer.{k}": v for k, v in options.items()})
    for k, v in values.items():
        cfg.set(k, v)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item}: expected section.key=value")
        cfg.set(key.strip(), value.strip())
    return cfg.validate()


def measure(args: argparse.Namespace, name: str) -> dict[str, Any]:
    from zoengine.io import read_jsonl

    _, _, nproc, threads = CONFIGS[name]
    with tempfile.TemporaryDirectory(prefix=f"zo-bench-{name}-") as tmp:
        run_dir = Path(tmp) / "run"
        cfg = build_config(args, name, run_dir)
        toml = Path(tmp) / "run.toml"
        toml.write_text(cfg.to_toml())
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "zoengine", "train", "--config", str(toml), "--quiet"]
        if nproc > 1:
            cmd += ["--nproc", str(nproc)]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{name}: `{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        records = read_jsonl(run_dir / "metrics.jsonl")
    steps = [r for r in records if r["event"] == "step"]
    info = next((r for r in records if r["event"] == "info"), {})
    if len(steps) != cfg.run.steps:
        raise SystemExit(f"{name}: {len(steps)} step records, expected {cfg.run.steps}")
    timed = steps[args.warmup :]
    # wall time per step: from the previous step's event (the warm-up's last one) to this one
    gaps = [b["time"] - a["time"] for a, b in zip(steps[args.warmup - 1 :], timed, strict=False)]
    if args.warmup == 0:
        gaps = [r["seconds"] for r in timed]  # nothing before the first step to measure from
    comm = [int(r.get("extra", {}).get("comm_bytes", 0)) for r in timed]
    return {
        "name": name,
        "parallel": CONFIGS[name][0],
        "processes": nproc,
        "threads_per_process": threads,
        "q": CONFIGS[name][1]["q"],
        "timed_steps": len(timed),
        "s_per_step": statistics.median(gaps),
        "s_per_step_mean": statistics.fmean(gaps),
        "opt_step_s": statistics.median(r["seconds"] for r in timed),
        "comm_bytes_per_step": statistics.median(comm),
        "comm_bytes_per_step_all": sorted(set(comm)),
        "queries_per_step": statistics.median(r["queries"] for r in timed),
        "total_params": info.get("total_params"),
        "trainable_params": info.get("trainable_params"),
        "wall_s": round(wall, 1),
    }


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layout in ("dp", "qp"):
        one, two = rows.get(f"{layout}-1proc-2threads"), rows.get(f"{layout}-2proc-1thread")
        if one and two:
            out[layout] = {
                # > 1: two 1-thread processes beat one 2-thread process on the same two cores
                "throughput_2proc_over_1proc": round(one["s_per_step"] / two["s_per_step"], 3),
                "comm_bytes_per_step": two["comm_bytes_per_step"],
                "comm_bytes_per_query": round(two["comm_bytes_per_step"] / max(1, two["q"]), 1),
            }
    return out


def save(path: Path, data: dict[str, Any]) -> None:
    data["summary"] = summarize(data["rows"])
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="zoo name, hub id or local model dir")
    p.add_argument("--task", default="rotten-tomatoes", help="zoo data set (or 'file' with --set task.path=...)")
    p.add_argument("--adapter", default="full", help="adapter.method (default: full, every weight perturbed)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    p.add_argument("--batch", type=int, default=16, help="examples per step (the 2 ranks of dp take half each)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="extra config override")
    p.add_argument("--out", type=Path, default=RESULTS / "distributed.json")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    p.add_argument("--force", action="store_true", help="remeasure rows already in --out")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {list(CONFIGS)}")
    settings = {
        "model": args.model,
        "task": args.task,
        "adapter": args.adapter,
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": args.batch,
        "set": sorted(args.set or []),
        "cpu_count": os.cpu_count(),
    }
    data: dict[str, Any] = {"rows": {}}
    if args.out.exists():
        data = json.loads(args.out.read_text())
        data.setdefault("rows", {})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        done = data["rows"].get(name)
        if done and done.get("settings") == settings and not args.force:
            print(f"{name}: done ({done['s_per_step']:.3f} s/step), skipped", flush=True)
            continue
        print(f"{name}: measuring ...", flush=True)
        row = measure(args, name)
        row["settings"] = settings
        data["rows"][name] = row
        save(args.out, data)
        print(
            f"{name}: {row['s_per_step']:.3f} s/step, {row['comm_bytes_per_step']:g} bytes/step "
            f"({row['wall_s']} s)",
            flush=True,
        )
    save(args.out, data)
    print(json.dumps(data["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
