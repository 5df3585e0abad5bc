"""Config: TOML round trip, dotted overrides, one-line validation errors naming the field."""

from __future__ import annotations

import pytest

from zoengine.config import RunConfig
from zoengine.errors import ConfigError


def test_toml_round_trip_keeps_method_options_flat(tmp_path):
    cfg = RunConfig()
    cfg.set("optimizer.lr", "2e-5")
    cfg.set("optimizer.q_max", "15")
    cfg.set("adapter.method", "full")
    cfg.set("task.label_words", "bad,good")
    path = tmp_path / "run.toml"
    cfg.save(path)
    text = path.read_text()
    assert "q_max = 15" in text and "[optimizer]" in text
    back = RunConfig.load(path)
    assert back.to_dict() == cfg.to_dict()
    assert back.optimizer.lr == 2e-5
    assert back.optimizer.options == {"q_max": 15}
    assert back.task.label_words == ["bad", "good"]


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("optimizer.lr", "0", "optimizer.lr"),
        ("optimizer.lr", "-1", "optimizer.lr"),
        ("optimizer.eps", "0", "optimizer.eps"),
        ("run.steps", "0", "run.steps"),
        ("run.batch_size", "-3", "run.batch_size"),
        ("task.template", "no placeholder", "task.template"),
        ("task.label_words", "great", "task.label_words"),
        ("model.kind", "seq2seq", "model.kind"),
        ("model.dtype", "int4", "model.dtype"),
        ("model.device", "tpu", "model.device"),
        ("optimizer.lr_schedule", "step", "optimizer.lr_schedule"),
        ("task.n_dev", "-1", "task.n_dev"),
        ("run.nproc", "0", "run.nproc"),
        ("run.nproc", "-2", "run.nproc"),
    ],
)
def test_bad_values_name_the_field(key, value, field):
    cfg = RunConfig()
    cfg.set(key, value)
    with pytest.raises(ConfigError) as info:
        cfg.validate()
    assert info.value.field == field
    assert "\n" not in str(info.value) and str(info.value).startswith(field)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("run.steps", "many"),
        ("run.steps", "1.5"),
        ("optimizer.lr", "fast"),
        ("run.zero_shot_eval", "3"),
        ("run.nproc", "two"),
        ("run.nproc", "1.5"),
        ("run.nproc", "true"),
    ],
)
def test_type_errors_are_one_line(key, value):
    with pytest.raises(ConfigError) as info:
        RunConfig().set(key, value)
    assert info.value.field == key and "expected" in str(info.value)


def test_unknown_section_and_key():
    with pytest.raises(ConfigError, match="unknown section"):
        RunConfig.from_dict({"trainer": {"x": 1}})
    with pytest.raises(ConfigError, match="unknown key"):
        RunConfig().set("run.epochs", "3")
    with pytest.raises(ConfigError, match="section.key"):
        RunConfig().set("lr", "3")


def test_bad_toml_is_one_line():
    with pytest.raises(ConfigError) as info:
        RunConfig.from_toml("[model\nname=", source="x.toml")
    assert info.value.field == "x.toml"
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        RunConfig.load(tmp_path / "nope.toml")


def test_hugging_face_names_are_accepted_for_ours():
    cfg = RunConfig.from_toml(
        """
[run]
max_steps = 40
eval_steps = 10
save_steps = 20
per_device_train_batch_size = 4
[optimizer]
learning_rate = 3e-4
[adapter]
method = "lora"
target_modules = ["q_proj", "v_proj"]
lora_alpha = 32
"""
    ).validate()
    assert (cfg.run.steps, cfg.run.eval_every, cfg.run.checkpoint_every, cfg.run.batch_size) == (40, 10, 20, 4)
    assert cfg.optimizer.lr == 3e-4
    assert cfg.adapter.targets == ["q_proj", "v_proj"] and cfg.adapter.options["alpha"] == 32
    cfg.set("run.max_steps", "7")
    assert cfg.run.steps == 7 and "max_steps" not in cfg.to_toml()  # saved under our names


def test_nproc_defaults_to_one_and_round_trips(tmp_path):
    assert RunConfig().run.nproc == 1
    cfg = RunConfig()
    cfg.set("run.nproc", "4")
    path = tmp_path / "run.toml"
    cfg.validate().save(path)
    assert "nproc = 4" in path.read_text() and RunConfig.load(path).run.nproc == 4
