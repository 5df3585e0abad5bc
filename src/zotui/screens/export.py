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
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet, Static
from textual.worker import Worker, WorkerState

from zoengine.errors import ZOError
from zoengine.telemetry import format_bytes
from zotui import catalog
from zotui.backend import RunHandle
from zotui.state import RunState

CHECKPOINTS = ("best", "last", "step")


def checkpoint_text(state: RunState | None, chosen: str) -> str:
    """Each checkpoint the dialog offers with its step and the dev accuracy measured there."""
    if state is None:
        what = f"the checkpoint of step {chosen}" if chosen.isdigit() else f"checkpoints/{chosen}"
        return f"exports {what} (the run's log is not readable: step unknown)"
    parts = []
    for name, step in (("best", state.best_checkpoint), ("last", state.last_checkpoint)):
        if step is None:
            text = f"{name}: none yet" + (" (falls back to last)" if name == "best" else "")
        else:
            acc = state.dev_accuracy_at(step)
            text = f"{name}: step {step}, dev accuracy " + (f"{acc:.3f}" if acc is not None else "--")
        parts.append(f"[b]{text}[/b]" if name == chosen else text)
    kept = ", ".join(str(k) for k in state.kept_checkpoints()) or "none yet"
    steps = f"steps kept: {kept}"
    if chosen.isdigit():
        acc = state.dev_accuracy_at(int(chosen))
        dev = f", dev accuracy {acc:.3f}" if acc is not None else ""
        steps = f"[b]step {chosen}{dev}[/b] · " + steps
    parts.append(steps)
    return " · ".join(parts)


class ExportScreen(ModalScreen[list[Path] | None]):
    """Export one run; dismisses with the written files (None when closed without a result)."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="export-close", tooltip="Back"),
        Binding(  # priority: ^E is also an Input's end-of-line key, and the button promises ^E
            "ctrl+e", "export_now", "Export", id="export-now", tooltip="Write the files", priority=True
        ),
    ]

    def __init__(
        self,
        run: RunHandle | Callable[[str, Path], list[Path]],
        run_dir: Path,
        state: RunState | None = None,
    ) -> None:
        """``run`` is a live run handle, or an export function ``(fmt, dest) -> files`` for a past run;
        ``state`` (the live run's) names each checkpoint's step and dev score, else the run's
        ``metrics.jsonl`` is read."""
        super().__init__()
        self.run_or_export = run
        self.run_dir = Path(run_dir)
        self.formats = catalog.export_formats()
        self.fmt = next(iter(self.formats))
        self.checkpoint = "best"
        self.state = state
        self.written: list[Path] | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="export-box"):  # scrolls in a small terminal
            yield Static(f"[b]Export[/b] {self.run_dir.name}", classes="dialog-title")
            with RadioSet(id="export-format"):
                for i, name in enumerate(self.formats):
                    yield RadioButton(name, value=i == 0, id=f"fmt-{name}")
            yield Static(self.formats[self.fmt], id="export-who", classes="hint")
            with Horizontal(id="export-checkpoint-row"):
                yield Label("checkpoint ")
                with RadioSet(id="export-checkpoint"):
                    for name in CHECKPOINTS:
                        yield RadioButton(
                            "a step" if name == "step" else name, value=name == "best", id=f"ckpt-{name}"
                        )
            yield Input(  # its own line: the radio row is as wide as a 60-column terminal allows
                placeholder="step number", restrict=r"[0-9]*", id="export-step", disabled=True, compact=True
            )
            yield Static("", id="export-ckpt-info", classes="hint")
            yield Label("destination")
            yield Input(str(self._default_dest(self.fmt)), id="export-dest")
            yield Checkbox("replace what the destination holds", False, id="export-force")
            yield Static("", id="export-result")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export (^E)", id="export", variant="primary")
                yield Button("Close (Esc)", id="close")

    def on_mount(self) -> None:
        if self.state is not None:
            self._show_checkpoints(self.state)
        elif getattr(self.app, "backend", None) is not None:
            self._read_state()
        else:
            self._show_checkpoints(None)

    @work(thread=True, exclusive=True, group="export-state", exit_on_error=False, description="read run log")
    def _read_state(self) -> None:
        try:
            state: RunState | None = RunState.from_events(self.app.backend.read_events(self.run_dir))  # type: ignore[attr-defined]
        except Exception:
            state = None
        self.app.call_from_thread(self._show_checkpoints, state)

    def _show_checkpoints(self, state: RunState | None) -> None:
        """``best: step 120, dev accuracy 0.734 · last: step 300, dev --`` (marking the chosen one)."""
        if state is not None:
            self.state = state
        for info in self.query("#export-ckpt-info").results(Static):  # none once the dialog closed
            info.update(checkpoint_text(self.state, self.checkpoint))

    @on(RadioSet.Changed, "#export-checkpoint")
    def _checkpoint_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        which = (event.pressed.id or "ckpt-best").removeprefix("ckpt-")
        step_input = self.query_one("#export-step", Input)
        step_input.disabled = which != "step"
        if which == "step":
            if not step_input.value and self.state is not None and self.state.kept_checkpoints():
                step_input.value = str(self.state.kept_checkpoints()[0])  # the oldest one kept
            step_input.focus()
            which = step_input.value or "step"
        self.checkpoint = which
        self._show_checkpoints(None)

    @on(Input.Changed, "#export-step")
    def _step_changed(self, event: Input.Changed) -> None:
        event.stop()
        if not event.input.disabled:
            self.checkpoint = event.value or "step"
            self._show_checkpoints(None)

    def _default_dest(self, fmt: str) -> Path:
        return self.run_dir / "exports" / fmt

    @on(RadioSet.Changed, "#export-format")
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
            self._say("[red]destination: must not be empty[/]")
            return
        from zoengine.exporting import check_export_dest

        if self.checkpoint == "step":
            self._say("[red]checkpoint: type a step number[/]")
            return
        kept = self.state.kept_checkpoints() if self.state is not None else []
        if self.checkpoint.isdigit() and kept and int(self.checkpoint) not in kept:
            listed = ", ".join(str(k) for k in kept)
            self._say(
                f"[b red]not exported:[/] no checkpoint at step {self.checkpoint}; this run keeps steps {listed}"
            )
            return
        path = Path(dest).expanduser()
        force = self.query_one("#export-force", Checkbox).value
        try:
            check_export_dest(path, force, field="destination")
        except ZOError as exc:
            text = exc.one_line().replace("add --force", "tick 'replace'")
            self._say(f"[b red]not exported:[/] {text}")
            return
        self._say(f"exporting {self.fmt} ({self.checkpoint})…")
        self._export(self.fmt, path, force, self.checkpoint)

    def _say(self, text: str) -> None:
        """The outcome line, scrolled into view (below the fold of a small terminal otherwise)."""
        result = self.query_one("#export-result", Static)
        result.update(text)
        result.scroll_visible()

    @work(thread=True, exclusive=True, group="export", exit_on_error=False, description="export")
    def _export(self, fmt: str, dest: Path, force: bool = False, checkpoint: str = "best") -> list[Path]:
        target = self.run_or_export
        options: dict[str, object] = {"force": force}
        if checkpoint != "best":  # the default everywhere; plain export functions need not know it
            options["checkpoint"] = checkpoint
        if callable(target) and not hasattr(target, "export"):
            return list(target(fmt, dest, **options))
        return list(target.export(fmt, dest, **options))  # type: ignore[union-attr]

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
            result.scroll_visible()  # below the fold of a small terminal otherwise
            self.query_one("#export-force", Checkbox).value = False  # each overwrite is asked for
        elif event.state == WorkerState.ERROR:
            err = event.worker.error
            text = err.one_line() if isinstance(err, ZOError) else f"{type(err).__name__}: {err}"
            result.update(f"[b red]export failed:[/] {text}")
            result.scroll_visible()

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(self.written)
