"""The cached lr sweep for the form's config, offered next to the lr field ("use tuned lr").

``zoengine tune`` (F7 on the setup screen) caches its sweep per model, task, adapter, optimizer and
batch size. Looking the cache up is a file read, but it imports the tuner: a thread worker does it
after each edit. The offer shows only while a sweep is cached; each look-up ends with a ``Found``
message, so the screen knows whether "use tuned lr" (F8) has anything to write.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Static

from zoengine.config import RunConfig
from zotui import catalog

if TYPE_CHECKING:
    from zoengine.tune import TuneResult


class TunedOffer(Horizontal):
    """The cached sweep's lr and eps for the form's run length, and a button to use them."""

    class Found(Message):
        """A look-up ended: ``result`` is the cached sweep, or None when there is none."""

        def __init__(self, result: TuneResult | None) -> None:
            super().__init__()
            self.result = result

    def __init__(self) -> None:
        super().__init__(id="tuned-offer")

    def compose(self) -> ComposeResult:
        yield Static("", id="tuned-hint")
        yield Button("use tuned lr", id="use-tuned", variant="primary")

    def look_up(self, cfg: RunConfig | None) -> None:
        """Look up the cached sweep for ``cfg`` (None, a form that does not validate: no offer)."""
        if cfg is None or cfg.optimizer.name == "fo_adamw":
            self._show(None, None)
        else:
            self._look_up(cfg)

    @work(
        thread=True, exclusive=True, group="setup-tuned", exit_on_error=False, description="tuned lr lookup"
    )
    def _look_up(self, cfg: RunConfig) -> None:
        try:
            result = catalog.cached_tune(cfg)
        except Exception:
            result = None  # the cache is a convenience, never an error
        self.app.call_from_thread(self._show, result, cfg.optimizer.lr, cfg.run.steps)

    def _show(self, result: TuneResult | None, current_lr: float | None, run_steps: int = 0) -> None:
        if not self.is_mounted or not self.is_attached:
            return
        self.set_class(result is not None, "-available")
        self.tooltip = "a cached sweep for this model, task, adapter, optimizer and batch size"
        if result is not None:
            run_lr = result.lr_for(run_steps)
            in_use = current_lr is not None and math.isclose(current_lr, run_lr, rel_tol=1e-9)
            self.query_one("#tuned-hint", Static).update(
                f"tuned: lr {run_lr:.3g} for {run_steps} steps (sweep pick {result.lr:.3g}), "
                f"eps {result.eps:.2g}" + (" (in use)" if in_use else "")
            )
            self.query_one("#use-tuned", Button).label = f"use tuned lr ({run_lr:.3g}) F8"
        self.post_message(self.Found(result))
