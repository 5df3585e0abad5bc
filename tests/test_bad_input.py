"""Bad input, table-driven: every case exits 2 with ONE stderr line ``error: <field>: ...``, no
traceback, and changes no file in the runs home (nor in the folder holding the inputs).

Classes: config files, ``--set`` values, CLI flags, data files, run directories and file-system
conditions (a file in the way, read-only, no permission, disk full). Everything runs in-process
through ``zoengine.cli.main``; nothing reaches training, so the whole table takes seconds.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from zoengine.cli import main
from zoengine.config import RunConfig

GOOD_CSV = "text,label\n" + "".join(
    f"great fun movie {i},great\nawful boring film {i},terrible\n" for i in range(20)
)
TEMPLATE = "task.template={text} it was {label}"


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)  # type: ignore[operator]
    return path


CONFIGS: dict[str, tuple[str | bytes, str]] = {
    # name: (file content, field of the error)
    "non_utf8": (b"\xff\xfe[model]\nname = 'x'\n", "--config"),
    "latin1": ("[run]\nname = 'caf\xe9'\n".encode("latin-1"), "--config"),
    "invalid_toml": ("[model\nname = 1\n", "CFG"),
    "truncated_string": ('[model]\nname = "smollm2\n', "CFG"),
    "unknown_section": ("[modle]\nname = 'x'\n", "modle"),
    "section_not_table": ("model = 3\n", "model"),
    "unknown_model_key": ("[model]\nsize = 3\n", "model.size"),
    "unknown_run_key": ("[run]\nepochs = 3\n", "run.epochs"),
    "lr_string": ("[optimizer]\nlr = 'fast'\n", "optimizer.lr"),
    "lr_inf": ("[optimizer]\nlr = inf\n", "optimizer.lr"),
    "lr_nan": ("[optimizer]\nlr = nan\n", "optimizer.lr"),
    "lr_negative": ("[optimizer]\nlr = -1e-3\n", "optimizer.lr"),
    "eps_inf": ("[optimizer]\neps = inf\n", "optimizer.eps"),
    "eps_zero": ("[optimizer]\neps = 0.0\n", "optimizer.eps"),
    "wd_negative": ("[optimizer]\nweight_decay = -0.1\n", "optimizer.weight_decay"),
    "wd_inf": ("[optimizer]\nweight_decay = inf\n", "optimizer.weight_decay"),
    "schedule_unknown": ("[optimizer]\nlr_schedule = 'step'\n", "optimizer.lr_schedule"),
    "warmup_negative": ("[optimizer]\nwarmup_steps = -5\n", "optimizer.warmup_steps"),
    "optimizer_unknown": ("[optimizer]\nname = 'adamw9'\n", "optimizer.name"),
    "steps_float": ("[run]\nsteps = 1.5\n", "run.steps"),
    "steps_bool": ("[run]\nsteps = true\n", "run.steps"),
    "steps_zero": ("[run]\nsteps = 0\n", "run.steps"),
    "steps_date": ("[run]\nsteps = 1979-05-27\n", "run.steps"),
    "steps_list": ("[run]\nsteps = [1, 2]\n", "run.steps"),
    "batch_zero": ("[run]\nbatch_size = 0\n", "run.batch_size"),
    "eval_bs_zero": ("[run]\neval_batch_size = 0\n", "run.eval_batch_size"),
    "eval_every_negative": ("[run]\neval_every = -1\n", "run.eval_every"),
    "checkpoint_negative": ("[run]\ncheckpoint_every = -1\n", "run.checkpoint_every"),
    "zero_shot_string": ("[run]\nzero_shot_eval = 'yes'\n", "run.zero_shot_eval"),
    "seed_negative": ("[run]\nseed = -1\n", "run.seed"),
    "seed_huge": ("[run]\nseed = 18446744073709551616\n", "run.seed"),
    "task_seed_negative": ("[task]\nseed = -7\n", "task.seed"),
    "device_tpu": ("[model]\ndevice = 'tpu'\n", "model.device"),
    "kind_unknown": ("[model]\nkind = 'seq2seq'\n", "model.kind"),
    "dtype_unknown": ("[model]\ndtype = 'int8'\n", "model.dtype"),
    "name_empty": ("[model]\nname = ''\n", "model.name"),
    "name_table": ("[model]\nname = {a = 1}\n", "model.name"),
    "max_length_zero": ("[model]\nmax_length = 0\n", "model.max_length"),
    "template_no_placeholder": ("[task]\ntemplate = 'no placeholder'\n", "task.template"),
    "one_label_word": ("[task]\nlabel_words = ['only']\n", "task.label_words"),
    "empty_label_word": ("[task]\nlabel_words = ['a', ' ']\n", "task.label_words"),
    "label_words_tables": ("[task]\nlabel_words = [{a = 1}, {b = 2}]\n", "task.label_words"),
    "label_map_scalar": ("[task]\nlabel_map = 3\n", "task.label_map"),
    "label_map_nested": ("[task.label_map]\nneg = ['a']\n", "task.label_map"),
    "label_map_empty_word": ("[task.label_map]\nneg = ''\npos = 'good'\n", "task.label_map"),
    "n_train_negative": ("[task]\nn_train = -1\n", "task.n_train"),
    "k_shot_zero": ("[task]\nk_shot = 0\n", "task.k_shot"),
    "adapter_unknown": ("[adapter]\nmethod = 'adapterx'\n", "adapter.method"),
}

DATA: dict[str, str | bytes] = {
    "good.csv": GOOD_CSV,
    "header_only.csv": "text,label\n",
    "zero_bytes.csv": "",
    "no_label.csv": "text\nhello\nworld\n",
    "label_only.csv": "label\ngreat\nterrible\n",
    "latin1.csv": "text,label\ncaf\xe9 great,great\n".encode("latin-1"),
    "bad_line.jsonl": '{"text": "a", "label": "great"}\n{"text": \n',
    "not_objects.jsonl": "[1, 2]\n[3, 4]\n",
    "not_list.json": '{"a": 1}',
    "notes.txt": "great movie\n",
    "garbage.parquet": b"PAR1\x00\x01garbage",
    "one_label.csv": "text,label\n" + "".join(f"fun {i},great\n" for i in range(10)),
    "neg_pos.csv": "text,label\n" + "".join(f"fun {i},pos\nbad {i},neg\n" for i in range(10)),
    "one_two.csv": "text,label\n" + "".join(f"fun {i},2\nbad {i},1\n" for i in range(10)),
    "test_only/test.jsonl": '{"text": "a", "label": "great"}\n',
}


def _train(*extra: str, data: str = "good.csv", template: bool = True) -> list[str]:
    argv = ["train", "--model", "{model}", "--task", "file", "--data", f"{{w}}/{data}", "--quiet"]
    return argv + (["--set", TEMPLATE] if template else []) + list(extra)


Setup = Callable[[Any, Path], None]  # (monkeypatch, world folder)
Case = tuple[str, list[str], str | None, Setup | None]


def _readonly(monkeypatch: Any, root: Path) -> None:
    """Simulate a read-only file system under ``root`` (tests may run as root, where chmod is moot)."""
    real_access, real_statvfs = os.access, os.statvfs

    def access(path: Any, mode: int, *a: Any, **k: Any) -> bool:
        if str(path).startswith(str(root)) and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    class RO:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(os, "statvfs", lambda p: RO() if str(p).startswith(str(root)) else real_statvfs(p))


def _no_permission(monkeypatch: Any, root: Path) -> None:
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, m, *a, **k: False if str(p).startswith(str(root)) else real_access(p, m, *a, **k),
    )


def _disk_full(monkeypatch: Any, root: Path) -> None:
    """Every write of the run directory fails with ENOSPC (the first write is the config)."""
    import zoengine.io

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device", str(root))

    monkeypatch.setattr(zoengine.io, "atomic_path", full)
    monkeypatch.setattr(zoengine.io, "append_jsonl", full)
    monkeypatch.setattr("zoengine.run_control.append_jsonl", full, raising=False)


def _cases() -> list[Case]:
    cases: list[Case] = []
    for name, (_, fld) in CONFIGS.items():
        cases.append((f"config-{name}", ["train", "--config", f"{{w}}/configs/{name}.toml"], fld, None))
    cases += [
        ("config-missing", ["train", "--config", "{w}/configs/none.toml"], "--config", None),
        ("config-is-folder", ["train", "--config", "{w}/configs"], "--config", None),
    ]
    sets = {
        "run.steps=abc": "run.steps",
        "run.steps=1.5": "run.steps",
        "run.steps=0": "run.steps",
        "run.steps=-1": "run.steps",
        "run.steps=inf": "run.steps",
        "run.steps=": "run.steps",
        "run.batch_size=0": "run.batch_size",
        "run.zero_shot_eval=maybe": "run.zero_shot_eval",
        "run.seed=-1": "run.seed",
        "run.eval_every=-5": "run.eval_every",
        "task.seed=1099511627776": "task.seed",
        "optimizer.lr=nan": "optimizer.lr",
        "optimizer.lr=-inf": "optimizer.lr",
        "optimizer.lr=abc": "optimizer.lr",
        "optimizer.lr=1e400": "optimizer.lr",
        "optimizer.eps=0": "optimizer.eps",
        "optimizer.eps=inf": "optimizer.eps",
        "optimizer.weight_decay=-1": "optimizer.weight_decay",
        "optimizer.weight_decay=nan": "optimizer.weight_decay",
        "optimizer.lr_schedule=step": "optimizer.lr_schedule",
        "optimizer.warmup_steps=-1": "optimizer.warmup_steps",
        "model.kind=x": "model.kind",
        "model.dtype=int8": "model.dtype",
        "model.device=gpu": "model.device",
        "model.max_length=0": "model.max_length",
        "model.name=": "model.name",
        "model.unknown=1": "model.unknown",
        "run.unknown=1": "run.unknown",
        "task.n_dev=-1": "task.n_dev",
        "task.k_shot=0": "task.k_shot",
        "task.label_words=one": "task.label_words",
        "task.label_map=x": "task.label_map",
        "task.label_map=[1, 2]": "task.label_map",
        "task.template=abc": "task.template",
        "nosection.key=1": "nosection.key",
        "model=1": "model",
        "nonsense": "--set nonsense",
    }
    for item, fld in sets.items():
        cases.append((f"set-{item}", ["train", "--set", item], fld, None))
    flags = [
        (["--lr", "inf"], "optimizer.lr"),
        (["--lr", "nan"], "optimizer.lr"),
        (["--lr=-inf"], "optimizer.lr"),
        (["--lr", "0"], "optimizer.lr"),
        (["--lr=-1e-3"], "optimizer.lr"),
        (["--lr", "abc"], "optimizer.lr"),
        (["--lr", "1e400"], "optimizer.lr"),
        (["--eps", "inf"], "optimizer.eps"),
        (["--eps", "nan"], "optimizer.eps"),
        (["--eps", "0"], "optimizer.eps"),
        (["--steps", "0"], "run.steps"),
        (["--steps", "-3"], "run.steps"),
        (["--steps", "2.5"], "run.steps"),
        (["--steps", "many"], "run.steps"),
        (["--batch-size", "0"], "run.batch_size"),
        (["--eval-every", "-1"], "run.eval_every"),
        (["--seed", "x"], "run.seed"),
        (["--device", "tpu"], "model.device"),
        (["--adapter", "nope"], "adapter.method"),
        (["--optimizer", "nope"], "optimizer.name"),
        (["--model", ""], "model.name"),
        (["--model", "/no/such/model-dir"], "model.name"),
        (["--model", "{w}/good.csv"], "model.name"),
        (["--model", "{w}/configs"], "model.name"),
        (["--model", "bad id!!"], "model.name"),
        (["--model", "nobody-xyz/no-such-model"], "model.name"),
        (["--task", "nope"], "task.name"),
        (["--frobnicate"], None),
    ]
    for extra, fld in flags:
        cases.append((f"flag-{' '.join(extra)}", ["train", *extra], fld, None))
    cases += [
        ("cli-no-command", [], None, None),
        ("cli-unknown-command", ["frob"], None, None),
        ("cli-eval-split", ["eval", "--split", "train"], None, None),
        ("cli-export-checkpoint", ["export", "{runs}/dummy", "--checkpoint", "first"], None, None),
        ("cli-export-no-run", ["export"], None, None),
        ("cli-resume-no-run", ["resume"], None, None),
    ]
    data = [
        ("missing-file", _train(data="no_such.csv"), "task.path"),
        ("header-only", _train(data="header_only.csv"), "task.path"),
        ("zero-bytes", _train(data="zero_bytes.csv"), "task.path"),
        ("no-label-column", _train(data="no_label.csv"), "task.label_column"),
        ("no-text-column", _train(data="label_only.csv", template=False), "task.text_columns"),
        ("not-utf8", _train(data="latin1.csv"), "task.path"),
        ("bad-json-line", _train(data="bad_line.jsonl"), "task.path"),
        ("rows-not-objects", _train(data="not_objects.jsonl"), "task.path"),
        ("json-not-list", _train(data="not_list.json"), "task.path"),
        ("unsupported-type", _train(data="notes.txt"), "task.path"),
        ("garbage-parquet", _train(data="garbage.parquet"), "task.path"),
        ("folder-without-train", _train(data="test_only"), "task.path"),
        ("single-label", _train(data="one_label.csv"), "task.label_column"),
        (
            "labels-not-words",
            _train("--set", "task.label_words=terrible,great", data="neg_pos.csv"),
            "task.label_map",
        ),
        (
            "ints-not-indices",
            _train("--set", "task.label_words=no,yes", data="one_two.csv"),
            "task.label_map",
        ),
        ("ints-without-words", _train(data="one_two.csv"), "task.label_words"),
        ("label-map-misses-a-value", _train("--set", "task.label_map={great = 'great'}"), "task.label_map"),
        (
            "label-map-word-not-a-label-word",
            _train("--set", "task.label_words=a,b", "--set", "task.label_map={great = 'c', terrible = 'a'}"),
            "task.label_map",
        ),
        ("too-many-words", _train("--set", "task.label_words=great,terrible,meh"), "task.label_words"),
        ("repeated-words", _train("--set", "task.label_map={great = 'x', terrible = 'x'}"), "task.label_map"),
        ("template-unknown-column", _train("--set", "task.template={body} {label}"), "task.template"),
        ("template-label-only", _train("--set", "task.template={label} only"), "task.template"),
        ("template-twice-label", _train("--set", "task.template={text} {label} {label}"), "task.template"),
        ("template-format-spec", _train("--set", "task.template={text:>5} {label}"), "task.template"),
        ("label-column-missing", _train("--set", "task.label_column=y"), "task.label_column"),
        ("text-column-unknown", _train("--set", "task.text_columns=body"), "task.text_columns"),
        ("n-train-too-large", _train("--set", "task.n_train=1000"), "task.n_train"),
        ("n-train-zero", _train("--set", "task.n_train=0"), "task.n_train"),
        ("k-shot-too-large", _train("--set", "task.k_shot=50"), "task.k_shot"),
        (
            "no-test-left",
            _train("--set", "task.n_train=36", "--set", "task.n_dev=4", "--set", "task.n_test=5"),
            "task.n_test",
        ),
        ("file-task-without-path", ["train", "--task", "file", "--model", "{model}"], "task.path"),
    ]
    cases += [(f"data-{name}", argv, fld, None) for name, argv, fld in data]
    runs = [
        ("resume-missing", ["resume", "{runs}/none"], "run"),
        ("resume-no-config", ["resume", "{runs}/no_config"], "run"),
        ("resume-a-file", ["resume", "{runs}/a_file"], None),
        ("resume-non-utf8-config", ["resume", "{runs}/bad_utf8"], None),
        ("export-missing", ["export", "{runs}/none"], "run"),
        ("export-no-config", ["export", "{runs}/no_config"], "run"),
        ("export-a-file", ["export", "{runs}/a_file"], "run"),
        ("export-bad-format", ["export", "{runs}/no_ckpt", "--format", "onnx"], "--format"),
        ("export-no-checkpoint", ["export", "{runs}/no_ckpt", "--out", "{w}/fresh-out"], None),
        ("export-out-not-empty", ["export", "{runs}/no_ckpt", "--out", "{w}/full-out"], "--out"),
        ("export-out-is-a-file", ["export", "{runs}/no_ckpt", "--out", "{w}/good.csv"], "--out"),
        ("export-out-under-a-file", ["export", "{runs}/no_ckpt", "--out", "{w}/good.csv/sub"], "--out"),
        ("export-default-out-not-empty", ["export", "{runs}/no_ckpt"], "--out"),
        ("eval-run-missing", ["eval", "--run", "{runs}/none"], None),
        ("eval-run-no-config", ["eval", "--run", "{runs}/no_config"], None),
        ("eval-run-a-file", ["eval", "--run", "{runs}/a_file"], None),
    ]
    cases += [(f"rundir-{name}", argv, fld, None) for name, argv, fld in runs]
    ro: Setup = lambda mp, w: _readonly(mp, w / "ro")  # noqa: E731
    cases += [
        ("fs-output-is-a-file", _train("--output", "{w}/good.csv"), "run.output_dir", None),
        ("fs-output-under-a-file", _train("--output", "{w}/good.csv/run"), "run.output_dir", None),
        ("fs-output-read-only", _train("--output", "{w}/ro/run"), "run.output_dir", ro),
        ("fs-runs-home-read-only", _train(), "run.output_dir", lambda mp, w: _readonly(mp, w / "runs")),
        (
            "fs-output-no-permission",
            _train("--output", "{w}/ro/run"),
            "run.output_dir",
            lambda mp, w: _no_permission(mp, w / "ro"),
        ),
        ("fs-export-out-read-only", ["export", "{runs}/no_ckpt", "--out", "{w}/ro/x"], "--out", ro),
        (
            "fs-export-out-no-permission",
            ["export", "{runs}/no_ckpt", "--out", "{w}/ro/x"],
            "--out",
            lambda mp, w: _no_permission(mp, w / "ro"),
        ),
        (
            "fs-disk-full",
            _train("--output", "{w}/full-disk/run"),
            "run.output_dir",
            lambda mp, w: _disk_full(mp, w / "full-disk" / "run"),
        ),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs (configs, data, a tiny model, existing outputs) and a runs home with broken runs."""
    from conftest import make_tiny_llama, make_tiny_tokenizer

    w = tmp_path_factory.mktemp("bad-input")
    tok = make_tiny_tokenizer()
    make_tiny_llama(len(tok)).save_pretrained(w / "model")
    tok.save_pretrained(w / "model")
    for name, (content, _) in CONFIGS.items():
        _write(w / "configs" / f"{name}.toml", content)
    for name, content in DATA.items():
        _write(w / name, content)
    _write(w / "full-out" / "keep.txt", "precious")
    (w / "ro").mkdir()
    runs = w / "runs"
    _write(runs / "no_config" / "notes.txt", "not a run")
    _write(runs / "a_file", "just a file")
    _write(runs / "bad_utf8" / "config.toml", b"\xff\xfe[model]\n")
    _write(
        runs / "no_ckpt" / "config.toml", RunConfig().to_toml()
    )  # a run killed before its first checkpoint
    _write(runs / "no_ckpt" / "exports" / "native" / "adapter_config.json", "{}")
    return w


def _snapshot(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "argv", "field", "setup"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    world: Path,
    name: str,
    argv: list[str],
    field: str | None,
    setup: Callable[[Any, Path], None] | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = world / "runs"
    monkeypatch.setenv("ZOENGINE_RUNS", str(runs))
    args = [
        a.replace("{w}", str(world)).replace("{runs}", str(runs)).replace("{model}", str(world / "model"))
        for a in argv
    ]
    before = _snapshot(world)
    if setup is not None:
        setup(monkeypatch, world)
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own refusals (unknown flag, bad choice) exit 2 the same way
        code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    if field is not None:
        expected = field.replace("CFG", str(world / "configs" / f"{name.removeprefix('config-')}.toml"))
        assert lines[0].startswith(f"error: {expected}"), lines[0]
    monkeypatch.undo()
    after = _snapshot(world)
    # a run refused by a full disk may leave its (empty) output folder, outside the runs home
    created = [c for c in sorted(set(after) - set(before)) if not c.startswith("full-disk")]
    assert created == []
    assert {k: v for k, v in after.items() if k in before} == before
