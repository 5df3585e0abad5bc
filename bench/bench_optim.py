"""Benchmark the optimizers on a real model: seconds per step, step/(2·Q·forward), peak memory.

Each measurement runs in its own subprocess so peaks do not leak between methods; the peak is
the process's resident high-water mark (VmHWM) reset right before the measured region (Linux
``/proc/self/clear_refs``; elsewhere a psutil sampler), so model loading does not count.

    python bench/bench_optim.py                                  # zoo model, all methods, full params
    python bench/bench_optim.py --model-dir /tmp/smollm2-f32 --methods mezo_sgd,fo_adamw --steps 2
    python bench/bench_optim.py --trainable norms               # adapter-sized trainable set
    python bench/bench_optim.py --adapter lora                  # a real adapter (forward includes it)

Prints one JSON object. ``ratio`` = median step time / (2·Q·median forward time), both timed in
the same process on the same fixed batch (default 16×64 random tokens, label-word CE at the last
position via ``logits_to_keep=1``, like the engine's classification objective).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

TRAINABLE = {
    "full": None,  # every parameter
    "attn_qv": ("self_attn.q_proj.weight", "self_attn.v_proj.weight"),
    "norms": ("norm.weight",),  # RMSNorm scales: an adapter-sized set (~0.03 % of the model)
}


# --- measurement helpers (worker side) ---------------------------------------------------------


class PeakRSS:
    """Resident-memory peak over a code region, in MiB."""

    def __enter__(self) -> PeakRSS:
        self._linux = _reset_hwm()
        self._peak = 0
        self._stop = threading.Event()
        if not self._linux:
            import psutil

            proc = psutil.Process()

            def sample() -> None:
                while not self._stop.is_set():
                    self._peak = max(self._peak, proc.memory_info().rss)
                    time.sleep(0.005)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._linux:
            self._peak = _read_status_kb("VmHWM") * 1024
        else:
            self._thread.join()

    @property
    def mib(self) -> float:
        return self._peak / 2**20


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _read_status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def _trim() -> None:
    """Give freed heap back to the OS so the measured peak starts from the live set."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq), generator=gen)
    labels = torch.randint(0, 2, (args.batch,), generator=gen)
    label_ids = torch.tensor([vocab // 3, 2 * vocab // 3])
    mask = torch.ones_like(ids)

    def loss() -> Any:
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, label_ids]
        return torch.nn.functional.cross_entropy(logits, labels)

    return model, loss


def _select(model: Any, trainable: str, adapter: str | None = None) -> tuple[list[str], list[Any]]:
    if adapter:  # a real adapter: its forward overhead is inside both the step and the forward
        from zoengine.adapters import apply_adapter
        from zoengine.config import AdapterConfig

        handle = apply_adapter(model, AdapterConfig(method=adapter), seed=0)
        named = handle.named_trainable()
        return [n for n, _ in named], [p for _, p in named]
    pats = TRAINABLE[trainable]
    names = [n for n, _ in model.named_parameters() if pats is None or any(n.endswith(p) for p in pats)]
    chosen = set(names)
    for n, p in model.named_parameters():
        p.requires_grad_(n in chosen)
    params = dict(model.named_parameters())
    return names, [params[n] for n in names]


def worker_forward(args: argparse.Namespace) -> dict[str, Any]:
    model, loss = _load(args)
    if args.adapter:
        _select(model, args.trainable, args.adapter)
    _trim()
    with PeakRSS() as peak:
        _forwards(loss, 1)  # warm-up
        rows = [_timed(lambda: _forwards(loss, 1)) for _ in range(args.forwards)]
    return {
        "forward_s": statistics.median(r[0] for r in rows),
        "forward_cpu_s": statistics.median(r[1] for r in rows),
        "peak_rss_mib": peak.mib,
    }


def worker_step(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from zoengine.config import OptimizerConfig
    from zoengine.optim import OPTIMIZERS, build_optimizer

    model, loss = _load(args)
    names, params = _select(model, args.trainable, args.adapter)
    spec = OPTIMIZERS[args.method]
    options = {"q": args.q} if args.q and "q" in spec.option_help() else {}
    cfg = OptimizerConfig(name=args.method, lr=1e-7, eps=1e-3, options=options)
    # A long horizon keeps AdaZeta at epoch 0 (Q=1) and ZO-AdaMU in warm-up unless --q says otherwise.
    opt = build_optimizer(
        cfg, [{"params": params, "names": names}], seed=0, total_steps=10_000, steps_per_epoch=1000
    )

    def closure() -> Any:
        if not opt.uses_backward:
            return loss()
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    _trim()
    rows: list[dict[str, float]] = []
    with PeakRSS() as peak:
        opt.step(closure)  # untimed: lazy state, allocator warm-up
        for _ in range(args.steps):
            # Interleave: the forwards a step should cost, then the step, so load drift on a
            # shared CPU hits both; CPU time (1 thread) is the robust figure, wall is reported too.
            q = max(1, opt.queries_for_step(opt.step_count + 1)) if not opt.uses_backward else 1
            passes = 2 * q if not opt.uses_backward else 1
            f_wall, f_cpu = _timed(lambda n=passes: _forwards(loss, n))
            s_wall, s_cpu = _timed(lambda: opt.step(closure))
            rows.append(
                {"queries": q, "fwd_wall": f_wall / passes, "fwd_cpu": f_cpu / passes, "step_wall": s_wall,
                 "step_cpu": s_cpu, "passes": passes}
            )  # fmt: skip
    med = {k: statistics.median(r[k] for r in rows) for k in ("fwd_wall", "fwd_cpu", "step_wall", "step_cpu")}
    zo = not opt.uses_backward
    return {
        "method": args.method,
        "trainable_params": int(sum(p.numel() for p in params)),
        "restore": getattr(opt, "restore", None),
        "queries": rows[-1]["queries"],
        "forward_s": med["fwd_wall"],
        "step_s": med["step_wall"],
        "forward_cpu_s": med["fwd_cpu"],
        "step_cpu_s": med["step_cpu"],
        "ratio_step_over_2Q_forward_cpu": statistics.median(
            r["step_cpu"] / (r["passes"] * r["fwd_cpu"]) for r in rows
        )
        if zo
        else None,
        "ratio_step_over_2Q_forward_wall": statistics.median(
            r["step_wall"] / (r["passes"] * r["fwd_wall"]) for r in rows
        )
        if zo
        else None,
        "ratio_step_over_forward_cpu": statistics.median(r["step_cpu"] / r["fwd_cpu"] for r in rows),
        "rows": rows,
        "peak_rss_mib": peak.mib,
        "torch_threads": torch.get_num_threads(),
    }


def _forwards(loss: Any, n: int) -> None:
    import torch

    with torch.no_grad():
        for _ in range(n):
            loss()


def _timed(fn: Any) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


# --- orchestration (parent side) ---------------------------------------------------------------


def _resolve_model_dir(given: str | None) -> str:
    if given:
        return given
    try:
        from zoengine import assets

        return str(assets.ensure("smollm2-135m-instruct"))
    except Exception as exc:  # noqa: BLE001 - any failure means: tell the user to pass --model-dir
        raise SystemExit(f"cannot get the zoo model ({exc}); pass --model-dir DIR") from None


def _run_worker(kind: str, args: argparse.Namespace, method: str | None = None) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--worker", kind, "--model-dir", args.model_dir]
    argv += ["--steps", str(args.steps), "--forwards", str(args.forwards), "--threads", str(args.threads)]
    argv += ["--batch", str(args.batch), "--seq", str(args.seq), "--trainable", args.trainable]
    argv += ["--q", str(args.q)]
    if args.adapter:
        argv += ["--adapter", args.adapter]
    if method:
        argv += ["--method", method]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-dir", default=None, help="HF model directory (default: the zoo smollm2-135m-instruct)"
    )
    parser.add_argument(
        "--methods", default="mezo_sgd,zo_sgd_mmt,zo_sgd_sign,adazeta,zo_adamu,zo_adam,fo_adamw"
    )
    parser.add_argument("--steps", type=int, default=2, help="timed steps per method (after one untimed)")
    parser.add_argument("--forwards", type=int, default=2, help="timed inference forwards")
    parser.add_argument("--trainable", choices=sorted(TRAINABLE), default="full")
    parser.add_argument(
        "--q", type=int, default=0, help="queries per step for methods with a q option (0 = default)"
    )
    parser.add_argument(
        "--adapter", default=None, help="apply this adapter (default options) and train its parameters"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads per worker (the CPU may be shared)"
    )
    parser.add_argument("--worker", choices=("forward", "step"), help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker_forward(args) if args.worker == "forward" else worker_step(args)
        print(json.dumps(result))
        return

    args.model_dir = _resolve_model_dir(args.model_dir)
    t0 = time.time()
    inference = _run_worker("forward", args)
    print(f"inference: {json.dumps(inference)}", file=sys.stderr, flush=True)
    methods = {}
    for m in filter(None, args.methods.split(",")):
        methods[m] = _run_worker("step", args, m)
        brief = {k: v for k, v in methods[m].items() if k != "rows"}
        print(f"{m}: {json.dumps(brief)}", file=sys.stderr, flush=True)
    base = inference.get("peak_rss_mib")
    for res in methods.values():
        if base and "peak_rss_mib" in res:
            res["peak_rss_over_inference"] = res["peak_rss_mib"] / base
    zo_peak = methods.get("mezo_sgd", {}).get("peak_rss_mib")
    fo_peak = methods.get("fo_adamw", {}).get("peak_rss_mib")
    report = {
        "model_dir": args.model_dir,
        "batch": [args.batch, args.seq],
        "trainable": args.adapter or args.trainable,
        "threads": args.threads,
        "inference": inference,
        "methods": methods,
        "fo_adamw_peak_over_mezo_peak": fo_peak / zo_peak if fo_peak and zo_peak else None,
        "wall_s": time.time() - t0,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
