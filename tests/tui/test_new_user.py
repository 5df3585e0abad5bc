"""Issue 14, the app as a new user meets it: forms that follow the user, honest status and time."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static, TabbedContent

from zoengine.config import RunConfig
from zoengine.events import EvalDone, Event, RunInfo, StatusChanged, StepLogged
from zoengine.telemetry import TORCH_WHAT, Reading, gpu_line
from zotui import catalog
from zotui.app import ZoApp
from zotui.screens.dashboard import DashboardScreen, progress_text
from zotui.screens.setup import SetupScreen
from zotui.state import RunState, remaining_passes
from zotui.widgets.config_form import FormField, field_id

from .conftest import demo_config, exported_steps, fixed_readings, saved_step, train, wait_for


def field(app: ZoApp, key: str) -> FormField:
    return app.screen.query_one(f"#{field_id(key)}", FormField)


async def pick(pilot, app: ZoApp, key: str, value: str, tab: str) -> None:
    """Choose ``value`` in the picker of ``key`` as a user does (the change is the user's)."""
    app.screen.query_one("#setup-tabs", TabbedContent).active = tab
    await pilot.pause()
    app.screen.query_one(f"#{field_id(key)}-input", Select).value = value
    await pilot.pause()
    await pilot.pause()


async def type_into(pilot, app: ZoApp, key: str, text: str, tab: str) -> None:
    app.screen.query_one("#setup-tabs", TabbedContent).active = tab
    await pilot.pause()
    inp = app.screen.query_one(f"#{field_id(key)}-input", Input)
    inp.focus()
    inp.value = ""
    await pilot.press(*text)
    await pilot.pause()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """A trainable count that depends on the adapter's rank, and a preview showing n_train; each
    call is recorded (no model, no data: the point is when they recompute)."""
    calls: list[object] = []

    def count(cfg):
        calls.append(("count", cfg.adapter.method, cfg.adapter.options.get("r")))
        return (1000 * int(cfg.adapter.options.get("r", 1)), 1_000_000)

    def preview(cfg):
        calls.append(("task", cfg.task.n_train))
        return f"splits: train {cfg.task.n_train or 'default'}"

    monkeypatch.setattr(catalog, "trainable_count", count)
    monkeypatch.setattr(catalog, "task_preview", preview)
    monkeypatch.setattr(catalog, "cached_tune", lambda cfg: None)
    monkeypatch.setattr(catalog, "is_fetched", lambda name: None)
    return calls


def subset_config(tmp_path: Path):
    return demo_config(tmp_path, adapter__method="subset", adapter__targets="model.norm")


async def test_switching_adapter_resets_method_fields_and_targets(make_demo_app, tmp_path, counted) -> None:
    app = make_demo_app(subset_config(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        assert isinstance(app.screen, SetupScreen)
        assert field(app, "adapter.targets").value == "model.norm"
        await pick(pilot, app, "adapter.method", "tt", "tab-adapter")
        # subset's parameter names do not follow into tt: its per-architecture default instead
        assert field(app, "adapter.targets").value == ""
        assert field(app, "adapter.r").value == "5"  # tt's own default rank
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        cfg = screen.validate_form()
        assert cfg is not None and cfg.adapter.method == "tt" and cfg.adapter.targets is None
        # a rank the user typed is kept for the next method with that key
        await type_into(pilot, app, "adapter.r", "16", "tab-adapter")
        await pick(pilot, app, "adapter.method", "sora", "tab-adapter")
        assert field(app, "adapter.r").value == "16"
        assert field(app, "adapter.dense-fraction").value == "0.3"  # sora's default
        # back to subset: the targets typed for subset come back
        await pick(pilot, app, "adapter.method", "subset", "tab-adapter")
        assert field(app, "adapter.targets").value == "model.norm"
        assert screen.validate_form() is not None


async def test_trainable_count_and_task_preview_follow_every_edit(
    make_demo_app, tmp_path, counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zotui.widgets import previews

    # a quiet time no key gap of a loaded CI machine reaches (0.4 s was: "1" got counted once)
    monkeypatch.setattr(previews, "PREVIEW_DELAY", 1.5)
    app = make_demo_app(demo_config(tmp_path, adapter__method="lora"))
    async with app.run_test(size=(120, 40)) as pilot:
        count = app.screen.query_one("#trainable-count", Static)
        preview = app.screen.query_one("#task-preview", Static)
        await wait_for(pilot, lambda: "8,000" in str(count.render()))
        for r in ("4", "16"):
            await type_into(pilot, app, "adapter.r", r, "tab-adapter")
            await wait_for(pilot, lambda r=r: f"{int(r) * 1000:,} of" in str(count.render()))
        # debounced: typing "16" (two keys) computed once for "16", not for "1" as well
        assert ("count", "lora", 1) not in counted
        await type_into(pilot, app, "task.n_train", "300", "tab-task")
        await wait_for(pilot, lambda: "train 300" in str(preview.render()))
        # a field that does not parse: the count says which one instead of a stale number
        await type_into(pilot, app, "adapter.r", "x", "tab-adapter")
        await wait_for(pilot, lambda: "fix adapter.r first" in str(count.render()))


async def test_integers_with_leading_zeros_are_accepted(make_demo_app, tmp_path, counted) -> None:
    app = make_demo_app(demo_config(tmp_path, adapter__method="lora"))
    async with app.run_test(size=(120, 40)) as pilot:
        await type_into(pilot, app, "adapter.r", "05", "tab-adapter")
        await type_into(pilot, app, "run.steps", "0200", "tab-run")
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        cfg = screen.validate_form()
        assert cfg is not None, screen.errors
        assert cfg.adapter.options["r"] == 5 and cfg.run.steps == 200


def test_adazeta_formula_names_the_epoch() -> None:
    spec = catalog.optimizer_specs()["adazeta"]
    alpha = next(o for o in spec.options if o.key == "alpha")
    assert "⌊α·k^β⌋" in alpha.help and "epoch k" in alpha.help
    assert "⌊α·k^β⌋" in spec.description and "e^β" not in spec.description


async def test_split_sizes_left_empty_follow_the_engine_default_and_show_in_the_preview(
    make_demo_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One default for app and CLI: empty sizes are the engine's (60/20/20 of a 539-row file)."""
    from zoengine.tasks import load_task

    data = tmp_path / "small.csv"
    data.write_text("text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(539)), encoding="utf-8")
    monkeypatch.setattr(catalog, "trainable_count", lambda cfg: None)
    monkeypatch.setattr(catalog, "cached_tune", lambda cfg: None)
    monkeypatch.setattr(catalog, "is_fetched", lambda name: None)
    cfg = RunConfig()  # the sizes of a fresh config (the demo's data set has its own)
    for key, value in {
        "task.name": "file",
        "task.path": str(data),
        "task.label_words": "bad, good",
        "task.text_columns": "text",
    }.items():
        cfg.set(key, value)
    assert cfg.task.n_train is None and cfg.task.n_dev is None and cfg.task.n_test is None
    sizes = load_task(cfg.task).split_sizes()
    assert sum(sizes.values()) == 539 and sizes["train"] > sizes["dev"] > 0
    app = make_demo_app(cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        preview = app.screen.query_one("#task-preview", Static)
        expected = f"train {sizes['train']} (default, sized from the data)"
        await wait_for(pilot, lambda: expected in str(preview.render()))
        await type_into(pilot, app, "task.n_test", "50", "tab-task")
        await wait_for(pilot, lambda: "test 50" in str(preview.render()))
        assert "test 50 (" not in str(preview.render())  # given in the form: no "default" mark
        assert field(app, "task.n_train").value == ""  # no size of the app's own


# --- honest status: evaluation progress, speed and ETA from the steps themselves -------------------


def _info(total: int, schedule: list[list[int]] | None = None) -> RunInfo:
    details = {"forward_schedule": schedule} if schedule is not None else {}
    return RunInfo(
        model="m",
        total_params=10,
        trainable_params=2,
        n_train=8,
        n_dev=4,
        n_test=4,
        total_steps=total,
        details=details,
    )


def _step(step: int, seconds: float, queries: int, passes_so_far: int, t: float) -> StepLogged:
    return StepLogged(
        step=step,
        loss=0.5,
        lr=1e-3,
        projected_grads=[0.1] * queries,
        queries=queries,
        forward_passes=passes_so_far,
        tokens=0,
        seconds=seconds,
        time=t,
    )


def test_eta_uses_the_forward_passes_still_to_do_and_ignores_pauses_and_evaluations() -> None:
    # 10 steps of 1 forward pair (2 passes) at 0.5 s, an hour-long pause and an evaluation between
    # them; the schedule says the last 10 of 30 steps take Q = 3 (6 passes)
    events: list[Event] = [_info(30, [[1, 2], [21, 6]]), StatusChanged(status="running")]
    for i in range(1, 11):
        t = i * 0.5 + (3600.0 if i > 5 else 0.0)
        events.append(_step(i, 0.5, 1, 2 * i, t))
    events.insert(8, EvalDone(step=5, split="dev", loss=0.4, accuracy=0.7, examples=4))
    state = RunState.from_events(events)
    assert state.seconds_per_step() == pytest.approx(0.5)  # not (an hour + the evaluation) / 10
    assert state.forward_passes_left() == 10 * 2 + 10 * 6
    assert state.eta_seconds() == pytest.approx(80 * 0.25)  # 0.25 s per forward pass
    assert remaining_passes([[1, 2], [21, 6]], 25, 30) == 5 * 6
    text = progress_text(state, active=True)
    assert "0.50 s/step" in text and "ETA 0:20" in text


def test_adazeta_forward_schedule_is_known_before_the_run() -> None:
    import torch

    from zoengine.engine import forward_schedule
    from zoengine.optim.schedules import adazeta_query_count
    from zoengine.optim.zo_sgd import AdaZeta

    opt = AdaZeta([torch.nn.Parameter(torch.zeros(3))], steps_per_epoch=10, total_steps=200, q_max=15)
    schedule = forward_schedule(opt, 200)
    expected = [2 * adazeta_query_count(t - 1, 10, opt.alpha, opt.beta, 15) for t in range(1, 201)]
    assert remaining_passes(schedule, 0, 200) == sum(expected)
    assert remaining_passes(schedule, 150, 200) == sum(expected[150:])
    assert len(schedule) > 1 and schedule[0] == [1, 2]  # Q grows with the epoch


async def test_dashboard_shows_the_evaluation_phase_with_its_own_bar(make_demo_app, tmp_path) -> None:
    cfg = demo_config(tmp_path, steps=100_000)
    cfg.run.eval_every = 5
    cfg.run.eval_batch_size = 4  # 4 batches of dev, each one's progress event held for 1.2 s
    app = make_demo_app(cfg, eval_delay=1.2)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        runner = app.runner
        assert runner is not None
        await wait_for(
            pilot, lambda: runner.state.evaluating is not None and runner.state.evaluating.done >= 1
        )
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen.refresh_view(force=True)
        await pilot.pause()
        title = screen.query_one("#run-title").text  # type: ignore[attr-defined]
        text = screen.query_one("#progress-text").text  # type: ignore[attr-defined]
        assert "evaluating dev:" in title and "batches" in title and "training" not in title
        assert "evaluating dev: batch" in text and "steps/s" not in text
        assert screen.query_one("#eval-progress").display and not screen.query_one("#progress").display
        runner.request_stop(save=False)
        await wait_for(pilot, lambda: not runner.active)


async def test_evaluate_now_while_paused_runs_at_once(make_demo_app, tmp_path) -> None:
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        runner = app.runner
        assert runner is not None
        await wait_for(pilot, lambda: runner.state.step >= 3)
        await pilot.press("p")
        await wait_for(pilot, lambda: runner.state.status == "paused")
        paused_at, evals = runner.state.step, len(runner.state.evals)
        await pilot.press("e")
        await wait_for(pilot, lambda: len(runner.state.evals) > evals, timeout=5)
        assert runner.state.status == "paused" and runner.state.step == paused_at
        assert runner.state.evals[-1].step == paused_at
        runner.request_stop(save=False)
        await wait_for(pilot, lambda: not runner.active)


async def test_memory_panel_says_when_there_is_no_gpu(make_demo_app, tmp_path, fixed_catalog) -> None:
    from zotui.widgets.memory import MemoryPanel

    assert gpu_line(fixed_readings(), None) == "GPU: none (CPU run)"
    cuda = [Reading("torch peak allocated", 2**30, None, TORCH_WHAT), *fixed_readings()]
    assert gpu_line(cuda, 37) == "GPU: utilisation 37% (NVML)"
    app = make_demo_app(demo_config(tmp_path, steps=100_000))
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        panel = app.screen.query_one(MemoryPanel)
        await wait_for(pilot, lambda: "GPU: none (CPU run)" in str(panel.render()))
        assert app.runner is not None
        app.runner.request_stop(save=False)
        await wait_for(pilot, lambda: not app.runner.active)  # type: ignore[union-attr]


# --- the engine: evaluation progress, evaluate while paused, checkpoints by time ------------------


def _engine_config(tiny_llama_dir: Path, tiny_csv: Path, run_dir: Path, steps: int, **values: str):
    from .test_real_engine import tiny_config

    cfg = tiny_config(tiny_llama_dir, tiny_csv, run_dir, steps)
    for key, value in values.items():
        cfg.set(key.replace("__", "."), value)
    return cfg.validate()


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    rows = (
        ["text,label"]
        + [f"good film {i},positive" for i in range(16)]
        + [f"bad film {i},negative" for i in range(16)]
    )
    path.write_text("\n".join(rows) + "\n")
    return path


def test_engine_reports_evaluation_progress_live_and_in_the_log(
    tiny_llama_dir, tiny_data, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoengine import engine, run_eval
    from zoengine.events import EvalProgress, event_from_record
    from zoengine.io import read_jsonl

    monkeypatch.setattr(run_eval, "EVAL_PROGRESS_SECONDS", 0.0)  # every batch, to see them all
    cfg = _engine_config(
        tiny_llama_dir, tiny_data, tmp_path / "run", 2, run__eval_batch_size="2", run__eval_every="0"
    )
    run = engine.Run(cfg)
    live: list[Event] = []
    run.subscribe(live.append)
    run.run()
    assert run.status == "finished", run.error
    progress = [e for e in live if isinstance(e, EvalProgress)]
    dev = [(e.done, e.total) for e in progress if e.split == "dev" and e.step == 0]
    assert dev == [(0, 4), (1, 4), (2, 4), (3, 4)]  # 8 dev examples in batches of 2; EvalDone ends it
    assert any(e.split == "test" for e in progress)
    replayed = [event_from_record(r) for r in read_jsonl(run.run_dir / "metrics.jsonl")]
    assert [e for e in replayed if isinstance(e, EvalProgress)] == progress  # one stream, live = replay
    info = next(e for e in live if isinstance(e, RunInfo))
    assert info.details["forward_schedule"] == [[1, 2]]  # MeZO: one query, two forward passes


def test_engine_evaluates_at_once_while_paused(tiny_llama_dir, tiny_data, tmp_path) -> None:
    import threading

    from zoengine.engine import Run

    cfg = _engine_config(
        tiny_llama_dir, tiny_data, tmp_path / "run", 1000, run__eval_every="0", run__checkpoint_every="0"
    )
    run = Run(cfg)
    events: list[Event] = []
    stepped = threading.Event()
    evaluated = threading.Event()

    def seen(e: Event) -> None:
        events.append(e)
        if isinstance(e, StepLogged) and e.step >= 2:
            stepped.set()
        if isinstance(e, EvalDone) and e.step > 0:
            evaluated.set()

    run.subscribe(seen)
    run.start()
    assert stepped.wait(60)
    run.pause()
    for _ in range(200):
        if run.status == "paused":
            break
        threading.Event().wait(0.05)
    paused_at = run.step
    run.request_eval()
    assert evaluated.wait(30), "evaluate now waited for resume"
    assert run.status == "paused" and run.step == paused_at
    run.stop(save=False)
    assert run.join(60)


def test_engine_checkpoints_by_time(
    tiny_llama_dir, tiny_data, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoengine.config import RunConfig
    from zoengine.engine import Run
    from zoengine.errors import ConfigError
    from zoengine.events import CheckpointSaved

    assert RunConfig().run.checkpoint_minutes == 5.0
    bad = RunConfig()
    bad.run.checkpoint_minutes = -1
    with pytest.raises(ConfigError) as exc:
        bad.validate()
    assert exc.value.field == "run.checkpoint_minutes"
    cfg = _engine_config(
        tiny_llama_dir,
        tiny_data,
        tmp_path / "run",
        4,
        run__eval_every="0",
        run__checkpoint_every="0",
        run__checkpoint_minutes="0.000001",
    )
    run = Run(cfg)
    saved: list[int] = []
    run.subscribe(lambda e: saved.append(e.step) if isinstance(e, CheckpointSaved) and not e.best else None)
    run.run()
    assert run.status == "finished", run.error
    assert saved[:4] == [1, 2, 3, 4]  # every step: more than 0.06 ms passed since the last one


def test_cli_eval_prints_a_progress_bar_on_stderr(tiny_llama_dir, tiny_data, tmp_path, capsys) -> None:
    from zoengine.cli import main

    cfg = _engine_config(tiny_llama_dir, tiny_data, tmp_path / "run", 2, run__eval_batch_size="2")
    cfg_path = tmp_path / "cfg.toml"
    cfg.save(cfg_path)
    assert main(["eval", "--config", str(cfg_path), "--split", "dev"]) == 0
    captured = capsys.readouterr()
    assert "dev: loss" in captured.out
    assert "evaluating dev" in captured.err and "4/4" in captured.err


# --- compare with numbers, methods with their costs, where the keymap lives ----------------------


async def test_runs_comparison_has_a_table_of_numbers_and_lines(make_demo_app, tmp_path: Path) -> None:
    from textual.widgets import DataTable

    from zotui.screens.runs import COMPARE_COLUMNS, ReplayScreen, RunsScreen
    from zotui.widgets.plots import SeriesPlot

    for name in ("a", "b"):
        train(demo_config(tmp_path, steps=40, run_name=name))
    app = make_demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.rows) >= 2)
        runs = app.screen
        assert isinstance(runs, RunsScreen)
        table = runs.query_one(DataTable)
        table.focus()
        for name in ("a", "b"):
            table.move_cursor(row=[r.path for r in runs.rows].index(tmp_path / name))
            await pilot.press("space")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen) and len(app.screen.states) == 2)
        await pilot.pause()
        compare = app.screen.query_one("#compare-table", DataTable)
        assert compare.row_count == 2 and len(compare.columns) == len(COMPARE_COLUMNS)
        row = dict(zip(COMPARE_COLUMNS, compare.get_row_at(0), strict=True))
        assert row["steps"] == "40/40" and row["forward passes"] != "--" and row["test"] != "--"
        assert row["method"] == "mezo_sgd+full"
        acc = app.screen.query_one("#compare-acc", SeriesPlot)
        assert all(p.joined for p in acc.figure.points)  # a line per run, not only dots
        await pilot.press("w")  # the table as CSV and Markdown
        saved = sorted((tmp_path / "comparisons").glob("*"))
        assert [p.suffix for p in saved] == [".csv", ".md"]
        assert saved[0].read_text().splitlines()[0] == ",".join(COMPARE_COLUMNS)
        assert saved[1].read_text().count("\n") == 4  # header, rule, two runs


def test_methods_lists_memory_per_trainable_parameter_and_queries_per_step(capsys) -> None:
    from zoengine.cli import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = lines.index(next(line for line in lines if line.strip().startswith("zo_adam ")))
    assert "memory: +8 B/param" in lines[at + 1] and "queries per step: q (default 1)" in lines[at + 2]
    assert "memory: +0 B/param" in out and "up to q_max (default 15); known in advance" in out


async def test_help_says_where_the_keymap_file_lives(make_demo_app, monkeypatch, tmp_path) -> None:
    from zotui.screens.help import HelpScreen

    keymap = tmp_path / "keys.toml"
    monkeypatch.setenv("ZOTUI_KEYMAP", str(keymap))
    app = make_demo_app(demo_config(tmp_path))
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        footer = str(app.screen.query_one("#help-footer", Static).render())
        assert str(keymap) in footer and "[keys]" in footer and 'start-run = "f9"' in footer
        assert "Keymap file:" in footer


async def test_export_offers_best_or_last_with_their_step_and_dev_score(
    make_demo_app, tmp_path: Path
) -> None:
    from textual.widgets import RadioSet

    from zotui.screens.export import ExportScreen

    cfg = demo_config(tmp_path, steps=60)
    app = make_demo_app(cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.status == "finished")
        state = app.runner.state  # type: ignore[union-attr]
        assert state.best_checkpoint is not None and state.last_checkpoint == 60
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        screen = app.screen
        assert isinstance(screen, ExportScreen)
        await pilot.pause()
        info = str(screen.query_one("#export-ckpt-info", Static).render())
        best_acc = state.dev_accuracy_at(state.best_checkpoint)
        assert f"best: step {state.best_checkpoint}, dev accuracy {best_acc:.3f}" in info
        assert "last: step 60" in info
        screen.query_one("#ckpt-last").value = True  # type: ignore[attr-defined]
        await pilot.pause()
        assert screen.checkpoint == "last" and screen.fmt == "native"
        assert screen.query_one("#export-format", RadioSet).pressed_button is not None
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: screen.written is not None)
        assert screen.written
        assert exported_steps(screen.written, tmp_path / "run") == {60}  # the last one's weights


# --- resume keeps its history; a run another process writes is followed live ----------------------


def _stopped_demo_run(tmp_path: Path, steps: int = 100, stop_at: int = 25) -> Path:
    """A demo run stopped (with a checkpoint) after at least ``stop_at`` of ``steps`` steps."""
    cfg = demo_config(tmp_path, steps=steps, run_name="resumed")
    cfg.run.checkpoint_every = 10
    return train(cfg, stop_at=stop_at).run_dir  # type: ignore[no-any-return]


async def test_resume_keeps_the_header_step_count_and_the_curve_before_the_resume_point(
    make_demo_app, tmp_path: Path
) -> None:
    from zotui.screens.runs import RunsScreen

    run_dir = _stopped_demo_run(tmp_path)
    stopped_at = saved_step(run_dir)
    app = make_demo_app(step_delay=0.5)  # slow: the first new step comes long after the check
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.rows) == 1)
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        runner = app.runner
        assert runner is not None
        await wait_for(pilot, lambda: runner.state.step >= stopped_at)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen.refresh_view(force=True)
        await pilot.pause()
        title = screen.query_one("#run-title").text  # type: ignore[attr-defined]
        cfg = runner.config
        assert cfg is not None
        for part in (cfg.model.name, cfg.task.name, cfg.adapter.method, cfg.optimizer.name):
            assert part in title
        text = screen.query_one("#progress-text").text  # type: ignore[attr-defined]
        shown, _, total = text.partition("/")
        # the step the header shows: the run's, read after the refresh (a step may land in between)
        assert stopped_at <= int(shown) <= runner.state.step and total.startswith("100"), text
        xs, _, _ = runner.state.loss.view(80)
        assert xs[0] == 1.0  # the curve starts at the first step, not at the resume point
        from zotui.screens.dashboard import RunView

        assert screen.query_one(RunView).state is runner.state
        runner.request_stop(save=False)
        await wait_for(pilot, lambda: not runner.active)


async def test_a_run_another_process_writes_is_followed_live(make_demo_app, tmp_path, monkeypatch) -> None:
    from zoengine.engine import Run
    from zotui.screens import runs as runs_screen

    monkeypatch.setattr(runs_screen, "TAIL_SECONDS", 0.2)
    writer = Run(demo_config(tmp_path, steps=100_000, run_name="cli"))
    writer.start()  # holds the run directory's lock, as a CLI `zoengine train` does
    try:
        await _follow(make_demo_app, writer)
    finally:
        writer.stop(save=False)
        writer.join(10)


async def _follow(make_demo_app, writer) -> None:
    from zotui.screens.runs import ReplayScreen, RunsScreen

    app = make_demo_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: writer.step >= 3)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.rows) == 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen) and app.screen.tailing)
        screen = app.screen
        assert isinstance(screen, ReplayScreen)
        assert "live" in str(screen.query_one("#replay-title", Static).render())
        first = screen.states[0].step
        await wait_for(pilot, lambda: screen.states[0].step > first + 5)  # it moves on, not frozen
        writer.stop(save=True)
        assert writer.join(10)
        await wait_for(pilot, lambda: not screen.tailing)
        assert screen.states[0].status == "stopped" and screen.states[0].step == writer.step
        title = str(screen.query_one("#replay-title", Static).render())
        assert "live" not in title and "ended" in title


# --- small but seen: focus, choices without colour alone, labels that fit, axes -------------------


def screen_lines(app: ZoApp) -> list[str]:
    """The screen as text rows (from the SVG screenshot: what the user sees)."""
    import html
    import re

    rows: dict[float, list[tuple[float, str]]] = {}
    pattern = r'<text[^>]*x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>'
    for m in re.finditer(pattern, app.export_screenshot()):
        text = html.unescape(re.sub("<[^>]+>", "", m[3])).replace("\xa0", " ")
        rows.setdefault(float(m[2]), []).append((float(m[1]), text))
    return ["".join(t for _, t in sorted(row)) for _, row in sorted(rows.items())]


async def test_labels_fit_at_100x30_and_the_axes_are_steps_and_fractions(
    make_demo_app, tmp_path, fixed_catalog, short_model_name
) -> None:
    from zotui.widgets.plots import SeriesPlot

    cfg = demo_config(tmp_path, steps=300, adapter__method="sora", model__name=short_model_name)
    app = make_demo_app(cfg)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.status == "finished")
        await pilot.pause(0.6)
        app.clear_notifications()
        app.screen.query_one("#plot-tabs", TabbedContent).active = "tab-sora"
        await pilot.pause(0.3)
        lines = screen_lines(app)
        text = "\n".join(lines)
        assert "…" not in text  # nothing cut off: header, counters, memory
        assert "loss (ema)" in text and "resident memory, this process" in text
        # the whole header: adapter · optimizer · model · task
        assert f"sora · mezo_sgd · {short_model_name} · file" in lines[0]
        plot = app.screen.query_one("#plot-sora", SeriesPlot)
        assert plot.figure.ylim == (0.0, 1.0)
        axis = next(i for i, line in enumerate(lines) if "└" in line and "┬" in line)
        ticks = lines[axis + 1].split("│")[0].replace("100", " 100 ").replace("200", " 200 ").split()
        assert ticks == ["100", "200", "300"]  # whole steps, not 75.8
        assert "1.00┤" in text and "0.00┤" in text  # sparsity: 0..1, not -1..1


async def test_focused_dropdown_and_chosen_export_format_show_without_colour(
    make_demo_app, tmp_path, fixed_catalog
) -> None:
    from textual.widgets import RadioButton
    from textual.widgets._select import SelectCurrent

    from zotui.screens.export import ExportScreen

    app = make_demo_app(demo_config(tmp_path, steps=20))
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.query_one("#setup-tabs", TabbedContent).active = "tab-model"
        await pilot.pause()
        select = app.screen.query(Select).first()
        current = select.query_one(SelectCurrent)
        app.set_focus(None)
        await pilot.pause()
        blurred_bg, blurred_bold = current.styles.background, current.styles.text_style.bold
        select.focus()
        await pilot.pause()
        assert current.styles.text_style.bold and not blurred_bold
        assert current.styles.background != blurred_bg
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.status == "finished")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        await pilot.pause()
        chosen = app.screen.query_one("#fmt-native", RadioButton)
        other = app.screen.query_one("#fmt-merged", RadioButton)
        style, plain = chosen.get_visual_style("toggle--label"), other.get_visual_style("toggle--label")
        assert style.bold and style.underline and not plain.underline


async def test_export_offers_a_step_the_run_keeps(make_demo_app, tmp_path: Path) -> None:
    from textual.widgets import Input

    from zotui.screens.export import ExportScreen

    cfg = demo_config(tmp_path, steps=60)
    cfg.run.checkpoint_every = 20
    cfg.run.eval_every = 30  # the best is at 0, 30 or 60, never at 20
    app = make_demo_app(cfg)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.runner is not None and app.runner.state.status == "finished")
        state = app.runner.state  # type: ignore[union-attr]
        kept = state.kept_checkpoints()
        assert 40 in kept and 60 in kept and 20 not in kept  # best, last and the one before last
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen))
        screen = app.screen
        assert isinstance(screen, ExportScreen)
        await pilot.pause()
        step_input = screen.query_one("#export-step", Input)
        assert step_input.disabled
        screen.query_one("#ckpt-step").value = True  # type: ignore[attr-defined]
        await pilot.pause()
        assert not step_input.disabled and screen.checkpoint == str(kept[0])
        step_input.value = "20"  # not kept: refused with the steps it has
        await pilot.pause()
        await pilot.press("ctrl+e")
        await pilot.pause()
        result = str(screen.query_one("#export-result", Static).render())
        assert "no checkpoint at step 20" in result and "40" in result
        step_input.value = "40"
        await pilot.pause()
        info = str(screen.query_one("#export-ckpt-info", Static).render())
        assert "step 40" in info and "steps kept: " in info
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: screen.written is not None)
        assert exported_steps(screen.written, tmp_path / "run") == {40}
