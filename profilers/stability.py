"""Is a run's figure trustworthy? The machine's state around a run and a stable/noisy verdict.

What is read (each where the OS exposes it; None otherwise, never an error):
  - the CPU frequency governor and frequency range (/sys/devices/system/cpu/cpu*/cpufreq,
    else the "cpu MHz" lines of /proc/cpuinfo);
  - thermal throttling counters (/sys/devices/system/cpu/cpu*/thermal_throttle/*_count);
  - the load from other processes during the run: busy CPU time of the whole machine
    (psutil.cpu_times, /proc/stat on Linux) minus this process's own, over the wall time, in
    cores;
  - pinning (the CPUs this process may run on) and the load average before the run.

The verdict is `noisy` when any measured reason says the figures would not repeat: the spread
(CV), drift between the first and last third of the run, other processes' load, more busy
threads than cores, throttling. Each reason comes with what to do about it.
"""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CV_LIMIT = 0.25  # std / mean, counted when the tail also moves p99 (TAIL_LIMIT): a handful of
# 1 ms interrupts among 2,000 iterations of 0.1 ms lift the CV past 40 % and move no percentile
ROBUST_CV_LIMIT = 0.10  # 1.4826 x MAD / median: the spread of the bulk of the iterations
DRIFT_LIMIT = 0.05  # median of the last third vs the first third
OTHER_LOAD_LIMIT = 0.5  # cores busy with other processes during the run
SPIKE_NOTE = 0.02  # fraction of iterations flagged as spikes: said when they move p99...
SPIKE_LIMIT = 0.10  # ...and counted as noise above this fraction. A quiet VM's hiccups put
# 3-8 % of a 6 ms model's iterations at 1.5-2.6x the median (seen in CI): they make the p99 a
# measure of the machine's interruptions, which its interval shows, but leave the median sound.
TAIL_LIMIT = 1.25  # spikes (and a large CV) count only when they lift p99 this far above p50
FEW_CORES = 4  # at or below: ORT's spinning thread pool is turned off by default
MIN_ITERATIONS = 30  # fewer cannot show drift between thirds nor a spread worth the name


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def governor() -> str | None:
    """The scaling governor of the CPUs ("performance", "powersave"...); several: joined."""
    found = sorted({g for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/"
                                         "scaling_governor") if (g := _read(p))})
    return ",".join(found) if found else None


def frequency_mhz() -> dict[str, float] | None:
    """Current frequency over the CPUs (min / max / mean) and the hardware range when known."""
    cur = [int(v) / 1e3 for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/"
                                          "scaling_cur_freq") if (v := _read(p)) and v.isdigit()]
    source = "cpufreq"
    if not cur:
        text = _read("/proc/cpuinfo") or ""
        cur = [float(line.split(":", 1)[1]) for line in text.splitlines()
               if line.startswith("cpu MHz")]
        source = "cpuinfo"
    if not cur:
        return None
    out: dict[str, Any] = {"min": min(cur), "max": max(cur), "mean": sum(cur) / len(cur),
                           "source": source}
    lo = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_min_freq")
    hi = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if lo and hi and lo.isdigit() and hi.isdigit():
        out["hw_min"], out["hw_max"] = int(lo) / 1e3, int(hi) / 1e3
    return out


def throttle_count() -> int | None:
    """Sum of the thermal throttling event counters; None where the kernel has none."""
    values = [int(v) for p in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/thermal_throttle/"
                                        "*_throttle_count") if (v := _read(p)) and v.isdigit()]
    return sum(values) if values else None


def _busy_jiffies() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot (psutil: /proc/stat on Linux,
    the OS's counters elsewhere); idle and I/O wait are not busy."""
    try:
        import psutil

        t = psutil.cpu_times()
    except Exception:  # noqa: BLE001 - no counters: the load is simply not reported
        return None
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    # guest time is already counted in user on Linux
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, total


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def machine_state() -> dict[str, Any]:
    """What a report's environment records about the machine right now."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    try:
        load = list(os.getloadavg())
    except (OSError, AttributeError):  # Windows has no load average
        load = None
    return {"governor": governor(), "frequency_mhz": frequency_mhz(),
            "loadavg": load, "pinned_cpus": cpus,
            "pinned": cpus is not None and len(cpus) < (os.cpu_count() or len(cpus)),
            "throttle_count": throttle_count()}


@dataclass
class LoadWatch:
    """Other processes' CPU use over a stretch of time, in cores: machine busy time minus ours."""

    _start: tuple[float, float, float, int | None] | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def start(self) -> LoadWatch:
        jiffies = _busy_jiffies()
        self._start = (time.perf_counter(), _own_cpu_s(),
                       jiffies[0] if jiffies else float("nan"), throttle_count())
        return self

    def stop(self) -> dict[str, Any]:
        if self._start is None:
            return {}
        t0, own0, busy0, thr0 = self._start
        wall = time.perf_counter() - t0
        jiffies = _busy_jiffies()
        own = _own_cpu_s() - own0
        out: dict[str, Any] = {"wall_s": wall, "own_cores": own / wall if wall > 0 else None}
        if jiffies and wall > 0 and busy0 == busy0:
            busy = jiffies[0] - busy0
            out["machine_cores"] = busy / wall
            # jiffies tick at 100 Hz: short runs read coarse, never below zero
            out["other_cores"] = max(0.0, (busy - own) / wall)
        thr1 = throttle_count()
        if thr0 is not None and thr1 is not None:
            out["throttle_events"] = thr1 - thr0
        self.result = out
        return out


# What to do, one line per action: reasons name the actions, the verdict lists each once.
ADVICE = {
    "close": "close other work (builds, browsers, other runs) and run again",
    "threads": "set threads to 1 (or fewer than the free cores)",
    "longer": "measure longer (more iterations or seconds)",
    "warm": "warm up longer, and repeat the run to see if the change holds",
    "spinning": "turn ONNX Runtime's thread spinning off, or set threads to 1",
    "cool": "let the machine cool down, check its cooling, and run again",
    "governor": "for repeatable numbers set the CPU governor to performance "
                "(cpupower frequency-set -g performance)",
}


def verdict(latencies_ms: np.ndarray, *, cv: float, spikes: int, threads: int | None,
            spinning: bool | None, load: dict[str, Any], state: dict[str, Any],
            settled_at: int | None, warmup_asked: int) -> dict[str, Any]:
    """`stable` or `noisy`, with every measured reason and what to do about each."""
    v = np.asarray(latencies_ms, dtype=np.float64)
    cores = usable_cpus()
    reasons: list[dict[str, Any]] = []
    few_threads = threads == 1 or (threads is not None and cores > FEW_CORES)

    def add(kind: str, value: Any, limit: Any, text: str, actions: tuple[str, ...],
            noisy: bool = True) -> None:
        actions = tuple(a for a in actions if not (a == "threads" and few_threads
                                                   and kind != "oversubscribed"))
        reasons.append({"kind": kind, "value": value, "limit": limit, "noisy": noisy,
                        "text": text, "actions": list(actions),
                        "advice": "; ".join(ADVICE[a] for a in actions)})

    med = float(np.median(v)) if v.size else 0.0
    robust_cv = 1.4826 * float(np.median(np.abs(v - med))) / med if med > 0 else 0.0
    tail = float(np.percentile(v, 99) / med) if med > 0 else 1.0
    if robust_cv > ROBUST_CV_LIMIT:
        add("spread", robust_cv, ROBUST_CV_LIMIT,
            f"the bulk of the iterations varies: robust CV {robust_cv:.0%} (MAD / median, above "
            f"{ROBUST_CV_LIMIT:.0%})", ("close", "threads", "longer"))
    elif cv > CV_LIMIT and tail > TAIL_LIMIT and spikes / max(v.size, 1) > SPIKE_LIMIT:
        # with a tight bulk a large CV comes from the tail: noise only when the spikes are
        # many (a few are the note below)
        add("cv", cv, CV_LIMIT, f"latency varies a lot: CV {cv:.0%} (above {CV_LIMIT:.0%}), "
            f"p99 {tail:.1f}× p50", ("close", "threads", "longer"))
    if v.size < MIN_ITERATIONS:
        add("few", int(v.size), MIN_ITERATIONS,
            f"only {v.size} iterations: too few to judge the spread or drift (at least "
            f"{MIN_ITERATIONS})", ("longer",))
    drift = None
    if v.size >= MIN_ITERATIONS:
        third = v.size // 3
        first, last = float(np.median(v[:third])), float(np.median(v[-third:]))
        drift = last / first - 1.0 if first > 0 else None
        if drift is not None and abs(drift) > DRIFT_LIMIT:
            add("drift", drift, DRIFT_LIMIT,
                f"the median drifted {drift:+.1%} between the first and last third of the run",
                ("warm", "close"))
    spike_frac = spikes / v.size if v.size else 0.0
    if spike_frac > SPIKE_NOTE and tail > TAIL_LIMIT:  # enough, and far enough to move p99
        noisy_tail = spike_frac > SPIKE_LIMIT
        add("spikes", spike_frac, SPIKE_LIMIT if noisy_tail else SPIKE_NOTE,
            f"{spikes} spikes ({spike_frac:.1%} of iterations) far above the median "
            f"(p99 {tail:.1f}× p50)" + ("" if noisy_tail else
                                        ": the p99 shows this machine's interruptions"),
            ("close", "threads"), noisy=noisy_tail)
    other = load.get("other_cores")
    if other is not None and other > OTHER_LOAD_LIMIT:
        add("load", other, OTHER_LOAD_LIMIT,
            f"other processes kept {other:.1f} of {cores} cores busy during the run", ("close",))
    busy_threads = (threads or cores) + (other or 0.0)
    if threads is not None and threads > 1 and busy_threads > cores + 0.5:
        add("oversubscribed", busy_threads, cores,
            f"{threads} inference threads plus {other or 0:.1f} cores of other work on "
            f"{cores} usable cores: threads wait for each other", ("threads",))
    if spinning and threads is not None and threads > 1 and cores <= FEW_CORES:
        add("spinning", threads, cores,
            f"ONNX Runtime's thread pool spins while idle with {threads} threads on {cores} "
            "cores: it competes with the samplers and the window", ("spinning",))
    if load.get("throttle_events"):
        add("throttled", load["throttle_events"], 0,
            f"the CPU throttled {load['throttle_events']} times during the run (heat)",
            ("cool",))
    gov = state.get("governor")
    if gov and gov not in ("performance",):
        add("governor", gov, "performance",
            f"CPU governor is '{gov}': the frequency follows the load", ("governor",),
            noisy=False)
    if warmup_asked > 0 and settled_at is None:
        add("unsettled", None, None,
            "the latency did not settle during warm-up (the cap was reached)", ("warm", "close"))
    noisy = any(r["noisy"] for r in reasons)
    actions = dict.fromkeys(a for r in reasons if r["noisy"] for a in r["actions"])
    return {
        "verdict": "noisy" if noisy else "stable",
        "cv": cv,
        "robust_cv": robust_cv,
        "drift": drift,
        "settled_at_iteration": settled_at,
        "warnings": [r["text"] for r in reasons],
        "advice": [ADVICE[a] for a in actions],
        "reasons": reasons,
        "load": load,
    }
