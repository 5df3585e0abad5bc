"""The memory panel: each number with what it measures (torch allocator vs device vs process)."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import Static

from zoengine.telemetry import (
    NVML_WHAT,
    PROCESS_WHAT,
    TORCH_WHAT,
    Reading,
    format_bytes,
    gpu_line,
    gpu_utilization,
    memory_snapshot,
)

REFRESH_SECONDS = 2.0
# what each group measures, short enough for the 33 columns of the side panel
SHORT_WHAT = {PROCESS_WHAT: "resident memory, this process"}


def _default_source() -> Callable[[str | None], list[Reading]]:
    """Looked up at call time, so tests can swap in fixed readings for screenshots."""
    return memory_snapshot


def _utilization(device: str | None) -> int | None:
    """NVML utilisation, looked up at call time (tests swap it in)."""
    return gpu_utilization(device)


class MemoryPanel(Static):
    """Refreshes itself every ~2 s from ``zoengine.telemetry`` (cheap: psutil, /proc, NVML)."""

    DEFAULT_CSS = """
    MemoryPanel { height: auto; padding: 0 1; }
    """

    def __init__(
        self,
        device: str | None = None,
        source: Callable[[str | None], list[Reading]] | None = None,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__("", id=id)
        self.device = device
        self.source = source
        self.readings: list[Reading] = []
        self._shown = ""  # plain text on screen, to skip identical redraws

    def on_mount(self) -> None:
        self.sample()
        self.set_interval(REFRESH_SECONDS, self.sample, name="memory-refresh")

    def sample(self) -> None:
        try:
            source = self.source or _default_source()
            self.readings = source(self.device)
        except Exception as exc:  # telemetry is never worth crashing the dashboard
            self.update(f"memory: unavailable ({exc})")
            return
        on_gpu = any(r.what in (TORCH_WHAT, NVML_WHAT) for r in self.readings)
        gpu = gpu_line(self.readings, _utilization(self.device) if on_gpu else None)
        table = self._table(self.readings, gpu)
        if table.plain != self._shown:  # the same figures again: no render at all
            same_height = table.plain.count("\n") == self._shown.count("\n")
            self._shown = table.plain
            self.update(table, layout=not same_height)

    @staticmethod
    def _table(readings: list[Reading], gpu: str = "") -> Text:
        """The GPU line, then readings grouped under what they measure ("torch allocator, this
        process" etc.)."""
        text = Text(no_wrap=True, overflow="ellipsis")
        if gpu:
            text.append(f"{gpu}\n", style="bold" if "none" not in gpu else "dim")
        last_what = None
        width = max((len(r.label) for r in readings), default=0)  # no wider than the labels shown
        for r in readings:
            if r.what != last_what:
                text.append(f"{SHORT_WHAT.get(r.what, r.what)}\n", style="dim italic")
                last_what = r.what
            value = format_bytes(r.value_bytes)
            if r.total_bytes:
                value += f" / {format_bytes(r.total_bytes)}"
            text.append(f"  {r.label:<{width}} {value}\n")
        if not readings:
            text.append("memory: no readings")
        text.rstrip()
        return text
