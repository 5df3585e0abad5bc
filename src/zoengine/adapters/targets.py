"""Target resolution: which base layers or parameters an adapter acts on, and linear-layer helpers.

Patterns (``adapter.targets``) are matched against module and parameter names by :func:`matches`;
empty patterns mean the per-architecture defaults (every attention/MLP linear, or the Houlsby
placement points for bottleneck adapters). GPT-2's ``Conv1D`` counts as a linear layer with its
weight stored in×out. Injected adapters (children named ``zo_<method>``) are never targets.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator

from torch import Tensor, nn

from zoengine.errors import AdapterError, ConfigError

ADAPTER_PREFIX = "zo_"  # child-module prefix of every injected adapter ("...q_proj.zo_lora.A")

# Per-architecture defaults, by config.model_type. Patterns use the matching rules of `matches`.
_LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_BERT_LINEARS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)
LINEAR_DEFAULTS: dict[str, tuple[str, ...]] = {
    "llama": _LLAMA_LINEARS,
    "gpt2": ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
    "opt": ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    "bert": _BERT_LINEARS,
}
# Houlsby placement: after the attention output projection and after the FFN output projection.
PLACEMENT_DEFAULTS: dict[str, tuple[str, ...]] = {
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
    "opt": ("self_attn.out_proj", "fc2"),
    "bert": ("attention.output.dense", "output.dense"),
}
_FAMILY = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "gemma": "llama",
    "gemma2": "llama",
    "olmo": "llama",
    "gpt2": "gpt2",
    "opt": "opt",
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "electra": "bert",
}
_HEAD_WORDS = ("lm_head", "embed", "classifier", "score", "pooler", "predictions", "wte", "wpe")


def matches(pattern: str, name: str) -> bool:
    """Pattern rules: ``re:<regex>`` full match; globs (``*?[``) on the name or a dotted suffix;
    otherwise the name itself or a dotted suffix (``q_proj`` matches ``model.layers.0.self_attn.q_proj``)."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)
    return name == pattern or name.endswith("." + pattern)


def check_patterns(targets: list[str] | None) -> list[str] | None:
    """Model-independent checks of ``adapter.targets``; empty means the per-architecture default."""
    if not targets:
        return None
    for p in targets:
        if not isinstance(p, str) or not p.strip():
            raise ConfigError(f"patterns must be non-empty strings (got {p!r})", field="adapter.targets")
        if p.startswith("re:"):
            try:
                re.compile(p[3:])
            except re.error as exc:
                raise ConfigError(f"bad regex {p!r}: {exc}", field="adapter.targets") from None
    return [p.strip() for p in targets]


def is_linear(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, nn.Linear | Conv1D)


def is_conv1d(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def linear_dims(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of a Linear or a GPT-2 Conv1D (whose weight is stored in×out)."""
    if is_conv1d(module):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return int(module.in_features), int(module.out_features)


def weight_out_in(module: nn.Module) -> Tensor:
    """The layer's weight in the nn.Linear (out×in) convention, whatever the storage."""
    return module.weight.T if is_conv1d(module) else module.weight


def base_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Named modules of the base model, skipping injected adapters."""
    for name, module in model.named_modules():
        if name and not any(part.startswith(ADAPTER_PREFIX) for part in name.split(".")):
            yield name, module


def model_family(model: nn.Module) -> str | None:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return _FAMILY.get(str(model_type)) if model_type else None


def sample_names(names: list[str], n: int = 8) -> str:
    """The first ``n`` names for an error message, with the total when there are more."""
    shown = ", ".join(names[:n])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > n else shown


def default_linear_patterns(model: nn.Module) -> list[str]:
    """q/k/v/o + MLP linears for known families; else every linear inside numbered blocks."""
    family = model_family(model)
    if family is None:  # unknown model_type: take the first family whose patterns all match
        names = [n for n, m in base_modules(model) if is_linear(m)]
        for fam, pats in LINEAR_DEFAULTS.items():
            if all(any(matches(p, n) for n in names) for p in pats):
                family = fam
                break
    if family is not None:
        return list(LINEAR_DEFAULTS[family])
    names = [
        n
        for n, m in base_modules(model)
        if is_linear(m) and re.search(r"\.\d+\.", n) and not any(w in n for w in _HEAD_WORDS)
    ]
    if not names:
        raise AdapterError(
            "no default targets for this architecture: set adapter.targets", field="adapter.targets"
        )
    return names


def default_placement_patterns(model: nn.Module) -> list[str]:
    """Houlsby placement points (attention output, FFN output) for known families."""
    family = model_family(model)
    if family is None:
        names = [n for n, m in base_modules(model) if is_linear(m)]
        for fam, pats in PLACEMENT_DEFAULTS.items():
            if all(any(matches(p, n) for n in names) for p in pats):
                family = fam
                break
    if family is None:
        model_type = getattr(getattr(model, "config", None), "model_type", "?")
        raise AdapterError(
            f"no default adapter placement for model type {model_type!r}",
            field="adapter.targets",
            hint="set the attention-output and FFN-output projections, e.g. targets = ['o_proj', 'down_proj']",
        )
    return list(PLACEMENT_DEFAULTS[family])


def resolve_linear_targets(model: nn.Module, patterns: list[str]) -> list[str]:
    """Linear/Conv1D module names matched by ``patterns`` (a matched container contributes its
    linear descendants), in model order. Every pattern must match something."""
    modules = list(base_modules(model))
    linear_names = [n for n, m in modules if is_linear(m)]
    chosen: set[str] = set()
    for p in patterns:
        hit = [n for n, _ in modules if matches(p, n)]
        if not hit:
            raise AdapterError(
                f"pattern {p!r} matches no module; linear modules include: {sample_names(linear_names)}",
                field="adapter.targets",
            )
        lin = [n for n in linear_names if any(n == h or n.startswith(h + ".") for h in hit)]
        if not lin:
            raise AdapterError(
                f"pattern {p!r} matches only non-linear modules ({sample_names(hit, 3)}); "
                f"adapters attach to Linear/Conv1D layers such as {sample_names(linear_names, 4)}",
                field="adapter.targets",
            )
        chosen.update(lin)
    return [n for n in linear_names if n in chosen]


def resolve_parameters(model: nn.Module, patterns: list[str]) -> list[str]:
    """Parameter names matched by a pattern on the name itself or on any owning module path."""
    names = [n for n, _ in model.named_parameters()]
    chosen: set[str] = set()
    for p in patterns:
        hit = [n for n in names if _param_matches(p, n)]
        if not hit:
            raise AdapterError(
                f"pattern {p!r} matches no parameter; parameters include: {sample_names(names)}",
                field="adapter.targets",
            )
        chosen.update(hit)
    return [n for n in names if n in chosen]


def _param_matches(pattern: str, name: str) -> bool:
    parts = name.split(".")
    return any(matches(pattern, ".".join(parts[:i])) for i in range(1, len(parts) + 1))
