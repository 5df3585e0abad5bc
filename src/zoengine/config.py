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

from zoengine import schema
from zoengine.errors import ConfigError
from zoengine.schema import setting

MODEL_KINDS = ("auto", "causal_lm", "masked_lm", "classifier")
DTYPES = ("auto", "float32", "bfloat16", "float16")
LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class ModelConfig:
    name: str = setting("smollm2-135m-instruct", help="zoo name, hub id, local model directory or .gguf file")
    kind: str = setting("auto", help="what to train the model as", choices=MODEL_KINDS)
    dtype: str = setting(
        "auto", help="dtype of the frozen base: auto = fp32 on CPU, bf16 on CUDA", choices=DTYPES
    )
    device: str = setting("auto", help="auto | cpu | cuda | cuda:N")
    device_map: str | dict[str, str] | None = setting(
        None,
        help="split the frozen base over devices (accelerate): none | auto | a table of module "
        'prefix -> device, e.g. {"model.layers.0" = "cuda:0", "model.layers.1" = "cuda:1"}',
        parse=lambda value: check_device_map(value),
    )
    max_length: int = setting(64, help="prompt length in tokens (longer prompts are cut from the left)", gt=0)


@dataclass
class TaskConfig:
    name: str = setting(
        "rotten-tomatoes",
        help="zoo data set, MeZO task (sst2, rte, cb, boolq, wsc, wic, multirc, copa) or 'file'",
    )
    path: str | None = setting(None, help="local CSV/JSONL/parquet file or hub data set id")
    text_columns: list[str] = setting(default_factory=list, help="column(s) filling {placeholders}")
    label_column: str = setting("label", help="column holding the label")
    template: str | None = setting(None, help="prompt template with {column} placeholders")
    label_words: list[str] | None = setting(None, help="one verbalizer word per label")
    label_map: dict[str, str] | None = setting(
        None,
        help='label value -> label word, e.g. {neg = "terrible", pos = "great"}; needed when '
        "the label values are neither the words themselves nor 0..K-1 indices into label_words",
    )
    n_train: int | None = setting(
        None, help="training examples (empty: 1000, or 60% of a smaller data set)", ge=0
    )
    n_dev: int | None = setting(
        None,
        help="development examples, evaluated during training (empty: 500, or 20% of a smaller data set)",
        ge=0,
    )
    n_test: int | None = setting(
        None, help="held-out test examples (empty: 1000, or 20% of a smaller data set)", ge=0
    )
    k_shot: int | None = setting(None, help="k examples per class for train (overrides n_train)", gt=0)
    seed: int = setting(42, help="seed of the train/dev/test split", ge=0, lt=2**32)


@dataclass
class AdapterConfig:
    method: str = setting("full", help="full | subset | bitfit | lora | lora_xs | sora | tt")
    targets: list[str] | None = setting(
        None, help="module/parameter name patterns; empty = per-architecture default"
    )
    layers: str | None = setting(
        None,
        help="blocks to adapt: all | top:K | bottom:K | A-B | 0,2,4 (0 = nearest the input); "
        "blocks below the lowest adapted one run once per batch, not once per query",
    )
    options: dict[str, Any] = setting(default_factory=dict, help="method-specific settings")


@dataclass
class OptimizerConfig:
    name: str = setting("mezo_sgd", help="zeroth-order method (see `zoengine methods`)")
    lr: float | None = setting(
        None,
        help="learning rate, > 0; empty or 'auto' = the calibrated default for this adapter, "
        "optimizer and trainable size (zoengine.optim.calibration), or run `zoengine tune`",
    )
    eps: float = setting(1e-3, help="perturbation scale epsilon", gt=0)
    weight_decay: float = setting(0.0, help="L2 decay, skipped for biases and norms", ge=0)
    lr_schedule: str = setting("constant", help="lr over the run", choices=LR_SCHEDULES)
    warmup_steps: int = setting(0, help="linear warm-up steps (overrides warmup_ratio)", ge=0)
    warmup_ratio: float = setting(0.0, help="linear warm-up as a share of run.steps", ge=0, lt=1)
    options: dict[str, Any] = setting(default_factory=dict, help="method-specific settings")


@dataclass
class RunSettings:
    steps: int = setting(500, help="optimizer steps", gt=0)
    batch_size: int = setting(16, help="examples per step", gt=0)
    eval_every: int = setting(100, help="evaluate on dev every N steps (0 = only at the end)", ge=0)
    eval_batch_size: int = setting(32, help="examples per evaluation forward", gt=0)
    checkpoint_every: int = setting(100, help="checkpoint every N steps; 0 = off", ge=0)
    checkpoint_minutes: float = setting(
        5.0,
        help="also checkpoint when this many minutes of training passed since the last "
        "checkpoint, so a kill never loses more; 0 = off",
        ge=0,
    )
    zero_shot_eval: bool = setting(True, help="evaluate on dev before training")
    seed: int = setting(0, help="seed for data order and perturbations", ge=0, lt=2**32)
    output_dir: str | None = setting(None, help="run directory (default: under the runs home)")
    name: str | None = setting(None, help="run name")
    divergence_factor: float = setting(
        4.0,
        help="a step loss above this many times the median of the last 32 counts as a divergence "
        "(0 = only NaN/inf losses, gradients, tensors or dev losses do)",
    )
    divergence_lr_factor: float = setting(
        0.5, help="lr multiplier at each rollback after a divergence", gt=0, le=1
    )
    divergence_retries: int = setting(
        3,
        help="rollbacks to the last good state before the run stops as 'diverged' "
        "(0 = stop at the first divergence and keep no in-memory snapshot)",
        ge=0,
    )
    share_prefix: bool = setting(
        True,
        help="run the frozen blocks below the first trainable one once per batch and reuse "
        "their output for every query of the step (exact; off = recompute)",
    )
    parallel: str = setting(
        "data",
        help="with several processes (--nproc / torchrun): data (each rank takes a shard of "
        "the batch) | query (each rank takes a share of the step's queries, whole batch)",
        choices=("data", "query"),
    )
    nproc: int = setting(
        1,
        help="processes (torchrun ranks) on this machine; >1 starts `zoengine train --nproc N` "
        "and follows its run directory (a launcher setting: the engine itself ignores it)",
        ge=1,
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
            setattr(section, key, schema.coerce(dotted, value, known[key]))
        elif hasattr(section, "options"):
            section.options[key] = schema.parse_scalar(value) if isinstance(value, str) else value
        else:
            raise ConfigError(f"unknown key; allowed: {', '.join(known)}", field=dotted)

    # --- validation ----------------------------------------------------------------------------

    def validate(self) -> RunConfig:
        """Check the common fields (types at ``set``, ranges and choices here, from the schema,
        then the cross-field rules); method registries check their own options. Returns self."""
        m, t, o, r = self.model, self.task, self.optimizer, self.run
        for name in ("model", "task", "adapter", "run"):  # the optimizer's: optim.validate_config
            schema.check_instance(name, getattr(self, name))
        if not (m.device in ("auto", "cpu", "cuda") or m.device.startswith("cuda:")):
            raise ConfigError(f"must be auto, cpu, cuda or cuda:N (got {m.device!r})", field="model.device")
        if not m.name.strip():
            raise ConfigError("must not be empty", field="model.name")
        m.device_map = check_device_map(m.device_map)
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
        from zoengine.layers import check_layers_spec

        check_layers_spec(self.adapter.layers)
        if not (math.isfinite(r.divergence_factor) and (r.divergence_factor == 0 or r.divergence_factor > 1)):
            raise ConfigError(
                f"must be 0 (off) or a finite number > 1 (got {r.divergence_factor})",
                field="run.divergence_factor",
            )
        self._validate_methods()
        if o.warmup_steps >= r.steps > 0 and o.warmup_steps > 0:
            raise ConfigError(
                f"must be < run.steps ({r.steps}) (got {o.warmup_steps}); or set optimizer.warmup_ratio",
                field="optimizer.warmup_steps",
            )
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
        value = schema.parse_mapping(text)
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
