"""Pilot tests: the whole flow on the engine and the demo model, plus the refusals and the shutdown
guarantees."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, TabbedContent

from zotui.app import ZoApp
from zotui.screens.dashboard import DashboardScreen
from zotui.screens.dialogs import PathScreen, QuitScreen, TextScreen
from zotui.screens.export import ExportScreen
from zotui.screens.help import HelpScreen
from zotui.screens.runs import ReplayScreen, RunsScreen
from zotui.screens.setup import SetupScreen
from zotui.widgets.config_form import FormField, field_id
from zotui.widgets.counters import CountersPanel
from zotui.widgets.plots import SeriesPlot

from .conftest import demo_config, saved_step, train, wait_for


async def type_into(pilot, app: ZoApp, key: str, text: str, tab: str) -> None:
    """Show ``tab``, clear the field editing ``key`` and type ``text`` like a user."""
    app.screen.query_one("#setup-tabs", TabbedContent).active = tab
    await pilot.pause()
    inp = app.screen.query_one(f"#{field_id(key)}-input", Input)
    inp.focus()
    inp.value = ""
    await pilot.press(*text)
    await pilot.pause()


def field(app: ZoApp, key: str) -> FormField:
    return app.screen.query_one(f"#{field_id(key)}", FormField)


async def test_configure_start_watch_pause_resume_stop_export_and_find_run(
    make_demo_app, tmp_path: Path
) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(100, 32)) as pilot:
        # configure: a new lr typed into the form ends up in the run's config
        await type_into(pilot, app, "optimizer.lr", "2e-6", "tab-optimizer")
        assert field(app, "optimizer.lr").error == ""
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        runner = app.runner
        assert runner is not None and runner.config is not None and runner.config.optimizer.lr == 2e-6
        # watch: counters and the loss curve follow the engine
        await wait_for(pilot, lambda: runner.state.step >= 30)
        counters = app.screen.query_one(CountersPanel)
        plot = app.screen.query_one("#plot-loss", SeriesPlot)
        await wait_for(pilot, lambda: counters.drawn_version > 0 and plot.render_count > 0)
        assert len(runner.state.loss) >= 30 and runner.state.dev_points()
        # pause / resume
        await pilot.press("p")
        await wait_for(pilot, lambda: runner.state.status == "paused")
        paused_at = runner.state.step
        await pilot.pause(0.3)
        assert runner.state.step == paused_at
        await pilot.press("p")
        await wait_for(pilot, lambda: runner.state.status == "running" and runner.state.step > paused_at)
        # stop and save
        await pilot.press("s")
        await wait_for(pilot, lambda: runner.state.status == "stopped" and not runner.active)
        assert runner.run.join(5)
        assert "stopped at step" in runner.state.status_message
        # export
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.press("ctrl+e")
        export = app.screen
        assert isinstance(export, ExportScreen)
        await wait_for(pilot, lambda: export.written is not None)
        assert (
            all(p.is_file() for p in export.written)
            and export.written[0].parent == tmp_path / "run" / "exports" / "native"
        )
        assert "exported native" in str(export.query_one("#export-result").render())
        await pilot.press("escape")
        # the run is listed on the runs screen, and opens as a replay
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and bool(app.screen.rows))
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        row = next(r for r in runs.rows if r.path == tmp_path / "run")
        assert (
            row.status == "stopped"
            and row.steps_done == runner.state.step
            and row.best_dev_accuracy is not None
        )
        table = runs.query_one(DataTable)
        table.move_cursor(row=runs.rows.index(row))
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen) and bool(app.screen.states))
        assert app.screen.states[0].step == runner.state.step


async def test_bad_field_blocks_start_with_the_message_shown(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await type_into(pilot, app, "optimizer.lr", "-1", "tab-optimizer")
        assert field(app, "optimizer.lr").error == "optimizer.lr: must be a finite number > 0 or auto (got -1.0)"
        assert field(app, "optimizer.lr").has_class("-invalid")
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, SetupScreen) and app.runner is None
        status = str(app.screen.query_one("#setup-status").render())
        assert "Cannot start" in status and "optimizer.lr: must be a finite number > 0" in status
        # fixing the field clears the error and Start goes through
        await type_into(pilot, app, "optimizer.lr", "1e-6", "tab-optimizer")
        assert field(app, "optimizer.lr").error == ""
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_values_that_do_not_parse_name_the_expected_type(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await type_into(pilot, app, "run.steps", "many", "tab-run")
        assert field(app, "run.steps").error == "run.steps: expected an integer (got 'many')"
        await type_into(pilot, app, "model.device", "tpu", "tab-model")
        assert (
            field(app, "model.device").error == "model.device: must be auto, cpu, cuda or cuda:N (got 'tpu')"
        )
        assert "run.steps: expected an integer" in app.screen.query_one("#setup-status").render().plain  # type: ignore[union-attr]


async def test_quit_during_a_run_asks_then_stops_saves_and_ends_the_engine(
    make_demo_app, tmp_path: Path
) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.step > 5)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("escape")  # cancel keeps training
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert app.runner is not None and app.runner.active
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen))
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.is_running, timeout=10)
    runner = app.runner
    assert runner is not None and runner.run.join(5)
    assert runner.run.status == "stopped" and saved_step(tmp_path / "run") == runner.run.step


async def test_leaving_the_app_any_other_way_still_stops_the_engine(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.step > 3)
        app.exit()  # no dialog: e.g. a signal; the worker is cancelled and stops the engine
    assert app.runner is not None
    assert app.shutdown_engine(timeout=10)
    assert app.runner.run.status == "stopped"


async def test_back_to_setup_keeps_the_run_and_f3_returns(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        await pilot.press("f5")  # a second run is refused while the first is active
        await pilot.pause()
        assert "a run is already active" in app.screen.query_one("#setup-status").render().plain  # type: ignore[union-attr]
        seen = app.runner.state.step  # type: ignore[union-attr]
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_for(pilot, lambda: app.runner.state.step > seen)  # type: ignore[union-attr]
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.runner.active)  # type: ignore[union-attr]


async def test_evaluate_now_adds_a_dev_point(make_demo_app, tmp_path: Path) -> None:
    cfg = demo_config(tmp_path, steps=100_000)
    cfg.run.eval_every = 0
    cfg.run.zero_shot_eval = False
    app = make_demo_app(cfg)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.step > 3)
        assert not app.runner.state.dev_points()
        await pilot.press("e")
        await wait_for(pilot, lambda: bool(app.runner.state.dev_points()))
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.runner.active)


async def test_dashboard_redraws_at_most_four_times_a_second(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.step > 10)
        plot = app.screen.query_one("#plot-loss", SeriesPlot)
        before = plot.drawn_version, app.runner.state.version
        await pilot.pause(2.0)
        redraws = app.runner.state.version - before[1]
        assert 1 <= redraws <= 4 * 2 + 2  # folds happen on the 4 Hz timer, not per event
        assert app.runner.state.steps_seen > 100  # while the engine logged hundreds of steps
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.runner.active)


async def test_export_error_is_shown_in_one_line(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=20))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.status == "finished")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        export = app.screen
        export.query_one("#fmt-peft-lora").value = True  # type: ignore[attr-defined]
        await pilot.pause()
        assert export.fmt == "peft-lora"  # type: ignore[attr-defined]
        assert export.query_one("#export-dest", Input).value.endswith("exports/peft-lora")
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: "export failed" in export.query_one("#export-result").render().plain)  # type: ignore[union-attr]
        assert "peft-lora cannot export a full adapter" in export.query_one("#export-result").render().plain  # type: ignore[union-attr]


async def test_resume_a_stopped_run_from_the_runs_screen(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.step > 5)
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.runner.active)
        stopped_at = saved_step(tmp_path / "run")
        first_runner = app.runner
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and bool(app.screen.rows))
        runs = app.screen
        runs.query_one(DataTable).move_cursor(row=[r.path for r in runs.rows].index(tmp_path / "run"))
        assert runs.current().status == "stopped"
        await pilot.press("r")
        await wait_for(
            pilot, lambda: isinstance(app.screen, DashboardScreen) and app.runner is not first_runner
        )
        resumed = app.runner
        await wait_for(pilot, lambda: resumed.state.step > stopped_at + 3)
        xs = resumed.state.loss.view(1000)[0]
        assert xs[0] == 1  # the history before the resume point is kept (issue 14)
        assert stopped_at + 1 in xs and xs.count(stopped_at) == 1  # continued after the checkpoint
        await pilot.press("s")
        await wait_for(pilot, lambda: not resumed.active)


async def test_marked_runs_overlay_in_one_plot(make_demo_app, tmp_path: Path) -> None:
    for name in ("a", "b"):
        train(demo_config(tmp_path, steps=30, run_name=name))
    app = make_demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.rows) >= 2)
        runs = app.screen
        table = runs.query_one(DataTable)
        table.focus()
        for name in ("a", "b"):
            table.move_cursor(row=[r.path for r in runs.rows].index(tmp_path / name))
            await pilot.press("space")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen) and len(app.screen.states) == 2)
        plot = app.screen.query_one("#compare-loss", SeriesPlot)
        assert sorted(line.label for line in plot.figure.lines) == ["a", "b"]


async def test_help_lists_the_keys_of_the_screen(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        ids = {k.action_id for k in app.screen.keys}  # type: ignore[attr-defined]
        assert {"start-run", "save-config", "load-config", "show-cli", "quit", "help", "show-runs"} <= ids
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))


def test_every_binding_has_an_id_and_a_description() -> None:
    from zotui.screens import dashboard, dialogs, export, fetch, help, runs, setup

    classes = [
        ZoApp,
        setup.SetupScreen,
        dashboard.DashboardScreen,
        runs.RunsScreen,
        runs.ReplayScreen,
        export.ExportScreen,
        fetch.FetchScreen,
        help.HelpScreen,
        dialogs.QuitScreen,
        dialogs.PathScreen,
        dialogs.TextScreen,
    ]
    for cls in classes:
        for b in cls.BINDINGS:
            assert b.id and b.description and b.tooltip, (cls.__name__, b)


async def test_cli_command_and_toml_round_trip(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await type_into(pilot, app, "optimizer.lr", "3e-5", "tab-optimizer")
        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, TextScreen))
        text = app.screen.text  # type: ignore[attr-defined]
        assert text.startswith("zoengine train ") and "--set optimizer.lr=3e-05" in text
        assert "optimizer.q=" not in text and "optimizer.noise=" not in text  # defaults go without saying
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        path = tmp_path / "saved.toml"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, PathScreen))
        app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: path.exists())
        assert "lr = 3e-05" in path.read_text()
        await type_into(pilot, app, "optimizer.lr", "1e-3", "tab-optimizer")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, PathScreen))
        app.screen.query_one(Input).value = str(path)
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: isinstance(app.screen, SetupScreen) and field(app, "optimizer.lr").value == "3e-05"
        )


async def test_start_goes_through_the_fetch_screen_when_assets_are_missing(
    make_demo_app, tmp_path, monkeypatch
) -> None:
    import sys
    import types

    from zotui import catalog
    from zotui.screens.fetch import FetchScreen

    fetched: list[str] = []
    fake = types.ModuleType("zoengine.assets")

    def fetch(name: str, progress=None) -> Path:  # noqa: ANN001
        for i in range(5):
            progress("downloading", i / 4)
        progress("converting", None)
        fetched.append(name)
        return tmp_path

    fake.fetch = fetch  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "zoengine.assets", fake)
    monkeypatch.setattr(
        catalog, "missing_assets", lambda cfg: [n for n in ("smollm2-135m-instruct",) if n not in fetched]
    )
    app = make_demo_app(demo_config(tmp_path))
    app.check_assets = True
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert fetched == ["smollm2-135m-instruct"]
        assert any(isinstance(s, FetchScreen) for s in app.screen_stack) is False


async def test_theme_toggles_between_dark_and_light(make_demo_app) -> None:
    app = make_demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"


async def test_a_keymap_file_rebinds_an_action_id(make_demo_app, tmp_path: Path, monkeypatch) -> None:
    keymap = tmp_path / "keymap.toml"
    keymap.write_text('[keys]\nstart-run = "f9"\n')
    monkeypatch.setenv("ZOTUI_KEYMAP", str(keymap))
    app = make_demo_app(demo_config(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.runner.active)


async def test_open_run_argument_replays_a_run_directory(make_demo_app, tmp_path: Path) -> None:
    from zotui.__main__ import make_app
    from zotui.backend import engine_backend

    train(demo_config(tmp_path, steps=40))
    app = make_app(open_run=tmp_path / "run", backend=engine_backend(), check_assets=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen) and bool(app.screen.states))
        state = app.screen.states[0]
        assert state.status == "finished" and state.step == 40 and state.dev_points()


def test_main_rejects_a_missing_config_with_one_line(tmp_path: Path, capsys) -> None:
    from zotui.__main__ import main

    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.strip() == f"zotui: --config: file not found: {tmp_path / 'nope.toml'}"


async def test_a_failing_engine_is_reported_and_the_app_stays_usable(make_demo_app, tmp_path: Path) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100), fail_at=5)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.status == "failed")
        assert "scripted failure at step 5" in app.runner.state.status_message
        assert ("error", "RuntimeError: scripted failure at step 5") in list(app.runner.state.logs)
        await pilot.press("escape")  # back to setup; a new run may start
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        assert not app.runner.active
