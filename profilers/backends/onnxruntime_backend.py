"""ONNX Runtime: CPU, CUDA and TensorRT execution providers, per-node times from ORT's profiler.

ORT writes its profile as a Chrome-trace JSON list. The fields read here:
  - `cat == "Session"`, `name == "model_run"`, `ts`, `dur`: one event per
    `InferenceSession.run` (the first run is left out as a warm-up when there are more);
  - `cat == "Node"`, `name == "<node name>_kernel_time"`, `dur` (microseconds), and in `args`:
    `op_name` (the kernel's op type) and `provider` (the execution provider that ran it).
"""
from __future__ import annotations

import bisect
import ctypes
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from profilers.backends import (
    PACKED_BITS,
    Backend,
    BackendError,
    BackendOptions,
    Device,
    InputSpec,
    LayerTime,
    LoadInfo,
    check_output_shapes,
    dtype_of,
    pack_bits,
    register_backend,
    unpack_bits,
)

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TRT_EP = "TensorrtExecutionProvider"

# Device name -> providers in priority order (ORT falls back along the list, per node).
PROVIDERS: dict[str, list[str]] = {
    "CPU": [CPU_EP],
    "CUDA": [CUDA_EP, CPU_EP],
    "TensorRT": [TRT_EP, CUDA_EP, CPU_EP],
}
DEVICE_OF_PROVIDER = {CPU_EP: "CPU", CUDA_EP: "CUDA", TRT_EP: "TensorRT"}
_MISSING_REASON = {
    "CUDA": "not in this onnxruntime build; install onnxruntime-gpu",
    "TensorRT": "not in this onnxruntime build; install onnxruntime-gpu and TensorRT",
}
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}

# ORT type strings ("tensor(float)") -> numpy names, as ModelGraph spells them.
_ORT_DTYPES = {
    "float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "bool": "bool", "string": "string",
    "float8e4m3fn": "float8_e4m3fn", "float8e4m3fnuz": "float8_e4m3fnuz",
    "float8e5m2": "float8_e5m2", "float8e5m2fnuz": "float8_e5m2fnuz",
    "float8e8m0": "float8_e8m0fnu", "float4e2m1": "float4_e2m1fn",
    "int4": "int4", "uint4": "uint4", "int2": "int2", "uint2": "uint2",
}
# Types numpy lacks (ml_dtypes names) -> ONNX TensorProto element types. ORT's run() cannot
# take or give them as numpy arrays: they travel as OrtValues filled with their raw bytes.
_ONNX_ELEMENT_TYPES = {
    "bfloat16": 16, "float8_e4m3fn": 17, "float8_e4m3fnuz": 18, "float8_e5m2": 19,
    "float8_e5m2fnuz": 20, "uint4": 21, "int4": 22, "float4_e2m1fn": 23, "float8_e8m0fnu": 24,
    "uint2": 25, "int2": 26,
}
_ORT_ERROR_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
_KERNEL_SUFFIX = "_kernel_time"
_NCHWC_SUFFIX = "_nchwc"  # ORT's NCHWc layout pass names a node "<its output tensor>_nchwc"
_REWRITE_TAG = re.compile(r"(.+)_(bn|mul)")  # "<tensor>_bn_nchwc": that op became a conv


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def numpy_dtype(ort_type: str) -> str:
    """'tensor(float)' -> 'float32'; non-tensor types (sequences, maps) are kept as ORT says."""
    m = re.fullmatch(r"tensor\((\w+)\)", ort_type)
    if not m:
        return ort_type
    return _ORT_DTYPES.get(m.group(1), m.group(1))


# "/onnxruntime_src/.../attention_helper.h:164 onnxruntime::...::Compute(...) const " : where in
# ORT's sources a check failed, before the condition and the reason.
_SOURCE_LOCATION = re.compile(r"\s*/\S+\.(?:h|hpp|cc|cpp|cu|cuh):\d+\s+")
_NO_KERNEL = re.compile(r"Failed to find kernel for (\S+) \(node:'[^']*' ep:'(\w+)'\)")
_NODE_TYPE = re.compile(r"the node in the model has the following type "
                        r"\(((?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\)")
_RUNNING_NODE = re.compile(r"Non-zero status code returned while running (\w+) node\. "
                           r"Name:'([^']*)' Status Message:\s*")


def _drop_signature(text: str) -> str:
    """'virtual Status ns::Op::Compute(OpKernelContext*) const cond was false. reason' ->
    'cond was false. reason': skips the C++ signature up to its closing parenthesis."""
    depth, end = 0, -1
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end < 0 or "::" not in text[:end]:
        return text
    rest = text[end + 1:].lstrip()
    rest = re.sub(r"^(?:const\s+)?(?:\[with [^\]]*\]\s*)?", "", rest)
    return rest or text


def ort_error_message(err: Exception) -> str:
    """ORT's first line, without the '[ONNXRuntimeError] : 1 : FAIL :' noise, the source file
    and C++ signature of the failed check, and the condition when a reason follows it."""
    lines = [x.strip() for x in str(err).strip().splitlines() if x.strip()]
    if not lines:
        return type(err).__name__
    kernel = _NO_KERNEL.search(lines[0])
    typed = _NODE_TYPE.search(str(err))
    if kernel and typed:  # a page of kernel version ranges: the op and the type are the news
        return (f"no kernel for {kernel.group(1)} on {kernel.group(2)} with element type "
                f"{typed.group(1)}")
    text = lines[0]
    if 1 < len(lines) <= 4 and sum(map(len, lines[1:])) < 200:  # "...the following indices"
        text = "; ".join(lines)
    text = _ORT_ERROR_PREFIX.sub("", text)
    text = _RUNNING_NODE.sub(lambda m: f"{m.group(1)} node{' ' + repr(m.group(2)) if m.group(2) else ''}: ",
                             text)
    m = _SOURCE_LOCATION.search(text)
    if m:
        head, tail = text[:m.start()], _drop_signature(text[m.end():])
        cond, sep, reason = tail.partition(" was false.")
        if sep and reason.strip():
            tail = reason.strip()
        text = f"{head.rstrip()} {tail}".strip() if head.strip() else tail
    return text


@register_backend
class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    formats = frozenset({"onnx"})
    layer_statistic = "median"  # each node's median over the profiled runs
    description = "ONNX Runtime (CPU, CUDA, TensorRT execution providers)"

    def __init__(self) -> None:
        self._session: onnxruntime.InferenceSession | None = None
        self._model: Path | None = None
        self._profile_dir: Path | None = None
        self._layers: list[LayerTime] | None = None  # cached: ORT ends profiling only once
        self._raw_outputs = False  # an output has a type numpy lacks: read it as OrtValue
        self._spinning: tuple[bool, str] = (True, "")
        self._run_times_ms: list[float] | None = None

    # --- discovery ---------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            return True, _ort().__version__
        except Exception as e:  # ImportError, or a broken install failing on import
            return False, f"onnxruntime is not importable: {e}"

    @classmethod
    def devices(cls) -> list[Device]:
        ok, _ = cls.available()
        if not ok:
            return []
        try:
            have = set(_ort().get_available_providers())
        except Exception as e:
            log.warning("onnxruntime.get_available_providers failed: %s", e)
            have = {CPU_EP}
        out = [Device(cls.name, "CPU", "ONNX Runtime CPU execution provider")]
        for dev, ep in (("CUDA", CUDA_EP), ("TensorRT", TRT_EP)):
            if ep in have:
                out.append(Device(cls.name, dev, f"ONNX Runtime {ep}"))
            else:
                out.append(Device(cls.name, dev, f"ONNX Runtime {ep}", available=False,
                                  reason=_MISSING_REASON[dev]))
        return out

    # --- session -----------------------------------------------------------------------
    def _resolve_device(self, device: str) -> str:
        usable = [d.name for d in self.devices() if d.available]
        for name in usable:
            if name.lower() == device.lower():
                return name
        known = {d.name.lower(): d for d in self.devices()}
        why = f" ({known[device.lower()].reason})" if device.lower() in known else ""
        raise BackendError(f"onnxruntime cannot use device {device!r}{why}; "
                           f"available: {', '.join(usable) or 'none'}")

    def _session_options(self, options: BackendOptions) -> onnxruntime.SessionOptions:
        ort = _ort()
        so = ort.SessionOptions()
        if options.threads is not None:
            so.intra_op_num_threads = options.threads
        self._spinning = _spinning_choice(options)
        if not self._spinning[0]:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if options.inter_threads is not None:
            so.inter_op_num_threads = options.inter_threads
            if options.inter_threads > 1:  # inter-op threads only matter in parallel mode
                so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                              _OPT_LEVELS[options.graph_optimization])
        if options.profile_layers:
            self._profile_dir = Path(tempfile.mkdtemp(prefix="modeldeck-ort-"))
            so.enable_profiling = True
            so.profile_file_prefix = str(self._profile_dir / "ort_profile")
        return so

    def load(self, model: Path, fmt: str, device: str, options: BackendOptions) -> LoadInfo:
        if fmt not in self.formats:
            raise BackendError(f"onnxruntime runs ONNX models, not {fmt!r}")
        dev = self._resolve_device(device)
        ort = _ort()
        self.close()
        so = self._session_options(options)
        providers = PROVIDERS[dev]
        try:
            t0 = time.perf_counter_ns()
            sess = ort.InferenceSession(str(model), sess_options=so, providers=providers)
            load_ms = (time.perf_counter_ns() - t0) / 1e6
        except Exception as e:
            self._drop_profile_dir()
            raise BackendError(f"onnxruntime cannot load {Path(model).name}: "
                               f"{ort_error_message(e)}{_hint(e)}") from e
        active = sess.get_providers()
        if active[0] != providers[0]:
            # ORT silently drops a provider whose libraries fail to load (CUDA, cuDNN, TRT).
            raise BackendError(f"onnxruntime could not start {providers[0]} for device {dev} "
                               f"(missing CUDA/cuDNN/TensorRT libraries? see the log above); "
                               f"the session got {', '.join(active)}")
        self._session, self._model, self._layers = sess, Path(model), None
        self._raw_outputs = any(numpy_dtype(o.type) in _ONNX_ELEMENT_TYPES
                                for o in sess.get_outputs())
        details = {"providers": active, "graph_optimization": options.graph_optimization,
                   "threads": options.threads, "inter_threads": options.inter_threads,
                   "spinning": self._spinning[0], "spinning_choice": self._spinning[1],
                   "onnxruntime": ort.__version__}
        return LoadInfo(load_ms=load_ms, details=details)

    def _sess(self) -> onnxruntime.InferenceSession:
        if self._session is None:
            raise BackendError("no model loaded: call load() first")
        return self._session

    def input_specs(self) -> list[InputSpec]:
        specs = []
        for i in self._sess().get_inputs():
            shape = tuple(d if isinstance(d, str) or (isinstance(d, int) and d >= 0) else None
                          for d in (i.shape or []))
            specs.append(InputSpec(i.name, numpy_dtype(i.type), shape))
        return specs

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        # run() returns host (numpy) outputs, so with CUDA the device work is done when it
        # returns: the copy of the outputs to the host waits for the GPU.
        sess = self._sess()
        try:
            feeds = {name: _feed(arr) for name, arr in inputs.items()}
            if not self._raw_outputs:
                outs = sess.run(None, feeds)
            else:
                values = sess.run_with_ort_values(None, {k: _as_ortvalue(v)
                                                         for k, v in feeds.items()})
                outs = [_from_ortvalue(v, numpy_dtype(o.type))
                        for v, o in zip(values, sess.get_outputs())]
        except BackendError:
            raise
        except Exception as e:
            raise BackendError(f"onnxruntime inference failed: {ort_error_message(e)}") from e
        declared = sess.get_outputs()
        check_output_shapes("onnxruntime", [o.name for o in declared],
                            [tuple(o.shape) if o.shape else None for o in declared], outs)
        return outs

    def prepare(self, inputs: dict[str, np.ndarray]) -> None:
        """Convert the inputs once: the timed loop then calls ORT's run() and nothing else,
        like the shortest bare loop (checks and conversions cost ~15-35 us a call, a quarter of
        a 0.14 ms model). infer() has already checked the outputs on these inputs."""
        sess = self._sess()
        feeds = {name: _feed(arr) for name, arr in inputs.items()}
        if self._raw_outputs:
            values = {k: _as_ortvalue(v) for k, v in feeds.items()}
            self._timed_call = lambda: sess.run_with_ort_values(None, values)
        else:
            self._timed_call = lambda: sess.run(None, feeds)

    def run_prepared(self) -> None:
        try:
            self._timed_call()
        except Exception as e:
            raise BackendError(f"onnxruntime inference failed: {ort_error_message(e)}") from e

    # --- per-node profile --------------------------------------------------------------
    def layer_profile(self, node_ids_by_name: dict[str, str]) -> list[LayerTime]:
        """Mean time per inference of every node ORT ran, slowest first (first run excluded
        as a warm-up when there were more).

        ORT renames nodes it rewrites; names are mapped back to the model's nodes where the
        rewrite is known (exact name, or the NCHWc '<output>_nchwc' names), else node_id is None.
        """
        if self._layers is not None:
            return self._layers
        if self._profile_dir is None:
            raise BackendError("per-layer times need the model loaded with profile_layers")
        sess = self._sess()
        events = json.loads(Path(sess.end_profiling()).read_text(encoding="utf-8"))
        self._drop_profile_dir()
        tracer = _NchwcTracer(self._model) if self._model is not None else None
        self._layers = _layer_times(events, sess.get_providers()[0], node_ids_by_name, tracer)
        runs = sorted((float(ev.get("ts", 0)), float(ev.get("dur", 0))) for ev in events
                      if ev.get("cat") == "Session" and ev.get("name") == "model_run")
        self._run_times_ms = [d / 1e3 for _, d in (runs[1:] if len(runs) > 1 else runs)]
        return self._layers

    def profiled_run_times_ms(self) -> list[float] | None:
        """ORT's own `model_run` durations of the profiled runs (the warm-up run left out)."""
        return self._run_times_ms or None

    def close(self) -> None:
        if self._session is not None and self._profile_dir is not None and self._layers is None:
            try:
                self._session.end_profiling()  # stop writing before the folder goes
            except Exception as e:
                log.debug("end_profiling on close: %s", e)
        self._session = None
        self._drop_profile_dir()

    def _drop_profile_dir(self) -> None:
        if self._profile_dir is not None:
            shutil.rmtree(self._profile_dir, ignore_errors=True)
            self._profile_dir = None


def _spinning_choice(options: BackendOptions) -> tuple[bool, str]:
    """Whether ORT's idle pool threads spin, and why. Spinning buys microseconds on a machine
    with cores to spare; on a few cores it steals them from everything else (the samplers, the
    window, other threads of the same pool), so it is off there unless asked for."""
    from profilers.stability import FEW_CORES, usable_cpus

    if options.spinning is not None:
        return options.spinning, "asked"
    cores = usable_cpus()
    if cores <= FEW_CORES:
        return False, f"off: {cores} usable cores (spinning threads would compete for them)"
    return True, f"on: ONNX Runtime's default ({cores} usable cores)"


def _feed(arr: Any) -> Any:
    """numpy arrays as run() takes them; bfloat16, float8, int4... as OrtValues of their bytes."""
    if not isinstance(arr, np.ndarray) or arr.dtype.name not in _ONNX_ELEMENT_TYPES:
        return arr
    value = _ort().OrtValue.ortvalue_from_shape_and_type(
        list(arr.shape), _ONNX_ELEMENT_TYPES[arr.dtype.name])
    raw = pack_bits(arr) if arr.dtype.name in PACKED_BITS else np.asarray(arr, order="C")
    if raw.nbytes:
        if raw.nbytes != value.tensor_size_in_bytes():
            raise BackendError(f"onnxruntime wants {value.tensor_size_in_bytes()} bytes for a "
                               f"{arr.dtype.name} input of shape {list(arr.shape)}, "
                               f"not {raw.nbytes}")
        ctypes.memmove(value.data_ptr(), raw.ctypes.data, raw.nbytes)
    return value


def _as_ortvalue(feed: Any) -> Any:
    if isinstance(feed, np.ndarray):
        return _ort().OrtValue.ortvalue_from_numpy(feed)
    return feed


def _from_ortvalue(value: Any, dtype_name: str) -> Any:
    """An output OrtValue as numpy; types numpy lacks are read from the tensor's bytes."""
    if dtype_name not in _ONNX_ELEMENT_TYPES:
        return value.numpy()
    shape = tuple(value.shape())
    size = value.tensor_size_in_bytes()
    raw = (np.frombuffer(ctypes.string_at(value.data_ptr(), size), np.uint8) if size
           else np.zeros(0, np.uint8))
    if dtype_name in PACKED_BITS:
        return unpack_bits(raw, shape, dtype_name)
    return raw.view(dtype_of(dtype_name)).reshape(shape).copy()


def _hint(err: Exception) -> str:
    """A next step for the errors people hit most."""
    msg = str(err)
    if "is not a registered function/op" in msg or "No Op registered" in msg:
        return (" (the model uses an operator this onnxruntime does not implement: a custom "
                "op needs its library registered, a newer op a newer onnxruntime)")
    if "Could not find an implementation for" in msg:
        return " (this onnxruntime has no kernel for that operator with these element types)"
    return ""


@dataclass
class _NodeAcc:
    op_type: str
    provider: str
    precision: str
    total_us: float = 0.0
    calls: int = 0
    per_run: dict[int, float] | None = None  # run index -> this node's time in that run


def _precision(args: dict[str, Any]) -> str:
    """Element type of the node's first input, e.g. {'float': [1, 3]} -> 'float32'."""
    shapes = args.get("input_type_shape") or []
    if shapes and isinstance(shapes[0], dict) and shapes[0]:
        ort_name = next(iter(shapes[0]))
        return _ORT_DTYPES.get(ort_name, ort_name)
    return ""


def _run_starts(events: list[dict[str, Any]]) -> list[float]:
    """Start times of the counted runs (the warm-up run left out when there are others)."""
    runs = sorted(float(ev.get("ts", 0)) for ev in events
                  if ev.get("cat") == "Session" and ev.get("name") == "model_run")
    return runs[1:] if len(runs) > 1 else runs


def _warmup_window(events: list[dict[str, Any]]) -> tuple[int, float, float]:
    """(runs counted, start, end of the run left out). The first run is a warm-up (arena
    growth, kernel selection) and is left out when there are others."""
    runs = sorted((float(ev.get("ts", 0)), float(ev.get("dur", 0))) for ev in events
                  if ev.get("cat") == "Session" and ev.get("name") == "model_run")
    if len(runs) < 2:
        return len(runs), 1.0, 0.0  # an empty window
    ts, dur = runs[0]
    return len(runs) - 1, ts, ts + dur


def _aggregate(events: list[dict[str, Any]]) -> tuple[dict[str, _NodeAcc], int]:
    """Kernel time per node name over the counted runs, and the number of runs."""
    runs, skip_from, skip_to = _warmup_window(events)
    starts = _run_starts(events)
    nodes: dict[str, _NodeAcc] = {}
    for ev in events:
        name = ev.get("name", "")
        if ev.get("cat") != "Node" or not name.endswith(_KERNEL_SUFFIX):
            continue
        if skip_from <= float(ev.get("ts", 0)) <= skip_to:
            continue
        args = ev.get("args") or {}
        node = name[: -len(_KERNEL_SUFFIX)]
        acc = nodes.get(node)
        if acc is None:
            acc = nodes[node] = _NodeAcc(args.get("op_name", ""), args.get("provider", ""),
                                         _precision(args))
        acc.total_us += float(ev.get("dur", 0))
        acc.calls += 1
        if starts:
            run = bisect.bisect_right(starts, float(ev.get("ts", 0))) - 1
            if run >= 0:
                acc.per_run = acc.per_run or {}
                acc.per_run[run] = acc.per_run.get(run, 0.0) + float(ev.get("dur", 0))
    if nodes and not runs:  # no model_run events: a node that ran once per run tells the count
        runs = max(a.calls for a in nodes.values())
    return nodes, runs


def _layer_times(events: list[dict[str, Any]], first_provider: str,
                 node_ids_by_name: dict[str, str],
                 tracer: _NchwcTracer | None) -> list[LayerTime]:
    nodes, runs = _aggregate(events)
    out = []
    for node, acc in nodes.items():
        node_id = node_ids_by_name.get(node)
        if node_id is None and tracer is not None:
            node_id = tracer.node_id(node, acc.op_type, node_ids_by_name)
        device = DEVICE_OF_PROVIDER.get(acc.provider, acc.provider)
        if acc.per_run and runs:  # the median run: one slow run does not inflate the row
            per_run = [acc.per_run.get(i, 0.0) for i in range(runs)]
            time_ms = float(np.median(per_run)) / 1e3
        else:
            time_ms = acc.total_us / runs / 1e3
        out.append(LayerTime(name=node, op_type=acc.op_type, time_ms=time_ms,
                             node_id=node_id, device=device, exec_type=acc.provider,
                             precision=acc.precision,
                             fallback=first_provider != CPU_EP and acc.provider == CPU_EP))
    out.sort(key=lambda lt: lt.time_ms, reverse=True)
    return out


class _NchwcTracer:
    """Maps ORT's renamed nodes back to the model node that did the work.

    Two renamings are known: fusions that call the node "fused <original name>", and the NCHWc
    layout pass, which names its node after the original output tensor ("<tensor>_nchwc", with
    "_token_<n>" when the name was taken). When activations or element-wise ops were fused in
    first (Conv+BN+Relu), that tensor is the last fused op's, so walk up through such ops to
    the nearest node of the kernel's op type; two candidates at the same distance (both inputs
    of a fused Add) are left unmapped rather than guessed. "<tensor>_bn_nchwc" and
    "<tensor>_mul_nchwc" are a BatchNormalization / Mul that ORT runs as a depthwise Conv: they
    map to that node. Reads the main graph's structure only (no weights).
    """

    _MAX_HOPS = 6
    _FUSIBLE = frozenset({"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid",
                          "HardSwish", "Add", "Sum", "Mul", "BatchNormalization"})

    def __init__(self, model: Path) -> None:
        self._model = model
        self._producer: dict[str, tuple[str, str, list[str]]] | None = None

    def _producers(self) -> dict[str, tuple[str, str, list[str]]]:
        """Tensor -> (node name as ORT and ModelGraph call it, op type, inputs)."""
        if self._producer is None:
            self._producer = {}
            try:
                import onnx

                g = onnx.load(str(self._model), load_external_data=False).graph
            except Exception as e:  # the profile is still useful without the mapping
                log.info("cannot read %s to map ORT nodes: %s", self._model, e)
                return self._producer
            for i, n in enumerate(g.node):
                # Unnamed nodes: ORT and ModelGraph both call them "<op_type>_<index>".
                name = n.name or f"{n.op_type}_{i}"
                for out in n.output:
                    self._producer[out] = (name, n.op_type, list(n.input))
        return self._producer

    def node_id(self, ort_name: str, op_type: str, ids: dict[str, str]) -> str | None:
        if ort_name.startswith("fused "):
            return ids.get(ort_name[len("fused "):])
        if not ort_name.endswith(_NCHWC_SUFFIX):
            return None
        producers = self._producers()
        tensor = re.sub(r"_token_\d+$", "", ort_name[: -len(_NCHWC_SUFFIX)])
        if tensor in producers:
            return self._walk_up(tensor, op_type.removeprefix("Fused"), ids)
        tagged = _REWRITE_TAG.fullmatch(tensor)
        if tagged and tagged.group(1) in producers:
            return ids.get(producers[tagged.group(1)][0])
        return None

    def _walk_up(self, tensor: str, wanted: str, ids: dict[str, str]) -> str | None:
        """Nearest producer of `wanted` op type up the chain of fusible ops, if unambiguous."""
        producers = self._producers()
        frontier = [tensor]
        for _ in range(self._MAX_HOPS):
            found = [producers[t] for t in frontier if t in producers]
            matches = {name for name, op, _ in found if op == wanted}
            if len(matches) == 1:
                return ids.get(matches.pop())
            if matches:
                return None
            frontier = [t for _, op, inputs in found if op in self._FUSIBLE for t in inputs]
        return None
