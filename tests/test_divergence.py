"""Divergence guard: an injected NaN or an explosion rolls back to the last good state, lowers the lr,
warns, and after ``run.divergence_retries`` failed recoveries ends as ``diverged`` (CLI exit 1);
a NaN dev evaluation is never the best."""

from __future__ import annotations

import json
import math

import pytest
import torch

from zoengine import divergence
from zoengine.cli import main
from zoengine.config import RunConfig
from zoengine.divergence import DivergenceGuard, clone_tree
from zoengine.engine import TERMINAL, Run
from zoengine.errors import ConfigError
from zoengine.events import CheckpointSaved, EvalDone, LogMessage, StatusChanged, StepLogged
from zoengine.runs import list_runs, read_events

WORDS = {
    "great": ["great fun movie", "a wonderful film", "i love this story", "really good music"],
    "terrible": ["terrible boring movie", "an awful film", "i hate this story", "really bad music"],
}
LR = {"mezo_sgd": 1e-3, "zo_adam": 1e-3, "fo_adamw": 1e-3}


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "sentiment.csv"
    rows = ["text,label"] + [f"{t},{w}" for w, texts in WORDS.items() for t in texts * 4]
    path.write_text("\n".join(rows) + "\n")
    return path


def make_config(model_dir, data, out, **overrides) -> RunConfig:
    cfg = RunConfig()
    values = {
        "model.name": str(model_dir),
        "task.name": "file",
        "task.path": str(data),
        "task.template": "{text} it was {label}",
        "task.label_words": ["terrible", "great"],
        "task.n_train": 16,
        "task.n_dev": 8,
        "task.n_test": 8,
        "adapter.method": "full",
        "optimizer.name": "mezo_sgd",
        "optimizer.lr": 1e-3,
        "optimizer.eps": 1e-3,
        "run.steps": 6,
        "run.batch_size": 4,
        "run.eval_every": 0,
        "run.checkpoint_every": 0,
        "run.zero_shot_eval": False,
        "run.output_dir": str(out),
    }
    values.update(overrides)
    for k, v in values.items():
        cfg.set(k, v)
    return cfg.validate()


class Probe:
    """Subscriber recording trainable tensors / optimizer state after every step and at each warning."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.after_step: dict[int, dict[str, torch.Tensor]] = {}
        self.opt_after_step: dict[int, dict] = {}
        self.at_warning: list[tuple[str, dict[str, torch.Tensor], dict, float, int]] = []
        run.subscribe(self)

    def __call__(self, ev) -> None:
        run = self.run
        if isinstance(ev, StepLogged):
            self.after_step[ev.step] = run.handle.trainable_state_dict()
            self.opt_after_step[ev.step] = clone_tree(run.optimizer.state_dict())
        elif isinstance(ev, LogMessage) and ev.level == "warning" and ev.text.startswith("divergence"):
            self.at_warning.append(
                (
                    ev.text,
                    run.handle.trainable_state_dict(),
                    clone_tree(run.optimizer.state_dict()),
                    float(run.optimizer.param_groups[0]["lr"]),
                    run.step,
                )
            )


def on_setup(run: Run, fn) -> None:
    """Call ``fn(run)`` once the model, objective and optimizer exist (RunInfo ends setup)."""
    from zoengine.events import RunInfo

    run.subscribe(lambda ev: fn(run) if isinstance(ev, RunInfo) else None)


def inject_nan_loss(run: Run, at_step: int, times: int = 1) -> None:
    """The loss of step ``at_step`` (1-based) is NaN for its first ``times`` attempts."""

    def patch(r: Run) -> None:
        real = r.objective.loss
        left = {"n": times}

        def loss(batch):
            value = real(batch)
            if r.step == at_step - 1 and left["n"] > 0:
                return value * float("nan")
            return value

        r.objective.loss = loss
        real_step = r.optimizer.step

        def step(closure):
            out = real_step(closure)
            if r.step == at_step - 1 and left["n"] > 0:
                left["n"] -= 1
            return out

        r.optimizer.step = step

    on_setup(run, patch)


def tensors_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def all_finite(sd: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in sd.values())


def opt_tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(opt_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(opt_tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# --- injected NaN: one rollback, lr halved, the run then finishes ---------------------------------------


@pytest.mark.parametrize("optimizer", ["mezo_sgd", "zo_adam", "fo_adamw"])
def test_injected_nan_loss_rolls_back_lowers_lr_and_recovers(tiny_llama_dir, data, tmp_path, optimizer):
    cfg = make_config(tiny_llama_dir, data, tmp_path / "run", **{"optimizer.name": optimizer})
    run = Run(cfg)
    probe = Probe(run)
    inject_nan_loss(run, at_step=4)
    run.run()
    assert run.status == "finished", run.error

    # the loss of step 4 is measured on the state step 3 left: that state is suspect, so the
    # rollback goes to the last state whose loss was confirmed, the one after step 2
    [(text, tensors, opt_state, lr, step)] = probe.at_warning
    assert text.startswith("divergence at step 4: loss is nan; rolled back to step 2"), text
    assert step == 2
    assert all_finite(tensors)
    assert tensors_equal(tensors, probe.after_step[2])
    assert not tensors_equal(tensors, probe.after_step[3])  # it really went back
    # optimizer state (moments, step counter, seed stream) went back consistently
    assert opt_tensors_equal(
        {k: v for k, v in opt_state.items() if k != "param_groups"},
        {k: v for k, v in probe.opt_after_step[2].items() if k != "param_groups"},
    )
    assert opt_state["zo"]["step"] == 2
    assert lr == pytest.approx(0.5e-3)

    events = read_events(run.run_dir)
    steps = [e for e in events if isinstance(e, StepLogged)]
    # steps 3 and 4 are redone after the rollback; the rejected attempt is not logged as a step
    assert [e.step for e in steps] == [1, 2, 3, 3, 4, 5, 6]
    assert [e.lr for e in steps] == pytest.approx([1e-3] * 3 + [0.5e-3] * 4)
    assert all(math.isfinite(e.loss) for e in steps)
    warnings = [e for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert [w.text for w in warnings] == [text]
    assert "recovery 1 of 3" in text
    # the lower lr persists: scheduler base lr, and what a resume reads back from the checkpoint
    assert run.scheduler.base_lrs[0] == pytest.approx(0.5e-3)
    resumed = Run.resume_from(run.run_dir)
    resumed.run()
    assert resumed.status == "finished", resumed.error
    assert resumed.scheduler.base_lrs[0] == pytest.approx(0.5e-3)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.5e-3)


def test_non_finite_update_rolls_back_to_the_pre_step_state(tiny_llama_dir, data, tmp_path):
    """Loss fine, update broken (NaN written into a tensor): the pre-step state is good, go back there."""
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run"))
    probe = Probe(run)

    def patch(r: Run) -> None:
        real = r.optimizer._update
        done = {"n": 0}

        def update(params, seeds, pgs, pending):
            real(params, seeds, pgs, pending)
            if r.step == 2 and not done["n"]:  # step 3's update
                done["n"] = 1
                params[0].x.view(-1)[0] = float("nan")

        r.optimizer._update = update

    on_setup(run, patch)
    run.run()
    assert run.status == "finished", run.error
    [(text, tensors, _, lr, step)] = probe.at_warning
    assert text.startswith("divergence at step 3: trainable tensor "), text
    assert "rolled back to step 2" in text and step == 2
    assert tensors_equal(tensors, probe.after_step[2]) and all_finite(tensors)
    assert lr == pytest.approx(0.5e-3)


def test_projected_gradient_inf_counts(tiny_llama_dir, data, tmp_path):
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run"))
    probe = Probe(run)

    def patch(r: Run) -> None:
        real = r.objective.loss
        calls = {"n": 0}

        def loss(batch):  # ℓ+ = 1e308, ℓ− = −1e308 at step 2: finite losses, pg = inf
            value = real(batch)
            if r.step == 1 and calls["n"] < 2:
                calls["n"] += 1
                return 1e308 if calls["n"] == 1 else -1e308  # floats: float32 would overflow
            return value

        r.objective.loss = loss

    on_setup(run, patch)
    run.run()
    assert run.status == "finished", run.error
    [(text, tensors, _, _, step)] = probe.at_warning
    assert text.startswith("divergence at step 2: projected gradient is inf"), text
    assert step == 1 and tensors_equal(tensors, probe.after_step[1])


def _spike_at(steps: set[int], factor: float = 100.0):
    """Patch: the loss of the first attempt of each 1-based step in ``steps`` is ``factor`` x."""

    def patch(r: Run) -> None:
        real = r.objective.loss
        done: set[int] = set()

        def loss(batch):
            value = real(batch)
            k = r.step + 1
            return value * factor if k in steps and k not in done else value

        real_step = r.optimizer.step

        def step(closure):
            try:
                return real_step(closure)
            finally:
                if r.step + 1 in steps:
                    done.add(r.step + 1)

        r.objective.loss = loss
        r.optimizer.step = step

    return patch


def test_two_loss_spikes_in_a_row_count_as_divergence(tiny_llama_dir, data, tmp_path):
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run", **{"run.steps": 10}))
    probe = Probe(run)
    on_setup(run, _spike_at({7, 8}))
    run.run()
    assert run.status == "finished", run.error
    # step 7's loss (on the state after 6) is a first spike: that state is not confirmed; step 8's
    # is the second: back to the last confirmed state, the one after step 5
    [(text, tensors, _, lr, step)] = probe.at_warning
    assert text.startswith("divergence at step 8: loss "), text
    assert "x the median" in text and "rolled back to step 5" in text
    assert step == 5 and tensors_equal(tensors, probe.after_step[5]) and lr == pytest.approx(0.5e-3)


def test_a_single_loss_spike_is_tolerated(tiny_llama_dir, data, tmp_path):
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run", **{"run.steps": 10}))
    probe = Probe(run)
    on_setup(run, _spike_at({7}))
    run.run()
    assert run.status == "finished" and probe.at_warning == []
    steps = [e for e in read_events(run.run_dir) if isinstance(e, StepLogged)]
    assert [e.step for e in steps] == list(range(1, 11)) and steps[6].loss > 10 * steps[5].loss
    assert steps[6].loss not in run.guard.losses  # the spike stays out of the median


def test_factor_zero_turns_the_median_test_off(tiny_llama_dir, data, tmp_path):
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run", **{"run.divergence_factor": 0}))
    probe = Probe(run)
    on_setup(run, lambda r: setattr(r.objective, "loss", _scaled(r, r.objective.loss, 5, 100.0)))
    run.run()
    assert run.status == "finished" and probe.at_warning == []


def _scaled(run, real, at_engine_step, factor):
    def loss(batch):
        value = real(batch)
        return value * factor if run.step == at_engine_step else value

    return loss


# --- persistent failure: N retries, then `diverged` ------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["mezo_sgd", "zo_adam", "fo_adamw"])
def test_persistent_nan_ends_diverged_after_retries(tiny_llama_dir, data, tmp_path, optimizer):
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run", **{"optimizer.name": optimizer}))
    probe = Probe(run)
    inject_nan_loss(run, at_step=4, times=99)
    run.run()
    assert run.status == "diverged"
    assert "diverged" in TERMINAL
    texts = [w[0] for w in probe.at_warning]
    assert len(texts) == 3
    assert [f"recovery {i} of 3" in t for i, t in enumerate(texts, 1)] == [True] * 3
    assert [w[3] for w in probe.at_warning] == pytest.approx([0.5e-3, 0.25e-3, 0.125e-3])
    # each recovery reached step 3 again and failed at step 4; the end state is the last good one
    assert run.step == 2
    assert tensors_equal(run.handle.trainable_state_dict(), probe.after_step[2])
    assert run.error.startswith("diverged at step 4: loss is nan (3 recoveries failed)")
    assert "checkpoints/last" in run.error and "\n" not in run.error
    state = json.loads((run.run_dir / "state.json").read_text())
    assert state["status"] == "diverged" and state["step"] == 2 and state["test"] is None
    from safetensors.torch import load_file

    saved = load_file(run.run_dir / "checkpoints" / "last" / "trainable.safetensors")
    assert all_finite(saved) and tensors_equal(saved, probe.after_step[2])
    events = read_events(run.run_dir)
    assert [e.status for e in events if isinstance(e, StatusChanged)][-1] == "diverged"
    assert not any(isinstance(e, EvalDone) and e.split == "test" for e in events)
    [summary] = [s for s in list_runs(tmp_path) if s.path == run.run_dir]
    assert summary.status == "diverged"


def test_zero_retries_stops_at_first_divergence_without_snapshots(tiny_llama_dir, data, tmp_path):
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run", **{"run.divergence_retries": 0}))
    probe = Probe(run)
    inject_nan_loss(run, at_step=3)
    run.run()
    assert run.status == "diverged" and probe.at_warning == []
    assert run.guard.good is None and run.guard.candidate is None  # nothing kept in memory
    assert run.error == (
        "diverged at step 3: loss is nan (run.divergence_retries = 0); checkpoints on disk are unchanged"
    )
    assert not (run.run_dir / "checkpoints" / "last").exists()


def test_large_trainable_sets_snapshot_every_interval_in_host_memory(
    tiny_llama_dir, data, tmp_path, monkeypatch
):
    monkeypatch.setattr(divergence, "SNAPSHOT_EVERY_STEP_BYTES", 0)  # the tiny model counts as "large"
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run", **{"run.checkpoint_every": 3}))
    probe = Probe(run)
    inject_nan_loss(run, at_step=6)
    run.run()
    assert run.status == "finished", run.error
    assert run.guard.every == 3 and run.guard.device == torch.device("cpu")
    [(text, tensors, _, _, step)] = probe.at_warning
    # snapshot before step 4 (= state after step 3), confirmed by step 4's loss: the rollback target
    assert "divergence at step 6: loss is nan; rolled back to step 3" in text
    assert step == 3 and tensors_equal(tensors, probe.after_step[3])


# --- explosion through the CLI: exit 1, one line --------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["mezo_sgd", "zo_adam", "fo_adamw"])
def test_cli_explosion_exits_1_with_one_line(tiny_llama_dir, data, tmp_path, capsys, monkeypatch, optimizer):
    """The loss explodes (x1000, finite) from the 11th forward on and stays exploded."""
    from zoengine.objectives import Objective

    real = Objective.loss
    calls = {"n": 0}

    def exploding(self, batch):
        calls["n"] += 1
        value = real(self, batch)
        return value * 1000 if calls["n"] > 10 else value

    monkeypatch.setattr(Objective, "loss", exploding)
    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_llama_dir), "--task", "file", "--data", str(data)]
    sets = {
        "task.template": "{text} it was {label}",
        "task.label_words": '["terrible", "great"]',
        "task.n_train": "16",
        "task.n_dev": "8",
        "task.n_test": "8",
        "adapter.method": "full",
        "run.batch_size": "4",
        "run.eval_every": "0",
        "run.checkpoint_every": "0",
        "run.zero_shot_eval": "false",
    }
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    argv += ["--optimizer", optimizer, "--lr", "1e-3", "--steps", "30", "--output", str(out), "--quiet"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: diverged at step "), err
    assert "(3 recoveries failed)" in errors[0] and "Traceback" not in err
    events = read_events(out)
    warnings = [e.text for e in events if isinstance(e, LogMessage) and e.level == "warning"]
    assert len([w for w in warnings if w.startswith("divergence at step")]) == 3
    assert [w.split("lr x0.5 -> ")[1].split(" ")[0] for w in warnings] == ["0.0005", "0.00025", "0.000125"]
    assert [e.status for e in events if isinstance(e, StatusChanged)][-1] == "diverged"
    assert json.loads((out / "state.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [
        ("--lr", "inf", "optimizer.lr"),
        ("--lr", "nan", "optimizer.lr"),
        ("--eps", "inf", "optimizer.eps"),
        ("--eps", "nan", "optimizer.eps"),
        ("--set", "run.divergence_factor=0.5", "run.divergence_factor"),
        ("--set", "run.divergence_factor=inf", "run.divergence_factor"),
        ("--set", "run.divergence_lr_factor=0", "run.divergence_lr_factor"),
        ("--set", "run.divergence_lr_factor=1.5", "run.divergence_lr_factor"),
        ("--set", "run.divergence_lr_factor=nan", "run.divergence_lr_factor"),
        ("--set", "run.divergence_retries=-1", "run.divergence_retries"),
    ],
)
def test_non_finite_and_bad_guard_settings_are_refused(flag, value, field, capsys):
    assert main(["train", "--dry-run", flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}:") and "\n" not in err, err


def test_guard_settings_have_help_and_defaults():
    import dataclasses

    from zoengine.config import RunSettings

    fields = {f.name: f for f in dataclasses.fields(RunSettings)}
    for name, default in (
        ("divergence_factor", 4.0),
        ("divergence_lr_factor", 0.5),
        ("divergence_retries", 3),
    ):
        assert fields[name].default == default and fields[name].metadata["help"]
    with pytest.raises(ConfigError, match="run.divergence_retries"):
        cfg = RunConfig()
        cfg.set("optimizer.lr", 1e-6)
        cfg.run.divergence_retries = -2
        cfg.validate()


# --- NaN dev evaluation ----------------------------------------------------------------------------------


def assert_nan_evals_never_saved_as_best(events) -> None:
    """A best checkpoint is only written right after a dev evaluation with a finite loss."""
    nan_evals = 0
    for before, ev in zip(events, events[1:], strict=False):
        if isinstance(ev, CheckpointSaved) and ev.best:
            assert isinstance(before, EvalDone) and math.isfinite(before.loss), (before, ev)
        nan_evals += isinstance(before, EvalDone) and not math.isfinite(before.loss)
    assert nan_evals >= 1


def test_nan_dev_eval_is_never_best_and_counts_as_divergence(tiny_llama_dir, data, tmp_path):
    cfg = make_config(
        tiny_llama_dir, data, tmp_path / "run", **{"run.eval_every": 2, "run.zero_shot_eval": True}
    )
    run = Run(cfg)
    probe = Probe(run)

    def patch(r: Run) -> None:  # the engine evaluates through (sum of losses, correct, seen)
        real = r.objective.eval_sums

        def eval_sums(*args, **kwargs):  # a NaN model that happens to score 0.99
            total, correct, seen = real(*args, **kwargs)
            return (float("nan"), 0.99 * seen, seen) if r.step >= 2 else (total, correct, seen)

        r.objective.eval_sums = eval_sums

    on_setup(run, patch)
    run.run()
    assert run.status == "diverged"
    assert run.best_dev_accuracy != 0.99
    evals = [e for e in read_events(run.run_dir) if isinstance(e, EvalDone)]
    assert [e.step for e in evals] == [0, 2, 2, 2, 2]  # zero-shot, then 1 + 3 retries at step 2
    assert_nan_evals_never_saved_as_best(read_events(run.run_dir))
    state = json.loads((run.run_dir / "state.json").read_text())
    assert state["best_dev_accuracy"] == evals[0].accuracy != 0.99
    texts = [w[0] for w in probe.at_warning]
    assert texts[0].startswith("divergence at step 2: dev loss is nan; rolled back to step 1"), texts
    assert run.error.startswith("diverged at step 2: dev loss is nan (3 recoveries failed)")


def test_nan_dev_eval_once_recovers_and_is_not_best(tiny_llama_dir, data, tmp_path):
    cfg = make_config(tiny_llama_dir, data, tmp_path / "run", **{"run.eval_every": 2})
    run = Run(cfg)

    def patch(r: Run) -> None:
        real = r.objective.eval_sums
        done = {"n": 0}

        def eval_sums(*args, **kwargs):
            total, correct, seen = real(*args, **kwargs)
            if r.step == 4 and not done["n"]:
                done["n"] = 1
                return float("nan"), seen, seen
            return total, correct, seen

        r.objective.eval_sums = eval_sums

    on_setup(run, patch)
    run.run()
    assert run.status == "finished", run.error
    evals = [e for e in read_events(run.run_dir) if isinstance(e, EvalDone) and e.split == "dev"]
    assert [e.step for e in evals] == [2, 4, 4, 6]
    assert run.best_dev_accuracy == max(e.accuracy for e in evals if math.isfinite(e.loss)) != 1.0
    assert json.loads((run.run_dir / "state.json").read_text())["best_dev_accuracy"] != 1.0
    assert_nan_evals_never_saved_as_best(read_events(run.run_dir))


def test_zero_shot_nan_dev_loss_stops_at_once(tiny_llama_dir, data, tmp_path):
    run = Run(make_config(tiny_llama_dir, data, tmp_path / "run", **{"run.zero_shot_eval": True}))
    on_setup(run, lambda r: setattr(r.objective, "eval_sums", lambda *a, **k: (float("nan"), 7, 10)))
    run.run()
    assert run.status == "diverged" and run.step == 0 and run.best_dev_accuracy is None
    assert run.error.startswith("diverged at step 0: dev loss is nan (no earlier good state to return to)")


# --- the app shows it ------------------------------------------------------------------------------------


def test_app_state_shows_divergence_warning_and_status():
    from zotui.backend import RESUMABLE_STATUSES
    from zotui.state import RunState

    state = RunState.from_events(
        [
            LogMessage(level="warning", text="divergence at step 4: loss is nan; rolled back to step 2"),
            StatusChanged(status="diverged", message="diverged at step 4: loss is nan (3 recoveries failed)"),
        ]
    )
    assert state.status == "diverged"
    assert list(state.logs) == [
        ("warning", "divergence at step 4: loss is nan; rolled back to step 2"),
        ("error", "status: diverged (diverged at step 4: loss is nan (3 recoveries failed))"),
    ]
    assert "diverged" in RESUMABLE_STATUSES


def test_guard_unit_median_and_floor():
    class H:
        def named_trainable(self):
            return [("w", torch.nn.Parameter(torch.zeros(3)))]

    g = DivergenceGuard(H(), None, None, factor=4.0, lr_factor=0.5, retries=3, interval=10)
    for loss in (0.01, 0.02, 0.01):
        assert g.spike(loss) is None
        g.accept(1, loss)
    assert g.spike(50.0) is None  # fewer than MIN_HISTORY losses: no median test yet
    g.accept(1, 0.01)
    assert g.spike(0.99) is None  # 99x the median, but under 4 x LOSS_FLOOR (a hard batch)
    assert g.spike(1.01) is not None
    assert g.check_step(float("inf"), []) == "loss is inf"
    assert g.check_step(float("nan"), []) == "loss is nan"
    # a 2-class task: the floor is the chance-level loss ln 2, so the limit is 4 ln 2 = 2.77
    g2 = DivergenceGuard(
        H(), None, None, factor=4.0, lr_factor=0.5, retries=3, interval=10, floor=math.log(2)
    )
    for _ in range(4):
        g2.accept(1, 0.1)
    assert g2.spike(2.7) is None and g2.spike(2.8) is not None
    # first spike: tolerated, second in a row: a problem
    assert g2.check_step(3.0, []) is None and g2.suspect
    assert "twice in a row" in g2.check_step(3.0, [])
    assert g2.check_step(0.1, [float("nan")]) == "projected gradient is nan"
