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

from zoengine.config import RunConfig

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


class Tmux:
    """One detached tmux session running one command, 80x24."""

    def __init__(self, command: str, env: dict[str, str], cwd: Path) -> None:
        self.name = f"zotui-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self._tmux(
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            "80",
            "-y",
            "24",
            "-c",
            str(cwd),
            f"env {exports} {command}",
        )
        self._tmux("set-option", "-t", self.name, "remain-on-exit", "on")

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


def test_zotui_demo_in_a_terminal(tmp_path: Path) -> None:
    cfg = RunConfig()
    cfg.run.steps, cfg.run.eval_every, cfg.run.output_dir = 100_000, 0, str(tmp_path / "run")
    cfg.save(tmp_path / "run.toml")
    env = {"ZOENGINE_RUNS": str(tmp_path), "TERM": "xterm-256color", "OMP_NUM_THREADS": "1"}
    session = Tmux(f"{zotui_command()} --demo --config run.toml", env, tmp_path)
    try:
        drive(session, tmp_path / "run", start_timeout=30)
    finally:
        session.kill()
    assert (tmp_path / "run" / "checkpoint.json").exists()  # "stop and save" saved


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
