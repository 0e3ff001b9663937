"""CPU use of the worker process, in percent of one core (200 = two cores busy)."""
from __future__ import annotations

import time

from profilers.samplers import Sampler


class ProcessCpu:
    """CPU percent of this process between two reads, from the process CPU clock: ~1 us a read
    against psutil's ~20 us, on the sampler thread that shares the GIL with the timed loop.

    The clock counts nanoseconds (clock_gettime(CLOCK_PROCESS_CPUTIME_ID)); os.times() counts
    10 ms clock ticks, so one tick landing in a 1 ms interval read as 1000 %."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def start(self) -> None:
        self._last = (_cpu_s(), time.perf_counter())

    def read(self) -> float | None:
        now = (_cpu_s(), time.perf_counter())
        last, self._last = self._last, now
        if last is None or now[1] <= last[1]:
            return None
        return max(0.0, (now[0] - last[0]) / (now[1] - last[1]) * 100.0)


def _cpu_s() -> float:
    return time.process_time()  # every thread of the process, user + system


class CpuSampler(Sampler):
    name, unit, source = "cpu_percent", "%", "process CPU clock"

    def __init__(self) -> None:
        self._cpu = ProcessCpu()

    def start(self) -> None:
        self._cpu.start()

    def read(self) -> float | None:
        return self._cpu.read()
