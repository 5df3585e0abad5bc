"""EngineRunner: one run handle owned by the app, started and watched from a Textual thread worker.

The engine runs in its own thread and publishes to a bounded queue it never blocks on. The app
drains that queue on a timer (at most 4 times a second) into a ``RunState``; nothing here touches
widgets. ``watch()`` is the body of the thread worker: it starts the run (model loading happens in
the engine thread, so the UI stays live), then waits for the engine thread to end, polling the
worker's cancellation flag because Textual cannot kill threads (textual#4889). On cancellation
(app exit) it asks the engine to stop and save, so the engine thread always shuts down and never
keeps the process alive after quit (textual#3966).
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path

from zoengine.config import RunConfig
from zoengine.events import Event, RunStatus
from zotui.backend import ACTIVE_STATUSES, RunHandle
from zotui.state import RunState

POLL_SECONDS = 0.2
DRAIN_LIMIT = 20_000  # events folded per tick at most, so one tick never stalls the UI


class EngineRunner:
    """A run handle plus the folded state of its events."""

    def __init__(self, run: RunHandle, config: RunConfig | None = None, *, resumed: bool = False) -> None:
        self.run = run
        self.config = config if config is not None else getattr(run, "config", None)
        self.resumed = resumed  # the state starts from the run's history (``load_history``)
        self.state = RunState()
        self._history: RunState | None = None  # folded in the worker, swapped in by ``drain``
        self.started = False
        self.ended = False
        self.stop_requested: bool | None = None  # None, or the save flag of the stop we sent
        self.logs_toasted = 0  # log lines of ``state`` the app has checked for toasts

    @property
    def run_dir(self) -> Path:
        return Path(self.run.run_dir)

    @property
    def active(self) -> bool:
        """True while the engine thread may still be working."""
        return self.started and not self.ended and self.run.status in ACTIVE_STATUSES

    def load_history(self, events: list[Event]) -> None:
        """Fold a resumed run's ``metrics.jsonl`` (in the worker, before ``start``): the header,
        the step count and the curves before the resume point come back on the next ``drain``."""
        history = RunState.from_events(events)
        self.logs_toasted = history.log_total  # old warnings were toasted in their own session
        self._history = history

    def drain(self, limit: int = DRAIN_LIMIT) -> int:
        """Move queued events into the state without waiting; returns how many were taken."""
        history, self._history = self._history, None
        if history is not None:  # set before the run started, so before any queued event
            history.version = self.state.version + 1
            self.state = history
        taken: list[Event] = []
        events = self.run.events
        while len(taken) < limit:
            try:
                taken.append(events.get_nowait())
            except queue.Empty:
                break
        return self.state.feed(taken) + (1 if history is not None else 0)

    def watch(self, is_cancelled: Callable[[], bool], poll: float = POLL_SECONDS) -> str:
        """Start the run and block (in a worker thread) until its thread ends; returns the status."""
        self.started = True
        try:
            self.run.start()
            while not self.run.join(timeout=poll):
                if is_cancelled() and self.stop_requested is None:
                    self.request_stop(save=True)
        finally:
            self.ended = True
        return self.run.status

    # --- controls (thin, so the screens read as a list of actions) ---------------------------------

    def toggle_pause(self) -> str:
        """Pause a running run or resume a paused one; returns what was done."""
        if self.run.status == RunStatus.PAUSED:
            self.run.resume()
            return "resumed"
        self.run.pause()
        return "pause requested"

    def request_stop(self, save: bool = True) -> None:
        """Ask the engine to stop (it honours this within one query); does not wait."""
        self.stop_requested = save
        self.run.stop(save=save)

    def shutdown(self, save: bool = True, timeout: float | None = 60.0) -> bool:
        """Stop the engine (saving if asked) and wait for its thread; True when it has ended."""
        if not self.started:
            return True
        if self.stop_requested is None and self.run.status in ACTIVE_STATUSES:
            self.request_stop(save=save)
        return self.run.join(timeout)
