"""``model.device_map``: a base split over "devices" by accelerate trains exactly like one placement.

No second accelerator exists on CPU, so the forced two-part map keeps ``model.layers.1`` offloaded to
disk (weights on ``meta`` until accelerate's hooks load them for the forward) and the rest resident
on CPU: a real split with hooks moving tensors, and a LoRA adapter created on the offloaded layer's
execution device. One ZO step must give the same loss and update as the plain single placement.
"""

from __future__ import annotations

import pytest
import torch

from test_engine import NEG, POS, tiny_config
from zoengine.adapters import apply_adapter
from zoengine.adapters.export import base_weights_hash
from zoengine.config import ModelConfig, RunConfig, check_device_map
from zoengine.engine import Run
from zoengine.errors import AdapterError, ConfigError, ModelError
from zoengine.models import load_model
from zoengine.objectives import Objective
from zoengine.optim.zo_sgd import MezoSGD

TWO_PART = {
    "model.embed_tokens": "cpu",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "cpu",
    "lm_head": "cpu",
}


def test_device_map_values_parse_and_bad_ones_are_one_line():
    assert check_device_map(None) is None and check_device_map("none") is None
    assert check_device_map("auto") == "auto"
    assert check_device_map('{"model.layers.0": "cuda:0", "lm_head": 1}') == {
        "model.layers.0": "cuda:0",
        "lm_head": "1",
    }
    assert check_device_map("model.layers.0=cpu, lm_head=disk") == {
        "model.layers.0": "cpu",
        "lm_head": "disk",
    }
    cfg = RunConfig()
    cfg.set("model.device_map", "auto")
    assert cfg.model.device_map == "auto"
    cfg.set("model.device_map", {"model": "cpu"})
    assert cfg.model.device_map == {"model": "cpu"}
    cfg.set("model.device_map", "none")
    assert cfg.model.device_map is None
    for bad in ("everywhere", {"model": "gpu0"}, {"model": True}, {}):
        with pytest.raises(ConfigError) as info:
            RunConfig().set("model.device_map", bad)
        assert info.value.field == "model.device_map" and "\n" not in str(info.value)


def test_config_with_device_map_round_trips_through_toml(tiny_llama_dir, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nfun,positive\n")
    cfg = tiny_config(tiny_llama_dir, data, tmp_path, **{"model.device_map": dict(TWO_PART)})
    again = RunConfig.from_toml(cfg.to_toml()).validate()
    assert again.model.device_map == TWO_PART


class _Task:
    label_words = ["terrible", "great"]
    label_names = ["negative", "positive"]
    kind = "classification"
    choices: dict = {}

    def prompt(self, ex):
        return f"{ex.fields['text']} it was"

    def suffix(self, ex):
        return "."

    def options(self, ex):
        return [" " + w for w in self.label_words]


class _Ex:
    def __init__(self, text, label):
        self.fields, self.label = {"text": text}, label


EXAMPLES = [_Ex("the movie was fun", 1), _Ex("boring plot", 0), _Ex("a really good film", 1), _Ex("awful", 0)]


def _one_step(model_dir, device_map, method="lora"):
    loaded = load_model(ModelConfig(name=str(model_dir), device="cpu", device_map=device_map))
    handle = apply_adapter(loaded.model, RunConfig().adapter.__class__(method=method), seed=5)
    obj = Objective(loaded, _Task(), max_length=32)
    batch = obj.make_batch(EXAMPLES)
    opt = MezoSGD(handle.param_groups(0.0), lr=1e-2, eps=1e-3, seed=11)
    before = {n: p.detach().clone() for n, p in handle.named_trainable()}
    with torch.no_grad():
        loss = float(opt.step(lambda: obj.loss(batch)))
        after_loss = float(obj.loss(batch))
    update = {n: p.detach() - before[n] for n, p in handle.named_trainable()}
    return loaded, handle, loss, after_loss, update


def test_zo_step_under_two_part_map_equals_single_placement(tiny_llama_dir):
    plain, _, loss0, after0, upd0 = _one_step(tiny_llama_dir, None)
    loaded, handle, loss1, after1, upd1 = _one_step(tiny_llama_dir, dict(TWO_PART))
    assert base_weights_hash(loaded.model) == base_weights_hash(plain.model)  # reads offloaded values
    model = loaded.model
    q = model.model.layers[1].self_attn.q_proj
    assert q.weight.device.type == "meta" and getattr(q, "_hf_hook", None) is not None  # really offloaded
    assert all(p.device.type == "cpu" for _, p in handle.named_trainable())  # adapters on exec device
    assert loaded.device == torch.device("cpu")
    assert loss1 == pytest.approx(loss0, abs=1e-6) and after1 == pytest.approx(after0, abs=1e-6)
    assert upd0.keys() == upd1.keys()
    assert any(float(u.abs().max()) > 0 for u in upd0.values())
    for name in upd0:
        torch.testing.assert_close(upd1[name], upd0[name], rtol=0, atol=1e-7)


def test_all_cpu_map_through_transformers_matches(tiny_llama_dir):
    flat = {k: "cpu" for k in TWO_PART}
    _, _, loss0, _, upd0 = _one_step(tiny_llama_dir, None, method="full")
    _, _, loss1, _, upd1 = _one_step(tiny_llama_dir, flat, method="full")
    assert loss1 == pytest.approx(loss0, abs=1e-6)
    for name in upd0:
        torch.testing.assert_close(upd1[name], upd0[name], rtol=0, atol=1e-7)


def test_full_finetuning_of_offloaded_layers_is_refused(tiny_llama_dir):
    loaded = load_model(ModelConfig(name=str(tiny_llama_dir), device="cpu", device_map=dict(TWO_PART)))
    with pytest.raises(AdapterError) as info:
        apply_adapter(loaded.model, RunConfig().adapter.__class__(method="full"), seed=0)
    assert info.value.field == "model.device_map" and "\n" not in str(info.value)


def test_map_naming_cuda_without_cuda_is_one_line(tiny_llama_dir):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ModelError) as info:
        load_model(ModelConfig(name=str(tiny_llama_dir), device_map={"model": "cuda:1"}))
    assert info.value.field == "model.device_map"


def test_engine_run_under_two_part_map_logs_the_same_losses(tiny_llama_dir, tmp_path):
    import json

    data = tmp_path / "s.csv"
    data.write_text(
        "text,label\n"
        + "".join(f"{t},positive\n" for t in POS * 2)
        + "".join(f"{t},negative\n" for t in NEG * 2)
    )
    losses = []
    for name, dm in (("plain", None), ("mapped", dict(TWO_PART))):
        extra = {"adapter.method": "lora", "run.steps": 3, "run.eval_every": 3, "run.checkpoint_every": 3}
        extra.update({"task.n_train": 12, "task.n_dev": 4, "task.n_test": 4, "run.batch_size": 4})
        extra["run.output_dir"] = str(tmp_path / name)
        if dm:
            extra["model.device_map"] = dm
        run = Run(tiny_config(tiny_llama_dir, data, tmp_path, **extra))
        run.run()
        assert run.status == "finished", run.error
        rows = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in rows if r.get("event") == "step"])
    assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], abs=1e-6)
