"""The numbers panel: step, loss, queries per step, forward passes, tokens, lr, projected gradient."""

from __future__ import annotations

import math

from rich.table import Table
from textual.widgets import Static

from zotui.state import RunState, format_count


def _num(value: float | None, fmt: str = ".4f") -> str:
    if value is None:
        return "--"
    if not math.isfinite(value):
        return str(value)  # "nan"/"inf" stay visible
    return format(value, fmt)


class CountersPanel(Static):
    """A two-column table redrawn from a ``RunState`` (only when its version changed)."""

    DEFAULT_CSS = """
    CountersPanel { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.drawn_version = -1
        self._rows = -1

    def show_state(self, state: RunState) -> None:
        if state.version == self.drawn_version:
            return
        self.drawn_version = state.version
        table = self._table(state)
        rows = table.row_count
        self.update(table, layout=rows != self._rows)  # same rows: same height, no relayout
        self._rows = rows

    @staticmethod
    def _table(state: RunState) -> Table:
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column(no_wrap=True)
        ev = state.last_step
        total = state.total_steps or "?"
        table.add_row("step", f"{state.step} / {total}")
        smooth = state.smoothed.last[1] if state.smoothed.last else None
        table.add_row("loss", _num(ev.loss if ev else None))  # two rows: each fits a 100-column terminal
        table.add_row("loss (ema)", _num(smooth))
        best = state.best_dev()
        table.add_row("best dev acc", f"{best.accuracy:.3f} @ {best.step}" if best else "--")
        q_k = ev.extra.get("q_k", ev.queries) if ev else None
        table.add_row("queries/step", f"{ev.queries} (Q_k {q_k})" if ev else "--")
        table.add_row("forward passes", format_count(ev.forward_passes if ev else None))
        table.add_row("tokens", format_count(ev.tokens if ev else None))
        table.add_row("lr", _num(ev.lr if ev else None, ".2e"))
        grad = state.grad.last[1] if state.grad.last else None
        table.add_row("|proj. grad|", _num(grad, ".3g"))
        if state.effective_rank is not None:
            table.add_row("effective rank", f"{state.effective_rank:.2f}")
        return table
