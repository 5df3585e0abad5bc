"""The setup form's text and the ``RunConfig`` it describes, both ways (no UI here).

Every field holds text; ``build_config`` parses it with ``RunConfig.set``, the parser behind the
CLI's ``--set``, so the form and the command line accept the same values and give the same errors,
each naming its field. ``cli_command`` writes a config back as that command line, and
``without_default_options`` drops the method options the form only filled in with their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoengine.config import RunConfig
from zoengine.errors import ConfigError

if TYPE_CHECKING:
    from zotui.catalog import MethodSpec

SECTIONS = ("model", "task", "adapter", "optimizer", "run")
EXTRA = "+options"  # pseudo key: method options not covered by a spec field, as "k=v, k=v"


def field_text(key: str, value: Any) -> str:
    """``as_text`` for the form: an unset lr is shown as "auto" (the calibrated default)."""
    if key == "optimizer.lr" and value is None:
        return "auto"
    return as_text(value)


def as_text(value: Any) -> str:
    """A config value as the form (and ``--set``) writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(map(str, value)) if all(isinstance(v, str) for v in value) else json.dumps(value)
    return str(value)


def _optional_keys() -> set[str]:
    """Dotted keys whose declared type allows None: an empty field means None for them."""
    cfg = RunConfig()
    out = set()
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(cfg, section)):
            if "None" in str(f.type):
                out.add(f"{section}.{f.name}")
    return out


OPTIONAL_KEYS = _optional_keys()
KNOWN_KEYS = {
    f"{section}.{f.name}" for section in SECTIONS for f in dataclasses.fields(getattr(RunConfig(), section))
}


def config_help(section: str, key: str) -> str:
    """The help text ``RunConfig`` declares for ``section.key`` ("" when none)."""
    cls = type(getattr(RunConfig(), section))
    for f in dataclasses.fields(cls):
        if f.name == key:
            return str(f.metadata.get("help", ""))
    return ""


def parse_extra(text: str) -> list[tuple[str, str]]:
    """``"rank=8, alpha=16, targets=[a, b]"`` → ``[("rank", "8"), ...]`` (commas inside [] kept)."""
    parts = [p.strip() for p in re.split(r",\s*(?=[A-Za-z_][\w.]*\s*=)", text) if p.strip()]
    out = []
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {part!r}", field=EXTRA)
        out.append((key.strip(), value.strip()))
    return out


def apply_field(cfg: RunConfig, key: str, value: str) -> None:
    """Set one field's text on ``cfg`` (raises ``ConfigError`` naming the field)."""
    section, _, name = key.partition(".")
    if name == EXTRA:
        for k, v in parse_extra(value):
            cfg.set(k if "." in k else f"{section}.{k}", v)
    elif not value.strip() and key in OPTIONAL_KEYS:
        cfg.set(key, None)
    elif not value.strip() and key not in KNOWN_KEYS:
        return  # an empty method option means "use the method's default"
    else:
        cfg.set(key, value)


def build_config(base: RunConfig, fields: Iterable[tuple[str, str]]) -> tuple[RunConfig, dict[str, str]]:
    """``base`` with every ``(key, text)`` field applied, and the error of each field that does not
    parse or validate (keys starting with "+" are the form's own pickers, not config)."""
    cfg = base.copy()
    cfg.adapter.options.clear()  # the form's option fields are the only source now
    cfg.optimizer.options.clear()
    errors: dict[str, str] = {}
    for key, value in fields:
        if key.startswith("+"):
            continue
        try:
            apply_field(cfg, key, value)
        except ConfigError as exc:
            errors[key] = exc.one_line()
    try:  # fields that did not parse keep their previous value, so the rest is still checked
        cfg.validate()
    except ConfigError as exc:
        errors.setdefault(exc.field or "config", exc.one_line())
    return cfg, errors


def without_default_options(
    cfg: RunConfig, adapters: Mapping[str, MethodSpec], optimizers: Mapping[str, MethodSpec]
) -> RunConfig:
    """``cfg`` without the method options the form filled in with their defaults: the tune cache
    is keyed on the options, and a CLI config that leaves them unset must find the same entry."""
    out = cfg.copy()
    for section, specs, method in (
        (out.adapter, adapters, out.adapter.method),
        (out.optimizer, optimizers, out.optimizer.name),
    ):
        spec = specs.get(method)
        defaults = {o.key: as_text(o.default) for o in spec.options} if spec else {}
        for key in [k for k, v in section.options.items() if defaults.get(k) == as_text(v)]:
            del section.options[key]
    return out


def cli_command(config: RunConfig, base: RunConfig, config_path: Path | None) -> str:
    """The ``zoengine train`` line equivalent to ``config`` (``--set`` for what differs from base)."""
    words = ["zoengine", "train"]
    if config_path is not None:
        words += ["--config", str(config_path)]
    new, old = config.to_dict(), base.to_dict()
    for section, values in new.items():
        for key, value in values.items():
            if (section, key) == ("run", "nproc"):
                continue  # --nproc, below
            if old.get(section, {}).get(key) != value:
                words += ["--set", f"{section}.{key}={_cli_value(value)}"]
    if config.run.nproc > 1 or config.run.nproc != base.run.nproc:
        words += ["--nproc", str(config.run.nproc)]
    return " ".join(shlex.quote(w) for w in words)


def _cli_value(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if isinstance(value, bool | list | dict):
        return json.dumps(value).replace("True", "true")
    return str(value)
