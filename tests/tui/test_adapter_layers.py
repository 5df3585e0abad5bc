"""``adapter.layers`` and ``run.share_prefix`` in the setup form: the trainable count and the step
cost follow the block selection (counted on a weightless copy of a tiny local model), a spec that
does not parse is an inline error that blocks Start, and both keys survive a TOML round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.widgets import Static

from zoengine.config import RunConfig
from zotui import catalog
from zotui.screens.setup import SetupScreen

from .conftest import demo_config, wait_for
from .test_new_user import field, pick, type_into


@pytest.fixture
def offline_previews(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real trainable count; no task data, no tune cache, no zoo look-up."""
    monkeypatch.setattr(catalog, "task_preview", lambda cfg: None)
    monkeypatch.setattr(catalog, "cached_tune", lambda cfg: None)
    monkeypatch.setattr(catalog, "is_fetched", lambda name: None)


def _trainable(text: str) -> int:
    found = re.search(r"trainable parameters: ([\d,]+) of", text)
    return int(found.group(1).replace(",", "")) if found else -1


async def test_layers_change_the_count_and_the_step_cost(
    make_demo_app, tmp_path: Path, tiny_llama_dir: Path, offline_previews: None
) -> None:
    cfg = demo_config(tmp_path, model__name=str(tiny_llama_dir), adapter__method="lora", adapter__r="2")
    app = make_demo_app(cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        count = app.screen.query_one("#trainable-count", Static)
        cost = app.screen.query_one("#step-cost", Static)
        await wait_for(pilot, lambda: _trainable(str(count.render())) > 0, timeout=60)
        every_block = _trainable(str(count.render()))
        await wait_for(pilot, lambda: "nothing to share" in str(cost.render()), timeout=30)

        await type_into(pilot, app, "adapter.layers", "top:1", "tab-adapter")
        assert field(app, "adapter.layers").error == ""
        await wait_for(pilot, lambda: 0 < _trainable(str(count.render())) < every_block, timeout=60)
        await wait_for(pilot, lambda: "shared" in str(cost.render()), timeout=30)
        line = str(cost.render())
        assert line.startswith("step cost ≈ ") and "at Q=1 (block 0 of 2 shared)" in line

        # Q and run.share_prefix change the cost line at once (no recount)
        await type_into(pilot, app, "optimizer.q", "4", "tab-optimizer")
        await wait_for(pilot, lambda: "at Q=4" in str(cost.render()))
        await pick(pilot, app, "run.share_prefix", "false", "tab-run")
        await wait_for(pilot, lambda: "run.share_prefix is off" in str(cost.render()))
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        built = screen.validate_form()
        assert built is not None and built.adapter.layers == "top:1" and built.run.share_prefix is False


async def test_a_bad_layers_spec_is_an_inline_error_and_start_refuses(
    make_demo_app, tmp_path: Path, offline_previews: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "trainable_count", lambda cfg: (10, 100))
    app = make_demo_app(demo_config(tmp_path, adapter__method="lora"))
    async with app.run_test(size=(120, 40)) as pilot:
        await type_into(pilot, app, "adapter.layers", "x", "tab-adapter")
        error = field(app, "adapter.layers").error
        assert error.startswith("adapter.layers: cannot read 'x'") and "top:K" in error and "\n" not in error
        assert field(app, "adapter.layers").has_class("-invalid")
        count = app.screen.query_one("#trainable-count", Static)
        await wait_for(pilot, lambda: "fix adapter.layers first" in str(count.render()))
        assert str(app.screen.query_one("#step-cost", Static).render()) == ""
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, SetupScreen) and app.runner is None
        assert "adapter.layers: cannot read" in str(app.screen.query_one("#setup-status").render())
        # empty = every block again: the form validates
        await type_into(pilot, app, "adapter.layers", "", "tab-adapter")
        assert field(app, "adapter.layers").error == ""
        assert app.screen.validate_form() is not None  # type: ignore[attr-defined]


async def test_layers_and_share_prefix_survive_a_toml_round_trip(
    make_demo_app, tmp_path: Path, offline_previews: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "trainable_count", lambda cfg: None)
    app = make_demo_app(demo_config(tmp_path, adapter__method="lora"))
    async with app.run_test(size=(120, 40)) as pilot:
        await type_into(pilot, app, "adapter.layers", "0-1,3", "tab-adapter")
        await pick(pilot, app, "run.share_prefix", "false", "tab-run")
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        cfg, errors = screen.build_config()
        assert not errors
        path = tmp_path / "layers.toml"
        cfg.save(path)
        assert 'layers = "0-1,3"' in path.read_text() and "share_prefix = false" in path.read_text()
        await type_into(pilot, app, "adapter.layers", "", "tab-adapter")
        await pick(pilot, app, "run.share_prefix", "true", "tab-run")
        await screen.load_config(RunConfig.load(path), path)
        await pilot.pause()
        assert field(app, "adapter.layers").value == "0-1,3"
        assert field(app, "run.share_prefix").value == "false"
        loaded = screen.validate_form()
        assert loaded is not None and loaded.adapter.layers == "0-1,3" and not loaded.run.share_prefix
