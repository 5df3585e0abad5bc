"""Measure the lr constants of ``zoengine.optim.calibration`` with the tuner on the real model.

For every (adapter, optimizer) row, ``zoengine.tune.tune`` sweeps a wide log grid around the rule's
current default (same batches and perturbations for every candidate) and the row records the tuned
lr, the implied constant ``c = lr·d`` (SGD-type) or ``lr·√d`` (adaptive), and the whole sweep.
Resumable: each row is written to the output JSON as it finishes and a rerun skips finished rows.

    nice -n 19 python bench/calibrate.py                       # adapters with mezo_sgd
    nice -n 19 python bench/calibrate.py --rows tt:zo_adam,tt:zo_sgd_sign
    nice -n 19 python bench/calibrate.py --rows lora:mezo_sgd@1e-2 --candidates 4   # grid around 1e-2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

# row name -> (adapter method, options); "layers" is a section field, the rest method options
ADAPTER_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "subset": ("subset", {"targets": ["model.norm"]}),
    "lora": ("lora", {"r": 8}),
    "lora_xs": ("lora_xs", {"r": 8}),
    "sora": ("sora", {"r": 8}),
    "tt": ("tt", {}),
    "tt-top15": ("tt", {"layers": "top:15"}),  # bench_matrix.py's row on the top half of the blocks
}
DEFAULT_ROWS = "subset:mezo_sgd,lora_xs:mezo_sgd,tt:mezo_sgd,lora:mezo_sgd,sora:mezo_sgd"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=DEFAULT_ROWS, help="adapter:optimizer,...")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--task", default="rotten-tomatoes")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=6)
    ap.add_argument("--dev-examples", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/calibration.json")
    args = ap.parse_args()

    import torch

    from zoengine.config import RunConfig
    from zoengine.optim.calibration import ADAPTIVE
    from zoengine.tune import TuneError, format_table, tune

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    for spec in args.rows.split(","):
        row, _, center = spec.partition("@")  # "lora:mezo_sgd@1e-2": grid centre instead of the rule's
        adapter, optimizer = row.split(":")
        if row in done:
            print(f"{row}: done already (lr {done[row].get('lr')})", flush=True)
            continue
        cfg = RunConfig()
        cfg.model.name, cfg.task.name = args.model, args.task
        cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test = 1000, 200, 500
        cfg.adapter.method, options = ADAPTER_OPTIONS[adapter]
        for k, v in options.items():
            cfg.set(f"adapter.{k}", v)
        cfg.optimizer.name = optimizer
        if center:
            cfg.optimizer.lr = float(center)
        cfg.run.batch_size = args.batch
        t0 = time.time()
        record: dict[str, Any] = {"adapter": adapter, "optimizer": optimizer, "batch": args.batch}
        try:
            res = tune(
                cfg,
                steps=args.steps,
                n_candidates=args.candidates,
                dev_examples=args.dev_examples,
                use_cache=False,
                progress=lambda i, c, step, row=row: (
                    step == 0 and print(f"  {row}: candidate {i + 1}, lr {c.lr:.3g}", flush=True)
                ),
            )
            d = res.trainable
            record.update(
                lr=res.lr,
                eps=res.eps,
                trainable=d,
                rule_default_lr=res.default_lr,
                constant=res.lr * (math.sqrt(d) if optimizer in ADAPTIVE else d),
                constant_form="lr*sqrt(d)" if optimizer in ADAPTIVE else "lr*d",
                notes=res.notes,
                candidates=[
                    {
                        "lr": c.lr,
                        "decrease": c.decrease,
                        "stderr": c.stderr,
                        "diverged": c.diverged,
                        "dev_loss_after": c.dev_loss_after,
                        "train_losses": [round(x, 4) for x in c.train_losses],
                    }
                    for c in res.candidates
                ],
            )
            print(f"{row}: d={d:,}\n{format_table(res)}", flush=True)
        except TuneError as exc:
            record["error"] = exc.one_line()
            record["candidates"] = [
                {"lr": c.lr, "decrease": c.decrease, "stderr": c.stderr, "diverged": c.diverged}
                for c in getattr(exc, "candidates", [])
            ]
            print(f"{row}: {exc.one_line()}", flush=True)
        record["seconds"] = round(time.time() - t0, 1)
        done[row] = record
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1) + "\n")
        tmp.replace(out)


if __name__ == "__main__":
    main()
