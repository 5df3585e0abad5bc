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

Modules: ``templates`` (placeholders), ``task`` (``Example``, ``Task``), ``registry`` (the named
tasks), ``sources`` (rows from zoo/files/hub), ``labels``, ``splits``, ``loaders`` (``load_task``).
"""

from __future__ import annotations

from zoengine.tasks.labels import check_label_words
from zoengine.tasks.loaders import load_task
from zoengine.tasks.registry import BUILTIN_TEMPLATES, ZOO_TASKS, TemplateSpec, ZooSpec, list_tasks
from zoengine.tasks.splits import DEFAULT_SIZES
from zoengine.tasks.task import Example, Task

__all__ = [
    "BUILTIN_TEMPLATES",
    "DEFAULT_SIZES",
    "ZOO_TASKS",
    "Example",
    "Task",
    "TemplateSpec",
    "ZooSpec",
    "check_label_words",
    "list_tasks",
    "load_task",
]
