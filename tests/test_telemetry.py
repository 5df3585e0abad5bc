"""Memory telemetry: the CPU path for real, the CUDA and NVML paths against fakes.

The fakes stand in for ``torch.cuda`` and ``pynvml`` so the GPU code runs on a CPU-only machine;
each source must degrade to nothing on its own when it fails.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from zoengine import telemetry
from zoengine.telemetry import NVML_WHAT, PROCESS_WHAT, TORCH_WHAT, format_bytes, memory_snapshot, reset_peak


def test_cpu_snapshot_has_rss_and_peak() -> None:
    readings = {r.label: r for r in memory_snapshot("cpu")}
    assert set(readings) == {"RSS", "peak RSS"}
    rss, peak = readings["RSS"], readings["peak RSS"]
    assert rss.value_bytes and rss.value_bytes > 1_000_000
    assert peak.value_bytes is not None and peak.value_bytes >= rss.value_bytes // 2
    assert rss.what == PROCESS_WHAT and rss.total_bytes is None


def test_peak_follows_a_big_allocation_and_reset_never_raises() -> None:
    before = {r.label: r.value_bytes for r in memory_snapshot("cpu")}["peak RSS"]
    blob = bytearray(64 * 1024 * 1024)  # touched pages count toward RSS
    blob[::4096] = b"x" * len(blob[::4096])
    after = {r.label: r.value_bytes for r in memory_snapshot("cpu")}["peak RSS"]
    assert after is not None and before is not None and after >= before
    del blob
    reset_peak("cpu")
    assert all(r.value_bytes for r in memory_snapshot("cpu"))


def test_auto_device_is_cpu_without_cuda() -> None:
    assert [r.label for r in memory_snapshot()] == ["RSS", "peak RSS"]


def test_psutil_failure_degrades_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("psutil")

    def fail(*_: Any) -> None:
        raise RuntimeError("no /proc")

    broken.Process = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "psutil", broken)
    assert memory_snapshot("cpu") == []


class _FakeCuda:
    """The slice of ``torch.cuda`` that telemetry reads."""

    def __init__(self) -> None:
        self.reset_calls: list[int] = []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def current_device(self) -> int:
        return 1

    def memory_allocated(self, i: int) -> int:
        return 100 + i

    def max_memory_allocated(self, i: int) -> int:
        return 200 + i

    def memory_reserved(self, i: int) -> int:
        return 300 + i

    def reset_peak_memory_stats(self, i: int) -> None:
        self.reset_calls.append(i)

    def get_device_properties(self, i: int) -> Any:
        return types.SimpleNamespace(uuid=f"uuid-{i}")


class _FakeNvml(types.ModuleType):
    def __init__(self, fail_info: bool = False) -> None:
        super().__init__("pynvml")
        self.fail_info = fail_info
        self.handles: list[str] = []

    def nvmlInit(self) -> None:  # noqa: N802 - NVML's own names
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:  # noqa: N802
        self.handles.append(uuid)
        return uuid

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:  # noqa: N802
        return f"idx-{i}"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:  # noqa: N802
        if self.fail_info:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return types.SimpleNamespace(used=5_000, total=80_000, free=75_000)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> _FakeCuda:
    cuda = _FakeCuda()
    fake_torch = types.ModuleType("torch")
    fake_torch.cuda = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setattr(telemetry, "_nvml_ready", None)
    return cuda


def test_cuda_readings_are_labelled(fake_cuda: _FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = _FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    readings = memory_snapshot()  # auto picks cuda:1 because torch "initialised" CUDA
    by_label = {r.label: r for r in readings}
    assert by_label["torch allocated"].value_bytes == 101
    assert by_label["torch peak allocated"].value_bytes == 201
    assert by_label["torch reserved"].value_bytes == 301
    assert by_label["torch reserved"].what == TORCH_WHAT
    dev = by_label["device used"]
    assert (dev.value_bytes, dev.total_bytes, dev.what) == (5_000, 80_000, NVML_WHAT)
    assert nvml.handles == ["GPU-uuid-1"]  # matched by UUID, not by (renumbered) index
    assert "RSS" in by_label
    reset_peak("cuda:1")
    assert fake_cuda.reset_calls == [1]


def test_nvml_failure_keeps_torch_readings(fake_cuda: _FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(fail_info=True))
    labels = [r.label for r in memory_snapshot("cuda")]
    assert labels[:3] == ["torch allocated", "torch peak allocated", "torch reserved"]
    assert "device used" not in labels


def test_missing_nvml_module_keeps_torch_readings(
    fake_cuda: _FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    labels = [r.label for r in memory_snapshot("cuda:0")]
    assert "torch allocated" in labels and "device used" not in labels


def test_torch_failure_keeps_nvml(fake_cuda: _FakeCuda, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(i: int) -> int:
        raise RuntimeError("CUDA error: device-side assert")

    monkeypatch.setattr(fake_cuda, "memory_allocated", boom)
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml())
    labels = [r.label for r in memory_snapshot("cuda:0")]
    assert "torch allocated" not in labels and "device used" in labels


@pytest.mark.parametrize(
    ("n", "text"), [(None, "n/a"), (512, "512 B"), (1536, "1.5 KiB"), (3 * 1024**3, "3.0 GiB")]
)
def test_format_bytes(n: int | None, text: str) -> None:
    assert format_bytes(n) == text


def test_import_stays_light() -> None:
    """zoengine.telemetry is read by the app every 2 s: no textual, and no torch unless CUDA is asked."""
    import subprocess

    code = "import sys, zoengine.telemetry as t; t.memory_snapshot('cpu'); print('textual' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]
