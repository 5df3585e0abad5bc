"""Headless command line: ``zoengine train | resume | eval | export | runs | tune | probe | assets | methods``.

    zoengine train --config examples/rotten-tomatoes-mezo.toml --set optimizer.lr=1e-6
    zoengine runs
    zoengine export RUN_DIR --format peft-lora --out ./my-adapter

Every user error prints one line, ``error: <field>: <what is allowed>``, and exits with code 2.

This module holds the parser and the error handling; the commands live in ``train`` (train,
resume), ``commands`` (eval, export, runs, tune, probe, methods) and ``assets`` (the zoo), the
flags several commands share in ``flags``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from zoengine import __version__
from zoengine.cli.assets import add_assets_parser
from zoengine.cli.commands import cmd_eval, cmd_export, cmd_methods, cmd_probe, cmd_runs, cmd_tune
from zoengine.cli.flags import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    FLAG_KEYS,
    _add_config_flags,
    _add_nproc_flag,
    _checkpoint_choice,
    _positive_int,
    build_config,
)
from zoengine.cli.train import check_output_dir, cmd_resume, cmd_train
from zoengine.errors import ZOError
from zoengine.export_formats import FORMATS as EXPORT_FORMATS

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "FLAG_KEYS",
    "build_config",
    "check_output_dir",
    "main",
    "make_parser",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        # one line, exit 2 via main(): "error: --format: invalid choice ..." (not "argument --format")
        raise ZOError(message.removeprefix("argument "))


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

    p = sub.add_parser("methods", help="optimizers and adapters, with each one's options")
    p.add_argument("name", nargs="?", help="one optimizer or adapter: all its options, ranges and help")
    p.set_defaults(func=cmd_methods)

    add_assets_parser(sub)
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
    except BrokenPipeError:  # `zoengine methods | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the file system refused: read-only, full, a file in the way
        command = getattr(locals().get("args"), "command", None)
        err = filesystem_error(
            exc, getattr(exc, "filename", None) or "", FS_FIELDS.get(command or "", "file")
        )
        assert err is not None
        print(f"error: {err.one_line()}", file=sys.stderr)
        return EXIT_USAGE

