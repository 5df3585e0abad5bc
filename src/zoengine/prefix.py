"""Shared frozen prefix: run blocks ``0..k-1`` once per batch and reuse their output for every query.

A ZO step evaluates the loss 2·Q times on one batch, each time with a different perturbation of the
trainable tensors. When every trainable tensor sits in block k or above (a final-norm subset, LoRA
or TT on the top blocks), the hidden states entering block k do not depend on the perturbation, so
the first forward of a batch records the output of block ``k-1`` and every later forward of the
*same batch object* replaces blocks ``0..k-1`` by a lookup of that output. The result is exact:
the same tensors flow into block k, so the losses are bit-identical to the uncached forward.

What it does not do: reuse across batches (the cache is dropped when its batch is garbage-collected
or another batch arrives, so it never outlives its batch), run while autograd records (a
first-order step has one forward per batch and needs the graph), or touch any block that holds a
trainable tensor. Evaluation batches, which the objective keeps for the whole run (the dev set is
tokenized once), are *pinned*: their prefix output is kept while the batch lives, up to
``max_pinned_bytes``, so every later evaluation runs only blocks ``k..N-1``. Cost of a step with sharing: one full forward plus ``2Q-1`` forwards of blocks
``k..N-1`` and the head; ``step_cost_ratio`` gives that as a fraction of ``2Q`` full forwards.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from zoengine.layers import first_trainable_layer, layer_stack

__all__ = ["PrefixCache", "step_cost_ratio"]


def step_cost_ratio(start: int, n_layers: int, queries: int, head_share: float = 0.05) -> float:
    """Expected cost of a step with sharing over its ``2·queries`` full forwards: one full forward,
    then ``2Q-1`` forwards of ``n_layers - start`` blocks plus the embedding/head (``head_share`` of
    a forward, the part that always runs)."""
    if n_layers <= 0 or start <= 0:
        return 1.0
    passes = 2 * max(1, queries)
    blocks_share = 1.0 - head_share
    partial = head_share + blocks_share * (n_layers - start) / n_layers
    return (1.0 + (passes - 1) * partial) / passes


class PrefixCache:
    """The output of the frozen blocks below ``start`` for the batch being stepped on."""

    def __init__(self, model: nn.Module, start: int | None = None, max_pinned_bytes: int = 256 * 2**20) -> None:
        found = layer_stack(model)
        self.stack: nn.ModuleList | None = found[1] if found else None
        self.n_layers = len(self.stack) if self.stack is not None else 0
        self.start = first_trainable_layer(model) if start is None else start
        self._batch: weakref.ref[Any] | None = None
        self._output: Any = None
        self._pinned: dict[int, tuple[weakref.ref[Any], Any, int]] = {}  # id(batch) -> (ref, output, bytes)
        self.max_pinned_bytes = max_pinned_bytes
        self.pinned_bytes = 0
        self.hits = 0  # forwards that skipped the prefix
        self.misses = 0  # forwards that ran it (and recorded)

    @property
    def active(self) -> bool:
        return self.stack is not None and self.start > 0

    def clear(self) -> None:
        self._batch, self._output = None, None

    def holds(self, batch: Any) -> bool:
        return self._lookup(batch) is not None

    def _lookup(self, batch: Any) -> Any:
        pinned = self._pinned.get(id(batch))
        if pinned is not None and pinned[0]() is batch:
            return pinned[1]
        if self._batch is not None and self._batch() is batch:
            return self._output
        return None

    def _unpin(self, key: int) -> None:
        entry = self._pinned.pop(key, None)
        if entry is not None:
            self.pinned_bytes -= entry[2]

    @contextmanager
    def forward_for(self, batch: Any, pin: bool = False) -> Iterator[None]:
        """Wrap one model forward on ``batch``: record the prefix output, or replay it. ``pin``
        keeps the output for as long as ``batch`` lives (evaluation batches reused all run)."""
        if not self.active or torch.is_grad_enabled():
            yield
            return
        assert self.stack is not None
        output = self._lookup(batch)
        if output is not None:
            self.hits += 1
            with self._replaying(output):
                yield
            return
        self.misses += 1
        recorded: list[Any] = []
        handle = self.stack[self.start - 1].register_forward_hook(lambda m, a, out: recorded.append(out))
        try:
            yield
        finally:
            handle.remove()
        if not recorded:
            return
        size = _nbytes(recorded[-1])
        if pin and self.pinned_bytes + size <= self.max_pinned_bytes:
            key = id(batch)
            self._pinned[key] = (weakref.ref(batch, lambda _ref, k=key: self._unpin(k)), recorded[-1], size)
            self.pinned_bytes += size
            return
        self.clear()
        self._output = recorded[-1]
        self._batch = weakref.ref(batch, lambda _ref: self.clear())

    @contextmanager
    def _replaying(self, output: Any) -> Iterator[None]:
        """Blocks ``0..start-1`` return the recorded output instead of computing (block ``start``
        receives exactly what it received in the recorded forward)."""
        assert self.stack is not None
        saved: list[tuple[nn.Module, Any]] = []

        def replay(*args: Any, **kwargs: Any) -> Any:
            return output

        try:
            for block in list(self.stack)[: self.start]:
                saved.append((block, block.__dict__.get("forward")))  # accelerate may have set one
                block.forward = replay
            yield
        finally:
            for block, previous in saved:
                if previous is None:
                    del block.forward
                else:
                    block.forward = previous


def _nbytes(output: Any) -> int:
    """Bytes of the tensors in a block's output (a tensor or a tuple holding some)."""
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, (tuple, list)):
        return sum(_nbytes(o) for o in output)
    return 0
