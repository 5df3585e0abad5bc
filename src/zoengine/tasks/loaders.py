"""``load_task``: read a source, check template and label words against it, make the splits."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoengine.config import TaskConfig
from zoengine.errors import ConfigError, DataError
from zoengine.tasks.labels import LabelMap, file_labels, int_labels, label_value, resolve_label_words
from zoengine.tasks.registry import BUILTIN_TEMPLATES, ZOO_TASKS, Prepare, list_tasks
from zoengine.tasks.sources import (
    Held,
    Row,
    column_names,
    expand_multirc,
    flatten,
    read_source,
    read_zoo,
)
from zoengine.tasks.splits import make_splits
from zoengine.tasks.task import Example, Task
from zoengine.tasks.templates import check_template, short_list


def load_task(cfg: TaskConfig) -> Task:
    """Read the data, check template and label words against it, and make the seeded splits."""
    key = cfg.name.strip().lower()
    if key in ZOO_TASKS:
        return _load_zoo(key, cfg)
    mezo_key = key.replace("-", "").replace("_", "")
    if mezo_key in BUILTIN_TEMPLATES:
        return _load_builtin(mezo_key, cfg)
    if key == "file":
        return _load_file(cfg)
    allowed = [name for name, _ in list_tasks()]
    raise ConfigError(f"unknown task {cfg.name!r}; allowed: {', '.join(allowed)}", field="task.name")


def _load_zoo(name: str, cfg: TaskConfig) -> Task:
    spec = ZOO_TASKS[name]
    rows, label_names, text_columns = read_zoo(name)
    columns = column_names(rows, exclude="label")
    template = cfg.template or spec.template
    used = check_template(template, columns, "label")
    words = resolve_label_words(cfg, [spec.words.get(n, n) for n in label_names], label_names)
    pool = _examples(rows, list(dict.fromkeys([*text_columns, *used])), "label", int_labels(label_names, {}))
    return _finish(
        cfg,
        name=name,
        template=template,
        label_words=words,
        label_names=label_names,
        kind="classification",
        description=spec.description,
        pool=pool,
        test_pool=None,
        source=f"zoo:{name}",
    )


def _load_builtin(name: str, cfg: TaskConfig) -> Task:
    spec = BUILTIN_TEMPLATES[name]
    if spec.kind == "multiple_choice" and cfg.label_words:
        raise DataError(
            f"{name} is multiple choice; its options come from the data, not label words",
            field="task.label_words",
        )
    rows, held, source = read_source(cfg.path, spec.hub_id, spec.hub_config)
    if name == "multirc":
        rows, held = expand_multirc(rows), {k: expand_multirc(v) for k, v in held.items()}
    rows, held = flatten(rows), {k: flatten(v) for k, v in held.items()}
    columns = column_names(rows, exclude=cfg.label_column)
    template = cfg.template or spec.template
    derived = ["connective"] if name == "copa" else []  # made by _prepare_copa from 'question'
    # a user template decides which text columns are needed; options and COPA's 'question' always are
    needed = (
        spec.columns if cfg.template is None else (*spec.choice_columns, *(["question"] if derived else []))
    )
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"{source} lacks column(s) {', '.join(missing)} that the {name} task needs; columns: {short_list(columns)}",
            field="task.path",
        )
    if cfg.label_column not in column_names(rows):
        raise DataError(
            f"no column {cfg.label_column!r} in {source}; columns: {short_list(columns)}",
            field="task.label_column",
        )
    used = check_template(template, [*columns, *derived], cfg.label_column)
    label_names = list(spec.label_names)
    words = (
        []
        if spec.kind == "multiple_choice"
        else resolve_label_words(cfg, list(spec.label_words), label_names)
    )
    keep = list(dict.fromkeys([*needed, *(c for c in used if c not in derived)]))
    to_int = int_labels(label_names, spec.label_aliases)
    pool = _examples(rows, keep, cfg.label_column, to_int, spec.prepare)
    dev_pool, test_pool = _held_pools(
        held, lambda r, off: _examples(r, keep, cfg.label_column, to_int, spec.prepare, offset=off), len(rows)
    )
    return _finish(
        cfg,
        name=name,
        template=template,
        label_words=words,
        label_names=label_names,
        kind=spec.kind,
        description=spec.description,
        pool=pool,
        test_pool=test_pool,
        dev_pool=dev_pool,
        source=source,
        choice_columns=list(spec.choice_columns),
    )


def _load_file(cfg: TaskConfig) -> Task:
    if not cfg.path:
        raise DataError("task 'file' needs a CSV, TSV, JSONL, JSON or parquet file", field="task.path")
    rows, held, source = read_source(cfg.path, None, None)
    columns = column_names(rows, exclude=cfg.label_column)
    if cfg.label_column not in column_names(rows):
        raise DataError(
            f"no column {cfg.label_column!r} in {source}; columns: {short_list(columns)}",
            field="task.label_column",
        )
    text_columns = list(cfg.text_columns)
    for col in text_columns:
        if col not in columns:
            raise DataError(
                f"unknown column {col!r}; columns: {short_list(columns)}", field="task.text_columns"
            )
    notes: list[str] = []
    template = cfg.template
    if template is None:
        if not text_columns:
            text_columns = [c for c in ("text", "sentence") if c in columns][:1]
        if not text_columns:
            raise DataError(
                f"no 'text' or 'sentence' column; set task.text_columns or task.template (columns: {short_list(columns)})",
                field="task.text_columns",
            )
        template = " ".join(f"{{{c}}}" for c in text_columns) + " Answer: {label}"
        notes.append(f"no task.template given; using {template!r}")
    used = check_template(template, columns, cfg.label_column)
    raw = [label_value(r.get(cfg.label_column)) for r in rows + [r for v in held.values() for r in v]]
    label_names, words, to_int = file_labels(cfg, raw)
    keep = list(dict.fromkeys([*used, *text_columns]))
    pool = _examples(rows, keep, cfg.label_column, to_int)
    dev_pool, test_pool = _held_pools(
        held, lambda r, off: _examples(r, keep, cfg.label_column, to_int, offset=off), len(rows)
    )
    return _finish(
        cfg,
        name="file",
        template=template,
        label_words=words,
        label_names=label_names,
        kind="classification",
        description=f"{Path(source).name}: {cfg.label_column} from {', '.join(used)}",
        pool=pool,
        test_pool=test_pool,
        dev_pool=dev_pool,
        source=source,
        notes=notes,
    )


def _held_pools(
    held: Held, make: Callable[[list[Row], int], list[Example]], offset: int
) -> tuple[list[Example] | None, list[Example] | None]:
    """(dev, test) examples of the held-out files. A test file without labels (SuperGLUE's) does
    not count: then the val/dev file is the test split, as in MeZO."""
    pools: dict[str, list[Example]] = {}
    for key in ("dev", "test"):
        if held.get(key):
            pools[key] = make(held[key], offset)
            offset += len(held[key])
    dev, test = pools.get("dev") or None, pools.get("test") or None
    if test is None:
        return None, dev
    return dev, test


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _examples(
    rows: Sequence[Row] | None,
    columns: Sequence[str],
    label_column: str,
    to_int: LabelMap,
    prepare: Prepare | None = None,
    offset: int = 0,
) -> list[Example]:
    """Examples of the labelled rows; unlabelled ones (blank, -1) are skipped."""
    out: list[Example] = []
    for i, row in enumerate(rows or []):
        label = to_int(row.get(label_column))
        if label is None:
            continue
        fields = {c: _text(row.get(c)) for c in columns}
        if prepare is not None:
            fields = prepare(fields)
        out.append(Example(fields=fields, label=label, source_index=offset + i))
    return out


def _finish(
    cfg: TaskConfig,
    *,
    name: str,
    template: str,
    label_words: list[str],
    label_names: list[str],
    kind: str,
    description: str,
    pool: list[Example],
    test_pool: list[Example] | None,
    source: str,
    dev_pool: list[Example] | None = None,
    choice_columns: list[str] | None = None,
    notes: list[str] | None = None,
) -> Task:
    """Split the examples and wrap them, with the prompt and its words, in a ``Task``."""
    notes = list(notes or [])
    num_classes = len(choice_columns) if choice_columns else len(label_names)
    train, dev, test = make_splits(cfg, pool, test_pool, num_classes, label_names, notes, dev_pool)
    return Task(
        name=name,
        template=template,
        label_words=label_words,
        label_names=label_names,
        kind=kind,
        metric="accuracy",
        train=train,
        dev=dev,
        test=test,
        description=description,
        choice_columns=list(choice_columns or []),
        source=source,
        notes=notes,
    )
