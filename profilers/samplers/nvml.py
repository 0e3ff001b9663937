"""GPU memory and board power through NVML (nvidia-ml-py). Absent driver: no samplers."""
from __future__ import annotations

import logging

from profilers.samplers import Sampler

log = logging.getLogger(__name__)


class _NvmlSampler(Sampler):
    source = "nvml"

    def __init__(self, index: int = 0):
        import pynvml

        self._nv = pynvml
        self._h = pynvml.nvmlDeviceGetHandleByIndex(index)


class GpuMemorySampler(_NvmlSampler):
    name, unit = "gpu_mem_mb", "MB"
    note = "GPU memory used on the device (all processes)"

    def read(self) -> float:
        return self._nv.nvmlDeviceGetMemoryInfo(self._h).used / 1e6


class GpuPowerSampler(_NvmlSampler):
    name, unit = "gpu_power_w", "W"
    note = "GPU board power from NVML"

    def read(self) -> float:
        return self._nv.nvmlDeviceGetPowerUsage(self._h) / 1000.0  # mW


def nvml_samplers(index: int = 0) -> list[Sampler]:
    """[] when NVML cannot start (no NVIDIA driver): never raises."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return [GpuMemorySampler(index), GpuPowerSampler(index)]
    except Exception as e:
        log.info("NVML not available: %s", e)
        return []


def nvml_status() -> tuple[bool, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(n)]
        return True, ", ".join(str(x) for x in names) or "no GPU"
    except Exception as e:
        return False, f"NVML unavailable ({type(e).__name__}): no NVIDIA driver"
