"""ZoApp: screens, global keys, themes, and the one engine worker. Logic lives in zoengine.

The app owns at most one ``EngineRunner`` (the active run). A Textual thread worker starts it and
waits for its thread; an app-level timer drains its event queue into a ``RunState`` at most
``REFRESH_HZ`` times a second and lets the dashboard (when shown) redraw what changed. Screens
can come and go while a run continues: the dashboard is rebuilt from the runner's state.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState, get_current_worker

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.events import RunStatus
from zotui import catalog
from zotui.backend import Backend, RunHandle
from zotui.messages import RunEnded
from zotui.runner import EngineRunner
from zotui.screens.help import HelpScreen, key_help_for

REFRESH_HZ = 4
THEMES = ("textual-dark", "textual-light")


class ZoApp(App[None]):
    """The zotui application; build it with ``zotui.__main__.make_app``."""

    CSS_PATH = "app.tcss"
    TITLE = "zotui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding(
            "ctrl+q",
            "quit",
            "Quit",
            id="quit",
            priority=True,
            tooltip="Quit (asks first while a run is active)",
        ),
        Binding("f1", "help", "Help", id="help", tooltip="Keys of this screen"),
        Binding("question_mark", "help", "Help", id="help-alt", show=False, tooltip="Keys of this screen"),
        Binding(
            "f2", "show_runs", "Runs", id="show-runs", tooltip="Run directories: replay, compare, resume"
        ),
        Binding("f3", "show_dashboard", "Dashboard", id="show-dashboard", tooltip="The active run"),
        Binding("ctrl+t", "toggle_theme", "Theme", id="toggle-theme", tooltip="Dark / light theme"),
    ]

    def __init__(
        self,
        backend: Backend,
        config: RunConfig | None = None,
        config_path: Path | None = None,
        open_run: Path | None = None,
        check_assets: bool = True,
        theme: str = THEMES[0],
    ) -> None:
        super().__init__()
        self.backend = backend
        self.initial_config = config or catalog.default_config()
        self.config_path = config_path
        self.open_run = open_run
        self.check_assets = check_assets
        self.runner: EngineRunner | None = None
        self.exit_when_ended = False
        self.theme = theme

    # --- lifecycle -----------------------------------------------------------------------------

    def on_mount(self) -> None:
        from zotui.screens.setup import SetupScreen
        from zotui.settings import load_keymap

        keymap, problem = load_keymap()
        if keymap:
            self.set_keymap(keymap)
        if problem:
            self.notify(f"keymap ignored: {problem}", severity="warning", timeout=10)

        self.push_screen(SetupScreen(self.initial_config, self.config_path))
        if self.open_run is not None:
            from zotui.screens.runs import ReplayScreen

            self.push_screen(ReplayScreen([self.open_run]))
        self.set_interval(1 / REFRESH_HZ, self.tick, name="engine-drain")

    def tick(self) -> None:
        """Drain the engine queue and let the dashboard redraw (≤ REFRESH_HZ per second)."""
        if self.runner is None:
            return
        if self.runner.drain():
            self._toast_divergences(self.runner)
        from zotui.screens.dashboard import DashboardScreen

        if not self.screen_stack:  # the app is exiting: its screens are already gone
            return
        if isinstance(self.screen, DashboardScreen):
            try:
                self.screen.refresh_view()
            except NoMatches:  # the screen is being torn down (app exiting)
                pass

    def _toast_divergences(self, runner: EngineRunner) -> None:
        """A divergence rollback or AdaZeta's clamped schedule is easy to miss in the 5-line log pane:
        also show it as a toast."""
        state = runner.state
        for level, text in state.logs_since(runner.logs_toasted):
            if level == "warning" and text.startswith(("divergence", "AdaZeta")):
                self.notify(text, severity="warning", timeout=10)
        runner.logs_toasted = state.log_total

    # --- starting and stopping runs --------------------------------------------------------------------

    def start_run(self, config: RunConfig | None, run: RunHandle, resumed: bool = False) -> None:
        """Show the dashboard and start ``run`` in the engine worker."""
        from zotui.screens.dashboard import DashboardScreen

        self.runner = EngineRunner(run, config, resumed=resumed)
        self.push_screen(DashboardScreen(self.runner))
        self._engine_worker(self.runner)

    def new_run(self, config: RunConfig) -> None:
        """Create a run from ``config`` (refused with a message while another run is active)."""
        if self.runner is not None and self.runner.active:
            raise ZOError("a run is already active", hint="stop it on the dashboard (F3) first")
        self.start_run(config, self.backend.new_run(config))

    def resume_run(self, run_dir: Path) -> None:
        if self.runner is not None and self.runner.active:
            raise ZOError("a run is already active", hint="stop it on the dashboard (F3) first")
        self.start_run(None, self.backend.resume_run(run_dir), resumed=True)

    @work(thread=True, exclusive=True, exit_on_error=False, group="engine", description="training engine")
    def _engine_worker(self, runner: EngineRunner) -> str:
        worker = get_current_worker()
        self.backend.prepare()  # e.g. finish heavy imports here, not racing the engine thread
        if runner.resumed:  # before start: the history ends where the new events begin
            try:
                runner.load_history(self.backend.read_events(runner.run_dir))
            except (OSError, ZOError) as exc:
                self.call_from_thread(self.notify, f"history not shown: {exc}", severity="warning")
        status = runner.watch(lambda: worker.is_cancelled)
        self.post_message(RunEnded(runner, status))
        return status

    @on(RunEnded)
    def _run_ended(self, message: RunEnded) -> None:
        from zotui.screens.dashboard import DashboardScreen

        message.runner.drain()
        if isinstance(self.screen, DashboardScreen):
            self.screen.refresh_view(force=True)  # the final state, without waiting for the throttle
        severity = "error" if message.status in (RunStatus.FAILED, RunStatus.DIVERGED) else "information"
        self.notify(f"run {message.status}: {message.runner.run_dir.name}", severity=severity)
        if self.exit_when_ended:
            self.exit()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place for worker errors: show them instead of crashing (exit_on_error=False)."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            text = error.one_line() if isinstance(error, ZOError) else f"{type(error).__name__}: {error}"
            self.notify(
                f"{event.worker.description or event.worker.name}: {text}", severity="error", timeout=10
            )
            if event.worker.group == "engine" and self.exit_when_ended:
                self.exit()

    def stop_and_exit(self, save: bool) -> None:
        """Ask the engine to stop; the app exits when its thread has ended (RunEnded)."""
        runner = self.runner
        if runner is None or not runner.active:
            self.exit()
            return
        self.exit_when_ended = True
        runner.request_stop(save=save)
        self.notify("stopping the engine, then quitting…")

    # --- actions --------------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit; while a run is active, ask whether to stop and save it first."""
        if self.runner is None or not self.runner.active:
            self.exit()
            return
        from zotui.screens.dialogs import QuitScreen

        def chosen(choice: str | None) -> None:
            if choice in ("save", "discard"):
                self.stop_and_exit(save=choice == "save")

        self.push_screen(QuitScreen(), chosen)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        title = type(self.screen).__name__.removesuffix("Screen")
        self.push_screen(HelpScreen(title, key_help_for(self.screen)))

    def action_show_runs(self) -> None:
        from zotui.screens.runs import RunsScreen

        if not isinstance(self.screen, RunsScreen):
            self.push_screen(RunsScreen())

    def action_show_dashboard(self) -> None:
        from zotui.screens.dashboard import DashboardScreen

        if self.runner is None:
            self.notify("no run yet: start one from Setup (F5)", severity="warning")
        elif not isinstance(self.screen, DashboardScreen):
            self.push_screen(DashboardScreen(self.runner))

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]

    def shutdown_engine(self, timeout: float = 60.0) -> bool:
        """Last line of defence (called after ``run()`` returns): the engine thread must end."""
        return self.runner.shutdown(save=True, timeout=timeout) if self.runner is not None else True
