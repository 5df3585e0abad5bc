"""The setup form, tab by tab: which config keys each tab edits, with their labels, pickers and help.

Each function yields the widgets of one tab, filled from a ``RunConfig`` (``SetupScreen.compose``
places them). Values are shown as the form's text (``zotui.form_values``); the help under a field
is the one ``RunConfig`` declares. The method option boxes stay empty here: the screen mounts the
chosen methods' fields once it is mounted.
"""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.widgets import Static

from zoengine.config import LR_SCHEDULES, RunConfig
from zoengine.layers import LAYERS_HELP
from zotui import catalog
from zotui.form_values import as_text, config_help, field_text
from zotui.widgets.config_form import FormField
from zotui.widgets.method_options import MethodOptions, preset_choices
from zotui.widgets.previews import FormReader, StepCost, TaskPreview, TrainableCount
from zotui.widgets.tuned_offer import TunedOffer

YES_NO = [("true", "yes"), ("false", "no")]


def _choices(specs: Mapping[str, catalog.MethodSpec]) -> list[tuple[str, str]]:
    return [(name, name) for name in specs]


def model_fields(cfg: RunConfig) -> ComposeResult:
    zoo = [(c.value, c.label) for c in catalog.model_choices()]
    yield FormField(
        "+model.zoo", "zoo model", cfg.model.name if cfg.model.name in dict(zoo) else "", choices=zoo
    )
    yield FormField("model.name", "hub id / path", cfg.model.name, help=config_help("model", "name"))
    yield Static("", id="model-fetched", classes="hint")
    yield FormField("model.device", "device", cfg.model.device, help=config_help("model", "device"))
    yield FormField(
        "model.dtype",
        "dtype",
        cfg.model.dtype,
        choices=[(d, d) for d in ("auto", "float32", "bfloat16", "float16")],
    )
    yield FormField(
        "model.max_length",
        "max length",
        as_text(cfg.model.max_length),
        help=config_help("model", "max_length"),
    )


def task_fields(cfg: RunConfig, form: FormReader) -> ComposeResult:
    tasks = [(c.value, c.label) for c in catalog.task_choices()]
    if cfg.task.name not in dict(tasks):
        tasks.insert(0, (cfg.task.name, cfg.task.name))
    yield FormField("task.name", "task", cfg.task.name, choices=tasks)
    for key in (
        "path",
        "text_columns",
        "label_column",
        "template",
        "label_words",
        "n_train",
        "n_dev",
        "n_test",
        "k_shot",
        "seed",
    ):
        yield FormField(
            f"task.{key}",
            key.replace("_", " "),
            as_text(getattr(cfg.task, key)),
            help=config_help("task", key),
        )
    yield TaskPreview(form)


def adapter_fields(
    cfg: RunConfig, adapters: Mapping[str, catalog.MethodSpec], form: FormReader
) -> ComposeResult:
    yield FormField("adapter.method", "method", cfg.adapter.method, choices=_choices(adapters))
    yield Static("", id="adapter-description", classes="hint")
    yield TrainableCount(form)
    yield StepCost(form)
    yield FormField(
        "adapter.targets",
        "targets",
        as_text(cfg.adapter.targets),
        help=config_help("adapter", "targets"),
    )
    yield FormField("adapter.layers", "layers", as_text(cfg.adapter.layers), help=LAYERS_HELP)
    yield MethodOptions("adapter", adapters)


def optimizer_fields(cfg: RunConfig, optimizers: Mapping[str, catalog.MethodSpec]) -> ComposeResult:
    o = cfg.optimizer
    yield FormField("optimizer.name", "method", o.name, choices=_choices(optimizers))
    yield Static("", id="optimizer-description", classes="hint")
    yield FormField("+preset", "paper preset", "", choices=preset_choices(optimizers.get(o.name)))
    for key in ("lr", "eps", "weight_decay", "warmup_steps"):
        yield FormField(
            f"optimizer.{key}",
            key,
            field_text(f"optimizer.{key}", getattr(o, key)),
            help=config_help("optimizer", key),
        )
        if key == "lr":
            yield TunedOffer()
    yield FormField(
        "optimizer.lr_schedule", "lr schedule", o.lr_schedule, choices=[(s, s) for s in LR_SCHEDULES]
    )
    yield MethodOptions("optimizer", optimizers)


def run_fields(cfg: RunConfig) -> ComposeResult:
    for key in (
        "steps",
        "batch_size",
        "eval_every",
        "eval_batch_size",
        "checkpoint_every",
        "checkpoint_minutes",
        "seed",
        "name",
        "output_dir",
        "nproc",
    ):
        label = {"checkpoint_minutes": "checkpoint min"}.get(key, key)  # fits the label column
        yield FormField(f"run.{key}", label, as_text(getattr(cfg.run, key)), help=config_help("run", key))
    yield FormField("run.zero_shot_eval", "zero-shot eval", as_text(cfg.run.zero_shot_eval), choices=YES_NO)
    yield FormField("run.share_prefix", "share prefix", as_text(cfg.run.share_prefix), choices=YES_NO)
    yield Static(config_help("run", "share_prefix"), classes="hint")
