"""The handle ``apply_adapter`` returns: the trainable tensors in a fixed order, their optimizer
groups and state dicts, and the method's per-step hooks.

Everything the ZO optimizer perturbs is listed here, so the order of ``named_trainable`` and
``param_groups`` is part of the reproducibility contract (a seed regenerates the same directions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from zoengine.adapters.targets import sample_names
from zoengine.config import AdapterConfig
from zoengine.errors import AdapterError

if TYPE_CHECKING:
    from zoengine.adapters.base import AdapterMethod, AdapterModule


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

    def block_positions(self) -> list[tuple[int, float | None]]:
        """``(size, depth position)`` of each trainable tensor (``zoengine.layers.block_positions``)."""
        from zoengine.layers import block_positions

        return block_positions(self.model, [(n, p.numel()) for n, p in self._trainable])

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
                f"checkpoint does not fit this adapter (missing {sample_names(missing, 3) or 'none'}; "
                f"unexpected {sample_names(extra, 3) or 'none'})",
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
