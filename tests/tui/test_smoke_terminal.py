"""Smoke tests: the installed ``zotui`` in a real terminal (tmux), started, watched and quit.

tmux gives a real pseudo-terminal of a fixed size and a clean text capture of the screen, so the
test sees exactly what a user sees: the step counter advancing, the quit dialog, and a restored
terminal (the app's alternate screen gone) after a clean exit with status 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from zoengine.checkpoint import verify
from zoengine.config import RunConfig

from .conftest import exported_steps

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Tmux:
    """One detached tmux session running one command, 80x24 unless told."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path, size: tuple[int, int] = (80, 24)) -> None:
        self.name = f"zotui-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        wait = "sleep 1; " if size != (80, 24) else ""  # start once the window has its size (below)
        self._tmux(
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            str(size[0]),
            "-y",
            str(size[1]),
            "-c",
            str(cwd),
            f"{wait}env {exports} {command}",
        )
        self._tmux("set-option", "-t", self.name, "remain-on-exit", "on")
        if size != (80, 24):  # without a client, tmux keeps its default-size (80x24) otherwise
            self._tmux("set-option", "-t", self.name, "window-size", "manual")
            self._tmux("resize-window", "-t", self.name, "-x", str(size[0]), "-y", str(size[1]))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def dead_status(self) -> int | None:
        """Exit status once the command has ended (minus the signal number if it was killed)."""
        fmt = "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}"
        dead, status, signal = self._tmux("display-message", "-p", "-t", self.name, fmt).strip().split("|")
        if dead != "1":
            return None
        return int(status) if status else -int(signal or 0)

    def wait(self, condition: Callable[[str], object], timeout: float = 60.0) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition(self.screen())
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out; screen was:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def zotui_command() -> str:
    exe = shutil.which("zotui")
    return shlex.quote(exe) if exe else f"{shlex.quote(sys.executable)} -m zotui"


def step_of(screen: str) -> int | None:
    m = re.search(r"(\d+)/(\d+) · ", screen)
    return int(m.group(1)) if m else None


def drive(session: Tmux, run_dir: Path, start_timeout: float) -> None:
    """F5, watch the counter advance, quit mid-run via the dialog (stop and save)."""
    session.wait(lambda s: "Ready." in s, timeout=60)
    session.send("F5")
    first = session.wait(lambda s: (n := step_of(s)) is not None and n > 0 and n, timeout=start_timeout)
    session.wait(lambda s: (n := step_of(s)) is not None and n > int(first), timeout=start_timeout)  # type: ignore[call-overload]
    session.send("C-q")
    session.wait(lambda s: "A run is active" in s, timeout=20)
    session.send("s")
    session.wait(lambda s: session.dead_status() is not None, timeout=120)
    assert session.dead_status() == 0
    assert "Pause/Resume" not in session.screen()  # the alternate screen is gone: terminal restored


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ZOENGINE_CACHE of the ``--demo`` sessions: the demo model is built there once."""
    return tmp_path_factory.mktemp("demo-cache")


def demo_env(tmp_path: Path, demo_cache: Path) -> dict[str, str]:
    """A user's runs home (``home``, which a demo must leave alone) and TMPDIR, where ``--demo``
    makes its temporary runs home."""
    (tmp_path / "tmp").mkdir()
    env = {
        "ZOENGINE_RUNS": str(tmp_path / "home"),
        "ZOENGINE_CACHE": str(demo_cache),
        "TMPDIR": str(tmp_path / "tmp"),
        "TERM": "xterm-256color",
        "OMP_NUM_THREADS": "1",
    }
    if "PYTHONPATH" in os.environ:  # the code under test, whatever environment the tmux server has
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def demo_run_dir(tmp_path: Path) -> Path:
    """The one run the demo wrote, in its temporary runs home; the user's runs home holds nothing."""
    runs = [d for d in (tmp_path / "tmp").glob("zotui-demo-*/*") if d.is_dir()]
    assert len(runs) == 1, runs
    home = tmp_path / "home"
    assert not home.exists() or not any(home.iterdir()), list(home.iterdir())
    assert not (tmp_path / "run").exists()  # the config's run.output_dir is not the demo's
    return runs[0]


def test_zotui_demo_in_a_terminal(tmp_path: Path, demo_cache: Path) -> None:
    cfg = RunConfig()
    cfg.run.steps, cfg.run.eval_every, cfg.run.output_dir = 100_000, 0, str(tmp_path / "run")
    cfg.save(tmp_path / "run.toml")
    env = demo_env(tmp_path, demo_cache)
    session = Tmux(f"{zotui_command()} --demo --config run.toml", env, tmp_path)
    try:
        drive(session, tmp_path / "run", start_timeout=60)
    finally:
        session.kill()
    assert (demo_run_dir(tmp_path) / "checkpoints" / "last").is_dir()  # "stop and save" saved


@pytest.mark.parametrize("size", [(160, 48), (60, 20)])
def test_new_user_flow_in_a_terminal(tmp_path: Path, size: tuple[int, int], demo_cache: Path) -> None:
    """Issue 14's flow by keys only: configure → switch the adapter to tt → start → pause →
    evaluate while paused → resume → export best → quit (stop and save), on the demo model."""
    cfg = RunConfig()
    cfg.adapter.method, cfg.adapter.targets = "subset", "model.norm"
    cfg.run.steps, cfg.run.eval_every, cfg.run.output_dir = 100_000, 0, str(tmp_path / "run")
    cfg.run.name = "run"  # the demo's run directory: <time stamp>-run, in its temporary runs home
    cfg.save(tmp_path / "run.toml")
    env = demo_env(tmp_path, demo_cache)
    session = Tmux(f"{zotui_command()} --demo --config run.toml", env, tmp_path, size)
    try:
        session.wait(lambda s: "Ready." in s, timeout=60)
        # the tab row has the focus: → → to Adapter, Tab Tab to its method, Enter, type "tt", Enter
        time.sleep(1.0)  # the first frame at this size
        session.send("Right")  # the tab row has the focus: → → is the Adapter tab
        time.sleep(0.5)
        session.send("Right")
        session.wait(lambda s: "targets" in s, timeout=10)
        for keys in (("Tab",), ("Tab",), ("Enter",)):  # as a user types: one key at a time
            time.sleep(0.5)
            session.send(*keys)
        session.wait(lambda s: "lora_xs" in s, timeout=10)  # the dropdown is open
        session.send("t", "t")
        time.sleep(0.5)
        session.send("Enter")
        session.wait(lambda s: re.search(r"method +tt\b", s) and "model.norm" not in s, timeout=10)
        session.send("F5")
        first = session.wait(lambda s: (n := step_of(s)) is not None and n > 0 and n, timeout=60)
        assert "· tt ·" in session.screen()  # the dashboard's header names the adapter
        session.send("p")
        session.wait(lambda s: "· paused" in s, timeout=20)
        paused_at = step_of(session.screen())
        session.send("e")  # evaluate while paused: at once, and the run stays paused
        session.wait(lambda s: "dev evaluated" in s, timeout=20)
        assert step_of(session.screen()) == paused_at and int(first) <= int(paused_at or 0)  # type: ignore[call-overload]
        session.send("p")
        session.wait(lambda s: (n := step_of(s)) is not None and n > int(paused_at or 0), timeout=20)
        session.send("x")
        session.wait(lambda s: re.search(r"Export \d{8}-\d{6}-run\b", s), timeout=20)
        session.send("C-e")  # best: the default choice
        session.wait(lambda s: "exported native" in s, timeout=20)
        session.send("Escape")
        session.wait(lambda s: "Pause/Resume" in s, timeout=20)
        session.send("C-q")
        session.wait(lambda s: "A run is active" in s, timeout=20)
        session.send("s")
        session.wait(lambda s: session.dead_status() is not None, timeout=60)
        assert session.dead_status() == 0
    finally:
        session.kill()
    run_dir = demo_run_dir(tmp_path)
    exported = sorted((run_dir / "exports" / "native").iterdir())
    best = verify(run_dir / "checkpoints" / "best").step
    assert best in exported_steps(exported, run_dir) and (run_dir / "checkpoints" / "last").is_dir()
    assert 'method = "tt"' in (run_dir / "config.toml").read_text()


@pytest.mark.integration
def test_zotui_on_the_zoo_model_in_a_terminal(tmp_path: Path) -> None:
    """The offline default (smollm2-135m-instruct + rotten-tomatoes) on the real engine."""
    cfg = RunConfig()
    for key, value in {
        "model.max_length": "32",
        "model.device": "cpu",
        "task.n_train": "32",
        "task.n_dev": "8",
        "task.n_test": "8",
        "run.steps": "100000",
        "run.batch_size": "2",
        "run.eval_every": "0",
        "run.zero_shot_eval": "false",
        "run.checkpoint_every": "0",
        "run.output_dir": str(tmp_path / "run"),
    }.items():
        cfg.set(key, value)
    cfg.save(tmp_path / "run.toml")
    env = {
        "ZOENGINE_RUNS": str(tmp_path),
        "TERM": "xterm-256color",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    for var in ("ZOENGINE_CACHE", "HF_HOME", "HF_HUB_OFFLINE"):
        if var in os.environ:
            env[var] = os.environ[var]
    session = Tmux(f"{zotui_command()} --config run.toml", env, tmp_path)
    try:
        drive(session, tmp_path / "run", start_timeout=300)
    finally:
        session.kill()
    assert (tmp_path / "run" / "checkpoints" / "last").is_dir()
