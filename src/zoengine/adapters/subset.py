"""Named subset: train the parameters whose name (or owning module path) matches adapter.targets."""

from __future__ import annotations

from typing import Any

from torch import nn

from zoengine.adapters._select import train_in_place
from zoengine.adapters.base import AdapterMethod
from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.targets import resolve_parameters
from zoengine.config import AdapterConfig
from zoengine.layers import select_in_layers


class Subset(AdapterMethod):
    name = "subset"
    help = "train the named parameters only (targets = parameter/module name patterns)"
    requires_targets = True
    no_lora_reason = "a parameter subset has no LoRA form: use native or merged"

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        patterns = self.check_targets(cfg) or []
        names = select_in_layers(model, resolve_parameters(model, patterns), cfg.layers)
        return train_in_place(self, model, cfg, opts, seed, names)
