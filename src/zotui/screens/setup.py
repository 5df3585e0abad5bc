"""Setup: pick model, task, adapter and optimizer, check every field inline, then start.

The form holds text; ``build_config()`` turns it into a ``RunConfig`` with the same parser as the
CLI's ``--set``, so each error names its field and the allowed values, and "show CLI command"
prints exactly what the CLI would need. Start is refused (with the reason shown) until the config
validates. Slow look-ups (trainable-parameter count and the step cost it implies, task preview) run
in thread workers so typing never stalls.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Static, TabbedContent, TabPane

from zoengine.config import LR_SCHEDULES, RunConfig
from zoengine.errors import ConfigError, ZOError
from zoengine.layers import LAYERS_HELP
from zotui import catalog
from zotui.screens.dialogs import PathScreen, TextScreen
from zotui.widgets.config_form import FormField, field_id

if TYPE_CHECKING:
    from zoengine.tune import TuneResult

COMMON_KEYS = ("method", "name", "targets", "layers", *catalog.COMMON_OPTIMIZER_KEYS)  # not method options
PREVIEW_DELAY = 0.4  # seconds of quiet after an edit before the slow previews recompute
EXTRA = "+options"  # pseudo key: method options not covered by a spec field, as "k=v, k=v"
DEFAULT_TOML = "zoengine-run.toml"


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
    for section in ("model", "task", "adapter", "optimizer", "run"):
        for f in dataclasses.fields(getattr(cfg, section)):
            if "None" in str(f.type):
                out.add(f"{section}.{f.name}")
    return out


OPTIONAL_KEYS = _optional_keys()
KNOWN_KEYS = {
    f"{section}.{f.name}"
    for section in ("model", "task", "adapter", "optimizer", "run")
    for f in dataclasses.fields(getattr(RunConfig(), section))
}


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


class SetupScreen(Screen[None]):
    """The run configuration form."""

    BINDINGS = [
        Binding("f5", "start_run", "Start", id="start-run", tooltip="Validate the form and start training"),
        Binding("ctrl+s", "save_config", "Save", id="save-config", tooltip="Save the configuration as TOML"),
        Binding("ctrl+o", "load_config", "Load", id="load-config", tooltip="Load a TOML configuration"),
        Binding("f6", "show_cli", "CLI", id="show-cli", tooltip="Show the equivalent zoengine train command"),
        Binding(
            "f7",
            "tune",
            "Tune",
            id="tune-lr",
            tooltip="Sweep the learning rate with short runs on the same batches (zoengine tune)",
        ),
        Binding(
            "f8",
            "use_tuned",
            "Use tuned lr",
            id="use-tuned-lr",
            show=False,  # the offer next to the lr field names the key; the footer is full
            tooltip="Write the cached tuned lr and eps for this model/task/adapter/optimizer/batch into the form",
        ),
    ]
    tune_options: ClassVar[dict[str, Any]] = {}
    """Keyword arguments for ``TuneScreen`` (steps, lrs, n_candidates, eps_values, dev_examples)."""

    def __init__(self, config: RunConfig, config_path: Path | None = None) -> None:
        super().__init__()
        self.base = config
        self.config_path = config_path
        self.optimizers = catalog.optimizer_specs()
        self.adapters = catalog.adapter_specs()
        self.errors: dict[str, str] = {}
        self._options_for: dict[str, str] = {}  # section -> method whose option fields are mounted
        self._typed: dict[str, str] = {}  # method option key -> text the user typed (kept across methods)
        self._targets_for: dict[str, str] = {config.adapter.method: as_text(config.adapter.targets)}
        self._preview_timers: dict[str, Timer] = {}  # debounced slow previews: "count" / "task"
        self._preview_asked: dict[str, int] = {"count": 0, "task": 0}  # latest request per preview
        self._counted: catalog.ParamCount | None = None  # the shown count, for the step-cost line
        self.tuned: TuneResult | None = None  # the cached sweep for the form's current config

    # --- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        cfg = self.base
        yield Static("[b]zotui[/b] · new run", id="setup-title")
        with TabbedContent(id="setup-tabs"):
            with TabPane("Model", id="tab-model"), VerticalScroll():
                yield from self._model_fields(cfg)
            with TabPane("Task", id="tab-task"), VerticalScroll():
                yield from self._task_fields(cfg)
            with TabPane("Adapter", id="tab-adapter"), VerticalScroll():
                yield FormField(
                    "adapter.method", "method", cfg.adapter.method, choices=self._choices(self.adapters)
                )
                yield Static("", id="adapter-description", classes="hint")
                yield Static("trainable parameters: --", id="trainable-count", classes="hint")
                yield Static("", id="step-cost", classes="hint")
                yield FormField(
                    "adapter.targets",
                    "targets",
                    as_text(cfg.adapter.targets),
                    help=_help("adapter", "targets"),
                )
                yield FormField("adapter.layers", "layers", as_text(cfg.adapter.layers), help=LAYERS_HELP)
                yield Vertical(id="adapter-options")
            with TabPane("Optimizer", id="tab-optimizer"), VerticalScroll():
                yield from self._optimizer_fields(cfg)
            with TabPane("Run", id="tab-run"), VerticalScroll():
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
                    yield FormField(f"run.{key}", label, as_text(getattr(cfg.run, key)), help=_help("run", key))
                yield FormField(
                    "run.zero_shot_eval",
                    "zero-shot eval",
                    as_text(cfg.run.zero_shot_eval),
                    choices=[("true", "yes"), ("false", "no")],
                )
                yield FormField(
                    "run.share_prefix",
                    "share prefix",
                    as_text(cfg.run.share_prefix),
                    choices=[("true", "yes"), ("false", "no")],
                )
                yield Static(_help("run", "share_prefix"), classes="hint")
        yield Static("", id="setup-status")
        with Horizontal(id="setup-buttons"):
            yield Button("Start (F5)", id="start", variant="success")
            yield Button("Save (^S)", id="save")
            yield Button("Load (^O)", id="load")
            yield Button("CLI (F6)", id="cli")
            yield Button("Tune (F7)", id="tune")
        yield Footer()

    def _model_fields(self, cfg: RunConfig) -> ComposeResult:
        zoo = [(c.value, c.label) for c in catalog.model_choices()]
        yield FormField(
            "+model.zoo", "zoo model", cfg.model.name if cfg.model.name in dict(zoo) else "", choices=zoo
        )
        yield FormField("model.name", "hub id / path", cfg.model.name, help=_help("model", "name"))
        yield Static("", id="model-fetched", classes="hint")
        yield FormField("model.device", "device", cfg.model.device, help=_help("model", "device"))
        yield FormField(
            "model.dtype",
            "dtype",
            cfg.model.dtype,
            choices=[(d, d) for d in ("auto", "float32", "bfloat16", "float16")],
        )
        yield FormField(
            "model.max_length", "max length", as_text(cfg.model.max_length), help=_help("model", "max_length")
        )

    def _task_fields(self, cfg: RunConfig) -> ComposeResult:
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
                f"task.{key}", key.replace("_", " "), as_text(getattr(cfg.task, key)), help=_help("task", key)
            )
        yield Static("preview: --", id="task-preview", classes="hint")

    def _optimizer_fields(self, cfg: RunConfig) -> ComposeResult:
        o = cfg.optimizer
        yield FormField("optimizer.name", "method", o.name, choices=self._choices(self.optimizers))
        yield Static("", id="optimizer-description", classes="hint")
        yield FormField("+preset", "paper preset", "", choices=[(n, n) for n in self._presets(o.name)])
        for key in ("lr", "eps", "weight_decay", "warmup_steps"):
            yield FormField(
                f"optimizer.{key}",
                key,
                field_text(f"optimizer.{key}", getattr(o, key)),
                help=_help("optimizer", key),
            )
            if key == "lr":
                with Horizontal(id="tuned-offer"):
                    yield Static("", id="tuned-hint")
                    yield Button("use tuned lr", id="use-tuned", variant="primary")
        yield FormField(
            "optimizer.lr_schedule", "lr schedule", o.lr_schedule, choices=[(s, s) for s in LR_SCHEDULES]
        )
        yield Vertical(id="optimizer-options")

    @staticmethod
    def _choices(specs: dict[str, catalog.MethodSpec]) -> list[tuple[str, str]]:
        return [(name, name) for name in specs]

    async def on_mount(self) -> None:
        await self._mount_method_options("adapter", self.base.adapter.method, self.base.adapter.options)
        await self._mount_method_options("optimizer", self.base.optimizer.name, self.base.optimizer.options)
        self._show_fetched()
        self._refresh_tuned(self.validate_form())
        self._refresh_slow_previews()

    # --- method-specific option fields --------------------------------------------------------------

    async def _mount_method_options(
        self, section: str, method: str, values: dict[str, Any], force: bool = False
    ) -> None:
        """Replace the option fields of ``section`` with those of ``method``'s spec."""
        if not force and self._options_for.get(section) == method:
            return  # pickers also report their initial value: nothing changed
        self._options_for[section] = method
        specs = self.adapters if section == "adapter" else self.optimizers
        spec = specs.get(method)
        box = self.query_one(f"#{section}-options", Vertical)
        await box.remove_children()
        values = dict(values)
        fields: list[FormField] = []
        for opt in spec.options if spec else []:
            value = values.pop(opt.key, opt.default)
            choices = [(c, c) for c in opt.choices] if opt.choices else None
            fields.append(
                FormField(f"{section}.{opt.key}", opt.key, as_text(value), help=opt.help, choices=choices)
            )
        extra = ", ".join(f"{k}={as_text(v)}" for k, v in values.items())
        fields.append(FormField(f"{section}.{EXTRA}", "other options", extra, help="key=value, key=value"))
        await box.mount_all(fields)
        self.query_one(f"#{section}-description", Static).update(
            spec.description if spec else "unknown method"
        )
        if section == "optimizer":
            self._set_presets(method)

    def _set_presets(self, method: str) -> None:
        presets = self._presets(method)
        self.query_one(f"#{field_id('+preset')}", FormField).set_choices([(name, name) for name in presets])

    def _presets(self, method: str) -> dict[str, dict[str, Any]]:
        spec = self.optimizers.get(method)
        return spec.presets if spec else {}

    # --- building and validating ----------------------------------------------------------------------

    def fields(self) -> list[FormField]:
        return list(self.query(FormField))

    def build_config(self) -> tuple[RunConfig, dict[str, str]]:
        """The config the form describes, and the error of every field that does not parse/validate."""
        cfg = self.base.copy()
        cfg.adapter.options.clear()  # the form's option fields are the only source now
        cfg.optimizer.options.clear()
        errors: dict[str, str] = {}
        for f in self.fields():
            if f.key.startswith("+"):
                continue
            try:
                self._apply(cfg, f.key, f.value)
            except ConfigError as exc:
                errors[f.key] = exc.one_line()
        try:  # fields that did not parse keep their previous value, so the rest is still checked
            cfg.validate()
        except ConfigError as exc:
            errors.setdefault(exc.field or "config", exc.one_line())
        return cfg, errors

    @staticmethod
    def _apply(cfg: RunConfig, key: str, value: str) -> None:
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

    def validate_form(self) -> RunConfig | None:
        """Show each field's error inline and the first one in the status line; None if invalid."""
        cfg, self.errors = self.build_config()
        by_field = {f.key: f for f in self.fields()}
        for key, f in by_field.items():
            f.show_error(self.errors.get(key))
        status = self.query_one("#setup-status", Static)
        if self.errors:
            key, message = next(iter(self.errors.items()))
            where = "" if key in by_field else " (no field for it in the form: load or edit the TOML)"
            status.update(f"[b red]Cannot start:[/] {message}{where}")
            status.add_class("-error")
            return None
        status.update("[b green]Ready.[/] F5 starts the run; F6 shows the equivalent CLI command.")
        status.remove_class("-error")
        return cfg

    # --- reacting to edits ---------------------------------------------------------------------------

    @on(FormField.Changed)
    async def _field_changed(self, event: FormField.Changed) -> None:
        key = event.form_field.key
        section = key.split(".")[0]
        if key == "+model.zoo" and event.value:
            self.query_one("#f-model-name", FormField).set_value(event.value)
        elif key == "+preset" and event.value:
            self._apply_preset(event.value)
        elif key in ("adapter.method", "optimizer.name"):
            await self._switch_method(section, event.value)
        elif section in ("adapter", "optimizer") and key.split(".", 1)[1] not in (*COMMON_KEYS, EXTRA):
            self._typed[key] = event.value
        self._refresh_tuned(self.validate_form())
        if key in ("model.name", "+model.zoo"):
            self._show_fetched()
        if section in ("model", "+model", "adapter"):
            self.schedule_preview("count")
        elif section in ("optimizer", "run"):
            self._show_step_cost()  # Q and run.share_prefix change the cost, not the count
        if section == "task":
            self.schedule_preview("task")

    async def _switch_method(self, section: str, method: str) -> None:
        """New method: its own option fields at their defaults, except keys the user typed; the
        adapter's targets are remembered per method (subset's parameter names mean nothing to tt)."""
        old = self._options_for.get(section)
        if old is None or old == method:
            return  # not mounted yet (on_mount mounts the config's own options), or no change
        if section == "adapter":
            targets = self.query_one(f"#{field_id('adapter.targets')}", FormField)
            self._targets_for[old] = targets.value
            targets.set_value(self._targets_for.get(method, ""))
        spec = (self.adapters if section == "adapter" else self.optimizers).get(method)
        typed = {
            o.key: self._typed[f"{section}.{o.key}"]
            for o in (spec.options if spec else [])
            if f"{section}.{o.key}" in self._typed
        }
        await self._mount_method_options(section, method, typed)

    def schedule_preview(self, which: str, delay: float = PREVIEW_DELAY) -> None:
        """Recompute the trainable count ("count") or the task preview ("task") once edits pause."""
        timer = self._preview_timers.pop(which, None)
        if timer is not None:
            timer.stop()
        self._preview_timers[which] = self.set_timer(delay, lambda: self._start_preview(which))

    def _apply_preset(self, name: str) -> None:
        """The paper's common settings, and the method's options at their defaults (the papers')."""
        method = self.query_one("#f-optimizer-name", FormField).value
        spec = self.optimizers.get(method)
        values = {o.key: o.default for o in (spec.options if spec else [])}
        values.update(self._presets(method).get(name, {}))
        for key, value in values.items():
            dotted = key if "." in key else f"optimizer.{key}"
            if dotted in ("optimizer.batch_size", "optimizer.steps"):
                dotted = "run." + dotted.split(".")[1]
            found = self.query(f"#{field_id(dotted)}")
            if found:
                found.first(FormField).set_value(as_text(value))
        self.notify(f"preset applied: {name}")

    def _show_fetched(self) -> None:
        name = self.query_one("#f-model-name", FormField).value
        fetched = catalog.is_fetched(name)
        text = {True: "zoo model, fetched", False: "zoo model, not fetched yet: Start fetches it first"}.get(
            fetched,
            "hub id or local path (loaded by the engine)",  # type: ignore[arg-type]
        )
        self.query_one("#model-fetched", Static).update(text)

    def _refresh_slow_previews(self) -> None:
        self._start_preview("count")
        self._start_preview("task")

    def _start_preview(self, which: str) -> None:
        """Start the worker for ``which`` on the form's config, or say which field blocks it."""
        self._preview_timers.pop(which, None)
        self._preview_asked[which] += 1
        asked = self._preview_asked[which]
        cfg, errors = self.build_config()
        sections = ("model", "adapter") if which == "count" else ("task",)
        blocking = [k for k in errors if k.split(".")[0] in sections]
        if blocking:
            label = "trainable parameters" if which == "count" else "preview"
            self._show_preview(which, asked, f"{label}: -- (fix {blocking[0]} first)", None)
        elif which == "count":
            self._count_preview(cfg, asked)
        else:
            self._task_preview(cfg, asked)

    @work(thread=True, exclusive=True, group="setup-count", exit_on_error=False, description="trainable count")
    def _count_preview(self, cfg: RunConfig, asked: int) -> None:
        """Trainable count on a weightless model (may read a model config; never on the UI thread),
        and where the trainable tensors start in the block stack, for the step-cost line."""
        counts: catalog.ParamCount | None = None
        try:
            found = catalog.trainable_count(cfg)
            if found:
                counts = catalog.ParamCount(*found)
                share = 100 * counts.trainable / max(1, counts.total)
                text = f"trainable parameters: {counts.trainable:,} of {counts.total:,} ({share:.2f}%)"
            else:
                text = "trainable parameters: --"
        except Exception as exc:
            text = f"trainable parameters: unavailable ({exc})"
        self.app.call_from_thread(self._show_preview, "count", asked, text, counts)

    @work(thread=True, exclusive=True, group="setup-task", exit_on_error=False, description="task preview")
    def _task_preview(self, cfg: RunConfig, asked: int) -> None:
        """One rendered example and the split sizes (may read the data; never on the UI thread)."""
        try:
            preview = catalog.task_preview(cfg)
            text = f"preview:\n{preview}" if preview else "preview: --"
        except Exception as exc:
            text = f"preview: unavailable ({exc})"
        self.app.call_from_thread(self._show_preview, "task", asked, text)

    def _show_preview(
        self, which: str, asked: int, text: str, counts: catalog.ParamCount | None = None
    ) -> None:
        """Show a preview unless a newer request superseded it (thread workers cannot be cancelled,
        so an older, slower one may finish last)."""
        if asked != self._preview_asked[which]:
            return
        target = "#trainable-count" if which == "count" else "#task-preview"
        for widget in self.query(target).results(Static):  # none once the screen is gone
            widget.update(text)
        if which == "count":
            self._counted = counts
            self._show_step_cost()

    def _show_step_cost(self) -> None:
        """The step-cost line for the shown count and the form's optimizer and ``run.share_prefix``
        (cheap: recomputed on the UI thread when only those change)."""
        text = ""
        if self._counted is not None:
            cfg, _ = self.build_config()
            try:
                text = catalog.step_cost_line(cfg, self._counted)
            except Exception as exc:  # an estimate, never an error
                text = f"step cost: unavailable ({exc})"
        for widget in self.query("#step-cost").results(Static):
            widget.update(text)

    # --- the cached lr sweep ("use tuned lr") ---------------------------------------------------------

    def _refresh_tuned(self, cfg: RunConfig | None) -> None:
        """Look up the cached sweep for ``cfg`` (a file read, but it imports the tuner: a worker)."""
        if cfg is None or cfg.optimizer.name == "fo_adamw":
            self._show_tuned(None, None)
        else:
            self._lookup_tuned(self.without_default_options(cfg))

    def without_default_options(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` without the method options the form filled in with their defaults: the tune cache
        is keyed on the options, and a CLI config that leaves them unset must find the same entry."""
        out = cfg.copy()
        for section, specs, method in (
            (out.adapter, self.adapters, out.adapter.method),
            (out.optimizer, self.optimizers, out.optimizer.name),
        ):
            spec = specs.get(method)
            defaults = {o.key: as_text(o.default) for o in spec.options} if spec else {}
            for key in [k for k, v in section.options.items() if defaults.get(k) == as_text(v)]:
                del section.options[key]
        return out

    @work(
        thread=True, exclusive=True, group="setup-tuned", exit_on_error=False, description="tuned lr lookup"
    )
    def _lookup_tuned(self, cfg: RunConfig) -> None:
        try:
            result = catalog.cached_tune(cfg)
        except Exception:
            result = None  # the cache is a convenience, never an error
        self.app.call_from_thread(self._show_tuned, result, cfg.optimizer.lr, cfg.run.steps)

    def _show_tuned(self, result: TuneResult | None, current_lr: float | None, run_steps: int = 0) -> None:
        if not self.is_mounted:
            return
        self.tuned = result
        offer = self.query_one("#tuned-offer", Horizontal)
        offer.set_class(result is not None, "-available")
        offer.tooltip = "a cached sweep for this model, task, adapter, optimizer and batch size"
        if result is not None:
            run_lr = result.lr_for(run_steps)
            in_use = current_lr is not None and math.isclose(current_lr, run_lr, rel_tol=1e-9)
            self.query_one("#tuned-hint", Static).update(
                f"tuned: lr {run_lr:.3g} for {run_steps} steps (sweep pick {result.lr:.3g}), "
                f"eps {result.eps:.2g}" + (" (in use)" if in_use else "")
            )
            self.query_one("#use-tuned", Button).label = f"use tuned lr ({run_lr:.3g}) F8"
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_tuned":
            return True if self.tuned is not None else None  # listed, greyed out without a cache
        return True

    @on(Button.Pressed, "#use-tuned")
    def action_use_tuned(self) -> None:
        if self.tuned is None:
            self.notify("no tuned lr for this configuration yet: F7 runs the sweep", severity="warning")
            return
        self.apply_tuned(self.tuned)

    def apply_tuned(self, result: TuneResult) -> None:
        """Write the tuned lr (the sweep's pick discounted for the form's run length) and eps."""
        cfg = self.validate_form()
        run_lr = result.lr_for(cfg.run.steps if cfg is not None else result.steps)
        self.query_one(f"#{field_id('optimizer.lr')}", FormField).set_value(as_text(run_lr))
        self.query_one(f"#{field_id('optimizer.eps')}", FormField).set_value(as_text(result.eps))
        self._refresh_tuned(self.validate_form())
        self.notify(f"tuned lr {run_lr:.3g} (sweep pick {result.lr:.3g}), eps {result.eps:.2g} written into the form")

    # --- actions ----------------------------------------------------------------------------------

    def _with_assets(self, cfg: RunConfig, then: Callable[[RunConfig], None]) -> None:
        """Call ``then(cfg)`` once the assets ``cfg`` needs are fetched (asking first when missing)."""
        missing = catalog.missing_assets(cfg) if getattr(self.app, "check_assets", True) else []
        if missing:
            from zotui.screens.fetch import FetchScreen

            def fetched(ok: bool | None) -> None:
                if ok:
                    then(cfg)

            self.app.push_screen(FetchScreen(missing), fetched)
            return
        then(cfg)

    @on(Button.Pressed, "#start")
    def action_start_run(self) -> None:
        cfg = self.validate_form()
        if cfg is None:
            self.notify("Start refused: " + next(iter(self.errors.values())), severity="error")
            return
        self._with_assets(cfg, self._start)

    @on(Button.Pressed, "#tune")
    def action_tune(self) -> None:
        """Validate the form, then sweep the lr on the tune screen; its result can fill the form."""
        cfg = self.validate_form()
        if cfg is None:
            self.notify("Tune refused: " + next(iter(self.errors.values())), severity="error")
            return
        runner = getattr(self.app, "runner", None)
        if runner is not None and runner.active:
            message = "Tune refused: a run is active (it would compete for the CPU/GPU); stop it on the dashboard (F3) first"
            self.query_one("#setup-status", Static).update(f"[b red]{message}[/]")
            self.notify(message, severity="error")
            return
        self._with_assets(cfg, self._open_tune)

    def _open_tune(self, cfg: RunConfig) -> None:
        from zotui.screens.tune import TuneScreen

        def done(result: TuneResult | None) -> None:
            if result is not None:
                self.apply_tuned(result)
            else:
                self._refresh_tuned(self.validate_form())  # a finished sweep is cached even if not used

        tune_cfg = self.without_default_options(cfg)
        self.app.push_screen(TuneScreen(tune_cfg, prepare=catalog.warm_imports, **self.tune_options), done)

    def _start(self, cfg: RunConfig) -> None:
        try:
            self.app.new_run(cfg)  # type: ignore[attr-defined]
        except ZOError as exc:
            self.query_one("#setup-status", Static).update(f"[b red]Cannot start:[/] {exc.one_line()}")
            self.notify(exc.one_line(), severity="error")

    @on(Button.Pressed, "#save")
    def action_save_config(self) -> None:
        def save(path: str | None) -> None:
            if not path:
                return
            cfg, errors = self.build_config()
            try:
                cfg.save(Path(path))
            except (OSError, ZOError) as exc:
                self.notify(f"not saved: {exc}", severity="error")
                return
            self.config_path = Path(path)
            note = " (it does not validate yet: " + next(iter(errors.values())) + ")" if errors else ""
            self.notify(f"saved {path}{note}")

        self.app.push_screen(
            PathScreen("Save configuration as TOML", str(self.config_path or DEFAULT_TOML), "Save"), save
        )

    @on(Button.Pressed, "#load")
    def action_load_config(self) -> None:
        async def load(path: str | None) -> None:
            if not path:
                return
            try:
                cfg = RunConfig.load(Path(path))
            except ZOError as exc:
                self.notify(exc.one_line(), severity="error")
                return
            await self.load_config(cfg, Path(path))
            self.notify(f"loaded {path}")

        self.app.push_screen(
            PathScreen("Load configuration from TOML", str(self.config_path or DEFAULT_TOML), "Load"), load
        )

    async def load_config(self, cfg: RunConfig, path: Path | None) -> None:
        """Fill every field from ``cfg`` (method option fields are rebuilt for its methods)."""
        self.base, self.config_path = cfg, path
        self._typed.clear()
        self._targets_for = {cfg.adapter.method: as_text(cfg.adapter.targets)}
        for f in self.fields():
            section, _, name = f.key.partition(".")
            if not f.key.startswith("+") and name != EXTRA and hasattr(getattr(cfg, section), name):
                f.set_value(field_text(f.key, getattr(getattr(cfg, section), name)))
        await self._mount_method_options("adapter", cfg.adapter.method, cfg.adapter.options, force=True)
        await self._mount_method_options("optimizer", cfg.optimizer.name, cfg.optimizer.options, force=True)
        self._refresh_tuned(self.validate_form())
        self._refresh_slow_previews()

    @on(Button.Pressed, "#cli")
    def action_show_cli(self) -> None:
        cfg, errors = self.build_config()
        base = self.base if self.config_path is not None else RunConfig()
        text = cli_command(cfg, base, self.config_path)
        if errors:
            text += "\n\n# note: this configuration does not validate yet: " + next(iter(errors.values()))
        self.app.push_screen(TextScreen("Equivalent command line", text))


def _help(section: str, key: str) -> str:
    cls = type(getattr(RunConfig(), section))
    for f in dataclasses.fields(cls):
        if f.name == key:
            return str(f.metadata.get("help", ""))
    return ""
