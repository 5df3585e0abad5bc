"""A run as other threads see it: its thread, status and events, the requests they can make
(pause, stop, evaluate now), and the run directory it owns while it writes.

``RunControl`` is the base of ``zoengine.engine.Run``, which adds the training; kept apart so the
engine reads as the training loop. Requests are only flags here: the loop checks them at fixed
points. With several ranks (torchrun) one all-reduce makes any rank's request every rank's, so
all ranks take the same branches (evaluations are sharded, steps exchange losses).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoengine.config import RunConfig
from zoengine.events import Event, LogMessage, RunStatus, StatusChanged
from zoengine.io import append_jsonl

log = logging.getLogger("zoengine.engine")

EVENT_QUEUE_SIZE = 10_000
PAUSE_POLL_SECONDS = 0.1  # how soon a paused run notices "evaluate now"


class RunControl:
    """Status, events and requests of one run into one run directory (see ``zoengine.engine.Run``)."""

    def __init__(self, config: RunConfig, run_dir: Path, *, resume: bool) -> None:
        self.config = config
        self.run_dir = run_dir
        self.resuming = resume
        self.events: queue.Queue[Event] = queue.Queue(maxsize=EVENT_QUEUE_SIZE)
        self.status = RunStatus.CREATED
        self.error: str | None = None
        self.error_is_user = False  # a ZOError (bad input) rather than a crash
        self.step = 0
        self.best_dev_accuracy: float | None = None
        self.test_result: dict[str, Any] | None = None  # loss, accuracy, examples, checkpoint, step
        self._subscribers: list[Callable[[Event], None]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._save_on_stop = True
        self._running = threading.Event()
        self._running.set()
        self._eval_requested = threading.Event()
        self._dir_lock: Any = None  # the run directory's filelock, held while this run writes it
        self._owner = False  # True once this run holds that lock: only then does it write the folder
        # zoengine.distributed.Dist: this process's rank (joined in run(); a world of 1 without torchrun)
        self.dist: Any = None
        # several ranks: their stop / "evaluate now" requests, agreed by one all-reduce (_agree)
        self._agreed_stop = False
        self._eval_agreed = False
        self._fresh_agreement = False  # an agreement since the last step: the loop's check uses it
        self._agree_bytes = 0  # bytes of agreements not yet counted in a step's comm_bytes

    def run(self) -> None:
        """The run itself, in the calling thread (``zoengine.engine.Run.run``; ``start`` threads it)."""
        raise NotImplementedError

    # --- control (any thread) ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` from the engine thread for every event (keep it cheap)."""
        self._subscribers.append(callback)

    def start(self) -> None:
        """Run in a background (daemon) thread."""
        if self._thread is not None:
            raise RuntimeError("run already started")
        self._thread = threading.Thread(
            target=self.run, name=f"zoengine-run-{self.run_dir.name}", daemon=True
        )
        self._thread.start()

    def pause(self) -> None:
        """Pause before the next step (a request: the loop pauses between steps)."""
        if self._multi:  # the other ranks would time out waiting
            self._log("a multi-process run cannot pause (stop it and resume later)", "warning")
            return
        if self.status == RunStatus.RUNNING:
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def request_eval(self) -> None:
        """Evaluate on dev after the current step (at once when paused)."""
        self._eval_requested.set()

    def stop(self, save: bool = True) -> None:
        """Stop within one query; ``save``: write a checkpoint at the step reached (resumable)."""
        self._save_on_stop = save
        self._stop.set()
        self._running.set()  # wake a paused loop so it can exit

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run's thread; True when it has ended (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- events and status -----------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        """Log to metrics.jsonl, offer to the bounded queue (drop the oldest when full), notify."""
        if self._owner:
            append_jsonl(self.run_dir / "metrics.jsonl", event.to_record())
        while True:
            try:
                self.events.put_nowait(event)
                break
            except queue.Full:
                try:
                    self.events.get_nowait()
                except queue.Empty:
                    pass
        for cb in self._subscribers:
            try:
                cb(event)
            except Exception:  # a broken subscriber must not kill training
                log.exception("event subscriber failed")

    def _set_status(self, status: RunStatus, message: str = "") -> None:
        self.status = status
        self._emit(StatusChanged(status=status, message=message))
        self._write_state()

    def _log(self, text: str, level: str = "info") -> None:
        getattr(log, "warning" if level == "warning" else "info")(text)
        self._emit(LogMessage(level=level, text=text))

    def _write_state(self) -> None:
        """``state.json``: what ``zoengine runs`` and the app's run list show (status as a plain string)."""
        from zoengine.rundir import write_state

        if not self._owner:
            return
        write_state(
            self.run_dir,
            {
                "status": str(self.status),
                "step": self.step,
                "total_steps": self.config.run.steps,
                "best_dev_accuracy": self.best_dev_accuracy,
                "test": self.test_result,
                "error": self.error,
                "updated": time.time(),
            },
        )

    def _fail(self, text: str, *, user: bool) -> None:
        """End as 'failed' with one line; a full or read-only disk must not turn the report into a crash."""
        self.error, self.error_is_user = text, user
        try:
            if self._owner:  # a refused writer (run busy, folder holds a run) leaves the folder as it is
                self._log(text, "error")
            self._set_status(RunStatus.FAILED, text)
        except OSError:
            self.status = RunStatus.FAILED
            with contextlib.suppress(queue.Full):
                self.events.put_nowait(StatusChanged(status=RunStatus.FAILED, message=text))

    # --- the run directory -----------------------------------------------------------------------

    def _join_job(self) -> None:
        """Join the torchrun job if there is one (zoengine.distributed); all ranks use rank 0's run dir."""
        from zoengine import distributed

        if self.dist is None:
            self.dist = distributed.from_env(mode=self.config.run.parallel, device=self.config.model.device)
        if self.dist.enabled:
            self.run_dir = Path(self.dist.broadcast_object(str(self.run_dir), "agreeing on the run directory"))

    @property
    def _multi(self) -> bool:
        """Several ranks (torchrun): requests are agreed, evaluations sharded."""
        return self.dist is not None and self.dist.enabled

    @property
    def _is_main(self) -> bool:
        """The rank that writes the run directory (the only one without torchrun)."""
        return self.dist is None or self.dist.is_main

    def _prepare_dir(self) -> None:
        """Own the run directory (lock, create or repair: ``rundir.open_for_writing``); rank 0 only,
        the other ranks only read checkpoints on resume. Nothing is written before this succeeds."""
        from zoengine import rundir

        if not self._is_main:
            return
        self._dir_lock, notes = rundir.open_for_writing(self.run_dir, self.config, resuming=self.resuming)
        self._owner = True
        for note in notes:
            self._log(note, "warning")

    def _release_dir(self) -> None:
        self._owner = False
        lock, self._dir_lock = self._dir_lock, None
        if lock is not None:
            lock.release()

    # --- requests, as the loop takes them ----------------------------------------------------------

    def _stop_agreed(self) -> bool:
        """A stop request; with several ranks, one rank's request stops them all at the same point
        (the agreement made right after the last step, or a new one)."""
        if not self._multi:
            return self._stop.is_set()
        if not self._fresh_agreement:
            self._agree()
        self._fresh_agreement = False
        return self._agreed_stop

    def _agree(self) -> None:
        """One all-reduce makes any rank's stop request and "evaluate now" every rank's: the ranks
        must take the same branches, since evaluations are sharded and steps exchange losses."""
        d = self.dist
        sent = d.bytes_sent
        asked = self._eval_requested.is_set()
        if asked:
            self._eval_requested.clear()  # taken by this agreement
        stop, evaluate = d.all_reduce_sum([float(self._stop.is_set()), float(asked)])
        if stop > 0:
            self._stop.set()
            self._agreed_stop = True
        self._eval_agreed = self._eval_agreed or evaluate > 0
        self._fresh_agreement = True
        self._agree_bytes += d.bytes_sent - sent  # counted in the next step's comm_bytes

    def _take_eval_request(self) -> bool:
        """"Evaluate now" after this step: this process's request, or with several ranks the one
        they agreed on right after the step."""
        if self._multi:
            agreed, self._eval_agreed = self._eval_agreed, False
            return agreed
        asked = self._eval_requested.is_set()
        self._eval_requested.clear()
        return asked

    def _wait_while_paused(self, evaluate_dev: Callable[[], object] | None) -> None:
        """Block until resumed or stopped; "evaluate now" asked meanwhile runs ``evaluate_dev`` at
        once (None: the task has no dev split)."""
        while not self._running.wait(PAUSE_POLL_SECONDS):
            if self._eval_requested.is_set():
                self._eval_requested.clear()
                if evaluate_dev is None:
                    self._log("evaluate now: this task has no dev split", "warning")
                    continue
                self._set_status(RunStatus.PAUSED, "evaluating dev")
                evaluate_dev()
                self._set_status(RunStatus.PAUSED, "dev evaluated")

    def _stopped(self) -> bool:
        """Whether the run ended on a stop request (the agreed one with several ranks)."""
        return self._agreed_stop if self._multi else self._stop.is_set()
