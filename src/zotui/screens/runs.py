"""Runs: every run directory (started here or by the CLI), replay, overlay, resume, export.

The table is read from the run directories themselves (``zoengine.runs``), so a run started from the
command line shows up exactly like one started here. Replays fold ``metrics.jsonl`` into the same
``RunState`` the live dashboard uses; reading happens in a thread worker.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from zoengine.errors import ZOError
from zoengine.events import Event
from zotui.backend import RESUMABLE_STATUSES, RunRow, is_live, tail_events
from zotui.screens.dashboard import RunView
from zotui.state import RunState, format_count
from zotui.widgets.plots import Figure, Line, Points, SeriesPlot

COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")
TAIL_SECONDS = 2.0


class RunsScreen(Screen[None]):
    """A table of runs; Space marks runs for an overlay, Enter opens the one under the cursor."""

    BINDINGS = [
        Binding("enter", "open_run", "Open", id="open-run", tooltip="Replay this run's curves"),
        Binding("space", "toggle_mark", "Mark", id="mark-run", tooltip="Mark runs to compare"),
        Binding("c", "compare", "Compare", id="compare-runs", tooltip="Overlay the marked runs' curves"),
        Binding(
            "r", "resume_run", "Resume", id="resume-run", tooltip="Continue a stopped run from its checkpoint"
        ),
        Binding("x", "export", "Export", id="export-run", tooltip="Export this run's adapter"),
        Binding("f5", "reload", "Reload", id="reload-runs", tooltip="Read the run directories again"),
        Binding("escape", "back", "Back", id="runs-back", tooltip="Previous screen"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[RunRow] = []
        self.marked: set[Path] = set()

    def compose(self) -> ComposeResult:
        yield Static("[b]Runs[/b] · Space marks, c overlays, Enter opens, r resumes", id="runs-title")
        table: DataTable[str] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static("", id="runs-status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(" ", "run", "status", "method", "best dev", "steps", "started")
        self.action_reload()

    def action_reload(self) -> None:
        self.query_one("#runs-status", Static).update("reading run directories…")
        self._load_rows()

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False, description="list runs")
    def _load_rows(self) -> list[RunRow]:
        return self.app.backend.list_runs()  # type: ignore[attr-defined,no-any-return]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "runs-list":
            return
        status = self.query_one("#runs-status", Static)
        if event.state == WorkerState.SUCCESS:
            self.rows = list(event.worker.result or [])
            self._fill()
            status.update(f"{len(self.rows)} runs" if self.rows else "no runs yet: start one from Setup")
        elif event.state == WorkerState.ERROR:
            status.update(f"[red]cannot list runs: {event.worker.error}[/]")

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for row in self.rows:
            best = f"{row.best_dev_accuracy:.3f}" if row.best_dev_accuracy is not None else "--"
            started = time.strftime("%m-%d %H:%M", time.localtime(row.started)) if row.started else "--"
            mark = "✓" if row.path in self.marked else " "
            steps = f"{row.steps_done}/{row.total_steps}" if row.total_steps else str(row.steps_done)
            table.add_row(mark, row.name, row.status, row.method, best, steps, started, key=str(row.path))

    def current(self) -> RunRow | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    # --- actions ----------------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def action_open_run(self) -> None:
        row = self.current()
        if row is not None:
            self.app.push_screen(ReplayScreen([row.path], [row.name]))

    def action_toggle_mark(self) -> None:
        row = self.current()
        if row is None:
            return
        self.marked.symmetric_difference_update({row.path})
        table = self.query_one(DataTable)
        table.update_cell(
            str(row.path), table.ordered_columns[0].key, "✓" if row.path in self.marked else " "
        )

    def action_compare(self) -> None:
        chosen = [r for r in self.rows if r.path in self.marked]
        if len(chosen) < 2:
            self.notify("mark at least two runs with Space to overlay them", severity="warning")
            return
        self.app.push_screen(
            ReplayScreen([r.path for r in chosen], [r.name for r in chosen], [r.method for r in chosen])
        )

    def action_resume_run(self) -> None:
        row = self.current()
        if row is None:
            return
        if row.status not in RESUMABLE_STATUSES:
            self.notify(f"only stopped runs resume (this one is {row.status})", severity="warning")
            return
        try:
            self.app.resume_run(row.path)  # type: ignore[attr-defined]
        except ZOError as exc:
            self.notify(exc.one_line(), severity="error")

    def action_export(self) -> None:
        from zotui.screens.export import ExportScreen

        row = self.current()
        if row is not None:
            backend = self.app.backend  # type: ignore[attr-defined]
            self.app.push_screen(ExportScreen(partial(backend.export_run, row.path), row.path))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.dismiss(None)


COMPARE_COLUMNS = ("run", "method", "steps", "forward passes", "best dev", "test", "s/step")


def comparison_rows(names: list[str], methods: list[str], states: list[RunState]) -> list[tuple[str, ...]]:
    """One row of numbers per run for the comparison table (``COMPARE_COLUMNS``)."""
    rows = []
    for name, method, s in zip(names, methods, states, strict=True):
        best = s.best_dev()
        tests = [e for e in s.evals if e.split == "test"]
        per_step = s.seconds_per_step()
        rows.append(
            (
                name,
                method or "--",
                f"{s.step}/{s.total_steps}" if s.total_steps else str(s.step),
                format_count(s.last_step.forward_passes) if s.last_step else "--",
                f"{best.accuracy:.3f} @ {best.step}" if best else "--",
                f"{tests[-1].accuracy:.3f}" if tests else "--",
                f"{per_step:.3g}" if per_step else "--",
            )
        )
    return rows


class ReplayScreen(Screen[None]):
    """One run's curves (the dashboard's view, read-only) or several runs overlaid."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="replay-back", tooltip="Back to the runs list"),
        Binding(
            "w",
            "save_comparison",
            "Save table",
            id="save-comparison",
            tooltip="Write the comparison table as CSV and Markdown under the runs home",
        ),
    ]

    def __init__(
        self, paths: list[Path], names: list[str] | None = None, methods: list[str] | None = None
    ) -> None:
        super().__init__()
        self.paths = [Path(p) for p in paths]
        self.names = names or [p.name for p in self.paths]
        self.methods = methods or [""] * len(self.paths)
        self.states: list[RunState] = []
        self.tailing = False  # following the log of a run another process is still writing
        self.followed = False  # it was live when opened
        self.writer_live = False  # its writer's lock was held at the last read
        self.log_offset = 0  # bytes of its metrics.jsonl read so far
        self._tail_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="replay-title")
        if len(self.paths) == 1:
            yield RunView(RunState(), id="replay-view")
        else:
            yield SeriesPlot(id="compare-loss")
            yield SeriesPlot(id="compare-acc")
            table: DataTable[str] = DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(*COMPARE_COLUMNS)
            yield table
        yield Footer()

    def on_mount(self) -> None:
        self._read()

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False, description="read run logs")
    def _read(self) -> list[RunState]:
        backend = self.app.backend  # type: ignore[attr-defined]
        if len(self.paths) == 1:  # one run: read it as a tail, so a live one can be followed
            events, self.log_offset = tail_events(self.paths[0])
            self.writer_live = is_live(self.paths[0])
            return [RunState.from_events(events)]
        return [RunState.from_events(backend.read_events(p)) for p in self.paths]

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False, description="follow a live run")
    def _tail(self) -> tuple[list[Event], int, bool]:
        """New complete lines of the live run's metrics.jsonl, and whether its writer still holds
        the lock (read before the lines, so the last lines of a run that just ended are kept)."""
        live = is_live(self.paths[0])
        events, offset = tail_events(self.paths[0], self.log_offset)
        return events, offset, live

    def _title(self) -> str:
        title = self.names[0] if len(self.paths) == 1 else f"{len(self.paths)} runs overlaid"
        if self.tailing:
            title += " · [b]live[/b]: written by another process, followed as it runs"
        elif self.followed:
            title += " · the run's writer has ended"
        return f"[b]Replay[/b] · {title}"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "tail":
            self._tailed(event)
            return
        if event.worker.group != "replay":
            return
        if event.state == WorkerState.ERROR:
            self.notify(f"cannot read the run: {event.worker.error}", severity="error")
        if event.state != WorkerState.SUCCESS:
            return
        self.states = list(event.worker.result or [])
        self.refresh_bindings()
        if len(self.paths) == 1:
            view = self.query_one(RunView)
            view.state = self.states[0]
            view.refresh_view(force=True)
            if self.writer_live and not self.tailing:  # e.g. a CLI train: follow its metrics.jsonl
                self.tailing = self.followed = True
                self._tail_timer = self.set_interval(TAIL_SECONDS, self._tail, name="tail-metrics")
                self.query_one("#replay-title", Static).update(self._title())
            return
        self._draw_overlay()

    def _tailed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.SUCCESS or not self.states:
            return
        events, self.log_offset, live = event.worker.result
        state = self.states[0]
        if state.feed(events):
            self.query_one(RunView).refresh_view(live=live)
        if not live and self.tailing:
            self.tailing = False
            if self._tail_timer is not None:
                self._tail_timer.stop()
            self.query_one(RunView).refresh_view(force=True)
            self.query_one("#replay-title", Static).update(self._title())

    def _draw_overlay(self) -> None:
        named = list(zip(self.names, self.states, strict=True))
        loss = Figure(
            "train loss (ema) per run",
            [Line(n, s.smoothed, COLORS[i % len(COLORS)]) for i, (n, s) in enumerate(named)],
        )
        acc = Figure("dev accuracy per run", points=[])
        for i, (name, s) in enumerate(named):
            dev = s.dev_points()
            acc.points.append(
                Points(
                    name,
                    [e.step for e in dev],
                    [e.accuracy for e in dev],
                    COLORS[i % len(COLORS)],
                    "dot",
                    joined=True,
                )
            )
        self.query_one("#compare-loss", SeriesPlot).show_figure(loss)
        self.query_one("#compare-acc", SeriesPlot).show_figure(acc)
        table = self.query_one("#compare-table", DataTable)
        table.clear()
        for row in comparison_rows(self.names, self.methods, self.states):
            table.add_row(*row)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "save_comparison":
            return len(self.paths) > 1 and len(self.states) == len(self.paths)
        return True

    def action_save_comparison(self) -> None:
        if len(self.paths) < 2 or len(self.states) != len(self.paths):
            return
        from zoengine.paths import runs_home

        rows = comparison_rows(self.names, self.methods, self.states)
        base = runs_home() / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
        try:
            written = save_comparison(rows, base)
        except OSError as exc:
            self.notify(f"comparison not saved: {exc}", severity="error")
            return
        self.notify("comparison saved: " + ", ".join(str(p) for p in written))

    def action_back(self) -> None:
        self.dismiss(None)


def save_comparison(rows: list[tuple[str, ...]], base: Path) -> list[Path]:
    """``base``.csv and ``base``.md with ``COMPARE_COLUMNS`` and one row per run."""
    import csv
    import io

    from zoengine.io import atomic_write_text

    base.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COMPARE_COLUMNS)
    writer.writerows(rows)
    md = ["| " + " | ".join(COMPARE_COLUMNS) + " |", "|" + "---|" * len(COMPARE_COLUMNS)]
    md += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    csv_path, md_path = base.with_suffix(".csv"), base.with_suffix(".md")
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(md_path, "\n".join(md) + "\n")
    return [csv_path, md_path]
