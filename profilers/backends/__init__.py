"""Runtimes that execute a model: one module per backend, registered by name.

Add a backend: a module here with a `@register_backend` class, imported at the bottom of this
file, and one test. `devices()` never raises (an absent runtime lists no devices); the
framework import happens inside methods so the registry loads fast and without the framework.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converters.errors import ModelDeckError


class BackendError(ModelDeckError):
    """The runtime refused the model or the device; the message names what and why."""


@dataclass(frozen=True)
class Device:
    backend: str
    name: str  # what the user passes: "CPU", "CUDA", "GPU.0", "AUTO", ...
    description: str = ""
    available: bool = True
    reason: str = ""  # why not available


@dataclass(frozen=True)
class BackendOptions:
    threads: int | None = None  # intra-op threads; None = the runtime's default
    inter_threads: int | None = None
    graph_optimization: str = "all"  # ONNX Runtime: disable | basic | extended | all
    performance_hint: str = "LATENCY"  # OpenVINO: LATENCY | THROUGHPUT
    streams: int | None = None  # OpenVINO
    precision: str | None = None  # OpenVINO inference precision hint: f32 | f16 | bf16
    # ONNX Runtime's idle threads spin waiting for work; None: off on machines with few cores
    spinning: bool | None = None
    profile_layers: bool = False  # set up per-layer profiling (a separate, slower run)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError("threads must be at least 1")
        if self.graph_optimization not in ("disable", "basic", "extended", "all"):
            raise ValueError("graph optimisation must be disable, basic, extended or all")
        if self.performance_hint not in ("LATENCY", "THROUGHPUT"):
            raise ValueError("performance hint must be LATENCY or THROUGHPUT")
        if self.precision not in (None, "f32", "f16", "bf16"):
            raise ValueError("precision must be f32, f16 or bf16")


@dataclass(frozen=True)
class InputSpec:
    name: str
    # numpy name; ml_dtypes names for what numpy lacks ("bfloat16", "float8_e4m3fn", "int4");
    # "string" for text; what the runtime says (e.g. "seq(tensor(float))") for non-tensors
    dtype: str
    # str / None: dynamic dim; 0 is a valid static dim; None: rank unknown
    shape: tuple[int | str | None, ...] | None


# Element types numpy lacks. ml_dtypes (an onnx dependency) gives them numpy dtypes, one element
# per byte even for the sub-byte ones; runtimes store those packed, low bits first.
EXTENDED_DTYPES = frozenset({
    "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
    "float8_e8m0fnu", "float4_e2m1fn", "int4", "uint4", "int2", "uint2"})
PACKED_BITS = {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2}
STRING_DTYPE = "string"


def dtype_of(name: str) -> np.dtype | None:
    """The numpy dtype for a spec's dtype name (str for "string"); None when numpy and
    ml_dtypes have none (sequences, maps, optionals, nf4...)."""
    if name == STRING_DTYPE:
        return np.dtype(np.str_)
    if name in EXTENDED_DTYPES:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, name))
    try:
        dt = np.dtype(name)
    except (TypeError, ValueError):
        return None
    return dt if dt.kind in "biufc" else None


def pack_bits(arr: np.ndarray) -> np.ndarray:
    """Sub-byte elements (int4, uint4, float4, int2...) packed into bytes, low bits first, as
    ONNX, ONNX Runtime and OpenVINO store them."""
    bits = PACKED_BITS[arr.dtype.name]
    per_byte = 8 // bits
    codes = np.ascontiguousarray(arr).reshape(-1).view(np.uint8) & ((1 << bits) - 1)
    codes = np.concatenate([codes, np.zeros(-codes.size % per_byte, np.uint8)])
    out = np.zeros(codes.size // per_byte, np.uint8)
    for k in range(per_byte):
        out |= codes[k::per_byte] << (k * bits)
    return out


def check_output_shapes(runtime: str, names: list[str],
                        declared: list[tuple[int | str | None, ...] | None],
                        outputs: list[Any]) -> None:
    """Refuse outputs whose shape contradicts the model's own static dims: the runtime then
    computed something other than the model says (OpenVINO's rfft with an extra axis, packed
    int4 read as bytes), and handing those arrays on would be a silently wrong result.
    Dynamic dims (str / None, or a negative size: Paddle exports declare a free batch as -1)
    and undeclared or rank-0 shapes are not checked."""
    for name, want, got in zip(names, declared, outputs):
        if not want or not isinstance(got, np.ndarray):
            continue
        if got.ndim != len(want) or any(isinstance(w, int) and w >= 0 and w != g
                                        for w, g in zip(want, got.shape)):
            shown = ", ".join("?" if not isinstance(w, int) or w < 0 else str(w)
                              for w in want)
            raise BackendError(f"{runtime} returned output {name!r} with shape "
                               f"{list(got.shape)} where the model declares [{shown}]: "
                               f"{runtime} computes this model differently from its "
                               "definition; try another runtime")


def unpack_bits(raw: np.ndarray, shape: tuple[int, ...], dtype_name: str) -> np.ndarray:
    """The inverse of pack_bits: packed bytes -> one element per value, in `shape`."""
    bits = PACKED_BITS[dtype_name]
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    if raw.size * (8 // bits) < count:
        raise BackendError(f"the runtime returned {raw.size} bytes for {count} {dtype_name} "
                           f"values of shape {list(shape)}")
    shifts = np.arange(0, 8, bits, dtype=np.uint8)
    # ml_dtypes keeps each value in the low bits of its byte, as pack_bits reads them
    codes = ((raw[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[:count]
    return np.ascontiguousarray(codes, np.uint8).view(dtype_of(dtype_name)).reshape(shape)


@dataclass
class LayerTime:
    """Time of one runtime layer per inference, mapped to a ModelGraph node when possible."""

    name: str  # the runtime's layer / kernel name
    op_type: str
    time_ms: float  # mean per inference
    node_id: str | None = None
    device: str = ""  # provider / device it ran on
    exec_type: str = ""  # kernel or OpenVINO exec type
    precision: str = ""
    fallback: bool = False  # ran on the CPU although another device was asked for


@dataclass
class LoadInfo:
    load_ms: float
    details: dict[str, Any] = field(default_factory=dict)  # providers, precision, streams...


class Backend:
    name: ClassVar[str]
    formats: ClassVar[frozenset[str]]
    description: ClassVar[str] = ""
    # the runtime times each request itself (OpenVINO in C++): device_latency_ms() has it
    measures_device_latency: ClassVar[bool] = False
    device_latency_source: ClassVar[str] = "the runtime's own timer"  # named in the report
    # how layer_profile() summarises a layer over the profiled inferences: "mean" | "median"
    layer_statistic: ClassVar[str] = "mean"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(installed?, version or reason). Never raises."""
        raise NotImplementedError

    @classmethod
    def devices(cls) -> list[Device]:
        """Devices this runtime can use here. Never raises; [] when not installed."""
        raise NotImplementedError

    def load(self, model: Path, fmt: str, device: str, options: BackendOptions) -> LoadInfo:
        raise NotImplementedError

    def input_specs(self) -> list[InputSpec]:
        raise NotImplementedError

    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; returns when the device work is done."""
        raise NotImplementedError

    def prepare(self, inputs: dict[str, np.ndarray]) -> None:
        """Bind the inputs of a timed loop once, before it starts (DESIGN §4: inputs are
        prepared outside the measured call). Runtimes that can bind without copies override."""
        self._prepared = inputs

    def run_prepared(self) -> None:
        """One inference on the prepared inputs, blocking until the device is done. Outputs
        are not fetched: the timed loop does not need them."""
        self.infer(self._prepared)

    def fix_shapes(self, inputs: dict[str, np.ndarray]) -> None:
        """Commit to these inputs' sizes where the runtime runs faster for it (OpenVINO
        compiles static kernels, as benchmark_app -shape does); a timed loop calls it before
        prepare(). Other sizes may be refused afterwards."""

    def prepared_details(self) -> dict[str, Any]:
        """What fix_shapes() changed in the runtime's setup (e.g. recompiled at static sizes),
        for the report's runtime details."""
        return {}

    def device_latency_ms(self) -> float | None:
        """The runtime's own time of the last request (None where it keeps none): it leaves
        out the Python call around it, which matters on sub-millisecond models."""
        return None

    def profiled_run_times_ms(self) -> list[float] | None:
        """The runtime's own end-to-end time of each profiled inference (after layer_profile),
        where its profiler records one; None otherwise."""
        return None

    def reset_layer_profile(self) -> None:
        """Forget per-layer times so far (the runner calls it after warm-up)."""

    def layer_profile(self, node_ids_by_name: dict[str, str]) -> list[LayerTime]:
        """Per-layer times of the inferences since load or the last reset (needs
        options.profile_layers)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


BACKENDS: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    if cls.name in BACKENDS:
        raise ValueError(f"backend {cls.name!r} registered twice")
    BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str) -> type[Backend]:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of: "
                           f"{', '.join(sorted(BACKENDS))}") from None


from profilers.backends import onnxruntime_backend, openvino_backend, torch_backend  # noqa: E402,F401
