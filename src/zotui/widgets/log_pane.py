"""The log pane: engine messages and warnings, bounded so a chatty run cannot grow memory."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

STYLES = {"warning": "yellow", "error": "bold red", "info": ""}


class LogPane(RichLog):
    DEFAULT_CSS = """
    LogPane { height: 5; border-top: solid $primary-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=1000, wrap=True, markup=False, id=id)

    def add(self, level: str, text: str) -> None:
        prefix = "" if level == "info" else f"{level}: "
        self.write(Text(prefix + text, style=STYLES.get(level, "")))
