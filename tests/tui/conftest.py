"""Fixtures for the app tests: a demo-engine app factory, fixed catalogs, and pilot helpers.

Most tests drive the app on ``zotui.demo.DemoRun`` (same surface as the engine, no torch), so the
whole suite runs in seconds; ``test_real_engine.py`` drives the lead's engine on a tiny model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from zoengine.config import RunConfig
from zoengine.telemetry import PROCESS_WHAT, Reading
from zotui import catalog
from zotui.__main__ import make_app
from zotui.app import ZoApp
from zotui.backend import demo_backend


@pytest.fixture(autouse=True)
def _runs_home_is_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only its own runs (the runs screen lists the runs home)."""
    monkeypatch.setenv("ZOENGINE_RUNS", str(tmp_path))


def demo_config(tmp_path: Path, steps: int = 200, run_name: str = "run", **values: str) -> RunConfig:
    """A small valid config whose run directory is ``tmp_path/run_name`` (in the runs home)."""
    cfg = RunConfig()
    cfg.run.steps = steps
    cfg.run.eval_every = 20
    cfg.run.checkpoint_every = 50
    cfg.run.output_dir = str(tmp_path / run_name)
    for key, value in values.items():
        cfg.set(key.replace("__", "."), value)
    return cfg


@pytest.fixture
def make_demo_app() -> Callable[..., ZoApp]:
    """``make_demo_app(config, step_delay=0.01, **demo_options)`` → an app on the demo engine."""

    def factory(config: RunConfig | None = None, step_delay: float = 0.01, **options: object) -> ZoApp:
        return make_app(config, backend=demo_backend(step_delay=step_delay, **options), check_assets=False)

    return factory


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
