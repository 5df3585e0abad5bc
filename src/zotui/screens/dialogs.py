"""Small modal dialogs with typed results: quit confirmation, a path prompt, a text viewer."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static, TextArea


class QuitScreen(ModalScreen[str | None]):
    """Quit during a run: "save" (stop and save), "discard" (stop without saving) or None."""

    BINDINGS = [
        Binding("s", "choose('save')", "Stop & save", id="quit-save", tooltip="Checkpoint, then quit"),
        Binding(
            "d", "choose('discard')", "Stop, no save", id="quit-discard", tooltip="Quit without a checkpoint"
        ),
        Binding("escape", "choose('')", "Cancel", id="quit-cancel", tooltip="Keep training"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("[b]A run is active.[/b] Stop it before quitting?", classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop & save (s)", id="save", variant="primary")
                yield Button("Stop, don't save (d)", id="discard", variant="error")
                yield Button("Cancel (Esc)", id="cancel")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_choose(event.button.id or "")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice if choice in ("save", "discard") else None)


class PathScreen(ModalScreen[str | None]):
    """Ask for a file path (save / load a TOML configuration)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="path-cancel", tooltip="Close without a path")]

    def __init__(self, title: str, value: str, button: str) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.button = button

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]{self.title_text}[/b]", classes="dialog-title")
            yield Input(self.value, id="path-input")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.button, id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(self.query_one("#path-input", Input).value.strip() or None)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """Read-only, selectable text (the equivalent CLI command), with copy to clipboard."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="text-close", tooltip="Back"),
        Binding("ctrl+y", "copy", "Copy", id="text-copy", tooltip="Copy to the clipboard (OSC 52)"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(f"[b]{self.title_text}[/b]", classes="dialog-title")
            yield TextArea(self.text, read_only=True, soft_wrap=True, id="text-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Copy (ctrl+y)", id="copy", variant="primary")
                yield Button("Close (Esc)", id="close")

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("copied")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
