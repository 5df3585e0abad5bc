"""CLI: bad input is one line on stderr with exit code 2; train/runs/export work end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoengine.cli import main


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["train", "--lr", "0"], "optimizer.lr"),
        (["train", "--eps", "-1"], "optimizer.eps"),
        (["train", "--optimizer", "adamw9"], "optimizer.name"),
        (["train", "--set", "task.template=no placeholder"], "task.template"),
        (["train", "--set", "run.steps=abc"], "run.steps"),
        (["train", "--set", "run.nproc=0"], "run.nproc"),
        (["train", "--set", "run.nproc=two"], "run.nproc"),
        (["train", "--nproc", "0"], "--nproc"),
        (["train", "--set", "nonsense"], "--set nonsense"),
        (["train", "--config", "/no/such.toml"], "--config"),
        (["export", "/no/such/run", "--format", "native"], "run"),
        (["export", "/no/such/run", "--format", "onnx"], "--format"),
        (["resume", "/no/such/run"], "run"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, field, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}") and "\n" not in err, err


def test_version_is_the_one_package_version(capsys):
    from importlib import metadata

    import zoengine
    import zotui

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"zoengine {zoengine.__version__}"
    assert zotui.__version__ == zoengine.__version__ == metadata.version("zoengine")


def test_unknown_zoo_model_is_one_line_exit_2(tmp_path, capsys):
    code = main(["train", "--model", "smollm3-nope", "--output", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: model.name:") and "smollm2-135m-instruct" in err[-1]


def _train_file(model_dir, data, out, *sets: str) -> int:
    """``zoengine train`` of a local data file on a local model, quietly, into ``out``."""
    argv = ["train", "--model", str(model_dir), "--task", "file", "--data", str(data)]
    for item in sets:
        argv += ["--set", item]
    return main([*argv, "--output", str(out), "--quiet"])


@pytest.mark.parametrize(("sets", "flag", "launched"), [(["run.nproc=3"], [], 3), (["run.nproc=3"], ["--nproc", "1"], None)])
def test_train_honours_run_nproc_unless_the_flag_says_otherwise(
    tiny_llama_dir, sentiment_csv, tmp_path, monkeypatch, sets, flag, launched
):
    """``run.nproc`` of a config launches torchrun like ``--nproc``; the flag wins over it."""
    from zoengine.cli import train as train_cli  # where cmd_train looks up _launch and _watch

    calls: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(train_cli, "_launch", lambda n, argv: calls.append((n, argv)) or 0)
    monkeypatch.setattr(train_cli, "_watch", lambda run, quiet: 0)  # no training: only who would run it
    argv = ["train", "--model", str(tiny_llama_dir), "--task", "file", "--data", str(sentiment_csv)]
    argv += [w for s in sets for w in ("--set", s)] + flag + ["--output", str(tmp_path / "r"), "--quiet"]
    assert main(argv) == 0
    if launched is None:
        assert calls == []
    else:
        assert [n for n, _ in calls] == [launched] and "--output" in calls[0][1]


def test_missing_data_file_is_one_line_exit_2(tiny_llama_dir, tmp_path, capsys):
    code = _train_file(tiny_llama_dir, tmp_path / "nope.csv", tmp_path / "r")
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: task.path:")


def test_empty_split_is_one_line_exit_2(tiny_llama_dir, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("text,label\ngreat fun,positive\nawful,negative\n")
    code = _train_file(tiny_llama_dir, data, tmp_path / "r", "task.n_train=2", "task.n_dev=5")
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: task.n_")


def test_dry_run_prints_validated_toml(capsys):
    assert main(["train", "--dry-run", "--lr", "1e-5", "--set", "run.steps=7"]) == 0
    out = capsys.readouterr().out
    assert "lr = 1e-05" in out and "steps = 7" in out


def test_readme_example_config_is_valid(capsys):
    """The documented command (`zoengine train --config examples/rotten-tomatoes-mezo.toml`) parses."""
    example = Path(__file__).resolve().parents[1] / "examples" / "rotten-tomatoes-mezo.toml"
    assert main(["train", "--config", str(example), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert 'targets = [\n    "model.norm",\n]' in out or 'targets = ["model.norm"]' in out
    assert "steps = 300" in out


def test_train_runs_export_end_to_end(tiny_llama_dir, tmp_path, capsys):
    data = tmp_path / "d.csv"
    rows = ["text,label"] + ["great fun movie,positive", "awful boring film,negative"] * 10
    data.write_text("\n".join(rows) + "\n")
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--model",
        str(tiny_llama_dir),
        "--task",
        "file",
        "--data",
        str(data),
        "--set",
        "task.template={text} it was {label}",
        "--set",
        "task.label_words=terrible,great",
        "--set",
        'task.label_map={negative = "terrible", positive = "great"}',
        "--set",
        "task.n_train=10",
        "--set",
        "task.n_dev=4",
        "--set",
        "task.n_test=4",
        "--adapter",
        "lora",
        "--set",
        "adapter.r=2",
        "--lr",
        "1e-3",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--eval-every",
        "2",
        "--output",
        str(run_dir),
        "--quiet",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "finished: 4 steps" in out and "test accuracy" in out
    assert main(["runs", "--home", str(tmp_path)]) == 0
    assert str(run_dir) in capsys.readouterr().out
    assert main(["export", str(run_dir), "--format", "native", "--out", str(tmp_path / "native")]) == 0
    assert (tmp_path / "native" / "zoengine_adapter.json").exists()
    assert main(["eval", "--run", str(run_dir), "--split", "test"]) == 0
    assert "test: loss" in capsys.readouterr().out
