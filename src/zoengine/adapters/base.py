"""What every adapter method is written against: the registry entry (:class:`AdapterMethod`), the
injected side path (:class:`AdapterModule`) and the options schema of a method without options.

Target resolution lives in ``targets``, injection in ``injection`` and the trainable set in
``handle``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from zoengine import schema
from zoengine.adapters.targets import check_patterns
from zoengine.config import AdapterConfig
from zoengine.errors import ConfigError

if TYPE_CHECKING:
    from zoengine.adapters.handle import AdapterHandle


@dataclass
class NoOptions:
    """The options schema of a method without options of its own."""


class AdapterModule(nn.Module):
    """A side path attached to a base layer. Computes in float32 and adds to the layer's output."""

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


class AdapterMethod:
    """One registry entry. Subclasses set name/help/options and implement ``apply``."""

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
