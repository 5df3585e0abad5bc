"""Tune: a learning-rate sweep (``zoengine.tune.tune``) with the candidates' loss curves drawn live.

The sweep runs in a thread worker. Its progress callback posts one ``Progressed`` message per
step (``post_message`` is thread-safe and never waits for the UI), the screen keeps a copy of each
candidate's losses, and a 4 Hz timer redraws the plot and the table only when something changed;
so a fast tiny model cannot flood the UI and a slow real one never freezes it. Escape asks the
sweep to stop at its next step (``should_stop``); a second Escape closes the screen. When the sweep
picks a candidate, "use tuned lr" (``u``) dismisses the screen with the ``TuneResult`` and the
setup form takes its lr and ε. A refusal (``TuneError``: budget too small, every candidate
diverged, stopped) or any other error is shown as one line, never a traceback.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Static
from textual.worker import get_current_worker

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zotui.series import DecimatedSeries
from zotui.widgets.plots import Figure, Line, SeriesPlot

if TYPE_CHECKING:
    from zoengine.tune import Candidate, TuneResult

REDRAW_HZ = 4
COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red", "white")
DIVERGED_DISPLAY = 2.0  # losses above this × the largest first loss are drawn as top-edge markers


@dataclass
class CandidateView:
    """What the screen knows of one candidate (a copy: the sweep thread mutates its own)."""

    lr: float
    eps: float
    losses: list[float] = field(default_factory=list)
    diverged: bool = False
    decrease: float = math.nan
    stderr: float = math.nan
    z_score: float = math.nan


class TuneScreen(Screen["TuneResult | None"]):
    """Run a sweep for ``config``; dismisses with the result to apply, or None."""

    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Stop / close",
            id="tune-cancel",
            tooltip="Stop the sweep at its next step; close the screen when it is not running",
        ),
        Binding(
            "u",
            "use_result",
            "Use tuned lr",
            id="tune-use",
            tooltip="Write the tuned lr and eps into the form",
        ),
    ]

    class Progressed(Message):
        """Candidate ``index`` finished training ``step`` (0: it started)."""

        def __init__(self, index: int, lr: float, eps: float, losses: list[float], diverged: bool, step: int):
            super().__init__()
            self.index, self.lr, self.eps, self.losses = index, lr, eps, losses
            self.diverged, self.step = diverged, step

    class Finished(Message):
        """The sweep ended: a result, or the one-line reason it did not pick one."""

        def __init__(
            self, result: TuneResult | None, error: str | None, candidates: list[Candidate] | None = None
        ) -> None:
            super().__init__()
            self.result, self.error, self.candidates = result, error, candidates

    def __init__(
        self,
        config: RunConfig,
        *,
        steps: int = 20,
        lrs: list[float] | None = None,
        n_candidates: int = 5,
        eps_values: list[float] | None = None,
        dev_examples: int = 96,
        tune_fn: Callable[..., TuneResult] | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        """``tune_fn`` defaults to ``zoengine.tune.tune``; ``prepare`` runs first in the worker."""
        super().__init__()
        self.config = config
        self.steps = steps
        self.lrs = list(lrs) if lrs else None
        self.n_candidates = n_candidates
        self.eps_values = list(eps_values) if eps_values else None
        self.dev_examples = dev_examples
        self.tune_fn = tune_fn
        self.prepare = prepare
        self.candidates: list[CandidateView] = []
        self.result: TuneResult | None = None
        self.error: str | None = None
        self.running = False
        self.stop_requested = threading.Event()
        self.current: tuple[int, int] = (-1, 0)  # (candidate, step)
        self.version = 0
        self.drawn = -1

    @property
    def n_total(self) -> int:
        n_lr = len(self.lrs) if self.lrs else self.n_candidates
        return n_lr * (len(self.eps_values) if self.eps_values else 1)

    # --- layout --------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        o, r = self.config.optimizer, self.config.run
        grid = (
            ", ".join(f"{lr:.3g}" for lr in sorted(self.lrs))
            if self.lrs
            else f"{self.n_candidates} around the default"
        )
        yield Static(
            f"[b]Tune[/b] {o.name} + {self.config.adapter.method} · lr grid {grid} · "
            f"{self.steps} steps each, batch {r.batch_size}, same batches and perturbations",
            id="tune-title",
        )
        yield SeriesPlot(id="tune-plot")
        table: DataTable[str] = DataTable(id="tune-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("", "lr", "eps", "step", "train loss", "dev decrease ± se", "z", "status")
        yield table
        yield Static("loading the model and the task…", id="tune-status")
        with Horizontal(id="tune-buttons"):
            yield Button("Use tuned lr (u)", id="tune-use", variant="success", disabled=True)
            yield Button("Stop (Esc)", id="tune-stop")
        yield Footer()

    def on_mount(self) -> None:
        self.running = True
        self.set_interval(1 / REDRAW_HZ, self.redraw, name="tune-redraw")
        self._sweep()

    # --- the sweep (thread) ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="tune", exit_on_error=False, description="lr tuner")
    def _sweep(self) -> None:
        worker = get_current_worker()

        def should_stop() -> bool:
            return self.stop_requested.is_set() or worker.is_cancelled

        def progress(index: int, cand: Candidate, step: int) -> None:
            self.post_message(
                self.Progressed(index, cand.lr, cand.eps, list(cand.train_losses), cand.diverged, step)
            )

        try:
            if self.prepare is not None:
                self.prepare()
            tune_fn = self.tune_fn
            if tune_fn is None:
                from zoengine.tune import tune as tune_fn
            result = tune_fn(
                self.config,
                steps=self.steps,
                lrs=self.lrs,
                n_candidates=self.n_candidates,
                eps_values=self.eps_values,
                dev_examples=self.dev_examples,
                progress=progress,
                should_stop=should_stop,
            )
        except ZOError as exc:
            self.post_message(self.Finished(None, exc.one_line(), getattr(exc, "candidates", None)))
        except Exception as exc:  # a bug or an environment problem: one line, never a traceback
            self.post_message(self.Finished(None, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(self.Finished(result, None, result.candidates))

    @on(Progressed)
    def _progressed(self, message: Progressed) -> None:
        while len(self.candidates) <= message.index:
            self.candidates.append(CandidateView(message.lr, message.eps))
        view = self.candidates[message.index]
        view.lr, view.eps, view.losses, view.diverged = (
            message.lr,
            message.eps,
            message.losses,
            message.diverged,
        )
        self.current = (message.index, message.step)
        self.version += 1

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        self.running = False
        self.result, self.error = message.result, message.error
        for i, cand in enumerate(message.candidates or []):
            while len(self.candidates) <= i:
                self.candidates.append(CandidateView(cand.lr, cand.eps))
            view = self.candidates[i]
            view.losses, view.diverged = list(cand.train_losses), cand.diverged
            view.decrease, view.stderr, view.z_score = cand.decrease, cand.stderr, cand.z_score
        self.version += 1
        self.redraw()
        self.query_one("#tune-use", Button).disabled = self.result is None
        self.query_one("#tune-stop", Button).label = "Close (Esc)"
        if self.result is not None:
            self.query_one("#tune-use", Button).focus()
        self.refresh_bindings()

    # --- drawing -------------------------------------------------------------------------------------

    def redraw(self) -> None:
        """Plot, table and status line, when something changed since the last draw."""
        if self.version == self.drawn or not self.is_mounted:
            return
        self.drawn = self.version
        self.query_one("#tune-plot", SeriesPlot).show_figure(self.figure(), version=self.version)
        self._fill_table()
        self.query_one("#tune-status", Static).update(self.status_text())

    def figure(self) -> Figure:
        firsts = [c.losses[0] for c in self.candidates if c.losses and math.isfinite(c.losses[0])]
        cap = DIVERGED_DISPLAY * max(firsts) if firsts else math.inf
        several_eps = len({c.eps for c in self.candidates}) > 1
        lines = []
        for i, c in enumerate(self.candidates):
            series = DecimatedSeries()
            for step, loss in enumerate(c.losses, start=1):
                series.append(step, loss if loss <= cap else math.nan)  # NaN/huge: a red x at the top
            label = f"lr {c.lr:.3g}" + (f" eps {c.eps:.2g}" if several_eps else "")
            lines.append(Line(label, series, COLORS[i % len(COLORS)], joined=True))
        return Figure(title="training loss per candidate (same batches)", lines=lines, ylabel="loss")

    def _fill_table(self) -> None:
        table = self.query_one("#tune-table", DataTable)
        table.clear()
        chosen = self.result.chosen if self.result is not None else -1
        running_index = self.current[0] if self.running else -1
        for i, c in enumerate(self.candidates):
            last = c.losses[-1] if c.losses else math.nan
            if c.diverged:
                status = "diverged"
            elif i == chosen:
                status = "chosen"
            elif i == running_index:
                status = "training"
            elif math.isfinite(c.decrease):
                status = "scored"
            else:
                status = ""
            dec = f"{c.decrease:+.4f} ± {c.stderr:.4f}" if math.isfinite(c.decrease) else "--"
            z = f"{c.z_score:.1f}" if math.isfinite(c.decrease) else "--"
            table.add_row(
                "*" if i == chosen else "",
                f"{c.lr:.3g}",
                f"{c.eps:.2g}",
                f"{len(c.losses)}/{self.steps}",
                f"{last:.4f}" if math.isfinite(last) else ("--" if not c.losses else "nan"),
                dec,
                z,
                status,
            )

    def status_text(self) -> str:
        if self.error is not None:
            head = "[b]Stopped:[/]" if self.stop_requested.is_set() else "[b red]Tune refused:[/]"
            return f"{head} {self.error} · Esc closes"
        r = self.result
        if r is not None:
            notes = "".join(f"\n{n}" for n in r.notes)
            return (
                f"[b green]Tuned:[/] lr {r.lr:.3g}, eps {r.eps:.2g} (calibrated default lr "
                f"{r.default_lr:.3g}, {r.trainable:,} trainable) · u writes it into the form, Esc closes"
                f"{notes}"
            )
        if self.stop_requested.is_set():
            return "stopping at the next step…"
        index, step = self.current
        if index < 0:
            return "loading the model and the task…"
        c = self.candidates[index]
        where = "started" if step == 0 else f"step {step}/{self.steps}"
        if step >= self.steps or c.diverged:
            where = "diverged" if c.diverged else "scoring on the held-out examples"
        return f"candidate {index + 1}/{self.n_total} (lr {c.lr:.3g}): {where} · Esc stops"

    # --- actions -----------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_result":
            return True if self.result is not None else None  # shown, greyed out until a result
        return True

    @on(Button.Pressed, "#tune-stop")
    def action_cancel(self) -> None:
        if self.running:
            if not self.stop_requested.is_set():
                self.stop_requested.set()
                self.version += 1
                self.redraw()
            return
        self.dismiss(None)

    @on(Button.Pressed, "#tune-use")
    def action_use_result(self) -> None:
        if self.result is not None:
            self.dismiss(self.result)
