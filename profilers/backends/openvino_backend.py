"""OpenVINO runtime: ONNX, OpenVINO IR and TFLite models on CPU, GPU, NPU or AUTO.

OpenVINO is imported inside methods only, so the backend registry loads without it.
One synchronous InferRequest is created at load time and reused; per-layer times come from
PERF_COUNT (`ov.properties.enable_profiling`). The CPU plugin reports each layer's running
average over every inference since compilation (the first one included, where a
FullyConnected repacks its weights: 17 ms against 0.1 ms in steady state), so the time of the
profiled inferences is recovered from two of those averages: (m x avg_m - k x avg_k) / (m - k).
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from profilers.backends import (EXTENDED_DTYPES, PACKED_BITS, STRING_DTYPE, Backend, BackendError,
                                BackendOptions, Device, InputSpec, LayerTime, LoadInfo,
                                check_output_shapes, dtype_of, pack_bits, register_backend,
                                unpack_bits)

log = logging.getLogger(__name__)

# Device names that pick or combine real devices; they are never in available_devices.
_VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")

# OpenVINO element type names -> numpy (ml_dtypes) names, for types numpy lacks: to_dtype()
# gives the storage type for them (float16 for bf16, uint8 for f8 and packed int4), which
# would silently read their bits as other numbers.
_DTYPES = {"bf16": "bfloat16", "f8e4m3": "float8_e4m3fn", "f8e5m2": "float8_e5m2",
           "f8e8m0": "float8_e8m0fnu", "f4e2m1": "float4_e2m1fn", "i4": "int4", "u4": "uint4",
           "u2": "uint2", "u1": "uint1", "u3": "uint3", "u6": "uint6", "nf4": "nf4",
           "string": STRING_DTYPE}
# ...and back: the OpenVINO element type a numpy array of such a type is written into.
_OV_TYPES = {"bfloat16": "bf16", "float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2",
             "float8_e8m0fnu": "f8e8m0", "float4_e2m1fn": "f4e2m1", "int4": "i4", "uint4": "u4",
             "uint2": "u2"}

# Precision tokens in exec types ("brgconv_avx2_1x1_f32", "jit_avx512_BF16", "ref_any_I8").
_PRECISION_TOKEN = re.compile(r"(?:^|_)(fp32|f32|bf16|fp16|f16|i8|u8|i32|i64|fp64|f64)(?=_|$)",
                              re.IGNORECASE)
_PRECISION_NAMES = {"fp32": "FP32", "f32": "FP32", "bf16": "BF16", "fp16": "FP16",
                    "f16": "FP16", "i8": "I8", "u8": "U8", "i32": "I32", "i64": "I64",
                    "fp64": "FP64", "f64": "FP64"}

# Lines of OpenVINO errors that locate the failure in OpenVINO's sources, not in the model.
_NOISE = ("Exception from ", "Check '", "FrontEnd API failed with", "Model wasn't fully converted",
          "Summary:", "While validating", "-- ", "Failed operations detailed log",
          "Loading input model", "Please specify OpenVINO Extensions")
# Files larger than this are not parsed a second time just to learn their declared output shapes.
_DECLARED_SHAPES_MAX_BYTES = 256 * 2**20


@dataclass
class _LayerSum:
    """Per-layer totals over the profiled inferences."""

    node_type: str
    exec_type: str
    real_us: float = 0.0  # the latest running average OpenVINO reported
    executed: bool = False
    base_us: float = 0.0  # the running average when the profile was reset (after warm-up)


@register_backend
class OpenVinoBackend(Backend):
    name = "openvino"
    formats = frozenset({"onnx", "openvino", "tflite"})
    description = "Intel OpenVINO runtime (CPU, GPU, NPU, AUTO)"
    measures_device_latency = True  # InferRequest.latency: timed in C++, as benchmark_app reads
    device_latency_source = "OpenVINO InferRequest.latency (timed in C++, as benchmark_app)"

    def __init__(self) -> None:
        self._compiled: Any = None
        self._request: Any = None
        self._prepared_arrays: dict[str, np.ndarray] = {}  # kept alive: tensors share them
        self._device = ""
        self._execution_devices: list[str] = []
        self._profiling = False
        self._profiled_runs = 0  # since the last reset
        self._total_runs = 0  # since compilation: what OpenVINO's running averages are over
        self._base_runs = 0  # _total_runs at the last reset
        self._layers: dict[str, _LayerSum] = {}
        self._original_names: dict[str, list[str]] = {}
        self._runtime_precision: dict[str, str] = {}
        self._declared: dict[str, tuple[int | str | None, ...]] = {}  # ONNX output name -> dims
        self._core: Any = None
        self._ov_model: Any = None  # kept until prepare() compiles it at static sizes
        self._config: dict[Any, Any] = {}
        self._static: dict[str, Any] = {}

    # --- discovery -----------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import openvino as ov
        except Exception as e:  # ImportError, or a broken install failing to load its libs
            return False, f"openvino is not installed or cannot load ({e})"
        return True, str(ov.__version__)

    @classmethod
    def devices(cls) -> list[Device]:
        try:
            import openvino as ov
            import openvino.properties as props

            core = ov.Core()
            names = list(core.available_devices)
            found = [Device(cls.name, n, _device_description(core, n, props)) for n in names]
        except Exception:  # never raise: a broken driver must not break the device list
            log.debug("OpenVINO device discovery failed", exc_info=True)
            return []
        auto = "automatic selection among " + (", ".join(names) if names else "no device")
        return found + [Device(cls.name, "AUTO", auto, available=bool(names),
                               reason="" if names else "OpenVINO found no device")]

    # --- loading -------------------------------------------------------------------------
    def load(self, model: Path, fmt: str, device: str, options: BackendOptions) -> LoadInfo:
        import openvino as ov

        if fmt not in self.formats:
            raise BackendError(f"OpenVINO cannot run {fmt} models; it runs "
                               f"{', '.join(sorted(self.formats))}")
        self.close()
        core = ov.Core()
        _check_device(core, device)
        config = _compile_config(options)
        start = time.perf_counter_ns()
        ov_model = _read_model(core, Path(model), fmt)
        try:
            compiled = core.compile_model(ov_model, device, config)
        except RuntimeError as e:
            raise BackendError(f"OpenVINO could not compile {Path(model).name} for {device}: "
                               f"{_first_useful_line(e)}") from e
        load_ms = (time.perf_counter_ns() - start) / 1e6
        # the read model is kept only while a static compile may follow (dynamic inputs)
        dynamic = any(p.get_partial_shape().is_dynamic for p in compiled.inputs)
        self._core, self._config = core, config
        self._ov_model = ov_model if dynamic else None
        self._static = {}
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._declared = _onnx_output_shapes(Path(model)) if fmt == "onnx" else {}
        self._device = device
        self._execution_devices = _execution_devices(compiled)
        self._profiling = options.profile_layers
        self._read_runtime_model()
        details = self._details(options, ov.__version__)
        log.info("OpenVINO loaded %s on %s in %.1f ms: %s", Path(model).name, device, load_ms,
                 details)
        return LoadInfo(load_ms=load_ms, details=details)

    def _details(self, options: BackendOptions, version: str) -> dict[str, Any]:
        """What the compiled model really uses: hints are requests, the device decides."""
        import openvino.properties as props
        import openvino.properties.hint as hints

        c = self._compiled
        precision = _type_name(_prop(c, hints.inference_precision())) or self._observed_precision()
        streams = _prop(c, props.num_streams())
        details: dict[str, Any] = {
            "device": self._device,
            "execution_devices": list(self._execution_devices),
            "inference_precision": precision,
            "performance_hint": _enum_name(_prop(c, hints.performance_mode()))
            or options.performance_hint,
            "streams": _as_int(streams),
            "optimal_infer_requests": _prop(c, props.optimal_number_of_infer_requests()),
            "threads": _prop(c, props.inference_num_threads()),
            "profiling": self._profiling,
            "openvino": str(version),
        }
        if options.precision is not None:
            details["precision_requested"] = options.precision
            if precision and precision != options.precision:
                log.warning("OpenVINO: %s precision requested, the device runs %s",
                            options.precision, precision)
        return details

    def _read_runtime_model(self) -> None:
        """Fused-layer names and runtime precisions, for mapping profile rows to graph nodes."""
        self._original_names, self._runtime_precision = {}, {}
        try:
            runtime = self._compiled.get_runtime_model()
            ops = runtime.get_ordered_ops()
        except RuntimeError:
            log.debug("no runtime model for %s", self._device, exc_info=True)
            return
        for op in ops:
            info = op.get_rt_info()
            name = op.get_friendly_name()
            if "originalLayersNames" in info:
                originals = info["originalLayersNames"].astype(str)
                self._original_names[name] = [n for n in originals.split(",") if n]
            if "runtimePrecision" in info:
                self._runtime_precision[name] = info["runtimePrecision"].astype(str)

    def _observed_precision(self) -> str | None:
        """AUTO/MULTI hide INFERENCE_PRECISION_HINT: take the compute layers' runtime precision."""
        counts = Counter(p for p in self._runtime_precision.values()
                         if p in ("f32", "f16", "bf16", "i8", "u8"))
        return counts.most_common(1)[0][0] if counts else None

    # --- running -------------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        self._require_loaded()
        return [InputSpec(name=_port_name(p), dtype=_numpy_dtype(p.get_element_type()),
                          shape=_shape(p.get_partial_shape()))
                for p in self._compiled.inputs]

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._require_loaded()
        feeds = {name: _tensor(arr, shared=False) for name, arr in inputs.items()}
        try:
            # Outputs are read from the request's tensors below, where their element type and
            # shape are known (OVDict gives bf16 as float16 and packed int4 as bytes).
            with warnings.catch_warnings():  # "string results are copied": they are read below
                warnings.simplefilter("ignore", RuntimeWarning)
                self._request.infer(feeds, share_outputs=True)
            outputs = [_output_array(self._request.get_output_tensor(i))
                       for i in range(len(self._compiled.outputs))]
        except BackendError:
            raise
        except (RuntimeError, TypeError, ValueError, KeyError) as e:
            raise BackendError(f"OpenVINO inference failed: {_first_useful_line(e)}") from e
        if self._declared:
            names = [next((n for n in p.get_names() if n in self._declared), "")
                     for p in self._compiled.outputs]
            check_output_shapes("OpenVINO", names, [self._declared.get(n) for n in names],
                                outputs)
        if self._profiling:  # PERF_COUNT runs are already slower; this adds well under 1 ms
            self._accumulate(self._request.get_profiling_info())
        return outputs

    def prepare(self, inputs: dict[str, np.ndarray]) -> None:
        """Set the request's input tensors once, sharing the arrays' memory, as benchmark_app
        does: converting a dict of arrays on every call costs more than a small model."""
        import openvino as ov

        self._require_loaded()
        self._prepared_arrays = {k: np.asarray(v, order="C") for k, v in inputs.items()}
        try:
            for name, arr in self._prepared_arrays.items():
                self._request.set_tensor(name, _tensor(arr, shared=True))
        except BackendError:
            raise
        except (RuntimeError, TypeError, ValueError, KeyError) as e:
            raise BackendError(f"OpenVINO refused the inputs: {_first_useful_line(e)}") from e

    def fix_shapes(self, inputs: dict[str, np.ndarray]) -> None:
        """A model with dynamic dims is compiled again at these inputs' sizes, as benchmark_app
        does with -shape: OpenVINO specialises its kernels for static shapes and skips shape
        inference on every request (the sample's 0.21 ms became 0.19 ms). Inputs of other
        sizes are refused afterwards."""
        import openvino as ov

        self._require_loaded()

        ports = {_port_name(p): p for p in self._compiled.inputs}
        if self._static or self._ov_model is None:
            return  # static from the start, or already tried
        if set(inputs) != set(ports) or not all(isinstance(a, np.ndarray) and a.dtype.kind in
                                                 "biuf" for a in inputs.values()):
            return  # strings, sequences or missing inputs: keep the dynamic model
        shapes = {name: list(np.shape(arr)) for name, arr in inputs.items()}
        start = time.perf_counter_ns()
        try:
            model = self._ov_model.clone()
            model.reshape({ports[name].get_any_name(): ov.PartialShape(shape)
                           for name, shape in shapes.items()})
            compiled = self._core.compile_model(model, self._device, self._config)
        except (RuntimeError, TypeError, ValueError) as e:  # the dynamic model still runs
            log.info("OpenVINO could not compile at static sizes %s, keeping dynamic dims: %s",
                     shapes, _first_useful_line(e))
            self._static = {"shapes": None, "why_not": _first_useful_line(e)}
            return
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._execution_devices = _execution_devices(compiled)
        self._read_runtime_model()
        self._total_runs = self._base_runs = self._profiled_runs = 0
        self._layers = {}
        self._static = {"shapes": shapes,
                        "compile_ms": (time.perf_counter_ns() - start) / 1e6}
        self._ov_model = None  # the compiled model holds what it needs

    def prepared_details(self) -> dict[str, Any]:
        """How the timed loop's model differs from the one loaded (static sizes, recompiled)."""
        if not self._static:
            return {}
        return {"compiled_static_shapes": self._static.get("shapes"),
                "static_compile_ms": self._static.get("compile_ms"),
                **({"static_refused": self._static["why_not"]} if "why_not" in self._static
                   else {})}

    def run_prepared(self) -> None:
        self._request.infer()
        if self._profiling:
            self._accumulate(self._request.get_profiling_info())

    def request_queue(self, jobs: int = 0) -> Any:
        """An AsyncInferQueue of `jobs` requests on the compiled model (0: the device's optimal
        number), for throughput with several requests in flight on several streams, as
        benchmark_app runs it. Compiled at static sizes first where fix_shapes() was called."""
        import openvino as ov

        self._require_loaded()
        return ov.AsyncInferQueue(self._compiled, jobs)

    def device_latency_ms(self) -> float | None:
        """OpenVINO's own time of the last request, in ms (what benchmark_app reports): it
        leaves out the Python binding's call overhead."""
        try:
            return float(self._request.latency)
        except (AttributeError, RuntimeError, TypeError):
            return None

    def _accumulate(self, infos: list[Any]) -> None:
        import openvino as ov

        executed = ov.ProfilingInfo.Status.EXECUTED
        self._profiled_runs += 1
        self._total_runs += 1
        for info in infos:
            row = self._layers.get(info.node_name)
            if row is None:
                row = self._layers[info.node_name] = _LayerSum(info.node_type, info.exec_type)
            row.real_us = info.real_time.total_seconds() * 1e6
            row.executed = row.executed or info.status == executed

    def reset_layer_profile(self) -> None:
        """Forget the layer times so far (e.g. warm-up runs); the next ones start afresh."""
        for row in self._layers.values():
            row.base_us, row.executed = row.real_us, False
        self._base_runs = self._total_runs
        self._profiled_runs = 0

    def _window_us(self, row: _LayerSum) -> float:
        """Mean time of a layer over the inferences since the reset, from OpenVINO's running
        averages since compilation (see the module docstring)."""
        m, k = self._total_runs, self._base_runs
        if m <= k:
            return 0.0
        return max(0.0, (m * row.real_us - k * row.base_us) / (m - k))

    def layer_profile(self, node_ids_by_name: dict[str, str]) -> list[LayerTime]:
        self._require_loaded()
        if not self._profiling:
            raise BackendError("layer times need the model loaded with per-layer profiling on "
                               "(profile_layers=True)")
        if self._profiled_runs == 0:
            raise BackendError("no layer times yet: run at least one inference before asking "
                               "for the per-layer profile")
        device = ",".join(self._execution_devices) or self._device
        rows = [self._layer_time(name, row, node_ids_by_name, device)
                for name, row in self._layers.items()
                if row.executed or self._window_us(row) > 0]
        rows.sort(key=lambda r: r.time_ms, reverse=True)
        return rows

    def _layer_time(self, name: str, row: _LayerSum, node_ids_by_name: dict[str, str],
                    device: str) -> LayerTime:
        precision = _precision_of(row.exec_type) or _precision_of(
            self._runtime_precision.get(name, ""))
        return LayerTime(
            name=name,
            op_type=row.node_type,
            time_ms=self._window_us(row) / 1e3,
            node_id=self._node_id(name, node_ids_by_name),
            device=device,
            exec_type=row.exec_type,
            precision=precision,
            fallback=_is_fallback(self._device, self._execution_devices),
        )

    def _node_id(self, name: str, node_ids_by_name: dict[str, str]) -> str | None:
        """Exact name, then the layers OpenVINO fused into this one, then a stripped suffix."""
        if name in node_ids_by_name:
            return node_ids_by_name[name]
        for original in self._original_names.get(name, []):
            if original in node_ids_by_name:
                return node_ids_by_name[original]
        for candidate in _stripped_names(name):
            if candidate in node_ids_by_name:
                return node_ids_by_name[candidate]
        return None

    def close(self) -> None:
        self._request = None
        self._compiled = None
        self._ov_model = self._core = None
        self._static = {}
        self._layers = {}
        self._profiled_runs = self._total_runs = self._base_runs = 0

    def _require_loaded(self) -> None:
        if self._request is None:
            raise BackendError("no model loaded in the OpenVINO backend: call load() first")


# --- helpers -------------------------------------------------------------------------------

def _device_description(core: Any, name: str, props: Any) -> str:
    try:
        return str(core.get_property(name, props.device.full_name()))
    except RuntimeError:
        return name


def _check_device(core: Any, device: str) -> None:
    """Refuse an unknown device with the list of real ones, before OpenVINO loads plugins."""
    available = list(core.available_devices)
    base = device.split(":", 1)[0]
    known = set(available) | {d.split(".", 1)[0] for d in available}
    if base in _VIRTUAL_DEVICES or device in known or device.split(".", 1)[0] in known:
        return  # "GPU.1" may name a device listed as "GPU"; OpenVINO itself checks the index
    raise BackendError(f"OpenVINO has no device {device!r} here; available: "
                       f"{', '.join(available + ['AUTO']) if available else 'none'}")


def _compile_config(options: BackendOptions) -> dict[Any, Any]:
    import openvino.properties as props
    import openvino.properties.hint as hints

    config: dict[Any, Any] = {
        hints.performance_mode: getattr(hints.PerformanceMode, options.performance_hint),
        props.enable_profiling: options.profile_layers,
    }
    if options.threads is not None:
        config[props.inference_num_threads] = options.threads
    if options.streams is not None:
        config[props.num_streams] = options.streams
    if options.precision is not None:
        config[hints.inference_precision] = options.precision
    return config


def _read_model(core: Any, path: Path, fmt: str) -> Any:
    if fmt == "openvino":
        path = path.with_suffix(".xml")  # a .bin was given: its graph is the .xml beside it
    if not path.is_file():
        raise BackendError(f"{path}: no such model file")
    try:
        if fmt == "openvino":
            weights = path.with_suffix(".bin")
            if weights.is_file():
                return core.read_model(str(path), str(weights))
        return core.read_model(str(path))
    except RuntimeError as e:
        raise BackendError(_read_error_message(path, e)) from e


def _read_error_message(path: Path, err: Exception) -> str:
    """One sentence naming the ops OpenVINO could not convert, plus the reason it gave."""
    text = str(err)
    missing = _ops_after(text, r"No conversion rule found for operations|"
                               r"OpenVINO does not support the following \w+ operations")
    failed = _ops_after(text, r"Conversion is failed for")
    detail = _first_useful_line(err, default="")
    if missing:
        msg = (f"OpenVINO cannot read {path.name}: it has no conversion for the "
               f"operation{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
               "(a custom or newer op; it needs an OpenVINO extension, or another runtime)")
        if failed:
            msg += f"; conversion also failed for {', '.join(failed)}"
    elif failed:
        msg = (f"OpenVINO cannot read {path.name}: converting the "
               f"operation{'s' if len(failed) > 1 else ''} {', '.join(failed)} failed")
    else:
        msg = f"OpenVINO cannot read {path.name}"
    if detail == "Unsupported type":
        detail = ("it uses an element type this OpenVINO does not support (e.g. float8 FNUZ or "
                  "2-bit integers)")
    return f"{msg}: {detail}" if detail else msg


def _ops_after(text: str, label: str) -> list[str]:
    ops: list[str] = []
    for m in re.finditer(rf"(?:{label})\s*:\s*([^\n]+)", text):
        ops += [op.strip() for op in m.group(1).split(",") if op.strip()]
    return list(dict.fromkeys(ops))


def _first_useful_line(err: Exception, default: str | None = None) -> str:
    """The first line saying what is wrong, not where in OpenVINO's sources it failed; a line
    ending in ':' takes the (short) lines that complete it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if not line.startswith(_NOISE):
            if line.endswith(":"):
                more = [x for x in lines[i + 1:i + 3] if not x.startswith(_NOISE)]
                line = " ".join([line, "; ".join(more)]) if more else line.rstrip(":")
            return line
    if default is not None:
        return default
    return lines[-1] if lines else type(err).__name__


def _onnx_output_shapes(path: Path) -> dict[str, tuple[int | str | None, ...]]:
    """The output shapes an ONNX file declares (OpenVINO keeps only its own inference of them),
    to catch outputs OpenVINO computes differently. Empty when the file is too large to parse
    again cheaply or cannot be parsed (OpenVINO read it, so that is not an error here)."""
    try:
        if path.stat().st_size > _DECLARED_SHAPES_MAX_BYTES:
            return {}
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - only a safety check is lost
        log.debug("cannot read the declared output shapes of %s", path, exc_info=True)
        return {}
    out: dict[str, tuple[int | str | None, ...]] = {}
    for o in graph.output:
        t = o.type.tensor_type if o.type.HasField("tensor_type") else None
        if t is None or not t.HasField("shape"):
            continue
        out[o.name] = tuple(int(d.dim_value) if d.HasField("dim_value") else
                            (d.dim_param or None) for d in t.shape.dim)
    return out


def _prop(compiled: Any, key: str) -> Any:
    """A compiled-model property, or None where the device (e.g. AUTO) does not expose it."""
    try:
        return compiled.get_property(key)
    except (RuntimeError, TypeError):
        return None


def _execution_devices(compiled: Any) -> list[str]:
    import openvino.properties as props

    return [str(d) for d in _prop(compiled, props.execution_devices()) or []]


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _type_name(element_type: Any) -> str | None:
    return element_type.get_type_name() if element_type is not None else None


def _enum_name(value: Any) -> str | None:
    return str(value).rsplit(".", 1)[-1] if value is not None else None


def _port_name(port: Any) -> str:
    """The name users know the input by. A port can carry several tensor names (after a Cast
    is fused, the fp16 converter's "graph_input_cast_0" sits beside "input"): prefer the
    Parameter's own name, then the first name in sorted order, so the choice is stable."""
    names = port.get_names()
    friendly = port.get_node().get_friendly_name()
    if not names or friendly in names:
        return friendly
    return sorted(names)[0]


def _numpy_dtype(element_type: Any) -> str:
    name = element_type.get_type_name()
    if name in _DTYPES:
        return _DTYPES[name]
    try:
        return np.dtype(element_type.to_dtype()).name
    except (RuntimeError, TypeError, ValueError):
        return name


def _tensor(arr: np.ndarray, shared: bool) -> Any:
    """An input as OpenVINO takes it. Arrays of types numpy lacks are written bit for bit into
    a tensor of the matching element type (given as arrays, OpenVINO would convert their
    values to the storage type: float8 1.5 would arrive as the byte 1); strings go as string
    tensors. Plain arrays are passed as they are (shared: the prepared loop's, without a copy)."""
    import openvino as ov

    name = arr.dtype.name if isinstance(arr, np.ndarray) else ""
    if name in EXTENDED_DTYPES:
        if name not in _OV_TYPES:
            raise BackendError(f"OpenVINO has no {name} element type: it cannot take this "
                               "input")
        tensor = ov.Tensor(getattr(ov.Type, _OV_TYPES[name]), ov.Shape(list(arr.shape)))
        if arr.size:
            dest = tensor.data
            raw = pack_bits(arr) if name in PACKED_BITS else np.asarray(arr, order="C")
            dest.reshape(-1)[:] = raw.reshape(-1).view(dest.dtype)
        return tensor
    if isinstance(arr, np.ndarray) and arr.dtype.kind in "USO":
        return ov.Tensor(np.asarray(arr, dtype=np.str_))
    if shared and isinstance(arr, np.ndarray):
        return ov.Tensor(arr, shared_memory=True)
    return arr


def _output_array(tensor: Any) -> np.ndarray:
    """A copy of an output tensor as numpy, in its declared shape and real element type."""
    et = tensor.get_element_type().get_type_name()
    shape = tuple(tensor.get_shape())
    name = _DTYPES.get(et)
    if name == STRING_DTYPE:
        out = np.array(tensor.str_data, dtype=np.str_).reshape(shape)
    elif name in PACKED_BITS:
        out = unpack_bits(tensor.data, shape, name)
    elif name in EXTENDED_DTYPES:
        out = np.ascontiguousarray(tensor.data).view(dtype_of(name)).reshape(shape).copy()
    elif name is not None:  # nf4, u1, u3, u6: no numpy type to give them as
        raise BackendError(f"the model outputs OpenVINO's {et} element type, which ModelDeck "
                           "cannot read back as numbers")
    else:
        out = np.array(tensor.data, copy=True)
    if out.shape != shape:  # never hand on a silently wrong shape
        raise BackendError(f"OpenVINO returned an output of shape {list(out.shape)} for "
                           f"declared shape {list(shape)} ({et})")
    return out


def _shape(pshape: Any) -> tuple[int | None, ...] | None:
    """Static dims as ints (0 included), dynamic ones as None; None when even the rank is
    unknown (() is a scalar)."""
    if pshape.rank.is_dynamic:
        return None
    return tuple(d.get_length() if d.is_static else None for d in pshape)


def _precision_of(exec_type: str) -> str:
    """The last precision token in an exec type: "brgconv_avx2_1x1_f32" -> "FP32"."""
    found = _PRECISION_TOKEN.findall(exec_type)
    return _PRECISION_NAMES[found[-1].lower()] if found else ""


def _is_fallback(asked: str, execution_devices: list[str]) -> bool:
    """An accelerator was asked for, yet everything ran on the CPU."""
    base = asked.split(":", 1)[0].split(".", 1)[0]
    if base in ("CPU", "AUTO") or not execution_devices:
        return False
    return all(d.strip("()").split(".", 1)[0] == "CPU" for d in execution_devices)


def _stripped_names(name: str) -> list[str]:
    """Conservative guesses at the graph node behind a renamed layer.

    "conv1/WithoutBiases" -> "conv1" (one "/" segment); "conv1_fused" -> "conv1" (one "_"
    segment, only when it holds no digit, so "conv_2" never maps to "conv").
    """
    guesses = []
    if "/" in name:
        guesses.append(name.rsplit("/", 1)[0])
    head, _, tail = name.rpartition("_")
    if head and tail and not any(ch.isdigit() for ch in tail):
        guesses.append(head)
    return guesses
