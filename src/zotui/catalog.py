"""What the setup screen can offer: models, tasks, adapters, optimizers, presets, assets.

Every function asks the optional zoengine module that owns the answer (``assets``, ``tasks``,
``optim``, ``adapters``, ``models``) and falls back to a small built-in answer when the module or
attribute is missing, so the app works on a partial install and gets richer as modules land.
Imports are lazy: the setup screen must open before torch is imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from zoengine.config import RunConfig

log = logging.getLogger(__name__)
_COUNT_LOCK = threading.Lock()

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_TASK = "rotten-tomatoes"
MEZO_TASKS = ("sst2", "rte", "cb", "boolq", "wsc", "wic", "multirc", "copa")
COMMON_OPTIMIZER_KEYS = ("lr", "eps", "weight_decay", "lr_schedule", "warmup_steps")

FALLBACK_OPTIMIZERS = {
    "mezo_sgd": "MeZO: ZO-SGD with a two-point SPSA estimate from one seeded perturbation per query",
}
FALLBACK_ADAPTERS = {
    "full": "all weights trainable (MeZO's full fine-tuning; memory = inference)",
    "subset": "a named subset of parameters (targets)",
}
EXPORT_FORMATS = {
    "native": "zoengine's own adapter files: Run.resume_from, `zoengine eval`, zotui",
    "peft-lora": "PEFT LoRA files: PeftModel.from_pretrained(base, path) (LoRA, LoRA-XS, SoRA only)",
    "merged": "a full model with the adapter folded in: transformers AutoModel*.from_pretrained(path)",
}


def _module(name: str) -> Any | None:
    """Import ``zoengine.<name>`` or return None (not written yet, or broken: logged, not raised)."""
    try:
        return importlib.import_module(f"zoengine.{name}")
    except ImportError:
        return None
    except Exception:
        log.warning("zoengine.%s failed to import", name, exc_info=True)
        return None


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


def _assets() -> list[Any]:
    assets = _module("assets")
    if assets is None or not hasattr(assets, "list_assets"):
        return []
    try:
        return list(assets.list_assets())
    except Exception:
        log.warning("list_assets failed", exc_info=True)
        return []


def is_fetched(name: str) -> bool | None:
    """True/False for zoo assets, None when unknown (not a zoo name, or no assets module)."""
    assets = _module("assets")
    if assets is None or not hasattr(assets, "is_fetched"):
        return None
    if name not in {a.name for a in _assets()}:
        return None
    try:
        return bool(assets.is_fetched(name))
    except Exception:
        return None


def model_choices() -> list[Choice]:
    """Zoo models with size and fetched state; the offline default when the zoo is unknown."""
    out = []
    for a in _assets():
        if getattr(a, "kind", "") != "model":
            continue
        fetched = is_fetched(a.name)
        state = "fetched" if fetched else "not fetched" if fetched is False else ""
        extra = ", ".join(x for x in (str(getattr(a, "size_hint", "") or ""), state) if x)
        out.append(Choice(a.name, f"{a.name} ({extra})" if extra else a.name, getattr(a, "description", "")))
    return out or [Choice(DEFAULT_MODEL, DEFAULT_MODEL, "offline default")]


def task_choices() -> list[Choice]:
    """Zoo data sets and MeZO task templates, then a local file."""
    names: list[Choice] = []
    tasks = _module("tasks")
    if tasks is not None and hasattr(tasks, "list_tasks"):
        try:
            for t in tasks.list_tasks():
                if isinstance(t, tuple):  # (name, description)
                    name, desc = str(t[0]), str(t[1]) if len(t) > 1 else ""
                elif isinstance(t, str):
                    name, desc = t, ""
                else:
                    name, desc = str(getattr(t, "name", t)), str(getattr(t, "description", ""))
                names.append(Choice(name, name, desc))
        except Exception:
            log.warning("list_tasks failed", exc_info=True)
    if not names:
        names = [Choice(DEFAULT_TASK, DEFAULT_TASK, "zoo data set")] + [
            Choice(t, t, "MeZO task") for t in MEZO_TASKS
        ]
    if "file" not in {c.value for c in names}:
        names.append(Choice("file", "file (local CSV/JSONL/parquet)", "set task.path and the columns"))
    return names


def missing_assets(config: RunConfig) -> list[str]:
    """Zoo assets this config needs that are not in the cache yet (fetch before starting)."""
    return [n for n in (config.model.name, config.task.name) if is_fetched(n) is False]


# --- optimizers and adapters ------------------------------------------------------------------------


def _options_from(spec: Any, skip: tuple[str, ...]) -> list[OptionField]:
    """Option fields from a spec's options: a dataclass (optimizers) or OptionSpec items (adapters)."""
    cls = next(
        (getattr(spec, a) for a in ("options", "options_cls", "config_cls", "config") if hasattr(spec, a)),
        None,
    )
    if isinstance(cls, tuple | list):
        return [
            OptionField(
                str(o.name), o.default, str(getattr(o, "help", "")), tuple(getattr(o, "choices", None) or ())
            )
            for o in cls
            if o.name not in skip
        ]
    if cls is None or not dataclasses.is_dataclass(cls):
        return []
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        choices = tuple(f.metadata.get("choices", ()) or ())
        out.append(OptionField(f.name, default, str(f.metadata.get("help", "")), choices))
    return out


def _specs(
    module_name: str, registry: str, fallback: dict[str, str], skip: tuple[str, ...]
) -> dict[str, MethodSpec]:
    mod = _module(module_name)
    reg = getattr(mod, registry, None) if mod is not None else None
    if not reg:
        return {name: MethodSpec(name, desc) for name, desc in fallback.items()}
    out = {}
    for name, spec in dict(reg).items():
        desc = str(getattr(spec, "description", "") or (spec.__doc__ or "").strip().split("\n")[0])
        presets = getattr(spec, "presets", None) or getattr(spec, "paper_presets", None) or {}
        single = getattr(spec, "preset", None)  # one paper preset per method
        if not presets and isinstance(single, dict) and single:
            presets = {f"{name} paper preset: " + ", ".join(f"{k}={v}" for k, v in single.items()): single}
        out[name] = MethodSpec(name, desc, _options_from(spec, skip), dict(presets))
    return out


def optimizer_specs() -> dict[str, MethodSpec]:
    return _specs("optim", "OPTIMIZERS", FALLBACK_OPTIMIZERS, COMMON_OPTIMIZER_KEYS + ("name",))


def adapter_specs() -> dict[str, MethodSpec]:
    return _specs("adapters", "ADAPTERS", FALLBACK_ADAPTERS, ("method", "targets", "kind"))


def export_formats() -> dict[str, str]:
    """Export formats with who can load each; from zoengine.exporting / adapters when present."""
    exporting = _module("exporting")
    described = getattr(exporting, "FORMAT_HELP", None) if exporting is not None else None
    if isinstance(described, dict) and described:
        return {str(k): str(v) for k, v in described.items()}
    mod = _module("adapters")
    names = getattr(mod, "EXPORT_FORMATS", None) if mod is not None else None
    if not names:
        return dict(EXPORT_FORMATS)
    if isinstance(names, dict):
        return {str(k): str(v) for k, v in names.items()}
    return {str(n): EXPORT_FORMATS.get(str(n), "") for n in names}


# --- slow look-ups (call from a thread worker) --------------------------------------------------------


def trainable_count(config: RunConfig) -> tuple[int, int] | None:
    """(trainable, total) for the chosen model and adapter, or None when it cannot be computed."""
    models = _module("models")
    if models is None:
        return None
    if hasattr(models, "count_trainable"):
        trainable, total = models.count_trainable(config)
        return int(trainable), int(total)
    return _meta_count(config, models)


def _meta_count(config: RunConfig, models: Any) -> tuple[int, int] | None:
    """Count on a weightless copy of the model (torch "meta" device): no download, no memory.

    Only for causal and masked LMs available locally (a zoo model already fetched, a directory or a
    .gguf file); classifier heads depend on the labels, and hub ids may need the network.
    """
    if is_fetched(config.model.name) is False or not hasattr(models, "resolve_source"):
        return None  # resolving an unfetched zoo model would fetch it
    with _COUNT_LOCK:  # workers of successive edits overlap; a half-imported transformers breaks
        return _meta_count_locked(config, models)


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


def _meta_count_locked(config: RunConfig, models: Any) -> tuple[int, int] | None:
    source, where, gguf_file, zoo_kind = models.resolve_source(config.model.name)
    if source == "hub":
        return None
    import torch

    transformers = _touch_transformers()

    hf_config = transformers.AutoConfig.from_pretrained(
        where, **({"gguf_file": gguf_file} if gguf_file else {})
    )
    kind = config.model.kind if config.model.kind != "auto" else models.detect_kind(hf_config, zoo_kind)
    auto = {
        "causal_lm": transformers.AutoModelForCausalLM,
        "masked_lm": transformers.AutoModelForMaskedLM,
    }.get(kind)
    adapters = _module("adapters")
    if auto is None or adapters is None:
        return None
    with torch.device("meta"):
        model = auto.from_config(hf_config)
    total = sum(p.numel() for p in model.parameters())
    handle = adapters.apply_adapter(model, config.adapter, seed=0)
    return int(handle.num_trainable()), int(total)


def task_preview(config: RunConfig) -> str | None:
    """One rendered prompt with its label words and the split sizes, or None when unavailable."""
    tasks = _module("tasks")
    if tasks is None or not hasattr(tasks, "load_task"):
        return None
    task = tasks.load_task(config.task)
    lines = []
    example = _first_example(task)
    if example is not None:
        render = getattr(task, "render_full", None)
        label = int(getattr(example, "label", 0) or 0)
        text = render(example, label) if render else task.prompt(example)
        lines.append(repr(str(text))[1:-1])  # one line, newlines visible as \n
    words = getattr(task, "label_words", None)
    if words:
        lines.append("label words: " + ", ".join(map(str, words)))
    sizes = getattr(task, "split_sizes", None)
    if callable(sizes):
        lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in dict(sizes()).items()))
    lines.extend(str(n) for n in getattr(task, "notes", []) or [])
    return "\n".join(lines) if lines else None


def _first_example(task: Any) -> Any | None:
    """The first training example, from whichever accessor the task offers."""
    for attr in ("preview_example", "example"):
        fn = getattr(task, attr, None)
        if callable(fn):
            return fn()
    for attr in ("train", "examples", "train_examples"):
        data = getattr(task, attr, None)
        data = data("train") if callable(data) else data
        if data is not None:
            try:
                return data[0]
            except (IndexError, KeyError, TypeError):
                continue
    return None
