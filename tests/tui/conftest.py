"""Fixtures for the app tests: an app factory on the real engine, fixed catalogs, and pilot helpers.

There is one engine. Tests that train run ``zoengine.engine.Run`` on the tiny model of
``zotui.demo`` (built once per session outside every runs home; torch on one thread, where a step
of that model takes milliseconds). A few tests slow the run loop down or break it on purpose
(``paced_backend``): a subscriber that sleeps in the engine thread, an optimizer that raises; the
loop, its events and its run directory stay the engine's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from zoengine.config import RunConfig
from zoengine.events import EvalProgress, Event, StepLogged
from zoengine.telemetry import PROCESS_WHAT, Reading
from zotui import catalog, demo
from zotui.__main__ import make_app
from zotui.app import ZoApp
from zotui.backend import Backend, RunHandle, engine_backend

_SESSION: dict[str, Any] = {}


@pytest.fixture(scope="session", autouse=True)
def _demo_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where ``demo_home()`` builds the demo model; torch's thread count put back at the end."""
    _SESSION["factory"] = tmp_path_factory
    yield
    if "threads" in _SESSION:
        import torch

        torch.set_num_threads(_SESSION.pop("threads"))
    _SESSION.clear()


def demo_home() -> Path:
    """The demo model and data (``zotui.demo.build``), built on first use in this session's temp
    folder (no test's runs home); from then on torch runs on one thread (``one_torch_thread``)."""
    if "home" not in _SESSION:
        _SESSION["home"] = demo.build(_SESSION["factory"].mktemp("demo") / f"v{demo.VERSION}")
        one_torch_thread()
    return _SESSION["home"]  # type: ignore[no-any-return]


def one_torch_thread() -> None:
    """Torch on one thread for the rest of the session: the tiny model's steps are fastest so (and
    do not fight a loaded machine's other work for cores)."""
    import torch

    _SESSION.setdefault("threads", torch.get_num_threads())
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _runs_home_is_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only its own runs (the runs screen lists the runs home)."""
    monkeypatch.setenv("ZOENGINE_RUNS", str(tmp_path))


def demo_config(tmp_path: Path, steps: int = 200, run_name: str = "run", **values: str) -> RunConfig:
    """The demo model and data with a short run whose directory is ``tmp_path/run_name`` (in the
    runs home); ``values`` are ``section__key=value`` settings on top."""
    cfg = demo.demo_config(demo_home())
    cfg.run.steps = steps
    cfg.run.eval_every = 20
    cfg.run.checkpoint_every = 50
    cfg.run.output_dir = str(tmp_path / run_name)
    for key, value in values.items():
        cfg.set(key.replace("__", "."), value)
    return cfg


@pytest.fixture
def short_model_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """The demo model by a relative name (the working directory is the demo home), so what the
    app shows of it is the same on every machine (screenshots, lines that must fit)."""
    monkeypatch.chdir(demo_home())
    return demo.MODEL_DIR


def paced_backend(step_delay: float = 0.0, eval_delay: float = 0.0, fail_at: int | None = None) -> Backend:
    """``engine_backend()`` whose runs sleep ``step_delay`` after each step and ``eval_delay`` at
    each evaluation progress event (a subscriber: the engine thread waits), and whose step after
    step ``fail_at`` raises ("scripted failure at step N") from the optimizer."""
    backend = engine_backend()
    if not step_delay and not eval_delay and fail_at is None:
        return backend

    def paced(run: Any) -> RunHandle:
        def on_event(event: Event) -> None:
            if isinstance(event, StepLogged):
                if event.step == fail_at:

                    def fail(*args: object, **kwargs: object) -> None:
                        raise RuntimeError(f"scripted failure at step {fail_at}")

                    run.optimizer.step = fail
                if step_delay:
                    time.sleep(step_delay)
            elif isinstance(event, EvalProgress) and eval_delay:
                time.sleep(eval_delay)

        run.subscribe(on_event)
        return run  # type: ignore[no-any-return]

    return dataclasses.replace(
        backend,
        new_run=lambda config: paced(backend.new_run(config)),
        resume_run=lambda run_dir: paced(backend.resume_run(run_dir)),
    )


@pytest.fixture
def make_demo_app() -> Iterator[Callable[..., ZoApp]]:
    """``make_demo_app(config, step_delay=0, eval_delay=0, fail_at=None)`` → the app on the real
    engine (paced as asked); an engine a test left running is stopped after it."""
    apps: list[ZoApp] = []

    def factory(config: RunConfig | None = None, **pace: Any) -> ZoApp:
        app = make_app(config, backend=paced_backend(**pace), check_assets=False)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        assert app.shutdown_engine(timeout=60), "the engine thread did not end"


def train(config: RunConfig, stop_at: int | None = None, timeout: float = 120.0) -> Any:
    """Train ``config`` with the engine to its end, or stop it (saving) once at least ``stop_at``
    steps are done, as a CLI ``zoengine train`` would; returns the ended ``Run``."""
    from zoengine.engine import Run

    run = Run(config)
    run.start()
    deadline = time.monotonic() + timeout
    while stop_at is not None and run.step < stop_at and run.is_alive and time.monotonic() < deadline:
        time.sleep(0.01)
    if stop_at is not None:
        run.stop(save=True)
    assert run.join(timeout), "the run did not end in time"
    assert run.status == ("stopped" if stop_at is not None else "finished"), run.error
    return run


def saved_step(run_dir: Path) -> int:
    """The step of the run's resume point (``checkpoints/last``, verified)."""
    from zoengine.checkpoint import find

    found, notes = find(Path(run_dir), "last")
    assert found is not None, notes
    return int(found.step)


def exported_steps(files: list[Path], run_dir: Path) -> set[int]:
    """Steps of the kept checkpoints (best, last, prev) whose trainable tensors a native export holds."""
    import torch
    from safetensors.torch import load_file

    from zoengine.checkpoint import verify

    weights = load_file(next(p for p in files if p.suffix == ".safetensors"))
    steps = set()
    for name in ("best", "last", "prev"):
        ckpt = verify(Path(run_dir) / "checkpoints" / name)
        saved = ckpt.tensors()
        if saved.keys() == weights.keys() and all(torch.equal(saved[k], weights[k]) for k in saved):
            steps.add(ckpt.step)
    return steps


async def wait_for(pilot: Pilot[object], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until ``condition()`` holds (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)


def fixed_readings(device: str | None = None) -> list[Reading]:
    return [
        Reading("RSS", 300 * 2**20, None, PROCESS_WHAT),
        Reading("peak RSS", 320 * 2**20, None, PROCESS_WHAT),
    ]


FIXED_OPTIMIZERS = {
    "mezo_sgd": "MeZO: ZO-SGD with a two-point SPSA estimate from one seeded perturbation per query",
}
FIXED_ADAPTERS = {
    "full": "all weights trainable (MeZO's full fine-tuning; memory = inference)",
    "subset": "a named subset of parameters (targets)",
}
FIXED_EXPORT_FORMATS = {
    "native": "zoengine's own adapter files: Run.resume_from, `zoengine eval`, zotui",
    "peft-lora": "PEFT LoRA files: PeftModel.from_pretrained(base, path) (LoRA, LoRA-XS, SoRA only)",
    "merged": "a full model with the adapter folded in: transformers AutoModel*.from_pretrained(path)",
}


@pytest.fixture
def fixed_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic pickers and memory for screenshots (no dependence on the local zoo cache)."""
    monkeypatch.setattr(
        catalog,
        "model_choices",
        lambda: [catalog.Choice("smollm2-135m-instruct", "smollm2-135m-instruct (270 MB)")],
    )
    monkeypatch.setattr(catalog, "is_fetched", lambda name: None)
    monkeypatch.setattr(
        catalog,
        "task_choices",
        lambda: [catalog.Choice(n, n) for n in ("rotten-tomatoes", "sst2", "rte", "file")],
    )
    monkeypatch.setattr(
        catalog,
        "optimizer_specs",
        lambda: {n: catalog.MethodSpec(n, d) for n, d in FIXED_OPTIMIZERS.items()},
    )
    monkeypatch.setattr(
        catalog,
        "adapter_specs",
        lambda: {n: catalog.MethodSpec(n, d) for n, d in FIXED_ADAPTERS.items()},
    )
    monkeypatch.setattr(catalog, "trainable_count", lambda cfg: None)
    monkeypatch.setattr(catalog, "task_preview", lambda cfg: None)
    monkeypatch.setattr(catalog, "cached_tune", lambda cfg: None)
    monkeypatch.setattr(catalog, "export_formats", lambda: dict(FIXED_EXPORT_FORMATS))
    monkeypatch.setattr("zotui.widgets.memory.memory_snapshot", fixed_readings)
