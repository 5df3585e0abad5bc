"""Setup helpers: the CLI line, the "other options" parser, and what the catalog offers."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from zoengine.config import RunConfig
from zoengine.errors import ConfigError
from zotui import catalog
from zotui.screens.setup import as_text, cli_command, parse_extra


def test_cli_command_sets_only_what_differs_and_round_trips() -> None:
    cfg = RunConfig()
    cfg.set("optimizer.lr", "1e-5")
    cfg.set("task.label_words", "bad,good")
    cfg.set("adapter.method", "lora")
    cfg.set("adapter.r", "8")
    line = cli_command(cfg, RunConfig(), None)
    words = shlex.split(line)
    assert words[:2] == ["zoengine", "train"]
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert sorted(sets) == sorted(
        ["optimizer.lr=1e-05", "task.label_words=bad,good", "adapter.method=lora", "adapter.r=8"]
    )
    rebuilt = RunConfig()
    for item in sets:  # what the CLI does with each --set
        key, _, value = item.partition("=")
        rebuilt.set(key, value)
    assert rebuilt.to_dict() == cfg.to_dict()


def test_cli_command_names_the_config_file(tmp_path: Path) -> None:
    base = RunConfig()
    line = cli_command(base, base, tmp_path / "my run.toml")
    assert line == f"zoengine train --config '{tmp_path / 'my run.toml'}'"


def test_parse_extra_keeps_lists_together() -> None:
    assert parse_extra("r=8, alpha=16, tt_shape=[4, 8], name=x") == [
        ("r", "8"),
        ("alpha", "16"),
        ("tt_shape", "[4, 8]"),
        ("name", "x"),
    ]
    assert parse_extra("") == []
    with pytest.raises(ConfigError):
        parse_extra("rank 8")


@pytest.mark.parametrize(
    ("value", "text"), [(None, ""), (True, "true"), (["a", "b"], "a, b"), ([4, 8], "[4, 8]"), (1e-6, "1e-06")]
)
def test_as_text(value: object, text: str) -> None:
    assert as_text(value) == text


def test_catalog_offers_every_engine_method_with_its_options_and_preset() -> None:
    from zoengine.adapters import ADAPTERS
    from zoengine.exporting import FORMAT_HELP
    from zoengine.optim import OPTIMIZERS

    optimizers = catalog.optimizer_specs()
    assert list(optimizers) == list(OPTIMIZERS)
    adazeta = optimizers["adazeta"]
    assert {"alpha", "q_max", "q_target"} <= {o.key for o in adazeta.options}
    assert not {"lr", "eps"} & {o.key for o in adazeta.options}  # common keys have their own fields
    assert list(adazeta.presets.values()) == [OPTIMIZERS["adazeta"].preset]
    adapters = catalog.adapter_specs()
    assert list(adapters) == list(ADAPTERS)
    sora = {o.key: o for o in adapters["sora"].options}
    assert sora["gate_init"].choices == ("ones", "randn") and sora["lambda"].help
    assert catalog.export_formats() == FORMAT_HELP


def test_catalog_zoo_and_tasks() -> None:
    models = [c.value for c in catalog.model_choices()]
    assert catalog.DEFAULT_MODEL in models and "minilm-l6" in models
    names = [c.value for c in catalog.task_choices()]
    assert names[0] == catalog.DEFAULT_TASK and "sst2" in names and names[-1] == "file"
    assert catalog.is_fetched("/some/local/dir") is None  # not a zoo name


def test_trainable_count_and_preview_on_a_local_model(tiny_llama_dir: Path, tmp_path: Path) -> None:
    sentiment_csv = tmp_path / "reviews.csv"
    rows = [f"a fine film {i},positive" for i in range(10)] + [f"a dull film {i},negative" for i in range(10)]
    sentiment_csv.write_text("text,label\n" + "\n".join(rows) + "\n")
    cfg = RunConfig()
    cfg.set("model.name", str(tiny_llama_dir))
    cfg.set("task.name", "file")
    cfg.set("task.path", str(sentiment_csv))
    cfg.set("task.n_train", 8)
    cfg.set("task.n_dev", 4)
    cfg.set("task.n_test", 4)
    total = catalog.trainable_count(cfg)
    assert total is not None and total[0] == total[1] > 0  # full fine-tuning: everything trains
    cfg.set("adapter.method", "lora")
    cfg.set("adapter.r", 2)
    counts = catalog.trainable_count(cfg)
    assert counts is not None
    assert 0 < counts.trainable < counts.total == total[1]  # LoRA matrices, counted against the base model
    assert (counts.first_block, counts.n_blocks) == (0, 2)  # LoRA on every block: nothing to share
    cfg.set("adapter.layers", "top:1")
    top = catalog.trainable_count(cfg)  # the meta model's requires_grad flags place the adapter
    assert top is not None and 0 < top.trainable < counts.trainable
    assert (top.first_block, top.n_blocks) == (1, 2)
    assert total.first_block == 0  # full fine-tuning trains the embeddings
    preview = catalog.task_preview(cfg).splitlines()
    assert "splits: train 8, dev 4, test 4" in preview
    assert any(line.startswith("label words: ") for line in preview)


def test_app_default_config_is_a_papers_method_at_its_calibrated_lr() -> None:
    cfg = catalog.default_config().validate()
    assert cfg.adapter.method in ("lora_xs", "sora", "tt")
    assert cfg.optimizer.name in ("mezo_sgd", "adazeta", "zo_adamu")
    assert cfg.optimizer.lr is None and cfg.run.steps == 300  # lr: the calibrated rule
    assert cfg.task.n_train is None and cfg.task.n_dev is None  # split sizes follow the data
    line = cli_command(cfg, RunConfig(), None)  # "show CLI" spells out what differs from the CLI default
    assert f"--set adapter.method={cfg.adapter.method}" in line
    example = RunConfig.load(Path(__file__).resolve().parents[2] / "examples" / "rotten-tomatoes-tt.toml")
    assert (example.adapter.method, example.optimizer.name, example.optimizer.lr, example.run.steps) == (
        cfg.adapter.method, cfg.optimizer.name, cfg.optimizer.lr, cfg.run.steps
    )  # the README's measured default run is the app's default


@pytest.mark.parametrize(
    ("optimizer", "options", "share", "counts", "expected"),
    [
        ("mezo_sgd", {}, True, (10, 100, 15, 30), "step cost ≈ 0.76 × its 2·Q forwards at Q=1 (blocks 0-14 of 30 shared)"),
        ("mezo_sgd", {"q": 8}, True, (10, 100, 15, 30), "≈ 0.55 × its 2·Q forwards at Q=8 (blocks 0-14 of 30 shared)"),
        ("mezo_sgd", {}, True, (10, 100, 1, 2), "at Q=1 (block 0 of 2 shared)"),
        ("adazeta", {}, True, (10, 100, 29, 30), "at Q=1 (blocks 0-28 of 30 shared; Q grows to 15 with the epochs"),
        ("mezo_sgd", {}, True, (10, 100, 0, 30), "step cost = its 2·Q forwards (a trainable tensor in block 0"),
        ("mezo_sgd", {}, False, (10, 100, 15, 30), "step cost = its 2·Q forwards (run.share_prefix is off"),
        ("mezo_sgd", {}, True, (10, 100, 0, 0), "no stack of repeated blocks"),
        ("fo_adamw", {}, True, (10, 100, 15, 30), "first-order"),
        ("mezo_sgd", {"q": 0}, True, (10, 100, 15, 30), "step cost: -- (fix optimizer.q first)"),
        ("mezo_sgd", {}, True, (10, 100), ""),  # a count without the block layout: no line
    ],
)  # fmt: skip
def test_step_cost_line(optimizer, options, share, counts, expected) -> None:
    cfg = RunConfig()
    cfg.optimizer.name = optimizer
    cfg.optimizer.options.update(options)
    cfg.run.share_prefix = share
    line = catalog.step_cost_line(cfg, catalog.ParamCount(*counts))
    assert expected in line if expected else line == ""
