"""``zotui --demo``: the real engine on the tiny model of ``zotui.demo``, never a second engine.

The demo model is built into the cache (``demo/``), its runs go to a temporary runs home made for
the process, and a demo run is a real run directory: the events, the state, checkpoints with real
tensors. The Runs screen of the demo lists it (that temporary home is the demo's runs home, so a
stopped demo run can be resumed there); the user's runs home never sees it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from textual.widgets import DataTable

from zoengine.config import RunConfig
from zoengine.events import StepLogged
from zoengine.runs import list_runs, read_events
from zotui.__main__ import make_app, parse_args, start_demo
from zotui.backend import engine_backend
from zotui.screens.dashboard import DashboardScreen
from zotui.screens.runs import RunsScreen

from .conftest import one_torch_thread, saved_step, wait_for


@pytest.fixture
def user_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's runs home and cache, and the temp folder (all under ``tmp_path``); the runs
    home is returned. ``start_demo`` changes ZOENGINE_RUNS: monkeypatch puts it back after."""
    home = tmp_path / "home"
    monkeypatch.setenv("ZOENGINE_RUNS", str(home))
    monkeypatch.setenv("ZOENGINE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    one_torch_thread()
    return home


async def test_a_demo_run_is_a_real_run_directory_outside_the_users_runs_home(
    user_homes: Path, tmp_path: Path
) -> None:
    mine = RunConfig()  # `zotui --demo --config mine.toml`: its method and run settings are kept
    mine.adapter.method = "lora"
    mine.run.steps, mine.run.eval_every, mine.run.checkpoint_every = 100_000, 10, 20
    mine.run.output_dir = str(user_homes / "mine")  # but the demo does not write into the runs home
    assert parse_args(["--demo"]).demo
    cfg, demo_runs = start_demo(mine)
    assert demo_runs.parent == tmp_path / "tmp" and demo_runs.name.startswith("zotui-demo-")
    assert Path(cfg.model.name) == tmp_path / "cache" / "demo" / "v1" / "tiny-llama"
    assert (Path(cfg.model.name) / "model.safetensors").stat().st_size > 0  # a real model, built once
    assert cfg.adapter.method == "lora" and cfg.run.eval_every == 10 and cfg.run.output_dir is None

    app = make_app(cfg, backend=engine_backend())
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=30)
        runner = app.runner
        assert runner is not None
        await wait_for(
            pilot, lambda: runner.state.step >= 25 and len(runner.state.dev_points()) >= 2, timeout=120
        )
        await pilot.press("s")  # stop and save
        await wait_for(pilot, lambda: not runner.active, timeout=60)
        assert runner.run.join(30) and runner.run.status == "stopped"
        run_dir = runner.run_dir
        assert run_dir.parent == demo_runs
        # the demo's Runs screen lists it, resumable
        await pilot.press("f2")
        await wait_for(
            pilot, lambda: isinstance(app.screen, RunsScreen) and bool(app.screen.rows), timeout=30
        )
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        assert [r.path for r in runs.rows] == [run_dir]
        row = runs.rows[0]
        assert (row.status, row.adapter, row.steps_done) == ("stopped", "lora", runner.run.step)
        assert row.model == cfg.model.name and row.best_dev_accuracy is not None
        runs.query_one(DataTable).move_cursor(row=0)
        await pilot.press("r")
        await wait_for(pilot, lambda: app.runner is not runner and app.runner is not None, timeout=30)
        resumed = app.runner
        await wait_for(pilot, lambda: resumed.state.step > runner.run.step, timeout=120)
        await pilot.press("s")
        await wait_for(pilot, lambda: not resumed.active, timeout=60)

    # nothing in the user's runs home: not the run, not its config's output_dir, nothing
    assert not user_homes.exists() or not any(user_homes.iterdir())
    assert list_runs(user_homes) == [] and [s.path for s in list_runs(demo_runs)] == [run_dir]
    # a real run directory: config, every event, state, checkpoints of real tensors
    from safetensors.torch import load_file

    from zoengine.engine import read_state

    assert (run_dir / "config.toml").is_file()
    steps = [e.step for e in read_events(run_dir) if isinstance(e, StepLogged)]
    state = read_state(run_dir)
    assert state["status"] == "stopped" and state["step"] == saved_step(run_dir) == resumed.run.step
    assert steps[-1] == state["step"] and steps[0] == 1
    for name in ("last", "prev", "best"):
        weights = run_dir / "checkpoints" / name / "trainable.safetensors"
        assert weights.stat().st_size > 0
        tensors = load_file(weights)
        assert tensors and all(t.numel() > 0 for t in tensors.values())
        assert any("lora" in key for key in tensors)  # the adapter the config chose, trained
