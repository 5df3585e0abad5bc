"""Export: pick a format (each says who can load it), a destination, and see the files or the error.

The export runs in a thread worker (a merged export can take a while on a big model); the screen
stays responsive and shows every written file with its size, or the one-line reason it failed.
Nothing is deleted silently: a destination that holds anything is refused until "replace" is
ticked, and then replaced atomically (the engine writes beside it and swaps).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Static
from textual.worker import Worker, WorkerState

from zoengine.errors import ZOError
from zoengine.telemetry import format_bytes
from zotui import catalog
from zotui.backend import RunHandle


class ExportScreen(ModalScreen[list[Path] | None]):
    """Export one run; dismisses with the written files (None when closed without a result)."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="export-close", tooltip="Back"),
        Binding("ctrl+e", "export_now", "Export", id="export-now", tooltip="Write the files"),
    ]

    def __init__(self, run: RunHandle | Callable[[str, Path], list[Path]], run_dir: Path) -> None:
        """``run`` is a live run handle, or an export function ``(fmt, dest) -> files`` for a past run."""
        super().__init__()
        self.run_or_export = run
        self.run_dir = Path(run_dir)
        self.formats = catalog.export_formats()
        self.fmt = next(iter(self.formats))
        self.written: list[Path] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="export-box"):
            yield Static(f"[b]Export[/b] {self.run_dir.name}", classes="dialog-title")
            with RadioSet(id="export-format"):
                for i, name in enumerate(self.formats):
                    yield RadioButton(name, value=i == 0, id=f"fmt-{name}")
            yield Static(self.formats[self.fmt], id="export-who", classes="hint")
            yield Label("destination")
            yield Input(str(self._default_dest(self.fmt)), id="export-dest")
            yield Checkbox("replace what the destination holds", False, id="export-force")
            yield Static("", id="export-result")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export (^E)", id="export", variant="primary")
                yield Button("Close (Esc)", id="close")

    def _default_dest(self, fmt: str) -> Path:
        return self.run_dir / "exports" / fmt

    @on(RadioSet.Changed)
    def _format_changed(self, event: RadioSet.Changed) -> None:
        old_default = str(self._default_dest(self.fmt))
        self.fmt = str(event.pressed.label)
        self.query_one("#export-who", Static).update(self.formats.get(self.fmt, ""))
        dest = self.query_one("#export-dest", Input)
        if dest.value == old_default:  # keep a destination the user typed
            dest.value = str(self._default_dest(self.fmt))

    @on(Button.Pressed, "#export")
    def action_export_now(self) -> None:
        dest = self.query_one("#export-dest", Input).value.strip()
        if not dest:
            self.query_one("#export-result", Static).update("[red]destination: must not be empty[/]")
            return
        from zoengine.exporting import check_export_dest

        path = Path(dest).expanduser()
        force = self.query_one("#export-force", Checkbox).value
        try:
            check_export_dest(path, force, field="destination")
        except ZOError as exc:
            text = exc.one_line().replace("add --force", "tick 'replace'")
            self.query_one("#export-result", Static).update(f"[b red]not exported:[/] {text}")
            return
        self.query_one("#export-result", Static).update(f"exporting {self.fmt}…")
        self._export(self.fmt, path, force)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False, description="export")
    def _export(self, fmt: str, dest: Path, force: bool = False) -> list[Path]:
        target = self.run_or_export
        if callable(target) and not hasattr(target, "export"):
            return list(target(fmt, dest, force=force))
        return list(target.export(fmt, dest, force=force))  # type: ignore[union-attr]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "export":
            return
        result = self.query_one("#export-result", Static)
        if event.state == WorkerState.SUCCESS:
            self.written = list(event.worker.result or [])
            lines = [f"[green]exported {self.fmt}:[/]"]
            for p in self.written:
                size = format_bytes(p.stat().st_size) if p.is_file() else "dir"
                lines.append(f"  {p}  {size}")
            result.update("\n".join(lines))
            self.query_one("#export-force", Checkbox).value = False  # each overwrite is asked for
        elif event.state == WorkerState.ERROR:
            err = event.worker.error
            text = err.one_line() if isinstance(err, ZOError) else f"{type(err).__name__}: {err}"
            result.update(f"[b red]export failed:[/] {text}")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(self.written)
