"""Shared adapter machinery: option specs, target resolution, hook-based injection and the handle.

Adapters never replace base modules. A low-rank or bottleneck adapter is attached as a child module
named ``zo_<method>`` of the layer it adapts and adds its output through a forward hook, so the
base model's parameter names stay unchanged (merged exports and base-weight hashes rely on that).
Everything the ZO optimizer perturbs is listed by :class:`AdapterHandle` in a fixed order.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from zoengine import schema
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError, ConfigError
from zoengine.layers import select_in_layers

ADAPTER_PREFIX = "zo_"  # child-module prefix of every injected adapter ("...q_proj.zo_lora.A")

# --- options ---------------------------------------------------------------------------------


@dataclass
class NoOptions:
    """The options schema of a method without options of its own."""


# --- target resolution -----------------------------------------------------------------------

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


def _sample_names(names: list[str], n: int = 8) -> str:
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
                f"pattern {p!r} matches no module; linear modules include: {_sample_names(linear_names)}",
                field="adapter.targets",
            )
        lin = [n for n in linear_names if any(n == h or n.startswith(h + ".") for h in hit)]
        if not lin:
            raise AdapterError(
                f"pattern {p!r} matches only non-linear modules ({_sample_names(hit, 3)}); "
                f"adapters attach to Linear/Conv1D layers such as {_sample_names(linear_names, 4)}",
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
                f"pattern {p!r} matches no parameter; parameters include: {_sample_names(names)}",
                field="adapter.targets",
            )
        chosen.update(hit)
    return [n for n in names if n in chosen]


def _param_matches(pattern: str, name: str) -> bool:
    parts = name.split(".")
    return any(matches(pattern, ".".join(parts[:i])) for i in range(1, len(parts) + 1))


# --- injected modules ------------------------------------------------------------------------


class AdapterModule(nn.Module):
    """A side path attached to a base layer. Computes in float32 and adds to the layer's output."""

    kind: ClassVar[str] = "adapter"
    in_features: int
    out_features: int

    def parts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(h (..., k), w (k, out), bias or None) with delta = h @ w + bias; x is float32."""
        raise NotImplementedError

    def delta(self, x: Tensor) -> Tensor:
        """The side path's output (..., out) in float32."""
        h, w, bias = self.parts(x.float())
        y = h @ w
        return y + bias if bias is not None else y

    def hook(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
        """Forward hook on the base layer: output + delta(input)."""
        return self.add_to(output, args[0])

    def add_to(self, output: Tensor, source: Tensor) -> Tensor:
        """output + delta(source); in place with one fused addmm when nothing needs autograd,
        because a full-size temporary per adapted layer costs more than the low-rank path."""
        if source.device != output.device:  # device_map: the hook may see pre-move inputs
            source = source.to(output.device)
        h, w, bias = self.parts(source.float())
        if output.dtype == torch.float32 and output.is_contiguous() and not torch.is_grad_enabled():
            flat = output.view(-1, output.shape[-1])
            flat.addmm_(h.reshape(-1, h.shape[-1]), w)
            if bias is not None:
                flat.add_(bias)
            return output
        y = h @ w
        if bias is not None:
            y = y + bias
        return output + y.to(output.dtype)

    def lora_factors(self) -> tuple[Tensor, Tensor] | None:
        """(A r×in, B out×r) with every scale folded into B so that Δy = B A x; None if not linear."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"in": self.in_features, "out": self.out_features}


def uniform_(t: Tensor, bound: float, gen: torch.Generator) -> Tensor:
    """In-place U(-bound, bound) from our own generator (never the global RNG)."""
    with torch.no_grad():
        t.uniform_(-bound, bound, generator=gen)
    return t


def make_generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


# --- the handle --------------------------------------------------------------------------------


class AdapterHandle:
    """What apply_adapter returns: the trainable tensors in a fixed order plus method hooks.

    ``param_groups`` lists matrices (decayed) before vectors — biases, norms, gates — (not decayed);
    inside a group the order is ``model.named_parameters()`` order, which is fixed by the model
    structure, so a ZO optimizer that regenerates directions from a seed visits the same tensors.
    """

    def __init__(
        self,
        method: AdapterMethod,
        config: AdapterConfig,
        model: nn.Module,
        targets: list[str],
        options: dict[str, Any],
        seed: int,
        adapter_modules: dict[str, AdapterModule] | None = None,
        orig_dtypes: dict[str, torch.dtype] | None = None,
    ) -> None:
        self._method = method
        self.method: str = method.name
        self.config = config
        self.model = model
        self.targets = targets
        self.options = options
        self.seed = seed
        self.adapter_modules: dict[str, AdapterModule] = adapter_modules or {}
        self.orig_dtypes: dict[str, torch.dtype] = orig_dtypes or {}
        self.state: dict[str, Any] = {}
        self._trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        # a model dispatched with a device map keeps offloaded weights on "meta" (a model built on
        # meta only to count parameters, as the app's preview does, has no device map)
        dispatched = bool(getattr(model, "hf_device_map", None))
        offloaded = [n for n, p in self._trainable if p.device.type == "meta"] if dispatched else []
        if offloaded:
            raise AdapterError(
                f"{len(offloaded)} trainable tensors (e.g. {offloaded[0]}) sit in offloaded layers "
                "(model.device_map 'disk'/offload): train an adapter such as lora, or map those "
                "layers to a device",
                field="model.device_map",
            )

    # parameters
    def named_trainable(self) -> list[tuple[str, nn.Parameter]]:
        return list(self._trainable)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Matrices with ``weight_decay``, then vectors (biases, norms, gates) with 0.0; empty groups
        are left out (torch.optim rejects none, but an empty group carries no information)."""
        decay = [(n, p) for n, p in self._trainable if p.ndim >= 2]
        plain = [(n, p) for n, p in self._trainable if p.ndim < 2]
        groups = []
        for items, wd in ((decay, float(weight_decay)), (plain, 0.0)):
            if items:
                groups.append(
                    {"params": [p for _, p in items], "names": [n for n, _ in items], "weight_decay": wd}
                )
        return groups

    def num_trainable(self) -> int:
        return sum(p.numel() for _, p in self._trainable)

    def num_total(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # checkpoints
    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {n: p.detach().clone() for n, p in self._trainable}

    def load_trainable_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Restore exactly what trainable_state_dict returned (same names, shapes)."""
        own = dict(self._trainable)
        missing = [n for n in own if n not in sd]
        extra = [n for n in sd if n not in own]
        if missing or extra:
            raise AdapterError(
                f"checkpoint does not fit this adapter (missing {_sample_names(missing, 3) or 'none'}; "
                f"unexpected {_sample_names(extra, 3) or 'none'})",
                field="adapter.method",
            )
        with torch.no_grad():
            for n, p in own.items():
                if tuple(sd[n].shape) != tuple(p.shape):
                    raise AdapterError(
                        f"checkpoint tensor {n} has shape {tuple(sd[n].shape)}, expected {tuple(p.shape)}",
                        field="adapter.r",
                    )
                p.copy_(sd[n])
        self._method.after_load(self)

    def set_run_length(self, total_steps: int) -> None:
        """Tell methods with run-length schedules (SoRA's derived threshold) how long the run is."""
        self.state["total_steps"] = int(total_steps)

    # method hooks
    def after_step(self, step: int, lr: float) -> None:
        self._method.after_step(self, step, lr)

    def stats(self) -> dict[str, Any]:
        return self._method.stats(self)

    def native_state_dict(self) -> dict[str, Tensor]:
        """Everything needed to rebuild the adapter on a fresh base: adapter modules' tensors
        (trainable and frozen, e.g. LoRA-XS factors) plus trained base tensors (full/subset/bitfit)."""
        out: dict[str, Tensor] = {}
        for name, mod in self.adapter_modules.items():
            for key, t in mod.state_dict().items():
                out[f"{name}.{key}"] = t.detach()
        for n, p in self._trainable:
            out.setdefault(n, p.detach())
        return out

    def lora_factors(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Target module -> exact LoRA factors (scale folded into B); AdapterError if none exist."""
        reason = self._method.no_lora_reason
        if reason:
            raise AdapterError(reason, field="adapter.method")
        out: dict[str, tuple[Tensor, Tensor]] = {}
        for name, mod in self.adapter_modules.items():
            factors = mod.lora_factors()
            assert factors is not None  # linear methods always return factors
            out[name.rsplit(".", 1)[0]] = factors
        return out

    def describe(self) -> dict[str, Any]:
        """Per-module shapes and ranks for adapter_config.json."""
        return {name.rsplit(".", 1)[0]: mod.describe() for name, mod in self.adapter_modules.items()}

    def __repr__(self) -> str:
        return (
            f"AdapterHandle(method={self.method!r}, targets={len(self.targets)}, "
            f"trainable={self.num_trainable()}, total={self.num_total()})"
        )


# --- method base -------------------------------------------------------------------------------


class AdapterMethod:
    """One registry entry. Subclasses set name/help/options and implement ``inject``."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    options: ClassVar[type] = NoOptions  # the method's options schema (zoengine.schema)
    requires_targets: ClassVar[bool] = False
    # one-line reason why no exact LoRA form exists ("" when lora_factors works)
    no_lora_reason: ClassVar[str] = ""
    # one-line reason why the merged export is impossible ("" when it works)
    no_merge_reason: ClassVar[str] = ""

    @property
    def description(self) -> str:
        """One-line description (``zoengine methods``)."""
        return self.help

    def resolve_options(self, cfg: AdapterConfig) -> dict[str, Any]:
        """Defaults filled in, types checked, unknown keys rejected (model-independent)."""
        given = dict(cfg.options or {})
        opts = schema.as_options(schema.build(self.options, given, "adapter", self.name))
        opts["_given"] = sorted(given)
        self.check_options(opts)
        return opts

    def settings(self) -> list[schema.Setting]:
        """The method's options as ``zoengine methods``, the CLI and the app show them."""
        return schema.describe(self.options)

    def check_options(self, opts: dict[str, Any]) -> None:
        """Cross-field checks; override where needed."""

    def check_targets(self, cfg: AdapterConfig) -> list[str] | None:
        patterns = check_patterns(cfg.targets)
        if self.requires_targets and not patterns:
            raise ConfigError(f"{self.name} needs target patterns (parameter names)", field="adapter.targets")
        return patterns

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        raise NotImplementedError

    def after_step(self, handle: AdapterHandle, step: int, lr: float) -> None:
        """No-op except for methods with a proximal/projection step."""

    def stats(self, handle: AdapterHandle) -> dict[str, Any]:
        return {}

    def after_load(self, handle: AdapterHandle) -> None:
        """Rebuild derived state (masks) after ``load_trainable_state_dict``; no-op by default."""


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def attach(model: nn.Module, target: str, attr: str, adapter: AdapterModule) -> str:
    """Register ``adapter`` as child ``attr`` of ``target`` and hook it into the forward pass."""
    layer = model.get_submodule(target)
    layer.add_module(attr, adapter)
    layer.register_forward_hook(adapter.hook)
    return f"{target}.{attr}"


def layer_device(layer: nn.Module) -> torch.device:
    """Where ``layer`` computes: its weight's device, or accelerate's execution device when the
    weight is offloaded (``meta`` until the forward pass) under ``model.device_map``."""
    dev = layer.weight.device
    if dev.type == "meta":
        hook = getattr(layer, "_hf_hook", None)
        exec_dev = getattr(hook, "execution_device", None)
        if exec_dev is None and hook is None:
            return dev  # a weightless copy built only to count parameters (the app's preview)
        if exec_dev is None:
            raise AdapterError(
                "an adapted layer has no weights on any device (offloaded without a hook)",
                field="model.device_map",
            )
        dev = torch.device("cuda", exec_dev) if isinstance(exec_dev, int) else torch.device(exec_dev)
    return dev


def ensure_fresh(model: nn.Module) -> None:
    """A second adapter on the same model would stack silently; refuse instead."""
    if getattr(model, "_zo_adapter", None) is not None or any(
        part.startswith(ADAPTER_PREFIX) for name, _ in model.named_modules() for part in name.split(".")
    ):
        raise AdapterError(
            "model already carries an adapter; apply to a freshly loaded base", field="adapter.method"
        )


def check_rank(r: int, targets: Iterable[tuple[str, int, int]]) -> None:
    """Model-dependent rank check: r must not exceed min(in, out) of any adapted layer."""
    targets = list(targets)
    limit = min((min(fin, fout) for _, fin, fout in targets), default=r)
    for name, fin, fout in targets:
        if r > min(fin, fout):
            raise AdapterError(
                f"rank {r} is larger than layer {name} ({fin}->{fout}); use r <= {limit} for these targets",
                field="adapter.r",
            )


def inject(
    method: AdapterMethod,
    model: nn.Module,
    cfg: AdapterConfig,
    opts: dict[str, Any],
    seed: int,
    make: Any,
    *,
    placement: bool = False,
) -> AdapterHandle:
    """Freeze the base and attach ``make(target, layer, generator)`` to every resolved target.

    ``placement`` picks the Houlsby defaults (attention/FFN outputs) instead of all linears.
    Modules are built in target order from one seeded generator, so a seed fixes the init.
    """
    ensure_fresh(model)
    patterns = method.check_targets(cfg)
    if not patterns:
        patterns = default_placement_patterns(model) if placement else default_linear_patterns(model)
    targets = select_in_layers(model, resolve_linear_targets(model, patterns), cfg.layers)
    if "r" in opts and not placement:
        check_rank(opts["r"], [(t, *linear_dims(model.get_submodule(t))) for t in targets])
    freeze(model)
    gen = make_generator(seed)
    modules: dict[str, AdapterModule] = {}
    for target in targets:
        layer = model.get_submodule(target)
        adapter = make(target, layer, gen).to(device=layer_device(layer))
        modules[attach(model, target, ADAPTER_PREFIX + method.name, adapter)] = adapter
    model._zo_adapter = method.name
    return AdapterHandle(method, cfg, model, targets, opts, seed, adapter_modules=modules)
