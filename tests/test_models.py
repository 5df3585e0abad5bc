"""Model loading: local dirs, kinds, dtype/device policy and one-line errors naming model.name."""

from __future__ import annotations

import pytest
import torch

from zoengine.config import ModelConfig
from zoengine.errors import ModelError
from zoengine.models import detect_kind, load_model, resolve_dtype


def test_local_directory_loads_frozen_float32(tiny_llama_dir):
    loaded = load_model(ModelConfig(name=str(tiny_llama_dir)))
    assert loaded.kind == "causal_lm" and loaded.source == "local"
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token is not None


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("./no/such/dir", "not found"),
        ("/abs/missing/model.gguf", "not found"),
        ("bad name with spaces", "not a zoo name"),
    ],
)
def test_bad_model_names(name, needle):
    with pytest.raises(ModelError) as info:
        load_model(ModelConfig(name=name))
    assert info.value.field == "model.name" and needle in str(info.value) and "\n" not in str(info.value)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_model(ModelConfig(name=str(tmp_path)))


def test_hub_id_offline_names_zoo_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_model(ModelConfig(name="someorg/some-model-that-is-not-cached"))
    assert "smollm2-135m-instruct" in str(info.value)


def test_cuda_requested_without_cuda(tiny_llama_dir):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ModelError) as info:
        load_model(ModelConfig(name=str(tiny_llama_dir), device="cuda"))
    assert info.value.field == "model.device"


def test_dtype_policy():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_detect_kind():
    from transformers import BertConfig, LlamaConfig

    assert detect_kind(LlamaConfig(), None) == "causal_lm"
    assert detect_kind(BertConfig(architectures=["BertForMaskedLM"]), None) == "masked_lm"
    assert detect_kind(BertConfig(architectures=["BertModel"]), None) == "classifier"
    assert detect_kind(BertConfig(), "causal_lm") == "causal_lm"
