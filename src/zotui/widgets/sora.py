"""SoRA gates per module in a compact form: one bar per adapted module, sparsity and rank."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from textual.widgets import Static

BAR = "▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int = 8) -> str:
    """A bar ``width`` cells wide filled to ``fraction`` with eighth-cell resolution."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (BAR[part - 1] if part else "")
    return text.ljust(width, "·")


def short_name(name: str, width: int = 18) -> str:
    """``model.layers.11.self_attn.q_proj`` → ``L11.q_proj``; then cut from the left."""
    parts = name.split(".")
    layer = next((p for p in parts if p.isdigit()), None)
    label = f"L{layer}.{parts[-1]}" if layer is not None else parts[-1]
    return label if len(label) <= width else "…" + label[-(width - 1) :]


class SoraView(Static):
    """Per-module gate sparsity and rank from ``StepLogged.extra["per_module"]``."""

    DEFAULT_CSS = """
    SoraView { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("no gate data (the SoRA adapter reports gates)", id=id)

    def show_modules(self, per_module: dict[str, dict[str, Any]], effective_rank: float | None) -> None:
        if not per_module:
            return
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(justify="right", style="dim", no_wrap=True)
        for name, vals in per_module.items():
            sparsity = float(vals.get("sparsity", 0.0))
            rank = vals.get("rank")
            table.add_row(
                short_name(name), bar(sparsity), f"{sparsity:.0%}", f"r={rank}" if rank is not None else ""
            )
        if effective_rank is not None:
            table.add_row("effective rank", "", "", f"{effective_rank:.2f}")
        self.update(table)
