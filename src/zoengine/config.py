"""Typed run configuration: model + task + adapter + optimizer + run, saved as TOML.

A run is fully described by one ``RunConfig``. The CLI builds it from ``--config run.toml`` plus
``--set section.key=value`` overrides; the app builds it from its form. Both call ``validate()``,
which raises ``ConfigError`` naming the field and the allowed values.

Method-specific settings (LoRA rank, ZO-AdaMU T1/T2/T3, SoRA lambda ...) sit flat in the
``[adapter]`` / ``[optimizer]`` TOML tables next to the common keys; they are collected into
``options`` and checked by the adapter / optimizer registries.

    [model]
    name = "smollm2-135m-instruct"
    [task]
    name = "rotten-tomatoes"
    [optimizer]
    name = "mezo_sgd"
    lr = 1e-6
    eps = 1e-3
    [run]
    steps = 500
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from zoengine.errors import ConfigError

MODEL_KINDS = ("auto", "causal_lm", "masked_lm", "classifier")
DTYPES = ("auto", "float32", "bfloat16", "float16")
LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class ModelConfig:
    name: str = field(
        default="smollm2-135m-instruct",
        metadata={"help": "zoo name, hub id, local model directory or .gguf file"},
    )
    kind: str = field(default="auto", metadata={"help": "auto | causal_lm | masked_lm | classifier"})
    dtype: str = field(
        default="auto",
        metadata={
            "help": "dtype of the frozen base: auto (fp32 on CPU, bf16 on CUDA) | float32 | bfloat16 | float16"
        },
    )
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    device_map: str | dict[str, str] | None = field(
        default=None,
        metadata={
            "help": "split the frozen base over devices (accelerate): none | auto | a table of module "
            'prefix -> device, e.g. {"model.layers.0" = "cuda:0", "model.layers.1" = "cuda:1"}'
        },
    )
    max_length: int = field(
        default=64, metadata={"help": "prompt length in tokens (longer prompts are cut from the left)"}
    )


@dataclass
class TaskConfig:
    name: str = field(
        default="rotten-tomatoes",
        metadata={
            "help": "zoo data set, MeZO task (sst2, rte, cb, boolq, wsc, wic, multirc, copa) or 'file'"
        },
    )
    path: str | None = field(
        default=None, metadata={"help": "local CSV/JSONL/parquet file or hub data set id"}
    )
    text_columns: list[str] = field(
        default_factory=list, metadata={"help": "column(s) filling {placeholders}"}
    )
    label_column: str = field(default="label", metadata={"help": "column holding the label"})
    template: str | None = field(
        default=None, metadata={"help": "prompt template with {column} placeholders"}
    )
    label_words: list[str] | None = field(default=None, metadata={"help": "one verbalizer word per label"})
    label_map: dict[str, str] | None = field(
        default=None,
        metadata={
            "help": 'label value -> label word, e.g. {neg = "terrible", pos = "great"}; needed when '
            "the label values are neither the words themselves nor 0..K-1 indices into label_words"
        },
    )
    n_train: int | None = field(
        default=None,
        metadata={"help": "training examples (empty: 1000, or 60% of a smaller data set)"},
    )
    n_dev: int | None = field(
        default=None,
        metadata={
            "help": "development examples, evaluated during training (empty: 500, or 20% of a smaller data set)"
        },
    )
    n_test: int | None = field(
        default=None,
        metadata={"help": "held-out test examples (empty: 1000, or 20% of a smaller data set)"},
    )
    k_shot: int | None = field(
        default=None, metadata={"help": "k examples per class for train (overrides n_train)"}
    )
    seed: int = field(default=42, metadata={"help": "seed of the train/dev/test split"})


@dataclass
class AdapterConfig:
    method: str = field(
        default="full", metadata={"help": "full | subset | bitfit | lora | lora_xs | sora | tt"}
    )
    targets: list[str] | None = field(
        default=None, metadata={"help": "module/parameter name patterns; empty = per-architecture default"}
    )
    layers: str | None = field(
        default=None,
        metadata={
            "help": "blocks to adapt: all | top:K | bottom:K | A-B | 0,2,4 (0 = nearest the input); "
            "blocks below the lowest adapted one run once per batch, not once per query"
        },
    )
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "method-specific settings"})


@dataclass
class OptimizerConfig:
    name: str = field(default="mezo_sgd", metadata={"help": "zeroth-order method (see `zoengine methods`)"})
    lr: float | None = field(
        default=None,
        metadata={
            "help": "learning rate, > 0; empty or 'auto' = the calibrated default for this adapter, "
            "optimizer and trainable size (zoengine.optim.calibration), or run `zoengine tune`"
        },
    )
    eps: float = field(default=1e-3, metadata={"help": "perturbation scale epsilon, > 0"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 decay, skipped for biases and norms"})
    lr_schedule: str = field(default="constant", metadata={"help": "constant | linear | cosine"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps (overrides warmup_ratio)"})
    warmup_ratio: float = field(
        default=0.0, metadata={"help": "linear warm-up as a share of run.steps, in [0, 1)"}
    )
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "method-specific settings"})


@dataclass
class RunSettings:
    steps: int = field(default=500, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    eval_every: int = field(
        default=100, metadata={"help": "evaluate on dev every N steps (0 = only at the end)"}
    )
    eval_batch_size: int = field(default=32, metadata={"help": "examples per evaluation forward"})
    checkpoint_every: int = field(default=100, metadata={"help": "checkpoint every N steps; 0 = off"})
    checkpoint_minutes: float = field(
        default=5.0,
        metadata={
            "help": "also checkpoint when this many minutes of training passed since the last "
            "checkpoint, so a kill never loses more; 0 = off"
        },
    )
    zero_shot_eval: bool = field(default=True, metadata={"help": "evaluate on dev before training"})
    seed: int = field(default=0, metadata={"help": "seed for data order and perturbations"})
    output_dir: str | None = field(
        default=None, metadata={"help": "run directory (default: under the runs home)"}
    )
    name: str | None = field(default=None, metadata={"help": "run name"})
    divergence_factor: float = field(
        default=4.0,
        metadata={
            "help": "a step loss above this many times the median of the last 32 counts as a divergence "
            "(0 = only NaN/inf losses, gradients, tensors or dev losses do)"
        },
    )
    divergence_lr_factor: float = field(
        default=0.5, metadata={"help": "lr multiplier at each rollback after a divergence, in (0, 1]"}
    )
    divergence_retries: int = field(
        default=3,
        metadata={
            "help": "rollbacks to the last good state before the run stops as 'diverged' "
            "(0 = stop at the first divergence and keep no in-memory snapshot)"
        },
    )
    share_prefix: bool = field(
        default=True,
        metadata={
            "help": "run the frozen blocks below the first trainable one once per batch and reuse "
            "their output for every query of the step (exact; off = recompute)"
        },
    )
    parallel: str = field(
        default="data",
        metadata={
            "help": "with several processes (--nproc / torchrun): data (each rank takes a shard of "
            "the batch) | query (each rank takes a share of the step's queries, whole batch)"
        },
    )
    nproc: int = field(
        default=1,
        metadata={
            "help": "processes (torchrun ranks) on this machine; >1 starts `zoengine train --nproc N` "
            "and follows its run directory (a launcher setting: the engine itself ignores it)"
        },
    )


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    run: RunSettings = field(default_factory=RunSettings)

    # --- (de)serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Nested dict with method options flattened into their section (the TOML layout)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            section = dataclasses.asdict(getattr(self, f.name))
            options = section.pop("options", None) or {}
            section.update(options)
            out[f.name] = {k: v for k, v in section.items() if v is not None}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        cfg = cls()
        for section_name, values in data.items():
            if section_name not in SECTIONS:
                raise ConfigError(f"unknown section; allowed: {', '.join(SECTIONS)}", field=section_name)
            if not isinstance(values, dict):
                raise ConfigError("must be a table", field=section_name)
            for key, value in values.items():
                cfg.set(f"{section_name}.{key}", value)
        return cfg

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> RunConfig:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", field=source) from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunConfig:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"is a folder, not a TOML file: {p}", field="--config")
        if not p.is_file():
            raise ConfigError(f"file not found: {p}", field="--config")
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{p} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save it as UTF-8 TOML",
                field="--config",
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {p}: {exc.strerror or exc}", field="--config") from None
        return cls.from_toml(text, source=str(p))

    def save(self, path: str | os.PathLike[str]) -> None:
        from zoengine.io import atomic_write_text

        atomic_write_text(Path(path), self.to_toml())

    def copy(self) -> RunConfig:
        return RunConfig.from_dict(self.to_dict())

    # --- dotted access (CLI --set, app form) ---------------------------------------------------

    def set(self, dotted: str, value: Any) -> None:
        """Set ``section.key`` from a TOML value or a string (as typed on a command line). Names
        users know from Hugging Face Trainer/PEFT are accepted for ours (``HF_ALIASES``)."""
        dotted = HF_ALIASES.get(dotted, dotted)
        section_name, _, key = dotted.partition(".")
        if section_name not in SECTIONS or not key:
            raise ConfigError(f"expected section.key with section in {', '.join(SECTIONS)}", field=dotted)
        section = getattr(self, section_name)
        known = {f.name: f for f in dataclasses.fields(section) if f.name != "options"}
        if key in known:
            setattr(section, key, _coerce(dotted, value, known[key]))
        elif hasattr(section, "options"):
            section.options[key] = _parse_scalar(value) if isinstance(value, str) else value
        else:
            raise ConfigError(f"unknown key; allowed: {', '.join(known)}", field=dotted)

    # --- validation ----------------------------------------------------------------------------

    def validate(self) -> RunConfig:
        """Check the common fields; method registries check their own options. Returns self."""
        m, t, o, r = self.model, self.task, self.optimizer, self.run
        _choice("model.kind", m.kind, MODEL_KINDS)
        _choice("model.dtype", m.dtype, DTYPES)
        if not (m.device in ("auto", "cpu", "cuda") or m.device.startswith("cuda:")):
            raise ConfigError(f"must be auto, cpu, cuda or cuda:N (got {m.device!r})", field="model.device")
        if not m.name.strip():
            raise ConfigError("must not be empty", field="model.name")
        m.device_map = check_device_map(m.device_map)
        _positive("model.max_length", m.max_length)
        if t.template is not None and "{" not in t.template:
            raise ConfigError(
                "template must contain a {column} placeholder such as {text}", field="task.template"
            )
        if t.label_words is not None:
            if len(t.label_words) < 2:
                raise ConfigError("needs at least two label words", field="task.label_words")
            for w in t.label_words:
                if not str(w).strip():
                    raise ConfigError("label words must not be empty", field="task.label_words")
        if t.label_map is not None:
            for value, word in t.label_map.items():
                if not str(value).strip() or not str(word).strip():
                    raise ConfigError(
                        f"label values and words must not be empty (got {value!r} = {word!r})",
                        field="task.label_map",
                    )
        for name in ("n_train", "n_dev", "n_test"):
            if getattr(t, name) is not None and getattr(t, name) < 0:
                raise ConfigError(f"must be >= 0 (got {getattr(t, name)})", field=f"task.{name}")
        _choice("run.parallel", r.parallel, ("data", "query"))
        if r.nproc < 1:
            raise ConfigError(f"must be an integer >= 1 (got {r.nproc})", field="run.nproc")
        from zoengine.layers import check_layers_spec

        check_layers_spec(self.adapter.layers)
        for name, seed in (("task.seed", t.seed), ("run.seed", r.seed)):
            if not (0 <= seed < 2**32):
                raise ConfigError(f"must be an integer in 0..{2**32 - 1} (got {seed})", field=name)
        if t.k_shot is not None:
            _positive("task.k_shot", t.k_shot)
        if o.lr is not None and not (math.isfinite(o.lr) and o.lr > 0):
            raise ConfigError(f"must be a finite number > 0 or auto (got {o.lr})", field="optimizer.lr")
        if not (math.isfinite(o.eps) and o.eps > 0):
            raise ConfigError(f"must be a finite number > 0 (got {o.eps})", field="optimizer.eps")
        if not (math.isfinite(o.weight_decay) and o.weight_decay >= 0):
            raise ConfigError(
                f"must be a finite number >= 0 (got {o.weight_decay})", field="optimizer.weight_decay"
            )
        _choice("optimizer.lr_schedule", o.lr_schedule, LR_SCHEDULES)
        if o.warmup_steps < 0:
            raise ConfigError(f"must be >= 0 (got {o.warmup_steps})", field="optimizer.warmup_steps")
        _positive("run.steps", r.steps)
        if not (0.0 <= o.warmup_ratio < 1.0):
            raise ConfigError(f"must be in [0, 1) (got {o.warmup_ratio})", field="optimizer.warmup_ratio")
        if o.warmup_steps >= r.steps > 0 and o.warmup_steps > 0:
            raise ConfigError(
                f"must be < run.steps ({r.steps}) (got {o.warmup_steps}); or set optimizer.warmup_ratio",
                field="optimizer.warmup_steps",
            )
        if not (math.isfinite(r.checkpoint_minutes) and r.checkpoint_minutes >= 0):
            raise ConfigError(
                f"must be a number of minutes >= 0, 0 = off (got {r.checkpoint_minutes})",
                field="run.checkpoint_minutes",
            )
        _positive("run.batch_size", r.batch_size)
        _positive("run.eval_batch_size", r.eval_batch_size)
        for name in ("eval_every", "checkpoint_every"):
            if getattr(r, name) < 0:
                raise ConfigError(f"must be >= 0 (got {getattr(r, name)})", field=f"run.{name}")
        if not (math.isfinite(r.divergence_factor) and (r.divergence_factor == 0 or r.divergence_factor > 1)):
            raise ConfigError(
                f"must be 0 (off) or a finite number > 1 (got {r.divergence_factor})",
                field="run.divergence_factor",
            )
        if not (math.isfinite(r.divergence_lr_factor) and 0 < r.divergence_lr_factor <= 1):
            raise ConfigError(
                f"must be a number in (0, 1] (got {r.divergence_lr_factor})", field="run.divergence_lr_factor"
            )
        if r.divergence_retries < 0:
            raise ConfigError(f"must be >= 0 (got {r.divergence_retries})", field="run.divergence_retries")
        self._validate_methods()
        return self

    def _validate_methods(self) -> None:
        """Let the optimizer and adapter registries check their method-specific options."""
        from zoengine import adapters, optim

        optim.validate_config(self.optimizer)
        optim.check_run_length(self.optimizer, self.run.steps)
        adapters.validate_config(self.adapter)


SECTIONS = ("model", "task", "adapter", "optimizer", "run")

# Hugging Face Trainer / PEFT names -> ours (TOML keys and --set)
HF_ALIASES = {
    "run.max_steps": "run.steps",
    "run.eval_steps": "run.eval_every",
    "run.save_steps": "run.checkpoint_every",
    "run.per_device_train_batch_size": "run.batch_size",
    "run.per_device_eval_batch_size": "run.eval_batch_size",
    "optimizer.learning_rate": "optimizer.lr",
    "adapter.target_modules": "adapter.targets",
    "adapter.lora_alpha": "adapter.alpha",
}

DEVICE_MAP_SPECIAL = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE = re.compile(r"^(cpu|disk|cuda|cuda:\d+|\d+)$")


def check_device_map(value: Any) -> str | dict[str, str] | None:
    """``model.device_map``: None/"none", an accelerate strategy ("auto" ...) or a table of module
    prefix -> device (a TOML table, or JSON / ``a=cpu, b=cuda:1`` text); one-line ConfigError else."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text in DEVICE_MAP_SPECIAL:
            return text
        value = _parse_mapping(text)
        if isinstance(value, str):
            raise ConfigError(
                f"must be none, {', '.join(DEVICE_MAP_SPECIAL)} or a table of module -> device "
                f"(got {text!r})",
                field="model.device_map",
            )
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"must be none, auto or a table of module -> device (got {value!r})", field="model.device_map"
        )
    out: dict[str, str] = {}
    for key, dev in value.items():
        dev_text = str(dev).strip()
        if isinstance(dev, bool) or not _DEVICE.match(dev_text):
            raise ConfigError(
                f"device of {key!r} must be cpu, disk, cuda, cuda:N or N (got {dev!r})",
                field="model.device_map",
            )
        out[str(key).strip()] = dev_text
    return out


def _choice(field_name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"must be one of {', '.join(allowed)} (got {value!r})", field=field_name)


def _positive(field_name: str, value: int) -> None:
    if not (value > 0):
        raise ConfigError(f"must be > 0 (got {value})", field=field_name)


def _parse_scalar(text: str) -> Any:
    """Parse a command-line value as TOML ("1e-6", "true", "[1, 2]"), falling back to the string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    stripped = text.strip().replace("_", "")
    if re.fullmatch(r"[+-]?0\d+", stripped):  # "05": TOML refuses leading zeros, people type them
        return int(stripped)
    if re.fullmatch(r"[+-]?0\d+(\.\d+)?([eE][+-]?\d+)?", stripped):
        return float(stripped)
    return text


def _coerce(dotted: str, value: Any, f: dataclasses.Field[Any]) -> Any:
    """Convert ``value`` to the declared type of ``f`` or raise a one-line ConfigError."""
    type_text = str(f.type)
    if type_text.startswith("str | dict"):  # model.device_map: a strategy name or a table
        return check_device_map(value)
    if isinstance(value, str) and not type_text.startswith("str"):
        value = _parse_scalar(value)
    if value is None or (
        isinstance(value, str) and value.lower() in ("none", "null", "auto") and "None" in type_text
    ):
        if "None" in type_text:
            return None
        raise ConfigError("must not be empty", field=dotted)
    try:
        if type_text.startswith("bool"):
            if isinstance(value, bool):
                return value
            raise TypeError
        if type_text.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if type_text.startswith("float"):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if type_text.startswith("list"):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list | tuple) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
            ):
                raise TypeError
            return [str(v) for v in value]
        if type_text.startswith("dict"):
            if isinstance(value, str):
                value = _parse_mapping(value)
            if not isinstance(value, dict) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
            ):
                raise TypeError
            return {str(k).strip(): str(v).strip() for k, v in value.items()} or None
        if type_text.startswith("str"):
            if isinstance(value, list | dict):
                raise TypeError
            return str(value)
    except (TypeError, ValueError, OverflowError):
        kind = type_text.split(" |")[0]
        if kind.startswith("dict"):
            kind = 'a table of value = "word", e.g. {neg = "terrible", pos = "great"}'
        raise ConfigError(f"expected {kind} (got {value!r})", field=dotted) from None
    return value


def _parse_mapping(text: str) -> Any:
    """A table typed on a command line: TOML ``{a = "x"}``, JSON ``{"a": "x"}`` or ``a=x, b=y``."""
    import json

    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            return text
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, word = item.partition("=") if "=" in item else item.partition(":")
        if not sep or not key.strip() or not word.strip():
            return text
        out[key.strip().strip("\"'")] = word.strip().strip("\"'")
    return out or text
