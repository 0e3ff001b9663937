"""CPU power: RAPL (powercap) when readable, otherwise an estimate that says it is one."""
from __future__ import annotations

import time
from pathlib import Path

from profilers.samplers import Sampler

POWERCAP = Path("/sys/class/powercap")
RAPL_HELP = ("RAPL energy counters are root-only on Linux (since CVE-2020-8694); to measure "
             "CPU power, grant read access: sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj")
WATTS_PER_BUSY_CORE = 10.0  # nominal figure for the estimate; real CPUs range ~3-20 W per core


def rapl_packages(root: Path = POWERCAP) -> list[Path]:
    """Package-level RAPL domains (intel-rapl:0, intel-rapl:1...; AMD exposes the same)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1
                  and (p / "energy_uj").exists())


class RaplSampler(Sampler):
    """Average package power between two reads of the cumulative energy counters.

    Covers the whole CPU package (every process), not only the model: report it as such.
    """

    name, unit, source = "power_w", "W", "rapl"
    note = "CPU package power from RAPL (whole socket, all processes)"

    def __init__(self, domains: list[Path]):
        self.domains = domains
        self._max = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        self._last: list[int] | None = None
        self._last_t = 0.0

    def _energy(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def start(self) -> None:
        self._last, self._last_t = self._energy(), time.perf_counter()

    def read(self) -> float | None:
        now_e, now_t = self._energy(), time.perf_counter()
        if self._last is None or now_t <= self._last_t:
            self._last, self._last_t = now_e, now_t
            return None
        joules = 0.0
        for cur, last, mx in zip(now_e, self._last, self._max):
            delta = cur - last if cur >= last else cur + mx - last  # counter wrapped
            joules += delta / 1e6
        watts = joules / (now_t - self._last_t)
        self._last, self._last_t = now_e, now_t
        return watts


class EstimatedPowerSampler(Sampler):
    """No sensor readable: CPU use x a nominal watts-per-busy-core. Labelled "estimate"."""

    name, unit, source = "power_w", "W", "estimate"

    def __init__(self, reason: str):
        self.note = (f"estimated, not measured: {WATTS_PER_BUSY_CORE:g} W per busy core x the "
                     f"worker's CPU use. {reason}")
        from profilers.samplers.cpu import ProcessCpu

        self._cpu = ProcessCpu()

    def start(self) -> None:
        self._cpu.start()

    def read(self) -> float | None:
        pct = self._cpu.read()
        return None if pct is None else pct / 100.0 * WATTS_PER_BUSY_CORE


def best_power_sampler() -> Sampler:
    domains = rapl_packages()
    if domains:
        try:
            s = RaplSampler(domains)
            s.start()
            return s
        except PermissionError:
            reason = RAPL_HELP
        except OSError as e:
            reason = f"RAPL present but unreadable ({e.strerror})"
    else:
        reason = "No RAPL powercap interface on this machine (a VM or a CPU without it)."
    return EstimatedPowerSampler(reason)
