"""Which transformer block a module or parameter belongs to.

Three users: ``adapter.layers`` (put adapters on some blocks only, e.g. ``top:6``), prefix sharing
(the blocks below the first trainable one do not depend on the perturbation, see
``zoengine.prefix``) and the app's step-cost estimate. The block stack is found structurally — the
``nn.ModuleList`` of same-class children holding the most parameters (``model.layers`` in Llama,
``encoder.layer`` in BERT, ``transformer.h`` in GPT-2) — so no architecture table is needed.
"""

from __future__ import annotations

import re

from torch import nn

from zoengine.errors import ConfigError

__all__ = [
    "LAYERS_HELP",
    "block_positions",
    "check_layers_spec",
    "first_trainable_layer",
    "layer_index",
    "layer_stack",
    "parse_layers",
    "select_in_layers",
]

LAYERS_HELP = "blocks to adapt: all | top:K | bottom:K | A-B | a list such as 0,2,4 (0 = nearest the input)"
_PART = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """``(qualified name, ModuleList)`` of the model's repeated blocks, or None if it has none."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0 or not name:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if best is None or size > best[0]:
            best = (size, name, module)
    return (best[1], best[2]) if best is not None else None


def layer_index(stack_name: str, name: str) -> int | None:
    """The block number of a module/parameter ``name`` inside the stack ``stack_name``, else None."""
    if not name.startswith(stack_name + "."):
        return None
    head = name[len(stack_name) + 1 :].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def check_layers_spec(spec: str | None) -> None:
    """Syntax check without a model (config validation): raises ConfigError on ``adapter.layers``."""
    if spec is None:
        return
    parse_layers(spec, None)


def parse_layers(spec: str, n_layers: int | None) -> set[int] | None:
    """The block numbers ``spec`` selects out of ``n_layers`` (None = all); ``n_layers=None`` only
    checks the syntax. Raises ConfigError naming ``adapter.layers``."""
    text = str(spec).strip().lower()
    if text in ("", "all"):
        return None
    if m := re.fullmatch(r"(top|bottom)\s*:\s*(\d+)", text):
        k = int(m.group(2))
        if k < 1:
            raise ConfigError(
                f"{m.group(1)}:K needs K >= 1 (got {spec!r}); {LAYERS_HELP}", field="adapter.layers"
            )
        if n_layers is None:
            return set()
        if k > n_layers:
            raise ConfigError(f"the model has {n_layers} blocks (got {spec!r})", field="adapter.layers")
        return set(range(n_layers - k, n_layers)) if m.group(1) == "top" else set(range(k))
    chosen: set[int] = set()
    for part in text.split(","):
        m = _PART.match(part)
        if not m:
            raise ConfigError(f"cannot read {spec!r}; {LAYERS_HELP}", field="adapter.layers")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ConfigError(f"range {part.strip()!r} runs backwards; {LAYERS_HELP}", field="adapter.layers")
        chosen.update(range(lo, hi + 1))
    if n_layers is not None and max(chosen) >= n_layers:
        raise ConfigError(
            f"block {max(chosen)} does not exist: the model has blocks 0-{n_layers - 1}",
            field="adapter.layers",
        )
    return chosen


def select_in_layers(model: nn.Module, names: list[str], spec: str | None) -> list[str]:
    """``names`` (modules or parameters) restricted to the blocks ``spec`` selects: names outside
    the block stack (embeddings, final norm, head) are dropped too. Raises when nothing is left."""
    if spec is None or str(spec).strip().lower() in ("", "all"):
        return names
    found = layer_stack(model)
    if found is None:
        raise ConfigError("this model has no stack of repeated blocks to choose from", field="adapter.layers")
    stack_name, stack = found
    keep = parse_layers(spec, len(stack)) or set()
    out = [n for n in names if layer_index(stack_name, n) in keep]
    if not out:
        raise ConfigError(f"no target lies in blocks {spec!r}", field="adapter.layers")
    return out


def first_trainable_layer(model: nn.Module) -> int:
    """Index k of the first block holding a trainable tensor (``len(stack)`` when only tensors after
    the stack train, such as the final norm or the head); 0 when a trainable tensor sits before the
    stack (embeddings) or the model has no stack. Blocks ``0..k-1`` see no perturbation."""
    found = layer_stack(model)
    if found is None:
        return 0
    stack_name, stack = found
    first_stack_param = next((n for n, _ in model.named_parameters() if n.startswith(stack_name + ".")), None)
    k = len(stack)
    before_stack = True
    for name, p in model.named_parameters():
        if name == first_stack_param:
            before_stack = False
        if not p.requires_grad:
            continue
        index = layer_index(stack_name, name)
        if index is not None:
            k = min(k, index)
        elif before_stack:
            return 0
    return k


def block_positions(model: nn.Module, named: list[tuple[str, int]]) -> list[tuple[int, float | None]]:
    """``(size, position)`` of each named tensor: position = the middle of its block as a fraction
    of the stack, from the input (0) to the output (1); None outside the stack (embeddings, final
    norm, head) or in a model without one. The lr rule weighs coordinates by it
    (``zoengine.optim.calibration.depth_factor``)."""
    found = layer_stack(model)
    if found is None:
        return [(size, None) for _, size in named]
    stack_name, stack = found
    out: list[tuple[int, float | None]] = []
    for name, size in named:
        index = layer_index(stack_name, name)
        out.append((size, None if index is None else (index + 0.5) / len(stack)))
    return out
