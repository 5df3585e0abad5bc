"""What a ZO step costs against the forward passes it is made of, on smollm2-135m-instruct.

Each configuration is measured in one process against the same model's plain forward on the same
kind of batch (rotten-tomatoes, 16 reviews): forwards and steps alternate, each on a fresh batch
object (so the prefix cache of a step never helps a timed plain forward), and the ratio is
``median(step seconds) / (2·Q · median(forward seconds))``. Rows (``config`` names):

    final-norm subset Q=1 · tt top-half Q=1/Q=8 · lora top-half Q=1/Q=8 · tt all layers Q=1 ·
    lora all layers Q=1 · full gaussian Q=1 · full rademacher Q=1

Targets (issue 13): final-norm ≤ 0.6, TT/LoRA top-half Q=8 ≤ 0.65, adapters on all layers ≤ 1.03,
full fine-tuning ≤ 1.3. ``--overhead`` adds the engine-vs-minimal-loop row: the same MeZO workload
(every RMSNorm scale trainable, batch 16, 20 steps) through ``zoengine.engine.Run`` and through a
hand-written loop; ``--bf16`` adds a float32-vs-bfloat16 base row (forward seconds, zero-shot test
accuracy on 400 examples).

Resumable: rows are written to ``bench/results/step_cost.json`` as they finish; a rerun skips them.

    nice -n 5 python bench/bench_step_cost.py --overhead --bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
CONFIGS: dict[str, dict[str, Any]] = {
    "final-norm subset Q=1": {"method": "subset", "targets": ["model.norm"], "q": 1},
    "tt top-half Q=1": {"method": "tt", "layers": "top:15", "q": 1},
    "tt top-half Q=8": {"method": "tt", "layers": "top:15", "q": 8},
    "lora top-half Q=1": {"method": "lora", "layers": "top:15", "q": 1},
    "lora top-half Q=8": {"method": "lora", "layers": "top:15", "q": 8},
    "tt all layers Q=1": {"method": "tt", "q": 1},
    "lora all layers Q=1": {"method": "lora", "q": 1},
    "full gaussian Q=1": {"method": "full", "q": 1, "noise": "gaussian"},
    "full rademacher Q=1": {"method": "full", "q": 1, "noise": "rademacher"},
}
TARGETS = {
    "final-norm subset Q=1": 0.6,
    "tt top-half Q=8": 0.65,
    "lora top-half Q=8": 0.65,
    "tt all layers Q=1": 1.03,
    "lora all layers Q=1": 1.03,
    "full gaussian Q=1": 1.3,
    "full rademacher Q=1": 1.3,
}


def _setup(model_name: str, spec: dict[str, Any], dtype: str = "float32") -> tuple[Any, Any, Any]:
    from zoengine.adapters import apply_adapter
    from zoengine.config import AdapterConfig, ModelConfig, TaskConfig
    from zoengine.models import load_model
    from zoengine.objectives import Objective
    from zoengine.tasks import load_task

    task = load_task(TaskConfig(name="rotten-tomatoes", n_train=256, n_dev=0, n_test=400, seed=42))
    loaded = load_model(ModelConfig(name=model_name, dtype=dtype), label_texts=task.label_words)
    objective = Objective(loaded, task, 256)
    acfg = AdapterConfig(method=spec["method"], targets=spec.get("targets"), layers=spec.get("layers"))
    handle = apply_adapter(loaded.model, acfg, seed=0) if spec["method"] != "none" else None
    if handle is not None:
        objective.share_prefix(True)
    return task, objective, handle


def measure(model_name: str, name: str, spec: dict[str, Any], reps: int) -> dict[str, Any]:
    from zoengine.config import OptimizerConfig
    from zoengine.optim import build_optimizer

    task, objective, handle = _setup(model_name, spec)
    q = int(spec["q"])
    opts: dict[str, Any] = {"q": q, "noise": spec.get("noise", "gaussian")}
    opt = build_optimizer(
        OptimizerConfig(name="mezo_sgd", lr=1e-9, eps=1e-3, options=opts),
        handle.param_groups(0.0),
        seed=0,
        total_steps=100,
        steps_per_epoch=16,
    )
    examples = task.train[:16]
    fwd, step = [], []
    with torch.no_grad():
        objective.loss(objective.make_batch(examples))  # warm-up
        opt.step(lambda b=objective.make_batch(examples): objective.loss(b))
        for _ in range(reps):
            batch = objective.make_batch(examples)
            t0 = time.perf_counter()
            objective.loss(batch)
            fwd.append(time.perf_counter() - t0)
            batch = objective.make_batch(examples)
            t0 = time.perf_counter()
            opt.step(lambda b=batch: objective.loss(b))
            step.append(time.perf_counter() - t0)
    f, s = statistics.median(fwd), statistics.median(step)
    prefix = objective.prefix
    return {
        "config": name,
        "ratio": s / (2 * q * f),
        "target": TARGETS.get(name),
        "forward_s": f,
        "step_s": s,
        "queries": q,
        "trainable": handle.num_trainable(),
        "shared_blocks": prefix.start if prefix is not None and prefix.active else 0,
        "blocks": prefix.n_layers if prefix is not None else None,
        "restore": opt.restore,
        "reps": reps,
    }


def minimal_loop_seconds(model_name: str, steps: int) -> float:
    """Median step of a hand-written MeZO loop (the paper's pseudo-code) on all RMSNorm scales."""
    task, objective, _ = _setup(model_name, {"method": "none"})
    model = objective.loaded.model
    params = [p for n, p in model.named_parameters() if n.endswith("norm.weight")]
    batches = [
        objective.make_batch(task.train[(16 * i) % 256 : (16 * i) % 256 + 16]) for i in range(steps + 1)
    ]
    gen = torch.Generator()
    lr, eps = 1e-9, 1e-3

    def perturb(seed: int, scale: float) -> None:
        gen.manual_seed(seed)
        for p in params:
            p.add_(torch.randn(p.shape, generator=gen), alpha=scale * eps)

    times = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            t0 = time.perf_counter()
            seed = 1000 + i
            perturb(seed, 1.0)
            lp = float(objective.loss(batch))
            perturb(seed, -2.0)
            lm = float(objective.loss(batch))
            perturb(seed, 1.0)
            pg = (lp - lm) / (2 * eps)
            gen.manual_seed(seed)
            for p in params:
                p.add_(torch.randn(p.shape, generator=gen), alpha=-lr * pg)
            if i:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def engine_seconds(model_name: str, steps: int) -> float:
    """Median wall time between consecutive steps of the real engine on the same workload."""
    import tempfile

    from zoengine.config import RunConfig
    from zoengine.engine import Run
    from zoengine.events import StepLogged

    cfg = RunConfig()
    cfg.model.name = model_name
    cfg.task.name, cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test, cfg.task.seed = "rotten-tomatoes", 256, 0, 0, 42
    cfg.adapter.method, cfg.adapter.targets = "subset", ["*norm"]  # all 61 RMSNorm scales
    cfg.optimizer.name, cfg.optimizer.lr = "mezo_sgd", 1e-9
    cfg.run.steps, cfg.run.batch_size, cfg.run.eval_every = steps + 1, 16, 0
    cfg.run.checkpoint_every, cfg.run.checkpoint_minutes, cfg.run.zero_shot_eval = 0, 0, False
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg.validate(), Path(tmp) / "run")
        run.subscribe(lambda ev: stamps.append(time.perf_counter()) if isinstance(ev, StepLogged) else None)
        run.run()
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return statistics.median(gaps)


def bf16_rows(model_name: str) -> list[dict[str, Any]]:
    rows = []
    for dtype in ("float32", "bfloat16"):
        task, objective, _ = _setup(model_name, {"method": "none"}, dtype=dtype)
        examples = task.train[:16]
        with torch.no_grad():
            objective.loss(objective.make_batch(examples))
            times = []
            for _ in range(5):
                batch = objective.make_batch(examples)
                t0 = time.perf_counter()
                objective.loss(batch)
                times.append(time.perf_counter() - t0)
            loss, acc = objective.evaluate(task.test, 32)
        rows.append(
            {
                "config": f"base {dtype} forward",
                "forward_s": statistics.median(times),
                "zero_shot_test_acc": acc,
                "zero_shot_test_loss": loss,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated config names")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overhead", action="store_true", help="add the engine-vs-minimal-loop row")
    ap.add_argument("--bf16", action="store_true", help="add the float32-vs-bfloat16 base rows")
    ap.add_argument("--out", default=str(RESULTS / "step_cost.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    data: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"rows": []}
    done = {r["config"] for r in data["rows"]}

    def save(row: dict[str, Any]) -> None:
        data["rows"].append(row)
        data["meta"] = {"model": args.model, "threads": args.threads, "batch": 16}
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(out)
        print(json.dumps(row), flush=True)

    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name in done:
            continue
        spec = CONFIGS[name]
        save(measure(args.model, name, spec, reps=max(2, args.reps // 2) if spec["q"] > 1 else args.reps))
    if args.overhead and "engine vs minimal loop" not in done:
        loop = minimal_loop_seconds(args.model, 20)
        engine = engine_seconds(args.model, 20)
        save({"config": "engine vs minimal loop", "ratio": engine / loop, "loop_s": loop, "engine_s": engine,
              "overhead_pct": 100 * (engine / loop - 1), "target": 1.02})  # fmt: skip
    if args.bf16 and "base bfloat16 forward" not in done:
        for row in bf16_rows(args.model):
            save(row)


if __name__ == "__main__":
    main()
