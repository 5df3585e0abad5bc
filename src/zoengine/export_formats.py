"""The one export registry: each format says who loads it and which (adapter method, model kind)
pairs it can write exactly. The CLI (``--format`` choices, the one-line refusal), the app's export
screen (``zotui.catalog.export_formats``) and the README all read it from here.

Pure data, no torch import: the app's setup screen reads it before anything heavy is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from zoengine.errors import ConfigError

METHODS = ("full", "subset", "bitfit", "lora", "lora_xs", "sora", "tt")
KINDS = ("causal_lm", "masked_lm", "classifier")
_LORA = ("lora", "lora_xs", "sora")  # linear low-rank: a PEFT LoRA form exists
_LINEAR = ("full", "subset", "bitfit", *_LORA)  # everything but TT (ReLU bottleneck) merges exactly


@dataclass(frozen=True)
class ExportFormat:
    name: str
    loads_it: str  # who loads it, one line (the app and `--help` show it)
    methods: tuple[str, ...]
    kinds: tuple[str, ...]
    why_not_method: str = ""  # appended to a refusal for the method, e.g. "TT is non-linear"
    why_not_kind: str = ""  # ... for the model kind

    def supports(self, method: str, kind: str | None = None) -> bool:
        return method in self.methods and (kind is None or kind in self.kinds)


REGISTRY: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat(
            "native",
            "zoengine's own adapter (zoengine_adapter.json + .safetensors), every method: "
            "zoengine.adapters.load_native(base, path)",
            METHODS,
            KINDS,
        ),
        ExportFormat(
            "peft-lora",
            "PEFT LoRA (lora, lora_xs, sora): peft.PeftModel.from_pretrained(base, path)",
            _LORA,
            KINDS,
            "only LoRA-family adapters have a LoRA form",
        ),
        ExportFormat(
            "merged",
            "full model with the adapter folded in, plus tokenizer: transformers AutoModel*.from_pretrained(path)",
            _LINEAR,
            ("causal_lm", "masked_lm"),
            "TT adapters are non-linear and cannot be folded into the weights",
            "zoengine's pooling classifier has no transformers class to load it",
        ),
        ExportFormat(
            "gguf",
            "merged model as one GGUF file (Llama family): llama.cpp, Ollama, LM Studio, "
            "transformers from_pretrained(dir, gguf_file=...)",
            _LINEAR,
            ("causal_lm",),
            "TT adapters are non-linear and cannot be merged",
            "a GGUF holds a causal language model",
        ),
    )
}
FORMATS = tuple(REGISTRY)


def help_lines() -> dict[str, str]:
    """Format name -> who loads it (one line each)."""
    return {name: f.loads_it for name, f in REGISTRY.items()}


def supported(method: str, kind: str | None = None) -> list[str]:
    """The formats that can export ``method`` on a model of ``kind`` (any kind when None)."""
    return [name for name, f in REGISTRY.items() if f.supports(method, kind)]


def check(fmt: str, method: str, kind: str | None = None, field: str = "--format") -> None:
    """Raise a one-line ConfigError unless ``fmt`` can export ``method`` on ``kind``; it lists
    what this run does support."""
    if fmt not in REGISTRY:
        raise ConfigError(f"must be one of {', '.join(FORMATS)} (got {fmt!r})", field=field)
    f = REGISTRY[fmt]
    if f.supports(method, kind):
        return
    on = f" on a {kind}" if kind else ""
    reason = f.why_not_method if method not in f.methods else f.why_not_kind
    why = f" ({reason})" if reason else ""
    raise ConfigError(
        f"{fmt} cannot export a {method} adapter{on}{why}; this run supports: {', '.join(supported(method, kind))}",
        field=field,
    )
