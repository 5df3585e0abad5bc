"""Run-directory safety: nothing lost, nothing executed, nothing silently wrong (issue 10).

- checkpoints: no pickle (JSON + safetensors), a sha256 manifest verified on every load, the previous
  good checkpoint used when one fails, interrupted swaps recovered, stale temps cleaned;
- kill tests: real subprocesses SIGKILLed at injected points (``ZOENGINE_TEST_KILL_AT``), including
  between the two renames of a checkpoint swap, for LoRA and full fine-tuning: resume is bit-exact;
- one writer per run (filelock), a second is refused without touching the run, ``runs`` tells a live
  run from a dead one by the lock;
- "best" is a real checkpoint (step 0 included) and every figure names the checkpoint it comes from;
- a corruption matrix: every file of a run x truncate / random bytes / bit flip / delete / wrong shape
  x every command that reads it (runs, resume, eval --run, export, the app's runs loader).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_tiny_llama, make_tiny_tokenizer
from zoengine import checkpoint as ckpt
from zoengine.cli import main
from zoengine.errors import CheckpointError
from zoengine.io import read_jsonl

ROWS = ["great fun movie,positive", "awful boring film,negative", "a wonderful story,positive", "the worst plot,negative"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny Llama saved as a model folder and a small CSV (module-wide: built once)."""
    root = tmp_path_factory.mktemp("safety-assets")
    tok = make_tiny_tokenizer()
    model = make_tiny_llama(len(tok))
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    data = root / "d.csv"
    data.write_text("text,label\n" + "\n".join(ROWS * 6) + "\n")
    return root / "model", data


def train_argv(assets, out, *, adapter="lora", steps=4, every=2, eval_every=2, lr="1e-3"):
    model, data = assets
    argv = ["train", "--model", str(model), "--task", "file", "--data", str(data)]
    for item in (
        "task.template={text} it was {label}",
        "task.label_words=terrible,great",
        'task.label_map={negative = "terrible", positive = "great"}',
        "task.n_train=12",
        "task.n_dev=4",
        "task.n_test=4",
        f"run.checkpoint_every={every}",
    ):
        argv += ["--set", item]
    if adapter == "lora":
        argv += ["--set", "adapter.r=2"]
    return [*argv, "--adapter", adapter, "--lr", lr, "--steps", str(steps), "--batch-size", "4",
            "--eval-every", str(eval_every), "--output", str(out), "--quiet"]  # fmt: skip


def cli(capsys, *argv):
    """``zoengine ARGV`` in-process: (exit code, stdout, stderr); a traceback fails the test."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return code, out, err


def assert_one_line_error(code, err, *needles):
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    for n in needles:
        assert n in lines[0], lines[0]


def losses(run_dir):
    """step -> every loss logged for it (a resumed run logs the steps after its checkpoint twice)."""
    out: dict[int, list[float]] = {}
    for r in read_jsonl(run_dir / "metrics.jsonl"):
        if r.get("event") == "step":
            out.setdefault(r["step"], []).append(r["loss"])
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def subprocess_env(**extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ZOENGINE_TEST_KILL_AT", None)
    env.update(extra)
    return env


# --- the checkpoint format -------------------------------------------------------------------------


def test_pack_roundtrip_is_exact_and_pickle_free():
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.99))
    p.grad = torch.randn(3, 2)
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "nan": float("nan"), "t": (1, "a")}
    data, tensors = ckpt.pack(state)
    text = json.dumps(data)  # plain JSON: ints, floats, strings, lists, dicts
    back = ckpt.unpack(json.loads(text), tensors)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99) and back["t"] == (1, "a")
    assert list(back["optimizer"]["state"]) == [0]  # int keys survive
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(back["optimizer"]["state"][0][k], opt.state_dict()["state"][0][k])
    assert torch.equal(back["rng"], state["rng"]) and back["nan"] != back["nan"]
    with pytest.raises(TypeError):
        ckpt.pack({"x": object()})


def test_manifest_catches_every_change(tmp_path):
    parent = tmp_path / "checkpoints"
    tensors = {"w": torch.arange(64, dtype=torch.float32)}
    ckpt.write(parent, "best", kind="best", step=3, tensors={ckpt.TRAINABLE: tensors}, info={"dev_accuracy": 0.5})
    assert ckpt.verify(parent / "best").step == 3
    damage = {
        "bit flip": lambda f: f.write_bytes(_flip(f.read_bytes())),
        "truncate": lambda f: f.write_bytes(f.read_bytes()[:-7]),
        "delete": lambda f: f.unlink(),
    }
    for name in (ckpt.TRAINABLE, ckpt.MANIFEST):
        for how, fn in damage.items():
            shutil.copytree(parent / "best", tmp_path / "copy")
            fn(tmp_path / "copy" / name)
            with pytest.raises(CheckpointError) as exc:
                ckpt.verify(tmp_path / "copy")
            assert "\n" not in str(exc.value), (name, how)
            shutil.rmtree(tmp_path / "copy")
    # an edited manifest (a step changed, hash left) is caught by its own hash
    m = json.loads((parent / "best" / ckpt.MANIFEST).read_text())
    m["step"] = 4
    (parent / "best" / ckpt.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="checksum"):
        ckpt.verify(parent / "best")


def _write(parent, name, step):
    return ckpt.write(parent, name, kind="last", step=step, tensors={ckpt.TRAINABLE: {"w": torch.full((4,), float(step))}})


@pytest.mark.parametrize(
    ("layout", "expect_last", "expect_prev"),
    [
        # kill after `last -> .last.old`, before `tmp -> last`: the complete tmp (newest) is restored
        ({".last.old": 4, ".last.x.tmp": 8}, 8, 4),
        # tmp incomplete (no manifest): the old one comes back
        ({".last.old": 4, ".last.x.tmp": None}, 4, None),
        # kill after `tmp -> last`: the leftover .last.old becomes prev
        ({"last": 8, ".last.old": 4}, 8, 4),
        # stale temps beside an intact last are deleted, last kept
        ({"last": 4, "prev": 2, ".last.x.tmp": 8, ".last.y.tmp": None}, 4, 2),
    ],
)
def test_recover_interrupted_swap(tmp_path, layout, expect_last, expect_prev):
    parent = tmp_path / "checkpoints"
    for name, step in layout.items():
        if step is None:
            (parent / name).mkdir(parents=True)
            (parent / name / ckpt.TRAINABLE).write_bytes(b"half written")
        else:
            os.replace(_write(parent, "scratch", step), parent / name)
    notes = ckpt.recover(tmp_path)
    assert ckpt.verify(parent / "last").step == expect_last
    if expect_prev is None:
        assert not (parent / "prev").exists()
    else:
        assert ckpt.verify(parent / "prev").step == expect_prev
    assert sorted(p.name for p in parent.iterdir()) == sorted(["last"] + (["prev"] if expect_prev else []))
    assert all("\n" not in n for n in notes)


def test_reader_sees_a_checkpoint_mid_swap_without_changing_anything(tmp_path):
    parent = tmp_path / "checkpoints"
    os.replace(_write(parent, "scratch", 4), parent / ".last.old")
    before = snapshot(tmp_path)
    found, notes = ckpt.find(tmp_path, "last")
    assert found is not None and found.step == 4 and notes == []
    assert snapshot(tmp_path) == before


# --- kill tests: real processes, SIGKILL at injected points ------------------------------------------

KILLS = [
    # (adapter, kill point, step of the checkpoint resume starts from)
    # (the other layouts a kill can leave, a half-written tmp or a new last beside .last.old, are in
    # test_recover_interrupted_swap: three processes keep this file fast on two cores)
    ("lora", "last:swap-after-old-rename", 8),  # between the two renames: .last.old + complete tmp
    ("full", "last:swap-after-old-rename", 8),
    ("lora", "checkpoint-start", 0),  # before the first checkpoint: resume restarts from step 0
]


@pytest.fixture(scope="module")
def killed_runs(assets, tmp_path_factory):
    """Reference runs (in-process) and the killed runs (subprocesses, started together)."""
    root = tmp_path_factory.mktemp("kills")
    procs = []
    for i, (adapter, point, _) in enumerate(KILLS):
        out = root / f"kill{i}"
        argv = train_argv(assets, out, adapter=adapter, steps=12, every=4, eval_every=0)
        env = subprocess_env(ZOENGINE_TEST_KILL_AT=point, ZOENGINE_RUNS=str(root))
        procs.append(
            subprocess.Popen([sys.executable, "-m", "zoengine.cli", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    refs = {}
    for adapter in ("lora", "full"):
        refs[adapter] = root / f"ref-{adapter}"
        assert main(train_argv(assets, refs[adapter], adapter=adapter, steps=12, every=4, eval_every=0)) == 0
    results = []
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        results.append((p.returncode, err.decode(errors="replace")))
        shutil.copytree(root / f"kill{i}", root / "pristine" / f"kill{i}")  # as the kill left it
    return root, refs, results


@pytest.mark.parametrize("case", range(len(KILLS)), ids=[f"{a}-{p}" for a, p, _ in KILLS])
def test_sigkill_then_resume_is_bit_exact(killed_runs, case, capsys):
    root, refs, results = killed_runs
    adapter, point, from_step = KILLS[case]
    run_dir = root / f"kill{case}"
    code, err = results[case]
    assert code == -signal.SIGKILL, err[-2000:]
    # the runs list tells the dead run from a live one by its lock (state.json still says running)
    assert json.loads((run_dir / "state.json").read_text())["status"] == "running"
    _, out, _ = cli(capsys, "runs", "--home", root)
    assert re.search(rf"^interrupted .*{re.escape(str(run_dir))}$", out, re.M), out

    code, out, err = cli(capsys, "resume", run_dir, "--quiet")
    assert code == 0, err
    assert "finished: 12 steps" in out
    logs = [r["text"] for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("event") == "log"]
    want = f"resumed from step {from_step}" if from_step else "restarting it from step 0"
    assert any(want in t for t in logs), logs
    ref, got = losses(refs[adapter]), losses(run_dir)
    assert sorted(got) == list(range(1, 13))
    for step, values in got.items():
        assert all(v == ref[step][0] for v in values), (step, values, ref[step])  # bit-identical
    a = load_file(refs[adapter] / "checkpoints" / "last" / ckpt.TRAINABLE)
    b = load_file(run_dir / "checkpoints" / "last" / ckpt.TRAINABLE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    leftovers = [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == [] and not list(run_dir.glob(".*.tmp"))


def test_a_run_killed_before_its_first_checkpoint_can_be_trained_again(killed_runs, assets, capsys):
    """Retraining into the same --output is not refused forever: the dead run is started afresh."""
    root, _, _ = killed_runs
    run_dir = root / "again"
    shutil.copytree(root / "pristine" / f"kill{[p for _, p, _ in KILLS].index('checkpoint-start')}", run_dir)
    assert not (run_dir / "checkpoints" / "last").exists() and (run_dir / "checkpoints" / "best").exists()
    code, out, err = cli(capsys, *train_argv(assets, run_dir, steps=4, every=2))
    assert code == 0 and "finished: 4 steps" in out, err
    assert "never reached a checkpoint" in err
    # but a run with a resume point is never overwritten by train
    assert_one_line_error(*cli(capsys, *train_argv(assets, run_dir))[::2], "already holds a run")


# --- one writer per run ------------------------------------------------------------------------------


def test_second_writer_is_refused_without_touching_the_run(assets, tmp_path, capsys):
    from zoengine.cli import build_config, make_parser
    from zoengine.engine import Run
    from zoengine.events import StepLogged
    from zoengine.rundir import write_state

    run_dir = tmp_path / "home" / "run"
    argv = train_argv(assets, run_dir, steps=10_000, every=0, eval_every=0)
    first = Run(build_config(make_parser().parse_args(argv)))
    stepped = threading.Event()
    first.subscribe(lambda e: stepped.set() if isinstance(e, StepLogged) else None)
    first.start()
    try:
        assert stepped.wait(120)
        first.pause()
        for _ in range(400):
            if first.status == "paused":
                break
            threading.Event().wait(0.05)
        assert first.status == "paused"
        before = snapshot(run_dir)
        # a second process: train into the same folder
        proc = subprocess.run(
            [sys.executable, "-m", "zoengine.cli", *argv], env=subprocess_env(), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
        assert proc.stderr.startswith("error: run: ") and "is being written by another process" in proc.stderr
        # and in this process: train and resume
        assert_one_line_error(*cli(capsys, *argv)[::2], "is being written by another process")
        assert_one_line_error(*cli(capsys, "resume", run_dir)[::2], "is being written by another process")
        assert snapshot(run_dir) == before  # not a byte changed: no "failed" written into the live run
        _, out, _ = cli(capsys, "runs", "--home", run_dir.parent)
        assert out.splitlines()[1].startswith("paused")
    finally:
        first.stop(save=True)
        assert first.join(120)
    assert first.status == "stopped"
    # a status that says live while nobody holds the lock is a dead run, whatever the mtime
    state = json.loads((run_dir / "state.json").read_text())
    write_state(run_dir, {**{k: v for k, v in state.items() if k != "checksum"}, "status": "running"})
    _, out, _ = cli(capsys, "runs", "--home", run_dir.parent)
    assert out.splitlines()[1].startswith("interrupted")


# --- untrusted run directories: no code runs ---------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_payload_in_a_run_directory_never_executes(finished_run, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "PWNED"
    assert pickle.loads(pickle.dumps(_Payload(marker))) is None and marker.exists()  # the payload works
    marker.rmdir()
    run_dir = tmp_path / "home" / "run"
    shutil.copytree(finished_run, run_dir)
    blob = pickle.dumps({"step": 4, "x": _Payload(marker)})
    last = run_dir / "checkpoints" / "last"
    # the old layout (state.pt) and the payload under every name a loader might open
    (last / "state.pt").write_bytes(blob)
    torch.save({"x": _Payload(marker)}, last / "model.pt")
    for name in (ckpt.STATE_TENSORS, ckpt.STATE_JSON):
        (last / name).write_bytes(blob)
    # a consistent manifest for the tampered files: an attacker can forge one, so loading must be safe
    _resign(last)
    for argv in (
        ["resume", run_dir, "--quiet"],
        ["eval", "--run", run_dir, "--checkpoint", "last"],
        ["export", run_dir, "--checkpoint", "last", "--out", tmp_path / "x"],
        ["runs", "--home", run_dir.parent],
    ):
        code, _, err = cli(capsys, *argv)
        assert code in (0, 2), err
        assert not marker.exists(), argv
    from zotui.backend import list_runs, read_events

    monkeypatch.setenv("ZOENGINE_RUNS", str(run_dir.parent))
    assert [r.path for r in list_runs()] == [run_dir] and read_events(run_dir)
    assert not marker.exists()


def _resign(folder: Path) -> None:
    """Rewrite ``folder``'s manifest so it matches the files now there (what a forger would do)."""
    m = json.loads((folder / ckpt.MANIFEST).read_text())
    m["files"] = {
        f.name: {"size": f.stat().st_size, "sha256": ckpt.sha256_file(f)}
        for f in sorted(folder.iterdir())
        if f.name != ckpt.MANIFEST
    }
    m["manifest_sha256"] = ckpt._digest(m)
    (folder / ckpt.MANIFEST).write_text(json.dumps(m))


def test_forged_trainer_state_of_the_wrong_shape_is_one_line(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "prev")
    last = run_dir / "checkpoints" / "last"
    for bad in ('{"step": "four"}', '[1, 2]', '{"optimizer": {"$tensor": "nope"}}'):
        (last / ckpt.STATE_JSON).write_text(bad)
        _resign(last)
        assert_one_line_error(*cli(capsys, "resume", run_dir, "--quiet")[::2], "checkpoints/last")


# --- "best" is a checkpoint like any other, and every figure names its checkpoint ---------------------


@pytest.fixture(scope="module")
def finished_run(assets, tmp_path_factory):
    """A finished LoRA run: last (step 4), prev (step 2), best (step 0: the zero-shot score is best)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(train_argv(assets, run_dir, lr="1e-9")) == 0
    return run_dir


def _accuracy(out: str) -> tuple[str, str, int]:
    m = re.search(r"accuracy (\S+) \(\d+ examples\) of (checkpoints/\S+) \(step (\d+)\)", out)
    assert m, out
    return m.group(1), m.group(2), int(m.group(3))


def test_best_at_step_zero_is_a_real_checkpoint_and_is_named(finished_run, tmp_path, capsys):
    best = ckpt.verify(finished_run / "checkpoints" / "best")
    assert best.step == 0  # lr 1e-9: no later dev score beats the zero-shot one
    b = best.tensors()
    last = ckpt.verify(finished_run / "checkpoints" / "last").tensors()
    lora_b = [k for k in b if k.endswith(".B")]
    assert lora_b and all(not b[k].any() for k in lora_b)  # step 0: LoRA B still zero
    assert any(last[k].any() for k in lora_b)  # the last weights did move
    state = json.loads((finished_run / "state.json").read_text())
    assert state["test"]["checkpoint"] == "best" and state["test"]["step"] == 0
    code, out, _ = cli(capsys, "eval", "--run", finished_run)
    assert code == 0 and _accuracy(out)[1:] == ("checkpoints/best", 0)
    code, out, _ = cli(capsys, "export", finished_run, "--out", tmp_path / "e")
    assert code == 0 and "exporting checkpoints/best (step 0)" in out


@pytest.mark.parametrize("damage", ["delete", "bit flip"])
def test_a_lost_best_is_reported_and_the_figure_is_of_what_was_used(finished_run, tmp_path, capsys, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    _, out, _ = cli(capsys, "eval", "--run", run_dir, "--checkpoint", "last")
    last_acc = _accuracy(out)
    if damage == "delete":
        shutil.rmtree(run_dir / "checkpoints" / "best")
    else:
        f = run_dir / "checkpoints" / "best" / ckpt.TRAINABLE
        f.write_bytes(_flip(f.read_bytes()))
    code, out, err = cli(capsys, "eval", "--run", run_dir)
    assert code == 0 and _accuracy(out) == last_acc
    [warning] = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert "checkpoints/best" in warning and "using checkpoints/last (step 4) instead" in warning
    code, out, err = cli(capsys, "export", run_dir, "--out", tmp_path / "e")
    assert code == 0 and "exporting checkpoints/last (step 4)" in out and "checkpoints/best" in err
    # the final test of a resumed run says what it tested instead of best
    code, out, err = cli(capsys, "resume", run_dir, "--quiet")
    assert code == 0 and "(checkpoint last, step 4)" in out, out + err
    assert "checkpoints/best" in err


# --- corruption matrix: file x damage x command -----------------------------------------------------


def _flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x04]) + data[i + 1 :]


CORRUPTIONS = {
    "truncate": lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]),
    "random": lambda f: f.write_bytes(random.Random(7).randbytes(max(64, f.stat().st_size))),
    "bitflip": lambda f: f.write_bytes(_flip(f.read_bytes())),
    "delete": lambda f: f.unlink(),
}
WRONG_SHAPE = {
    "config.toml": 'model = 3\nrun = "x"\n',
    "state.json": '["finished", 4]\n',
    "metrics.jsonl": '[1, 2]\n"step"\n{"event": "step", "step": "x"}\n',
    "checkpoints/last/trainer_state.json": '{"step": "four"}\n',
    "checkpoints/last/manifest.json": '{"format": 1, "files": []}\n',
    "checkpoints/best/manifest.json": "[]\n",
}
FILES = [
    "config.toml",
    "state.json",
    "metrics.jsonl",
    "checkpoints/last/trainable.safetensors",
    "checkpoints/last/trainer_state.json",
    "checkpoints/last/trainer_state.safetensors",
    "checkpoints/last/manifest.json",
    "checkpoints/best/trainable.safetensors",
    "checkpoints/best/manifest.json",
]
MATRIX = [(f, c) for f in FILES for c in CORRUPTIONS] + [(f, "wrong-shape") for f in WRONG_SHAPE]


@pytest.fixture(scope="module")
def reference(finished_run, tmp_path_factory):
    """The test accuracy of each intact checkpoint, and the run's events, before any damage."""
    import io as _io
    from contextlib import redirect_stderr, redirect_stdout

    figures = {}
    for which in ("best", "last"):
        buf = _io.StringIO()
        with redirect_stdout(buf), redirect_stderr(_io.StringIO()):
            assert main(["eval", "--run", str(finished_run), "--checkpoint", which]) == 0
        acc, label, step = _accuracy(buf.getvalue())
        figures[label] = acc
    return figures, read_jsonl(finished_run / "metrics.jsonl")


@pytest.mark.parametrize(("name", "damage"), MATRIX, ids=[f"{n}-{c}" for n, c in MATRIX])
def test_corrupt_run_file_gives_one_line_or_recovery(finished_run, reference, tmp_path, capsys, monkeypatch, name, damage):
    figures, events_before = reference
    home = tmp_path / "home"
    run_dir = home / "run"
    shutil.copytree(finished_run, run_dir)
    shutil.rmtree(run_dir / "exports", ignore_errors=True)
    f = run_dir / name
    if damage == "wrong-shape":
        f.write_text(WRONG_SHAPE[name])
    else:
        CORRUPTIONS[damage](f)
    damaged_ckpt = name.split("/")[1] if name.startswith("checkpoints/") else None

    # 1. zoengine runs: the run is listed; a damaged config/state is flagged, never shown as numbers
    code, out, _ = cli(capsys, "runs", "--home", home)
    assert code == 0 and str(run_dir) in out
    row = next(ln for ln in out.splitlines() if str(run_dir) in ln)
    if name in ("config.toml", "state.json"):
        assert row.startswith("corrupt") and "?/?" in row and "\n" + " " * 11 + " ! " in out, out
        if name == "state.json":
            assert row.split()[2:4] == ["-", "-"]  # no dev / test figure from a damaged state
    else:
        assert row.startswith("finished")

    # 2. the app's runs-screen loader and replay reader: never raise, never a damaged event
    from zotui.backend import list_runs, read_events

    monkeypatch.setenv("ZOENGINE_RUNS", str(home))
    rows = list_runs()
    assert [r.path for r in rows] == [run_dir]
    assert rows[0].status == ("corrupt" if name in ("config.toml", "state.json") else "finished")
    events = read_events(run_dir)
    if name == "metrics.jsonl":
        before = [json.dumps(r, sort_keys=True) for r in events_before]
        assert all(json.dumps(e.to_record(), sort_keys=True) in before for e in events)

    # 3. eval --run and 4. export: a one-line error, or the figure of a named intact checkpoint
    code, out, err = cli(capsys, "eval", "--run", run_dir)
    if name == "config.toml":
        assert_one_line_error(code, err, "config.toml")
    else:
        assert code == 0, err
        acc, label, _ = _accuracy(out)
        assert label != f"checkpoints/{damaged_ckpt}" and acc == figures[label]
        assert (damaged_ckpt == "best") == ("warning: checkpoints/best" in err)
    code, out, err = cli(capsys, "export", run_dir, "--out", tmp_path / "export")
    if name == "config.toml":
        assert_one_line_error(code, err, "config.toml")
    else:
        assert code == 0, err
        assert re.search(r"exporting checkpoints/(best|last) \(step \d\)", out)
        assert f"exporting checkpoints/{damaged_ckpt} " not in out

    # 5. resume (last: it writes): a one-line error, or a recovery that says what it used
    code, out, err = cli(capsys, "resume", run_dir, "--quiet")
    if name == "config.toml":
        assert_one_line_error(code, err, "config.toml")
        return
    assert code == 0, err
    assert "finished: 4 steps" in out
    if damaged_ckpt == "last":
        assert "resuming from checkpoints/prev (step 2) instead" in err, err
    if damaged_ckpt == "best":
        assert "(checkpoint last, step 4)" in out and "checkpoints/best" in err
    else:
        assert "(checkpoint best, step 0)" in out
