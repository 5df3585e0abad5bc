"""Full fine-tuning: every parameter of the model is trainable (MeZO's original setting)."""

from __future__ import annotations

from typing import Any

from torch import nn

from zoengine.adapters._select import train_in_place
from zoengine.adapters.base import AdapterMethod
from zoengine.adapters.handle import AdapterHandle
from zoengine.config import AdapterConfig
from zoengine.errors import ConfigError


class Full(AdapterMethod):
    name = "full"
    help = "train all parameters (MeZO full fine-tuning)"
    no_lora_reason = "full fine-tuning changes every weight and has no LoRA form: use native or merged"

    def check_targets(self, cfg: AdapterConfig) -> list[str] | None:
        if cfg.targets:
            raise ConfigError(
                "full trains every parameter; use method = subset to pick some", field="adapter.targets"
            )
        if cfg.layers is not None and str(cfg.layers).strip().lower() not in ("", "all"):
            raise ConfigError(
                "full trains every block; use subset (targets = ['layers']) or an adapter to pick blocks",
                field="adapter.layers",
            )
        return None

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        self.check_targets(cfg)
        return train_in_place(self, model, cfg, opts, seed, [n for n, _ in model.named_parameters()])
