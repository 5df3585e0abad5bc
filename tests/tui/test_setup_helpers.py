"""Setup helpers: the CLI line, the "other options" parser, and the catalog's fallbacks."""

from __future__ import annotations

import shlex
import sys
import types
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


def test_catalog_falls_back_when_modules_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("assets", "tasks", "optim", "adapters", "models", "exporting"):
        monkeypatch.setitem(sys.modules, f"zoengine.{name}", None)  # import raises ImportError
    assert [c.value for c in catalog.model_choices()] == [catalog.DEFAULT_MODEL]
    names = [c.value for c in catalog.task_choices()]
    assert names[0] == catalog.DEFAULT_TASK and "sst2" in names and names[-1] == "file"
    assert list(catalog.optimizer_specs()) == ["mezo_sgd"]
    assert catalog.trainable_count(RunConfig()) is None and catalog.task_preview(RunConfig()) is None
    assert catalog.missing_assets(RunConfig()) == []
    assert list(catalog.export_formats()) == ["native", "peft-lora", "merged"]


def test_catalog_reads_specs_in_both_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    @dataclasses.dataclass
    class Opts:
        q: int = dataclasses.field(default=1, metadata={"help": "queries per step"})

    optim = types.ModuleType("zoengine.optim")
    optim.OPTIMIZERS = {"m": types.SimpleNamespace(description="d", options=Opts, preset={"lr": 1e-4})}  # type: ignore[attr-defined]
    adapters = types.ModuleType("zoengine.adapters")
    adapters.ADAPTERS = {  # type: ignore[attr-defined]
        "lora": types.SimpleNamespace(
            description="low rank",
            options=(types.SimpleNamespace(name="r", default=8, help="rank", choices=None),),
        )
    }
    monkeypatch.setitem(sys.modules, "zoengine.optim", optim)
    monkeypatch.setitem(sys.modules, "zoengine.adapters", adapters)
    spec = catalog.optimizer_specs()["m"]
    assert [(o.key, o.default, o.help) for o in spec.options] == [("q", 1, "queries per step")]
    assert list(spec.presets.values()) == [{"lr": 1e-4}]
    assert [(o.key, o.default) for o in catalog.adapter_specs()["lora"].options] == [("r", 8)]
