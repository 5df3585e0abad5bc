"""One way to describe a setting: type, default, range, choices and help, on a dataclass field.

Every settings table is a dataclass whose fields come from :func:`setting`: the run config's
sections (``zoengine.config``), each optimizer's options (``zoengine.optim``) and each adapter's
options (``zoengine.adapters``). One coercer (:func:`coerce`) turns TOML values and command-line
text into the declared type, one checker (:func:`check`) applies the range and choices with a
one-line ``ConfigError`` naming the field, and :func:`describe` lists the fields for everything
that shows them: ``zoengine methods``, the CLI's flag help and the app's form. A method's schema is
therefore the only place its defaults, ranges and help are written.

Why dataclasses and not pydantic: the config is already plain dataclasses serialised to TOML,
the checks we need are a handful of bounds and choices, and the error format is ours
(``error: <field>: <what is allowed>``), so one small coercer is simpler than adapting pydantic's
error tree to it, and it adds no dependency.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

from zoengine.errors import ConfigError

_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    *,
    help: str,
    choices: tuple[str, ...] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    key: str | None = None,
    parse: Any = None,
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with its help, allowed values and bounds (``ge``/``gt``/``le``/``lt``).

    ``key`` is the name users write when it cannot be a Python name (SoRA's ``lambda``); ``parse``
    replaces the coercer for a field with a shape of its own (``model.device_map``)."""
    meta = {
        "help": help,
        "choices": choices,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "key": key,
        "parse": parse,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def key_of(f: dataclasses.Field[Any]) -> str:
    """The name a user writes for field ``f`` (its ``key`` if set, else the attribute name)."""
    return f.metadata.get("key") or f.name


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None


# --- coercion: TOML values and typed text to the declared type ---------------------------------


def parse_scalar(text: str) -> Any:
    """Parse a command-line value as TOML ("1e-6", "true", "[1, 2]"), falling back to the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    stripped = text.strip().replace("_", "")
    if re.fullmatch(r"[+-]?0\d+", stripped):  # "05": TOML refuses leading zeros, people type them
        return int(stripped)
    if re.fullmatch(r"[+-]?0\d+(\.\d+)?([eE][+-]?\d+)?", stripped):
        return float(stripped)
    return text


def parse_mapping(text: str) -> Any:
    """A table typed on a command line: TOML ``{a = "x"}``, JSON ``{"a": "x"}`` or ``a=x, b=y``."""
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        k, sep, word = item.partition("=") if "=" in item else item.partition(":")
        if not sep or not k.strip() or not word.strip():
            return text
        out[k.strip().strip("\"'")] = word.strip().strip("\"'")
    return out or text


def type_text(f: dataclasses.Field[Any]) -> str:
    return str(f.type)


def coerce(dotted: str, value: Any, f: dataclasses.Field[Any]) -> Any:
    """Convert ``value`` to the declared type of ``f`` or raise a one-line ConfigError.

    Strings (a command line, the app's form) are parsed as TOML first; "none"/"null" (and "auto"
    for a field that may be empty) mean empty where the type allows None."""
    if f.metadata.get("parse") is not None:
        return f.metadata["parse"](value)
    kind = type_text(f)
    optional = "None" in kind
    if isinstance(value, str) and not kind.startswith("str"):
        value = parse_scalar(value)
    if value is None or (
        isinstance(value, str) and optional and value.lower() in ("", "none", "null", "auto")
    ):
        if optional:
            return None
        raise ConfigError("must not be empty", field=dotted)
    try:
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            raise TypeError
        if kind.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind.startswith("list[int]"):
            if isinstance(value, str):
                value = [v for v in re.split(r"[,\s]+", value.strip("[]() ")) if v]
            if not isinstance(value, list | tuple) or any(isinstance(v, bool) for v in value):
                raise TypeError
            return [int(v) for v in value]
        if kind.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
            ):
                raise TypeError
            return [str(v) for v in value]
        if kind.startswith("dict"):
            if isinstance(value, str):
                value = parse_mapping(value)
            if not isinstance(value, dict) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
            ):
                raise TypeError
            return {str(k).strip(): str(v).strip() for k, v in value.items()} or None
        if kind.startswith("str"):
            if isinstance(value, list | dict | bool):
                raise TypeError
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"expected {expected_text(f)} (got {value!r})", field=dotted) from None
    return value


def expected_text(f: dataclasses.Field[Any]) -> str:
    kind = type_text(f).split(" |")[0]
    if kind.startswith("dict"):
        return 'a table of value = "word", e.g. {neg = "terrible", pos = "great"}'
    words = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "list[int]": "a list of integers",
        "list[str]": "a list of strings",
    }
    return words.get(kind, kind)


# --- range and choices ---------------------------------------------------------------------------


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def allowed_text(f: dataclasses.Field[Any]) -> str:
    """What ``f`` allows, as the error and the help say it: "one of a, b", "> 0", "in [0, 1)"."""
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(m["choices"])
    lo = (m.get("ge"), "[") if m.get("ge") is not None else (m.get("gt"), "(")
    hi = (m.get("le"), "]") if m.get("le") is not None else (m.get("lt"), ")")
    if lo[0] is not None and hi[0] is not None:
        return f"in {lo[1]}{_num(lo[0])}, {_num(hi[0])}{hi[1]}"
    if lo[0] is not None:
        return f"{'>=' if lo[1] == '[' else '>'} {_num(lo[0])}"
    if hi[0] is not None:
        return f"{'<=' if hi[1] == ']' else '<'} {_num(hi[0])}"
    return ""


def in_range(value: Any, f: dataclasses.Field[Any]) -> bool:
    m = f.metadata
    if value is None or isinstance(value, bool | str | list | dict):
        return m.get("choices") is None or value is None or value in m["choices"]
    return not (
        (m.get("ge") is not None and not value >= m["ge"])
        or (m.get("gt") is not None and not value > m["gt"])
        or (m.get("le") is not None and not value <= m["le"])
        or (m.get("lt") is not None and not value < m["lt"])
    )


def check(dotted: str, value: Any, f: dataclasses.Field[Any]) -> Any:
    """``value`` if it is within ``f``'s choices and bounds, else a one-line ConfigError."""
    if isinstance(value, list) and f.metadata.get("ge") is not None:  # list[int]: each element
        if not value or any(not v >= f.metadata["ge"] for v in value):
            raise ConfigError(f"expected integers >= {_num(f.metadata['ge'])} (got {value!r})", field=dotted)
        return value
    if (
        isinstance(value, float)
        and not math.isfinite(value)
        and any(f.metadata.get(b) is not None for b in ("ge", "gt", "le", "lt"))
    ):
        raise ConfigError(f"must be a finite number {allowed_text(f)} (got {value!r})", field=dotted)
    if not in_range(value, f):
        raise ConfigError(f"must be {allowed_text(f)} (got {value!r})", field=dotted)
    return value


def check_instance(section: str, obj: Any) -> None:
    """Range-check every field of a settings dataclass (after ``setattr`` from a form or a file)."""
    for f in dataclasses.fields(obj):
        check(f"{section}.{key_of(f)}", getattr(obj, f.name), f)


def build(cls: type[Any], values: dict[str, Any], section: str, owner: str) -> Any:
    """``cls`` from a flat dict of user keys: unknown keys, wrong types and out-of-range values
    raise a ConfigError naming ``section.key``; then the class's own cross-field ``check()``."""
    fields = {key_of(f): f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for k, value in values.items():
        if k not in fields:
            allowed = ", ".join(fields) or "none"
            raise ConfigError(f"unknown option for {owner}; allowed: {allowed}", field=f"{section}.{k}")
        f = fields[k]
        kwargs[f.name] = check(f"{section}.{k}", coerce(f"{section}.{k}", value, f), f)
    obj = cls(**kwargs)
    if hasattr(obj, "check"):
        obj.check()
    return obj


def as_options(obj: Any) -> dict[str, Any]:
    """A built settings object as ``{user key: value}``."""
    return {key_of(f): getattr(obj, f.name) for f in dataclasses.fields(obj)}


# --- description: what `zoengine methods`, the CLI help and the app's form show -----------------


@dataclass(frozen=True)
class Setting:
    """One field as shown to a user."""

    key: str
    default: Any
    help: str
    type: str
    allowed: str
    choices: tuple[str, ...] = ()

    def default_text(self) -> str:
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)

    def help_text(self) -> str:
        """The help with what is allowed, as every surface shows it (form, CLI, methods)."""
        said = self.allowed in self.help or (self.choices and all(c in self.help for c in self.choices))
        return self.help if not self.allowed or said else f"{self.help} ({self.allowed})"

    def line(self) -> str:
        """``key = default  help (allowed)`` as ``zoengine methods`` prints it."""
        return f"{self.key} = {self.default_text()}  {self.help_text()}"


def describe(cls: type[Any] | Any, skip: tuple[str, ...] = ()) -> list[Setting]:
    """Every field of a settings dataclass, in declaration order, except ``skip``."""
    return [
        Setting(
            key_of(f),
            default_of(f),
            str(f.metadata.get("help", "")),
            type_text(f),
            allowed_text(f),
            tuple(f.metadata.get("choices") or ()),
        )
        for f in dataclasses.fields(cls)
        if key_of(f) not in skip
    ]
