"""Energy per inference for `optimize --objective energy`, read around the timed rounds.

Two sources, the better one first:
- RAPL: the CPU package's energy counters (/sys/class/powercap/intel-rapl:N/energy_uj) read
  before and after each runner's block of iterations. Measured, but for the whole package
  (every process, idle power included), like profilers.samplers.power.RaplSampler.
- CPU time: the process's CPU time (time.process_time: every thread of this process, ONNX
  Runtime's and OpenVINO's pool threads included, spinning or working) over the same blocks,
  times the per-core power model the profilers use (WATTS_PER_BUSY_CORE). An estimate, and
  labelled so: it ranks variants by the CPU they burn, which is what a spinning 2-thread pool
  costs over 1 thread even when its latency is lower.

Readings are taken per block of iterations (a few per round), never per iteration, so the
latency timing is not disturbed. Each round gives one energy-per-inference figure per runner;
the interval comes from resampling rounds (honest.median_interval), as the latency's does, and
the ratio to the baseline slot timed in the same rounds from honest.speedup_interval.

A pool that keeps spinning after its block ends (ONNX Runtime's does for 10-40 ms when
spinning is on) would charge those cycles to the next runner's block, and they are an artefact
of interleaving anyway: back to back, a pool spins only between its own parallel sections,
which its own block sees. So the pool threads an ONNX Runtime session starts (seen by their
thread ids appearing during its load: each session owns its intra-op pool) are read with their
own CPU clocks: their CPU within their session's blocks is charged to it, the rest (the tails)
to nobody. The rest of the process's CPU in a block goes to that block's runner. OpenVINO's
TBB workers are shared across compiled models, so they stay in the block's share (their tail
measured under 1 ms of CPU on the VGG sample). RAPL, package-wide, cannot be split that way:
its blocks carry the tails. bench/energy_bench.py shows both readings side by side (VGG sample,
1 vs 2 spinning threads: x1.62 CPU per inference with the pool charged to its session, x1.01
with block CPU only).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from app.optimize.honest import median_interval, speedup_interval

CPU_SOURCE = "cpu-time estimate"
RAPL_SOURCE = "rapl"


class _Rapl:
    """Cumulative package energy in joules, wraps handled."""

    def __init__(self, domains: list[Path]):
        self.domains = domains
        self.max = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        self.read_uj()  # fails here (PermissionError) when the counters are root-only

    def read_uj(self) -> list[int]:
        return [int((d / "energy_uj").read_text()) for d in self.domains]

    def joules(self, before: list[int], after: list[int]) -> float:
        total = 0
        for b, a, mx in zip(before, after, self.max):
            total += a - b if a >= b else a + mx - b
        return total / 1e6


def energy_source(root: Path | None = None) -> tuple[_Rapl | None, str]:
    """RAPL when its package counters are readable here, else None and why not (what the
    estimate's label says)."""
    from profilers.samplers.power import POWERCAP, RAPL_HELP, rapl_packages

    domains = rapl_packages(root or POWERCAP)
    if not domains:
        return None, "no RAPL powercap interface on this machine (a VM or a CPU without it)"
    try:
        return _Rapl(domains), "RAPL package counters (whole socket, every process)"
    except PermissionError:
        return None, RAPL_HELP
    except (OSError, ValueError) as e:
        return None, f"RAPL present but unreadable ({e})"


def thread_ids() -> set[int]:
    """This process's thread ids (Linux); empty where /proc is not there."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return set()


def thread_cpu_ns(tid: int) -> int | None:
    """CPU time of one thread of this process, by its id (Linux's per-thread CPU clock id:
    ~tid << 3 | CPUCLOCK_SCHED | CPUCLOCK_PERTHREAD); None once the thread has gone."""
    try:
        return time.clock_gettime_ns(((~tid) << 3) | 6)
    except (OSError, OverflowError, AttributeError):
        return None


# runtimes whose sessions each start their own pool threads at load (not shared across models)
OWN_POOL_BACKENDS = frozenset({"onnxruntime"})


@contextmanager
def session_threads(backend: str) -> Iterator[set[int]]:
    """The thread ids a session of `backend` starts while loading in this block (filled on
    exit; empty for runtimes whose workers are shared across models)."""
    before = thread_ids() if backend in OWN_POOL_BACKENDS else set()
    found: set[int] = set()
    try:
        yield found
    finally:
        if backend in OWN_POOL_BACKENDS and before:
            found |= thread_ids() - before - {threading_id()}


def threading_id() -> int:
    import threading

    return threading.get_native_id()


class EnergyMeter:
    """Per runner, per round: energy (mJ) and CPU time (ms) per inference.

    `honest.interleaved_rounds(..., meter=m)` calls `read()` before a runner's block,
    `add(runner, start, iterations)` after it and `end_round()` after each round. `pools[i]`:
    the thread ids runner i's session owns (charged to it whenever they run).
    """

    def __init__(self, runners: int, pools: list[set[int]] | None = None, rapl: Any = "auto",
                 watts_per_core: float | None = None):
        from profilers.samplers.power import WATTS_PER_BUSY_CORE

        if rapl == "auto":
            rapl, why = energy_source()
        else:
            why = "RAPL not used (asked)" if rapl is None else "RAPL package counters"
        self.rapl: _Rapl | None = rapl
        self.why = why
        self.watts = float(watts_per_core if watts_per_core is not None else WATTS_PER_BUSY_CORE)
        self.n = runners
        self.owner: dict[int, int] = {}
        for i, pool in enumerate(pools or []):
            for tid in pool:
                self.owner.setdefault(tid, i)
        self._cpu = [0] * runners  # this round so far: CPU ns
        self._j = [0.0] * runners  # RAPL joules
        self._iters = [0] * runners
        self.cpu_ms: list[list[float]] = [[] for _ in range(runners)]  # per inference, by round
        self.mj: list[list[float]] = [[] for _ in range(runners)]

    @classmethod
    def for_runs(cls, runs: list[Any], **kw: Any) -> EnergyMeter:
        """A meter for these loaded runs (their `pool_threads`, when they know them)."""
        return cls(len(runs), [set(getattr(r, "pool_threads", ()) or ()) for r in runs], **kw)

    @property
    def source(self) -> str:
        return RAPL_SOURCE if self.rapl is not None else CPU_SOURCE

    @property
    def note(self) -> str:
        if self.rapl is not None:
            return ("measured: CPU package energy from RAPL over the timed iterations (whole "
                    "socket, every process, idle power included)")
        return (f"estimated, not measured: this process's CPU time per inference (every "
                f"thread, spinning included) x {self.watts:g} W per busy core; {self.why}")

    def read(self) -> tuple[int, dict[int, int | None], list[int] | None]:
        return (time.process_time_ns(), {t: thread_cpu_ns(t) for t in self.owner},
                self.rapl.read_uj() if self.rapl is not None else None)

    def add(self, runner: int, start: tuple[int, dict[int, int | None], list[int] | None],
            iterations: int) -> None:
        proc, threads, uj = self.read()
        block = proc - start[0]
        for tid, now in threads.items():
            before = start[1].get(tid)
            if now is None or before is None:  # the thread has gone
                continue
            block -= now - before  # a pool thread's CPU goes to its own session only
            if self.owner[tid] == runner:
                self._cpu[runner] += now - before
        self._cpu[runner] += max(block, 0)
        if self.rapl is not None and uj is not None and start[2] is not None:
            self._j[runner] += self.rapl.joules(start[2], uj)
        self._iters[runner] += iterations

    def end_round(self) -> None:
        for i in range(self.n):
            n = self._iters[i]
            if n:
                cpu_ms = self._cpu[i] / n / 1e6
                self.cpu_ms[i].append(cpu_ms)
                self.mj[i].append(self._j[i] / n * 1e3 if self.rapl is not None
                                  else cpu_ms * self.watts)  # ms x W = mJ
            self._cpu[i], self._j[i], self._iters[i] = 0, 0.0, 0

    def figures(self, runner: int, baseline: int | None = None, seed: int = 0
                ) -> dict[str, Any] | None:
        """{value, low, high, source, note, rounds, cpu_ms, vs_baseline} for `runner`
        (vs_baseline: the baseline slot's energy over this runner's, paired by round: above 1
        means it saves energy)."""
        rounds = self.mj[runner]
        if not rounds:
            return None
        iv = median_interval([np.array([v]) for v in rounds], seed=seed)
        cpu = median_interval([np.array([v]) for v in self.cpu_ms[runner]], seed=seed)
        out: dict[str, Any] = {
            "value": iv.value, "low": iv.low, "high": iv.high, "unit": "mJ",
            "source": self.source, "note": self.note, "rounds": len(rounds),
            "cpu_ms": {"value": cpu.value, "low": cpu.low, "high": cpu.high},
        }
        if baseline is not None and baseline != runner and len(self.mj[baseline]) == len(rounds):
            ratio = speedup_interval([np.array([v]) for v in self.mj[baseline]],
                                     [np.array([v]) for v in rounds], seed=seed)
            out["vs_baseline"] = ratio.to_dict()
        return out


def objective_value(p: Any) -> float:
    """The energy objective (lower is better): mJ per inference; inf when not measured."""
    e = getattr(p, "energy_mj", None)
    return float(e["value"]) if e else math.inf


def objective_bounds(p: Any) -> tuple[float, float] | None:
    e = getattr(p, "energy_mj", None)
    return (float(e["low"]), float(e["high"])) if e else None


def describe(e: dict[str, Any] | None) -> str:
    """'0.52 mJ/inference [0.50, 0.55] (cpu-time estimate: 0.052 ms CPU)' for reasons."""
    if not e:
        return ""
    text = (f"{e['value']:.3g} mJ/inference [{e['low']:.3g}, {e['high']:.3g}] "
            f"({e['source']}")
    cpu = e.get("cpu_ms")
    if e.get("source") == CPU_SOURCE and cpu:
        text += f": {cpu['value']:.3g} ms CPU"
    text += ")"
    vs = e.get("vs_baseline")
    if vs:
        text += f", FP32 at the same threads uses {vs['value']:.2f}× this"
    return text


def reason_suffix(p: Any, objective: str) -> str:
    """What a point's reason adds about energy (only when energy is the objective)."""
    if objective != "energy" or not getattr(p, "energy_mj", None):
        return ""
    return "; energy " + describe(p.energy_mj)


def html_cell(p: dict[str, Any]) -> str:
    """The report's energy column: value [interval] and its source, or a dash."""
    import html

    e = p.get("energy_mj")
    if not e:
        return "—"
    tag = "" if e.get("source") == RAPL_SOURCE else " est."
    return (f"{e['value']:.3g} [{e['low']:.3g}, {e['high']:.3g}]"
            f"<small title=\"{html.escape(str(e.get('note', '')))}\">{html.escape(tag)}"
            f"</small>")


def html_note(result: dict[str, Any]) -> str:
    """One line under the table naming the energy figures' source (from any point)."""
    import html

    for p in [result.get("baseline") or {}, *result.get("tried", [])]:
        e = p.get("energy_mj")
        if e:
            return f"<p><b>Energy</b> (mJ per inference, source {html.escape(e['source'])}): " \
                   f"{html.escape(str(e.get('note', '')))}</p>"
    return ""


def costlier(p: Any) -> str | None:
    """Why `p` is rejected under the energy objective: it costs more energy per inference than
    FP32 ONNX Runtime at the same threads, by the whole interval of their ratio (timed in the
    same rounds); None when it does not, or when that was not measured."""
    e = getattr(p, "energy_mj", None)
    vs = (e or {}).get("vs_baseline")
    if not vs or vs["high"] >= 1.0:
        return None
    return (f"costs more energy than the FP32 baseline at the same threads: "
            f"{1 / vs['value']:.2f}× its mJ per inference [{1 / vs['high']:.2f}, "
            f"{1 / vs['low']:.2f}]")


def html_verdict(result: dict[str, Any]) -> str:
    """Under the energy objective: the winner's and the baseline's energy per inference."""
    import html

    best, base = result.get("best") or {}, result.get("baseline") or {}
    if result.get("objective") != "energy" or not (best.get("energy_mj") or base.get(
            "energy_mj")):
        return ""
    parts = []
    if best.get("energy_mj"):
        parts.append(f"{html.escape(best['name'])}: {html.escape(describe(best['energy_mj']))}")
    if base.get("energy_mj"):
        parts.append(f"FP32 baseline: {html.escape(describe(base['energy_mj']))}")
    return "<p><b>Energy per inference</b> — " + "; ".join(parts) + "</p>"


def cli_line(r: dict[str, Any]) -> str | None:
    """The CLI's energy line under the energy objective: the winner's and the baseline's."""
    if r.get("objective") != "energy":
        return None
    best, base = r.get("best") or {}, r.get("baseline") or {}
    parts = []
    if best.get("energy_mj"):
        parts.append(f"{best['name']} {describe(best['energy_mj'])}")
    if base.get("energy_mj"):
        parts.append(f"FP32 baseline {describe(base['energy_mj'])}")
    return "; ".join(parts) or None


def worse_word(objective: str) -> str:
    """How a point behind another is said under this objective ('slower' for speed)."""
    return {"energy": "costs more energy", "size": "larger"}.get(objective, "slower")


def clearly_behind(p: Any, lead: Any) -> str:
    """The screening reason under the energy objective: `p`'s energy interval lies wholly
    above the leader's."""
    e, le = p.energy_mj, lead.energy_mj
    return (f"screened out: clearly costs more energy than {lead.name} (interval "
            f"{e['low']:.4g}–{e['high']:.4g} mJ/inference, above its {le['high']:.4g})")


def chart_axis(result: dict[str, Any]) -> tuple[Any, str, str, str]:
    """The Pareto chart's x under this result's objective: (value of a point or None, title
    word, axis label, unit). Energy per inference under the energy objective, else latency."""
    if result.get("objective") == "throughput":  # ms per sample at each point's serving
        from app.optimize.throughput import chart_axis as throughput_axis

        return throughput_axis(result)
    if result.get("objective") == "energy":
        src = next((p["energy_mj"]["source"] for p in [result.get("baseline") or {},
                                                       *result.get("tried", [])]
                    if p.get("energy_mj")), CPU_SOURCE)
        return ((lambda p: (p.get("energy_mj") or {}).get("value")), "Energy",
                f"energy per inference (mJ, {src})", "mJ")
    return ((lambda p: (p.get("latency_ms") or {}).get("p50")), "Latency", "latency p50 (ms)",
            "ms")


def pareto_cost(objective: str) -> Any:
    """What the Pareto front trades against quality under this objective (None: latency)."""
    if objective == "throughput":  # ms per sample at each point's serving
        from app.optimize.throughput import time_per_sample

        return time_per_sample
    return objective_value if objective == "energy" else None
