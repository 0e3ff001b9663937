"""Time and memory limits of one worker job, shared by the CLI's and the GUI's clients.

A model file is untrusted input (DESIGN §3c): a Loop with a 10^12 trip count must not run
forever and a declared input of 2^31 elements must not eat the machine. Every job therefore
gets a wall-clock limit, a no-progress limit (a single inference that never returns) and a
memory cap on the resident memory of the worker's whole process group.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MEM_ENV = "MODELDECK_MEM_LIMIT_MB"
MEM_FRACTION = 0.75  # of physical memory
MEM_CAP_MB = 8192  # never more than this by default, whatever the machine has

# Whole-job wall-clock limits by job kind (seconds); None: no limit.
TIMEOUT_S: dict[str, float | None] = {
    "inspect": 120.0, "devices": 120.0, "profile": 2 * 3600.0, "convert": 3 * 3600.0,
    "compare": 3 * 3600.0, "optimize": 3 * 3600.0,
    "graph": 120.0, "graph_diff": 240.0,  # parse like inspect (the diff: two models)
}
# Longest time without progress (a stage, a progress event, a latency sample, a step):
# one load, one inference or one pass that takes longer is stopped.
IDLE_S: dict[str, float | None] = {
    "inspect": None, "devices": None, "profile": 600.0, "convert": 3600.0, "compare": 900.0,
    "optimize": 3600.0,
}
PROFILE_MARGIN_S = 900.0  # load, first inference, warm-up, layer profile on top of --duration


@dataclass(frozen=True)
class Limits:
    timeout_s: float | None = None  # the whole job
    idle_s: float | None = None  # no progress for this long
    memory_mb: int | None = None  # resident memory of the worker's process group

    def to_dict(self) -> dict[str, Any]:
        return {"timeout_s": self.timeout_s, "idle_s": self.idle_s, "memory_mb": self.memory_mb}


def physical_memory_mb() -> int:
    from converters.limits import physical_memory_bytes

    return physical_memory_bytes() // 2**20


def default_memory_mb() -> int:
    """MODELDECK_MEM_LIMIT_MB when set, else 75 % of physical memory, at most 8 GB."""
    raw = os.environ.get(MEM_ENV, "").strip()
    if raw:
        try:
            value = int(float(raw))
            if value > 0:
                return value
        except ValueError:
            pass
        log.warning("%s=%r is not a positive number of MB: using the default", MEM_ENV, raw)
    return max(256, min(MEM_CAP_MB, int(physical_memory_mb() * MEM_FRACTION)))


def default_limits(spec: dict[str, Any], timeout_s: float | None = None,
                   memory_mb: int | None = None) -> Limits:
    """The limits of a job spec; a given timeout replaces both time limits of its kind."""
    kind = str(spec.get("job", ""))
    mem = memory_mb if memory_mb is not None else default_memory_mb()
    if timeout_s is not None:
        return Limits(timeout_s=timeout_s, idle_s=None, memory_mb=mem)
    total = TIMEOUT_S.get(kind, 3600.0)
    if kind == "profile":
        duration = (spec.get("config") or {}).get("duration_s")
        if isinstance(duration, (int, float)) and duration > 0:
            total = max(total, float(duration) * (2 if (spec.get("config") or {}).get("layers")
                                                  else 1) + PROFILE_MARGIN_S)
    return Limits(timeout_s=total, idle_s=IDLE_S.get(kind), memory_mb=mem)


def is_progress(event: dict[str, Any]) -> bool:
    """Whether an event shows the job moving (sampler readings alone do not: they keep
    arriving while one inference hangs)."""
    if event.get("event") == "samples":
        return "latency_ms" in (event.get("series") or {})
    return True


def group_rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB (0 once it is gone).

    Polled ten times a second beside a measurement: on Linux it reads /proc for the worker's
    own tree only (~0.1 ms) instead of scanning every process on the machine (psutil, ~3 ms)."""
    if os.path.exists(f"/proc/{pid}/task"):
        try:
            return _proc_tree_rss(pid) / 2**20
        except OSError:
            pass
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_tree_rss(pid: int) -> int:
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            if p == pid:
                return 0
    return total


def memory_message(limit_mb: int, peak_mb: float) -> str:
    return (f"the job used more than {_gb(limit_mb)} of memory ({_gb(peak_mb)} when stopped) and "
            "was stopped: the model needs more memory than the limit at these input sizes")


def timeout_message(timeout_s: float) -> str:
    return f"the job did not finish within {timeout_s:g} s and was stopped"


def idle_message(idle_s: float, stage: str | None) -> str:
    where = f" in stage '{stage}'" if stage else ""
    return (f"no progress for {idle_s:g} s{where}: one load, inference or pass ran that long (a "
            "model that loops without end?) and the job was stopped")


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"
