"""Load a model + tokenizer from a zoo name, a hub id, a local directory or a ``.gguf`` file.

    loaded = load_model(ModelConfig(name="smollm2-135m-instruct"), label_texts=["terrible", "great"])
    loaded.kind   # "causal_lm" | "masked_lm" | "classifier"

dtype/device policy: float32 on CPU; on CUDA the frozen base is bf16 (or fp16) while trainable
tensors are created in float32 by the adapters, so the +eps/-2eps/+eps perturbation restores
them exactly. Encoders without a trained classification head (e.g. all-MiniLM-L6-v2) get a
head initialised from the embeddings of the label texts, so training starts above chance.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoengine.config import ModelConfig
from zoengine.errors import ModelError

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    kind: str  # causal_lm | masked_lm | classifier
    model_id: str  # the name the user gave
    source: str  # zoo | hub | local | gguf
    device: torch.device
    dtype: torch.dtype

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class EncoderClassifier(nn.Module):
    """Encoder + mean pooling + linear head, for encoders that ship without a classifier.

    The head starts as cosine similarity to the mean-pooled embeddings of the label texts
    (scaled), i.e. zero-shot embedding classification; training then adjusts it.
    """

    def __init__(self, encoder: nn.Module, num_labels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        hidden = encoder.config.hidden_size
        self.classifier = nn.Linear(hidden, num_labels)
        self.scale = scale

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        h = out.last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(h.device, h.dtype)
        mean = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return nn.functional.normalize(mean.float(), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> torch.Tensor:
        return self.classifier(self.pooled(input_ids, attention_mask))  # (B, C)

    @torch.no_grad()
    def init_head_from_texts(self, tokenizer: Any, texts: list[str]) -> None:
        enc = tokenizer(texts, padding=True, return_tensors="pt")
        device = next(self.encoder.parameters()).device
        emb = self.pooled(enc["input_ids"].to(device), enc["attention_mask"].to(device))  # (C, H)
        self.classifier.weight.copy_(emb * self.scale)
        self.classifier.bias.zero_()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            "CUDA was requested but no CUDA device is available; use cpu or auto", field="model.device"
        )
    return dev


def _map_main_device(device_map: str | dict[str, str]) -> torch.device:
    """Device that decides the dtype under a device map: CUDA if the map uses (or may use) a GPU."""
    if isinstance(device_map, str):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for dev in device_map.values():
        text = str(dev)
        if text.isdigit() or text.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ModelError(
                    f"model.device_map names {text} but no CUDA device is available", field="model.device_map"
                )
            return torch.device("cuda")
    return torch.device("cpu")


def execution_device(module: nn.Module) -> torch.device | None:
    """Where accelerate runs ``module`` (its own or its nearest hooked child's ``_hf_hook``), or None."""
    for sub in module.modules():
        hook = getattr(sub, "_hf_hook", None)
        dev = getattr(hook, "execution_device", None)
        if dev is not None:
            return torch.device("cuda", dev) if isinstance(dev, int) else torch.device(dev)
    return None


def input_device(model: nn.Module) -> torch.device:
    """Device the token ids go to: the input embeddings' execution device (device_map) or weight device."""
    try:
        emb = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        emb = None
    if emb is None:
        emb = model
    dev = execution_device(emb)
    if dev is None:
        dev = next(emb.parameters()).device
    return torch.device("cpu") if dev.type == "meta" else dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def _zoo_names() -> list[str]:
    try:
        from zoengine import assets

        return [a.name for a in assets.list_assets() if a.kind == "model"]
    except Exception:  # assets module unavailable: still give a useful message
        return ["smollm2-135m-instruct", "minilm-l6"]


def resolve_source(name: str) -> tuple[str, str, str | None, str | None]:
    """Map a model name to ``(source, path_or_id, gguf_file, zoo_model_kind)``."""
    from zoengine import assets

    if name in getattr(assets, "CATALOGUE", {}):
        asset = assets.get_asset(name)
        if asset.kind != "model":
            raise ModelError(
                f"{name!r} is a data set, not a model; zoo models: {', '.join(_zoo_names())}",
                field="model.name",
            )
        path = assets.ensure(name)
        return "zoo", str(path), None, asset.extra.get("model_kind")
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelError(f"expected a model directory or a .gguf file, got {name}", field="model.name")
        return "gguf", str(path.parent), path.name, None
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"directory has no config.json: {path}", field="model.name")
        return "local", str(path), None, None
    looks_like_path = name.startswith((".", "/", "~")) or name.endswith(".gguf") or name.count("/") > 1
    if looks_like_path:
        raise ModelError(f"file or directory not found: {name}", field="model.name")
    if not _HUB_ID.match(name):
        raise ModelError(
            f"not a zoo name, local path or hub id: {name!r}; zoo models: {', '.join(_zoo_names())}",
            field="model.name",
        )
    return "hub", name, None, None


def detect_kind(config: Any, zoo_kind: str | None) -> str:
    archs = " ".join(getattr(config, "architectures", None) or [])
    if zoo_kind == "causal_lm" or "CausalLM" in archs or "LMHeadModel" in archs:
        return "causal_lm"
    if "MaskedLM" in archs:
        return "masked_lm"
    if "SequenceClassification" in archs:
        return "classifier"
    if getattr(config, "is_decoder", False) or getattr(config, "model_type", "") in (
        "llama",
        "gpt2",
        "opt",
        "qwen2",
        "mistral",
    ):
        return "causal_lm"
    return "classifier"


def load_model(cfg: ModelConfig, *, label_texts: list[str] | None = None) -> LoadedModel:
    """Load model and tokenizer for ``cfg``; ``label_texts`` initialise an encoder's new head."""
    import transformers

    transformers.logging.set_verbosity_error()
    source, where, gguf_file, zoo_kind = resolve_source(cfg.name)
    device_map = getattr(cfg, "device_map", None)
    device = resolve_device(cfg.device) if not device_map else _map_main_device(device_map)
    dtype = resolve_dtype(cfg.dtype, device)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = transformers.AutoConfig.from_pretrained(where, **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
    except OSError as exc:
        if source == "hub":
            raise ModelError(
                f"cannot load {cfg.name!r} from the hub (offline or unknown id); "
                f"zoo models that work offline: {', '.join(_zoo_names())}",
                field="model.name",
            ) from exc
        raise ModelError(f"cannot load {where}: {str(exc).splitlines()[0]}", field="model.name") from exc
    kind = cfg.kind if cfg.kind != "auto" else detect_kind(config, zoo_kind)
    weight_kwargs = {**kwargs, "device_map": device_map} if device_map else kwargs
    if isinstance(device_map, dict) and "disk" in device_map.values():
        import tempfile

        weight_kwargs["offload_folder"] = tempfile.mkdtemp(prefix="zoengine-offload-")
    try:
        model = _load_weights(transformers, where, kind, dtype, weight_kwargs, cfg.name, label_texts, tokenizer)
    except (ValueError, KeyError, RuntimeError) as exc:
        if not device_map:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"cannot place the model with this device map: {first}", field="model.device_map") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if device_map:
        device = input_device(model)
    else:
        model.to(device)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, tokenizer, kind, cfg.name, source, device, dtype)


def _load_weights(
    transformers: Any,
    where: str,
    kind: str,
    dtype: torch.dtype,
    kwargs: dict[str, Any],
    name: str,
    label_texts: list[str] | None,
    tokenizer: Any,
) -> nn.Module:
    auto = {
        "causal_lm": transformers.AutoModelForCausalLM,
        "masked_lm": transformers.AutoModelForMaskedLM,
    }
    try:
        if kind in auto:
            return auto[kind].from_pretrained(where, dtype=dtype, **kwargs)
        config = transformers.AutoConfig.from_pretrained(
            where, **{k: v for k, v in kwargs.items() if k != "device_map"}
        )
        archs = " ".join(getattr(config, "architectures", None) or [])
        if "SequenceClassification" in archs:
            return transformers.AutoModelForSequenceClassification.from_pretrained(
                where, dtype=dtype, **kwargs
            )
        if not label_texts:
            raise ModelError(
                "an encoder without a classification head needs the task's label words",
                field="task.label_words",
            )
        encoder = transformers.AutoModel.from_pretrained(where, dtype=dtype, **kwargs)
        model = EncoderClassifier(encoder, num_labels=len(label_texts))
        if "device_map" in kwargs:  # the head sits with the encoder's last layers
            last = [p.device for p in encoder.parameters() if p.device.type != "meta"]
            model.classifier.to(device=last[-1] if last else "cpu")
        model.init_head_from_texts(tokenizer, label_texts)
        return model
    except OSError as exc:
        raise ModelError(
            f"cannot load weights of {name!r}: {str(exc).splitlines()[0]}", field="model.name"
        ) from exc
