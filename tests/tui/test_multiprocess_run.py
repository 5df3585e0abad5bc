"""A multi-process run (``run.nproc`` > 1) started from the app: ``zoengine train --nproc N`` in a
subprocess, followed through the run directory rank 0 writes; pause and "evaluate now" are a notice."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from pathlib import Path

from textual.widgets import Input, TabbedContent

from zoengine.config import RunConfig
from zoengine.events import Event, StatusChanged, StepLogged
from zotui.__main__ import make_app
from zotui.backend import SubprocessRun, engine_backend
from zotui.screens.dashboard import DashboardScreen
from zotui.screens.setup import SetupScreen, cli_command
from zotui.widgets.config_form import FormField, field_id

from .conftest import demo_config, wait_for


def two_process_config(model_dir: Path, data: Path, run_dir: Path) -> RunConfig:
    cfg = RunConfig()
    for key, value in {
        "model.name": str(model_dir),
        "model.device": "cpu",
        "task.name": "file",
        "task.path": str(data),
        "task.n_train": "16",
        "task.n_dev": "8",
        "task.n_test": "8",
        "adapter.method": "lora",
        "optimizer.name": "mezo_sgd",
        "optimizer.lr": "1e-3",
        "run.steps": "3",
        "run.batch_size": "4",
        "run.eval_every": "3",
        "run.output_dir": str(run_dir),
        "run.nproc": "2",
    }.items():
        cfg.set(key, value)
    return cfg.validate()


def test_backend_starts_a_two_process_run_and_follows_its_run_directory(
    tiny_llama_dir: Path, sentiment_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    from zoengine.checkpoint import has_resume_point
    from zoengine.engine import read_state

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("ZO_DIST_TIMEOUT", "60")
    run_dir = tmp_path / "run"
    handle = engine_backend().new_run(two_process_config(tiny_llama_dir, sentiment_csv, run_dir))
    assert isinstance(handle, SubprocessRun) and handle.run_dir == run_dir
    handle.start()
    assert handle.join(timeout=240), "the subprocess run did not end"
    seen: list[Event] = []
    while True:
        try:
            seen.append(handle.events.get_nowait())
        except queue.Empty:
            break
    statuses = [e.status for e in seen if isinstance(e, StatusChanged)]
    assert handle.status == "finished", (statuses, [e for e in seen if not isinstance(e, StepLogged)][-5:])
    assert [e.step for e in seen if isinstance(e, StepLogged)] == [1, 2, 3]
    assert statuses[-1] == "finished" and "running" in statuses
    state = read_state(run_dir)  # rank 0 wrote the run directory, complete
    assert state["status"] == "finished" and state["step"] == 3
    assert has_resume_point(run_dir)
    assert handle.export("native", tmp_path / "exported")  # from the run directory
    assert not handle.is_alive


def test_a_launch_error_is_a_failed_status_with_its_one_line(tmp_path: Path) -> None:
    cfg = RunConfig()
    cfg.set("model.name", str(tmp_path / "no-such-model"))
    cfg.set("run.output_dir", str(tmp_path / "run"))
    cfg.set("run.nproc", "2")
    handle = SubprocessRun(cfg)
    handle.start()
    assert handle.join(timeout=120)
    assert handle.status == "failed"
    last = None
    while not handle.events.empty():
        last = handle.events.get_nowait()
    assert isinstance(last, StatusChanged) and last.message.startswith("model.name:"), last


class ScriptedSubprocessRun(SubprocessRun):
    """A ``SubprocessRun`` whose process is scripted: running until stopped (the app's controls
    are the real handle's)."""

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self._ended = threading.Event()

    def start(self) -> None:
        self._set_status("running")

    def stop(self, save: bool = True) -> None:
        self._set_status("stopped")
        self._ended.set()

    def join(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)


async def test_run_tab_has_nproc_and_pause_on_a_multi_process_run_is_a_notice(tmp_path: Path) -> None:
    backend = dataclasses.replace(engine_backend(), new_run=ScriptedSubprocessRun, prepare=lambda: None)
    app = make_app(demo_config(tmp_path, steps=50), backend=backend, check_assets=False)
    async with app.run_test(size=(100, 32), notifications=True) as pilot:
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        setup.query_one("#setup-tabs", TabbedContent).active = "tab-run"
        await pilot.pause()
        nproc = setup.query_one(f"#{field_id('run.nproc')}", FormField)
        assert nproc.value == "1"
        inp = setup.query_one(f"#{field_id('run.nproc')}-input", Input)
        inp.focus()
        inp.value = ""
        await pilot.press("0")
        await wait_for(pilot, lambda: nproc.error.startswith("run.nproc") or "must be" in nproc.error)
        inp.value = ""
        await pilot.press("2")
        await wait_for(pilot, lambda: nproc.error == "")
        cfg, errors = setup.build_config()
        assert not errors and cfg.run.nproc == 2
        assert cli_command(cfg, RunConfig(), None).endswith("--nproc 2")
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        runner = app.runner
        assert runner is not None and isinstance(runner.run, ScriptedSubprocessRun)
        await wait_for(pilot, lambda: runner.active and runner.state.status == "running")
        for key in ("p", "e"):
            await pilot.press(key)
            await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any(
            m == "pause is not available for a multi-process run (stop and resume instead)" for m in messages
        ), messages
        assert any(m.startswith("evaluate now is not available for a multi-process run") for m in messages)
        assert isinstance(app.screen, DashboardScreen) and runner.active  # still running, nothing crashed
        await pilot.press("s")
        await wait_for(pilot, lambda: not runner.active)
        assert runner.state.status == "stopped"
        started = time.monotonic()
        assert app.shutdown_engine(timeout=10) and time.monotonic() - started < 10


def test_stop_sends_sigint_and_the_ranks_stop_and_save(
    tiny_llama_dir: Path, sentiment_csv: Path, tmp_path: Path, monkeypatch
) -> None:
    from zoengine.checkpoint import has_resume_point
    from zoengine.engine import read_state

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = two_process_config(tiny_llama_dir, sentiment_csv, tmp_path / "run")
    cfg.set("run.steps", "100000")
    cfg.set("run.eval_every", "100000")
    handle = SubprocessRun(cfg)
    handle.start()
    deadline = time.monotonic() + 120
    seen: list[Event] = []
    while not any(isinstance(e, StepLogged) for e in seen) and time.monotonic() < deadline:
        try:
            seen.append(handle.events.get(timeout=0.5))
        except queue.Empty:
            pass
    assert any(isinstance(e, StepLogged) for e in seen), seen[-5:]
    handle.stop(save=True)
    assert handle.join(timeout=120), "the ranks did not stop"
    assert handle.status == "stopped"
    state = read_state(handle.run_dir)
    assert state["status"] == "stopped" and state["step"] >= 1 and has_resume_point(handle.run_dir)
