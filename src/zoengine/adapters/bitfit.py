"""BitFit: train the bias terms only (optionally restricted by adapter.targets patterns)."""

from __future__ import annotations

from typing import Any

from torch import nn

from zoengine.adapters._select import train_in_place
from zoengine.adapters.base import AdapterMethod
from zoengine.adapters.handle import AdapterHandle
from zoengine.adapters.targets import resolve_parameters
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError
from zoengine.layers import select_in_layers


class BitFit(AdapterMethod):
    name = "bitfit"
    help = "train the bias vectors only"
    no_lora_reason = "BitFit trains biases and has no LoRA form: use native or merged"

    def apply(self, model: nn.Module, cfg: AdapterConfig, opts: dict[str, Any], seed: int) -> AdapterHandle:
        patterns = self.check_targets(cfg)
        names = resolve_parameters(model, patterns) if patterns else [n for n, _ in model.named_parameters()]
        biases = [n for n in names if n.rsplit(".", 1)[-1] == "bias"]
        if not biases:
            model_type = getattr(getattr(model, "config", None), "model_type", "this model")
            raise AdapterError(
                f"{model_type} has no bias parameters{' among the targets' if patterns else ''}",
                field="adapter.method",
                hint="Llama-style models have no biases; use lora, lora_xs, sora or tt",
            )
        return train_in_place(self, model, cfg, opts, seed, select_in_layers(model, biases, cfg.layers))
