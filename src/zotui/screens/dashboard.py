"""The run dashboard: curves, counters, memory, progress, log, and the run's controls.

Display only: the app drains the engine queue into the runner's ``RunState`` and calls
``refresh_view()`` at most 4 times a second; each widget redraws only when the state's version
changed, and only the visible plot tab is rebuilt. ``ReplayScreen`` (runs screen) reuses the same
widgets for a finished run read from ``metrics.jsonl``.
"""

from __future__ import annotations

import time

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, ProgressBar, Static, TabbedContent, TabPane

from zoengine.errors import ZOError
from zoengine.events import RunStatus
from zotui.runner import EngineRunner
from zotui.state import RunState, format_duration
from zotui.widgets.counters import CountersPanel
from zotui.widgets.log_pane import LogPane
from zotui.widgets.memory import MemoryPanel
from zotui.widgets.plots import Figure, Line, Points, SeriesPlot
from zotui.widgets.sora import SoraView

PLOT_TABS = ("loss", "grad", "queries", "sora")
PLOT_MIN_INTERVAL = 2.0  # seconds between plot rebuilds while data streams in (a whole-run curve)
NUMBERS_MIN_INTERVAL = 0.5  # seconds between redraws of counters, progress and log


class TextLine(Static):
    """A one-line (fixed-height) label redrawn only when its text changes, without a relayout."""

    def __init__(self, text: str = "", *, id: str | None = None) -> None:
        super().__init__(text, id=id)
        self.text = text

    def show(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.update(text, layout=False)


def loss_figure(state: RunState) -> Figure:
    """Raw and smoothed train loss plus dev loss and dev accuracy (right axis) points."""
    dev = state.dev_points()
    return Figure(
        title="train loss (raw, ema) · dev loss · dev acc (right)",
        lines=[Line("raw", state.loss, "gray"), Line("ema", state.smoothed, "cyan", joined=True)],
        points=[
            Points("dev loss", [e.step for e in dev], [e.loss for e in dev], "yellow", "dot"),
            Points("dev acc", [e.step for e in dev], [e.accuracy for e in dev], "green", "+", yside="right"),
        ],
    )


def figure_for(tab: str, state: RunState) -> Figure:
    if tab == "grad":
        return Figure("mean |projected gradient| per step", [Line("|g|", state.grad, "magenta")])
    if tab == "queries":
        return Figure(
            "queries per step (Q_k) · lr",
            [Line("queries", state.queries, "green"), Line("lr", state.lr, "blue", yside="right")],
        )
    if tab == "sora":
        return Figure("SoRA gate sparsity", [Line("sparsity", state.sparsity, "yellow")], ylim=(0.0, 1.0))
    return loss_figure(state)


def progress_text(state: RunState, active: bool) -> str:
    """``12/300 · 3.21 s/step · ETA 12:40``; during an evaluation its batches instead of the speed.

    Speed and ETA come from the steps' own durations (pauses and evaluations excluded) and the
    forward passes still to do; a run that is not active shows no speed (nothing is measured)."""
    head = f"{state.step}/{state.total_steps or '?'}"
    if active and state.evaluating is not None:
        ev = state.evaluating
        return f"{head} · evaluating {ev.split}: batch {ev.done}/{ev.total} ({ev.examples} examples)"
    per_step = state.seconds_per_step() if active else None
    if per_step is None:
        return f"{head} · -- s/step · ETA --"
    speed = f"{per_step:.2f} s/step" if per_step >= 0.1 else f"{1 / per_step:.1f} steps/s"
    paused = " (paused)" if state.status == RunStatus.PAUSED else ""
    return f"{head} · {speed} · ETA {format_duration(state.eta_seconds())}{paused}"


class RunView(Vertical):
    """Curves + numbers + log for one ``RunState`` (shared by the live dashboard and replays)."""

    def __init__(self, state: RunState, device: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = state
        self.device = device
        self.logs_seen = 0
        self.ready = False
        self._plot_drawn_at = 0.0

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-main"):
            with TabbedContent(id="plot-tabs"):
                for tab in PLOT_TABS:
                    with TabPane(tab, id=f"tab-{tab}"):
                        yield SeriesPlot(id=f"plot-{tab}")
                        if tab == "sora":
                            yield SoraView(id="sora-view")
            with Vertical(id="run-side"):
                yield CountersPanel(id="counters")
                yield MemoryPanel(self.device, id="memory")
        yield LogPane(id="log")

    def on_mount(self) -> None:
        self.ready = True
        self.refresh_view()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_view(force=True)

    def refresh_view(self, force: bool = False, live: bool = False) -> None:
        """Redraw what changed; while ``live`` (data streaming in) the plot waits PLOT_MIN_INTERVAL."""
        if not self.ready:
            return
        state = self.state
        self.query_one(CountersPanel).show_state(state)
        tab = (self.query_one("#plot-tabs", TabbedContent).active or "tab-loss").removeprefix("tab-")
        plot = self.query_one(f"#plot-{tab}", SeriesPlot)
        now = time.monotonic()
        throttled = live and now - self._plot_drawn_at < PLOT_MIN_INTERVAL
        if force or (not throttled and plot.drawn_version != state.version):
            if state.steps_seen:  # the first curve appears at once; later ones wait their turn
                self._plot_drawn_at = now
            plot.show_figure(figure_for(tab, state), state.version, force=True)
        if tab == "sora":
            self.query_one(SoraView).show_modules(state.per_module, state.effective_rank)
        log = self.query_one(LogPane)
        for level, text in state.logs_since(self.logs_seen):
            log.add(level, text)
        self.logs_seen = state.log_total


class DashboardScreen(Screen[None]):
    """The live run: everything in ``RunView`` plus progress and controls."""

    BINDINGS = [
        Binding(
            "p,space", "pause_resume", "Pause/Resume", id="pause-resume", tooltip="Pause or resume the engine"
        ),
        Binding(
            "s", "stop_save", "Stop & save", id="stop-save", tooltip="Stop within one query and checkpoint"
        ),
        Binding(
            "e", "evaluate_now", "Eval now", id="evaluate-now", tooltip="Evaluate on dev after this step"
        ),
        Binding("x", "export", "Export", id="export", tooltip="Export the adapter (native, PEFT, merged)"),
        Binding(
            "escape,b",
            "back_to_setup",
            "Setup",
            id="back-to-setup",
            tooltip="Back to setup; the run continues",
        ),
    ]

    def __init__(self, runner: EngineRunner) -> None:
        super().__init__()
        self.runner = runner
        self.ready = False  # the app's timer may tick between push and compose
        self._drawn_at = 0.0

    def compose(self) -> ComposeResult:
        yield TextLine(id="run-title")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=None, show_eta=False, id="progress")
            yield ProgressBar(total=None, show_eta=False, id="eval-progress", classes="-hidden")
            yield TextLine(id="progress-text")
        device = self.runner.config.model.device if self.runner.config else None
        yield RunView(self.runner.state, None if device in (None, "auto") else device, id="run-view")
        yield Footer()

    def on_mount(self) -> None:
        self.ready = True
        self.refresh_view()

    def refresh_view(self, force: bool = False) -> None:
        """Redraw at most every NUMBERS_MIN_INTERVAL, in one batch (one frame, not one per widget)."""
        now = time.monotonic()
        if not self.ready or (not force and now - self._drawn_at < NUMBERS_MIN_INTERVAL):
            return
        self._drawn_at = now
        with self.app.batch_update():
            try:
                self._redraw()
            except NoMatches:  # the screen is being taken down (the app quits as the run ends):
                return  # its widgets unmount children first, so any of them may be gone already

    def _redraw(self) -> None:
        """Touch only widgets whose text changed: every ``update`` costs a screen render, and that
        CPU is taken from the engine's torch threads on a small machine."""
        state = self.runner.state
        view = self.query_one(RunView)
        if view.state is not state:  # a resumed run's history replaced the empty state
            view.state, view.logs_seen = state, 0
            view.refresh_view(force=True)
        else:
            view.refresh_view(live=self.runner.active)
        cfg = self.runner.config
        what = (  # the method first: in a narrow terminal the tail is what gets cut
            f" · {cfg.adapter.method} · {cfg.optimizer.name} · {cfg.model.name} · {cfg.task.name}"
            if cfg
            else ""
        )
        ev = state.evaluating
        if ev is not None:  # not "running (training)" at 0 steps/s for minutes
            status = f"{state.status} · evaluating {ev.split}: {ev.done}/{ev.total} batches"
        else:
            message = state.status_message
            if message.startswith(state.status):  # "finished 300 steps", not "finished (finished …)"
                status = message
            else:
                status = state.status + (f" ({message})" if message else "")
        self.query_one("#run-title", TextLine).show(f"[b]{self.runner.run_dir.name}[/b] · {status}{what}")
        bar = self.query_one("#progress", ProgressBar)
        if state.total_steps:
            bar.update(total=state.total_steps, progress=state.step)
        evaluating = state.evaluating if self.runner.active else None
        eval_bar = self.query_one("#eval-progress", ProgressBar)
        if evaluating is not None:
            eval_bar.update(total=max(1, evaluating.total), progress=evaluating.done)
        if eval_bar.has_class("-hidden") != (evaluating is None):
            eval_bar.set_class(evaluating is None, "-hidden")
            bar.set_class(evaluating is not None, "-hidden")
        self.query_one("#progress-text", TextLine).show(progress_text(state, self.runner.active))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Run controls are shown dimmed when the run cannot take them."""
        if action in ("pause_resume", "stop_save", "evaluate_now"):
            return True if self.runner.active else None
        return True

    # --- actions ----------------------------------------------------------------------------------

    def action_pause_resume(self) -> None:
        if self.runner.active:
            try:
                self.notify(self.runner.toggle_pause())
            except ZOError as exc:  # e.g. a multi-process run: "stop and resume instead"
                self.notify(exc.one_line(), severity="warning")

    def action_stop_save(self) -> None:
        if self.runner.active:
            self.runner.request_stop(save=True)
            self.notify("stopping after this query; a checkpoint will be saved")

    def action_evaluate_now(self) -> None:
        if self.runner.active:
            try:
                self.runner.run.request_eval()
            except ZOError as exc:
                self.notify(exc.one_line(), severity="warning")
                return
            paused = self.runner.run.status == RunStatus.PAUSED
            self.notify("evaluating dev now (the run stays paused)" if paused else "evaluating dev after this step")

    def action_export(self) -> None:
        from zotui.screens.export import ExportScreen

        if self.runner.active:
            self.notify(
                "export exports the last checkpoint; stop the run first for the latest weights",
                severity="warning",
            )
        self.app.push_screen(ExportScreen(self.runner.run, self.runner.run_dir, self.runner.state))

    def action_back_to_setup(self) -> None:
        """Pop back to the setup screen (even when the dashboard was opened from the runs screen)."""
        from zotui.screens.setup import SetupScreen

        stack = self.app.screen_stack
        setup_at = max((i for i, s in enumerate(stack) if isinstance(s, SetupScreen)), default=len(stack) - 2)
        for _ in range(len(stack) - 1 - setup_at):
            self.app.pop_screen()
