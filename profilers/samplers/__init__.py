"""Samplers: read one quantity (memory, CPU, power) at a fixed period on a thread in the worker.

Every sampler names its `source` ("psutil", "rapl", "nvml", "estimate"), shown next to every
figure, so an estimated power figure is never mistaken for a measured one.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class Sampler:
    name: str  # key in timelines: "rss_mb", "cpu_percent", "power_w", "gpu_mem_mb", ...
    unit: str
    source: str
    note: str = ""  # e.g. how to grant RAPL access, what an estimate assumes

    def start(self) -> None:
        """Called once before the first read (baselines for counters)."""

    def read(self) -> float | None:
        """Current value; None when no value this time (e.g. first counter read)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass
class Timeline:
    name: str
    unit: str
    source: str
    note: str = ""
    t_s: list[float] = field(default_factory=list)  # seconds since the run started
    values: list[float] = field(default_factory=list)


class SamplerThread:
    """Reads every sampler each `period_s` on a daemon thread.

    `on_batch(batch)` is called from the thread with the new points roughly every
    `batch_s` (so the worker can stream them). The time spent reading is accumulated in
    `busy_s` so the cost of sampling itself is reported.

    While a timed loop runs, `hold(True)` keeps the points here and the loop takes them with
    `drain()` at its own (untimed) emission points: serialising and writing events on this
    thread would hold the GIL just when the timed thread returns from the runtime.
    """

    def __init__(self, samplers: list[Sampler], period_s: float = 0.05, t0: float | None = None,
                 on_batch: Callable[[dict[str, list[list[float]]]], None] | None = None,
                 batch_s: float = 0.1):
        self.samplers = samplers
        self.period_s = period_s
        self.t0 = time.perf_counter() if t0 is None else t0
        self.on_batch = on_batch
        self.batch_s = batch_s
        self.timelines = {s.name: Timeline(s.name, s.unit, s.source, s.note) for s in samplers}
        self.busy_s = 0.0
        self.cpu_s = 0.0  # CPU time of the reads (the GIL is held about this long): load-proof
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="samplers", daemon=True)
        self._pending: dict[str, list[list[float]]] = {}
        self._held = False
        self._lock = threading.Lock()

    def start(self) -> SamplerThread:
        for s in self.samplers:
            s.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._flush()
        for s in self.samplers:
            s.close()

    def _tick(self) -> None:
        start = time.perf_counter()
        cpu_start = time.thread_time()
        t = start - self.t0
        for s in self.samplers:
            try:
                v = s.read()
            except Exception as e:  # a sensor that fails once is dropped, not fatal
                log.warning("sampler %s failed: %s", s.name, e)
                v = None
            if v is None:
                continue
            tl = self.timelines[s.name]
            tl.t_s.append(t)
            tl.values.append(v)
            with self._lock:
                self._pending.setdefault(s.name, []).append([round(t, 4), v])
        self.busy_s += time.perf_counter() - start
        self.cpu_s += time.thread_time() - cpu_start
        self.ticks += 1

    def hold(self, held: bool) -> None:
        """Keep new points for drain() (True) or stream them from this thread again (False)."""
        self._held = held

    def drain(self) -> dict[str, list[list[float]]]:
        """The points read since the last flush or drain, taken off the thread's queue."""
        with self._lock:
            batch, self._pending = self._pending, {}
        return batch

    def _flush(self) -> None:
        if self._pending and self.on_batch is not None:
            batch = self.drain()
            if batch:
                self.on_batch(batch)

    def _loop(self) -> None:
        next_tick = time.perf_counter()
        last_flush = next_tick
        while not self._stop.is_set():
            self._tick()
            now = time.perf_counter()
            if not self._held and now - last_flush >= self.batch_s:
                self._flush()
                last_flush = now
            next_tick += self.period_s
            delay = next_tick - time.perf_counter()
            if delay < 0:  # fell behind (machine busy): skip ahead rather than burst
                next_tick = time.perf_counter()
                delay = 0
            self._stop.wait(delay)


def default_samplers(gpu: bool = False) -> list[Sampler]:
    """Process memory and CPU always; power from the best source found; GPU when asked."""
    from profilers.samplers.cpu import CpuSampler
    from profilers.samplers.memory import RssSampler
    from profilers.samplers.power import best_power_sampler

    samplers: list[Sampler] = [RssSampler(), CpuSampler()]
    if gpu:
        from profilers.samplers.nvml import nvml_samplers

        samplers += nvml_samplers()
    samplers.append(best_power_sampler())
    return samplers
