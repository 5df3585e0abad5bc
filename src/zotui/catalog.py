"""What the setup screen can offer: models, tasks, adapters, optimizers, presets, assets.

Each function asks the zoengine module that owns the answer (``assets``, ``tasks``, ``optim``,
``adapters``, ``models``, ``exporting``). Imports are lazy so the setup screen opens before torch
is imported; the slow look-ups at the bottom run in thread workers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from zoengine.config import RunConfig

_COUNT_LOCK = threading.Lock()

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_TASK = "rotten-tomatoes"
COMMON_OPTIMIZER_KEYS = ("lr", "eps", "weight_decay", "lr_schedule", "warmup_steps")

# The run the app opens with: one of the papers' methods at its calibrated default — tensor-train
# adapters (AdaZeta paper) trained with MeZO's ZO-SGD, lr from the calibrated rule (lr unset = auto).
# TT learned fastest per forward pass of the papers' adapters (README, Results) and MeZO's Q = 1
# keeps a step at two forward passes, so the 300-step default run fits a CPU coffee break; its
# measured run is examples/rotten-tomatoes-tt.toml. Split sizes are the engine's (sized from the data
# when a file is small), so a user's 500-row file trains without touching them.
APP_DEFAULTS: dict[str, Any] = {
    "adapter.method": "tt",
    "optimizer.name": "mezo_sgd",
    "optimizer.eps": 1e-3,
    "run.steps": 300,
    "run.eval_every": 100,
}


def default_config() -> RunConfig:
    """The configuration a bare ``zotui`` starts from (``APP_DEFAULTS`` over the engine defaults)."""
    cfg = RunConfig()
    for key, value in APP_DEFAULTS.items():
        cfg.set(key, value)
    return cfg


@dataclass
class Choice:
    """One pickable value with a label for the picker and a one-line description."""

    value: str
    label: str
    description: str = ""


@dataclass
class OptionField:
    """A method-specific setting: its key in the TOML section, default, help and allowed values."""

    key: str
    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()


@dataclass
class MethodSpec:
    """An optimizer or adapter as the form shows it."""

    name: str
    description: str
    options: list[OptionField] = field(default_factory=list)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


# --- assets and models ----------------------------------------------------------------------------


def is_fetched(name: str) -> bool | None:
    """True/False for zoo assets, None for anything else (a hub id, a path)."""
    from zoengine import assets

    return assets.is_fetched(name) if assets.find_asset(name) is not None else None


def model_choices() -> list[Choice]:
    """Zoo models with their size and whether they are in the cache."""
    from zoengine import assets

    out = []
    for a in assets.list_assets():
        if a.kind == "model":
            state = "fetched" if assets.is_fetched(a.name) else "not fetched"
            out.append(Choice(a.name, f"{a.name} ({a.size_hint}, {state})", a.description))
    return out


def task_choices() -> list[Choice]:
    """Zoo data sets and MeZO task templates, then a local file."""
    from zoengine import tasks

    return [Choice(name, name, desc) for name, desc in tasks.list_tasks()]


def missing_assets(config: RunConfig) -> list[str]:
    """Zoo assets this config needs that are not in the cache yet (fetch before starting)."""
    return [n for n in (config.model.name, config.task.name) if is_fetched(n) is False]


# --- optimizers and adapters ------------------------------------------------------------------------


def _option_fields(settings: list[Any]) -> list[OptionField]:
    return [OptionField(o.key, o.default, o.help_text(), o.choices) for o in settings]


def optimizer_specs() -> dict[str, MethodSpec]:
    """Every optimizer with its options and presets, from its schema (``zoengine.optim.options``)."""
    from zoengine.optim import OPTIMIZERS

    return {
        name: MethodSpec(name, spec.description, _option_fields(spec.settings()), spec.presets)
        for name, spec in OPTIMIZERS.items()
    }


def adapter_specs() -> dict[str, MethodSpec]:
    """Every adapter method with its options, from its schema."""
    from zoengine.adapters import ADAPTERS

    return {
        name: MethodSpec(name, method.description, _option_fields(method.settings()))
        for name, method in ADAPTERS.items()
    }


def export_formats() -> dict[str, str]:
    """Export formats with one line on who can load each (from the engine's export registry)."""
    from zoengine.export_formats import help_lines

    return help_lines()


# --- slow look-ups (call from a thread worker) --------------------------------------------------------


class ParamCount(NamedTuple):
    """What the adapter trains on the chosen model, counted on a weightless copy.

    ``first_block``/``n_blocks`` place the lowest trainable tensor in the model's block stack
    (``zoengine.layers.first_trainable_layer``; ``n_blocks`` 0 = no stack found, None = not known):
    blocks below ``first_block`` are the prefix a ZO step shares between its queries.
    """

    trainable: int
    total: int
    first_block: int = 0
    n_blocks: int | None = None


def trainable_count(config: RunConfig) -> ParamCount | None:
    """Trainable and total parameters for the chosen model and adapter, counted on a weightless
    ("meta") copy, with where the trainable tensors start in the block stack.

    No download and no memory: only causal and masked LMs available locally (a fetched zoo model, a
    directory or a .gguf file); classifier heads depend on the labels, and hub ids need the network.
    None when it cannot be counted that way.
    """
    if is_fetched(config.model.name) is False:
        return None  # resolving an unfetched zoo model would fetch it
    with _COUNT_LOCK:  # workers of successive edits overlap; a half-imported transformers breaks
        return _meta_count(config)


def cached_tune(config: RunConfig) -> Any:
    """The cached lr sweep (``zoengine.tune.TuneResult``) for ``config``'s model, task, adapter,
    optimizer and batch size, or None. Imports the tuner (and torch) under the preview lock."""
    with _COUNT_LOCK:
        from zoengine.tune import cached_result
    return cached_result(config)


def warm_imports() -> None:
    """Fully import torch/transformers once, under the lock the preview worker uses.

    transformers resolves ``AutoConfig`` and friends lazily; two threads doing that first import
    at the same time (the setup preview and the engine loading its model) can see a half-initialised
    module ("module 'transformers' has no attribute 'AutoConfig'"). The app calls this from the
    engine worker before starting a real run, so the engine thread only ever finds them loaded.
    """
    with _COUNT_LOCK:
        _touch_transformers()


def _touch_transformers() -> Any:
    import torch  # noqa: F401  (imported for its side effect: fully initialised before use)
    import transformers

    for name in (
        "AutoConfig",
        "AutoTokenizer",
        "AutoModelForCausalLM",
        "AutoModelForMaskedLM",
        "AutoModelForSequenceClassification",
    ):
        getattr(transformers, name)
    return transformers


def _meta_count(config: RunConfig) -> ParamCount | None:
    import torch

    from zoengine import adapters, models
    from zoengine.layers import first_trainable_layer, layer_stack

    source, where, gguf_file, zoo_kind = models.resolve_source(config.model.name)
    if source == "hub":
        return None
    transformers = _touch_transformers()
    hf_config = transformers.AutoConfig.from_pretrained(
        where, **({"gguf_file": gguf_file} if gguf_file else {})
    )
    kind = config.model.kind if config.model.kind != "auto" else models.detect_kind(hf_config, zoo_kind)
    auto = {
        "causal_lm": transformers.AutoModelForCausalLM,
        "masked_lm": transformers.AutoModelForMaskedLM,
    }.get(kind)
    if auto is None:
        return None
    with torch.device("meta"):
        model = auto.from_config(hf_config)
    total = sum(p.numel() for p in model.parameters())
    handle = adapters.apply_adapter(model, config.adapter, seed=0)
    stack = layer_stack(model)  # requires_grad is set by the adapter: meta tensors carry it too
    return ParamCount(
        int(handle.num_trainable()),
        int(total),
        first_trainable_layer(model),
        len(stack[1]) if stack is not None else 0,
    )


def step_cost_line(config: RunConfig, counts: ParamCount) -> str:
    """The expected cost of a ZO step against its 2·Q full forwards, given where the trainable
    tensors start (``zoengine.prefix.step_cost_ratio``): blocks below the first trainable one run once
    per batch when ``run.share_prefix`` is on. Empty when the block layout is not known."""
    from zoengine.errors import ConfigError
    from zoengine.optim import OPTIMIZERS
    from zoengine.optim.registry import parse_options
    from zoengine.prefix import step_cost_ratio

    if counts.n_blocks is None:
        return ""
    spec = OPTIMIZERS.get(config.optimizer.name)
    if spec is None:
        return "step cost: -- (unknown optimizer)"
    if spec.uses_backward:
        return "step cost: one forward + one backward (first-order: no queries to share a prefix between)"
    try:
        options = parse_options(config.optimizer.name, dict(config.optimizer.options))
    except ConfigError as exc:
        return f"step cost: -- (fix {exc.field or 'the optimizer options'} first)"
    growing = hasattr(options, "q_max")  # AdaZeta: Q_k grows with the epoch, from min_q to q_max
    q = int(getattr(options, "min_q" if growing else "q", 1))
    note = f"; Q grows to {options.q_max} with the epochs, sharing more" if growing else ""  # type: ignore[attr-defined]
    start, n = counts.first_block, counts.n_blocks
    if not config.run.share_prefix:
        return "step cost = its 2·Q forwards (run.share_prefix is off: every query runs all blocks)"
    if n == 0:
        return "step cost = its 2·Q forwards (no stack of repeated blocks found: nothing to share)"
    if start <= 0:
        return "step cost = its 2·Q forwards (a trainable tensor in block 0 or below: nothing to share)"
    shared = f"block 0 of {n}" if start == 1 else f"blocks 0-{start - 1} of {n}"
    ratio = step_cost_ratio(start, n, q)
    return f"step cost ≈ {ratio:.2f} × its 2·Q forwards at Q={q} ({shared} shared{note})"


def task_preview(config: RunConfig) -> str:
    """One rendered prompt with its label words, the split sizes and any notes on the data."""
    from zoengine.tasks import load_task

    task = load_task(config.task)
    lines = []
    examples = task.train or task.dev or task.test
    if examples:
        example = examples[0]
        text = task.render_full(example, int(example.label or 0))
        lines.append(repr(text)[1:-1])  # one line, newlines visible as \n
    if task.label_words:
        lines.append("label words: " + ", ".join(task.label_words))
    lines.append(split_line(config, task.split_sizes()))
    lines.extend(task.notes)
    return "\n".join(lines)


def split_line(config: RunConfig, sizes: dict[str, int]) -> str:
    """``splits: train 325 (default, sized from the data), dev 107 ..., test 50``: the sizes the run
    will use, each marked when it comes from the engine's single default (1000/500/1000, or 60/20/20
    of a smaller data set) rather than from the form."""
    from zoengine.tasks import DEFAULT_SIZES

    parts = []
    for split, n in sizes.items():
        key = f"n_{split}"
        given = getattr(config.task, key, None) is not None or (split == "train" and config.task.k_shot)
        if given:
            parts.append(f"{split} {n}")
        elif n == DEFAULT_SIZES.get(key):
            parts.append(f"{split} {n} (default)")
        else:
            parts.append(f"{split} {n} (default, sized from the data)")
    return "splits: " + ", ".join(parts)
