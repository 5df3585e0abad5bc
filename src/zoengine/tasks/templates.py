"""Prompt templates: parse ``{column}``/``{label}`` placeholders, render them, check them against columns."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from zoengine.errors import DataError

LABEL = "label"  # the placeholder that marks the option slot

Segment = tuple[str, str | None]  # (literal text, or "" with a column name)


@lru_cache(maxsize=128)
def parse_template(template: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """Split a template into the segments before and after ``{label}`` (cached: called per example)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DataError(f"malformed template {template!r}: {exc}", field="task.template") from None
    head: list[Segment] = []
    tail: list[Segment] = []
    seen_label = False
    for literal, name, spec, conversion in parts:
        target = tail if seen_label else head
        if literal:
            target.append((literal, None))
        if name is None:
            continue
        if spec or conversion:
            raise DataError(
                f"placeholders take no format spec or conversion (got {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}})",
                field="task.template",
            )
        if not name.strip():
            raise DataError("empty placeholder {}; use {column}", field="task.template")
        if name == LABEL:
            if seen_label:
                raise DataError("{label} may appear only once", field="task.template")
            seen_label = True
            continue
        target.append(("", name))
    return tuple(head), tuple(tail)


def render(segments: Sequence[Segment], fields: Mapping[str, str]) -> str:
    return "".join(text if name is None else fields.get(name, "") for text, name in segments)


def template_columns(template: str) -> list[str]:
    """Column placeholders of a template in order of appearance, without ``{label}``."""
    head, tail = parse_template(template)
    out: list[str] = []
    for _, name in (*head, *tail):
        if name is not None and name not in out:
            out.append(name)
    return out


def check_template(template: str, columns: Sequence[str], label_column: str | None) -> list[str]:
    """Every placeholder must be a column and at least one must exist; returns the placeholders."""
    if "{" not in template:
        raise DataError("template needs a {column} placeholder such as {text}", field="task.template")
    used = template_columns(template)
    if not used:
        raise DataError(
            f"template needs a {{column}} placeholder besides {{label}}; columns: {short_list(columns)}",
            field="task.template",
        )
    for name in used:
        if label_column is not None and name == label_column:
            raise DataError(
                f"{{{name}}} is the label column; use {{label}} to mark where the label word goes",
                field="task.template",
            )
        if name not in columns:
            raise DataError(
                f"unknown column {{{name}}}; columns: {short_list(columns)}", field="task.template"
            )
    return used


def short_list(items: Sequence[Any], limit: int = 12) -> str:
    """Comma-separated, cut at ``limit`` so an error about a wide table stays one line."""
    shown = ", ".join(str(i) for i in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "") if items else "(none)"
