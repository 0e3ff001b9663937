"""`optimize`: the fastest (or smallest) variant of a model that keeps its accuracy, measured here.

Stages, cheapest first, each able to stop with the best so far (cancel, time budget):
1. probe the machine and predict whether INT8 pays here (before any pass runs);
2. the baseline: FP32 on ONNX Runtime at the search's threads, evaluated on the whole set;
3. screen every candidate: build (cached), evaluate on a subset, a few interleaved latency
   rounds against the baseline; reject what is clearly worse (accuracy drop whose interval lies
   above the budget, slower than the baseline with its whole interval);
4. accuracy-aware fallback when INT8 misses the budget: rank layers by sensitivity (leave one
   out: how much the output recovers when that layer alone stays float) and keep the most
   sensitive ones in float, one more at a time, until the budget is met;
5. threads: the survivors are timed at the other thread counts (1 and the usable cores by
   default), each against the baseline at the same count; not evaluated again, since threads
   change speed, not accuracy;
6. successive halving: of the better half of the survivors, those whose latency interval
   reaches the leader's get the whole evaluation set and more rounds; a verdict "meets the
   budget" needs the accuracy drop's upper bound within it;
6b. objective throughput only (app/optimize/throughput.py): the survivors the full stage kept,
   and FP32 itself, served at streams × batch, samples/s against the baseline served the same;
   the survivor that serves best is judged on the whole set before it may win;
7. the winner is measured once more, interleaved with the baseline at its threads (its
   full-stage rounds count toward this), for the reported speedup (samples/s at its serving
   under the throughput objective).

Candidates of one stage are timed together: interleaved rounds with one baseline slot per
thread count, not one baseline per candidate.

`measure_job` is the seam for remote targets: one candidate's measurement given its model file
and run config; a target that runs workers elsewhere replaces it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.optimize import candidates as cands
from app.optimize.cache import Cache, key_of
from app.optimize.candidates import Candidate
from app.optimize import energy
from app.optimize.energy import EnergyMeter
from app.optimize.honest import (
    Interval, interleaved_rounds, median_interval, paired_accuracy_drop, paired_agreement,
    speedup_interval,
)
from app.optimize.probe import (
    check_prediction, conv_profile, graph_at_run_sizes, predict_int8, probe_machine,
)
from converters.errors import Cancelled, ModelDeckError

log = logging.getLogger(__name__)
SCHEMA = "modeldeck.optimize/1"
Emit = Callable[[dict[str, Any]], None]
OBJECTIVES = ("latency", "throughput", "size", "energy")
# how measurements are taken (interleaving, rounds): a change here invalidates cached figures
MEASURE_VERSION = 6


@dataclass(frozen=True)
class OptimizeSpec:
    model: str
    output_dir: str
    eval: str | None = None  # labelled .npz: accuracy drop is the constraint
    calib: str | None = None  # calibration inputs for static INT8
    max_drop: float = 0.01  # accuracy points (fraction) the variant may lose
    min_cosine: float | None = None  # fidelity floor; without labels it defaults to 0.99
    objective: str = "latency"
    backends: tuple[str, ...] = ()
    threads: int | None = 1  # the baseline's (reference) threads
    # thread counts every candidate may run at, each against a baseline at the same count
    # (None: 1 and the usable cores when `threads` is 1 or unset, else `threads` alone)
    thread_choices: tuple[int, ...] | None = None
    time_budget_s: float = 900.0
    subset: int = 128  # samples for the screening stage
    screen_rounds: int = 4
    full_rounds: int = 8
    final_rounds: int = 30
    round_ms: float = 150.0  # time per runner per round (iterations follow from the latency)
    min_iterations: int = 10  # per runner per round, however slow the model
    sensitivity_layers: int = 8  # heaviest quantized layers ranked by leave-one-out
    # calibration samples for the search's INT8 builds (0: all the pass takes, up to 300).
    # A survivor is not built again for the full stage: the build is judged on the whole
    # evaluation set, and only one that then misses the budget is rebuilt on all the samples
    # (before any other remedy). The exhaustive sweep calibrates every candidate on all
    screen_calibration: int = 64
    only: tuple[str, ...] = ()  # candidate names to try (empty: all)
    exhaustive: bool = False  # every candidate fully measured (the bench's reference sweep)
    cache_dir: str | None = None
    use_cache: bool = True
    trust_code: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ModelDeckError(f"objective must be one of {', '.join(OBJECTIVES)}")
        if not 0 <= self.max_drop < 1:
            raise ModelDeckError("the accuracy budget must be a fraction in [0, 1), e.g. 0.01 "
                                 "for one point")
        if self.min_cosine is not None and not -1 <= self.min_cosine <= 1:
            raise ModelDeckError("the minimum cosine must lie in [-1, 1]")
        if self.threads is not None and self.threads < 1:
            raise ModelDeckError("threads must be at least 1")
        if self.thread_choices is not None and (not self.thread_choices or any(
                t < 1 for t in self.thread_choices)):
            raise ModelDeckError("thread choices must be one or more counts of at least 1")
        if self.time_budget_s <= 0:
            raise ModelDeckError("the time budget must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OptimizeSpec:
        d = dict(d)
        for k in ("backends", "only"):
            d[k] = tuple(d.get(k) or ())
        if d.get("thread_choices") is not None:
            d["thread_choices"] = tuple(d["thread_choices"])
        return cls(**d)


def usable_cores() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def thread_counts(spec: OptimizeSpec) -> tuple[int, ...]:
    """The thread counts candidates run at, the reference (the baseline's) first."""
    if spec.thread_choices:
        first = spec.threads if spec.threads in spec.thread_choices else None
        rest = [t for t in spec.thread_choices if t != first]
        return tuple(dict.fromkeys(([first] if first else []) + rest))
    if spec.threads in (None, 1):
        return tuple(dict.fromkeys((1, usable_cores())))
    return (spec.threads,)


class _Stop(Exception):
    """Cancelled or out of time: finish with the best so far."""


@dataclass
class _Eval:
    outputs: np.ndarray
    pred: np.ndarray | None


@dataclass
class _Run:
    """A loaded variant: one backend instance, reused for evaluation and timing."""

    backend: Any
    feeds1: dict[str, np.ndarray]
    armed: bool = False
    pool_threads: set[int] = field(default_factory=set)  # its own (energy charges them to it)

    def once(self) -> None:
        if not self.armed:  # bound once, after any evaluation (a bound OpenVINO request
            self.backend.prepare(self.feeds1)  # keeps the bound shape)
            self.armed = True
        self.backend.run_prepared()

    def close(self) -> None:
        try:
            self.backend.close()
        except Exception:  # closing is best effort
            pass


@dataclass
class Point:
    """One candidate's figures so far; what the Pareto chart and the JSON show."""

    name: str
    candidate: dict[str, Any]
    stage: str = "planned"  # screen | full | final
    status: str = "planned"  # kept | rejected | failed | best
    reason: str = ""
    path: str | None = None
    format: str | None = None
    size_bytes: int | None = None
    latency_ms: dict[str, float] | None = None
    speedup: dict[str, float] | None = None
    accuracy: float | None = None
    accuracy_drop: dict[str, float] | None = None
    agreement: dict[str, float] | None = None
    cosine: float | None = None
    samples: int | None = None
    meets: bool | None = None
    build_s: float | None = None
    lineage: list[str] = field(default_factory=list)
    cached: bool = False
    # mJ per inference {value, low, high, source, note, rounds, cpu_ms, vs_baseline}
    energy_mj: dict[str, Any] | None = None
    # objective throughput: samples/s {value, low, high, threads, streams, batch, vs_baseline,
    # config_gain, vs_plain, request_latency_ms} (app/optimize/throughput.py)
    throughput: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_job(path: Path, fmt: str, backend: str, precision: str | None, threads: int | None,
                feeds1: dict[str, np.ndarray]) -> _Run:
    """Load one variant for measuring on this machine (the seam a remote target replaces)."""
    from profilers.backends import BackendOptions, get_backend

    cls = get_backend(backend)
    ok, why = cls.available()
    if not ok:
        raise ModelDeckError(f"backend {backend} is not usable here: {why}")
    from app.optimize.energy import session_threads

    b = cls()
    with session_threads(backend) as pool:
        b.load(path, fmt, "CPU", BackendOptions(threads=threads, precision=precision))
    return _Run(b, _match(feeds1, b.input_specs()), pool_threads=pool)


def _match(feeds: dict[str, np.ndarray], specs: list[Any]) -> dict[str, np.ndarray]:
    """Feeds by the runtime's input names (an export may rename 'input' to 'x'): by position
    when the names differ."""
    names = [s.name for s in specs]
    if set(names) <= set(feeds):
        return {n: feeds[n] for n in names}
    if len(names) == len(feeds):
        return dict(zip(names, feeds.values()))
    raise ModelDeckError(f"the variant's inputs {names} do not match the data's "
                         f"{list(feeds)}")


def _predict(run: _Run, feeds: dict[str, np.ndarray], batch: int = 64) -> np.ndarray:
    """The first output for all samples, in batches (a fixed batch: exactly that size)."""
    if run.armed:
        batch = len(next(iter(run.feeds1.values())))  # the bound request keeps its shape
    specs = run.backend.input_specs()
    feeds = _match(feeds, specs)
    n = len(next(iter(feeds.values())))
    first = specs[0].shape[0] if specs[0].shape else None
    step = first if isinstance(first, int) and first > 0 else batch
    parts = []
    for s in range(0, n, step):
        chunk = {k: v[s:s + step] for k, v in feeds.items()}
        real = len(next(iter(chunk.values())))
        if real < step and isinstance(first, int):
            chunk = {k: np.concatenate([v, np.repeat(v[-1:], step - real, axis=0)])
                     for k, v in chunk.items()}
        out = np.asarray(run.backend.infer(chunk)[0])
        parts.append(out[:real])
    return np.concatenate(parts)


def _cosine(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 20) -> float:
    """In float64, a chunk at a time: whole float64 copies of an OCR recogniser's outputs
    (512 lines x 40 steps x 18,710 classes: 1.5 GB as float32) took 6 GB more."""
    a, b = np.ravel(a), np.ravel(b)
    ab = aa = bb = 0.0
    for s in range(0, a.size, chunk):
        x = a[s:s + chunk].astype(np.float64)
        y = b[s:s + chunk].astype(np.float64)
        ab += float(x @ y)
        aa += float(x @ x)
        bb += float(y @ y)
    den = math.sqrt(aa) * math.sqrt(bb)
    return ab / den if den else (1.0 if not aa and not bb else 0.0)


class Search:
    def __init__(self, spec: OptimizeSpec, emit: Emit = lambda e: None,
                 cancelled: Callable[[], bool] = lambda: False):
        self.spec = spec
        self.emit = emit
        self._cancelled = cancelled
        self.t0 = time.monotonic()
        self.points: dict[str, Point] = {}
        self.cands: dict[str, Candidate] = {}
        self.evals: dict[str, _Eval] = {}
        # (name, stage) -> (baseline rounds, candidate rounds): the confirmation reuses them
        self.rounds: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
        # (build key, backend, precision, full?) -> accuracy figures: threads change speed,
        # not accuracy, so a candidate's thread variants reuse one evaluation
        self.acc_figs: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.base_runs: dict[int | None, _Run] = {}
        self.thread_counts: tuple[int | None, ...] = (spec.threads,)
        self.stopped: str | None = None
        self.notes: list[str] = []
        self.sensitivity: list[dict[str, Any]] = []
        self.spent = {"build_s": 0.0, "evaluate_s": 0.0, "time_s": 0.0}  # where time went

    # --- control -----------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def check(self) -> None:
        if self._cancelled():
            self.stopped = "cancelled"
            raise _Stop
        if self.elapsed() > self.spec.time_budget_s:
            self.stopped = "time budget reached"
            raise _Stop

    def _out_of_time(self) -> bool:
        """Cancelled, or past the budget: what a build checks between calibration batches (an
        entropy calibration of PP-OCRv6_rec_small took 102 s of a 90 s budget)."""
        return self._cancelled() or self.elapsed() > self.spec.time_budget_s

    def progress(self, frac: float, msg: str) -> None:
        self.emit({"event": "progress", "frac": round(min(max(frac, 0.0), 1.0), 4),
                   "message": msg})

    def publish(self, p: Point) -> None:
        self.emit({"event": "candidate", "point": p.to_dict()})

    # --- setup -------------------------------------------------------------------------------
    def prepare(self) -> None:
        from converters.formats import detect_format, sha256_of
        from converters.passes import ModelFile

        spec = self.spec
        src = Path(spec.model).expanduser().resolve()
        if not src.is_file():
            raise ModelDeckError(f"{spec.model}: no such model file")
        self.source = ModelFile(src, detect_format(src).name)
        self.source_sha = sha256_of(self.source.files())
        self.emit({"event": "stage", "stage": "probe", "message": "reading this machine"})
        self.probe = probe_machine()
        try:
            self.model_profile = conv_profile(graph_at_run_sizes(src, self.source.format))
        except Exception as e:  # the prediction then rests on the ISA alone
            log.info("no MAC profile: %s", e)
            self.model_profile = {}
        self.prediction = predict_int8(self.probe, self.model_profile)
        self.emit({"event": "prediction", "prediction": self.prediction.to_dict(),
                   "probe": self.probe.to_dict()})
        self.cache = Cache(spec.cache_dir, self.probe.fingerprint(), enabled=spec.use_cache)
        self.thread_counts = thread_counts(spec)

        self.emit({"event": "stage", "stage": "data", "message": "evaluation data"})
        from app.optimize.guard import load_data  # checked: NaN, labels, size, pickles

        feeds, labels, self.input_specs, feeds_source, data_notes, self.data_shapes = (
            load_data(self.source, spec))
        self.notes += data_notes
        self.feeds, self.labels, self.feeds_source = feeds, labels, feeds_source
        n = len(next(iter(feeds.values())))
        if n < 2:
            raise ModelDeckError("the evaluation data holds fewer than 2 samples: give more")
        rng = np.random.default_rng(spec.seed)
        k = min(n, max(16, spec.subset))
        self.subset = np.sort(rng.choice(n, k, replace=False))
        self.feeds1 = {name: a[:1] for name, a in feeds.items()}
        self.data_key = key_of(feeds_source, [(k2, a.shape, str(a.dtype),
                                               _digest(a)) for k2, a in feeds.items()],
                               None if labels is None else _digest(labels))
        self.min_cosine = spec.min_cosine if spec.min_cosine is not None else (
            None if labels is not None else 0.99)
        if spec.calib:
            from profilers.verify import load_calibration  # noqa: F401  (checked on use)

            calib_path = Path(spec.calib).expanduser()
            self.calib_key = (_file_digest(calib_path) if calib_path.is_file()
                              else str(spec.calib))
        else:
            self.calib_key = None

    # --- building ----------------------------------------------------------------------------
    def build(self, c: Candidate) -> tuple[Path, str, list[str], bool]:
        """The candidate's model file (cached by recipe), its format, lineage files, cached?"""
        if not c.builds or (not c.passes and not c.convert_first
                            and c.to == self.source.format):  # an IR "to IR": the source
            return self.source.path, self.source.format, [], True
        ac = bool(c.passes) and c.passes[0][0] == cands.ACCURACY_CONTROL
        key = key_of(self.source_sha, c.build_spec(), self.calib_key if c.needs_calibration
                     else None, self.data_key if ac else None)
        hit = self.cache.get_build(key)
        if hit:
            return Path(hit["path"]), hit["format"], hit.get("lineage", []), True
        if ac:
            return self.build_accuracy_control(c, key)
        from app.pipeline import ConvertSpec, StepSpec, run_pipeline

        out_dir = self.cache.build_dir(key) if self.spec.use_cache else (
            Path(self.spec.output_dir) / ".builds" / key)
        model, lineage = self.source.path, []
        if c.convert_first:
            first = dataclasses.replace(c, name=c.name + "-base", passes=(),
                                        to=c.convert_first, convert_first=None,
                                        needs_calibration=False)
            path, _fmt, lin, _ = self.build(first)
            model, lineage = path, list(lin)
        suffix = {"onnx": ".onnx", "openvino": ".xml", "torch": ".pt2"}
        fmt_after = c.to or (self.source.format if not c.convert_first else c.convert_first)
        if fmt_after == "torch" or (c.passes and not c.to and self.source.format == "torch"):
            fmt_after = "onnx"
        out = out_dir / f"{self.source.path.stem}-{c.name}{suffix[fmt_after]}"
        conv = ConvertSpec(model=str(model), output=str(out), to=c.to,
                           passes=tuple(StepSpec(n, dict(o)) for n, o in c.passes),
                           calib=self.spec.calib if c.needs_calibration else None,
                           verify_samples=16, trust_code=self.spec.trust_code,
                           shapes=getattr(self, "data_shapes", {}),  # free dims: the data's
                           measure=False)  # the search evaluates every build itself
        result = run_pipeline(conv, emit=lambda e: None, cancelled=self._out_of_time)
        from converters.passes import ModelFile

        path = Path(result["output"])
        files = [str(p) for p in ModelFile(path, result["format"]).files()]
        lineage.append(result["lineage"])
        self.cache.put_build(key, {"path": str(path), "format": result["format"],
                                   "files": files, "lineage": lineage,
                                   "candidate": c.to_dict()})
        return path, result["format"], lineage, False

    def build_accuracy_control(self, c: Candidate, key: str) -> tuple[Path, str, list[str], bool]:
        """NNCF's quantize_with_accuracy_control on the IR of `c.convert_first`, validated on
        the evaluation data against the constraint the full INT8 missed."""
        from app.optimize.accuracy_control import quantize_with_accuracy_control, write_lineage
        from converters.passes import ModelFile
        from profilers.verify import load_calibration

        first = dataclasses.replace(c, name=c.name + "-base", passes=(), to=c.convert_first,
                                    convert_first=None, needs_calibration=False)
        ir, _fmt, lineage, _ = self.build(first)
        opts = dict(c.passes[0][1])
        calib = load_calibration(self.spec.calib, self.input_specs)
        out_dir = self.cache.build_dir(key) if self.spec.use_cache else (
            Path(self.spec.output_dir) / ".builds" / key)
        out = out_dir / f"{self.source.path.stem}-{c.name}.xml"
        msg = (f"NNCF accuracy control on {c.parent}: returning its most costly quantizers "
               f"to float ({opts['metric']})")
        self.emit({"event": "stage", "stage": "accuracy-control", "message": msg})
        self.progress(0.6, msg)
        details = quantize_with_accuracy_control(
            ir, out, calib.arrays, self.feeds, self.base_eval.outputs, self.labels,
            opts["metric"], float(opts["max_drop"]), cancelled=self._out_of_time)
        lineage = list(lineage) + [str(write_lineage(out_dir / "accuracy-control.json", ir,
                                                     details))]
        files = [str(p) for p in ModelFile(out, "openvino").files()]
        self.cache.put_build(key, {"path": str(out), "format": "openvino", "files": files,
                                   "lineage": lineage, "candidate": c.to_dict(),
                                   "details": details})
        return out, "openvino", lineage, False

    # --- measuring ---------------------------------------------------------------------------
    def evaluate(self, run: _Run, idx: np.ndarray | None) -> _Eval:
        feeds = self.feeds if idx is None else {k: v[idx] for k, v in self.feeds.items()}
        out = _predict(run, feeds)
        pred = out.argmax(axis=-1) if out.ndim == 2 else None  # [N, classes]
        return _Eval(out, pred)

    def iterations_for(self, latency_ms: float) -> int:
        return int(min(400, max(self.spec.min_iterations,
                                self.spec.round_ms / max(latency_ms, 1e-3))))

    def score_key(self, c: Candidate, stage: str) -> str:
        return key_of("score", MEASURE_VERSION, self.source_sha, c.run_key(), c.build_spec(),
                      self.data_key, stage, self.spec.screen_rounds, self.spec.full_rounds,
                      self.spec.round_ms, self.calib_key if c.needs_calibration else None)

    def accuracy(self, c: Candidate, bc: Candidate, p: Point, run: _Run, stage: str) -> None:
        """Accuracy (subset or all) against the baseline's outputs. A thread variant of a
        candidate already evaluated at this stage reuses its figures: threads change speed,
        not accuracy (the same model and kernels' math), so it is not evaluated again."""
        full = stage != "screen"
        twin = (bc.build_key(), c.backend, c.precision, full)
        figs = self.acc_figs.get(twin)
        if figs is not None:
            for k, v in figs.items():
                setattr(p, k, v)
            return
        idx = None if full else self.subset
        t0 = time.monotonic()
        ev = self.evaluate(run, idx)
        self.spent["evaluate_s"] += time.monotonic() - t0
        base = self.base_eval
        ref_out = base.outputs if full else base.outputs[self.subset]
        p.cosine = _cosine(ref_out, ev.outputs)
        p.samples = int(len(ev.outputs))
        if ev.pred is not None:
            ref_pred = base.pred if full else base.pred[self.subset]
            p.agreement = paired_agreement(ref_pred, ev.pred, seed=self.spec.seed).to_dict()
        if self.labels is not None and ev.pred is not None:
            labels = self.labels if full else self.labels[self.subset]
            ref_pred = base.pred if full else base.pred[self.subset]
            p.accuracy = float(np.mean(ev.pred == labels))
            p.accuracy_drop = paired_accuracy_drop(ref_pred == labels, ev.pred == labels,
                                                   seed=self.spec.seed).to_dict()
        self.acc_figs[twin] = {k: getattr(p, k) for k in (
            "cosine", "samples", "agreement", "accuracy", "accuracy_drop")}

    def time_together(self, live: list[tuple[Candidate, Candidate, Point, _Run]], stage: str,
                      conclude: bool = True) -> None:
        """Interleaved rounds of all `live` candidates at once, with one baseline slot per
        thread count (its baseline at the same threads) instead of one baseline per
        candidate: every round times the baseline once for the whole group."""
        rounds = self.spec.full_rounds if stage != "screen" else self.spec.screen_rounds
        iters = self.iterations_for(self.base_latency)
        by_threads: dict[int | None, list[tuple[Candidate, Candidate, Point, _Run]]] = {}
        for item in live:
            by_threads.setdefault(item[0].threads, []).append(item)
        for threads, group in by_threads.items():
            base = self.base_run_at(threads)
            runners = [base] + [item[3] for item in group]
            t0 = time.monotonic()
            for _ in range(2):  # warm-up, not kept
                for r in runners:
                    r.once()
            per: list[list[np.ndarray]] = [[] for _ in runners]
            meter = EnergyMeter.for_runs(runners)  # CPU / energy per block, not per iteration
            try:
                for _ in range(rounds):
                    self.check()
                    got = interleaved_rounds([r.once for r in runners], 1, iters, meter=meter)
                    for i, g in enumerate(got):
                        per[i] += g
            finally:
                self.spent["time_s"] += time.monotonic() - t0
            for i, ((c, bc, p, _run), c_rounds) in enumerate(zip(group, per[1:]), 1):
                p.energy_mj = meter.figures(i, baseline=0, seed=self.spec.seed)
                lat = median_interval(c_rounds, seed=self.spec.seed)
                sp = speedup_interval(per[0], c_rounds, seed=self.spec.seed)
                p.latency_ms = {"p50": lat.value, "low": lat.low, "high": lat.high,
                                "mean": float(np.mean(np.concatenate(c_rounds))),
                                "rounds": len(c_rounds), "iterations": iters,
                                "threads": threads}
                p.speedup = sp.to_dict()
                self.rounds[(p.name, stage)] = (per[0], c_rounds)
                if conclude:
                    self.conclude(p, stage)
                    self.remember(bc, p, stage)

    # figures a cached point restores (the stage and verdict too: a point timed but not
    # evaluated on the whole set keeps its screening verdict)
    REMEMBERED = ("cosine", "samples", "agreement", "accuracy", "accuracy_drop", "latency_ms",
                  "speedup", "energy_mj", "stage", "status", "reason", "meets")

    def remember(self, bc: Candidate, p: Point, stage: str) -> None:
        """The point's figures in the cache under its build, run and stage."""
        self.cache.put(self.score_key(bc, stage), {k: getattr(p, k) for k in self.REMEMBERED})

    def verdict(self, p: Point, final: bool) -> tuple[bool | None, str]:
        """Meets the budget? Only when the interval supports it; else why not."""
        if p.accuracy_drop is not None:
            hi, lo = p.accuracy_drop["high"], p.accuracy_drop["low"]
            if lo > self.spec.max_drop:
                return False, (f"accuracy drop {p.accuracy_drop['value']:.2%} [{lo:.2%}, "
                               f"{hi:.2%}] is above the {self.spec.max_drop:.2%} budget")
            if hi > self.spec.max_drop:
                return (None if not final else False), (
                    f"accuracy drop interval [{lo:.2%}, {hi:.2%}] reaches past the "
                    f"{self.spec.max_drop:.2%} budget on {p.samples} samples")
        if self.min_cosine is not None and p.cosine is not None and p.cosine < self.min_cosine:
            return False, f"cosine {p.cosine:.5f} below {self.min_cosine}"
        return True, ""

    def objective(self, p: Point) -> float:
        """Lower is better."""
        if self.spec.objective == "size":
            return float(p.size_bytes or math.inf)
        if self.spec.objective == "throughput" and p.throughput:  # measured: s per sample
            return 1.0 / max(p.throughput["value"], 1e-9)
        if p.latency_ms is None:
            return math.inf
        if self.spec.objective == "energy":  # mJ per inference (RAPL or CPU-time estimate)
            return energy.objective_value(p)
        return p.latency_ms["p50"] if self.spec.objective == "latency" else (
            1.0 / max(1000.0 / p.latency_ms["mean"], 1e-9))

    # --- stages ------------------------------------------------------------------------------
    def run_candidate(self, c: Candidate, stage: str) -> Point:
        return self.run_candidates([c], stage)[0]

    def run_candidates(self, cs: list[Candidate], stage: str) -> list[Point]:
        """Build, load and evaluate each candidate, then time the ones still in the race
        together (one shared baseline slot per round)."""
        live: list[tuple[Candidate, Candidate, Point, _Run]] = []
        points = []
        try:
            for c in cs:
                p, item = self.prepare_candidate(c, stage)
                points.append(p)
                if item is not None:
                    live.append(item)
            if live:
                self.time_together(live, stage)
        finally:
            for item in live:
                item[3].close()
        return points

    def search_build(self, c: Candidate) -> Candidate:
        """What the search builds for `c`: calibrated on `screen_calibration` samples (the
        same graph, hence the same speed, built faster); the sweep builds `c` itself."""
        if self.spec.exhaustive:
            return c
        return cands.screen_build(c, self.spec.screen_calibration)

    def prepare_candidate(self, c: Candidate, stage: str, evaluate: bool = True
                          ) -> tuple[Point, tuple[Candidate, Candidate, Point, _Run] | None]:
        """Build (cached), load and evaluate `c` (unless not `evaluate`); its run, still open,
        for timing (None when it failed or its figures came from the cache)."""
        p = self.points.get(c.name) or Point(c.name, c.to_dict())
        self.points[c.name] = p
        self.cands[c.name] = c
        self.emit({"event": "stage", "stage": stage, "message": f"{stage}: {c.name}"})
        bc = self.search_build(c)
        t = time.monotonic()
        try:
            path, fmt, lineage, cached = self.build(bc)
            self.spent["build_s"] += time.monotonic() - t
        except _Stop:
            raise
        except Cancelled:
            self.stopped = "cancelled" if self._cancelled() else "time budget reached"
            raise _Stop from None
        except Exception as e:  # a pass that refuses this model rejects the candidate only
            p.status, p.stage, p.reason = "failed", stage, f"build failed: {_short(e)}"
            self.publish(p)
            return p, None
        if not cached:
            p.build_s = round(time.monotonic() - t, 2)
        from converters.passes import ModelFile

        p.path, p.format, p.lineage = str(path), fmt, list(lineage)
        p.size_bytes = ModelFile(path, fmt).size_bytes()
        self.check()
        hit = self.cache.get(self.score_key(bc, stage))
        if hit is not None:
            for k, v in hit.items():
                setattr(p, k, v)
            p.cached = True
            if hit.get("stage", stage) == stage:
                self.conclude(p, stage)
            else:  # timed in the full stage, not needed on the whole evaluation set
                self.publish(p)
            return p, None
        try:
            run = measure_job(path, fmt, c.backend, c.precision, c.threads, self.feeds1)
        except Exception as e:
            p.status, p.stage, p.reason = "failed", stage, f"does not run: {_short(e)}"
            self.publish(p)
            return p, None
        if not evaluate:
            return p, (c, bc, p, run)
        try:
            self.accuracy(c, bc, p, run, stage)
        except _Stop:
            run.close()
            raise
        except Exception as e:
            run.close()
            log.debug("evaluating %s", c.name, exc_info=True)
            p.status, p.stage, p.reason = "failed", stage, f"failed while measured: {_short(e)}"
            self.publish(p)
            return p, None
        # known before timing: a remedy is skipped when its parent already meets the budget.
        # A candidate that misses it is still timed: the fallback starts from the INT8 one
        # that would win on speed, and the chart shows what the budget cost
        p.meets, _why = self.verdict(p, final=stage != "screen")
        return p, (c, bc, p, run)

    def conclude(self, p: Point, stage: str) -> None:
        p.stage = stage
        meets, why = self.verdict(p, final=stage != "screen")
        p.meets = meets
        slower = (self.spec.objective in ("latency", "throughput")
                  and p.speedup is not None and p.speedup["high"] < 1.0)
        costlier = energy.costlier(p) if self.spec.objective == "energy" else None
        if meets is False:
            p.status, p.reason = "rejected", why + (" (subset)" if stage == "screen" else "")
        elif costlier:
            p.status, p.reason = "rejected", costlier
        elif slower:
            p.status = "rejected"
            p.reason = (f"slower than the FP32 baseline: {p.speedup['value']:.2f}× "
                        f"[{p.speedup['low']:.2f}, {p.speedup['high']:.2f}]")
        else:
            p.status, p.reason = "kept", why or "within the budget"
        if len(self.thread_counts) > 1 and p.status == "kept":
            c = self.cands.get(p.name)
            if c is not None:
                p.reason += f" ({c.threads or 'default'} thread(s))"
        p.reason += energy.reason_suffix(p, self.spec.objective)
        self.publish(p)

    @property
    def base_run(self) -> _Run:
        """The baseline's loaded session at the reference threads."""
        return self.base_run_at(self.thread_counts[0])

    def base_run_at(self, threads: int | None) -> _Run:
        """FP32 ONNX Runtime at these threads, opened when something needs timing against it
        (a speedup is always against the baseline at the candidate's own threads)."""
        if threads not in self.base_runs:
            b = self.cands["baseline"]  # ORT; OpenVINO f32 for an IR or TFLite source
            self.base_runs[threads] = measure_job(self.base_path, self.base_format,
                                                  b.backend, b.precision, threads, self.feeds1)
        return self.base_runs[threads]

    def baseline(self) -> None:
        self.emit({"event": "stage", "stage": "baseline", "message": "FP32 baseline"})
        src = self.source
        if src.format == "torch":  # the baseline is FP32 ONNX Runtime on the ONNX export
            base_c = Candidate("baseline", "fp32", "onnxruntime", to="onnx",
                               threads=self.thread_counts[0])
            path, fmt, _lin, _ = self.build(base_c)
        elif src.format not in ("onnx", "torch"):  # an IR or TFLite model: ORT cannot run
            # it and nothing here converts it to ONNX, so FP32 OpenVINO is the reference
            base_c = Candidate("baseline", "fp32", "openvino", precision="f32",
                               threads=self.thread_counts[0])
            path, fmt = src.path, src.format
        else:
            base_c = Candidate("baseline", "fp32", "onnxruntime", threads=self.thread_counts[0])
            path, fmt = src.path, src.format
        self.base_path, self.base_format = path, fmt
        self.cands["baseline"] = base_c
        key = key_of("baseline", MEASURE_VERSION, self.source_sha, self.data_key, self.thread_counts[0],
                     self.spec.screen_rounds, self.spec.round_ms)
        hit = self.cache.get(key)
        outputs_file = self.cache.root / "runs" / self.cache.fingerprint / f"{key}.npy"
        outputs = self.cache.read_array(outputs_file) if hit is not None else None
        if outputs is not None:  # missing or damaged: measured again
            self.base_eval = _Eval(outputs, outputs.argmax(axis=-1) if outputs.ndim == 2
                                   else None)
            p = Point(**{**hit, "cached": True})
            self.base_latency = p.latency_ms["p50"]
            self.points["baseline"] = p
            self.publish(p)
            return
        # the reference outputs come from the widest baseline session (the same outputs at
        # any thread count; it is opened for the thread variants' timing anyway)
        widest = max(self.thread_counts, key=lambda t: t or 1 << 20)
        self.base_eval = self.evaluate(self.base_run_at(widest), None)
        for _ in range(3):
            self.base_run.once()
        t = time.perf_counter()
        for _ in range(5):
            self.base_run.once()
        self.base_latency = (time.perf_counter() - t) / 5 * 1000
        from converters.passes import ModelFile

        p = Point("baseline", base_c.to_dict(), stage="full", status="kept",
                  reason=("FP32 ONNX Runtime" if base_c.backend == "onnxruntime" else
                          "FP32 OpenVINO (ONNX Runtime cannot run this format)")
                  + ", the reference", path=str(path), format=fmt,
                  size_bytes=ModelFile(path, fmt).size_bytes(), cosine=1.0,
                  samples=int(len(self.base_eval.outputs)), meets=True)
        if self.labels is not None and self.base_eval.pred is not None:
            p.accuracy = float(np.mean(self.base_eval.pred == self.labels))
            p.accuracy_drop = {"value": 0.0, "low": 0.0, "high": 0.0}
        iters = self.iterations_for(self.base_latency)
        meter = EnergyMeter.for_runs([self.base_run])
        rounds = interleaved_rounds([self.base_run.once], self.spec.screen_rounds, iters,
                                    meter=meter)[0]
        p.energy_mj = meter.figures(0, seed=self.spec.seed)
        lat = median_interval(rounds, seed=self.spec.seed)
        p.latency_ms = {"p50": lat.value, "low": lat.low, "high": lat.high,
                        "mean": float(np.mean(np.concatenate(rounds))), "rounds": len(rounds),
                        "iterations": iters}
        p.speedup = {"value": 1.0, "low": 1.0, "high": 1.0}
        self.base_latency = lat.value
        self.points["baseline"] = p
        self.cache.put(key, p.to_dict())
        if self.cache.enabled:
            outputs_file.parent.mkdir(parents=True, exist_ok=True)
            np.save(outputs_file, self.base_eval.outputs)
        self.publish(p)

    def fallback(self, parent: Candidate) -> Point | None:
        """Keep the most sensitive layers of `parent` in float until the budget is met."""
        if self.search_build(parent) != parent:  # first: its ranges from all the samples
            c = cands.all_calibration(parent)
            self.cands[c.name] = c
            last = self.run_candidate(c, "screen")
            if last.status == "kept":
                last = self.run_candidate(c, "full")
                if last.meets:
                    return last
        if parent.backend == "openvino" and parent.convert_first == "openvino":
            return self.fallback_nncf(parent)
        ranking = self.rank_layers(parent)
        if not ranking:
            return None
        names = [r["node"] for r in ranking]
        sizes = sorted({min(2 ** i, len(names)) for i in range(len(names).bit_length() + 1)})
        last: Point | None = None
        for k in sizes:
            self.check()
            c = cands.mixed(parent, tuple(names[:k]))
            last = self.run_candidate(c, "screen")
            if last.status == "kept":
                last = self.run_candidate(c, "full")
                if last.meets:
                    return last
        return last

    def fallback_nncf(self, parent: Candidate) -> Point | None:
        """NNCF on the OpenVINO IR: its accuracy control returns the quantizers that cost the
        most to float until the missed constraint is met on the evaluation data. NNCF's target
        is a point estimate, so it gets half the accuracy budget (room for the interval the
        verdict asks for) or 90 % of the cosine margin."""
        p = self.points.get(parent.name)
        metric = ("cosine" if self.labels is None or (p is not None and "cosine" in p.reason)
                  else "accuracy")
        if metric == "cosine":
            if self.min_cosine is None:
                return None
            max_drop = round((1.0 - self.min_cosine) * 0.9, 8)
        else:
            max_drop = round(self.spec.max_drop / 2, 8)
        c = cands.accuracy_controlled(parent, metric, max_drop)
        self.cands[c.name] = c
        return self.run_candidate(c, "full")

    def rank_layers(self, parent: Candidate) -> list[dict[str, Any]]:
        """Leave-one-out sensitivity of the heaviest quantizable layers: the fidelity the model
        regains when that layer alone stays float (ranked, most sensitive first)."""
        from converters.analysis import analyze
        from converters.formats import open_model

        self.emit({"event": "stage", "stage": "sensitivity",
                   "message": f"ranking layers of {parent.name} by sensitivity"})
        graph = open_model(self.source.path if self.source.format != "torch" else self.base_path)
        costs = {c.node_id: int(c.macs or 0) for c in analyze(graph).nodes}
        layers = [(costs.get(it.node.id, 0), it.node.name) for it in graph.walk()
                  if it.node.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose")
                  and it.node.name]
        layers = sorted(layers, reverse=True)[:self.spec.sensitivity_layers]
        full = self.points.get(parent.name)
        base_cos = full.cosine if full and full.cosine is not None else None
        ranking = []
        for macs, name in layers:
            self.check()
            c = cands.mixed(parent, (name,))
            c = dataclasses.replace(c, name=f"{parent.name}-loo-{len(ranking)}")
            try:
                path, fmt, _lin, _ = self.build(c)
                run = measure_job(path, fmt, c.backend, c.precision, c.threads, self.feeds1)
            except _Stop:
                raise
            except Exception as e:
                log.info("sensitivity of %s: %s", name, e)
                continue
            try:
                ev = self.evaluate(run, self.subset)
            finally:
                run.close()
            cos = _cosine(self.base_eval.outputs[self.subset], ev.outputs)
            agree = (float(np.mean(ev.pred == self.base_eval.pred[self.subset]))
                     if ev.pred is not None else None)
            ranking.append({"node": name, "macs": macs, "cosine_if_float": cos,
                            "agreement_if_float": agree,
                            "gain": None if base_cos is None else cos - base_cos})
        ranking.sort(key=lambda r: (-(r["agreement_if_float"] or 0), -r["cosine_if_float"]))
        self.sensitivity = ranking
        self.emit({"event": "sensitivity", "parent": parent.name, "ranking": ranking})
        return ranking

    # --- the whole search --------------------------------------------------------------------
    def with_lowrank(self, todo: list[Candidate]) -> list[Candidate]:
        """`todo` with low-rank variants where Gemm/MatMul carry most MACs, before the costly
        candidates (app/optimize/lowrank_plan.py); the note says why they were or were not
        generated."""
        from app.optimize.lowrank_plan import cheap_first, lowrank_candidates

        extra, note = lowrank_candidates(
            self.model_profile, self.source.format, self.probe, backends=self.spec.backends,
            threads=self.thread_counts[0], has_calibration=bool(self.spec.calib))
        if not extra or not self.spec.only or {c.name for c in extra} & set(self.spec.only):
            self.notes.append(note)
        return cheap_first(todo, extra)

    def run(self) -> dict[str, Any]:
        self.prepare()
        todo = cands.generate(
            self.source.format, self.probe,
            self.prediction, backends=self.spec.backends or (
                () if self.source.format in ("onnx", "torch") else ("openvino",)),
            threads=self.thread_counts[0],
            has_calibration=bool(self.spec.calib), objective=self.spec.objective,
            exhaustive=self.spec.exhaustive)
        todo = self.with_lowrank(todo)
        if self.spec.only:
            unknown = set(self.spec.only) - {c.name for c in todo}
            if unknown:
                raise ModelDeckError(f"unknown candidate(s) {sorted(unknown)}; candidates "
                                     f"here: {', '.join(c.name for c in todo)}")
            todo = [c for c in todo if c.name in self.spec.only]
        if not self.spec.calib:
            self.notes.append("no calibration data: static INT8 candidates were not tried")
        from app.optimize.guard import baseline_failure, check_labels_fit
        from profilers.backends import BackendError

        try:
            self.baseline()
        except BackendError as e:  # on the user's data: the data does not fit the model
            if not (self.spec.eval or self.spec.calib):
                raise
            raise baseline_failure(e, self.feeds_source) from None
        check_labels_fit(self.labels, self.base_eval.outputs, self.feeds_source)
        for c in todo:
            self.points[c.name] = Point(c.name, c.to_dict())
        self.planned = todo
        from converters.passes.int8_static import shared_calibration

        try:
            try:
                with shared_calibration():  # INT8 variants of one model calibrate once
                    self._search(todo)
            except _Stop:
                log.info("search stopped: %s", self.stopped)
            return self.finish()
        finally:
            for r in self.base_runs.values():
                r.close()

    def thread_variants(self, cs: list[Candidate]) -> list[Candidate]:
        """`cs` at every other thread count (the same build: threads are a run option)."""
        out = []
        for c in cs:
            for t in self.thread_counts[1:]:
                v = dataclasses.replace(c, name=f"{c.name}-{t}t", threads=t, remedy_for=(
                    f"{c.remedy_for}-{t}t" if c.remedy_for else None))
                self.cands[v.name] = v
                self.points.setdefault(v.name, Point(v.name, v.to_dict()))
                out.append(v)
        return out

    def _search(self, todo: list[Candidate]) -> None:
        screen_stage = "full" if self.spec.exhaustive else "screen"
        if self.spec.exhaustive:  # the sweep: every candidate at every thread count
            todo = todo + self.thread_variants(todo)
        pending: list[tuple[Candidate, Candidate, Point, _Run]] = []

        def flush() -> None:
            try:
                if pending:
                    self.time_together(pending, screen_stage)
            finally:
                for item in pending:
                    item[3].close()
                pending.clear()

        try:
            for i, c in enumerate(todo):
                self.check()
                base = self.points.get(c.remedy_for or "")
                if pending and base is not None and not self.spec.exhaustive:
                    # a remedy's build can be long (entropy calibration of the OCR models:
                    # 53-102 s): its parent is timed first, and decides whether it is needed
                    flush()
                    self.check()
                if not self.spec.exhaustive and base is not None and base.meets:
                    p = self.points[c.name]
                    p.status = "skipped"
                    p.reason = (f"not needed: {base.name} already meets the budget (another "
                                "calibration method changes accuracy, not speed)")
                    self.publish(p)
                    continue
                if (not self.spec.exhaustive and base is not None and base.speedup
                        and self.spec.objective == "latency" and base.speedup["high"] < 1.0):
                    p = self.points[c.name]
                    p.status = "skipped"
                    p.reason = (f"not needed: {base.name} is slower than the baseline "
                                f"({base.speedup['value']:.2f}× [{base.speedup['low']:.2f}, "
                                f"{base.speedup['high']:.2f}]), and another calibration method "
                                "changes accuracy, not speed")
                    self.publish(p)
                    continue
                slow = self.remedy_too_slow(c, base)
                if slow:
                    p = self.points[c.name]
                    p.status, p.reason = "skipped", slow
                    self.publish(p)
                    continue
                if (not self.spec.exhaustive
                        and cands.ceiling(c.family, self.probe) is not None
                        and any(cands.ceiling(q[0].family, self.probe) is None
                                for q in pending)):
                    flush()  # its family's ceiling is judged against measured speedups
                    self.check()
                why = None if self.spec.exhaustive else self.cannot_win(c)
                if why:
                    p = self.points[c.name]
                    p.status, p.reason = "skipped", why
                    self.publish(p)
                    continue
                if pending and self.elapsed() > self.spec.time_budget_s / 4:
                    # time what is built while there is time: a stop discards candidates
                    # built and evaluated but not yet timed (a 17 ms OCR model's 90 s search
                    # ended with seven evaluated and none timed; another spent its budget in
                    # a remedy's entropy calibration with two INT8 builds waiting untimed)
                    flush()
                    self.check()
                self.progress(0.1 + 0.5 * i / max(len(todo), 1), f"screening {c.name}")
                _p, item = self.prepare_candidate(c, screen_stage)
                if item is not None:
                    pending.append(item)
            flush()
        finally:
            flush()
        self.fallback_if_needed(stage_done=screen_stage)
        if not self.spec.exhaustive:
            survivors = [p for p in self.points.values()
                         if p.status == "kept" and p.name != "baseline" and p.stage == "screen"]
            # only what survived screening is timed at the other thread counts; their
            # accuracy is not evaluated again (threads change speed, not accuracy)
            if len(self.thread_counts) > 1:
                self.run_candidates(self.thread_variants(
                    [self.cands[p.name] for p in survivors]), "screen")
            survivors = sorted((p for p in self.points.values()
                                if p.status == "kept" and p.name != "baseline"
                                and p.stage == "screen"), key=self.objective)
            keep = survivors[:max(2, math.ceil(len(survivors) / 2))]
            # of the better half, only those that may still be the best go on: a candidate
            # whose latency interval lies wholly above the leader's is clearly slower
            lead = keep[0] if keep else None
            if (lead is not None and lead.latency_ms
                    and self.spec.objective in ("latency", "energy")):
                def bounds(p: Point) -> tuple[float, float]:
                    if self.spec.objective == "energy":  # its own interval, mJ
                        return energy.objective_bounds(p) or (math.inf, math.inf)
                    scale = self.objective(p) / p.latency_ms["p50"]
                    return p.latency_ms["low"] * scale, p.latency_ms["high"] * scale

                top = bounds(lead)[1]
                keep = [keep[0]] + [p for p in keep[1:] if bounds(p)[0] <= top]
                keep = survivors[:max(2, len(keep))]
            for p in survivors[len(keep):]:
                p.reason = (f"screened out: {self.spec.objective} behind the better half "
                            f"({self.objective(p):.4g} vs {self.objective(keep[-1]):.4g})"
                            if self.objective(p) > self.objective(survivors[
                                max(math.ceil(len(survivors) / 2) - 1, 0)])
                            else energy.clearly_behind(p, keep[0])
                            if self.spec.objective == "energy" and p.energy_mj
                            and keep[0].energy_mj
                            else f"screened out: clearly slower than {keep[0].name} "
                                 f"(interval {p.latency_ms['low']:.4g}–"
                                 f"{p.latency_ms['high']:.4g} ms, above its "
                                 f"{keep[0].latency_ms['high']:.4g} ms)")
                p.status = "rejected"
                self.publish(p)
            self.check()
            self.progress(0.65, "full stage: " + ", ".join(p.name for p in keep))
            self.full_stage([self.cands[p.name] for p in keep])
            self.fallback_if_needed(stage_done="full")
        if self.spec.objective == "throughput":
            self.throughput_stage()

    def throughput_stage(self) -> None:
        """Objective throughput: the finalists and FP32 ONNX Runtime itself served at streams
        × batch (app/optimize/throughput.py); not evaluated again (they change speed, not the
        math). Skipped for the other objectives: at batch 1 one request at a time is it."""
        from app.optimize.throughput import ThroughputStage

        self.tp = ThroughputStage(self)
        self.tp.run()

    def full_stage(self, cs: list[Candidate]) -> None:
        """The survivors timed together with the full rounds, then judged on the whole
        evaluation set fastest first until one meets the budget. Those slower than it need not
        be (sequential testing: whatever they scored, they cannot win); they keep their
        screening accuracy and say so."""
        live: list[tuple[Candidate, Candidate, Point, _Run]] = []
        try:
            for c in cs:
                _p, item = self.prepare_candidate(c, "full", evaluate=False)
                if item is not None:
                    live.append(item)
            if live:
                self.time_together(live, "full", conclude=False)
            pending = {item[2].name: item for item in live}
            winner: Point | None = None
            for p in sorted((self.points[c.name] for c in cs), key=self.objective):
                item = pending.get(p.name)
                if item is None:  # failed, or its figures and verdict came from the cache
                    if winner is None and p.stage == "full" and p.meets and p.status == "kept":
                        winner = p
                    continue
                c, bc, _p, run = item
                if winner is not None:
                    p.reason = (f"{energy.worse_word(self.spec.objective)} than "
                                f"{winner.name}, which meets the budget on the "
                                "whole evaluation set: not evaluated on it (accuracy from "
                                "screening)")
                    self.remember(bc, p, "full")  # its stage says: not evaluated
                    self.publish(p)
                    continue
                self.check()
                self.accuracy(c, bc, p, run, "full")
                self.conclude(p, "full")
                self.remember(bc, p, "full")
                if p.meets and p.status == "kept":
                    winner = p
        finally:
            for item in live:
                item[3].close()

    # a histogram calibration (entropy, percentile) costs this many times the min-max build of
    # the same model, or more (VGG sample: entropy 13 s, percentile 5.6 s, min-max 0.6-1.9 s;
    # ORT's entropy step does not check cancel, so a late start overran a budget by ~60 s)
    HISTOGRAM_COST = 10.0

    def remedy_too_slow(self, c: Candidate, parent: Point | None) -> str | None:
        """Why a histogram-calibrated remedy is not started: the time left is less than its
        likely build time (estimated from its parent's min-max build)."""
        if self.spec.exhaustive or parent is None or not parent.build_s:
            return None
        methods = {dict(o).get("method") for n, o in c.passes if n == "int8-static"}
        if not methods & {"entropy", "percentile"}:
            return None
        need = self.HISTOGRAM_COST * parent.build_s
        left = self.spec.time_budget_s - self.elapsed()
        if left >= need:
            return None
        return (f"not started: its histogram calibration would take ~{need:.0f} s "
                f"({self.HISTOGRAM_COST:g}× {parent.name}'s build), and {max(left, 0):.0f} s of "
                "the time budget are left")

    def cannot_win(self, c: Candidate) -> str | None:
        """Why `c` need not be built: the best variant so far is already faster than `c`'s
        family can be on this CPU (its ceiling over FP32), by the lower end of its interval."""
        if self.spec.objective not in ("latency", "throughput", "energy"):
            return None
        ceiling = cands.ceiling(c.family, self.probe)
        if ceiling is None:
            return None
        ok = [p for p in self.points.values() if p.meets and p.status == "kept" and p.speedup
              and p.name != "baseline" and p.name in self.cands
              and self.cands[p.name].threads == c.threads]  # speedups at the same threads
        if not ok:
            return None
        best = max(ok, key=lambda p: p.speedup["low"])
        if best.speedup["low"] <= ceiling:
            return None
        return (f"cannot beat {best.name} ({best.speedup['value']:.2f}×, at least "
                f"{best.speedup['low']:.2f}×): {c.family} variants reach at most ~{ceiling:g}× "
                "FP32 on this CPU")

    def fallback_if_needed(self, stage_done: str) -> None:
        """Run the accuracy-aware fallback on the INT8 candidate that would win on speed but
        misses the budget (once per parent)."""
        done = getattr(self, "_fallback_done", set())
        self._fallback_done = done
        meeting = [p for p in self.points.values() if p.meets and p.status in ("kept", "best")]
        best_ok = min((self.objective(p) for p in meeting), default=math.inf)
        missed = [p for p in self.points.values()
                  if p.status == "rejected" and p.meets is False and p.latency_ms
                  and self.cands.get(p.name) and self.cands[p.name].family == "int8"
                  and any(n == "int8-static" for n, _ in self.cands[p.name].passes)
                  and self.objective(p) < best_ok and p.name not in done
                  and self.cands[p.name].parent not in done]  # (its remedy already ran)
        if not missed:
            return
        parent = self.cands[min(missed, key=self.objective).name]
        done.add(parent.name)
        self.notes.append(f"{parent.name} missed the budget: accuracy-aware fallback keeps its "
                          "most sensitive layers in float")
        self.fallback(parent)

    def finish(self) -> dict[str, Any]:
        spec = self.spec
        for p in self.points.values():
            if p.status == "planned":
                p.reason = f"not tried: the search stopped ({self.stopped})"
        base = self.points["baseline"]
        final_ok = [p for p in self.points.values()
                    if p.name != "baseline" and p.meets and p.status == "kept"
                    and (p.stage == "full" or self.stopped)]
        best = min(final_ok, key=self.objective) if final_ok else None
        if best is not None and self.objective(best) >= self.objective(base):
            best = None
        confirm = None
        if best is not None and best.stage in ("full", "screen"):
            try:
                confirm = self.confirm(best)
            except _Stop:
                confirm = None
            except Exception as e:  # the figures so far stand
                log.info("confirmation of %s failed: %s", best.name, e)
        sp = (confirm or {}).get("speedup") if spec.objective == "latency" else None
        if best is not None and sp and sp["high"] < 1.0:
            # the confirmation (interleaved with the baseline) refutes the search's ranking,
            # which compared p50s taken at other times: no winner rather than a slower one
            best.status = "rejected"
            best.reason = (f"slower than the FP32 baseline when confirmed: {sp['value']:.2f}× "
                           f"[{sp['low']:.2f}, {sp['high']:.2f}] (interleaved)")
            self.publish(best)
            best, confirm = None, None
        elif best is not None and sp and sp["low"] <= 1.0:
            self.notes.append(f"{best.name} is not reliably faster than the baseline: its "
                              f"confirmed speedup {sp['value']:.2f}× [{sp['low']:.2f}, "
                              f"{sp['high']:.2f}] includes 1×")
        if best is not None:
            best.status = "best"
            if best.stage != "full":
                best.reason = (best.reason + "; ").lstrip("; ") + (
                    "provisional: measured on the screening subset only (the search stopped)")
            c = self.cands.get(best.name)
            if c is not None and self.search_build(c) != c:
                best.reason += (f"; its INT8 ranges come from {self.spec.screen_calibration} "
                                "of the calibration samples" + (
                                    " (enough: it meets the budget on the whole evaluation "
                                    "set)" if best.stage == "full" else ""))
            self.publish(best)
        winner = best or base
        out = self.write_outputs(winner, confirm)
        # the front compares like with like: figures on the whole evaluation set
        pareto = pareto_front([p for p in self.points.values() if p.latency_ms
                               and p.stage == "full" and p.status != "failed"
                               and p.cosine is not None], self.labels is not None,
                              energy.pareto_cost(self.spec.objective))
        prediction_check = self.prediction_check()
        result = {
            "schema": SCHEMA, "status": "ok" if not self.stopped else "stopped",
            "stopped": self.stopped, "model": str(self.source.path),
            "source_sha256": self.source_sha, "objective": spec.objective,
            "budget": {"max_drop": spec.max_drop, "min_cosine": self.min_cosine,
                       "labels": self.labels is not None},
            "threads": self.thread_counts[0], "thread_choices": list(self.thread_counts),
            "evaluated_on": self.feeds_source,
            "probe": self.probe.to_dict(), "model_profile": self.model_profile,
            "prediction": self.prediction.to_dict(), "prediction_check": prediction_check,
            "baseline": _public(base),
            "best": self.best_dict(best, confirm, out) if best else None,
            "pareto": [p.name for p in pareto],
            "tried": [_public(p) for p in self.points.values() if p.name != "baseline"],
            "sensitivity": self.sensitivity, "notes": self.notes,
            "outputs": out, "seconds": round(self.elapsed(), 2),
            "spent": {k: round(v, 2) for k, v in self.spent.items()},
            "cache": {"dir": str(self.cache.root), "hits": self.cache.hits,
                      "misses": self.cache.misses, "enabled": spec.use_cache},
        }
        if best is None:
            result["why_no_winner"] = self.why_none()
        out_dir = Path(spec.output_dir)
        (out_dir / "optimize.json").write_text(json.dumps(result, indent=2, default=str),
                                               encoding="utf-8")
        try:
            from app.optimize.report import write_html

            write_html(result, out_dir / "optimize.html")
            result["outputs"]["html"] = str(out_dir / "optimize.html")
        except Exception as e:  # the JSON is the record; the page is a view of it
            log.warning("could not write the HTML report: %s", e)
        return result

    def confirm(self, p: Point) -> dict[str, Any]:
        """The winner against the baseline at its threads, interleaved: its screening and
        full-stage rounds (already interleaved with that baseline, same iterations, the same
        build) count toward the confirmation's rounds, and only the rest are run now. Screening
        rounds count only when screening ran the very build that won (not one calibrated on a
        subset)."""
        tp = getattr(self, "tp", None)  # objective throughput: samples/s at its serving
        if tp is not None and p.throughput:
            return tp.confirm(p)
        c = self.cands[p.name]
        key = key_of("confirm", MEASURE_VERSION, self.source_sha, c.run_key(), c.build_spec(), self.data_key,
                     self.spec.final_rounds, self.spec.round_ms)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        self.emit({"event": "stage", "stage": "final", "message": f"confirming {p.name}"})
        b, r = (list(x) for x in self.rounds.get((p.name, "full"), ([], [])))
        reused = len(r)
        screened = self.rounds.get((p.name, "screen"))  # the same build (search_build)
        if screened and p.stage == "full":
            b, r = list(screened[0]) + b, list(screened[1]) + r
        from_screening = len(r) - reused
        more = max(0, self.spec.final_rounds - len(r))
        if more or not r:
            run = measure_job(Path(p.path), p.format, c.backend, c.precision, c.threads,
                              self.feeds1)
            base = self.base_run_at(c.threads)
            iters = self.iterations_for(self.base_latency)
            t0 = time.monotonic()
            try:
                for _ in range(2):  # warm-up, not kept
                    run.once()
                    base.once()
                for _ in range(max(more, 1)):
                    self.check()
                    got = interleaved_rounds([base.once, run.once], 1, iters)
                    b += got[0]
                    r += got[1]
            finally:
                run.close()
                self.spent["time_s"] += time.monotonic() - t0
        lat, blat = median_interval(r), median_interval(b)
        sp = speedup_interval(b, r)
        out = {"latency_ms": {"p50": lat.value, "low": lat.low, "high": lat.high},
               "baseline_latency_ms": {"p50": blat.value, "low": blat.low, "high": blat.high},
               "speedup": sp.to_dict(), "rounds": len(r), "rounds_from_full_stage": reused,
               "rounds_from_screening": from_screening,
               "threads": c.threads, "interleaved": True}
        self.cache.put(key, out)
        return out

    def best_dict(self, p: Point, confirm: dict[str, Any] | None, out: dict[str, Any]
                  ) -> dict[str, Any]:
        c = self.cands[p.name]
        lat = (confirm or {}).get("latency_ms") or p.latency_ms
        return {"name": p.name, "path": out.get("model"), "backend": c.backend,
                "config": {"threads": c.threads, "precision": c.precision,
                           "streams": c.streams or 1, "batch": c.batch, **c.build_spec()},
                "throughput": (confirm or {}).get("throughput") or p.throughput,
                "latency_ms": lat, "speedup": (confirm or {}).get("speedup") or p.speedup,
                "baseline_latency_ms": (confirm or {}).get("baseline_latency_ms"),
                "threads": c.threads, "baseline_threads": c.threads,
                "confirmation": {k: (confirm or {}).get(k) for k in (
                    "rounds", "rounds_from_full_stage", "rounds_from_screening")},
                "accuracy": p.accuracy, "accuracy_drop": p.accuracy_drop,
                "cosine": p.cosine, "agreement": p.agreement, "size_bytes": p.size_bytes,
                "energy_mj": p.energy_mj,
                "meets_budget": bool(p.meets), "stage": p.stage, "confirmed": bool(confirm),
                "commands": out.get("commands", [])}

    def prediction_check(self) -> dict[str, Any]:
        """INT8 against FP32 on the same runtime and threads (ORT first, as the baseline).
        Fully quantized variants answer the prediction best; when none was timed (a search
        limited to dynamic INT8, say), a dynamic or mixed one still measures INT8 kernels."""
        timed = [p for p in self.points.values() if p.speedup and p.latency_ms
                 and self.cands.get(p.name)
                 and self.cands[p.name].threads == self.thread_counts[0]
                 # one request at batch 1, as the prediction is about the kernels
                 and self.cands[p.name].batch == 1 and (self.cands[p.name].streams or 1) == 1]
        int8: list[Point] = []
        for family in ("int8", "int8-mixed", "int8-dynamic"):
            int8 = [p for p in timed if self.cands[p.name].family == family]
            if int8:
                break
        same_rt = [p for p in int8 if self.cands[p.name].backend == "onnxruntime"]
        pick = max(same_rt or int8, key=lambda p: p.speedup["value"], default=None)
        if pick is None:
            return check_prediction(self.prediction, None)
        r = check_prediction(self.prediction, pick.speedup["value"],
                             (pick.speedup["low"], pick.speedup["high"]))
        r["candidate"] = pick.name
        return r

    def why_none(self) -> str:
        tried = [p for p in self.points.values() if p.name != "baseline" and p.latency_ms]
        if not tried:
            return "no candidate was measured" + (f" ({self.stopped})" if self.stopped else "")
        fastest = min(tried, key=self.objective)
        return (f"no variant both met the budget and beat the baseline; the fastest measured was "
                f"{fastest.name} ({fastest.reason})")

    def write_outputs(self, p: Point, confirm: dict[str, Any] | None) -> dict[str, Any]:
        """The winner's files, lineage and the command lines that rebuild and measure it."""
        from converters.passes import ModelFile

        out_dir = Path(self.spec.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        c = self.cands[p.name]
        if p.path is None:
            return {}
        if p.name == "baseline":  # no winner: a copy of the source named "-optimized" would
            return {"dir": str(out_dir), "recipes": [], "commands": [],  # be taken for one
                    "optimize_command": self.cli_line()}
        from converters.passes._common import copy_model

        src = ModelFile(Path(p.path), p.format)
        dest = out_dir / f"{self.source.path.stem}-optimized{Path(p.path).suffix}"
        copy_model(src, dest)  # with its weights (ONNX external data renamed with it)
        recipes = []
        for i, lin in enumerate(p.lineage):
            target = out_dir / (f"recipe-{i + 1}.lineage.json" if len(p.lineage) > 1
                                else "recipe.lineage.json")
            shutil.copyfile(lin, target)
            recipes.append(str(target))
        model = _q(self.spec.model)
        # free dims at the data's sizes: without them convert checks the calibration data
        # against default sizes (an OCR line 48x192 against 224x224) and profile times those
        sizes = "".join(f" --shape {_q(k + '=' + 'x'.join(map(str, v)))}"
                        for k, v in (getattr(self, "data_shapes", None) or {}).items())
        cmds = []
        if c.passes and c.passes[0][0] == cands.ACCURACY_CONTROL:
            # NNCF picks the layers it returns to float from the evaluation data: rebuilt by
            # optimize itself, not by a convert recipe (recipe files record the steps)
            cmds.append(self.cli_line() + f" --only {c.parent}")
        elif c.convert_first and recipes and c.convert_first != self.source.format:
            first = out_dir / f"{self.source.path.stem}-{c.convert_first}.xml"
            cmds.append(f"modeldeck convert {model} --to {c.convert_first} -o {_q(first)}")
            cmds.append(f"modeldeck convert {_q(first)} --recipe {_q(recipes[-1])} "
                        f"-o {_q(dest)}{sizes}")
        elif recipes:
            cmds.append(f"modeldeck convert {model} --recipe {_q(recipes[-1])} -o {_q(dest)}"
                        f"{sizes}")
        prof = f"modeldeck profile {_q(dest)} --backend {c.backend}{sizes}"
        if c.threads:
            prof += f" --threads {c.threads}"
        if c.precision and c.backend == "openvino":
            prof += f" --precision {c.precision}"
        if (c.streams or 1) != 1 or c.batch != 1:
            from app.optimize.throughput import profile_suffix

            prof += profile_suffix(c, self.feeds1)
        cmds.append(prof)
        line = self.cli_line()
        return {"dir": str(out_dir), "model": str(dest), "recipes": recipes, "commands": cmds,
                "optimize_command": line}

    def cli_line(self) -> str:
        s = self.spec
        parts = ["modeldeck optimize", _q(s.model)]
        if s.eval:
            parts += ["--eval", _q(s.eval)]
        if s.calib:
            parts += ["--calib", _q(s.calib)]
        parts += ["--max-drop", f"{s.max_drop * 100:g}%"]
        if s.min_cosine is not None:
            parts += ["--min-cosine", f"{s.min_cosine:g}"]
        parts += ["--objective", s.objective]
        if s.backends:
            parts += ["--backends", ",".join(s.backends)]
        if s.threads:
            parts += ["--threads", str(s.threads)]
        parts += ["--time-budget", f"{s.time_budget_s:g}s", "-o", _q(s.output_dir)]
        return " ".join(parts)


def pareto_front(points: list[Point], labelled: bool,
                 cost: Callable[[Point], float] | None = None) -> list[Point]:
    """Points no other point beats on both cost (latency p50 unless given: energy under the
    energy objective) and accuracy (cosine without labels)."""
    def quality(p: Point) -> float:
        if labelled and p.accuracy is not None:
            return p.accuracy
        return p.cosine if p.cosine is not None else -math.inf

    cost = cost or (lambda p: p.latency_ms["p50"])
    front = []
    for p in points:
        lat, q = cost(p), quality(p)
        dominated = any(o is not p and cost(o) <= lat and quality(o) >= q
                        and (cost(o) < lat or quality(o) > q) for o in points)
        if not dominated:
            front.append(p)
    return sorted(front, key=cost)


def _public(p: Point) -> dict[str, Any]:
    d = p.to_dict()
    d["pareto_quality"] = d.get("accuracy") if d.get("accuracy") is not None else d.get("cosine")
    return d


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]


def _q(path: Any) -> str:
    import shlex

    return shlex.quote(str(path))


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def run_optimize(spec: OptimizeSpec, emit: Emit = lambda e: None,
                 cancelled: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Search, write OUTDIR (winner, recipe, optimize.json, optimize.html), return the result.
    A cancelled or timed-out search still returns and writes its best so far."""
    from converters.formats import consent

    from app.optimize.guard import preflight

    preflight(spec)  # model, output folder, data files, spec: one clear message each
    with consent(spec.trust_code):
        return Search(spec, emit, cancelled).run()
