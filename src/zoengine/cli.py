"""Headless command line: ``zoengine train | resume | eval | export | runs | tune | probe | assets | methods``.

    zoengine train --config examples/rotten-tomatoes-mezo.toml --set optimizer.lr=1e-6
    zoengine runs
    zoengine export RUN_DIR --format peft-lora --out ./my-adapter

Every user error prints one line, ``error: <field>: <what is allowed>``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from zoengine import __version__
from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.export_formats import FORMATS as EXPORT_FORMATS

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: stopped (and saved where there was something to save)

# common flags -> dotted config keys
FLAG_KEYS = {
    "model": "model.name",
    "task": "task.name",
    "data": "task.path",
    "adapter": "adapter.method",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "eps": "optimizer.eps",
    "steps": "run.steps",
    "batch_size": "run.batch_size",
    "eval_every": "run.eval_every",
    "seed": "run.seed",
    "output": "run.output_dir",
    "name": "run.name",
    "device": "model.device",
    "parallel": "run.parallel",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        # one line, exit 2 via main(): "error: --format: invalid choice ..." (not "argument --format")
        raise ZOError(message.removeprefix("argument "))


def build_config(args: argparse.Namespace) -> RunConfig:
    cfg = RunConfig.load(args.config) if getattr(args, "config", None) else RunConfig()
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            cfg.set(key, value)
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ZOError("expected section.key=value", field=f"--set {item}")
        cfg.set(key.strip(), value.strip())
    return cfg.validate()


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="run config TOML")
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override any config key (repeatable)"
    )
    p.add_argument("--model", help="zoo name, hub id, local dir or .gguf")
    p.add_argument("--task", help="zoo data set, MeZO task name or 'file'")
    p.add_argument("--data", help="local data file (task.path)")
    p.add_argument("--adapter", help="full | subset | bitfit | lora | lora_xs | sora | tt")
    p.add_argument("--optimizer", help="zeroth-order method, see `zoengine methods`")
    p.add_argument("--lr", help="learning rate")
    p.add_argument("--eps", help="perturbation scale")
    p.add_argument("--steps", help="optimizer steps")
    p.add_argument("--batch-size", dest="batch_size", help="examples per step")
    p.add_argument("--eval-every", dest="eval_every", help="dev evaluation period in steps")
    p.add_argument("--seed", help="run seed")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--output", help="run directory")
    p.add_argument("--name", help="run name")


# --- train / resume --------------------------------------------------------------------------------


def _watch(run: Any, quiet: bool) -> int:
    """Run in a thread and draw a progress bar (ETA, loss, dev accuracy) until it ends."""
    import queue

    from tqdm import tqdm

    from zoengine.events import EvalDone, EvalProgress, LogMessage, RunInfo, StatusChanged, StepLogged

    bar = None
    postfix: dict[str, str] = {}
    interrupted = False
    run.start()
    try:
        while True:
            try:
                ev = run.events.get(timeout=0.5)
            except queue.Empty:
                if not run.is_alive:
                    break
                continue
            if isinstance(ev, RunInfo):
                print(
                    f"model {ev.model}: {ev.total_params:,} params, {ev.trainable_params:,} trainable; "
                    f"train/dev/test {ev.n_train}/{ev.n_dev}/{ev.n_test}; run dir {run.run_dir}",
                    file=sys.stderr,
                )
                if not quiet:
                    bar = tqdm(
                        total=ev.total_steps,
                        initial=run.step,
                        unit="step",
                        dynamic_ncols=True,
                        file=sys.stderr,
                    )
            elif isinstance(ev, StepLogged):
                postfix["loss"] = f"{ev.loss:.4f}"
                if ev.queries != 1:
                    postfix["Q"] = str(ev.queries)
                if bar is not None:
                    bar.set_postfix(postfix, refresh=False)
                    bar.update(ev.step - bar.n)
            elif isinstance(ev, EvalProgress):  # a long evaluation: say so, not a frozen bar
                postfix["evaluating"] = f"{ev.split} {ev.done}/{ev.total} batches"
                if bar is not None:
                    bar.set_postfix(postfix)
            elif isinstance(ev, EvalDone):
                postfix.pop("evaluating", None)
                postfix[f"{ev.split}_acc"] = f"{ev.accuracy:.3f}"
                msg = f"step {ev.step}: {ev.split} loss {ev.loss:.4f} accuracy {ev.accuracy:.4f} ({ev.examples} examples)"
                (bar.write(msg) if bar is not None else print(msg, file=sys.stderr))
            elif isinstance(ev, LogMessage) and (
                ev.level not in ("info", "error") or ev.text.startswith("data: ")
            ):
                # errors are printed once, at the end; "data: " notes say how the splits were sized
                text = (
                    f"{ev.level}: {ev.text}"
                    if ev.level != "info"
                    else f"note: {ev.text.removeprefix('data: ')}"
                )
                (bar.write(text) if bar is not None else print(text, file=sys.stderr))
            elif isinstance(ev, StatusChanged) and ev.status in ("finished", "stopped", "failed", "diverged"):
                break
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        run.stop(save=True)
    finally:
        run.join()
        if bar is not None:
            bar.close()
    if run.status == "failed":
        print(f"error: {run.error}", file=sys.stderr)
        return EXIT_USAGE if run.error_is_user else 1
    if run.status == "diverged":  # the guard gave up: one line, exit 1
        print(f"error: {run.error}", file=sys.stderr)
        return 1
    summary = f"{run.status}: {run.step} steps, run dir {run.run_dir}"
    if run.best_dev_accuracy is not None:
        summary += f", best dev accuracy {run.best_dev_accuracy:.4f}"
    if run.test_result:
        summary += f", test accuracy {run.test_result['accuracy']:.4f}"
        if run.test_result.get("checkpoint"):  # name what was tested: best (step N) or last
            summary += f" (checkpoint {run.test_result['checkpoint']}, step {run.test_result.get('step')})"
    print(summary)
    return EXIT_INTERRUPTED if interrupted else 0


def check_output_dir(run_dir: Path, field: str = "run.output_dir", *, new_run: bool = True) -> None:
    """Refuse an output folder the run could not write, before anything is written."""
    from zoengine.checkpoint import has_resume_point
    from zoengine.errors import CheckpointError
    from zoengine.paths import check_writable
    from zoengine.rundir import RunBusy, is_locked

    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"a file is in the way (not a folder): {run_dir}", field=field)
    if new_run and (run_dir / "config.toml").exists():
        if is_locked(run_dir):  # a live writer: refuse without touching its run
            raise RunBusy(f"{run_dir} is being written by another process", field="run")
    if new_run and (run_dir / "config.toml").exists() and has_resume_point(run_dir):
        # (a run that died before its first checkpoint is started afresh by the engine)
        raise CheckpointError(
            f"folder already holds a run: {run_dir} (continue it with `zoengine resume {run_dir}`, "
            "or choose another --output)",
            field=field,
        )
    check_writable(run_dir, field)


def _check_model_name(name: str) -> None:
    """The model name is a zoo model, an existing local model or a well-formed hub id (no download)."""
    from zoengine import assets
    from zoengine.models import resolve_source

    if name in getattr(assets, "CATALOGUE", {}):
        if assets.get_asset(name).kind != "model":
            resolve_source(name)  # raises the one-line "is a data set, not a model"
        return
    source, where, _, _ = resolve_source(name)
    if source == "hub":  # only its config (a few kB; cached for the engine): is the id reachable?
        import transformers

        from zoengine.errors import ModelError
        from zoengine.models import _zoo_names

        transformers.logging.set_verbosity_error()
        try:
            transformers.AutoConfig.from_pretrained(where)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load {name!r} from the hub (offline or unknown id); "
                f"zoo models that work offline: {', '.join(_zoo_names())}",
                field="model.name",
            ) from exc


def _preflight(cfg: RunConfig) -> tuple[Path, Any]:
    """Everything a user can get wrong is refused here, before the run directory is touched:
    the model name and device, the output folder and the data (returned, so it is read once)."""
    from zoengine.engine import new_run_dir
    from zoengine.models import resolve_device
    from zoengine.tasks import load_task

    _check_model_name(cfg.model.name)
    resolve_device(cfg.model.device)
    run_dir = new_run_dir(cfg)
    if _rank() == 0:  # under torchrun the other ranks never write the folder (rank 0 may be creating it)
        check_output_dir(run_dir)
    task = load_task(cfg.task)
    if not task.train:
        raise ZOError("the training split is empty", field="task.n_train")
    return run_dir, task


def _rank() -> int:
    """This process's rank under torchrun (0 without it)."""
    return int(os.environ.get("RANK", "0") or 0)


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def _launch(nproc: int, argv: list[str]) -> int:
    """Re-run this command as ``nproc`` ranks under torchrun (python -m torch.distributed.run);
    torchrun ends every rank when one fails, and its exit status is returned."""
    import subprocess

    if nproc < 1:
        raise ZOError(f"must be >= 1 (got {nproc})", field="--nproc")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd += ["-m", "zoengine", *argv]
    print(f"launching {nproc} processes: {' '.join(cmd[1:])}", file=sys.stderr)
    proc = subprocess.Popen(cmd)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the ranks got the Ctrl-C too: they stop and save; wait for them
            continue


def _strip_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _finish_rank(code: int) -> int:
    """Leave the torchrun job cleanly (a no-op in a single process).

    After a run that ended well every rank meets at a barrier, then destroys the process group.
    A worker then leaves with ``os._exit``: Python's interpreter teardown, with gloo's threads
    still about, aborted a finished rank (SIGABRT, "terminate called without an active
    exception") in about 1 of 30 two-rank runs here, and torchrun then reports the whole job
    as failed. Everything a rank writes is on disk before this point (atomic writes)."""
    import torch.distributed

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return code
    if code == 0:
        try:
            torch.distributed.barrier()
        except Exception:  # a peer that failed has already said why; leave anyway
            code = 1
    torch.distributed.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_train(args: argparse.Namespace) -> int:
    from zoengine.engine import Run

    cfg = build_config(args)
    if args.dry_run:
        print(cfg.to_toml(), end="")
        return 0
    nproc = args.nproc if args.nproc is not None else cfg.run.nproc  # the flag wins over run.nproc
    if nproc < 1:
        raise ZOError(f"must be >= 1 (got {nproc})", field="--nproc")
    run_dir, task = _preflight(cfg)
    if nproc > 1 and not _launched():  # every rank must write to the folder checked here
        argv = _strip_nproc(list(args.argv))
        return _launch(nproc, [*argv, "--output", str(run_dir)] if cfg.run.output_dir is None else argv)
    run = Run(cfg, run_dir)
    run.task = task
    return _finish_rank(_watch(run, args.quiet or _rank() != 0))


def cmd_resume(args: argparse.Namespace) -> int:
    from zoengine.engine import Run

    run = Run.resume_from(args.run_dir)
    check_output_dir(run.run_dir, "run", new_run=False)
    if (args.nproc or 1) > 1 and not _launched():
        return _launch(args.nproc, _strip_nproc(list(args.argv)))
    return _finish_rank(_watch(run, args.quiet or _rank() != 0))


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


def _checkpoint_choice(value: str) -> str:
    if value in ("best", "last") or value.isdigit():
        return value
    raise argparse.ArgumentTypeError(f"must be best, last or a step number (got {value!r})")


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
        try:
            lrs = [float(x) for x in args.lrs.split(",") if x.strip()]
        except ValueError:
            raise ZOError(f"expected comma-separated numbers (got {args.lrs!r})", field="--lrs") from None
    elif args.center is not None:
        lrs = lr_grid(args.center, args.candidates)
    eps_values = None
    if args.eps_grid:
        try:
            eps_values = [float(x) for x in args.eps_grid.split(",") if x.strip()]
        except ValueError:
            raise ZOError(f"expected comma-separated numbers (got {args.eps_grid!r})", field="--eps-grid") from None
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})")
    return value


def cmd_methods(args: argparse.Namespace) -> int:
    from zoengine import adapters, optim

    print("optimizers (memory: persistent bytes per trainable parameter beyond its float32 weight):")
    for name, spec in getattr(optim, "OPTIMIZERS", {}).items():
        print(f"  {name:<12} {getattr(spec, 'description', '')}")
        print(f"  {'':<12}   memory: +{spec.bytes_per_trainable()} B/param; {spec.memory}")
        print(f"  {'':<12}   queries per step: {spec.queries_text()}")
    print("adapters:")
    for name, spec in getattr(adapters, "ADAPTERS", {}).items():
        print(f"  {name:<12} {getattr(spec, 'description', '')}")
    return 0


def _add_nproc_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="processes (ranks) to start with torchrun on this machine, e.g. one per GPU "
        "(default: run.nproc of the config for train, else 1)",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoengine", description="Zeroth-order fine-tuning of language models.")
    parser.add_argument("--version", action="version", version=f"zoengine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a config")
    _add_config_flags(p)
    p.add_argument("--dry-run", action="store_true", help="print the validated config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_nproc_flag(p)
    p.add_argument("--parallel", choices=("data", "query"), help="with --nproc: split the batch or the queries")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a stopped run from its last checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--quiet", action="store_true")
    _add_nproc_flag(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("eval", help="evaluate a config zero-shot, or a run's best checkpoint")
    _add_config_flags(p)
    p.add_argument("--run", help="run directory (evaluates its best checkpoint)")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.add_argument("--checkpoint", default="best", choices=["best", "last"], help="with --run")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export a run's adapter")
    p.add_argument("run_dir")
    p.add_argument("--format", default="native", choices=EXPORT_FORMATS, help=" | ".join(EXPORT_FORMATS))
    p.add_argument("--out", help="destination folder, absent or empty (default: RUN/exports/FORMAT)")
    p.add_argument(
        "--force", action="store_true", help="replace what --out holds (atomically: old or new, never a mix)"
    )
    p.add_argument(
        "--checkpoint",
        default="best",
        type=_checkpoint_choice,
        metavar="best|last|STEP",
        help="which checkpoint (default best; STEP: the step of one the run keeps)",
    )
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16", "float16"], help="merged: dtype of the weights (default: the base's)"
    )
    p.add_argument(
        "--gguf-type", dest="gguf_type", default="f16", choices=["f32", "f16", "q8_0"], help="gguf: tensor type"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--home", help="runs home (default: the user data dir)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("tune", help="pick lr (and eps) by short runs on the same batches")
    _add_config_flags(p)
    p.add_argument("--tune-steps", dest="tune_steps", type=int, default=20, help="steps per candidate")
    p.add_argument("--candidates", type=int, default=5, help="lr values on the log grid")
    p.add_argument("--center", type=float, help="centre of the lr grid (default: the config's or calibrated lr)")
    p.add_argument("--lrs", help="explicit comma-separated lr values instead of a grid")
    p.add_argument("--eps-grid", dest="eps_grid", help="comma-separated eps values to sweep too")
    p.add_argument("--dev-examples", dest="dev_examples", type=int, default=96, help="held-out examples scored")
    p.add_argument("--write", help="write the config with the tuned lr/eps to this TOML file")
    p.add_argument("--force", action="store_true", help="overwrite --write")
    p.add_argument("--quiet", action="store_true", help="no per-candidate lines or plot")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("probe", help="measure memory of weights, forward, ZO step, first-order step")
    p.add_argument("model", help="zoo name, hub id, local dir or .gguf")
    p.add_argument("--adapter", default="lora", help="adapter of the two training steps (default lora)")
    p.add_argument("--batch", type=_positive_int, default=8, help="rows of the synthetic batch (default 8)")
    p.add_argument("--seq", type=_positive_int, default=64, help="tokens per row (default 64)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--device-map", dest="device_map", help="none | auto | JSON table module -> device")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="e.g. adapter.r=8")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("methods", help="list optimizers and adapters")
    p.set_defaults(func=cmd_methods)

    try:
        from zoengine import assets

        assets.add_cli(sub)
    except (ImportError, AttributeError):
        pass
    return parser


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Crash tracebacks from the library go to the *current* stderr; user errors and warnings are
    printed once by the CLI itself (without a handler, logging's last resort printed them again)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _route_logs() -> None:
    lib = logging.getLogger("zoengine")
    if not any(isinstance(h, _StderrHandler) for h in lib.handlers):
        handler = _StderrHandler()
        handler.setLevel(logging.ERROR)
        lib.addHandler(handler)


FS_FIELDS = {"train": "run.output_dir", "resume": "run", "export": "--out", "eval": "run"}


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 ok, 1 a crash or a diverged run, 2 bad input (one line), 130 Ctrl-C."""
    from zoengine.errors import filesystem_error

    _route_logs()
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what --nproc re-runs under torchrun
        return int(args.func(args) or 0)
    except ZOError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # the file system refused: read-only, full, a file in the way
        command = getattr(locals().get("args"), "command", None)
        err = filesystem_error(
            exc, getattr(exc, "filename", None) or "", FS_FIELDS.get(command or "", "file")
        )
        assert err is not None
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
