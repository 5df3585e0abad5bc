"""Setup: pick model, task, adapter and optimizer, check every field inline, then start.

The form holds text; ``build_config()`` turns it into a ``RunConfig`` with the same parser as the
CLI's ``--set`` (``zotui.form_values``), so each error names its field and the allowed values, and
"show CLI command" prints exactly what the CLI would need. Start is refused (with the reason shown)
until the config validates. The tabs' fields are listed in ``screens.setup_fields``; each method's
option fields come from its catalog spec (``widgets.method_options``); the slow look-ups (trainable
count and the step cost it implies, task preview, cached lr sweep) run in thread workers of their
widgets (``widgets.previews``, ``widgets.tuned_offer``), so typing never stalls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Static, TabbedContent, TabPane

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zotui import catalog, form_values
from zotui.form_values import (
    EXTRA,
    KNOWN_KEYS,
    OPTIONAL_KEYS,
    as_text,
    cli_command,
    field_text,
    parse_extra,
)
from zotui.screens import setup_fields
from zotui.screens.dialogs import PathScreen, TextScreen
from zotui.widgets.config_form import FormField, field_id
from zotui.widgets.method_options import COMMON_KEYS, MethodOptions, preset_choices, preset_values
from zotui.widgets.previews import StepCost, TaskPreview, TrainableCount
from zotui.widgets.tuned_offer import TunedOffer

if TYPE_CHECKING:
    from zoengine.tune import TuneResult

__all__ = [  # the form's text helpers moved to zotui.form_values: re-exported for existing imports
    "COMMON_KEYS",
    "DEFAULT_TOML",
    "EXTRA",
    "KNOWN_KEYS",
    "OPTIONAL_KEYS",
    "SetupScreen",
    "as_text",
    "cli_command",
    "field_text",
    "parse_extra",
]

DEFAULT_TOML = "zoengine-run.toml"


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
        self._targets_for: dict[str, str] = {config.adapter.method: as_text(config.adapter.targets)}
        self.tuned: TuneResult | None = None  # the cached sweep for the form's current config

    # --- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        cfg = self.base
        yield Static("[b]zotui[/b] · new run", id="setup-title")
        with TabbedContent(id="setup-tabs"):
            with TabPane("Model", id="tab-model"), VerticalScroll():
                yield from setup_fields.model_fields(cfg)
            with TabPane("Task", id="tab-task"), VerticalScroll():
                yield from setup_fields.task_fields(cfg, self.build_config)
            with TabPane("Adapter", id="tab-adapter"), VerticalScroll():
                yield from setup_fields.adapter_fields(cfg, self.adapters, self.build_config)
            with TabPane("Optimizer", id="tab-optimizer"), VerticalScroll():
                yield from setup_fields.optimizer_fields(cfg, self.optimizers)
            with TabPane("Run", id="tab-run"), VerticalScroll():
                yield from setup_fields.run_fields(cfg)
        yield Static("", id="setup-status")
        with Horizontal(id="setup-buttons"):
            yield Button("Start (F5)", id="start", variant="success")
            yield Button("Save (^S)", id="save")
            yield Button("Load (^O)", id="load")
            yield Button("CLI (F6)", id="cli")
            yield Button("Tune (F7)", id="tune")
        yield Footer()

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
        box = self.query_one(f"#{section}-options", MethodOptions)
        if not await box.show(method, values, force=force):
            return
        self.query_one(f"#{section}-description", Static).update(
            box.spec.description if box.spec else "unknown method"
        )
        if section == "optimizer":
            self.query_one(f"#{field_id('+preset')}", FormField).set_choices(preset_choices(box.spec))

    # --- building and validating ----------------------------------------------------------------------

    def fields(self) -> list[FormField]:
        return list(self.query(FormField))

    def build_config(self) -> tuple[RunConfig, dict[str, str]]:
        """The config the form describes, and the error of every field that does not parse/validate."""
        return form_values.build_config(self.base, [(f.key, f.value) for f in self.fields()])

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
        self._refresh_tuned(self.validate_form())
        if key in ("model.name", "+model.zoo"):
            self._show_fetched()
        if section in ("model", "+model", "adapter"):
            self.schedule_preview("count")
        elif section in ("optimizer", "run"):
            self.query_one(StepCost).recompute()  # Q and run.share_prefix change the cost, not the count
        if section == "task":
            self.schedule_preview("task")

    async def _switch_method(self, section: str, method: str) -> None:
        """New method: its own option fields at their defaults, except keys the user typed; the
        adapter's targets are remembered per method (subset's parameter names mean nothing to tt)."""
        box = self.query_one(f"#{section}-options", MethodOptions)
        old = box.method
        if old is None or old == method:
            return  # not mounted yet (on_mount mounts the config's own options), or no change
        if section == "adapter":
            targets = self.query_one(f"#{field_id('adapter.targets')}", FormField)
            self._targets_for[old] = targets.value
            targets.set_value(self._targets_for.get(method, ""))
        await self._mount_method_options(section, method, box.typed_for(method))

    def _apply_preset(self, name: str) -> None:
        """The paper's common settings, and the method's options at their defaults (the papers')."""
        method = self.query_one("#f-optimizer-name", FormField).value
        for dotted, value in preset_values(self.optimizers.get(method), name).items():
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

    # --- the slow previews (thread workers of their widgets) ---------------------------------------

    def schedule_preview(self, which: str, delay: float | None = None) -> None:
        """Recompute the trainable count ("count") or the task preview ("task") once edits pause."""
        self.query_one(TrainableCount if which == "count" else TaskPreview).schedule(delay)

    def _refresh_slow_previews(self) -> None:
        self.query_one(TrainableCount).recompute()
        self.query_one(TaskPreview).recompute()

    @on(TrainableCount.Counted)
    def _show_step_cost(self, event: TrainableCount.Counted) -> None:
        for line in self.query(StepCost).results():  # none once the screen is gone
            line.show(event.counts)

    # --- the cached lr sweep ("use tuned lr") ---------------------------------------------------------

    def _refresh_tuned(self, cfg: RunConfig | None) -> None:
        """Look up the cached sweep for ``cfg`` (None: the form does not validate)."""
        self.query_one(TunedOffer).look_up(None if cfg is None else self.without_default_options(cfg))

    def without_default_options(self, cfg: RunConfig) -> RunConfig:
        """``cfg`` without the method options the form filled in with their defaults: the tune cache
        is keyed on the options, and a CLI config that leaves them unset must find the same entry."""
        return form_values.without_default_options(cfg, self.adapters, self.optimizers)

    @on(TunedOffer.Found)
    def _tuned_found(self, event: TunedOffer.Found) -> None:
        self.tuned = event.result
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
        self.notify(
            f"tuned lr {run_lr:.3g} (sweep pick {result.lr:.3g}), eps {result.eps:.2g} written into the form"
        )

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
        for box in self.query(MethodOptions).results():
            box.typed.clear()
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
        if self.config_path is None:  # method options at their defaults go without saying
            cfg = self.without_default_options(cfg)
        text = cli_command(cfg, base, self.config_path)
        if errors:
            text += "\n\n# note: this configuration does not validate yet: " + next(iter(errors.values()))
        self.app.push_screen(TextScreen("Equivalent command line", text))
