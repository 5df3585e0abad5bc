"""Plots over whole runs: curves from ``DecimatedSeries`` drawn at the widget's width.

The plot is rebuilt only when the widget is refreshed (the dashboard refreshes the visible plot when
its data changed, at most once a second while training), and each rebuild draws at most two points
per braille column, so the cost does not grow with the run length. Curves are drawn as dense braille
dots rather than plotext lines: plotext interpolates lines point by point in Python (about 10x the
cost), and the GIL it holds is taken from the training thread. NaN/inf steps
are drawn as red ``x`` markers along the top edge so a diverged step is seen, not silently dropped.
A failing render shows "plot unavailable" instead of taking the app down.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from zotui.series import DecimatedSeries

log = logging.getLogger(__name__)

AXIS_COLUMNS = 10  # columns plotext spends on the y axis ticks


@dataclass
class Line:
    """A curve; ``yside="right"`` puts it on the second y axis (accuracy next to loss)."""

    label: str
    series: DecimatedSeries
    color: str = "cyan"
    yside: str = "left"
    joined: bool = False  # True: a plotext line (costly per point; for short series only)


@dataclass
class Points:
    """A few discrete points (dev evaluations)."""

    label: str
    xs: list[float]
    ys: list[float]
    color: str = "yellow"
    marker: str = "dot"
    yside: str = "left"
    joined: bool = False  # True: joined by a line (one run's evaluations in a comparison)


@dataclass
class Figure:
    title: str = ""
    lines: list[Line] = field(default_factory=list)
    points: list[Points] = field(default_factory=list)
    ylabel: str = ""
    y2label: str = ""
    ylim: tuple[float, float] | None = None  # a fixed left axis (a fraction: 0..1)
    integer_x: bool = True  # x is a step count: ticks on whole numbers only


class SeriesPlot(PlotextPlot):
    """A ``PlotextPlot`` that draws a ``Figure`` of decimated series at its current size."""

    DEFAULT_CSS = """
    SeriesPlot { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.figure = Figure()
        self.drawn_version = -1
        self.render_count = 0

    def show_figure(self, figure: Figure, version: int | None = None, force: bool = False) -> None:
        """Replace what is drawn; a repeated ``version`` is ignored (nothing new) unless ``force``."""
        if not force and version is not None and version == self.drawn_version:
            return
        self.figure = figure
        self.drawn_version = version if version is not None else self.drawn_version + 1
        self.refresh()

    def render(self) -> RenderResult:
        self.render_count += 1
        try:
            self._draw(self.figure)
            return super().render()
        except Exception:
            log.warning("plot render failed", exc_info=True)
            return Text("plot unavailable", style="dim")

    def _draw(self, fig: Figure) -> None:
        plt = self.plt
        plt.clear_figure()
        # one min/max pair per terminal column: enough for braille dots, and plotext's cost is per point
        columns = max(4, self.size.width - AXIS_COLUMNS)
        top = _finite_max(fig)
        drawn = False
        all_xs: list[float] = []
        for line in fig.lines:
            xs, ys, nan_xs = line.series.view(columns)
            all_xs += xs[:1] + xs[-1:] + nan_xs
            if xs:
                draw = plt.plot if line.joined else plt.scatter
                draw(xs, ys, label=line.label, color=line.color, marker="braille", yside=line.yside)
                drawn = True
            if nan_xs:
                plt.scatter(nan_xs, [top] * len(nan_xs), label=f"{line.label} NaN", color="red", marker="x")
                drawn = True
        for pts in fig.points:
            all_xs += pts.xs
            if pts.xs:
                draw = plt.plot if pts.joined else plt.scatter
                draw(pts.xs, pts.ys, label=pts.label, color=pts.color, marker=pts.marker, yside=pts.yside)
                drawn = True
        title = fig.title if drawn else f"{fig.title} (waiting for data)"
        plt.title(title)
        if fig.ylabel:
            plt.ylabel(fig.ylabel)
        if fig.y2label and any(p.yside == "right" for p in fig.points):
            plt.ylabel(fig.y2label, yside="right")
        if fig.ylim is not None:
            plt.ylim(*fig.ylim)
        if fig.integer_x and all_xs:
            ticks = integer_ticks(min(all_xs), max(all_xs))
            plt.xticks(ticks, [str(t) for t in ticks])


def integer_ticks(lo: float, hi: float, most: int = 6) -> list[int]:
    """At most ``most`` whole-number ticks at a 1/2/5×10^k spacing covering ``lo..hi``."""
    first, last = math.ceil(lo), math.floor(hi)
    if last <= first:
        return [round(lo)]
    span, step = last - first, 1
    while span / step > most - 1:  # 1, 2, 5, 10, 20, 50, ...
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    start = math.ceil(first / step) * step
    return list(range(start, last + 1, step))


def _finite_max(fig: Figure) -> float:
    """Top of the finite values, where NaN markers are drawn (0 when nothing is finite)."""
    tops = [line.series.view(1)[1] for line in fig.lines]  # one bucket: the global min and max
    finite = [y for ys in tops for y in ys if math.isfinite(y)]
    return max(finite) if finite else 0.0


def overlay(title: str, named: Sequence[tuple[str, DecimatedSeries]], ylabel: str = "") -> Figure:
    """One line per run (the comparison screen)."""
    colors = ("cyan", "magenta", "green", "yellow", "blue", "red", "white")
    lines = [Line(name, s, colors[i % len(colors)]) for i, (name, s) in enumerate(named)]
    return Figure(title=title, lines=lines, ylabel=ylabel)
