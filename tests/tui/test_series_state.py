"""Pure logic under the dashboard: min/max decimation, NaN/zero visibility, run-state folding."""

from __future__ import annotations

import math

import pytest

from zoengine.events import EvalDone, LogMessage, RunInfo, StatusChanged, StepLogged
from zotui.series import DecimatedSeries, Ema, downsample_minmax
from zotui.state import RunState, format_count, format_duration


def test_small_series_come_back_unchanged() -> None:
    xs, ys, nans = downsample_minmax([0, 1, 2], [3.0, 1.0, 2.0], width=80)
    assert (xs, ys, nans) == ([0, 1, 2], [3.0, 1.0, 2.0], [])


def test_long_series_keep_extremes_and_stay_within_two_points_per_column() -> None:
    n = 100_000
    ys = [math.sin(i / 50) for i in range(n)]
    ys[12_345] = 50.0  # a spike
    ys[67_890] = -50.0  # a dip
    xs, out, _ = downsample_minmax(list(range(n)), ys, width=100)
    assert len(xs) <= 201
    assert max(out) == 50.0 and min(out) == -50.0
    assert 12_345 in xs and 67_890 in xs
    assert xs == sorted(xs)


def test_zero_and_nan_stay_visible() -> None:
    n = 10_000
    ys = [1.0] * n
    ys[5_000] = 0.0
    ys[7_000] = float("nan")
    ys[7_001] = float("inf")
    xs, out, nans = downsample_minmax(list(range(n)), ys, width=50)
    assert 0.0 in out  # a zero loss is a value, not "missing"
    assert all(math.isfinite(y) for y in out)
    assert nans == [7_000]  # one marker per bucket that saw a non-finite value


def test_incremental_series_memory_is_bounded() -> None:
    s = DecimatedSeries(capacity=64)
    for i in range(100_000):
        s.append(i, float(i % 7))
    assert len(s._buckets) <= 64 and len(s) == 100_000
    xs, ys, _ = s.view(32)
    assert len(xs) <= 65 and min(ys) == 0.0 and max(ys) == 6.0 and xs[-1] == 99_999


def test_capacity_must_allow_min_and_max() -> None:
    with pytest.raises(ValueError):
        DecimatedSeries(capacity=1)


def test_ema_skips_non_finite_values() -> None:
    ema = Ema(alpha=0.5)
    assert ema.update(float("nan")) is None
    assert ema.update(2.0) == 2.0
    assert ema.update(float("inf")) == 2.0
    assert ema.update(4.0) == 3.0


def _step(step: int, loss: float, t: float, **extra: object) -> StepLogged:
    return StepLogged(
        step=step,
        loss=loss,
        lr=1e-6,
        projected_grads=[0.5, -1.5],
        queries=2,
        forward_passes=4 * step,
        tokens=100 * step,
        seconds=0.1,
        extra=dict(extra),
        time=t,
    )


def test_run_state_folds_events() -> None:
    events = [
        StatusChanged(status="loading"),
        RunInfo(
            model="m", total_params=10, trainable_params=2, n_train=8, n_dev=4, n_test=4, total_steps=100
        ),
        StatusChanged(status="running"),
        *[
            _step(
                i,
                1.0 / i,
                t=float(i),
                gate_sparsity=0.1 * i,
                per_module={"l.0.q": {"sparsity": 0.5, "rank": 2}},
            )
            for i in range(1, 11)
        ],
        EvalDone(step=5, split="dev", loss=0.3, accuracy=0.7, examples=4),
        EvalDone(step=10, split="dev", loss=0.2, accuracy=0.6, examples=4),
        LogMessage(level="warning", text="label word split into 2 tokens"),
    ]
    state = RunState.from_events(events)
    assert state.status == "running" and state.step == 10 and state.total_steps == 100
    assert state.best_dev() is not None and state.best_dev().accuracy == 0.7  # type: ignore[union-attr]
    assert state.grad.last == (10.0, 1.0)  # mean |projected grad|
    assert state.sparsity.last is not None and state.per_module == {"l.0.q": {"sparsity": 0.5, "rank": 2}}
    # speed from the steps' own 0.1 s, not from the 1 s between events (pauses, evaluations)
    assert state.steps_per_second() == pytest.approx(10.0)
    assert state.eta_seconds() == pytest.approx(9.0)
    assert ("warning", "label word split into 2 tokens") in state.logs_since(0)
    assert state.logs_since(state.log_total) == []


def test_formatting_helpers() -> None:
    assert (
        format_duration(None) == "--" and format_duration(65) == "1:05" and format_duration(3725) == "1:02:05"
    )
    assert format_count(None) == "--" and format_count(12_345) == "12.3k" and format_count(7) == "7"
