"""Help: every key of the screen it was opened from, with its action id (for keymaps) and purpose."""

from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Static

from zotui.settings import keymap_path


@dataclass(frozen=True)
class KeyHelp:
    key: str
    description: str
    action_id: str
    tooltip: str


def key_help_for(screen: Screen[object]) -> list[KeyHelp]:
    """The bindings active on ``screen`` (its own, its focused widget's and the app's)."""
    rows = []
    seen: set[tuple[str, str]] = set()
    for active in screen.active_bindings.values():
        b = active.binding
        if not b.description or (b.action, b.description) in seen:
            continue
        seen.add((b.action, b.description))
        rows.append(KeyHelp(screen.app.get_key_display(b), b.description, b.id or b.action, b.tooltip))
    return sorted(rows, key=lambda r: r.description.lower())


class HelpScreen(ModalScreen[None]):
    """A modal table of keys; Esc, F1 or q closes it."""

    BINDINGS = [
        Binding(
            "escape,f1,q,question_mark", "close", "Close help", id="close-help", tooltip="Back to the screen"
        ),
    ]

    def __init__(self, title: str, keys: list[KeyHelp]) -> None:
        super().__init__()
        self.title_text = title
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(
                f"[b]Keys: {self.title_text}[/b]  (every key is an action id you can remap)", id="help-title"
            )
            table: DataTable[str] = DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("key", "what it does", "action id")
            for k in self.keys:
                table.add_row(k.key, k.description, k.action_id)
            yield table
            remap = (
                f"Keymap file: {keymap_path()} (or $ZOTUI_KEYMAP), read at start; TOML "
                '[keys] action-id = "keys", e.g. start-run = "f9"'
            )
            yield Static(
                escape(remap) + "\nCtrl+P opens the command palette. "
                "Setup fields show their allowed values when invalid.",
                id="help-footer",
            )

    def action_close(self) -> None:
        self.dismiss(None)
