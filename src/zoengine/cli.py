"""Headless command line: ``zoengine train | resume | eval | export | runs | assets | methods``.

    zoengine train --config examples/rotten-tomatoes-mezo.toml --set optimizer.lr=1e-6
    zoengine runs
    zoengine export RUN_DIR --format peft-lora --out ./my-adapter

Every user error prints one line, ``error: <field>: <what is allowed>``, and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zoengine.config import RunConfig
from zoengine.errors import ZOError

EXIT_USAGE = 2

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
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.exit(EXIT_USAGE, f"error: {message}\n")


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

    from zoengine.events import EvalDone, LogMessage, RunInfo, StatusChanged, StepLogged

    bar = None
    postfix: dict[str, str] = {}
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
            elif isinstance(ev, EvalDone):
                postfix[f"{ev.split}_acc"] = f"{ev.accuracy:.3f}"
                msg = f"step {ev.step}: {ev.split} loss {ev.loss:.4f} accuracy {ev.accuracy:.4f} ({ev.examples} examples)"
                (bar.write(msg) if bar is not None else print(msg, file=sys.stderr))
            elif isinstance(ev, LogMessage) and ev.level != "info":
                text = f"{ev.level}: {ev.text}"
                (bar.write(text) if bar is not None else print(text, file=sys.stderr))
            elif isinstance(ev, StatusChanged) and ev.status in ("finished", "stopped", "failed"):
                break
    except KeyboardInterrupt:
        print("\ninterrupted: stopping and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        run.stop(save=True)
    finally:
        run.join()
        if bar is not None:
            bar.close()
    if run.status == "failed":
        print(f"error: {run.error}", file=sys.stderr)
        return EXIT_USAGE if run.error_is_user else 1
    summary = f"{run.status}: {run.step} steps, run dir {run.run_dir}"
    if run.best_dev_accuracy is not None:
        summary += f", best dev accuracy {run.best_dev_accuracy:.4f}"
    if run.test_result:
        summary += f", test accuracy {run.test_result['accuracy']:.4f}"
    print(summary)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from zoengine.engine import Run

    cfg = build_config(args)
    if args.dry_run:
        print(cfg.to_toml(), end="")
        return 0
    return _watch(Run(cfg), args.quiet)


def cmd_resume(args: argparse.Namespace) -> int:
    from zoengine.engine import Run

    return _watch(Run.resume_from(args.run_dir), args.quiet)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a config's model (zero-shot) or a run's best checkpoint on a split."""
    from zoengine.evaluation import evaluate

    result = evaluate(build_config(args) if not args.run else None, run_dir=args.run, split=args.split)
    print(
        f"{args.split}: loss {result['loss']:.4f} accuracy {result['accuracy']:.4f} ({result['examples']} examples)"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from zoengine.exporting import export_run

    files = export_run(args.run_dir, args.format, args.out, checkpoint=args.checkpoint)
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
        print(
            f"{r.status:<11} {r.steps_done:>5}/{r.total_steps:<5} {dev:>7} {test:>8}  {r.adapter:<8} {r.optimizer:<11} {r.path}"
        )
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from zoengine import adapters, optim

    print("optimizers:")
    for name, spec in getattr(optim, "OPTIMIZERS", {}).items():
        print(f"  {name:<12} {getattr(spec, 'description', '')}")
    print("adapters:")
    for name, spec in getattr(adapters, "ADAPTERS", {}).items():
        print(f"  {name:<12} {getattr(spec, 'description', '')}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="zoengine", description="Zeroth-order fine-tuning of language models.")
    parser.add_argument("--version", action="version", version="zoengine 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a config")
    _add_config_flags(p)
    p.add_argument("--dry-run", action="store_true", help="print the validated config and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a stopped run from its last checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("eval", help="evaluate a config zero-shot, or a run's best checkpoint")
    _add_config_flags(p)
    p.add_argument("--run", help="run directory (evaluates its best checkpoint)")
    p.add_argument("--split", default="test", choices=["dev", "test"])
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export a run's adapter")
    p.add_argument("run_dir")
    p.add_argument("--format", default="native", help="native | peft-lora | merged")
    p.add_argument("--out", help="destination directory (default: RUN/exports/FORMAT)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--home", help="runs home (default: the user data dir)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("methods", help="list optimizers and adapters")
    p.set_defaults(func=cmd_methods)

    try:
        from zoengine import assets

        assets.add_cli(sub)
    except (ImportError, AttributeError):
        pass
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZOError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
