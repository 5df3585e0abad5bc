"""The setup form's hints about what the form describes: trainable parameters, step cost, task.

The trainable count and the task preview may read a model config or the data: each is computed in
a thread worker from the form's config once edits pause, so typing never stalls. Thread workers
cannot be cancelled, so an answer that a newer request superseded is dropped. A shown count is
announced (``TrainableCount.Counted``) for the step-cost line, which is cheap and recomputed on the
UI thread whenever the optimizer or ``run.share_prefix`` changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import work
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from zoengine.config import RunConfig
from zotui import catalog

PREVIEW_DELAY = 0.4  # seconds of quiet after an edit before the slow previews recompute

FormReader = Callable[[], tuple[RunConfig, dict[str, str]]]
"""The form's config and the error of each field that does not parse (``SetupScreen.build_config``)."""


class SlowPreview(Static):
    """A hint line computed off the UI thread from the form's config."""

    LABEL: ClassVar[str] = "preview"
    SECTIONS: ClassVar[tuple[str, ...]] = ()
    """Config sections it depends on: an error in one of them is shown instead of a worker's answer."""

    def __init__(self, text: str, form: FormReader, *, id: str) -> None:
        super().__init__(text, id=id, classes="hint")
        self._form = form
        self._timer: Timer | None = None
        self._asked = 0  # the latest request: an answer to an older one is dropped

    def schedule(self, delay: float | None = None) -> None:
        """Recompute once edits pause for ``delay`` seconds (default ``PREVIEW_DELAY``)."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(PREVIEW_DELAY if delay is None else delay, self.recompute)

    def recompute(self) -> None:
        """Start the worker on the form's config, or say which field blocks it."""
        self._timer = None
        self._asked += 1
        cfg, errors = self._form()
        blocking = [k for k in errors if k.split(".")[0] in self.SECTIONS]
        if blocking:
            self._show(self._asked, f"{self.LABEL}: -- (fix {blocking[0]} first)")
        else:
            self._compute(cfg, self._asked)

    def _compute(self, cfg: RunConfig, asked: int) -> None:
        """Compute in a worker, then ``_show`` the text on the UI thread."""
        raise NotImplementedError

    def _show(self, asked: int, text: str) -> bool:
        """Show ``text`` unless a newer request superseded it (or the screen is gone)."""
        if asked != self._asked or not self.is_attached:
            return False
        self.update(text)
        return True


class TrainableCount(SlowPreview):
    """Trainable parameters of the chosen model and adapter, counted on a weightless model."""

    LABEL = "trainable parameters"
    SECTIONS = ("model", "adapter")

    class Counted(Message):
        """A count is shown (None when there is none): the step-cost line follows it."""

        def __init__(self, counts: catalog.ParamCount | None) -> None:
            super().__init__()
            self.counts = counts

    def __init__(self, form: FormReader) -> None:
        super().__init__("trainable parameters: --", form, id="trainable-count")

    @work(
        thread=True, exclusive=True, group="setup-count", exit_on_error=False, description="trainable count"
    )
    def _compute(self, cfg: RunConfig, asked: int) -> None:
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
        self.app.call_from_thread(self._show, asked, text, counts)

    def _show(self, asked: int, text: str, counts: catalog.ParamCount | None = None) -> bool:
        if not super()._show(asked, text):
            return False
        self.post_message(self.Counted(counts))
        return True


class TaskPreview(SlowPreview):
    """One rendered example of the task and its split sizes."""

    LABEL = "preview"
    SECTIONS = ("task",)

    def __init__(self, form: FormReader) -> None:
        super().__init__("preview: --", form, id="task-preview")

    @work(thread=True, exclusive=True, group="setup-task", exit_on_error=False, description="task preview")
    def _compute(self, cfg: RunConfig, asked: int) -> None:
        """One rendered example and the split sizes (may read the data; never on the UI thread)."""
        try:
            preview = catalog.task_preview(cfg)
            text = f"preview:\n{preview}" if preview else "preview: --"
        except Exception as exc:
            text = f"preview: unavailable ({exc})"
        self.app.call_from_thread(self._show, asked, text)


class StepCost(Static):
    """The cost of a ZO step for the shown count, the form's optimizer and ``run.share_prefix``."""

    def __init__(self, form: FormReader) -> None:
        super().__init__("", id="step-cost", classes="hint")
        self._form = form
        self.counts: catalog.ParamCount | None = None

    def show(self, counts: catalog.ParamCount | None) -> None:
        """A new count (None: none shown)."""
        self.counts = counts
        self.recompute()

    def recompute(self) -> None:
        """The line for the form as it is now (an estimate, never an error)."""
        text = ""
        if self.counts is not None:
            cfg, _ = self._form()
            try:
                text = catalog.step_cost_line(cfg, self.counts)
            except Exception as exc:
                text = f"step cost: unavailable ({exc})"
        self.update(text)
