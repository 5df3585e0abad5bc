"""The commands that do not train: ``eval``, ``export``, ``runs``, ``tune``, ``probe`` and ``methods``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from zoengine.cli.flags import build_config
from zoengine.cli.train import _check_model_name
from zoengine.config import RunConfig
from zoengine.errors import ZOError


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a config's model (zero-shot) or a run's best checkpoint on a split."""
    from zoengine.evaluation import evaluate

    with _EvalBar(args.split) as bar:
        result = evaluate(
            build_config(args) if not args.run else None,
            run_dir=args.run,
            split=args.split,
            checkpoint=getattr(args, "checkpoint", "best"),
            progress=bar.update,
        )
    if result.get("note"):
        print(f"warning: {result['note']}", file=sys.stderr)
    line = f"{args.split}: loss {result['loss']:.4f} accuracy {result['accuracy']:.4f} ({result['examples']} examples)"
    if "checkpoint" in result:  # name what was evaluated
        line += f" of {result['checkpoint']} (step {result['step']})"
    print(line)
    return 0


class _EvalBar:
    """A tqdm bar on stderr over evaluation batches (created at the first batch, after loading)."""

    def __init__(self, split: str) -> None:
        self.split = split
        self.bar: Any = None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"evaluating {self.split}", unit="batch", file=sys.stderr)
        self.bar.n = done
        self.bar.refresh()

    def __enter__(self) -> _EvalBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()



def cmd_export(args: argparse.Namespace) -> int:
    from zoengine.exporting import export_run

    files = export_run(
        args.run_dir,
        args.format,
        args.out,
        checkpoint=args.checkpoint,
        force=args.force,
        dtype=args.dtype,
        gguf_type=args.gguf_type,
        report=lambda line: print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout),
    )
    for f in files:
        size = f.stat().st_size if f.is_file() else 0
        print(f"{f}\t{size:,} bytes")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from zoengine.runs import list_runs

    runs = list_runs(args.home)
    if not runs:
        print("no runs yet")
        return 0
    print(
        f"{'status':<11} {'steps':>11} {'dev acc':>7} {'test acc':>8}  {'adapter':<8} {'optimizer':<11} path"
    )
    for r in runs:
        dev = f"{r.best_dev_accuracy:.3f}" if r.best_dev_accuracy is not None else "-"
        test = f"{r.test_accuracy:.3f}" if r.test_accuracy is not None else "-"
        steps = f"{r.steps_done:>5}/{r.total_steps:<5}" if r.status != "corrupt" else f"{'?':>5}/{'?':<5}"
        print(f"{r.status:<11} {steps} {dev:>7} {test:>8}  {r.adapter:<8} {r.optimizer:<11} {r.path}")
        if r.problem:  # a damaged run is listed, with what is wrong
            print(f"{'':<11} ! {r.problem}")
    return 0


def _number_list(text: str, field: str) -> list[float]:
    """``"1e-3, 3e-3"`` as floats, or a one-line error naming ``field``."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ZOError(f"expected comma-separated numbers (got {text!r})", field=field) from None


def cmd_tune(args: argparse.Namespace) -> int:
    """Sweep lr (and ε with --eps-grid) on short runs; print, plot, cache and optionally write."""
    from zoengine.io import atomic_write_text
    from zoengine.tune import apply_result, format_table, lr_grid, plot_text, tune

    cfg = build_config(args)
    write = Path(args.write) if args.write else None
    if write is not None:
        if write.exists() and not args.force:
            raise ZOError(f"{write} exists; choose another path or add --force", field="--write")
        if write.exists() and not write.is_file():
            raise ZOError(f"not a file: {write}", field="--write")
    lrs = None
    if args.lrs:
        lrs = _number_list(args.lrs, "--lrs")
    elif args.center is not None:
        lrs = lr_grid(args.center, args.candidates)
    eps_values = None
    if args.eps_grid:
        eps_values = _number_list(args.eps_grid, "--eps-grid")
        if not eps_values or any(not (e > 0 and e < float("inf")) for e in eps_values):
            raise ZOError("every ε must be a finite number > 0", field="--eps-grid")

    def progress(i: int, cand: Any, step: int) -> None:
        if step == 0 and not args.quiet:
            print(f"candidate {i + 1}: lr {cand.lr:.3g}, eps {cand.eps:.2g} ...", file=sys.stderr, flush=True)

    result = tune(
        cfg,
        steps=args.tune_steps,
        lrs=lrs,
        n_candidates=args.candidates,
        eps_values=eps_values,
        dev_examples=args.dev_examples,
        progress=progress,
    )
    print(format_table(result))
    if not args.quiet:
        print(plot_text(result))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    run_lr = result.lr_for(cfg.run.steps)
    print(
        f"tuned: lr {run_lr:.3g} for the {cfg.run.steps}-step run (sweep pick {result.lr:.3g} × "
        f"√({result.steps}/{cfg.run.steps}) for the longer horizon, at most ×1), eps {result.eps:.2g} "
        f"(calibrated default {result.default_lr:.3g}, {result.trainable:,} trainable; {result.seconds:.0f} s; "
        f"cached for this model/task/adapter/optimizer/batch)"
    )
    if write is not None:
        atomic_write_text(write, apply_result(cfg, result).to_toml())
        print(f"wrote {write}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """Measure the memory of weights / forward / ZO step / first-order step and say what fits."""
    import json

    from zoengine.probe import format_table, probe

    cfg = RunConfig()
    cfg.set("model.name", args.model)
    cfg.set("adapter.method", args.adapter)
    for flag, key in (("device", "model.device"), ("dtype", "model.dtype"), ("device_map", "model.device_map")):
        if getattr(args, flag) is not None:
            cfg.set(key, getattr(args, flag))
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ZOError("expected section.key=value", field=f"--set {item}")
        cfg.set(key.strip(), value.strip())
    cfg.validate()
    _check_model_name(cfg.model.name)
    result = probe(cfg, batch=args.batch, seq=args.seq)
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_table(result))
    return 0



def cmd_methods(args: argparse.Namespace) -> int:
    """Every optimizer and adapter with its options, defaults, ranges and help (the schemas')."""
    from zoengine import adapters, optim

    name = getattr(args, "name", None)
    known = [*optim.OPTIMIZERS, *adapters.ADAPTERS]
    if name is not None and name not in known:
        raise ZOError(f"one of {', '.join(known)} (got {name!r})", field="methods")
    if name is None or name in optim.OPTIMIZERS:
        print("optimizers (memory: persistent bytes per trainable parameter beyond its float32 weight):")
    for key, spec in optim.OPTIMIZERS.items():
        if name in (None, key):
            print(f"  {key:<12} {spec.description}")
            print(f"  {'':<12}   memory: +{spec.bytes_per_trainable()} B/param; {spec.memory}")
            print(f"  {'':<12}   queries per step: {spec.queries_text()}")
            _print_options(spec.settings(), "optimizer", verbose=name is not None)
            if name is not None:
                for label in spec.presets:
                    print(f"  {'':<12}   preset: {label}")
    if name is None or name in adapters.ADAPTERS:
        print("adapters:")
    for key, method in adapters.ADAPTERS.items():
        if name in (None, key):
            print(f"  {key:<12} {method.description}")
            _print_options(method.settings(), "adapter", verbose=name is not None)
    return 0


def _print_options(settings: list[Any], section: str, verbose: bool) -> None:
    if not settings:
        return
    if not verbose:  # the overview: names and defaults on one line
        items = ", ".join(f"{s.key}={s.default_text()}" for s in settings)
        print(f"  {'':<12}   options: {items}")
        return
    print(f"  {'':<12}   options (--set {section}.KEY=VALUE or [{section}] in the TOML):")
    for s in settings:
        print(f"    {s.line()}")
