"""Nothing lost, nothing silently wrong: export never deletes, explicit label maps, data-sized default
splits, test files are test splits, Ctrl-C exits 130 after saving, disk full is one line naming the
intact checkpoint, and an engine error is printed once."""

from __future__ import annotations

import errno
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from zoengine.cli import main
from zoengine.config import RunConfig, TaskConfig
from zoengine.errors import DataError
from zoengine.tasks import load_task

ROWS = [("great fun movie", "great"), ("awful boring film", "terrible")]


def _csv(path: Path, n: int, labels: tuple[str, str] = ("great", "terrible")) -> Path:
    lines = ["text,label"] + [f"{ROWS[i % 2][0]} {i},{labels[i % 2]}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(model),
        "--task",
        "file",
        "--data",
        str(data),
        "--set",
        "task.template={text} it was {label}",
        "--lr",
        "1e-3",
        "--batch-size",
        "4",
        "--output",
        str(out),
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_tiny_llama, make_tiny_tokenizer

    path = tmp_path_factory.mktemp("safety") / "model"
    tok = make_tiny_tokenizer()
    make_tiny_llama(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained_run(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    data = _csv(root / "d.csv", 40)
    out = root / "run"
    sizes = ["--set", "task.n_train=20", "--set", "task.n_dev=8", "--set", "task.n_test=8"]
    assert main(_train_argv(model_dir, data, out, "--steps", "2", "--eval-every", "1", *sizes)) == 0
    return out


def _siblings_left(folder: Path) -> list[str]:
    """Temp folders an export could leave beside its destination."""
    return [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


# --- export never deletes ----------------------------------------------------------------------------


def test_export_refuses_a_non_empty_folder_and_keeps_it(trained_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("precious")
    (out / "sub" / "more.txt").write_text("also precious")
    assert main(["export", str(trained_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out: folder is not empty") and "--force" in err[0]
    assert (out / "keep.txt").read_text() == "precious" and (out / "sub" / "more.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "sub"] and not _siblings_left(out)


def test_export_refuses_a_file_and_keeps_it(trained_run: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "adapter"
    target.write_text("a file")
    assert main(["export", str(trained_run), "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out: a file is in the way")
    assert target.read_text() == "a file"


def test_export_into_an_empty_or_new_folder_needs_no_force(trained_run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", str(trained_run), "--out", str(empty)]) == 0
    assert (empty / "zoengine_adapter.json").exists()
    assert main(["export", str(trained_run), "--out", str(tmp_path / "new" / "deep")]) == 0
    assert (tmp_path / "new" / "deep" / "zoengine_adapter.safetensors").exists()
    # the default destination holds the first export now: a second one must be asked for
    assert main(["export", str(trained_run)]) in (0, 2)
    assert main(["export", str(trained_run)]) == 2
    assert main(["export", str(trained_run), "--force"]) == 0


def test_export_force_replaces_a_folder_and_a_file_whole(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert main(["export", str(trained_run), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["zoengine_adapter.json", "zoengine_adapter.safetensors"]
    target = tmp_path / "was-a-file"
    target.write_text("file")
    assert main(["export", str(trained_run), "--out", str(target), "--force"]) == 0
    assert target.is_dir() and (target / "zoengine_adapter.json").exists()
    assert not _siblings_left(out) and not _siblings_left(target)


def test_export_force_failing_midway_leaves_the_old_content(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import zoengine.adapters.export as adapter_export

    out = tmp_path / "mine"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def half_written(model: Any, handle: Any, tmp: Path, *args: Any) -> None:
        (tmp / "zoengine_adapter.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C while writing

    monkeypatch.setattr(adapter_export, "_write_native", half_written)
    assert main(["export", str(trained_run), "--out", str(out), "--force"]) == 130
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and not _siblings_left(out)
    monkeypatch.undo()

    # the swap itself fails after the old folder was moved aside: it is put back
    import os

    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if str(src).endswith("/new"):
            raise OSError(errno.EIO, "I/O error", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    assert main(["export", str(trained_run), "--out", str(out), "--force"]) == 2
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and not _siblings_left(out)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --out: cannot write")


# --- labels ---------------------------------------------------------------------------------------------


def test_string_labels_that_are_not_the_words_are_refused_with_the_guess(tmp_path: Path) -> None:
    data = _csv(tmp_path / "d.csv", 20, labels=("pos", "neg"))
    cfg = TaskConfig(name="file", path=str(data), label_words=["good", "bad"], n_train=10, n_dev=4, n_test=4)
    with pytest.raises(DataError) as info:
        load_task(cfg)
    text = info.value.one_line()
    assert info.value.field == "task.label_map" and "\n" not in text
    assert "neg -> good, pos -> bad" in text  # the alphabetical guess, shown, not used
    # the message says how to confirm; pasting its --set gives the intended (corrected) map
    suggestion = re.search(r"--set (task\.label_map='[^']*')", text)
    assert suggestion is not None
    key, _, value = shlex.split(suggestion.group(1))[0].partition("=")
    full = RunConfig()
    full.set(key, value.replace('"good"', '"tmp"').replace('"bad"', '"good"').replace('"tmp"', '"bad"'))
    task = load_task(TaskConfig(**{**cfg.__dict__, "label_map": full.task.label_map}))
    assert task.label_words == ["good", "bad"]
    for ex in task.train + task.dev + task.test:  # rows "great fun movie" are pos -> good
        assert task.label_words[ex.label] == ("good" if ex.fields["text"].startswith("great") else "bad")


def test_label_map_via_set_and_cli_refusal_is_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    data = _csv(tmp_path / "d.csv", 20, labels=("pos", "neg"))
    argv = _train_argv(model_dir, data, tmp_path / "r", "--set", "task.label_words=good,bad", "--steps", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: task.label_map: ") and "neg -> good" in err[0]
    assert not (tmp_path / "r").exists()  # refused before the run directory was made
    cfg = RunConfig()
    cfg.set("task.label_map", '{neg = "bad", pos = "good"}')
    assert cfg.task.label_map == {"neg": "bad", "pos": "good"}
    cfg.set("task.label_map", "neg=bad, pos=good")
    assert cfg.task.label_map == {"neg": "bad", "pos": "good"}


def test_labels_equal_to_words_or_int_indices_need_no_map(tmp_path: Path) -> None:
    data = _csv(tmp_path / "w.csv", 20, labels=("yes", "no"))
    task = load_task(TaskConfig(name="file", path=str(data), label_words=["no", "yes"], n_train=10, n_dev=4))
    assert task.label_words == ["no", "yes"]
    data = _csv(tmp_path / "i.csv", 20, labels=("1", "0"))
    task = load_task(TaskConfig(name="file", path=str(data), label_words=["no", "yes"], n_train=10, n_dev=4))
    for ex in task.train:
        assert task.label_words[ex.label] == ("yes" if ex.fields["text"].startswith("great") else "no")
    data = _csv(tmp_path / "s.csv", 20, labels=("5", "1"))
    with pytest.raises(DataError, match="1 -> no, 5 -> yes"):
        load_task(TaskConfig(name="file", path=str(data), label_words=["no", "yes"]))


# --- default splits and test files ----------------------------------------------------------------------


def test_small_csv_without_sizes_is_split_60_20_20_with_a_note(tmp_path: Path) -> None:
    task = load_task(TaskConfig(name="file", path=str(_csv(tmp_path / "d.csv", 240))))
    assert task.split_sizes() == {"train": 144, "dev": 48, "test": 48}
    assert any("60/20/20" in n and "240 examples" in n for n in task.notes)
    big = load_task(TaskConfig(name="file", path=str(_csv(tmp_path / "big.csv", 2600))))
    assert big.split_sizes() == {"train": 1000, "dev": 500, "test": 1000}
    assert not any("60/20/20" in n for n in big.notes)
    # a size the user gave is kept; the others share what is left
    task = load_task(TaskConfig(name="file", path=str(tmp_path / "d.csv"), n_train=200))
    assert task.split_sizes() == {"train": 200, "dev": 20, "test": 20}
    with pytest.raises(DataError, match="task.n_train"):
        load_task(TaskConfig(name="file", path=str(tmp_path / "d.csv"), n_train=1000))


def test_small_csv_trains_from_the_cli_and_says_how_it_split(model_dir: Path, tmp_path: Path, capsys) -> None:
    data = _csv(tmp_path / "d.csv", 240)
    argv = _train_argv(model_dir, data, tmp_path / "r", "--steps", "2", "--eval-every", "0")
    assert main(argv) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "note: no size given for n_train, n_dev, n_test" in captured.err and "144/48/48" in captured.err
    assert "finished: 2 steps" in captured.out
    assert "n_train" not in (tmp_path / "r" / "config.toml").read_text()  # resume re-derives the split


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_folder_with_train_and_test_files_uses_them(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _jsonl(folder / "train.jsonl", [{"text": f"train {i}", "label": ROWS[i % 2][1]} for i in range(30)])
    _jsonl(folder / "test.jsonl", [{"text": f"test {i}", "label": ROWS[i % 2][1]} for i in range(7)])
    task = load_task(TaskConfig(name="file", path=str(folder)))
    assert len(task.test) == 7 and all(e.fields["text"].startswith("test") for e in task.test)
    assert all(e.fields["text"].startswith("train") for e in task.train + task.dev)
    assert task.split_sizes() == {"train": 23, "dev": 7, "test": 7}  # 30 rows: 75/25 for train/dev
    # with a val file too, val is the dev split
    _jsonl(folder / "val.jsonl", [{"text": f"val {i}", "label": ROWS[i % 2][1]} for i in range(5)])
    task = load_task(TaskConfig(name="file", path=str(folder)))
    assert [len(task.train), len(task.dev), len(task.test)] == [30, 5, 7]
    assert all(e.fields["text"].startswith("val") for e in task.dev)


# --- Ctrl-C, disk full, errors once -------------------------------------------------------------------------


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Simulate Ctrl-C in the CLI's watch loop once the engine has logged ``step``."""
    from zoengine import engine
    from zoengine.events import StepLogged

    real_start = engine.Run.start

    def start(self: Any) -> None:
        real_start(self)
        real_get = self.events.get

        def get(*args: Any, **kwargs: Any) -> Any:
            ev = real_get(*args, **kwargs)
            if isinstance(ev, StepLogged) and ev.step >= step:
                raise KeyboardInterrupt
            return ev

        self.events.get = get

    monkeypatch.setattr(engine.Run, "start", start)


def test_ctrl_c_in_train_and_resume_saves_and_exits_130(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from zoengine.engine import read_state

    data = _csv(tmp_path / "d.csv", 40)
    out = tmp_path / "run"
    sizes = ["--set", "task.n_train=20", "--set", "task.n_dev=8", "--set", "task.n_test=8"]
    _interrupt_after(monkeypatch, 2)
    argv = _train_argv(model_dir, data, out, "--steps", "100000", "--eval-every", "0", *sizes)
    assert main(argv) == 130
    assert "interrupted" in capsys.readouterr().err
    state = read_state(out)
    assert state["status"] == "stopped" and 2 <= state["step"] < 100000
    assert (out / "checkpoints" / "last").is_dir()
    stopped_at = state["step"]
    _interrupt_after(monkeypatch, stopped_at + 1)
    assert main(["resume", str(out), "--quiet"]) == 130
    state = read_state(out)
    assert state["status"] == "stopped" and state["step"] > stopped_at


def test_disk_full_mid_run_names_the_intact_checkpoint(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import zoengine.run_control as run_control  # where the engine's events are appended to metrics.jsonl

    real_append = run_control.append_jsonl

    def append(path: Path, record: dict[str, Any]) -> None:
        if record.get("event") == "step" and record.get("step", 0) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_append(path, record)

    monkeypatch.setattr(run_control, "append_jsonl", append)
    data = _csv(tmp_path / "d.csv", 40)
    out = tmp_path / "run"
    extra = ["--steps", "10", "--eval-every", "0", "--set", "run.checkpoint_every=2"]
    sizes = ["--set", "task.n_train=20", "--set", "task.n_dev=8", "--set", "task.n_test=8"]
    assert main(_train_argv(model_dir, data, out, *extra, *sizes)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: run.output_dir: no space left on ")
    assert err[-1].endswith("the last checkpoint at step 2 is intact"), err[-1]
    assert sum(line.startswith("error:") for line in err) == 1 and not any("Traceback" in e for e in err)


def test_an_engine_error_is_printed_once(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import zoengine.models
    from zoengine.errors import ModelError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ModelError("cannot load weights of 'x': broken shard", field="model.name")

    monkeypatch.setattr(zoengine.models, "load_model", broken)
    data = _csv(tmp_path / "d.csv", 40)
    sizes = ["--set", "task.n_train=20", "--set", "task.n_dev=8", "--set", "task.n_test=8"]
    assert main(_train_argv(model_dir, data, tmp_path / "run", "--steps", "2", *sizes)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: model.name: cannot load weights of 'x': broken shard"]


def test_ctrl_c_in_export_exits_130_and_writes_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zoengine.adapters.export as adapter_export

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(adapter_export, "_write_native", interrupted)
    out = tmp_path / "new-out"
    assert main(["export", str(trained_run), "--out", str(out)]) == 130
    assert not out.exists() and not _siblings_left(out)


def test_exports_and_atomic_writes_follow_the_users_umask(tmp_path):
    """mkstemp/mkdtemp create 0600/0700; what a user shares must get the mode open()/mkdir give."""
    import os
    import stat

    from zoengine.exporting import replacing_dir
    from zoengine.io import atomic_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
        with replacing_dir(tmp_path / "export") as new:
            new.mkdir()
            import tempfile

            fd, name = tempfile.mkstemp(dir=new)  # as a library writer may create it
            os.close(fd)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "export").iterdir()}
        assert set(modes.values()) == {0o644}
        assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == 0o755
    finally:
        os.umask(old)
