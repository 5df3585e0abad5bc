"""First-run asset fetching with progress; the download runs in a thread worker, the UI stays live.

Dismisses with True when every asset is in the cache (the caller then starts the run), False when
the user goes back or a fetch fails (the error stays on screen until then).
"""

from __future__ import annotations

import importlib
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, RichLog, Static
from textual.worker import Worker, WorkerState, get_current_worker

from zoengine.errors import ZOError
from zotui.messages import FetchProgressed

MIN_UPDATE_SECONDS = 0.1  # progress callbacks can fire per chunk; the UI needs ~10 updates/s


class FetchScreen(Screen[bool]):
    """Fetch ``names`` from the zoo, one after the other."""

    BINDINGS = [
        Binding(
            "escape",
            "back",
            "Back",
            id="fetch-back",
            tooltip="Back to setup (the download finishes in the background)",
        )
    ]

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.names = names
        self.failed = False

    def compose(self) -> ComposeResult:
        yield Static(
            "[b]Fetching zoo assets[/b] (first run only; they are cached afterwards)", id="fetch-title"
        )
        with Vertical(id="fetch-list"):
            for i, name in enumerate(self.names):
                yield Label(f"{name}: waiting", id=f"fetch-label-{i}")
                yield ProgressBar(total=100, show_eta=False, id=f"fetch-bar-{i}")
        yield RichLog(id="fetch-log", max_lines=200, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._fetch_all()

    @work(thread=True, exclusive=True, group="fetch", exit_on_error=False, description="asset fetch")
    def _fetch_all(self) -> None:
        assets = importlib.import_module("zoengine.assets")
        worker = get_current_worker()
        for name in self.names:
            if worker.is_cancelled:
                return
            last = [0.0, ""]

            def progress(stage: str, fraction: float | None, name: str = name, last: list = last) -> None:
                now = time.monotonic()
                if stage != last[1] or now - float(last[0]) >= MIN_UPDATE_SECONDS or fraction == 1.0:
                    last[0], last[1] = now, stage
                    self.post_message(FetchProgressed(name, stage, fraction))

            assets.fetch(name, progress=progress)
            self.post_message(FetchProgressed(name, "done", 1.0))

    @on(FetchProgressed)
    def _progressed(self, event: FetchProgressed) -> None:
        i = self.names.index(event.name)
        self.query_one(f"#fetch-label-{i}", Label).update(f"{event.name}: {event.stage}")
        bar = self.query_one(f"#fetch-bar-{i}", ProgressBar)
        if event.fraction is None:
            bar.update(total=None)  # indeterminate: animated bar
        else:
            bar.update(total=100, progress=100 * event.fraction)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "fetch":
            return
        log = self.query_one("#fetch-log", RichLog)
        if event.state == WorkerState.SUCCESS:
            log.write("all assets fetched")
            self.dismiss(True)
        elif event.state == WorkerState.ERROR:
            self.failed = True
            err = event.worker.error
            text = err.one_line() if isinstance(err, ZOError) else f"{type(err).__name__}: {err}"
            log.write(f"fetch failed: {text}")
            log.write("Esc goes back to setup; fix the problem (network, disk space) and start again.")

    def action_back(self) -> None:
        self.workers.cancel_group(self, "fetch")
        self.dismiss(False)
