"""What several commands share: exit statuses, the config flags and the ``RunConfig`` they
build, the ``--nproc`` flag and argparse value types."""

from __future__ import annotations

import argparse

from zoengine.config import RunConfig
from zoengine.errors import ZOError

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


def _add_nproc_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="processes (ranks) to start with torchrun on this machine, e.g. one per GPU "
        "(default: run.nproc of the config for train, else 1)",
    )


def _checkpoint_choice(value: str) -> str:
    if value in ("best", "last") or value.isdigit():
        return value
    raise argparse.ArgumentTypeError(f"must be best, last or a step number (got {value!r})")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})")
    return value
