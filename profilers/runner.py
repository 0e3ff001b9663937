"""One profiling run, in stages: inspect -> load (timed) -> first inference (timed apart) ->
warm-up until settled -> measured loop (count or duration) -> optional per-layer run on a
separate instance.

Only the backend call sits between the two perf_counter_ns reads; inputs are prepared before
the loop, events are emitted between iterations (the samplers' points go out with them). Per-layer
profiling slows inference, so it runs on its own backend instance after the clean loop and never
mixes into its latencies; its layer sum is reconciled with that run's end-to-end time.

How far to trust the figures is part of the report: p50/p99 intervals (stats.py), the warm-up's
settling point, a stable/noisy verdict with its measured reasons (stability.py), the runtime's
own request latency where it keeps one, and the machine's state before and during the loop.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import Cancelled, ModelDeckError
from profilers.backends import Backend, BackendError, BackendOptions, get_backend
from profilers.budgets import Budget, parse_budget
from profilers.stability import usable_cpus, verdict
from profilers.stats import SettleDetector, latency_intervals, latency_stats, settle_window

log = logging.getLogger(__name__)

REPORT_SCHEMA = "modeldeck.report/2"
Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunConfig:
    model: str
    backend: str = "onnxruntime"
    device: str = "CPU"
    options: BackendOptions = field(default_factory=BackendOptions)
    iterations: int | None = None  # neither given: 100 iterations
    duration_s: float | None = None
    warmup: int = 10  # at least this many warm-up iterations, then until settled (0: none)
    warmup_max_s: float = 10.0  # the warm-up's time cap when the latency does not settle
    shapes: dict[str, list[int]] = field(default_factory=dict)
    inputs_npz: str | None = None
    layers: bool = False
    layer_iterations: int = 20
    budgets: tuple[str, ...] = ()
    samplers: bool = True
    sample_period_s: float = 0.05
    emit_period_s: float = 0.1
    seed: int = 0
    rounds: int = 10  # compare: interleaved rounds of the A/B timing (each model every round)
    trust_code: bool = False  # the user's consent to run code the model file carries (torch)

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise ModelDeckError("--iterations must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ModelDeckError("--duration must be positive")
        if self.warmup < 0:
            raise ModelDeckError("--warmup cannot be negative")
        if self.rounds < 1:
            raise ModelDeckError("--rounds must be at least 1")
        if self.warmup_max_s <= 0:
            raise ModelDeckError("the warm-up time cap must be positive")
        for b in self.budgets:
            parse_budget(b)  # fail before any work

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = dict(d)
        d["options"] = BackendOptions(**d.get("options", {}))
        d["budgets"] = tuple(d.get("budgets", ()))
        return cls(**d)


def _load_backend(cfg: RunConfig, fmt: str, options: BackendOptions) -> tuple[Backend, Any]:
    cls = get_backend(cfg.backend)
    ok, why = cls.available()
    if not ok:
        raise BackendError(f"backend {cfg.backend} is not usable here: {why}")
    if fmt not in cls.formats:
        raise BackendError(f"backend {cfg.backend} does not run {fmt} models (it runs "
                           f"{', '.join(sorted(cls.formats))}); convert the model or pick "
                           "another backend")
    backend = cls()
    info = backend.load(_model_path(cfg), fmt, cfg.device, options)
    return backend, info


def _model_path(cfg: RunConfig) -> Path:
    return Path(cfg.model)


def _prepare_inputs(cfg: RunConfig, backend: Backend, graph: Any
                    ) -> tuple[Any, dict[str, np.ndarray]]:
    """The run's workload (resolved against the runtime's view of the inputs) and its arrays."""
    from converters.workload import make_dry_check
    from profilers import inputs

    return inputs.prepare(backend.input_specs(), graph, cfg.shapes, cfg.inputs_npz,
                          seed=cfg.seed, dry_check=make_dry_check(cfg.model, graph.meta.format))


class _Budgets:
    """Checks budgets on a rolling window while running and on the final figures."""

    def __init__(self, texts: tuple[str, ...], emit: Emit):
        self.budgets: list[Budget] = [parse_budget(t) for t in texts]
        self.emit = emit
        self.broken_live: set[str] = set()

    def live(self, recent_ms: np.ndarray, rss_mb: float | None) -> None:
        if not self.budgets or recent_ms.size < 20:
            return
        values = {"p50": np.percentile(recent_ms, 50), "p90": np.percentile(recent_ms, 90),
                  "p95": np.percentile(recent_ms, 95), "p99": np.percentile(recent_ms, 99),
                  "mean": recent_ms.mean(), "max": recent_ms.max(), "rss": rss_mb}
        for b in self.budgets:
            v = values.get(b.metric)
            if b.check(v) is False and b.text not in self.broken_live:
                self.broken_live.add(b.text)
                self.emit({"event": "budget", "budget": b.text, "value": float(v), "ok": False,
                           "live": True})

    def final(self, values: dict[str, float | None]) -> list[dict[str, Any]]:
        out = []
        for b in self.budgets:
            v = values.get(b.metric)
            out.append({"budget": b.text, "metric": b.metric, "limit": b.limit, "unit": b.unit,
                        "value": v, "ok": b.check(v), "broken_live": b.text in self.broken_live})
        return out


def _summarise_timeline(tl, start: float, end: float) -> dict[str, Any]:
    t = np.asarray(tl.t_s)
    v = np.asarray(tl.values, dtype=np.float64)
    window = v[(t >= start) & (t <= end)] if t.size else v
    if window.size == 0:
        window = v
    return {"source": tl.source, "unit": tl.unit, "note": tl.note,
            "mean": float(window.mean()) if window.size else None,
            "max": float(v.max()) if v.size else None}


def run_profile(cfg: RunConfig, emit: Emit, cancelled: Callable[[], bool] = lambda: False
                ) -> dict[str, Any]:
    """Run one profile and return the report (a JSON-ready dict, schema REPORT_SCHEMA)."""
    from converters.formats import consent, current_trust

    # readers and backends ask for it: nothing is passed down; a caller's consent counts too
    with consent(cfg.trust_code or current_trust().run_code):
        return _run_profile(cfg, emit, cancelled)


def _run_profile(cfg: RunConfig, emit: Emit, cancelled: Callable[[], bool]) -> dict[str, Any]:
    from converters.analysis import analyze
    from converters.formats import open_model
    from profilers.environment import environment
    from profilers.samplers import SamplerThread, default_samplers
    from profilers.samplers.memory import peak_rss_mb
    from profilers.stability import LoadWatch, machine_state

    t0 = time.perf_counter()
    state_before = machine_state()
    budgets = _Budgets(cfg.budgets, emit)

    def stage(name: str, msg: str = "") -> None:
        if cancelled():
            raise Cancelled
        emit({"event": "stage", "stage": name, "message": msg,
              "t_s": round(time.perf_counter() - t0, 4)})

    stage("inspect", f"reading {cfg.model}")
    graph = open_model(cfg.model, input_shapes=_sizes_to_open_at(cfg))
    node_ids = _node_ids_by_name(graph)

    sampler_thread = None
    if cfg.samplers:
        def on_batch(batch):
            emit({"event": "samples", "series": batch})

        gpu = cfg.device.upper().startswith(("CUDA", "GPU", "TENSORRT"))
        sampler_thread = SamplerThread(default_samplers(gpu=gpu), cfg.sample_period_s, t0=t0,
                                       on_batch=on_batch, batch_s=cfg.emit_period_s).start()
    latencies: list[float] = []
    device_latencies: list[float] = []
    starts: list[float] = []
    load_watch = LoadWatch()
    try:
        stage("load", f"{cfg.backend} on {cfg.device}")
        options, thread_choice = _default_threads(
            BackendOptions(**{**asdict(cfg.options), "profile_layers": False}))
        backend, load_info = _load_backend(cfg, graph.meta.format, options)
        try:
            workload, feeds = _prepare_inputs(cfg, backend, graph)
            _refuse_what_cannot_fit(graph, workload)
            emit({"event": "workload", "workload": workload.to_dict()})
            stage("first", "first inference")
            a = time.perf_counter_ns()
            backend.infer(feeds)
            first_ms = (time.perf_counter_ns() - a) / 1e6

            backend.fix_shapes(feeds)  # e.g. OpenVINO at static sizes, as benchmark_app -shape
            backend.prepare(feeds)
            load_info.details.update(backend.prepared_details())
            settle = _warm_up(cfg, backend, stage, cancelled)
            device_timed = backend.measures_device_latency

            iterations = cfg.iterations if cfg.iterations or cfg.duration_s else 100
            stage("measure", f"{iterations} iterations" if iterations else
                  f"{cfg.duration_s:g} s")
            load_watch.start()
            if sampler_thread is not None:
                sampler_thread.hold(True)  # its points go out with the loop's own events
            measure_start = time.perf_counter()
            deadline = measure_start + cfg.duration_s if cfg.duration_s else None
            next_emit = measure_start + cfg.emit_period_s
            pending: list[list[float]] = []
            while True:
                a = time.perf_counter_ns()
                backend.run_prepared()
                b = time.perf_counter_ns()
                latencies.append((b - a) / 1e6)
                if device_timed:
                    device_latencies.append(backend.device_latency_ms())
                starts.append(a / 1e9 - t0)
                pending.append([round(a / 1e9 - t0, 5), latencies[-1]])
                n = len(latencies)
                now = b / 1e9
                if iterations and n >= iterations:
                    break
                if deadline is not None and now >= deadline:
                    break
                if now >= next_emit:
                    next_emit = now + cfg.emit_period_s
                    series = sampler_thread.drain() if sampler_thread is not None else {}
                    emit({"event": "samples", "series": {**series, "latency_ms": pending}})
                    pending = []
                    frac = n / iterations if iterations else (now - measure_start) / cfg.duration_s
                    emit({"event": "progress", "frac": round(min(frac, 1.0), 4),
                          "message": f"{n} iterations"})
                    budgets.live(np.asarray(latencies[-200:]), _last_rss(sampler_thread))
                    if cancelled():
                        raise Cancelled
            measure_end = time.perf_counter()
            load = load_watch.stop()
            if sampler_thread is not None:
                sampler_thread.hold(False)
            if pending:
                emit({"event": "samples", "series": {"latency_ms": pending}})
            budgets.live(np.asarray(latencies[-200:]), _last_rss(sampler_thread))
        finally:
            backend.close()
    finally:
        if sampler_thread is not None:
            sampler_thread.stop()

    layers: list[dict[str, Any]] = []
    layer_run_ms: tuple[float, str, str] | None = None
    if cfg.layers:
        stage("layers", f"per-layer profile, {cfg.layer_iterations} iterations (separate run)")
        layers, layer_run_ms = _layer_run(cfg, graph.meta.format, node_ids, cancelled, feeds)
        for row in layers:
            emit({"event": "layer", **row})

    stats = latency_stats(np.asarray(latencies))
    threads_used = load_info.details.get("threads") or options.threads
    stability = verdict(np.asarray(latencies), cv=stats.cv, spikes=stats.spikes,
                        threads=_as_int(threads_used) or usable_cpus(),
                        spinning=load_info.details.get("spinning"), load=load,
                        state=state_before, settled_at=settle.settled_at, warmup_asked=cfg.warmup)
    stability["warmup_iterations"] = len(settle.values)
    stability["warmup_rule"] = settle.rule
    wall_s = measure_end - measure_start
    rel_start, rel_end = measure_start - t0, measure_end - t0
    timelines: dict[str, Any] = {"latency_ms": {"t_s": starts, "values": latencies,
                                                "unit": "ms", "source": "perf_counter_ns"}}
    resources: dict[str, Any] = {}
    if sampler_thread is not None:
        for name, tl in sampler_thread.timelines.items():
            timelines[name] = {"t_s": tl.t_s, "values": tl.values, "unit": tl.unit,
                               "source": tl.source, "note": tl.note}
            resources[name] = _summarise_timeline(tl, rel_start, rel_end)
    power = headline_power(resources)
    mean_w = power["mean"] if power else None
    energy = mean_w * wall_s / len(latencies) if mean_w is not None else None
    rss_peak = max(peak_rss_mb(), (resources.get("rss_mb") or {}).get("max") or 0.0)

    summary = analyze(_graph_at(graph, cfg, workload), keep_nodes=False)
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "status": "ok",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": cfg.backend,
        "device": cfg.device,
        # what the runtime reports it used, else what was asked (None: the runtime's default)
        "threads": threads_used,
        "threads_choice": thread_choice,
        "model": {"path": cfg.model, "format": graph.meta.format, "sha256": graph.meta.sha256,
                  "file_size": graph.meta.file_size, "nodes": summary.node_count,
                  "params": summary.params, "macs": summary.macs, "flops": summary.flops},
        "config": cfg.to_dict(),
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in feeds.items()},
        "inputs_source": cfg.inputs_npz or f"generated (seed {cfg.seed})",
        "workload": workload.to_dict(),
        "environment": {**environment(), **state_before, "load_before": state_before["loadavg"],
                        "load_during": load,
                        "frequency_mhz_after": machine_state()["frequency_mhz"]},
        "load_ms": load_info.load_ms,
        "runtime": load_info.details,
        "first_inference_ms": first_ms,
        "latency_ms": {**stats.to_dict(), **latency_intervals(np.asarray(latencies))},
        "latency_device_ms": _device_summary(device_latencies, backend.device_latency_source),
        "stability": stability,
        "throughput_ips": len(latencies) / wall_s if wall_s > 0 else None,
        "iterations": len(latencies),
        "measure_s": wall_s,
        "memory": {"rss_peak_mb": rss_peak,
                   "rss_mean_mb": (resources.get("rss_mb") or {}).get("mean")},
        "cpu": {"mean_percent": (resources.get("cpu_percent") or {}).get("mean")},
        "power": {"source": power["source"] if power else None,
                  "note": power["note"] if power else "samplers off",
                  "mean_w": mean_w, "energy_per_inference_j": energy,
                  "inferences_per_joule": 1.0 / energy if energy else None},
        "gpu": {k: resources[k] for k in ("gpu_mem_mb", "gpu_power_w") if k in resources},
        "sampling": ({"period_s": cfg.sample_period_s, "ticks": sampler_thread.ticks,
                      "busy_s": sampler_thread.busy_s, "cpu_s": sampler_thread.cpu_s,
                      "cpu_fraction": sampler_thread.cpu_s / max(time.perf_counter() - t0, 1e-9),
                      "busy_fraction": sampler_thread.busy_s / max(time.perf_counter() - t0, 1e-9)}
                     if sampler_thread else None),
        "timelines": timelines,
        "spikes": [i for i, s in enumerate(_spikes(latencies)) if s],
        "layers": layers,
        "layers_summary": _layers_summary(layers, layer_run_ms, stats.p50),
        "errors": [],
    }
    report["budgets"] = budgets.final({
        "p50": stats.p50, "p90": stats.p90, "p95": stats.p95, "p99": stats.p99,
        "p999": stats.p999, "mean": stats.mean, "max": stats.max, "first": first_ms,
        "rss": rss_peak, "power": mean_w})
    return report


def _refuse_what_cannot_fit(graph: Any, workload: Any) -> None:
    """Refuse before the first inference when the inputs and the constants the model declares
    (a ConstantOfShape of 30000 x 30000, say) already exceed three quarters of this machine."""
    from converters.limits import declared_memory_bytes, human_bytes, physical_memory_bytes

    machine = physical_memory_bytes()
    need = declared_memory_bytes(graph, workload.shapes())
    if need > machine * 3 // 4:
        raise ModelDeckError(
            f"this model would need ~{human_bytes(need)} for these input sizes (inputs and the "
            f"constants it declares), more than this machine's {human_bytes(machine)} can give: "
            "set smaller input sizes")


def headline_power(resources: dict[str, Any]) -> dict[str, Any] | None:
    """The power figure a run reports. On an NVIDIA GPU the board's power measured by NVML
    (energy per inference follows it), with the host's own figure, often an estimate, named
    beside it; elsewhere the host's figure (RAPL or a labelled estimate)."""
    power = resources.get("power_w")
    gpu = resources.get("gpu_power_w")
    if not gpu or gpu.get("mean") is None:
        return power
    host = (f"; host CPU {power['mean']:.1f} W ({power['source']})"
            if power and power.get("mean") is not None else "")
    return {**gpu, "note": f"GPU board power measured by NVML{host}"}


def _sizes_to_open_at(cfg: RunConfig) -> dict[str, list[int]] | None:
    """A trusted TorchScript file learns its shapes by running on example inputs: at the sizes
    set, when set, rather than at the (possibly much larger) example traced into the file."""
    from converters.formats import detect_format

    if not cfg.shapes or detect_format(Path(cfg.model)).name != "torch":
        return None
    return {k: list(v) for k, v in cfg.shapes.items()}


def _graph_at(graph: Any, cfg: RunConfig, workload: Any) -> Any:
    """The graph with the workload's input sizes, so MACs are those of what was measured."""
    from converters.formats import open_model

    declared = {n: (graph.graph.tensors[n].shape if n in graph.graph.tensors else None)
                for n in graph.graph.inputs}
    if all(declared.get(k) == v for k, v in workload.shapes().items()):
        return graph
    try:
        return open_model(cfg.model, input_shapes=workload.shapes())
    except Exception as e:  # the figures fall back to the declared sizes, said in the log
        log.info("re-reading %s at the workload's sizes failed: %s", cfg.model, e)
        return graph


def _last_rss(sampler_thread) -> float | None:
    if sampler_thread is None:
        return None
    values = sampler_thread.timelines["rss_mb"].values
    return values[-1] if values else None


def _node_ids_by_name(graph) -> dict[str, str]:
    """Runtime layer name -> ModelGraph node id. Node names win; a node's first output name is
    a fallback, since runtimes name unnamed nodes after it."""
    ids: dict[str, str] = {}
    items = list(graph.walk())
    for item in items:
        if item.node.outputs and item.node.outputs[0]:
            ids.setdefault(item.node.outputs[0], item.node.id)
    for item in items:
        ids[item.node.name] = item.node.id
    return ids


def _spikes(latencies: list[float]) -> np.ndarray:
    from profilers.stats import spike_mask

    return spike_mask(np.asarray(latencies))


def _layer_run(cfg: RunConfig, fmt: str, node_ids: dict[str, str],
               cancelled: Callable[[], bool], feeds: dict[str, np.ndarray]
               ) -> tuple[list[dict[str, Any]], tuple[float, str, str] | None]:
    """Per-layer times and the end-to-end time of the same profiled iterations, summarised
    the way the backend summarises its layers (mean or median), so their sum can be reconciled
    with it."""
    options, _ = _default_threads(BackendOptions(**{**asdict(cfg.options),
                                                    "profile_layers": True}))
    backend, _ = _load_backend(cfg, fmt, options)
    try:
        backend.fix_shapes(feeds)  # the same static-size compilation as the clean run
        backend.infer(feeds)  # warm-up: compilation and first allocations stay out of the table
        backend.reset_layer_profile()
        times = []
        for _ in range(cfg.layer_iterations):
            if cancelled():
                raise Cancelled
            a = time.perf_counter_ns()
            backend.infer(feeds)
            host_ms = (time.perf_counter_ns() - a) / 1e6
            # the runtime's own time leaves out reading the profile back after each request
            device_ms = backend.device_latency_ms() if backend.measures_device_latency else None
            times.append(device_ms if device_ms is not None else host_ms)
        stat = np.median if backend.layer_statistic == "median" else np.mean
        rows = [asdict(lt) for lt in backend.layer_profile(node_ids)]
        own = backend.profiled_run_times_ms()  # the runtime's timestamps, where it keeps them
        source = (f"{cfg.backend} profiler timestamps" if own else
                  backend.device_latency_source if backend.measures_device_latency
                  else "host timer")
        times = own or times
        return rows, (float(stat(times)), backend.layer_statistic, source) if times else None
    finally:
        backend.close()


class _Settle:
    """What the warm-up did: iterations, when it settled (None: capped), the rule applied."""

    def __init__(self, values: list[float], settled_at: int | None, rule: str):
        self.values, self.settled_at, self.rule = values, settled_at, rule


def _warm_up(cfg: RunConfig, backend: Backend,
             stage: Callable[[str, str], None], cancelled: Callable[[], bool]) -> _Settle:
    """Warm up until the latency has settled (SettleDetector's rule), at least cfg.warmup
    iterations, at most 20 windows or cfg.warmup_max_s."""
    if cfg.warmup == 0:
        stage("warmup", "no warm-up (asked for none)")
        return _Settle([], None, "none asked")
    deadline = time.perf_counter() + cfg.warmup_max_s

    def one() -> float:
        if cancelled():
            raise Cancelled
        a = time.perf_counter_ns()
        backend.run_prepared()
        return (time.perf_counter_ns() - a) / 1e6

    # the window is sized from a few warm-up iterations (the first inference is not typical)
    probe = [one() for _ in range(min(5, cfg.warmup))]
    window = settle_window(float(np.median(probe)))
    det = SettleDetector(window=window, min_iterations=cfg.warmup, cap=20 * window)
    rule = (f"at least {cfg.warmup} iterations, then until the median of {window} iterations "
            f"is within {det.tolerance:.0%} of the previous {window}; cap {det.cap} iterations "
            f"or {cfg.warmup_max_s:g} s")
    stage("warmup", f"until settled ({rule})")
    done = False
    for v in probe:
        done = det.add(v)
    while not done:
        done = det.add(one())
        if time.perf_counter() >= deadline and len(det.values) >= cfg.warmup:
            break
    return _Settle(det.values, det.settled_at, rule)


def _default_threads(options: BackendOptions) -> tuple[BackendOptions, str]:
    """Threads the run uses when none were asked, so the default never oversubscribes the
    cores: on a machine with few cores (FEW_CORES), one fewer than the usable cores (the
    samplers, the window and the OS keep one: a runtime's pool on every core of a 2-core
    machine turned a 0.12 ms p50 into a 17.8 ms p99); where this process is pinned to fewer
    CPUs than the runtime's default would start, one per usable CPU; else the runtime's
    default. The choice is said in the report."""
    import dataclasses

    import psutil

    from profilers.stability import FEW_CORES

    if options.threads is not None:
        return options, f"{options.threads} (asked)"
    usable = usable_cpus()
    physical = psutil.cpu_count(logical=False) or usable
    if usable <= FEW_CORES:
        n = max(1, min(usable, physical) - 1)
        return (dataclasses.replace(options, threads=n),
                f"{n}: one fewer than the {usable} usable cores, which the samplers, the window "
                "and the OS share (few cores)")
    if usable < physical:
        return (dataclasses.replace(options, threads=usable),
                f"{usable}: one per CPU this process may use (pinned to {usable} of {physical})")
    return options, f"runtime default ({physical} physical cores)"


def _as_int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _device_summary(values: list[float | None], source: str) -> dict[str, Any] | None:
    """The runtime's own per-request latency (OpenVINO measures it in C++ around the request),
    summarised like the host-side one; None when the runtime does not measure it."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None
    s = latency_stats(v)
    return {"p50": s.p50, "p90": s.p90, "p99": s.p99, "mean": s.mean, "min": s.min,
            "max": s.max, "cv": s.cv, "count": s.count, **latency_intervals(v),
            "source": source}


def _layers_summary(layers: list[dict[str, Any]], layer_run: tuple[float, str, str] | None,
                    p50_ms: float) -> dict[str, Any] | None:
    """The per-layer sum against the end-to-end time of the same profiled run: what the layer
    table does not account for (framework overhead, copies, layers the runtime does not time),
    and against the clean run's p50 (profiling itself slows a run)."""
    if not layers:
        return None
    total = float(sum(row["time_ms"] for row in layers))
    layer_run_ms, statistic, source = layer_run if layer_run else (None, None, None)
    out: dict[str, Any] = {"sum_ms": total, "profiled_run_ms": layer_run_ms,
                           "statistic": statistic, "source": source, "clean_p50_ms": p50_ms}
    if layer_run_ms is not None:
        out["unaccounted_ms"] = layer_run_ms - total
        out["unaccounted_fraction"] = ((layer_run_ms - total) / layer_run_ms
                                       if layer_run_ms else None)
    return out
