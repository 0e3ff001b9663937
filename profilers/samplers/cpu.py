"""CPU use of the worker process, in percent of one core (200 = two cores busy)."""
from __future__ import annotations

from profilers.samplers import Sampler


class CpuSampler(Sampler):
    name, unit, source = "cpu_percent", "%", "psutil"

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()

    def start(self) -> None:
        self._proc.cpu_percent(None)  # first call sets the baseline and returns 0

    def read(self) -> float:
        return self._proc.cpu_percent(None)
