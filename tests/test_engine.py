"""Engine: a run on a tiny model trains, logs, checkpoints, pauses, stops within a query, resumes exactly."""

from __future__ import annotations

import json
import threading

import pytest

from zoengine.config import RunConfig
from zoengine.engine import Run, batch_indices
from zoengine.events import CheckpointSaved, EvalDone, StatusChanged, StepLogged
from zoengine.io import read_jsonl
from zoengine.runs import list_runs, read_events

POS = [
    "great fun movie",
    "a wonderful film",
    "i love this story",
    "the best acting",
    "really good music",
    "very fun and happy",
    "wonderful scene",
    "good actor and great plot",
]
NEG = [
    "terrible boring movie",
    "an awful film",
    "i hate this story",
    "the worst acting",
    "really bad music",
    "very boring and sad",
    "awful scene",
    "bad actor and terrible plot",
]


@pytest.fixture
def sentiment_csv(tmp_path):
    path = tmp_path / "sentiment.csv"
    rows = ["text,label"] + [f"{t},positive" for t in POS * 3] + [f"{t},negative" for t in NEG * 3]
    path.write_text("\n".join(rows) + "\n")
    return path


def tiny_config(model_dir, data, tmp_path, **overrides) -> RunConfig:
    cfg = RunConfig()
    values = {
        "model.name": str(model_dir),
        "task.name": "file",
        "task.path": str(data),
        "task.template": "{text} it was {label}",
        "task.label_words": ["terrible", "great"],
        "task.label_map": {"negative": "terrible", "positive": "great"},
        "task.n_train": 24,
        "task.n_dev": 12,
        "task.n_test": 12,
        "adapter.method": "full",
        "optimizer.name": "mezo_sgd",
        "optimizer.lr": 1e-3,
        "optimizer.eps": 1e-3,
        "run.steps": 8,
        "run.batch_size": 8,
        "run.eval_every": 4,
        "run.checkpoint_every": 4,
        "run.output_dir": str(tmp_path / "run"),
    }
    values.update(overrides)
    for k, v in values.items():
        cfg.set(k, v)
    return cfg.validate()


def test_batch_indices_cover_each_epoch_once():
    seen = sorted(i for s in range(3) for i in batch_indices(s, 10, 4, seed=1))
    assert seen == list(range(10))  # ceil(10/4) = 3 steps per epoch, last one short
    assert batch_indices(3, 10, 4, 1) != batch_indices(0, 10, 4, 1)  # new permutation next epoch
    assert batch_indices(5, 10, 4, 1) == batch_indices(5, 10, 4, 1)


def test_run_trains_logs_and_checkpoints(tiny_llama_dir, sentiment_csv, tmp_path):
    run = Run(tiny_config(tiny_llama_dir, sentiment_csv, tmp_path))
    run.run()
    assert run.status == "finished", run.error
    d = run.run_dir
    for name in (
        "config.toml",
        "metrics.jsonl",
        "state.json",
        "checkpoints/last/trainable.safetensors",
        "checkpoints/last/trainer_state.json",
        "checkpoints/last/trainer_state.safetensors",
        "checkpoints/last/manifest.json",
        "checkpoints/best/manifest.json",
    ):
        assert (d / name).exists(), name
    events = read_events(d)
    statuses = [e.status for e in events if isinstance(e, StatusChanged)]
    assert statuses == ["loading", "running", "finished"]
    steps = [e for e in events if isinstance(e, StepLogged)]
    assert [e.step for e in steps] == list(range(1, 9))
    assert all(e.queries == 1 and len(e.projected_grads) == 1 for e in steps)
    assert steps[-1].forward_passes == 16 and steps[-1].tokens > 0
    evals = [e for e in events if isinstance(e, EvalDone)]
    assert [(e.step, e.split) for e in evals] == [(0, "dev"), (4, "dev"), (8, "dev"), (8, "test")]
    # checkpoint_every=4 of 8 steps: last/ is written at 4 and 8, not a second time at the end
    assert [e.step for e in events if isinstance(e, CheckpointSaved) and not e.best] == [4, 8]
    state = json.loads((d / "state.json").read_text())
    assert state["status"] == "finished" and state["step"] == 8 and state["test"]["examples"] == 12
    [summary] = [s for s in list_runs(tmp_path) if s.path == d]
    assert summary.status == "finished" and summary.steps_done == 8


def _losses(run_dir):
    return {r["step"]: r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["event"] == "step"}


@pytest.mark.parametrize("optimizer", ["mezo_sgd", "zo_adamu"])
def test_resume_after_stop_repeats_losses_exactly(tiny_llama_dir, sentiment_csv, tmp_path, optimizer):
    full = Run(tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "a", **{"optimizer.name": optimizer}))
    full.run()
    assert full.status == "finished", full.error

    part = Run(tiny_config(tiny_llama_dir, sentiment_csv, tmp_path / "b", **{"optimizer.name": optimizer}))
    part.subscribe(lambda e: part.stop(save=True) if isinstance(e, StepLogged) and e.step == 3 else None)
    part.run()
    assert part.status == "stopped" and part.step == 3
    resumed = Run.resume_from(part.run_dir)
    resumed.run()
    assert resumed.status == "finished", resumed.error
    a, b = _losses(full.run_dir), _losses(part.run_dir)
    assert sorted(b) == list(range(1, 9))
    assert [a[s] for s in range(1, 9)] == [b[s] for s in range(1, 9)]  # bit-identical floats


def test_pause_resume_and_stop_from_another_thread(tiny_llama_dir, sentiment_csv, tmp_path):
    cfg = tiny_config(
        tiny_llama_dir,
        sentiment_csv,
        tmp_path,
        **{"run.steps": 1000, "run.eval_every": 0, "run.checkpoint_every": 0},
    )
    run = Run(cfg)
    reached = threading.Event()
    run.subscribe(lambda e: reached.set() if isinstance(e, StepLogged) and e.step == 2 else None)
    run.start()
    assert reached.wait(60)
    run.pause()
    for _ in range(200):
        if run.status == "paused":
            break
        threading.Event().wait(0.05)
    assert run.status == "paused"
    paused_at = run.step
    threading.Event().wait(0.3)
    assert run.step == paused_at  # nothing happens while paused
    run.resume()
    run.stop(save=True)
    assert run.join(60)
    assert run.status == "stopped" and run.step < 1000
    assert (run.run_dir / "checkpoints" / "last" / "trainable.safetensors").exists()


def test_stop_is_honoured_within_one_query_and_restores_weights(tiny_llama_dir, sentiment_csv, tmp_path):
    """A stop raised inside the closure discards the partial step and leaves weights unperturbed."""
    cfg = tiny_config(tiny_llama_dir, sentiment_csv, tmp_path, **{"run.steps": 4, "optimizer.q": 4})
    run = Run(cfg)
    calls = {"n": 0}
    snapshot = {}

    def on_event(e):
        if isinstance(e, StepLogged) and e.step == 1:
            snapshot.update({k: v.clone() for k, v in run.handle.trainable_state_dict().items()})
            original = run.objective.loss

            def counting_loss(batch):
                calls["n"] += 1
                if calls["n"] == 3:  # +eps of the second of four queries of step 2
                    run.stop(save=True)
                return original(batch)

            run.objective.loss = counting_loss

    run.subscribe(on_event)
    run.run()
    assert run.status == "stopped" and run.step == 1
    assert calls["n"] == 3  # the next forward is refused: the stop lands within one query
    for k, v in run.handle.trainable_state_dict().items():
        assert v.equal(snapshot[k]), k


def test_bad_input_fails_with_one_line_user_error(tmp_path, sentiment_csv):
    cfg = RunConfig()
    cfg.set("model.name", str(tmp_path / "missing-model"))
    cfg.set("task.name", "file")
    cfg.set("task.path", str(sentiment_csv))
    cfg.set("task.template", "{text} it was {label}")
    cfg.set("task.label_words", ["terrible", "great"])
    cfg.set("task.label_map", {"negative": "terrible", "positive": "great"})
    cfg.set("task.n_train", 8)
    cfg.set("task.n_dev", 8)
    cfg.set("task.n_test", 8)
    cfg.set("run.output_dir", str(tmp_path / "r"))
    run = Run(cfg)
    run.run()
    assert run.status == "failed" and run.error_is_user
    assert run.error.startswith("model.name:") and "\n" not in run.error
