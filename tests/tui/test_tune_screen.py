"""The setup screen's Tune action (F7) on the real tuner and a tiny local Llama: live curves, the
tuned lr written back into the form, cancel, a refusal shown as one line, and the cached offer.

Same learnable 2-class CSV and grid as tests/test_tune.py (12 steps of full + mezo_sgd pick 3e-3
from [1e-6, 3e-3, 2e-2]); the tune cache is a tmp dir (ZOENGINE_CACHE).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Input, TabbedContent

from zoengine.config import RunConfig
from zotui.app import ZoApp
from zotui.screens.help import HelpScreen
from zotui.screens.setup import SetupScreen
from zotui.screens.tune import TuneScreen
from zotui.widgets.config_form import FormField, field_id
from zotui.widgets.plots import SeriesPlot

from .conftest import wait_for

pytest.importorskip("zoengine.tune")

GRID = [1e-6, 3e-3, 2e-2]


@pytest.fixture
def tune_cfg(
    tiny_llama_dir: Path, sentiment_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RunConfig:
    monkeypatch.setenv("ZOENGINE_CACHE", str(tmp_path / "cache"))
    csv = sentiment_csv
    cfg = RunConfig()
    cfg.model.name, cfg.model.device = str(tiny_llama_dir), "cpu"
    cfg.task.name, cfg.task.path = "file", str(csv)
    cfg.task.template = "{text} it was"
    cfg.task.label_words = ["great", "terrible"]
    cfg.task.n_train, cfg.task.n_dev, cfg.task.n_test = 120, 64, 40
    cfg.adapter.method, cfg.optimizer.name = "full", "mezo_sgd"
    cfg.run.batch_size, cfg.run.output_dir = 16, str(tmp_path / "run")
    cfg.run.steps = 48  # 4× the 12-step sweep: the tuned lr written is the pick × √(12/48) = pick/2
    return cfg


def tune_with(monkeypatch: pytest.MonkeyPatch, **options: object) -> None:
    monkeypatch.setattr(SetupScreen, "tune_options", options)


def field(app: ZoApp, key: str) -> FormField:
    return app.screen.query_one(f"#{field_id(key)}", FormField)


async def type_into(pilot, app: ZoApp, key: str, text: str, tab: str) -> None:  # noqa: ANN001
    app.screen.query_one("#setup-tabs", TabbedContent).active = tab
    await pilot.pause()
    inp = app.screen.query_one(f"#{field_id(key)}-input", Input)
    inp.focus()
    inp.value = ""
    await pilot.press(*text)
    await pilot.pause()


async def finished_tune(pilot) -> TuneScreen:  # noqa: ANN001
    await pilot.press("f7")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, TuneScreen))
    screen = pilot.app.screen
    assert isinstance(screen, TuneScreen)
    await wait_for(pilot, lambda: not screen.running, timeout=60)
    await pilot.pause(0.3)  # the last redraw
    return screen


async def test_tune_key_sweeps_draws_curves_and_writes_the_tuned_lr_into_the_form(
    make_demo_app, tune_cfg, monkeypatch
) -> None:
    tune_with(monkeypatch, steps=12, lrs=GRID, dev_examples=64)
    app = make_demo_app(tune_cfg)
    async with app.run_test(size=(110, 36)) as pilot:
        assert field(app, "optimizer.lr").value == "auto"  # unset lr = the calibrated default
        screen = await finished_tune(pilot)
        assert screen.error is None and screen.result is not None and screen.result.lr == 3e-3
        # one curve per candidate; the diverging one stopped early and is never chosen
        lines = screen.query_one("#tune-plot", SeriesPlot).figure.lines
        assert [line.label for line in lines] == ["lr 1e-06", "lr 0.003", "lr 0.02"]
        assert [len(c.losses) for c in screen.candidates][:2] == [12, 12] and screen.candidates[2].diverged
        table = screen.query_one("#tune-table", DataTable)
        assert table.row_count == 3
        assert [str(c) for c in table.get_row_at(1)][-1] == "chosen"
        assert [str(c) for c in table.get_row_at(2)][-1] == "diverged"
        assert "Tuned:" in str(screen.query_one("#tune-status").render())
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        assert field(app, "optimizer.lr").value == "0.0015"  # pick 3e-3 discounted for 48 steps
        cfg, errors = setup.build_config()
        assert not errors and cfg.optimizer.lr == 1.5e-3
        # the sweep was cached: the setup screen now offers it
        await wait_for(pilot, lambda: setup.tuned is not None)
        assert setup.query_one("#tuned-offer").has_class("-available")


async def test_escape_stops_the_sweep_and_leaves_the_form_unchanged(
    make_demo_app, tune_cfg, monkeypatch
) -> None:
    # a long sweep (a tiny-model step takes milliseconds): Esc must land well before its end
    tune_with(monkeypatch, steps=20_000, lrs=[1e-6, 1e-5], dev_examples=64)
    app = make_demo_app(tune_cfg)
    async with app.run_test(size=(110, 36)) as pilot:
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, TuneScreen))
        screen = app.screen
        assert isinstance(screen, TuneScreen)
        await wait_for(pilot, lambda: bool(screen.candidates) and len(screen.candidates[0].losses) >= 2, 30)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.running, timeout=20)
        assert screen.result is None and "stopped by the user" in (screen.error or "")
        assert len(screen.candidates[0].losses) < 20_000 and len(screen.candidates) == 1
        assert "Stopped:" in str(screen.query_one("#tune-status").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert field(app, "optimizer.lr").value == "auto"


async def test_a_refused_sweep_is_one_line_and_offers_nothing_to_apply(
    make_demo_app, tune_cfg, monkeypatch
) -> None:
    tune_with(monkeypatch, steps=6, lrs=[0.1, 1.0], dev_examples=32)
    app = make_demo_app(tune_cfg)
    async with app.run_test(size=(110, 36)) as pilot:
        screen = await finished_tune(pilot)
        assert screen.result is None and screen.error is not None
        assert "every candidate diverged" in screen.error and "\n" not in screen.error
        status = str(screen.query_one("#tune-status").render())
        assert "Tune refused:" in status and "Traceback" not in status
        assert screen.query_one("#tune-use", Button).disabled
        await pilot.press("u")  # nothing to use: the screen stays
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert field(app, "optimizer.lr").value == "auto"


async def test_bad_form_input_refuses_tune_and_auto_is_accepted(make_demo_app, tune_cfg, monkeypatch) -> None:
    tune_with(monkeypatch, steps=6, lrs=GRID, dev_examples=32)
    app = make_demo_app(tune_cfg)
    async with app.run_test(size=(110, 36)) as pilot:
        await type_into(pilot, app, "optimizer.lr", "-1", "tab-optimizer")
        await pilot.press("f7")
        await pilot.pause(0.2)
        assert isinstance(app.screen, SetupScreen)
        status = str(app.screen.query_one("#setup-status").render())
        assert "optimizer.lr: must be" in status and "-1" in status
        await type_into(pilot, app, "optimizer.lr", "auto", "tab-optimizer")
        cfg, errors = app.screen.build_config()
        assert not errors and cfg.optimizer.lr is None
        # the key is listed with every other key
        app.set_focus(None)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        ids = {k.action_id for k in app.screen.keys}
        assert {"tune-lr", "use-tuned-lr"} <= ids


async def test_a_cached_sweep_is_offered_and_applied_in_one_action(make_demo_app, tune_cfg) -> None:
    from zoengine import tune as tuner

    cached = tuner.TuneResult(
        key=tuner.cache_key(tune_cfg), lr=4e-3, eps=1e-2, chosen=0, steps=12, batch_size=16,
        dev_examples=64, candidates=[tuner.Candidate(4e-3, 1e-2)], trainable=1000, default_lr=1e-3, seconds=1.0,
    )  # fmt: skip
    tuner._save_cache(cached)
    app = make_demo_app(tune_cfg)
    async with app.run_test(size=(110, 36)) as pilot:
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        await wait_for(pilot, lambda: setup.tuned is not None)
        setup.query_one("#setup-tabs", TabbedContent).active = "tab-optimizer"
        await pilot.pause()
        assert setup.query_one("#tuned-offer").has_class("-available")
        assert "0.002" in str(setup.query_one("#use-tuned", Button).label)  # 4e-3 × √(12/48)
        assert "sweep pick 0.004" in str(setup.query_one("#tuned-hint").render())
        await pilot.click("#use-tuned")
        await pilot.pause()
        assert field(app, "optimizer.lr").value == "0.002" and field(app, "optimizer.eps").value == "0.01"
        await wait_for(pilot, lambda: "(in use)" in str(setup.query_one("#tuned-hint").render()))
        # another batch size is another cache entry: no offer
        await type_into(pilot, app, "run.batch_size", "8", "tab-run")
        await wait_for(pilot, lambda: setup.tuned is None)
        assert not setup.query_one("#tuned-offer").has_class("-available")
