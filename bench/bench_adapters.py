"""Adapter costs on smollm2-135m-instruct: trainable parameters, export sizes, forward overhead.

    OMP_NUM_THREADS=2 python bench/bench_adapters.py > bench/adapters.json     # ~3-5 min on 2 CPUs

Prints one JSON object:
  methods.<name>: trainable params, apply time, native / peft-lora export bytes, forward time
                  (batch 16x64, logits_to_keep=1, best of --repeats, measured alternately with
                  the bare model) and overhead vs the bare model
  tt_contraction: one TT adapter (576 -> 64 -> 576, rank 5) on 16x64 tokens, parallel (bipartite)
                  vs sequential (materialised W) contraction, and the same switch on the whole model
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoengine.adapters import apply_adapter, base_weights_hash, export_adapter
from zoengine.config import AdapterConfig
from zoengine.errors import ZOError

NAME = "smollm2-135m-instruct"
METHODS: list[tuple[str, str, list[str] | None, dict[str, Any]]] = [  # (label, method, targets, options)
    ("full", "full", None, {}),
    ("subset", "subset", ["model.layers.29", "model.norm"], {}),
    ("bitfit", "bitfit", None, {}),
    ("lora", "lora", None, {"r": 8}),
    ("lora_xs", "lora_xs", None, {"r": 8}),
    ("lora_xs_randomized_svd", "lora_xs", None, {"r": 8, "svd": "randomized"}),
    ("sora", "sora", None, {"r": 8}),
    ("tt", "tt", None, {}),
]


def model_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    try:
        from zoengine import assets

        return Path(assets.ensure(NAME))
    except Exception:  # noqa: BLE001 - a converted local copy while assets are in flux
        return Path("/tmp/smollm2-f32")


def timed(fn: Any, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call (min: the machine is shared)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def paired(fn_a: Any, fn_b: Any, repeats: int) -> tuple[float, float, float]:
    """a and b measured alternately, so load from other processes hits both alike.

    Returns (best a, best b, median of the per-pair ratios b/a).
    """
    fn_a()
    fn_b()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((fn_a, a), (fn_b, b)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return min(a), min(b), statistics.median(y / x for x, y in zip(a, b, strict=True))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def forward_fn(model: nn.Module, ids: torch.Tensor) -> Any:
    def run() -> None:
        with torch.no_grad():
            model(ids, logits_to_keep=1)

    return run


def bench_tt_layer(repeats: int) -> dict[str, Any]:
    from zoengine.adapters.tt import TTAdapter

    gen = torch.Generator().manual_seed(0)
    opts = {"scale": 1.0, "bias": True, "zero_init_up": False}
    adapter = TTAdapter(576, 64, [9, 8, 8, 4, 4, 4], 5, opts, gen)
    h = torch.randn(16, 64, 576, generator=gen)
    out: dict[str, Any] = {"shape": [9, 8, 8, 4, 4, 4], "rank": 5, "tokens": 16 * 64}
    with torch.no_grad():
        for mode in ("parallel", "sequential"):
            adapter.sequential = mode == "sequential"
            out[f"{mode}_ms"] = round(1e3 * timed(lambda: adapter.delta(h), max(repeats, 5) * 4), 3)
        adapter.sequential = False
        par = adapter.delta(h)
        adapter.sequential = True
        out["max_abs_diff"] = float((adapter.delta(h) - par).abs().max())
    out["speedup"] = round(out["sequential_ms"] / out["parallel_ms"], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: the zoo asset)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    path = model_dir(args.model)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.randint(
        10, base.config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0)
    )
    base_hash = base_weights_hash(base)
    bare = timed(forward_fn(base, ids), args.repeats)  # reference only; overheads use paired timings
    report: dict[str, Any] = {
        "model": NAME,
        "model_dir": str(path),
        "base_params": sum(p.numel() for p in base.parameters()),
        "base_hash": base_hash,
        "batch": [args.batch, args.seq],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "bare_forward_s": round(bare, 4),
        "methods": {},
    }
    for label, method, targets, options in METHODS:
        print(f"[bench] {label}", file=sys.stderr)
        model = copy.deepcopy(base)
        entry: dict[str, Any] = {"method": method, "options": options}
        try:
            t = time.perf_counter()
            handle = apply_adapter(
                model, AdapterConfig(method=method, targets=targets, options=options), seed=0
            )
            entry["apply_s"] = round(time.perf_counter() - t, 3)
        except ZOError as exc:
            entry["error"] = str(exc)
            report["methods"][label] = entry
            continue
        entry["trainable_params"] = handle.num_trainable()
        entry["targets"] = len(handle.targets)
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            for fmt in ("native", "peft-lora"):
                try:
                    export_adapter(
                        model, handle, Path(tmp) / fmt, fmt, base_model_id=NAME, base_model_hash=base_hash
                    )
                    entry[f"{fmt}_bytes"] = dir_bytes(Path(tmp) / fmt)
                except ZOError as exc:
                    entry[f"{fmt}_bytes"] = None
                    entry[f"{fmt}_error"] = str(exc)
        bare_s, fwd, ratio = paired(forward_fn(base, ids), forward_fn(model, ids), args.repeats)
        entry["bare_forward_s"] = round(bare_s, 4)
        entry["forward_s"] = round(fwd, 4)
        entry["overhead_pct"] = round(100 * (fwd / bare_s - 1), 1)  # best vs best
        entry["overhead_pct_median_pair"] = round(100 * (ratio - 1), 1)
        if method == "tt":
            for mod in handle.adapter_modules.values():
                mod.sequential = True  # type: ignore[assignment]
            bare_s, seq, _ = paired(forward_fn(base, ids), forward_fn(model, ids), args.repeats)
            entry["forward_sequential_s"] = round(seq, 4)
            entry["overhead_sequential_pct"] = round(100 * (seq / bare_s - 1), 1)
        report["methods"][label] = entry
        del model, handle
    report["tt_contraction"] = bench_tt_layer(args.repeats)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
