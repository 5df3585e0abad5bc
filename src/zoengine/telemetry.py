"""Memory readings, each labelled with what it measures.

Numbers from different sources mean different things and are easy to confuse (a torch "peak" is
not the device's "used"), so every ``Reading`` carries a ``what`` string the UI shows next to it:

    >>> from zoengine.telemetry import memory_snapshot
    >>> for r in memory_snapshot("cpu"):
    ...     print(r.label, r.value_bytes, r.what)        # doctest: +SKIP
    RSS 412M  process resident memory (this process)
    peak RSS ...

On CUDA: torch allocated / peak allocated / reserved (the PyTorch caching allocator of this process
only: no CUDA context, no other libraries) and NVML device used / total (the whole device, all
processes). On CPU: process RSS and its peak. Each source is guarded on its own; a source that is
missing or fails (no NVML on WSL, no driver, no psutil) contributes nothing instead of raising, so a
monitor never takes a run down.

This module must stay cheap and headless: it never imports ``torch`` unless a CUDA device is asked
for or torch is already loaded.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["Reading", "format_bytes", "memory_snapshot", "reset_peak"]

log = logging.getLogger(__name__)

TORCH_WHAT = "torch allocator, this process"
NVML_WHAT = "device, all processes"
PROCESS_WHAT = "process resident memory, this process"


@dataclass(frozen=True)
class Reading:
    """One memory number. ``total_bytes`` is set where a capacity makes sense (device total)."""

    label: str
    value_bytes: int | None
    total_bytes: int | None
    what: str


def _torch_if_loaded() -> Any | None:
    """The torch module only if something already imported it (importing it costs seconds)."""
    return sys.modules.get("torch")


def _resolve_device(device: str | None) -> str:
    """``None``/``"auto"`` → ``cuda:N`` when torch is loaded with CUDA initialised, else ``cpu``."""
    if device not in (None, "auto"):
        return "cuda:0" if device == "cuda" else str(device)
    torch = _torch_if_loaded()
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return f"cuda:{torch.cuda.current_device()}"
    except Exception:  # a broken CUDA setup must not break a memory readout
        log.debug("CUDA probe failed", exc_info=True)
    return "cpu"


def _cuda_index(device: str) -> int:
    _, _, idx = device.partition(":")
    return int(idx) if idx.isdigit() else 0


def _torch_cuda_readings(index: int) -> list[Reading]:
    """Allocator counters of this process; empty when torch/CUDA is unavailable."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [
            Reading("torch allocated", int(torch.cuda.memory_allocated(index)), None, TORCH_WHAT),
            Reading("torch peak allocated", int(torch.cuda.max_memory_allocated(index)), None, TORCH_WHAT),
            Reading("torch reserved", int(torch.cuda.memory_reserved(index)), None, TORCH_WHAT),
        ]
    except Exception:
        log.debug("torch CUDA memory readout failed", exc_info=True)
        return []


_nvml_ready: bool | None = None


def _nvml() -> Any | None:
    """The initialised ``pynvml`` module (from nvidia-ml-py), or None; init is tried once."""
    global _nvml_ready
    try:
        import pynvml
    except Exception:
        return None
    if _nvml_ready is None:
        try:
            pynvml.nvmlInit()
            _nvml_ready = True
        except Exception:
            log.debug("NVML init failed", exc_info=True)
            _nvml_ready = False
    return pynvml if _nvml_ready else None


def _nvml_handle(pynvml: Any, index: int) -> Any:
    """NVML handle for torch device ``index``; matched by UUID because CUDA_VISIBLE_DEVICES
    renumbers devices for torch but not for NVML."""
    torch = _torch_if_loaded()
    if torch is not None:
        try:
            uuid = str(torch.cuda.get_device_properties(index).uuid)
            return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        except Exception:
            log.debug("NVML UUID lookup failed, falling back to index", exc_info=True)
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def _nvml_readings(index: int) -> list[Reading]:
    """Device-wide used/total (every process on the GPU, CUDA contexts included)."""
    pynvml = _nvml()
    if pynvml is None:
        return []
    try:
        info = pynvml.nvmlDeviceGetMemoryInfo(_nvml_handle(pynvml, index))
        return [Reading("device used", int(info.used), int(info.total), NVML_WHAT)]
    except Exception:
        log.debug("NVML memory readout failed", exc_info=True)
        return []


def _peak_rss_linux() -> int | None:
    """VmHWM from /proc (resettable through clear_refs, unlike a plain getrusage)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
    except Exception:
        return None


def _peak_rss(info: Any) -> int | None:
    if sys.platform.startswith("linux"):
        return _peak_rss_linux()
    if sys.platform == "win32":
        return getattr(info, "peak_wset", None)
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # bytes on macOS
    except Exception:
        return None


def _process_readings() -> list[Reading]:
    """RSS and peak RSS of this process; empty without psutil."""
    try:
        import psutil

        info = psutil.Process(os.getpid()).memory_info()
    except Exception:
        log.debug("psutil readout failed", exc_info=True)
        return []
    out = [Reading("RSS", int(info.rss), None, PROCESS_WHAT)]
    peak = _peak_rss(info)
    if peak is not None:
        out.append(Reading("peak RSS", int(peak), None, PROCESS_WHAT))
    return out


def memory_snapshot(device: str | None = None) -> list[Reading]:
    """Labelled memory readings for ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:N"``, None = auto).

    Args:
        device: where the model lives. None picks CUDA only when torch already initialised it.

    Returns:
        Readings in display order; sources that are unavailable are left out, never raised.
    """
    dev = _resolve_device(device)
    if dev.startswith("cuda"):
        index = _cuda_index(dev)
        return _torch_cuda_readings(index) + _nvml_readings(index) + _process_readings()
    return _process_readings()


def gpu_utilization(device: str | None = None) -> int | None:
    """NVML's GPU utilisation (percent of the last sample period) of ``device``; None on a CPU run,
    without NVML, or when the read fails (never raises)."""
    dev = _resolve_device(device)
    if not dev.startswith("cuda"):
        return None
    pynvml = _nvml()
    if pynvml is None:
        return None
    try:
        return int(pynvml.nvmlDeviceGetUtilizationRates(_nvml_handle(pynvml, _cuda_index(dev))).gpu)
    except Exception:
        log.debug("NVML utilisation readout failed", exc_info=True)
        return None


def gpu_line(readings: list[Reading], utilization: int | None) -> str:
    """The one-line GPU summary above the memory readings: ``GPU: none (CPU run)`` when no reading
    comes from a GPU, else its NVML utilisation (the memory lines below carry their own labels)."""
    if not any(r.what in (TORCH_WHAT, NVML_WHAT) for r in readings):
        return "GPU: none (CPU run)"
    if utilization is None:
        return "GPU: utilisation unknown (NVML unavailable)"
    return f"GPU: utilisation {utilization}% (NVML)"


def reset_peak(device: str | None = None) -> None:
    """Start a new peak window (per phase: load, train, eval). Best effort, never raises."""
    dev = _resolve_device(device)
    if dev.startswith("cuda"):
        try:
            import torch

            torch.cuda.reset_peak_memory_stats(_cuda_index(dev))
        except Exception:
            log.debug("torch peak reset failed", exc_info=True)
    if sys.platform.startswith("linux"):
        try:
            # "5" resets the peak RSS (VmHWM) of this process; see proc(5), clear_refs.
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
        except OSError:
            log.debug("peak RSS reset not permitted", exc_info=True)


def format_bytes(n: int | None) -> str:
    """``1536`` → ``"1.5 KiB"``; None → ``"n/a"`` (for UIs and the CLI)."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
