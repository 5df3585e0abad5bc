"""One schema per method: the coercer, the range checks, and the surfaces generated from it."""

from __future__ import annotations

import dataclasses

import pytest

from zoengine import schema
from zoengine.adapters import ADAPTERS
from zoengine.cli import main
from zoengine.config import AdapterConfig, OptimizerConfig, RunConfig
from zoengine.errors import ConfigError
from zoengine.optim import OPTIMIZERS
from zoengine.optim.options import Options
from zoengine.schema import setting


@dataclasses.dataclass
class Example:
    rank: int = setting(8, help="rank", gt=0)
    share: float = setting(0.3, help="share", ge=0, lt=1)
    mode: str = setting("a", help="mode", choices=("a", "b"))
    shape: list[int] | None = setting(None, help="modes", ge=1)
    lam: float | None = setting(None, help="strength", ge=0, key="lambda")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rank": 0}, "example.rank: must be > 0 (got 0)"),
        ({"rank": 2.5}, "example.rank: expected an integer (got 2.5)"),
        ({"rank": "many"}, "example.rank: expected an integer (got 'many')"),
        ({"share": 1.0}, "example.share: must be in [0, 1) (got 1.0)"),
        ({"share": float("inf")}, "example.share: must be a finite number in [0, 1) (got inf)"),
        ({"mode": "c"}, "example.mode: must be one of a, b (got 'c')"),
        ({"shape": "4, 0"}, "example.shape: expected integers >= 1 (got [4, 0])"),
        ({"lambda": -1}, "example.lambda: must be >= 0 (got -1.0)"),
        ({"lam": 1}, "example.lam: unknown option for ex; allowed: rank, share, mode, shape, lambda"),
    ],
)
def test_build_refuses_with_one_line_naming_the_field(values, message) -> None:
    with pytest.raises(ConfigError) as err:
        schema.build(Example, values, "example", "ex")
    assert err.value.one_line() == message


def test_build_coerces_text_and_keeps_user_keys() -> None:
    built = schema.build(
        Example, {"rank": "4", "shape": "[2, 3]", "lambda": "0.1", "mode": "b"}, "example", "ex"
    )
    assert schema.as_options(built) == {"rank": 4, "share": 0.3, "mode": "b", "shape": [2, 3], "lambda": 0.1}
    assert [s.key for s in schema.describe(Example)] == ["rank", "share", "mode", "shape", "lambda"]
    assert schema.describe(Example)[1].help_text() == "share (in [0, 1))"


def every_method() -> list[tuple[str, str, list[schema.Setting]]]:
    return [("optimizer", n, s.settings()) for n, s in OPTIMIZERS.items()] + [
        ("adapter", n, m.settings()) for n, m in ADAPTERS.items()
    ]


@pytest.mark.parametrize(("section", "name", "settings"), every_method(), ids=lambda v: str(v)[:20])
def test_every_method_default_is_valid_and_every_setting_has_help(section, name, settings) -> None:
    for s in settings:
        assert s.help, (name, s.key)
    cfg = RunConfig()
    if section == "optimizer":
        cfg.optimizer = OptimizerConfig(
            name=name, options={s.key: s.default for s in settings if s.default is not None}
        )
    else:
        cfg.adapter = AdapterConfig(
            method=name,
            targets=["model.norm"] if name == "subset" else None,
            options={s.key: s.default for s in settings if s.default is not None},
        )
    cfg.validate()  # writing every default out explicitly is a valid config


def test_optimizer_schemas_own_presets_and_validate_them() -> None:
    for name, spec in OPTIMIZERS.items():
        assert issubclass(spec.options, Options) and spec.presets, name


def test_methods_command_prints_every_option_with_its_default_and_help(capsys) -> None:
    """``zoengine methods NAME`` is generated from the same schema as the app's form."""
    for _section, name, settings in every_method():
        assert main(["methods", name]) == 0
        out = capsys.readouterr().out
        for s in settings:
            assert s.line() in out, (name, s.line())
        others = {o.key for _, n, ss in every_method() if n != name for o in ss} - {s.key for s in settings}
        for key in others:
            assert f"    {key} = " not in out, (name, key)


def test_config_flags_help_comes_from_the_config_schema(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for key in ("optimizer.eps", "run.steps", "run.batch_size", "run.eval_every", "run.seed"):
        section, field_name = key.split(".")
        f = {f.name: f for f in dataclasses.fields(getattr(RunConfig(), section))}[field_name]
        s = schema.describe(type(getattr(RunConfig(), section)))
        text = next(x for x in s if x.key == field_name).help_text()
        assert " ".join(text.split()) in out, key
        assert f"default {schema.default_of(f)}" in out, key
