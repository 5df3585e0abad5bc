"""Whole-run curves at bounded cost: min/max-per-bucket decimation that keeps zeros and NaN visible.

A 100k-step run must still draw in milliseconds, and a loss spike, a zero or a NaN must not vanish
in the averaging. ``DecimatedSeries`` keeps at most ``capacity`` buckets, each remembering its
lowest and highest point and whether it saw a non-finite value; when full, neighbouring buckets
merge and the bucket width doubles (O(1) amortised per point, O(capacity) memory). ``view(width)``
then groups buckets to the plot width and returns at most two points per column (min and max, in
step order) plus the newest point, and the steps where NaN/inf occurred, which the plot draws as
markers.

    >>> s = DecimatedSeries()
    >>> for i, y in enumerate([1.0, 0.0, float("nan"), 2.0]):
    ...     s.append(i, y)
    >>> s.view(80)
    ([0, 1, 3], [1.0, 0.0, 2.0], [2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Bucket:
    """Consecutive points summarised by their extremes (``lo``/``hi`` are (x, y) pairs)."""

    count: int
    lo: tuple[float, float] | None
    hi: tuple[float, float] | None
    nan_x: float | None

    def add(self, x: float, y: float) -> None:
        self.count += 1
        if not math.isfinite(y):
            if self.nan_x is None:
                self.nan_x = x
            return
        if self.lo is None or y < self.lo[1]:
            self.lo = (x, y)
        if self.hi is None or y > self.hi[1]:
            self.hi = (x, y)

    def merge(self, other: Bucket) -> Bucket:
        lo = min((p for p in (self.lo, other.lo) if p is not None), key=lambda p: p[1], default=None)
        hi = max((p for p in (self.hi, other.hi) if p is not None), key=lambda p: p[1], default=None)
        nan_x = self.nan_x if self.nan_x is not None else other.nan_x
        return Bucket(self.count + other.count, lo, hi, nan_x)

    def points(self) -> list[tuple[float, float]]:
        """The extremes in step order; one point when they coincide."""
        pts = sorted({p for p in (self.lo, self.hi) if p is not None})
        return pts


def _new_bucket(x: float, y: float) -> Bucket:
    b = Bucket(0, None, None, None)
    b.add(x, y)
    return b


class DecimatedSeries:
    """An append-only curve summarised into at most ``capacity`` min/max buckets."""

    def __init__(self, capacity: int = 1024) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be >= 2 (got {capacity})")
        self.capacity = capacity
        self.points_per_bucket = 1
        self._buckets: list[Bucket] = []
        self.count = 0
        self.last: tuple[float, float] | None = None

    def __len__(self) -> int:
        return self.count

    def append(self, x: float, y: float) -> None:
        self.count += 1
        self.last = (x, y)
        if self._buckets and self._buckets[-1].count < self.points_per_bucket:
            self._buckets[-1].add(x, y)
            return
        self._buckets.append(_new_bucket(x, y))
        if len(self._buckets) > self.capacity:
            self._halve()

    def _halve(self) -> None:
        """Merge neighbours pairwise and double the width (burn's full-history trick)."""
        merged = [a.merge(b) for a, b in zip(self._buckets[0::2], self._buckets[1::2], strict=False)]
        if len(self._buckets) % 2:
            merged.append(self._buckets[-1])
        self._buckets = merged
        self.points_per_bucket *= 2

    def view(self, width: int) -> tuple[list[float], list[float], list[float]]:
        """(xs, ys, nan_xs) with at most ``2 * width`` finite points (+ the newest), for ``width`` columns."""
        width = max(1, width)
        buckets = self._buckets
        group = max(1, math.ceil(len(buckets) / width))
        xs: list[float] = []
        ys: list[float] = []
        nan_xs: list[float] = []
        for i in range(0, len(buckets), group):
            lo: tuple[float, float] | None = None
            hi: tuple[float, float] | None = None
            nan_x: float | None = None
            for b in buckets[i : i + group]:  # plain comparisons: this runs on every redraw
                if b.lo is not None and (lo is None or b.lo[1] < lo[1]):
                    lo = b.lo
                if b.hi is not None and (hi is None or b.hi[1] > hi[1]):
                    hi = b.hi
                if nan_x is None and b.nan_x is not None:
                    nan_x = b.nan_x
            if lo is not None and hi is not None:
                first, second = (lo, hi) if lo[0] <= hi[0] else (hi, lo)
                xs.append(first[0])
                ys.append(first[1])
                if second != first:
                    xs.append(second[0])
                    ys.append(second[1])
            if nan_x is not None:
                nan_xs.append(nan_x)
        if self.last is not None and math.isfinite(self.last[1]) and (not xs or self.last[0] > xs[-1]):
            xs.append(self.last[0])  # the curve always reaches the newest step
            ys.append(self.last[1])
        return xs, ys, nan_xs


def downsample_minmax(
    xs: list[float], ys: list[float], width: int
) -> tuple[list[float], list[float], list[float]]:
    """One-shot min/max downsampling of a whole list (for replays of finished runs)."""
    series = DecimatedSeries(capacity=max(2, 2 * width))
    for x, y in zip(xs, ys, strict=True):
        series.append(x, y)
    return series.view(width)


class Ema:
    """Exponential moving average of the finite values (a NaN step does not poison the curve)."""

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def update(self, y: float) -> float | None:
        if math.isfinite(y):
            self.value = y if self.value is None else self.value + self.alpha * (y - self.value)
        return self.value
