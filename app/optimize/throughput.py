"""Throughput for `optimize --objective throughput`: samples per second with several requests
in flight and at a batch size, measured in interleaved rounds against FP32 ONNX Runtime.

Serving a model for throughput has two knobs the model itself does not change: how many
requests are in flight at once (streams) and how many samples one request carries (batch).
Neither changes the math, so a variant's accuracy carries over; both change speed, often more
than a pass does. How each runtime keeps N requests in flight:

- OpenVINO: compiled with the THROUGHPUT hint, NUM_STREAMS = N and the variant's threads
  (shared by the streams), at static sizes for the batch, and an AsyncInferQueue of N jobs;
  the request latency comes from OpenVINO's own timer (InferRequest.latency).
- ONNX Runtime (and any other backend): one session run from N Python threads, each request
  on its caller's thread with threads/N intra-op threads. ORT's run() releases the GIL
  (pybind `gil_scoped_release`, onnxruntime PR #1042; the maintainers confirm it for every
  run overload in issue #12768) and a session may be run concurrently, so the threads compute
  in parallel; separate sessions per thread gave the same throughput on CPU (issue #27089)
  and would hold N copies of the weights.

The baseline a variant is compared with is FP32 ONNX Runtime at the *same* threads, streams
and batch. Batching and concurrent requests are deployment choices the unchanged model can
make too (batching also costs each request latency and needs requests to wait for each
other), so a ratio against FP32 at batch 1 would credit the variant with a gain FP32 gets by
itself. What the serving configuration brings on its own is reported apart (`config_gain`:
FP32 at this configuration over FP32 at batch 1 with one request in flight, same threads,
same rounds), and FP32 ONNX Runtime's own configurations compete as candidates, so "serve
the unchanged model at batch 8" can win and is said so.

A model whose batch dimension is fixed runs at that batch only (batch 1 for the usual
export): a larger batch would change its declared shapes, and the reason says so.

Measuring: each round gives every runner the same time in short blocks, alternating A B A B
(B A B A the next round), so a burst of other load falls on all alike. A block sends whole
waves of N requests and is timed from the first start to the last finish; its figure is
milliseconds per sample (wall / samples), so the honest-numbers ratio interval
(honest.speedup_interval) of baseline / candidate is the throughput ratio.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.optimize.honest import Interval, median_interval, speedup_interval
from converters.errors import ModelDeckError

log = logging.getLogger(__name__)
# how throughput is measured (blocks, waves, what a figure is): a change invalidates the cache
THROUGHPUT_VERSION = 1
BATCHES = (1, 8)  # batch sizes tried where the model's batch dimension is free
STAGE = "throughput"


@dataclass(frozen=True)
class Serving:
    """How a variant is served: its threads (shared by its streams), the requests in flight
    (streams) and the samples per request (batch)."""

    threads: int | None
    streams: int = 1
    batch: int = 1

    def __post_init__(self) -> None:
        if self.streams < 1 or self.batch < 1:
            raise ModelDeckError("streams and batch must be at least 1")

    def plain(self, batch: int = 1) -> Serving:
        """One request at a time of the model's smallest batch (1 unless the model fixes
        it), same threads: what the configuration is judged against."""
        return Serving(self.threads, 1, batch)

    def label(self) -> str:
        return (f"batch {self.batch}, {self.streams} stream(s), "
                f"{self.threads or 'default'} thread(s)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def batch_of(specs: list[Any]) -> tuple[int | None, str]:
    """(the model's fixed batch, or None when its batch dimension is free; why).

    The batch dimension is the first of every input; it is free only when it is symbolic
    (or unknown) on every input, since one fixed input pins the others' batch."""
    if not specs:
        return 1, "the model has no inputs to batch: batch 1 only"
    for s in specs:
        if not s.shape:
            return 1, (f"input {s.name!r} has no batch dimension (rank 0 or unknown): "
                       "batch 1 only")
        first = s.shape[0]
        if isinstance(first, int):
            dims = ", ".join("?" if not isinstance(d, int) else str(d) for d in s.shape)
            return first, (f"the batch dimension is fixed at {first} by input {s.name!r} "
                           f"[{dims}]: batch {first} only (a larger batch would need the model "
                           "exported with a dynamic batch)")
    return None, "the batch dimension is free"


def batch_feeds(feeds: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """`batch` real samples per input (the first ones, repeated when there are fewer); inputs
    without a batch dimension (rank 0, e.g. a sample rate) are passed as they are."""
    out = {}
    for k, v in feeds.items():
        v = np.asarray(v)
        if v.ndim == 0:
            out[k] = v
        elif len(v) >= batch:
            out[k] = np.ascontiguousarray(v[:batch])
        else:
            reps = math.ceil(batch / max(len(v), 1))
            out[k] = np.ascontiguousarray(np.concatenate([v] * reps)[:batch])
    return out


def stream_choices(threads: int | None, cores: int) -> tuple[int, ...]:
    """1 and the usable cores, never more streams than the variant's threads (streams share
    them: more would make the streams fight for cores, which the latency stage already
    shows as slower)."""
    most = threads if threads is not None else cores
    return tuple(dict.fromkeys(s for s in (1, cores) if s <= max(most, 1)))


# --- serving ---------------------------------------------------------------------------------

class Server:
    """A loaded variant that serves requests of `serving.batch` samples with
    `serving.streams` in flight. `wave(k)` sends k requests per stream and returns when all
    are done; request latencies (ms) collect in `latencies`."""

    def __init__(self, backend: Any, serving: Serving, feeds: dict[str, np.ndarray],
                 more: list[Any] | None = None):
        self.backend = backend
        # ORT with several intra-op threads per stream: a session each (concurrent runs of one
        # session would share its one intra-op pool)
        self.sessions = [backend, *(more or [])]
        self.serving = serving
        self.feeds = feeds
        self.latencies: list[float] = []
        self.details: dict[str, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._queue: Any = None

    def start(self) -> Server:
        """Check one request's outputs, bind the inputs once (outside the timed loop), then
        one warm-up wave. A graph that pins its batch inside (a Reshape to [1, -1]) while
        declaring it free is refused here rather than timed on wrong outputs."""
        try:
            self._start()
        except ModelDeckError:
            raise
        except (RuntimeError, TypeError, ValueError, KeyError) as e:  # the runtime's own words
            raise ModelDeckError(f"{self.backend.name} cannot serve the model at "
                                 f"{self.serving.label()}: {_short(e)}") from e
        return self

    def _start(self) -> None:
        self.backend.fix_shapes(self.feeds)
        outs = self.backend.infer(self.feeds)
        first = np.shape(outs[0]) if outs else ()
        if self.serving.batch > 1 and (not first or first[0] != self.serving.batch):
            raise ModelDeckError(f"at batch {self.serving.batch} the model's first output has "
                                 f"shape {list(first)}: its graph does not keep the batch "
                                 "dimension, so it is served at batch 1 only")
        make_queue = getattr(self.backend, "request_queue", None)
        if make_queue is not None:  # OpenVINO: N asynchronous requests on N streams
            self._queue = make_queue(self.serving.streams)
            self._bind_queue()
        else:  # ORT and others: one prepared call, run from N threads (run() drops the GIL)
            for b in self.sessions:
                b.prepare(self.feeds)
            if self.serving.streams > 1:
                self._pool = ThreadPoolExecutor(self.serving.streams,
                                                thread_name_prefix="modeldeck-stream")
        self.wave(1)
        self.latencies.clear()

    def _bind_queue(self) -> None:
        """Each request of the queue gets its own copy of the inputs. Nothing Python is handed
        to OpenVINO (no shared-memory tensors, no Python callback): releasing either needs the
        GIL on an OpenVINO stream thread, and closing the compiled model joins those threads
        while holding it, which deadlocked (seen on a real OCR model)."""
        import openvino as ov

        for i in range(len(self._queue)):
            req = self._queue[i]
            for name, arr in self.feeds.items():
                a = np.asarray(arr)  # (ascontiguousarray would make a scalar 1-d)
                req.set_tensor(name, ov.Tensor(a if a.flags.c_contiguous else a.copy(order="C"),
                                               shared_memory=False))

    def _serial(self, k: int, stream: int = 0) -> None:
        run = self.sessions[stream % len(self.sessions)].run_prepared
        lat = self.latencies
        for _ in range(k):
            t0 = time.perf_counter_ns()
            run()
            lat.append((time.perf_counter_ns() - t0) / 1e6)

    def wave(self, k: int) -> int:
        """k requests per stream, all streams busy; returns the samples served."""
        s = self.serving.streams
        if self._queue is not None:
            for _ in range(k * s):
                self._queue.start_async()
            self._queue.wait_all()
            # OpenVINO's own time of each job's last request (timed in C++): a sample of the
            # request latency without a Python callback per request
            self.latencies += [float(self._queue[i].latency) for i in range(len(self._queue))]
        elif self._pool is None:
            self._serial(k)
        else:
            for f in [self._pool.submit(self._serial, k, i) for i in range(s)]:
                f.result()
        return k * s * self.serving.batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._queue = None
        for b in self.sessions:
            try:
                b.close()
            except Exception:  # closing is best effort
                pass


def open_server(path: Path, fmt: str, backend: str, precision: str | None, serving: Serving,
                feeds: dict[str, np.ndarray], one: dict[str, np.ndarray] | None = None
                ) -> Server:
    """Load one variant for serving at `serving` on this machine's CPU (the seam a remote
    target would replace, as search.measure_job is for latency). `feeds` stack samples on
    their first axis; `one` is one request of batch 1 as the model takes it (the search's
    single-sample feeds: a state input like [2, batch, 64] is not sliced on its first axis)."""
    from profilers.backends import BackendOptions, get_backend

    cls = get_backend(backend)
    ok, why = cls.available()
    if not ok:
        raise ModelDeckError(f"backend {backend} is not usable here: {why}")
    b = cls()
    threads, streams = serving.threads, serving.streams
    if getattr(cls, "request_queue", None) is not None:  # the runtime runs its own streams
        opts = BackendOptions(threads=threads, streams=streams, precision=precision,
                              performance_hint="THROUGHPUT")
    else:  # each request on its own caller thread, the threads shared out
        per = None if threads is None else max(1, threads // streams)
        opts = BackendOptions(threads=per, precision=precision)
    info = b.load(path, fmt, "CPU", opts)
    more = []
    try:
        if streams > 1 and per_stream_pool(cls, opts):
            for _ in range(streams - 1):
                more.append(cls())
                more[-1].load(path, fmt, "CPU", opts)
    except Exception:
        for x in [b, *more]:
            x.close()
        raise
    from app.optimize.search import _match

    request = (one if one is not None and serving.batch == 1
               else batch_feeds(feeds, serving.batch))
    server = Server(b, serving, _match(request, b.input_specs()), more)
    server.details = dict(getattr(info, "details", {}) or {})
    try:
        return server.start()
    except Exception:
        server.close()
        raise


def per_stream_pool(cls: Any, opts: Any) -> bool:
    """Whether each stream needs its own session: a runtime without its own streams, run with
    more than one intra-op thread per request (with one, a run computes on its caller's
    thread, and one session shared by the stream threads holds the weights once)."""
    return getattr(cls, "request_queue", None) is None and (opts.threads or 0) != 1


# --- measuring -------------------------------------------------------------------------------

@dataclass
class Measured:
    """One runner's rounds: ms per sample per block, and request latencies, per round."""

    ms_per_sample: list[np.ndarray] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)
    waves: int = 1  # requests per stream in one block

    def extend(self, other: Measured) -> None:
        self.ms_per_sample += other.ms_per_sample
        self.latencies += other.latencies


def waves_for(server: Server, block_ms: float) -> int:
    """Requests per stream that fill about `block_ms` (at least one wave)."""
    t0 = time.perf_counter_ns()
    server.wave(1)
    one = (time.perf_counter_ns() - t0) / 1e6
    server.latencies.clear()
    return int(min(200, max(1, round(block_ms / max(one, 1e-3)))))


def interleaved_throughput(servers: list[Server], rounds: int, block_ms: float,
                           blocks: int = 2, check: Callable[[], None] = lambda: None,
                           waves: list[int] | None = None) -> list[Measured]:
    """Rounds of every server, interleaved block by block (A B A B, then B A B A)."""
    waves = waves or [waves_for(s, block_ms) for s in servers]
    out = [Measured(waves=w) for w in waves]
    for r in range(rounds):
        check()
        order = list(range(len(servers)))
        if r % 2:
            order.reverse()
        figs: list[list[float]] = [[] for _ in servers]
        lats: list[list[float]] = [[] for _ in servers]
        for _ in range(blocks):
            for i in order:
                s = servers[i]
                s.latencies.clear()
                t0 = time.perf_counter_ns()
                samples = s.wave(waves[i])
                wall = (time.perf_counter_ns() - t0) / 1e6
                figs[i].append(wall / samples)
                lats[i] += s.latencies
        for i in range(len(servers)):
            out[i].ms_per_sample.append(np.array(figs[i]))
            out[i].latencies.append(np.array(lats[i] or [np.nan]))
    return out


def samples_per_s(m: Measured, seed: int = 0) -> Interval:
    """Samples per second with its interval (rounds resampled: 1000 / ms per sample)."""
    iv = median_interval(m.ms_per_sample, seed=seed)
    return Interval(1000.0 / iv.value, 1000.0 / iv.high, 1000.0 / iv.low)


def ratio(base: Measured, cand: Measured, seed: int = 0) -> Interval:
    """Candidate samples/s over the baseline's, from the same interleaved rounds."""
    return speedup_interval(base.ms_per_sample, cand.ms_per_sample, seed=seed)


def figures(cand: Measured, base: Measured, plain: Measured, serving: Serving,
            seed: int = 0, base_name: str = "FP32 ONNX Runtime") -> dict[str, Any]:
    """What a Point records: samples/s, the ratio to FP32 ORT at the same serving, what the
    serving itself brings to FP32, and the per-request latency."""
    tp = samples_per_s(cand, seed)
    out: dict[str, Any] = {
        "value": tp.value, "low": tp.low, "high": tp.high, "unit": "samples/s",
        **serving.to_dict(), "requests_in_flight": serving.streams,
        "rounds": len(cand.ms_per_sample),
        "vs_baseline": ratio(base, cand, seed).to_dict(),
        "baseline_samples_per_s": samples_per_s(base, seed).to_dict(),
        "baseline_config": f"{base_name} at {serving.label()}",
    }
    if plain is not base:
        out["config_gain"] = ratio(plain, base, seed).to_dict()
        out["vs_plain"] = ratio(plain, cand, seed).to_dict()
    lats = [x[np.isfinite(x)] for x in cand.latencies]
    if all(len(x) for x in lats) and lats:
        lat = median_interval(lats, seed=seed)
        out["request_latency_ms"] = {"p50": lat.value, "low": lat.low, "high": lat.high}
    return out


# --- the search stage --------------------------------------------------------------------------

def variant(c: Any, serving: Serving) -> Any:
    """`c` served at `serving` (the same build: streams and batch are run options)."""
    parts = [c.name]
    if serving.streams > 1:
        parts.append(f"s{serving.streams}")
    if serving.batch > 1:
        parts.append(f"b{serving.batch}")
    return dataclasses.replace(c, name="-".join(parts), threads=serving.threads,
                               streams=serving.streams, batch=serving.batch, remedy_for=None,
                               parent=c.parent or c.name)


class ThroughputStage:
    """The finalists (and FP32 ONNX Runtime itself) at streams × batch, each group of one
    serving configuration timed together with FP32 ONNX Runtime at the same serving and at
    batch 1 with one request in flight (same threads)."""

    def __init__(self, search: Any):
        self.s = search
        # FP32 ONNX Runtime, or FP32 OpenVINO for an IR / TFLite source ORT cannot run
        backend = search.cands["baseline"].backend
        self.base_name = "FP32 " + {"onnxruntime": "ONNX Runtime",
                                    "openvino": "OpenVINO"}.get(backend, backend)
        self.measured: dict[str, tuple[Measured, Measured, Measured, Serving]] = {}
        self.batch_note = ""
        self.plain_batch = 1  # the model's fixed batch where it has one
        self.parent_of: dict[str, str] = {}  # served variant -> the point it serves

    # which configurations ----------------------------------------------------------------
    def plan(self) -> list[tuple[Serving, list[tuple[Any, Any]]]]:
        """(serving, [(candidate, point)]) per group, baseline configs included; the plain
        config of a finalist is the finalist itself (its point gets the throughput)."""
        from app.optimize.search import Point, usable_cores

        s = self.s
        fixed, why = batch_of(s.base_run.backend.input_specs())
        batches = BATCHES if fixed is None else (fixed,)
        self.batch_note, self.plain_batch = why, batches[0]
        if fixed is not None:
            s.notes.append(f"throughput: {why}")
        cores = usable_cores()
        # the screening survivors the full stage kept: those judged on the whole set that meet
        # the budget, and those it did not judge because a faster one (one request of one
        # sample at a time) met it first: served, another may serve more samples per second
        finalists = [p for p in s.points.values()
                     if p.name != "baseline" and p.stage in ("full", "screen")
                     and p.status == "kept" and p.meets is not False and p.latency_ms
                     and p.name in s.cands and (s.cands[p.name].streams or 1) == 1
                     and s.cands[p.name].batch == 1]
        base_c = s.cands["baseline"]
        groups: dict[Serving, list[tuple[Any, Any]]] = {}
        threads_seen = list(dict.fromkeys(
            [base_c.threads] + [s.cands[p.name].threads for p in finalists]))
        for t in threads_seen:  # FP32 ONNX Runtime's own configurations
            for st in stream_choices(t, cores):
                for b in batches:
                    serving = Serving(t, st, b)
                    if serving == Serving(base_c.threads, 1, batches[0]):
                        c, p = base_c, s.points["baseline"]
                    else:
                        c = variant(dataclasses.replace(
                            base_c, name=("baseline" if t == base_c.threads
                                          else f"baseline-{t}t")), serving)
                        p = self._point(c, s.points["baseline"], Point)
                    groups.setdefault(serving, []).append((c, p))
        for p in finalists:
            c = s.cands[p.name]
            for st in stream_choices(c.threads, cores):
                for b in batches:
                    serving = Serving(c.threads, st, b)
                    if (st, b) == (1, batches[0]):
                        groups.setdefault(serving, []).append((c, p))
                    else:
                        v = variant(c, serving)
                        groups.setdefault(serving, []).append((v, self._point(v, p, Point)))
        return list(groups.items())

    def _point(self, c: Any, parent: Any, point_cls: Any) -> Any:
        """A variant's point: the parent's build and accuracy (streams and batch change speed,
        not the math), figures to come."""
        s = self.s
        s.cands[c.name] = c
        p = s.points.get(c.name) or point_cls(c.name, c.to_dict())
        self.inherit(p, parent)
        p.candidate = c.to_dict()
        s.points[c.name] = p
        self.parent_of[c.name] = parent.name
        return p

    @staticmethod
    def inherit(p: Any, parent: Any) -> None:
        for k in ("path", "format", "size_bytes", "lineage", "accuracy", "accuracy_drop",
                  "agreement", "cosine", "samples", "meets"):
            setattr(p, k, getattr(parent, k))

    # measuring ----------------------------------------------------------------------------
    def run(self) -> None:
        from app.optimize.search import _Stop

        s = self.s
        plan = self.plan()
        s.emit({"event": "stage", "stage": STAGE, "message":
                f"throughput: {len(plan)} serving configuration(s) (streams × batch)"})
        for i, (serving, members) in enumerate(plan):
            s.check()
            s.progress(0.8 + 0.1 * i / max(len(plan), 1), f"throughput at {serving.label()}")
            try:
                self.measure_group(serving, members)
            except _Stop:
                raise
            except Exception as e:  # the search still ends with its best so far
                log.warning("throughput at %s: %s", serving.label(), e, exc_info=True)
                s.notes.append(f"throughput at {serving.label()} not measured: {_short(e)}")
                for c, p in members:
                    self.conclude(c, p, {"failed": _short(e)}, serving)
        self.promote()

    def promote(self) -> None:
        """While the point serving the most samples per second serves a survivor that was not
        judged on the whole evaluation set, judge that survivor (as the full stage would
        have); a survivor that then misses the budget takes its served points with it."""
        s = self.s
        judged: set[str] = set()
        while True:
            pool = [p for p in s.points.values() if p.throughput and p.status == "kept"
                    and p.meets is not False and p.name != "baseline"]
            if not pool:
                return
            best = min(pool, key=s.objective)
            parent = s.points.get(self.parent_of.get(best.name, best.name))
            if parent is None or parent.stage == "full" or parent.name in judged:
                return
            judged.add(parent.name)
            s.check()
            s.emit({"event": "stage", "stage": STAGE, "message":
                    f"{best.name} serves the most samples/s: judging {parent.name} on the "
                    "whole evaluation set"})
            self.judge(parent)
            for name, pname in self.parent_of.items():
                if pname != parent.name or name not in s.points:
                    continue
                v = s.points[name]
                self.inherit(v, parent)
                v.stage = parent.stage
                v.reason = v.reason.split("; accuracy from screening")[0]
                if not (parent.meets and parent.status in ("kept", "best")):
                    v.status = "rejected"
                    v.reason = (f"{parent.name}, which it serves, fails on the whole "
                                f"evaluation set: {parent.reason}")
                s.publish(v)

    def judge(self, p: Any) -> None:
        """`p` on the whole evaluation set, as the full stage judges its first survivor (its
        full-stage rounds are already there)."""
        from app.optimize.search import measure_job

        s = self.s
        c = s.cands[p.name]
        bc = s.search_build(c)
        run = measure_job(Path(p.path), p.format, c.backend, c.precision, c.threads, s.feeds1)
        try:
            s.accuracy(c, bc, p, run, "full")
        finally:
            run.close()
        s.conclude(p, "full")
        s.remember(bc, p, "full")

    def _key(self, serving: Serving, members: list[tuple[Any, Any]], rounds: int) -> str:
        from app.optimize.cache import key_of
        from app.optimize.search import MEASURE_VERSION

        s = self.s
        return key_of(STAGE, THROUGHPUT_VERSION, MEASURE_VERSION, s.source_sha, s.data_key,
                      serving.to_dict(), [(c.run_key(), c.build_spec()) for c, _ in members],
                      rounds, s.spec.round_ms)

    def measure_group(self, serving: Serving, members: list[tuple[Any, Any]]) -> None:
        from app.optimize.search import _Stop

        s = self.s
        rounds = s.spec.full_rounds
        key = self._key(serving, members, rounds)
        hit = s.cache.get(key)
        if hit is not None:
            for (c, p), figs in zip(members, hit["figures"]):
                self.conclude(c, p, figs, serving, cached=True)
            return
        base_c = s.cands["baseline"]
        opened: list[Server] = []
        failed: dict[str, str] = {}
        try:
            try:
                plain = self.open(base_c, s.base_path, s.base_format,
                                  serving.plain(self.plain_batch), opened)
                base = (plain if serving == serving.plain(self.plain_batch)
                        else self.open(base_c, s.base_path, s.base_format, serving, opened))
            except _Stop:
                raise
            except Exception as e:  # nothing to compare with at this serving
                why = f"{self.base_name} does not serve so: {_short(e)}"
                s.notes.append(f"throughput at {serving.label()} not measured: {why}")
                for c, p in members:
                    self.conclude(c, p, {"failed": why}, serving)
                return
            runners: list[Server] = [plain] + ([base] if base is not plain else [])
            mine: list[Server | None] = []
            for c, p in members:
                if _is_base_variant(c):
                    mine.append(base)  # FP32 ONNX Runtime itself: the baseline slot
                    continue
                try:
                    srv = self.open(c, Path(p.path), p.format, serving, opened)
                except _Stop:
                    raise
                except Exception as e:  # this variant does not serve so; the rest still do
                    failed[c.name] = _short(e)
                    mine.append(None)
                    continue
                runners.append(srv)
                mine.append(srv)
            got = self.timed(runners, rounds)
        finally:
            for srv in opened:
                srv.close()
        by_srv = {id(r): m for r, m in zip(runners, got)}
        m_plain, m_base = by_srv[id(plain)], by_srv[id(base)]
        figs_all = []
        for (c, p), srv in zip(members, mine):
            if srv is None:
                figs = {"failed": failed[c.name]}
            else:
                m = by_srv[id(srv)]
                figs = figures(m, m_base, m_plain, serving, s.spec.seed, self.base_name)
                self.measured[p.name] = (m_plain, m_base, m, serving)
            figs_all.append(figs)
            self.conclude(c, p, figs, serving)
        s.cache.put(key, {"figures": figs_all})

    def timed(self, servers: list[Server], rounds: int) -> list[Measured]:
        """`servers` timed in interleaved rounds, the time counted as the search's timing."""
        s = self.s
        t0 = time.monotonic()
        try:
            return interleaved_throughput(servers, rounds, s.spec.round_ms / 2, check=s.check)
        finally:
            s.spent["time_s"] += time.monotonic() - t0

    def open(self, c: Any, path: Path, fmt: str, serving: Serving, opened: list[Server]
             ) -> Server:
        srv = open_server(path, fmt, c.backend, c.precision, serving, self.s.feeds,
                          one=self.s.feeds1)
        opened.append(srv)
        return srv

    def conclude(self, c: Any, p: Any, figs: dict[str, Any], serving: Serving,
                 cached: bool = False) -> None:
        """Record the figures on the point and say why it is kept or not, in words."""
        s = self.s
        if "failed" in figs:
            if p.name != "baseline" and (c.streams or c.batch != 1):
                p.status, p.stage = "failed", "full"
                p.reason = f"does not serve at {serving.label()}: {figs['failed']}"
                s.publish(p)
            return
        p.throughput = figs
        if cached:
            p.cached = True
        if p.name == "baseline" or (c.streams or 1, c.batch) == (1, 1) and \
                not _is_base_variant(c):
            # the plain config of a finalist: its verdict stands, its rate is added once
            if "samples/s" not in p.reason:
                p.reason += f"; {_rate(figs)} one request at a time"
            s.publish(p)
            return
        parent = s.points.get(self.parent_of.get(p.name, ""))
        # a variant of a survivor not yet judged on the whole set is a screening figure
        # until promote() judges its parent
        p.stage = parent.stage if parent is not None and not _is_base_variant(c) else "full"
        vs = figs["vs_baseline"]
        lat = figs.get("request_latency_ms")
        if lat:
            p.latency_ms = {**lat, "per": f"request of {serving.batch} sample(s) with "
                            f"{serving.streams} in flight", "threads": serving.threads,
                            "streams": serving.streams, "batch": serving.batch}
        p.speedup = vs
        gain = figs.get("config_gain")
        text = f"{_rate(figs)} at {serving.label()}"
        if _is_base_variant(c):
            p.status = "kept"
            p.reason = (f"{self.base_name} itself, served differently: {text}"
                        + (f"; {gain['value']:.2f}× [{gain['low']:.2f}, {gain['high']:.2f}] "
                           "the samples/s of batch 1, one request in flight" if gain else ""))
        elif vs["high"] < 1.0:
            p.status = "rejected"
            p.reason = (f"fewer samples/s than {self.base_name} at the same serving: "
                        f"{vs['value']:.2f}× [{vs['low']:.2f}, {vs['high']:.2f}] ({text})")
        else:
            p.status = "kept"
            p.reason = (f"{text}: {vs['value']:.2f}× [{vs['low']:.2f}, {vs['high']:.2f}] "
                        f"{self.base_name} at the same serving"
                        + (f" (which itself gains {gain['value']:.2f}× over batch 1, one "
                           f"request in flight)" if gain else ""))
        if serving.batch == 1 and self.batch_note and "fixed" in self.batch_note:
            p.reason += f"; {self.batch_note}"
        if p.stage != "full" and p.status == "kept":
            p.reason += (f"; accuracy from screening ({p.samples} samples): judged on the "
                         f"whole set if it would win")
        s.publish(p)

    # confirming the winner ------------------------------------------------------------------
    def confirm(self, p: Any) -> dict[str, Any] | None:
        """More interleaved rounds of the winner at its serving against FP32 ONNX Runtime at
        the same serving and at batch 1 (its stage rounds count toward them)."""
        from app.optimize.cache import key_of
        from app.optimize.search import MEASURE_VERSION

        s = self.s
        c = s.cands[p.name]
        t = p.throughput
        serving = Serving(t["threads"], t["streams"], t["batch"])
        # the stage's rounds count toward the confirmation (none when they came from the cache)
        m_plain, m_base, m, _ = self.measured.get(p.name) or (
            Measured(), Measured(), Measured(), serving)
        key = key_of("confirm-" + STAGE, THROUGHPUT_VERSION, MEASURE_VERSION, s.source_sha,
                     c.run_key(), c.build_spec(), s.data_key, s.spec.final_rounds,
                     s.spec.round_ms)
        hit = s.cache.get(key)
        if hit is not None:
            return hit
        s.emit({"event": "stage", "stage": "final", "message":
                f"confirming {p.name} at {serving.label()}"})
        reused = len(m.ms_per_sample)
        more = max(0 if reused >= 2 else 2, s.spec.final_rounds - reused)
        shared_base = m_base is m_plain
        m_plain, m_base, m = _copy(m_plain), _copy(m_base), _copy(m)
        if shared_base:
            m_base = m_plain
        if more:
            base_c = s.cands["baseline"]
            opened: list[Server] = []
            try:
                plain = self.open(base_c, s.base_path, s.base_format,
                                  serving.plain(self.plain_batch), opened)
                base = (plain if serving == serving.plain(self.plain_batch) else
                        self.open(base_c, s.base_path, s.base_format, serving, opened))
                cand = (base if _is_base_variant(c) or p.name == "baseline" else
                        self.open(c, Path(p.path), p.format, serving, opened))
                runners = list(dict.fromkeys([plain, base, cand]))
                got = self.timed(runners, more)
            finally:
                for srv in opened:
                    srv.close()
            by = {id(r): g for r, g in zip(runners, got)}
            m_plain.extend(by[id(plain)])
            if base is not plain:
                m_base.extend(by[id(base)])
            if cand is not base:
                m.extend(by[id(cand)])
        if m is not m_base and (_is_base_variant(c) or p.name == "baseline"):
            m = m_base  # FP32 ONNX Runtime served so is the baseline slot itself
        figs = figures(m, m_base, m_plain, serving, s.spec.seed, self.base_name)
        out = {"throughput": figs, "speedup": figs["vs_baseline"],
               "latency_ms": figs.get("request_latency_ms") or p.latency_ms,
               "rounds": len(m.ms_per_sample), "rounds_from_full_stage": reused,
               "threads": c.threads, "streams": serving.streams, "batch": serving.batch,
               "interleaved": True}
        s.cache.put(key, out)
        return out


def _rate(figs: dict[str, Any]) -> str:
    return f"{figs['value']:,.0f} samples/s [{figs['low']:,.0f}, {figs['high']:,.0f}]"


def _is_base_variant(c: Any) -> bool:
    return c.name == "baseline" or c.name.startswith("baseline-")


def _copy(m: Measured) -> Measured:
    return Measured(list(m.ms_per_sample), list(m.latencies), m.waves)


def _short(e: BaseException) -> str:
    """The line of an error that says what is wrong (OpenVINO starts with where it was
    raised: 'Exception from src/...', 'Check ... failed at ...')."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    useful = [x for x in lines if not x.startswith(("Exception from", "Check '"))]
    return ((useful or lines or [type(e).__name__])[0])[:300]


def profile_args(serving: Serving, backend: str, feeds: dict[str, np.ndarray]) -> list[str]:
    """`modeldeck profile` options that reproduce one request of this serving: the batch as
    --shape of every input, OpenVINO's streams and THROUGHPUT hint. (profile times one
    request at a time: the throughput with N in flight is optimize's own measurement.)"""
    args = []
    if serving.batch != 1:
        for name, arr in feeds.items():
            dims = [serving.batch, *np.shape(arr)[1:]]
            args += ["--shape", f"{name}={'x'.join(str(d) for d in dims)}"]
    if backend == "openvino" and serving.streams > 1:
        args += ["--streams", str(serving.streams), "--hint", "throughput"]
    return args


def profile_suffix(c: Any, feeds: dict[str, np.ndarray]) -> str:
    """What the winner's `modeldeck profile` line adds for its serving, with a shell comment
    where profile cannot reproduce it (ONNX Runtime with several requests in flight)."""
    import shlex

    serving = Serving(c.threads, c.streams or 1, c.batch)
    text = "".join(f" {shlex.quote(a)}" for a in profile_args(serving, c.backend, feeds))
    if c.backend != "openvino" and serving.streams > 1:
        text += (f"  # served with {serving.streams} requests in flight from "
                 f"{serving.streams} threads ({max(1, (c.threads or 1) // serving.streams)} "
                 "intra-op thread(s) each); profile times one request at a time")
    return text


def time_per_sample(p: Any) -> float | None:
    """Under the throughput objective, what the Pareto front and chart trade against quality:
    ms per sample at the point's serving (1000 / samples/s), or its p50 where it was only
    timed one request of one sample at a time (the same unit). Takes a Point or its dict."""
    get = p.get if isinstance(p, dict) else (lambda k: getattr(p, k, None))
    tp = get("throughput")
    if tp:
        return 1000.0 / max(tp["value"], 1e-9)
    return (get("latency_ms") or {}).get("p50")


def chart_axis(_result: dict[str, Any]) -> tuple[Any, str, str, str]:
    """The HTML chart's x under the throughput objective (see energy.chart_axis)."""
    return time_per_sample, "Time per sample", "time per sample (ms, 1000 / samples per s)", "ms"
