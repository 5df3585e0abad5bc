"""Training throughput with the zotui dashboard open vs headless; prints one JSON object.

    python bench/bench_tui.py                          # real engine, zoo model (smollm2-135m-instruct)
    python bench/bench_tui.py --model tiny             # zotui.demo's tiny Llama (UI-bound worst case)

Each repeat trains the same config twice: once headless (the engine thread alone, its queue drained
by a plain loop, as the CLI does) and once with the app's dashboard open (``App.run_test`` at
120x40: Textual composes and renders every frame, only the terminal write is skipped). Throughput
is steps per second over the training steps only (``StepLogged`` timestamps from ``metrics.jsonl``,
so model loading and the final evaluation are excluded). Orders alternate between repeats to cancel
drift on a shared machine; the figure is the median of dashboard/headless ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from zoengine.config import RunConfig
from zoengine.events import StepLogged
from zotui.backend import Backend, engine_backend, read_events


def bench_config(args: argparse.Namespace, root: Path) -> RunConfig:
    cfg = RunConfig()
    values: dict[str, Any] = {
        "model.device": "cpu",
        "model.max_length": 32,
        "task.n_train": 64,
        "task.n_dev": 16,
        "task.n_test": 16,
        "run.steps": args.steps,
        "run.batch_size": args.batch_size,
        "run.eval_every": 0,
        "run.zero_shot_eval": False,
        "run.checkpoint_every": 0,
    }
    for key, value in values.items():
        cfg.set(key, value)
    if args.model == "tiny":  # the demo's model and data (zotui.demo): built here, no download
        from zotui import demo

        cfg = demo.demo_config(demo.build(root / "demo"), cfg)
    return cfg.validate()


def steps_per_second(run_dir: Path) -> float:
    """Training throughput from the step timestamps (first to last logged step)."""
    steps = [e for e in read_events(run_dir) if isinstance(e, StepLogged)]
    if len(steps) < 2 or steps[-1].time <= steps[0].time:
        raise RuntimeError(f"too few steps logged in {run_dir}")
    return (steps[-1].step - steps[0].step) / (steps[-1].time - steps[0].time)


def run_headless(backend: Backend, cfg: RunConfig) -> float:
    run = backend.new_run(cfg)
    run.start()
    while not run.join(timeout=0.25):
        try:  # drain like the CLI does, so both modes pay for consuming events
            while True:
                run.events.get_nowait()
        except queue.Empty:
            pass
    if run.status != "finished":
        raise RuntimeError(f"headless run ended {run.status}: {getattr(run, 'error', '')}")
    return steps_per_second(Path(run.run_dir))


async def _run_dashboard(backend: Backend, cfg: RunConfig) -> Path:
    from zotui.__main__ import make_app

    app = make_app(cfg, backend=backend, check_assets=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f5")
        while app.runner is None or app.runner.run.status not in ("finished", "failed", "stopped"):
            await pilot.pause(0.25)
        assert app.runner is not None
        if app.runner.run.status != "finished":
            raise RuntimeError(f"dashboard run ended {app.runner.run.status}")
        return Path(app.runner.run_dir)


def run_dashboard(backend: Backend, cfg: RunConfig) -> float:
    return steps_per_second(asyncio.run(_run_dashboard(backend, cfg)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model", choices=("zoo", "tiny"), default="zoo", help="the zoo's default model or zotui.demo's tiny one"
    )
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="zotui-bench-") as tmp:
        root = Path(tmp)
        os.environ["ZOENGINE_RUNS"] = str(root / "runs")
        backend = engine_backend()
        cfg = bench_config(args, root)
        headless: list[float] = []
        dashboard: list[float] = []
        for i in range(args.repeats):
            order = (("headless", run_headless), ("dashboard", run_dashboard))
            for name, fn in order if i % 2 == 0 else order[::-1]:
                (headless if name == "headless" else dashboard).append(fn(backend, cfg.copy()))
        ratios = [d / h for d, h in zip(dashboard, headless, strict=True)]
        ratio = statistics.median(ratios)
        print(
            json.dumps(
                {
                    "model": cfg.model.name if args.model == "zoo" else "tiny-llama",
                    "steps": args.steps,
                    "batch_size": args.batch_size,
                    "repeats": args.repeats,
                    "headless_steps_per_s": [round(v, 3) for v in headless],
                    "dashboard_steps_per_s": [round(v, 3) for v in dashboard],
                    "dashboard_over_headless": round(ratio, 4),
                    "within_5_percent": ratio >= 0.95,
                    "cpu_count": os.cpu_count(),
                    "python": platform.python_version(),
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
