"""The app on the real engine (``zoengine.engine.Run``): a tiny local Llama and a tiny CSV task.

No downloads: the model is ``tiny_llama_dir`` from tests/conftest.py, the data a CSV written here.
Drives configure → start → curves/counters → pause → resume → stop → export → runs → resume.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from zoengine.config import RunConfig
from zotui.__main__ import make_app
from zotui.backend import engine_backend
from zotui.screens.dashboard import DashboardScreen
from zotui.screens.export import ExportScreen
from zotui.screens.runs import RunsScreen
from zotui.widgets.counters import CountersPanel

from .conftest import wait_for

pytest.importorskip("zoengine.engine")

POS = ["great fun movie", "a wonderful film", "i love this story", "the best acting"]
NEG = ["terrible boring movie", "an awful film", "i hate this story", "the worst acting"]


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    rows = ["text,label"] + [f"{t},positive" for t in POS * 4] + [f"{t},negative" for t in NEG * 4]
    path.write_text("\n".join(rows) + "\n")
    return path


def tiny_config(model_dir: Path, data: Path, run_dir: Path, steps: int) -> RunConfig:
    cfg = RunConfig()
    for key, value in {
        "model.name": str(model_dir),
        "model.device": "cpu",
        "task.name": "file",
        "task.path": str(data),
        "task.template": "{text} it was {label}",
        "task.label_words": "terrible,great",
        "task.label_map": "negative=terrible, positive=great",
        "task.n_train": "16",
        "task.n_dev": "8",
        "task.n_test": "8",
        "adapter.method": "full",
        "optimizer.name": "mezo_sgd",
        "optimizer.lr": "1e-3",
        "run.steps": str(steps),
        "run.batch_size": "4",
        "run.eval_every": "5",
        "run.checkpoint_every": "5",
        "run.output_dir": str(run_dir),
    }.items():
        cfg.set(key, value)
    return cfg.validate()


async def test_full_flow_on_the_real_engine(tiny_llama_dir: Path, tiny_csv: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "real-run"
    app = make_app(
        tiny_config(tiny_llama_dir, tiny_csv, run_dir, steps=100_000),
        backend=engine_backend(),
        check_assets=False,
    )
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), timeout=30)
        runner = app.runner
        assert runner is not None
        await wait_for(pilot, lambda: runner.state.step >= 6 and bool(runner.state.dev_points()), timeout=120)
        assert runner.state.info is not None and runner.state.info.trainable_params > 0
        await wait_for(pilot, lambda: app.screen.query_one(CountersPanel).drawn_version > 0)
        # pause / resume
        await pilot.press("p")
        await wait_for(pilot, lambda: runner.state.status == "paused", timeout=30)
        await pilot.press("p")
        await wait_for(pilot, lambda: runner.state.status == "running", timeout=30)
        # stop and save
        await pilot.press("s")
        await wait_for(pilot, lambda: not runner.active, timeout=60)
        assert runner.run.join(30) and runner.run.status == "stopped"
        stopped_at = runner.run.step  # type: ignore[attr-defined]
        # export (native: zoengine's own format)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        export = app.screen
        await pilot.press("ctrl+e")
        await wait_for(
            pilot,
            lambda: (
                export.written is not None or "failed" in export.query_one("#export-result").render().plain
            ),
            timeout=120,
        )  # type: ignore[attr-defined,union-attr]
        assert export.written, export.query_one("#export-result").render().plain  # type: ignore[attr-defined,union-attr]
        assert all(p.exists() for p in export.written)  # type: ignore[attr-defined]
        await pilot.press("escape")
        # the runs screen lists it; resume continues from the checkpoint
        await pilot.press("f2")
        await wait_for(
            pilot, lambda: isinstance(app.screen, RunsScreen) and bool(app.screen.rows), timeout=60
        )
        runs = app.screen
        row = next(r for r in runs.rows if r.path == run_dir)  # type: ignore[attr-defined]
        assert row.status == "stopped" and row.steps_done == stopped_at
        runs.query_one(DataTable).move_cursor(row=runs.rows.index(row))  # type: ignore[attr-defined]
        await pilot.press("r")
        await wait_for(pilot, lambda: app.runner is not runner and app.runner is not None, timeout=30)
        resumed = app.runner
        await wait_for(pilot, lambda: resumed.state.step > stopped_at, timeout=120)
        xs = resumed.state.loss.view(1000)[0]
        assert xs[0] == 1 and stopped_at + 1 in xs  # the curve keeps the history before the resume point
        await pilot.press("s")
        await wait_for(pilot, lambda: not resumed.active, timeout=60)
