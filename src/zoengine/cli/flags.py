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


def flag_help(key: str) -> str:
    """A config flag's help: the config schema's help, range and default for ``key``."""
    from zoengine import schema

    section, _, name = key.partition(".")
    setting = next(s for s in schema.describe(type(getattr(RunConfig(), section))) if s.key == name)
    default = f"; default {setting.default}" if setting.default not in (None, "", []) else ""
    return f"{setting.help_text()} ({key}{default})".replace("%", "%%")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--set`` and one flag per ``FLAG_KEYS`` entry, its help from the schema."""
    p.add_argument("--config", help="run config TOML")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override any config key (repeatable); method options: `zoengine methods NAME`",
    )
    for flag, key in FLAG_KEYS.items():
        if flag != "parallel":  # train's own flag, with its choices
            p.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help=flag_help(key))


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
