"""A user's own small file where the zero-shot prior is wrong: zero-shot / majority / tune + train.

The file: 400 real movie reviews (from the offline rotten-tomatoes asset) with 53 % negative, as a
CSV a user would write (``text,label`` with label values ``negative``/``positive``, mapped to the
words terrible/great). SmolLM2 answers "great" for almost every review zero-shot, so its zero-shot
accuracy sits *below* the majority rate — the situation in which a user's first run used to end
worse than doing nothing.

The default flow, as the README tells a user to run it (the app's default method: TT + MeZO,
300 steps; the tuner's pick is discounted by √(tune steps / run steps) when it is written):

    zoengine tune  --model smollm2-135m-instruct --task file --data reviews.csv --adapter tt \\
                   --steps 300 --set 'task.label_map={negative="terrible", positive="great"}' \\
                   --write tuned.toml
    zoengine train --config tuned.toml

Sizes are left to the defaults (a 400-row file splits 60/20/20). Resumable: each stage writes
``bench/results/user_file.json`` when it finishes and a rerun skips finished stages.

    nice -n 19 python bench/bench_user_file.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
LABEL_MAP = '{negative="terrible", positive="great"}'


def build_file(path: Path, rows: int = 400, negative_share: float = 0.53, seed: int = 7) -> None:
    from zoengine.assets import ensure

    data_dir = ensure("rotten-tomatoes")
    records = [json.loads(line) for line in (Path(data_dir) / "data.jsonl").read_text().splitlines() if line]
    meta = json.loads((Path(data_dir) / "meta.json").read_text())
    names = meta.get("labels", ["negative", "positive"])
    rng = random.Random(seed)
    rng.shuffle(records)
    n_neg = round(rows * negative_share)
    neg = [r for r in records if names[r["label"]] == "negative"][:n_neg]
    pos = [r for r in records if names[r["label"]] == "positive"][: rows - n_neg]
    chosen = neg + pos
    rng.shuffle(chosen)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for r in chosen:
            w.writerow([r["text"], names[r["label"]]])


def zoengine(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zoengine.cli", *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="bench/results/user_file_work")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()
    work = Path(args.work)
    out = RESULTS / "user_file.json"
    done: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}

    def save() -> None:
        out.write_text(json.dumps(done, indent=1) + "\n")

    data = work / "reviews.csv"
    if not data.exists():
        build_file(data)
    common = [
        "--model",
        args.model,
        "--task",
        "file",
        "--data",
        str(data),
        "--set",
        f"task.label_map={LABEL_MAP}",
    ]
    if "zero_shot" not in done:
        proc = zoengine("eval", *common, "--split", "test")
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        line = proc.stdout.strip().splitlines()[-1]  # "test: loss L accuracy A (N examples)"
        parts = line.split()
        done["zero_shot"] = {"test_acc": float(parts[4]), "test_loss": float(parts[2]), "line": line}
        save()
    if "majority" not in done:
        from zoengine.config import RunConfig
        from zoengine.tasks import load_task

        cfg = RunConfig()
        cfg.task.name, cfg.task.path = "file", str(data)
        cfg.set("task.label_map", LABEL_MAP)
        task = load_task(cfg.task)
        counts: dict[int, int] = {}
        for ex in task.test:
            counts[ex.label] = counts.get(ex.label, 0) + 1
        done["majority"] = {"test_acc": max(counts.values()) / len(task.test), "n_test": len(task.test)}
        save()
    tuned = work / "tuned.toml"
    if "tune" not in done:
        t0 = time.time()
        proc = zoengine(
            "tune", *common, "--adapter", "tt", "--steps", "300", "--write", str(tuned), "--force", "--quiet"
        )
        done["tune"] = {"stdout": proc.stdout, "exit": proc.returncode, "seconds": round(time.time() - t0)}
        save()
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
    if "train" not in done:
        t0 = time.time()
        run_dir = work / "run"
        proc = zoengine("train", "--config", str(tuned), "--output", str(run_dir), "--quiet")
        done["train"] = {
            "stdout": proc.stdout.strip(),
            "exit": proc.returncode,
            "seconds": round(time.time() - t0),
        }
        state = json.loads((run_dir / "state.json").read_text()) if (run_dir / "state.json").exists() else {}
        done["train"]["test"] = state.get("test")
        save()
    print(json.dumps(done, indent=1))


if __name__ == "__main__":
    main()
