"""Resident memory of the worker process (the model, the runtime and its buffers)."""
from __future__ import annotations

import os
import resource
import sys

from profilers.samplers import Sampler


class RssSampler(Sampler):
    name, unit, source = "rss_mb", "MB", "psutil"

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._statm: int | None = None  # fd of /proc/self/statm, read in place: ~2 us
        try:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        except (OSError, AttributeError):
            pass

    def read(self) -> float:
        if self._statm is not None:  # against psutil's ~10 us, on the sampler thread
            try:
                return int(os.pread(self._statm, 128, 0).split()[1]) * self._page / 1e6
            except (OSError, ValueError, IndexError):
                self.close()
        return self._proc.memory_info().rss / 1e6

    def close(self) -> None:
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None


def peak_rss_mb() -> float:
    """The kernel's high-water mark: catches peaks between two samples."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3  # bytes on macOS, KiB on Linux
