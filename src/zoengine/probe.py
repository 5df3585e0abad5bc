"""``zoengine probe MODEL``: how much memory the weights, a forward, a ZO step and a first-order step take.

    result = probe(cfg, batch=8, seq=64)      # cfg: a validated RunConfig (model + adapter)
    print(format_table(result))

Each phase runs once on a synthetic batch (``batch`` rows of ``seq`` random token ids) in this
process, in order: load the weights, one inference forward, one ZO step (``mezo_sgd``, 2 forwards,
no graph) and one first-order step (AdamW: forward + backward + optimizer state) on the same
adapter. Every number carries its source: on CUDA the torch caching allocator (peak allocated,
summed over the visible GPUs, this process only); on CPU the process RSS high-water mark (VmHWM,
reset before each phase; memory-mapped weights are read once after loading so they count), which
includes the Python interpreter and libraries, hence the "above weights" column. The recommendation compares each step's peak with the memory available
(CUDA: free + this process's reserved; CPU: available RAM + this process's RSS) with a 10 % margin.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from zoengine.config import RunConfig
from zoengine.errors import ZOError
from zoengine.telemetry import format_bytes, reset_peak

__all__ = ["ProbeResult", "ProbeRow", "format_table", "probe"]

MARGIN = 1.10  # a step "fits" when its peak plus 10 % is within the available memory


@dataclass
class ProbeRow:
    label: str
    peak_bytes: int  # peak of the phase (allocator or process RSS, see ``what``)
    above_weights: int  # peak minus the memory held once the weights were loaded
    what: str


@dataclass
class ProbeResult:
    model: str
    device: str
    adapter: str
    batch: int
    seq: int
    trainable: int
    total: int
    rows: list[ProbeRow] = field(default_factory=list)
    available_bytes: int | None = None
    available_what: str = ""
    fits: dict[str, bool] = field(default_factory=dict)
    recommendation: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "adapter": self.adapter,
            "batch": self.batch,
            "seq": self.seq,
            "trainable": self.trainable,
            "total": self.total,
            "rows": [r.__dict__ for r in self.rows],
            "available_bytes": self.available_bytes,
            "available_what": self.available_what,
            "fits": self.fits,
            "recommendation": self.recommendation,
        }


class _Meter:
    """Current and peak memory of this process on the model's device(s)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.what = (
            "torch allocator peak, this process, all visible GPUs"
            if cuda
            else "process RSS high-water (VmHWM), incl. Python + libraries"
        )

    def _devices(self) -> range:
        return range(torch.cuda.device_count())

    def reset(self) -> None:
        gc.collect()
        if self.cuda:
            for i in self._devices():
                torch.cuda.reset_peak_memory_stats(i)
        else:
            reset_peak("cpu")

    def current(self) -> int:
        if self.cuda:
            return sum(torch.cuda.memory_allocated(i) for i in self._devices())
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)

    def peak(self) -> int:
        if self.cuda:
            return sum(torch.cuda.max_memory_allocated(i) for i in self._devices())
        import psutil

        from zoengine.telemetry import _peak_rss

        value = _peak_rss(psutil.Process(os.getpid()).memory_info())
        return max(int(value or 0), self.current())

    def available(self) -> tuple[int | None, str]:
        try:
            if self.cuda:
                free = sum(torch.cuda.mem_get_info(i)[0] for i in self._devices())
                own = sum(torch.cuda.memory_reserved(i) for i in self._devices())
                return free + own, "free GPU memory + this process's reserved (all visible GPUs)"
            import psutil

            return int(
                psutil.virtual_memory().available
            ) + self.current(), "available RAM + this process's RSS"
        except Exception:  # a readout failure must not hide the measured table
            return None, "unknown"


def _loss(loaded: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at one position, as the engine's objectives score (no full-vocab logits)."""
    model = loaded.model
    if loaded.kind == "causal_lm":
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1]
    elif loaded.kind == "masked_lm":
        logits = model(input_ids=ids, attention_mask=mask).logits[:, 0]
    else:
        out = model(input_ids=ids, attention_mask=mask)
        logits = out if isinstance(out, torch.Tensor) else out.logits
    logits = logits.float()
    target = (ids[:, 0] % logits.shape[-1]).to(logits.device)
    return F.cross_entropy(logits, target)


def probe(cfg: RunConfig, *, batch: int = 8, seq: int = 64, seed: int = 0) -> ProbeResult:
    """Measure the four phases for ``cfg.model`` with ``cfg.adapter``; ZOError on bad input."""
    from zoengine.adapters import apply_adapter
    from zoengine.models import load_model
    from zoengine.optim.fo_adamw import FOAdamW
    from zoengine.optim.zo_sgd import MezoSGD

    for name, value in (("--batch", batch), ("--seq", seq)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ZOError(f"must be a whole number >= 1 (got {value!r})", field=name)
    meter_cuda = cfg.model.device != "cpu" and torch.cuda.is_available()
    meter = _Meter(meter_cuda)

    meter.reset()
    before = meter.current()
    loaded = load_model(cfg.model)
    if not meter.cuda:  # memory-mapped weights count in RSS only once read: read them all now
        with torch.no_grad():
            for t in [*loaded.model.parameters(), *loaded.model.buffers()]:
                if t.device.type == "cpu" and t.numel():
                    t.sum()
    weights_now = meter.current()
    weights_held = weights_now - before if meter.cuda else weights_now
    rows = [ProbeRow("weights (load)", meter.peak(), 0, meter.what)]
    if not meter.cuda:  # the RSS rows include the interpreter: show it separately
        rows.insert(0, ProbeRow("process before loading", before, 0, meter.what))
        rows[1].above_weights = weights_now - before

    vocab = int(getattr(loaded.model.config, "vocab_size", None) or len(loaded.tokenizer))
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, seq), generator=gen).to(loaded.device)
    mask = torch.ones_like(ids)

    def measure(label: str, fn: Any) -> None:
        meter.reset()
        fn()
        peak = meter.peak()
        base = weights_held if meter.cuda else weights_now
        rows.append(ProbeRow(label, peak, max(0, peak - base), meter.what))

    def forward() -> None:
        with torch.no_grad():
            _loss(loaded, ids, mask)

    measure(f"inference forward (batch {batch} x seq {seq})", forward)

    handle = apply_adapter(loaded.model, cfg.adapter, seed=seed)
    zo = MezoSGD(handle.param_groups(0.0), lr=1e-7, eps=1e-3, seed=seed)

    def zo_step() -> None:
        with torch.no_grad():
            zo.step(lambda: _loss(loaded, ids, mask))

    measure(f"ZO step (mezo_sgd, {handle.method})", zo_step)
    fo = FOAdamW(handle.param_groups(0.0), lr=1e-7)

    def closure() -> torch.Tensor:
        fo.zero_grad(set_to_none=True)
        loss = _loss(loaded, ids, mask)
        loss.backward()
        return loss

    def fo_step() -> None:
        with torch.enable_grad():
            fo.step(closure)

    measure(f"first-order step (AdamW + backprop, {handle.method})", fo_step)

    available, what = meter.available()
    result = ProbeResult(
        model=cfg.model.name,
        device=str(loaded.device) + (" + device_map" if cfg.model.device_map else ""),
        adapter=handle.method,
        batch=batch,
        seq=seq,
        trainable=handle.num_trainable(),
        total=handle.num_total(),
        rows=rows,
        available_bytes=available,
        available_what=what,
    )
    zo_peak, fo_peak = rows[-2].peak_bytes, rows[-1].peak_bytes
    if available is not None:
        result.fits = {"zo": zo_peak * MARGIN <= available, "first_order": fo_peak * MARGIN <= available}
    result.recommendation = _recommend(result, zo_peak, fo_peak)
    return result


def _recommend(result: ProbeResult, zo_peak: int, fo_peak: int) -> list[str]:
    ratio = fo_peak / zo_peak if zo_peak else float("nan")
    out = [f"first-order peak / ZO peak = {ratio:.2f}x"]
    if result.available_bytes is None:
        return [*out, "available memory unknown: compare the peaks with your device by hand"]
    avail = format_bytes(result.available_bytes)
    zo_fits, fo_fits = result.fits["zo"], result.fits["first_order"]
    if zo_fits and fo_fits:
        out.append(f"both fit in {avail}: ZO (e.g. mezo_sgd) or first-order (fo_adamw) with {result.adapter}")
    elif zo_fits:
        out.append(
            f"use ZO: it fits in {avail}; first-order would need {format_bytes(fo_peak)} (+10 % margin)"
        )
    else:
        out.append(
            f"neither fits in {avail}: lower --batch/--seq, train an adapter (lora) instead of full, "
            'or split the base with model.device_map = "auto"'
        )
    return out


def format_table(result: ProbeResult) -> str:
    lines = [
        f"model {result.model} on {result.device}; adapter {result.adapter} "
        f"({result.trainable:,} trainable of {result.total:,}); batch {result.batch} x seq {result.seq}",
        f"  {'phase':<48} {'peak':>11} {'above weights':>14}  source",
    ]
    for r in result.rows:
        lines.append(
            f"  {r.label:<48} {format_bytes(r.peak_bytes):>11} {format_bytes(r.above_weights):>14}  {r.what}"
        )
    lines.append(f"available: {format_bytes(result.available_bytes)} ({result.available_what})")
    for key, label in (("zo", "ZO step"), ("first_order", "first-order step")):
        if key in result.fits:
            lines.append(f"  {label:<17} {'fits' if result.fits[key] else 'does NOT fit'}")
    lines += [f"recommend: {line}" for line in result.recommendation]
    return "\n".join(lines)
