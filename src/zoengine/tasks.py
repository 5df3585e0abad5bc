"""Tasks: a data source, a prompt template, a verbalizer and a metric, split into train/dev/test.

ZO fine-tuning only works with prompts (MeZO, ZO-AdaMU), so every task is a template plus one
label word per class (classification) or a list of candidate continuations (multiple choice).
``load_task`` turns a ``TaskConfig`` into a ``Task`` with seeded, disjoint splits; the objective
scores ``task.prompt(ex) + option`` for each of ``task.options(ex)``.

Three sources:

* zoo data sets (``rotten-tomatoes``, ``tweet-sentiment``, ``bbc-news``), fetched by
  ``zoengine.assets`` as ``data.jsonl`` + ``meta.json``;
* the MeZO templates (``sst2 rte cb boolq wsc wic multirc copa``) over a local file with the
  SuperGLUE column names, a folder with ``train``/``val`` files, or a hub data set id;
* ``file``: any CSV/TSV/JSONL/JSON/parquet file with a user template such as
  ``"{review} All in all, it was {label}"``.

Templates use ``{column}`` placeholders; ``{label}`` marks where the option goes (at the end when
absent). Whitespace right before ``{label}`` is dropped from the prompt because every option
carries its own leading space, so MeZO's ``"...Yes or No?\\n{label}"`` is scored as
``"...Yes or No? Yes"``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import socket
import string
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from zoengine.config import TaskConfig
from zoengine.errors import ConfigError, DataError

__all__ = [
    "BUILTIN_TEMPLATES",
    "ZOO_TASKS",
    "Example",
    "Task",
    "TemplateSpec",
    "ZooSpec",
    "check_label_words",
    "list_tasks",
    "load_task",
]

LABEL = "label"  # the placeholder that marks the option slot
ZOO_HINT = "rotten-tomatoes, tweet-sentiment, bbc-news"
FILE_TYPES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SPLIT_NAMES = {"train": ("train",), "test": ("validation", "val", "dev")}  # hub splits
_FOLDER_SPLITS = {"train": ("train",), "dev": ("validation", "val", "dev"), "test": ("test",)}


# --- examples and tasks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One row: the column values a template needs, and the index of the right option."""

    fields: dict[str, str]
    label: int
    source_index: int = -1  # row position in its source, so splits can be checked and traced


@dataclass
class Task:
    """A prompt-based task with its splits; rendering is pure so previews match training."""

    name: str
    template: str
    label_words: list[str]
    label_names: list[str]
    kind: str
    metric: str
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    description: str
    choice_columns: list[str] = field(default_factory=list)  # multiple choice: columns holding options
    source: str = ""  # where the rows came from (zoo name, file path, hub id)
    notes: list[str] = field(default_factory=list)  # non-fatal facts worth showing (shrunk splits ...)

    def prompt(self, ex: Example) -> str:
        """Template text before ``{label}``, without trailing whitespace (options bring a space)."""
        head, _ = _parse_template(self.template)
        return _render(head, ex.fields).rstrip()

    def suffix(self, ex: Example) -> str:
        """Template text after ``{label}`` ("" or "." usually); masked LMs need it after the mask."""
        _, tail = _parse_template(self.template)
        return _render(tail, ex.fields) if tail else ""

    def options(self, ex: Example) -> list[str]:
        """Continuations to score, each with a leading space: label words or the candidates."""
        if self.kind == "multiple_choice":
            return [" " + ex.fields.get(col, "").strip() for col in self.choice_columns]
        return [" " + word.strip() for word in self.label_words]

    def render_full(self, ex: Example, option_index: int) -> str:
        """Prompt + option + suffix: exactly the text a causal LM scores, for previews."""
        return self.prompt(ex) + self.options(ex)[option_index] + self.suffix(ex)

    def split_sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test)}

    @property
    def num_classes(self) -> int:
        return len(self.choice_columns) if self.kind == "multiple_choice" else len(self.label_words)


# --- templates --------------------------------------------------------------------------------------

Segment = tuple[str, str | None]  # (literal text, or "" with a column name)


@lru_cache(maxsize=128)
def _parse_template(template: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
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


def _render(segments: Sequence[Segment], fields: Mapping[str, str]) -> str:
    return "".join(text if name is None else fields.get(name, "") for text, name in segments)


def template_columns(template: str) -> list[str]:
    """Column placeholders of a template in order of appearance, without ``{label}``."""
    head, tail = _parse_template(template)
    out: list[str] = []
    for _, name in (*head, *tail):
        if name is not None and name not in out:
            out.append(name)
    return out


def _check_template(template: str, columns: Sequence[str], label_column: str | None) -> list[str]:
    """Every placeholder must be a column and at least one must exist; returns the placeholders."""
    if "{" not in template:
        raise DataError("template needs a {column} placeholder such as {text}", field="task.template")
    used = template_columns(template)
    if not used:
        raise DataError(
            f"template needs a {{column}} placeholder besides {{label}}; columns: {_list(columns)}",
            field="task.template",
        )
    for name in used:
        if label_column is not None and name == label_column:
            raise DataError(
                f"{{{name}}} is the label column; use {{label}} to mark where the label word goes",
                field="task.template",
            )
        if name not in columns:
            raise DataError(f"unknown column {{{name}}}; columns: {_list(columns)}", field="task.template")
    return used


def _list(items: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(str(i) for i in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "") if items else "(none)"


# --- MeZO templates ---------------------------------------------------------------------------------

Prepare = Callable[[dict[str, str]], dict[str, str]]


@dataclass(frozen=True)
class TemplateSpec:
    """One MeZO task: prompt, verbalizer, label convention of the SuperGLUE/GLUE data, hub default."""

    template: str
    label_names: tuple[str, ...]  # in the data's label-index order
    label_words: tuple[str, ...]  # [] for multiple choice
    columns: tuple[str, ...]  # columns the rows must have
    description: str
    hub_id: str
    hub_config: str | None = None
    kind: str = "classification"
    choice_columns: tuple[str, ...] = ()
    label_aliases: Mapping[str, int] = field(default_factory=dict)  # string labels of the original files
    prepare: Prepare | None = None  # MeZO's per-example text fixes


def _prepare_boolq(f: dict[str, str]) -> dict[str, str]:
    """MeZO: the question gets a trailing "?" and a capital first letter."""
    q = f.get("question", "").strip()
    if not q.endswith("?"):
        q += "?"
    return {**f, "question": q[:1].upper() + q[1:]}


def _prepare_wsc(f: dict[str, str]) -> dict[str, str]:
    """MeZO lower-cases the pronoun span."""
    return {**f, "span2_text": f.get("span2_text", "").lower()}


def _copa_choice(text: str) -> str:
    """MeZO's "correct" capitalisation: the candidate continues a sentence, so lower its first word."""
    words = text.strip().split(" ")
    if words and words[0] != "I":
        words[0] = words[0].lower()
    return " ".join(words)


def _prepare_copa(f: dict[str, str]) -> dict[str, str]:
    """Premise without its final period, then "so" (effect) or "because" (cause), then a candidate."""
    question = f.get("question", "").strip().lower()
    if question not in ("cause", "effect"):
        raise DataError(
            f"COPA column 'question' must be 'cause' or 'effect' (got {question!r})", field="task.path"
        )
    premise = f.get("premise", "").rstrip()
    if premise.endswith("."):
        premise = premise[:-1]
    return {
        **f,
        "premise": premise,
        "connective": "so" if question == "effect" else "because",
        "choice1": _copa_choice(f.get("choice1", "")),
        "choice2": _copa_choice(f.get("choice2", "")),
    }


_BOOL = {"false": 0, "true": 1}
SUPERGLUE = "aps/super_glue"

BUILTIN_TEMPLATES: dict[str, TemplateSpec] = {
    "sst2": TemplateSpec(
        template="{sentence} It was {label}",
        label_names=("negative", "positive"),
        label_words=("terrible", "great"),
        columns=("sentence",),
        description="SST-2 movie-review sentiment (MeZO prompt: '<text> It was terrible/great')",
        hub_id="stanfordnlp/sst2",
        label_aliases={"negative": 0, "positive": 1},
    ),
    "rte": TemplateSpec(
        template='{premise}\nDoes this mean that "{hypothesis}" is true? Yes or No?\n{label}',
        label_names=("entailment", "not_entailment"),
        label_words=("Yes", "No"),
        columns=("premise", "hypothesis"),
        description="RTE textual entailment, SuperGLUE (Yes/No)",
        hub_id=SUPERGLUE,
        hub_config="rte",
        label_aliases={"entailment": 0, "not_entailment": 1},
    ),
    "cb": TemplateSpec(
        template='Suppose {premise} Can we infer that "{hypothesis}"? Yes, No, or Maybe?\n{label}',
        label_names=("entailment", "contradiction", "neutral"),
        label_words=("Yes", "No", "Maybe"),
        columns=("premise", "hypothesis"),
        description="CommitmentBank 3-way entailment, SuperGLUE (Yes/No/Maybe; MeZO uses n_dev = 100)",
        hub_id=SUPERGLUE,
        hub_config="cb",
        label_aliases={"entailment": 0, "contradiction": 1, "neutral": 2},
    ),
    "boolq": TemplateSpec(
        template="{passage} {question} {label}",
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("passage", "question"),
        description="BoolQ yes/no questions about a passage, SuperGLUE",
        hub_id=SUPERGLUE,
        hub_config="boolq",
        label_aliases=_BOOL,
        prepare=_prepare_boolq,
    ),
    "wsc": TemplateSpec(
        template='{text}\nIn the previous sentence, does the pronoun "{span2_text}" refer to {span1_text}? '
        "Yes or No?\n{label}",
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("text", "span1_text", "span2_text"),
        description="Winograd schema pronoun resolution, SuperGLUE (Yes/No)",
        hub_id=SUPERGLUE,
        hub_config="wsc.fixed",
        label_aliases=_BOOL,
        prepare=_prepare_wsc,
    ),
    "wic": TemplateSpec(
        template='Does the word "{word}" have the same meaning in these two sentences? Yes, No?\n'
        "{sentence1}\n{sentence2}\n{label}",
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("word", "sentence1", "sentence2"),
        description="Words in Context: same sense in two sentences?, SuperGLUE (Yes/No)",
        hub_id=SUPERGLUE,
        hub_config="wic",
        label_aliases=_BOOL,
    ),
    "multirc": TemplateSpec(
        template='{paragraph}\nQuestion: {question}\nI found this answer "{answer}". Is that correct? Yes or No?\n{label}',
        label_names=("false", "true"),
        label_words=("No", "Yes"),
        columns=("paragraph", "question", "answer"),
        description="MultiRC: is this answer to a question about a paragraph correct?, SuperGLUE",
        hub_id=SUPERGLUE,
        hub_config="multirc",
        label_aliases=_BOOL,
    ),
    "copa": TemplateSpec(
        template="{premise} {connective} {label}",
        label_names=("choice1", "choice2"),
        label_words=(),
        columns=("premise", "choice1", "choice2", "question"),
        description="COPA cause/effect, multiple choice: '<premise> so/because <candidate>' (MeZO uses n_dev = 100)",
        hub_id=SUPERGLUE,
        hub_config="copa",
        kind="multiple_choice",
        choice_columns=("choice1", "choice2"),
        prepare=_prepare_copa,
    ),
}


# --- zoo data sets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZooSpec:
    """Default prompt for a zoo data set; words are keyed by label name, so label order can change."""

    template: str
    words: Mapping[str, str]
    description: str


ZOO_TASKS: dict[str, ZooSpec] = {
    "rotten-tomatoes": ZooSpec(
        template="{text} It was {label}",
        words={"negative": "terrible", "positive": "great"},
        description="Rotten Tomatoes movie-review sentiment, 2 classes (MeZO SST-2 prompt, terrible/great)",
    ),
    "tweet-sentiment": ZooSpec(
        template="{text} The sentiment of this tweet is {label}",
        words={"negative": "negative", "neutral": "neutral", "positive": "positive"},
        description="Tweet sentiment, 3 classes: negative/neutral/positive",
    ),
    "bbc-news": ZooSpec(
        template="{text} Topic: {label}",
        words={n: n for n in ("business", "entertainment", "politics", "sport", "tech")},
        description="BBC News article topic, 5 classes: business/entertainment/politics/sport/tech",
    ),
}

FILE_DESCRIPTION = (
    "your own CSV/TSV/JSONL/JSON/parquet file: set task.path, task.template and task.label_words"
)


def _dataset_dir(name: str) -> Path:
    """Directory of a zoo data set (``data.jsonl`` + ``meta.json``); the seam tests patch."""
    try:
        from zoengine import assets
    except ImportError as exc:  # pragma: no cover - assets ships with the package
        raise DataError(f"zoo data sets are unavailable ({exc})", field="task.name") from None
    return Path(assets.ensure(name))


# --- public entry points ----------------------------------------------------------------------------


def list_tasks() -> list[tuple[str, str]]:
    """(name, one-line description) of every task, zoo first, for the app's picker."""
    out = [(name, spec.description) for name, spec in ZOO_TASKS.items()]
    out += [(name, spec.description) for name, spec in BUILTIN_TEMPLATES.items()]
    out.append(("file", FILE_DESCRIPTION))
    return out


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


def check_label_words(task: Task, tokenizer: Any) -> list[str]:
    """Raise when a label word tokenizes to nothing; return warnings for words a model scores badly.

    Each word is tokenized with its leading space, as it follows the prompt. Several tokens per
    word or a shared first token force the slower multi-token path (and break masked LMs).
    """
    if task.kind != "classification":
        return []
    warnings: list[str] = []
    firsts: dict[int, str] = {}
    unk = getattr(tokenizer, "unk_token_id", None)
    for word in task.label_words:
        ids = list(tokenizer(" " + word.strip(), add_special_tokens=False)["input_ids"])
        if not ids:
            raise DataError(f"label word {word!r} tokenizes to nothing", field="task.label_words")
        if unk is not None and unk in ids:
            warnings.append(f"label word {word!r} is unknown to the tokenizer")
        if len(ids) > 1:
            warnings.append(f"label word {word!r} spans {len(ids)} tokens")
        if ids[0] in firsts:
            warnings.append(f"label words {firsts[ids[0]]!r} and {word!r} share their first token")
        else:
            firsts[ids[0]] = word
    return warnings


# --- the three sources ------------------------------------------------------------------------------


def _load_zoo(name: str, cfg: TaskConfig) -> Task:
    spec = ZOO_TASKS[name]
    folder = _dataset_dir(name)
    meta_path, data_path = folder / "meta.json", folder / "data.jsonl"
    if not meta_path.is_file() or not data_path.is_file():
        raise DataError(
            f"zoo data set {name!r} is incomplete at {folder} (need meta.json and data.jsonl)",
            field="task.name",
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable {meta_path}: {exc}", field="task.name") from None
    label_names = [str(n) for n in meta.get("labels") or []]
    if len(label_names) < 2:
        raise DataError(f"{meta_path} lists fewer than two labels", field="task.name")
    try:
        rows = _read_table(data_path, "jsonl")
    except DataError as exc:  # there is no task.path for zoo data: point at the data set
        raise DataError(f"zoo data set {name!r}: {exc.message}", field="task.name") from None
    columns = _columns(rows, exclude="label")
    text_columns = [str(c) for c in meta.get("text_columns") or ["text"]]
    template = cfg.template or spec.template
    used = _check_template(template, columns, "label")
    words = _label_words(cfg, [spec.words.get(n, n) for n in label_names], label_names)
    pool = _examples(rows, list(dict.fromkeys([*text_columns, *used])), "label", _int_labels(label_names, {}))
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
    rows, held, source = _read_source(cfg.path, spec.hub_id, spec.hub_config)
    if name == "multirc":
        rows, held = _expand_multirc(rows), {k: _expand_multirc(v) for k, v in held.items()}
    rows, held = _flatten(rows), {k: _flatten(v) for k, v in held.items()}
    columns = _columns(rows, exclude=cfg.label_column)
    template = cfg.template or spec.template
    derived = ["connective"] if name == "copa" else []  # made by _prepare_copa from 'question'
    # a user template decides which text columns are needed; options and COPA's 'question' always are
    needed = (
        spec.columns if cfg.template is None else (*spec.choice_columns, *(["question"] if derived else []))
    )
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"{source} lacks column(s) {', '.join(missing)} that the {name} task needs; columns: {_list(columns)}",
            field="task.path",
        )
    if cfg.label_column not in _columns(rows):
        raise DataError(
            f"no column {cfg.label_column!r} in {source}; columns: {_list(columns)}",
            field="task.label_column",
        )
    used = _check_template(template, [*columns, *derived], cfg.label_column)
    label_names = list(spec.label_names)
    words = [] if spec.kind == "multiple_choice" else _label_words(cfg, list(spec.label_words), label_names)
    keep = list(dict.fromkeys([*needed, *(c for c in used if c not in derived)]))
    to_int = _int_labels(label_names, spec.label_aliases)
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
    rows, held, source = _read_source(cfg.path, None, None)
    columns = _columns(rows, exclude=cfg.label_column)
    if cfg.label_column not in _columns(rows):
        raise DataError(
            f"no column {cfg.label_column!r} in {source}; columns: {_list(columns)}",
            field="task.label_column",
        )
    text_columns = list(cfg.text_columns)
    for col in text_columns:
        if col not in columns:
            raise DataError(f"unknown column {col!r}; columns: {_list(columns)}", field="task.text_columns")
    notes: list[str] = []
    template = cfg.template
    if template is None:
        if not text_columns:
            text_columns = [c for c in ("text", "sentence") if c in columns][:1]
        if not text_columns:
            raise DataError(
                f"no 'text' or 'sentence' column; set task.text_columns or task.template (columns: {_list(columns)})",
                field="task.text_columns",
            )
        template = " ".join(f"{{{c}}}" for c in text_columns) + " Answer: {label}"
        notes.append(f"no task.template given; using {template!r}")
    used = _check_template(template, columns, cfg.label_column)
    raw = [_label_value(r.get(cfg.label_column)) for r in rows + [r for v in held.values() for r in v]]
    label_names, words, to_int = _file_labels(cfg, raw)
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


# --- labels -----------------------------------------------------------------------------------------

LabelMap = Callable[[Any], int | None]  # raw label -> index, None to skip the row (unlabelled)


def _label_value(value: Any) -> int | str | None:
    """Normalise a raw label: bools and integral floats to int, digit strings to int, blanks to None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else str(value)
    text = str(value).strip()
    if not text:
        return None
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _label_words(cfg: TaskConfig, default: list[str], label_names: list[str]) -> list[str]:
    """The user's label words when given (checked against the label count), else the defaults."""
    words = [str(w).strip() for w in cfg.label_words] if cfg.label_words is not None else default
    if cfg.label_map:  # label name -> word, over the defaults (or the positional label_words)
        mapping = {str(k).strip(): str(w).strip() for k, w in cfg.label_map.items()}
        unknown = [k for k in mapping if k not in label_names]
        if unknown:
            raise DataError(
                f"unknown label(s) {_list(unknown, 6)}; this task's labels are {_list(label_names)}",
                field="task.label_map",
            )
        words = [mapping.get(n, w) for n, w in zip(label_names, words, strict=False)] + words[
            len(label_names) :
        ]
    _validate_words(words, label_names)
    return words


def _validate_words(words: list[str], label_names: list[str]) -> None:
    for w in words:
        if not w.strip():
            raise DataError("label words must not be empty", field="task.label_words")
    if len(words) != len(label_names):
        raise DataError(
            f"{len(words)} label words for {len(label_names)} labels ({', '.join(label_names)})",
            field="task.label_words",
        )
    dupes = sorted({w for w in words if words.count(w) > 1})
    if dupes:
        raise DataError(f"label words must differ; repeated: {', '.join(dupes)}", field="task.label_words")


def _int_labels(label_names: list[str], aliases: Mapping[str, int]) -> LabelMap:
    """Labels are indices into ``label_names``; names and aliases (e.g. 'entailment') also work."""
    by_text = {n.lower(): i for i, n in enumerate(label_names)} | {k.lower(): v for k, v in aliases.items()}

    def convert(raw: Any) -> int | None:
        value = _label_value(raw)
        if value is None or value == -1:  # -1: the unlabelled test split of GLUE/SuperGLUE
            return None
        if isinstance(value, int):
            if 0 <= value < len(label_names):
                return value
            raise DataError(
                f"label {value} out of range 0..{len(label_names) - 1}", field="task.label_column"
            )
        index = by_text.get(value.lower())
        if index is None:
            raise DataError(
                f"unknown label {value!r}; expected one of {', '.join(label_names)}",
                field="task.label_column",
            )
        return index

    return convert


def _file_labels(cfg: TaskConfig, raw: list[int | str | None]) -> tuple[list[str], list[str], LabelMap]:
    """Label names, label words and the raw->index map of a user file (ints or strings).

    The mapping from label values to words is never guessed: it is ``task.label_map``, or the
    values are the words themselves, or integer values 0..K-1 index ``task.label_words``.
    Anything else is refused with the mapping a guess would use and how to confirm it.
    """
    present = [v for v in raw if v is not None]
    if not present:
        raise DataError(f"column {cfg.label_column!r} has no labels", field="task.label_column")
    words = [str(w).strip() for w in cfg.label_words] if cfg.label_words is not None else None
    strings = any(isinstance(v, str) for v in present)
    values = (
        sorted({str(v) for v in present}) if strings else [str(v) for v in sorted({int(v) for v in present})]
    )
    if cfg.label_map:
        mapping = {str(k).strip(): str(w).strip() for k, w in cfg.label_map.items()}
        unmapped = [v for v in values if v not in mapping]
        if unmapped:
            raise DataError(
                f"label value(s) {_list(unmapped, 6)} of column {cfg.label_column!r} have no entry; "
                f"the map covers {_list(list(mapping), 6)}",
                field="task.label_map",
            )
        targets = list(dict.fromkeys(mapping[v] for v in values))
        if words is None:
            words = targets
        stray = [w for w in targets if w not in words]
        if stray:
            raise DataError(
                f"maps to {_list(stray, 6)}, which is not in task.label_words ({_list(words, 6)})",
                field="task.label_map",
            )
        _validate_words(words, words)
        if len(words) < 2:
            raise DataError(
                f"column {cfg.label_column!r} maps to a single word {words[0]!r}", field="task.label_map"
            )
        index = {v: words.index(mapping[v]) for v in values}
        names = list(words)
    else:
        if len(values) < 2 and (words is None or not strings):
            raise DataError(
                f"column {cfg.label_column!r} has a single label value {values[0]!r}",
                field="task.label_column",
            )
        if words is None:
            if not strings:
                raise DataError(
                    f"required: labels in {cfg.label_column!r} are numbers ({_list(values, 6)}); give one word "
                    'per label, e.g. label_words = ["terrible", "great"], or a label_map',
                    field="task.label_words",
                )
            words = list(values)  # the labels are the words
        if strings and set(values) <= set(words):
            unused = [w for w in words if w not in values]
            if unused:
                raise DataError(
                    f"label word(s) {_list(unused, 6)} match no label in column {cfg.label_column!r} "
                    f"({_list(values, 6)}); give one word per label, or a task.label_map",
                    field="task.label_words",
                )
            order = list(words)  # the file's labels are the words: keep the user's order
        elif not strings and {int(v) for v in values} == set(range(len(words))):
            order = [str(i) for i in range(len(words))]  # 0..K-1 index the words
        else:
            _validate_words(words, values)
            guess = dict(zip(values, words, strict=True))
            how = "alphabetical" if strings else "ascending"
            raise DataError(
                f"labels in {cfg.label_column!r} ({_list(values, 6)}) are not the label words "
                f"({_list(words, 6)}){'' if strings else ' nor 0..' + str(len(words) - 1)}; "
                f"the {how} guess would be {_mapping_text(guess)}; confirm it (or fix it) with "
                f"--set task.label_map='{_mapping_toml(guess)}' or [task.label_map] in the config",
                field="task.label_map",
            )
        _validate_words(words, order)
        names = list(words)
        index = {v: i for i, v in enumerate(order)}

    def convert(value: Any) -> int | None:
        value = _label_value(value)
        return None if value is None else index[str(value)]

    return names, words, convert


def _mapping_text(mapping: Mapping[str, str]) -> str:
    return ", ".join(f"{k} -> {w}" for k, w in mapping.items())


def _mapping_toml(mapping: Mapping[str, str]) -> str:
    """``{neg = "terrible", pos = "great"}``: a TOML inline table, as ``--set`` takes it."""
    import tomli_w

    return "{" + ", ".join(tomli_w.dumps({k: w}).strip() for k, w in mapping.items()) + "}"


# --- reading rows -----------------------------------------------------------------------------------

Row = dict[str, Any]


Held = dict[str, list[Row]]  # held-out rows of the source: "dev" and/or "test"


def _read_source(path: str | None, hub_id: str | None, hub_config: str | None) -> tuple[list[Row], Held, str]:
    """Rows of a local file or folder, else of a hub data set; plus held-out rows when the source has them."""
    if not path:
        if hub_id is None:  # pragma: no cover - callers check
            raise DataError("no data source given", field="task.path")
        train, test = _read_hub(hub_id, hub_config)
        return train, {"test": test} if test else {}, f"{hub_id}:{hub_config}" if hub_config else hub_id
    p = Path(path).expanduser()
    if p.is_dir():
        return (*_read_folder(p), str(p))
    if p.is_file():
        return _read_table(p), {}, str(p)
    if not _looks_like_hub_id(path):
        raise DataError(f"no such file: {path}", field="task.path")
    repo, _, config = path.partition(":")
    train, test = _read_hub(repo, config or hub_config)
    return train, {"test": test} if test else {}, path


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


def _looks_like_hub_id(text: str) -> bool:
    if Path(text).suffix.lower() in FILE_TYPES or text.startswith(("/", ".", "~")) or "\\" in text:
        return False
    return re.fullmatch(r"[\w.-]+(/[\w.-]+)?(:[\w.-]+)?", text) is not None


def _read_hub(repo: str, config: str | None) -> tuple[list[Row], list[Row] | None]:
    """``datasets.load_dataset``: 'train' is the pool, 'validation' the held-out test pool (as MeZO)."""
    hint = f"give a local CSV/JSONL/parquet file in task.path, or use a zoo data set: {ZOO_HINT}"
    name = f"{repo}:{config}" if config else repo
    if not _hub_usable():
        raise DataError(
            f"not a local file, and hub data set {name!r} cannot be loaded: the hub is not reachable "
            "(set HF_HUB_OFFLINE=1 to use a cached copy)",
            field="task.path",
            hint=hint,
        )
    try:
        import datasets

        loaded = datasets.load_dataset(repo, config) if config else datasets.load_dataset(repo)
    except Exception as exc:  # any failure means "cannot get it", said in one line
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(
            f"not a local file, and hub data set {name!r} could not be loaded (hub not reachable? {reason})",
            field="task.path",
            hint=hint,
        ) from None
    splits = dict(loaded) if isinstance(loaded, Mapping) else {"train": loaded}
    train = next((splits[s] for s in _SPLIT_NAMES["train"] if s in splits), None)
    if train is None:
        train = next(iter(splits.values()))
    test = next((splits[s] for s in _SPLIT_NAMES["test"] if s in splits), None)
    return list(train.to_list()), list(test.to_list()) if test is not None else None


def _hub_usable(timeout: float = 3.0) -> bool:
    """Fail fast offline: ``load_dataset`` would retry for ~25 s, logging to stderr under the TUI."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of datasets
        return True
    if constants.HF_HUB_OFFLINE:
        return True  # offline mode reads the local cache without touching the network
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy decides what is reachable; let datasets try
    url = urllib.parse.urlsplit(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _read_folder(folder: Path) -> tuple[list[Row], Held]:
    """A data folder: train.* is the pool, test.* the test split, val.*/validation.*/dev.* the dev
    split (or the test split when there is no labelled test file, as in SuperGLUE's folders)."""

    def find(stems: Sequence[str]) -> Path | None:
        for stem in stems:
            for suffix in FILE_TYPES:
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate
        return None

    train = find(_FOLDER_SPLITS["train"])
    if train is None:
        raise DataError(f"folder {folder} has no train.jsonl/.csv/.parquet file", field="task.path")
    held: Held = {}
    for key in ("dev", "test"):
        found = find(_FOLDER_SPLITS[key])
        if found is not None:
            held[key] = _read_table(found)
    return _read_table(train), held


def _read_table(path: Path, kind: str | None = None) -> list[Row]:
    """Rows of one CSV/TSV/JSONL/JSON/parquet file as dicts; errors name the file and the line."""
    kind = kind or FILE_TYPES.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"unsupported file type {path.suffix or '(none)'!r} for {path.name}; use .csv, .tsv, .jsonl, .json or .parquet",
            field="task.path",
        )
    try:
        if kind in ("csv", "tsv"):
            with open(path, newline="", encoding="utf-8-sig") as fh:
                rows: list[Any] = list(csv.DictReader(fh, delimiter="," if kind == "csv" else "\t"))
        elif kind == "jsonl":
            rows = []
            with open(path, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise DataError(
                                f"{path.name} line {lineno} is not valid JSON ({exc.msg})", field="task.path"
                            ) from None
        elif kind == "json":
            data = json.loads(path.read_text(encoding="utf-8"))
            rows = data if isinstance(data, list) else data.get("data") if isinstance(data, dict) else None
            if not isinstance(rows, list):
                raise DataError(f"{path.name} must hold a list of objects (or JSON Lines)", field="task.path")
        else:
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise DataError(f"cannot read {path.name}: {exc}", field="task.path") from None
    except Exception as exc:  # pyarrow raises its own error types
        raise DataError(f"cannot read {path.name}: {type(exc).__name__}: {exc}", field="task.path") from None
    if not rows:
        raise DataError(f"{path.name} has no rows", field="task.path")
    if not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path.name}: every row must be an object with named columns", field="task.path")
    return rows


def _columns(rows: Sequence[Row], exclude: str | None = None) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows[:1000]:  # enough to see every column of a regular table
        for key in row:
            seen.setdefault(str(key))
    return [c for c in seen if c != exclude]


def _flatten(rows: list[Row]) -> list[Row]:
    """Lift one level of nested objects (original SuperGLUE WSC keeps spans under 'target')."""
    out = []
    for row in rows:
        flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
        for value in row.values():
            if isinstance(value, dict):
                for k, v in value.items():
                    flat.setdefault(k, v)
        out.append(flat)
    return out


def _expand_multirc(rows: list[Row]) -> list[Row]:
    """Original MultiRC nests questions and answers in a passage; make one row per answer."""
    if not rows or not isinstance(rows[0].get("passage"), dict):
        return rows
    out: list[Row] = []
    for row in rows:
        passage = row.get("passage") or {}
        for q in passage.get("questions") or []:
            for a in q.get("answers") or []:
                out.append(
                    {
                        "paragraph": passage.get("text", ""),
                        "question": q.get("question", ""),
                        "answer": a.get("text", ""),
                        "label": a.get("label"),
                    }
                )
    return out


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


# --- splits -----------------------------------------------------------------------------------------


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
    notes = list(notes or [])
    num_classes = len(choice_columns) if choice_columns else len(label_names)
    train, dev, test = _split(cfg, pool, test_pool, num_classes, label_names, notes, dev_pool)
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


DEFAULT_SIZES = {"n_train": 1000, "n_dev": 500, "n_test": 1000}
DEFAULT_SHARES = {"n_train": 60, "n_dev": 20, "n_test": 20}  # of a data set smaller than the defaults


def _sizes(
    cfg: TaskConfig, total: int, separate: set[str], notes: list[str], k_train: int | None
) -> dict[str, int]:
    """Split sizes: the ones the user gave, else the defaults, else (data smaller than the defaults)
    60/20/20 shares of what the pool has left. ``separate``: splits drawn from their own file."""
    sizes: dict[str, int] = {}
    unset: list[str] = []
    for key, default in DEFAULT_SIZES.items():
        given = k_train if key == "n_train" and k_train is not None else getattr(cfg, key)
        if given is not None:
            sizes[key] = given
        elif key in separate:
            sizes[key] = default  # its own file: take up to the default, silently
        else:
            unset.append(key)
    left = total - sum(v for k, v in sizes.items() if k not in separate)
    if sum(DEFAULT_SIZES[k] for k in unset) <= left:
        sizes.update({k: DEFAULT_SIZES[k] for k in unset})
    elif unset:
        weight = sum(DEFAULT_SHARES[k] for k in unset)
        shares = {k: max(0, left) * DEFAULT_SHARES[k] // weight for k in unset}
        shares[unset[0]] += max(0, left) - sum(shares.values())
        sizes.update(shares)
        given_text = ", ".join(f"{k} = {sizes[k]}" for k in DEFAULT_SIZES if k not in unset)
        notes.append(
            f"no size given for {', '.join(unset)} and the data has only {total} examples"
            f"{' (' + given_text + ' given)' if given_text else ''}: split "
            f"{'/'.join(str(DEFAULT_SHARES[k]) for k in unset)} instead of the defaults "
            f"{'/'.join(str(DEFAULT_SIZES[k]) for k in unset)}; train/dev/test = "
            f"{sizes['n_train']}/{sizes['n_dev'] if 'n_dev' not in separate else 'file'}/"
            f"{sizes['n_test'] if 'n_test' not in separate else 'file'}"
        )
    return sizes


def _split(
    cfg: TaskConfig,
    pool: list[Example],
    test_pool: list[Example] | None,
    num_classes: int,
    label_names: list[str],
    notes: list[str],
    dev_pool: list[Example] | None = None,
) -> tuple[list[Example], list[Example], list[Example]]:
    """Seeded shuffle, then train (n_train or k per class), dev, test; test shrinks first, then dev.

    With a separate held-out pool (hub validation split, test file) test comes from it, as in MeZO;
    with a dev file, dev comes from it. Sizes left unset default to 1000/500/1000, or to 60/20/20
    shares of a data set smaller than that.
    """
    for key in ("n_train", "n_dev", "n_test"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 0:
            raise DataError(f"must be >= 0 (got {getattr(cfg, key)})", field=f"task.{key}")
    if cfg.k_shot is not None and cfg.k_shot <= 0:
        raise DataError(f"must be > 0 (got {cfg.k_shot})", field="task.k_shot")
    rng = random.Random(cfg.seed)
    order = list(range(len(pool)))
    rng.shuffle(order)
    total = len(pool)
    separate = {k for k, p in (("n_dev", dev_pool), ("n_test", test_pool)) if p is not None}
    k_train = num_classes * cfg.k_shot if cfg.k_shot is not None else None
    sizes = _sizes(cfg, total, separate, notes, k_train)
    n_train, want_dev, want_test = sizes["n_train"], sizes["n_dev"], sizes["n_test"]
    if cfg.k_shot is not None:
        by_class: dict[int, list[int]] = {c: [] for c in range(num_classes)}
        for i in order:
            by_class[pool[i].label].append(i)
        for c, members in by_class.items():
            if len(members) < cfg.k_shot:
                raise DataError(
                    f"class {label_names[c]!r} has only {len(members)} examples (k_shot = {cfg.k_shot})",
                    field="task.k_shot",
                )
        train_idx = [i for members in by_class.values() for i in members[: cfg.k_shot]]
        rng.shuffle(train_idx)
        taken = set(train_idx)
        rest = [i for i in order if i not in taken]
    else:
        if n_train <= 0:
            raise DataError(f"must be > 0 (got {n_train})", field="task.n_train")
        if total < n_train:
            raise DataError(
                f"data has only {total} examples (fewer than task.n_train = {n_train})",
                field="task.n_train",
            )
        train_idx, rest = order[:n_train], order[n_train:]
    train = [pool[i] for i in train_idx]
    if dev_pool is not None:
        held = list(range(len(dev_pool)))
        rng.shuffle(held)
        dev = [dev_pool[i] for i in held[:want_dev]]
        if cfg.n_dev is not None and len(dev) < want_dev:
            notes.append(
                f"dev shrunk from {want_dev} to {len(dev)}: the dev file has only {len(dev_pool)} examples"
            )
    else:
        n_dev = min(want_dev, len(rest))
        if want_dev > 0 and n_dev == 0:
            raise DataError(
                f"data has only {total} examples, none left after {len(train_idx)} for train",
                field="task.n_dev",
            )
        if n_dev < want_dev:
            notes.append(f"dev shrunk from {want_dev} to {n_dev}: the data has only {total} examples")
        dev = [pool[i] for i in rest[:n_dev]]
        rest = rest[n_dev:]
    if test_pool is not None:
        held = list(range(len(test_pool)))
        rng.shuffle(held)
        test = [test_pool[i] for i in held[:want_test]]
        available, after = len(test_pool), "in the held-out split"
    else:
        test = [pool[i] for i in rest[:want_test]]
        available, after = len(rest), f"after {len(train)} train and {len(dev)} dev"
    if want_test > 0 and not test:
        raise DataError(
            f"data has only {available} examples {after}; none left for test", field="task.n_test"
        )
    if len(test) < want_test and (cfg.n_test is not None or test_pool is None):
        notes.append(f"test shrunk from {want_test} to {len(test)}: only {available} examples {after}")
    return train, dev, test
