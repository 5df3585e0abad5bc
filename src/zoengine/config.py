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
import os
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
    n_train: int = field(default=1000, metadata={"help": "training examples"})
    n_dev: int = field(default=500, metadata={"help": "development examples (eval during training)"})
    n_test: int = field(default=1000, metadata={"help": "held-out test examples"})
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
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "method-specific settings"})


@dataclass
class OptimizerConfig:
    name: str = field(default="mezo_sgd", metadata={"help": "zeroth-order method (see `zoengine methods`)"})
    lr: float = field(default=1e-6, metadata={"help": "learning rate, > 0"})
    eps: float = field(default=1e-3, metadata={"help": "perturbation scale epsilon, > 0"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 decay, skipped for biases and norms"})
    lr_schedule: str = field(default="constant", metadata={"help": "constant | linear | cosine"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "method-specific settings"})


@dataclass
class RunSettings:
    steps: int = field(default=500, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    eval_every: int = field(
        default=100, metadata={"help": "evaluate on dev every N steps (0 = only at the end)"}
    )
    eval_batch_size: int = field(default=32, metadata={"help": "examples per evaluation forward"})
    checkpoint_every: int = field(default=100, metadata={"help": "checkpoint every N steps"})
    zero_shot_eval: bool = field(default=True, metadata={"help": "evaluate on dev before training"})
    seed: int = field(default=0, metadata={"help": "seed for data order and perturbations"})
    output_dir: str | None = field(
        default=None, metadata={"help": "run directory (default: under the runs home)"}
    )
    name: str | None = field(default=None, metadata={"help": "run name"})


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
        if not p.is_file():
            raise ConfigError(f"file not found: {p}", field="--config")
        return cls.from_toml(p.read_text(encoding="utf-8"), source=str(p))

    def save(self, path: str | os.PathLike[str]) -> None:
        from zoengine.io import atomic_write_text

        atomic_write_text(Path(path), self.to_toml())

    def copy(self) -> RunConfig:
        return RunConfig.from_dict(self.to_dict())

    # --- dotted access (CLI --set, app form) ---------------------------------------------------

    def set(self, dotted: str, value: Any) -> None:
        """Set ``section.key`` from a TOML value or a string (as typed on a command line)."""
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
        for name in ("n_train", "n_dev", "n_test"):
            if getattr(t, name) < 0:
                raise ConfigError(f"must be >= 0 (got {getattr(t, name)})", field=f"task.{name}")
        if t.k_shot is not None:
            _positive("task.k_shot", t.k_shot)
        if not (o.lr > 0):
            raise ConfigError(f"must be > 0 (got {o.lr})", field="optimizer.lr")
        if not (o.eps > 0):
            raise ConfigError(f"must be > 0 (got {o.eps})", field="optimizer.eps")
        if o.weight_decay < 0:
            raise ConfigError(f"must be >= 0 (got {o.weight_decay})", field="optimizer.weight_decay")
        _choice("optimizer.lr_schedule", o.lr_schedule, LR_SCHEDULES)
        if o.warmup_steps < 0:
            raise ConfigError(f"must be >= 0 (got {o.warmup_steps})", field="optimizer.warmup_steps")
        _positive("run.steps", r.steps)
        _positive("run.batch_size", r.batch_size)
        _positive("run.eval_batch_size", r.eval_batch_size)
        for name in ("eval_every", "checkpoint_every"):
            if getattr(r, name) < 0:
                raise ConfigError(f"must be >= 0 (got {getattr(r, name)})", field=f"run.{name}")
        self._validate_methods()
        return self

    def _validate_methods(self) -> None:
        """Let the optimizer and adapter registries check their method-specific options."""
        from zoengine import adapters, optim

        optim.validate_config(self.optimizer)
        adapters.validate_config(self.adapter)


SECTIONS = ("model", "task", "adapter", "optimizer", "run")


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
        return text


def _coerce(dotted: str, value: Any, f: dataclasses.Field[Any]) -> Any:
    """Convert ``value`` to the declared type of ``f`` or raise a one-line ConfigError."""
    type_text = str(f.type)
    if isinstance(value, str) and not type_text.startswith("str"):
        value = _parse_scalar(value)
    if value is None or (
        isinstance(value, str) and value.lower() in ("none", "null") and "None" in type_text
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
            if not isinstance(value, list | tuple):
                raise TypeError
            return [str(v) for v in value]
        if type_text.startswith("str"):
            if isinstance(value, list | dict):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        kind = type_text.split(" |")[0]
        raise ConfigError(f"expected {kind} (got {value!r})", field=dotted) from None
    return value
