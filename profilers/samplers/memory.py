"""Resident memory of the worker process (the model, the runtime and its buffers)."""
from __future__ import annotations

import resource
import sys

from profilers.samplers import Sampler


class RssSampler(Sampler):
    name, unit, source = "rss_mb", "MB", "psutil"

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()

    def read(self) -> float:
        return self._proc.memory_info().rss / 1e6


def peak_rss_mb() -> float:
    """The kernel's high-water mark: catches peaks between two samples."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3  # bytes on macOS, KiB on Linux
