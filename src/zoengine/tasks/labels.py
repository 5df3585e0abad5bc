"""Labels: raw label values to option indices, label words checked against labels and tokenizer.

A user file's label-to-word mapping is never guessed; ambiguous files are refused with the guess
spelled out as a ``task.label_map`` to confirm.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from zoengine.config import TaskConfig
from zoengine.errors import DataError
from zoengine.tasks.task import Task
from zoengine.tasks.templates import short_list

LabelMap = Callable[[Any], int | None]  # raw label -> index, None to skip the row (unlabelled)


def label_value(value: Any) -> int | str | None:
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


def resolve_label_words(cfg: TaskConfig, default: list[str], label_names: list[str]) -> list[str]:
    """The user's label words when given (checked against the label count), else the defaults."""
    words = [str(w).strip() for w in cfg.label_words] if cfg.label_words is not None else default
    if cfg.label_map:  # label name -> word, over the defaults (or the positional label_words)
        mapping = {str(k).strip(): str(w).strip() for k, w in cfg.label_map.items()}
        unknown = [k for k in mapping if k not in label_names]
        if unknown:
            raise DataError(
                f"unknown label(s) {short_list(unknown, 6)}; this task's labels are {short_list(label_names)}",
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


def int_labels(label_names: list[str], aliases: Mapping[str, int]) -> LabelMap:
    """Labels are indices into ``label_names``; names and aliases (e.g. 'entailment') also work."""
    by_text = {n.lower(): i for i, n in enumerate(label_names)} | {k.lower(): v for k, v in aliases.items()}

    def convert(raw: Any) -> int | None:
        value = label_value(raw)
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


def file_labels(cfg: TaskConfig, raw: list[int | str | None]) -> tuple[list[str], list[str], LabelMap]:
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
                f"label value(s) {short_list(unmapped, 6)} of column {cfg.label_column!r} have no entry; "
                f"the map covers {short_list(list(mapping), 6)}",
                field="task.label_map",
            )
        targets = list(dict.fromkeys(mapping[v] for v in values))
        if words is None:
            words = targets
        stray = [w for w in targets if w not in words]
        if stray:
            raise DataError(
                f"maps to {short_list(stray, 6)}, which is not in task.label_words ({short_list(words, 6)})",
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
                    f"required: labels in {cfg.label_column!r} are numbers ({short_list(values, 6)}); give one word "
                    'per label, e.g. label_words = ["terrible", "great"], or a label_map',
                    field="task.label_words",
                )
            words = list(values)  # the labels are the words
        if strings and set(values) <= set(words):
            unused = [w for w in words if w not in values]
            if unused:
                raise DataError(
                    f"label word(s) {short_list(unused, 6)} match no label in column {cfg.label_column!r} "
                    f"({short_list(values, 6)}); give one word per label, or a task.label_map",
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
                f"labels in {cfg.label_column!r} ({short_list(values, 6)}) are not the label words "
                f"({short_list(words, 6)}){'' if strings else ' nor 0..' + str(len(words) - 1)}; "
                f"the {how} guess would be {_mapping_text(guess)}; confirm it (or fix it) with "
                f"--set task.label_map='{_mapping_toml(guess)}' or [task.label_map] in the config",
                field="task.label_map",
            )
        _validate_words(words, order)
        names = list(words)
        index = {v: i for i, v in enumerate(order)}

    def convert(value: Any) -> int | None:
        value = label_value(value)
        return None if value is None else index[str(value)]

    return names, words, convert


def _mapping_text(mapping: Mapping[str, str]) -> str:
    return ", ".join(f"{k} -> {w}" for k, w in mapping.items())


def _mapping_toml(mapping: Mapping[str, str]) -> str:
    """``{neg = "terrible", pos = "great"}``: a TOML inline table, as ``--set`` takes it."""
    import tomli_w

    return "{" + ", ".join(tomli_w.dumps({k: w}).strip() for k, w in mapping.items()) + "}"


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
