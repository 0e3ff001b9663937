"""The variants a search may try: passes and their options × backend × precision hint.

A candidate is a recipe the convert pipeline can replay (passes + target format) plus how it
runs (backend, precision hint, threads). Several candidates share one build (the same IR run
with an f32 or a bf16 hint), so builds are keyed apart from runs. The list is ordered cheap
first: what only needs a format conversion before what needs calibration, calibration before
training.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from app.optimize.probe import MachineProbe, Prediction

# Rough build cost in seconds on a laptop for a model of a few MB: orders the list only.
BUILD_COST = {"": 0.0, "export": 2.0, "simplify": 2.0, "fp16": 2.0, "int8-dynamic": 3.0,
              "int8-static": 8.0,
              "int8-static@openvino": 20.0, "prune-channels": 60.0, "distill": 120.0}


@dataclass(frozen=True)
class Candidate:
    name: str
    family: str  # fp32 | bf16 | fp16 | int8-dynamic | int8 | int8-mixed | pruned
    backend: str  # onnxruntime | openvino | torch
    passes: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    to: str | None = None  # format after the passes (None: the pipeline's choice / unchanged)
    precision: str | None = None  # OpenVINO inference precision hint
    threads: int | None = None
    needs_calibration: bool = False
    # convert to this format in a build of its own first (passes then run on that format:
    # NNCF on the OpenVINO IR rather than ORT's quantizer on the ONNX)
    convert_first: str | None = None
    parent: str | None = None  # what a mixed-precision candidate was derived from
    # an accuracy remedy of that candidate (another calibration method): tried only when the
    # candidate misses the budget, since it changes accuracy, not speed
    remedy_for: str | None = None
    note: str = ""
    # serving (objective throughput, app/optimize/throughput.py): requests in flight and
    # samples per request; run options like threads (None / 1: one request of one sample)
    streams: int | None = None
    batch: int = 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def builds(self) -> bool:
        return bool(self.passes) or self.to is not None

    def build_spec(self) -> dict[str, Any]:
        spec = {"passes": [{"name": n, "options": dict(o)} for n, o in self.passes],
                "to": self.to}
        if self.convert_first:
            spec["convert_first"] = self.convert_first
        return spec

    def build_key(self) -> str:
        return _hash(self.build_spec())

    def run_key(self) -> str:
        serving = ({"streams": self.streams, "batch": self.batch}
                   if (self.streams or 1) != 1 or self.batch != 1 else {})
        return _hash({**self.build_spec(), "backend": self.backend,
                      "precision": self.precision, "threads": self.threads, **serving})

    @property
    def cost(self) -> float:
        total = 0.0
        for name, _ in self.passes:
            key = f"{name}@openvino" if name == "int8-static" and self.to == "openvino" else name
            total += BUILD_COST.get(key, 10.0)
        if self.to is not None or self.convert_first:
            total += BUILD_COST["export"]
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "backend": self.backend,
                **self.build_spec(), "precision": self.precision, "threads": self.threads,
                "streams": self.streams, "batch": self.batch,
                "parent": self.parent, "note": self.note}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _opts(**kw: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kw.items()))


def _step(name: str, **kw: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    return (name, _opts(**kw))


def generate(source_format: str, probe: MachineProbe, prediction: Prediction, *,
             backends: tuple[str, ...] = (), threads: int | None = 1, has_calibration: bool,
             objective: str = "latency", exhaustive: bool = False) -> list[Candidate]:
    """Candidates for a model of `source_format`, cheap first, most promising first among
    equals. The same grid for a search and a sweep (`exhaustive` is kept for callers that
    want to say which they run); the search skips what it can show it does not need."""
    have = {b for b, devs in probe.devices.items() if devs} or {"onnxruntime", "openvino"}
    wanted = set(backends) if backends else have
    ort = "onnxruntime" in wanted and "onnxruntime" in have
    ov = "openvino" in wanted and "openvino" in have
    onnx_to = "onnx" if source_format == "torch" else None
    out: list[Candidate] = []

    def add(c: Candidate) -> None:
        out.append(replace(c, threads=threads))

    if ort and source_format == "torch":
        add(Candidate("ort-fp32", "fp32", "onnxruntime", to="onnx"))
    if ov:
        add(Candidate("ov-fp32", "fp32", "openvino", to="openvino", precision="f32"))
        if probe.bf16:
            add(Candidate("ov-bf16", "bf16", "openvino", to="openvino", precision="bf16",
                          note="bf16 hint: this CPU has bf16 instructions"))
    # onnxslim's folding and fusions: ORT and OpenVINO do much of it when they load a model,
    # so it seldom changes speed there, but it is a real option where their rewrites miss
    if ort:
        add(Candidate("ort-simplified", "fp32", "onnxruntime", passes=(_step("simplify"),),
                      to=onnx_to, note="onnxslim: folding and fusions"))
    if ov:
        add(Candidate("ov-simplified", "fp32", "openvino", passes=(_step("simplify"),),
                      to="openvino", precision="f32", note="onnxslim, then the IR"))
    if ort:
        add(Candidate("ort-int8-dynamic", "int8-dynamic", "onnxruntime",
                      passes=(_step("int8-dynamic", per_channel=True),), to=onnx_to))
        add(Candidate("ort-int8-dynamic-pertensor", "int8-dynamic", "onnxruntime",
                      passes=(_step("int8-dynamic", per_channel=False),), to=onnx_to,
                      note="per-tensor weight scales (other kernels than per-channel)"))
        add(Candidate("ort-fp16", "fp16", "onnxruntime", passes=(_step("fp16"),), to=onnx_to,
                      note="ORT's CPU kernels are mostly float32: expected slower"))
    if has_calibration:
        if ort:
            add(Candidate("ort-int8", "int8", "onnxruntime", needs_calibration=True,
                          passes=(_step("int8-static", method="minmax", per_channel=True),),
                          to=onnx_to))
        if ov:
            add(Candidate("ov-int8", "int8", "openvino", needs_calibration=True, to="openvino",
                          convert_first="openvino", passes=(_step("int8-static"),),
                          precision="f32", note="NNCF on the OpenVINO IR"))
            if probe.bf16:
                add(Candidate("ov-int8-bf16", "int8", "openvino", needs_calibration=True,
                              to="openvino", convert_first="openvino",
                              passes=(_step("int8-static"),), precision="bf16",
                              note="INT8 where quantized, bf16 for the rest"))
        if ort and ov:  # ORT's QDQ model read by OpenVINO: no NNCF needed
            add(Candidate("ov-ort-qdq", "int8", "openvino", needs_calibration=True,
                          passes=(_step("int8-static", method="minmax", per_channel=True),),
                          to=onnx_to, precision="f32"))
        if ort:
            add(Candidate("ort-int8-entropy", "int8", "onnxruntime", needs_calibration=True,
                          remedy_for="ort-int8",
                          passes=(_step("int8-static", method="entropy", per_channel=True),),
                          to=onnx_to))
            add(Candidate("ort-int8-percentile", "int8", "onnxruntime", needs_calibration=True,
                          remedy_for="ort-int8",
                          passes=(_step("int8-static", method="percentile", per_channel=True),),
                          to=onnx_to))
        if ort:  # the rest of the grid a sweep tries (remedies are skipped when not needed)
            # per-tensor weights may take other ORT kernels than per-channel ones, so this is a
            # speed candidate, not only an accuracy remedy (on this sample both run ~3.4×)
            add(Candidate("ort-int8-pertensor", "int8", "onnxruntime", needs_calibration=True,
                          passes=(_step("int8-static", method="minmax", per_channel=False),),
                          to=onnx_to))
            add(Candidate("ort-int8-qop", "int8", "onnxruntime", needs_calibration=True,
                          passes=(_step("int8-static", method="minmax", per_channel=True,
                                        quant_format="qoperator"),), to=onnx_to))
            if ov:
                add(Candidate("ov-ort-qdq-entropy", "int8", "openvino", needs_calibration=True,
                              remedy_for="ov-ort-qdq",
                              passes=(_step("int8-static", method="entropy",
                                            per_channel=True),), to=onnx_to, precision="f32"))
    if source_format == "torch" and has_calibration and (ort or ov):
        # structural: fewer channels, then taught by the original (needs the torch program)
        structural = (_step("prune-channels", ratio=0.5, round_to=8), _step("distill", epochs=3))
        if ov:
            add(Candidate("ov-pruned-int8", "pruned", "openvino", needs_calibration=True,
                          passes=structural + (_step("int8-static"),), to="openvino",
                          precision="f32"))
        if ort:
            add(Candidate("ort-pruned", "pruned", "onnxruntime", passes=structural, to="onnx"))
    if objective == "size":  # weight-only compression helps size and nothing else
        if ort:
            add(Candidate("ort-weight-int8", "int8-weights", "onnxruntime",
                          passes=(_step("weight-only", bits=8),), to=onnx_to))
    # INT8 first where the prediction says it pays, float first where it does not
    int8_first = prediction.int8 == "faster"
    rank = {"int8": 0 if int8_first else 2, "int8-dynamic": 1, "bf16": 1, "fp32": 1,
            "fp16": 3, "pruned": 4, "int8-weights": 3}
    return sorted(out, key=lambda c: (c.cost > 30, rank.get(c.family, 2), c.cost))


def ceiling(family: str, probe: MachineProbe) -> float | None:
    """The most a family can plausibly gain over FP32 ONNX Runtime on this CPU (None: no bound
    assumed). A runtime swap runs the same float math (~2× at most between good kernels); bf16
    doubles the dot-product rate with AVX-512 BF16 and far more with AMX tiles; CPU float16
    kernels mostly convert to float32; dynamic INT8 quantizes activations on every call.
    Static INT8 and structural changes get no ceiling: they are what can win big."""
    if family == "fp32":
        return 2.0
    if family == "bf16":
        return 8.0 if "AMX-BF16" in probe.isa else 2.0
    if family == "fp16":
        return 2.0
    if family in ("int8-dynamic", "int8-weights"):
        return 2.0
    return None


ACCURACY_CONTROL = "nncf-accuracy-control"  # built by app.optimize.accuracy_control, not a pass


def accuracy_controlled(parent: Candidate, metric: str, max_drop: float) -> Candidate:
    """NNCF's accuracy-controlled INT8 of the parent's IR (OpenVINO only)."""
    return replace(parent, name=f"{parent.name}-ac", family="int8-mixed",
                   passes=((ACCURACY_CONTROL, _opts(metric=metric, max_drop=max_drop)),),
                   parent=parent.name, remedy_for=None,
                   note=f"NNCF accuracy control: quantizers returned to float until the "
                        f"{metric} drop is at most {max_drop:g}")


def screen_build(c: Candidate, samples: int) -> Candidate:
    """`c` calibrated on its first `samples` calibration inputs: the same graph (the same speed)
    built faster, for screening; unchanged when `c` does not calibrate or `samples` is 0."""
    if not samples or not any(n == "int8-static" and "samples" not in dict(o)
                              for n, o in c.passes):
        return c  # (a recipe that names its calibration samples keeps them)
    passes = []
    for name, opts in c.passes:
        if name == "int8-static" and "samples" not in dict(opts):
            d = dict(opts)
            d["samples"] = min(300, samples)
            opts = _opts(**d)
        passes.append((name, opts))
    return replace(c, passes=tuple(passes))


def all_calibration(c: Candidate) -> Candidate:
    """`c` calibrated on all the samples the pass takes (the remedy for a search build that
    used a subset and missed the budget)."""
    passes = tuple((n, _opts(**{**dict(o), "samples": 300}) if n == "int8-static" else o)
                   for n, o in c.passes)
    return replace(c, name=f"{c.name}-allcal", passes=passes, parent=c.name,
                   note=(c.note + "; " if c.note else "") + "calibrated on all the samples")


def mixed(parent: Candidate, keep_float: tuple[str, ...]) -> Candidate:
    """The parent's INT8 recipe with these nodes kept in float (accuracy-aware fallback)."""
    passes = []
    for name, opts in parent.passes:
        if name == "int8-static":
            d = dict(opts)
            d["exclude"] = tuple(sorted(set(d.get("exclude", ())) | set(keep_float)))
            opts = _opts(**d)
        passes.append((name, opts))
    return replace(parent, name=f"{parent.name}-mixed{len(keep_float)}", family="int8-mixed",
                   passes=tuple(passes), parent=parent.name,
                   note=f"{len(keep_float)} most sensitive layer(s) kept in float: "
                        + ", ".join(keep_float))
