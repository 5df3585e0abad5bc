"""Screenshots of the main screens at fixed sizes with deterministic content.

Pickers, memory readings and the runs' start times are pinned (``fixed_catalog``, ``_pin_times``,
TZ=UTC); the runs are the engine's on the demo model (seeded, CPU, float32: the same numbers every
time), named by a relative path; focus is cleared so no cursor blinks. Update after an intended
change with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and review the SVGs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from zoengine.io import append_jsonl, read_jsonl

from .conftest import demo_config, train, wait_for

FIXED_TIME = 1_767_225_600.0  # 2026-01-01 00:00 UTC


@pytest.fixture(autouse=True)
def _pinned(fixed_catalog: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def _finished_run(tmp_path: Path, name: str, steps: int, adapter: str = "full", lr: str = "1e-3") -> None:
    cfg = demo_config(tmp_path, steps=steps, run_name=name, adapter__method=adapter, optimizer__lr=lr)
    _pin_times(train(cfg).run_dir)


def _pin_times(run_dir: Path) -> None:
    """Every event of the run's log at FIXED_TIME (the runs screen shows when a run started)."""
    log = run_dir / "metrics.jsonl"
    records = read_jsonl(log)
    log.unlink()
    for record in records:
        append_jsonl(log, {**record, "time": FIXED_TIME})


def test_setup_screen(snap_compare, make_demo_app) -> None:
    async def settle(pilot) -> None:  # noqa: ANN001
        await pilot.pause(0.3)
        pilot.app.set_focus(None)
        await pilot.pause()

    assert snap_compare(make_demo_app(), terminal_size=(80, 24), run_before=settle)


def test_setup_screen_with_a_bad_field(snap_compare, make_demo_app, tmp_path: Path) -> None:
    cfg = demo_config(tmp_path)
    cfg.optimizer.lr = -1.0

    async def show_optimizer(pilot) -> None:  # noqa: ANN001
        await pilot.pause(0.3)
        pilot.app.screen.query_one("#setup-tabs").active = "tab-optimizer"
        pilot.app.set_focus(None)
        await pilot.pause(0.2)

    assert snap_compare(make_demo_app(cfg), terminal_size=(80, 24), run_before=show_optimizer)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_dashboard_after_a_finished_run(
    snap_compare, make_demo_app, tmp_path: Path, size: tuple[int, int], short_model_name: str
) -> None:
    cfg = demo_config(tmp_path, steps=300, model__name=short_model_name)
    cfg.run.eval_every = 50

    async def run_to_end(pilot) -> None:  # noqa: ANN001
        app = pilot.app
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.status == "finished")
        await pilot.pause(0.6)  # one more drain + redraw
        app.clear_notifications()
        app.set_focus(None)
        await pilot.pause(0.2)

    app = make_demo_app(cfg)
    assert snap_compare(app, terminal_size=size, run_before=run_to_end)


def test_runs_screen(snap_compare, make_demo_app, tmp_path: Path) -> None:
    _finished_run(tmp_path, "mezo-full", 120)
    _finished_run(tmp_path, "mezo-fast", 80, lr="3e-3")

    async def open_runs(pilot) -> None:  # noqa: ANN001
        await pilot.press("f2")
        await wait_for(pilot, lambda: len(getattr(pilot.app.screen, "rows", [])) == 2)
        await pilot.pause(0.2)

    assert snap_compare(make_demo_app(), terminal_size=(80, 24), run_before=open_runs)


def test_help_screen(snap_compare, make_demo_app, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOTUI_KEYMAP", "/home/me/.config/zotui/keymap.toml")  # the path it names

    async def open_help(pilot) -> None:  # noqa: ANN001
        await pilot.pause(0.2)
        pilot.app.set_focus(None)
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(make_demo_app(), terminal_size=(80, 24), run_before=open_help)
