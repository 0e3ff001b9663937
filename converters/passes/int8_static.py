"""int8-static: INT8 weights and activations, activation ranges calibrated on real inputs.

The fastest INT8 form on CPUs and NPUs: every quantized op runs integer kernels with fixed scales.
ONNX: onnxruntime.quantization.quantize_static (QDQ by default) after quant_pre_process.
OpenVINO: nncf.quantize (FakeQuantize nodes; the weights are stored as int8 in the saved IR).
Both read the calibration inputs through a feeder that reports progress and honours cancel.

Transformers (attention, and more dense layers than convolutions: onnx_is_transformer) take
NNCF's transformer recipe on both formats (model_type=TRANSFORMER: SmoothQuant moves activation
outlier features into the weights, and ops that do not bear INT8 stay float; on ONNX it writes
QDQ that ORT runs). Measured on a BERT-style encoder with trained-like weight spread: ORT
quantize_static cosine 0.891 (0.935 with MatMul/Gemm only), NNCF's default 0.863, NNCF
transformer 0.998. model_type=other keeps the CNN recipe; the sample CNN keeps 99.33% accuracy.
A CNN with an attention neck (rapidocr PP-OCRv6 rec: 57 Conv, 9 dense) did better with the CNN
recipe (cosine 0.983 vs 0.960), so convolution-heavy models count as "other".
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from converters.passes import (
    CalibrationData, Cancelled, ModelFile, Pass, PassContext, PassError, PassResult,
    register_pass,
)
from converters.passes._common import (
    check_node_names, check_onnx_runs, error_line, graph_inputs, in_directory, is_large_onnx,
    load_onnx,
    node_names, onnx_files, onnx_input_dtypes, op_count_changes, op_counts,
    openvino_int_weight_layers, openvino_op_counts, ort_error, output_stem, quant_prepare,
    normalise_reduce_range, onnx_is_transformer, openvino_is_transformer, read_openvino,
    remove_files, resolve_reduce_range, save_onnx, save_openvino,
)

log = logging.getLogger(__name__)

ONNX_BATCH = 16  # calibration batch for models with a free batch dimension
ENTROPY_BINS = 1024  # histogram bins for the entropy (KL) search over 128 quantized levels
CALIB_SPAN = (0.2, 0.85)  # the share of the progress bar calibration takes


@register_pass
class Int8Static(Pass):
    name = "int8-static"
    accepts = frozenset({"onnx", "openvino"})
    stage = "precision"  # see converters/passes/order.py
    description = "INT8 weights and activations, calibrated on sample inputs"
    needs_calibration = True

    @dataclass(frozen=True)
    class Options:
        quant_format: Literal["qdq", "qoperator"] = "qdq"  # ONNX only
        per_channel: bool = True  # ONNX (NNCF quantizes weights per channel always)
        method: Literal["minmax", "entropy", "percentile"] = "minmax"  # ONNX calibration
        exclude: tuple[str, ...] = ()  # node names kept in float
        samples: int = 300  # calibration samples used (at most those given)
        preprocess: bool = True  # ONNX: ORT's quant_pre_process first
        # ONNX: 7-bit weights; "auto": on for x86 CPUs without VNNI (see cpu_saturates_int8)
        reduce_range: Literal["auto", "true", "false"] = "auto"
        # "auto": "transformer" when the model has attention, else "other"
        model_type: Literal["auto", "transformer", "other"] = "auto"

        def __post_init__(self) -> None:
            if self.model_type not in ("auto", "transformer", "other"):
                raise ValueError("model_type must be one of auto, transformer, other")
            if self.samples < 1:
                raise ValueError("samples must be at least 1")
            normalise_reduce_range(self)

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        calib = ctx.need_calibration(self.name)
        messages = [calib.warning] if calib.warning else []
        if calib.count < opts.samples:
            log.info("int8-static: %d calibration samples given, %d asked for", calib.count,
                     opts.samples)
        if model.format == "openvino":
            result = _run_openvino(model, opts, ctx, calib)
        elif _onnx_transformer(model, opts):
            result = _run_onnx_nncf(model, opts, ctx, calib)
        else:
            result = _run_onnx(model, opts, ctx, calib)
        result.messages[:0] = messages
        result.details["calibration"] = calib.source
        return result


# --- calibration feed --------------------------------------------------------------------------

class _Feeder:
    """Calibration batches for ORT (get_next) and NNCF (iteration + transform), reporting
    progress and raising Cancelled between batches."""

    def __init__(self, calib: CalibrationData, names: dict[str, str], dtypes: dict[str, Any],
                 batch: int, samples: int, ctx: PassContext, *, whole_batches: bool) -> None:
        self._calib, self._names, self._dtypes = calib, names, dtypes
        self._batch, self._ctx = batch, ctx
        self.samples = min(samples, calib.count)
        if whole_batches:  # a fixed batch dimension: a short last batch would not fit
            self.samples -= self.samples % batch
            if not self.samples:
                raise PassError(f"int8-static: the model's batch size is fixed at {batch}, and "
                                f"only {min(samples, calib.count)} calibration samples were given")
        self.batches = math.ceil(self.samples / batch)
        self._seen = 0
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def feed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch keyed by model input name, in the model's dtypes; progress and cancel."""
        self._ctx.check_cancelled()
        self._seen += 1
        frac = min(1.0, self._seen / max(1, self.batches))
        lo, hi = CALIB_SPAN
        self._ctx.progress(lo + (hi - lo) * frac,
                           f"calibrating: {min(self._seen * self._batch, self.samples)}/"
                           f"{self.samples} samples")
        return {self._names[k]: np.ascontiguousarray(v, dtype=self._dtypes.get(self._names[k]))
                for k, v in arrays.items() if k in self._names}

    def raw_batches(self) -> list[dict[str, np.ndarray]]:
        return list(self._calib.batches(self._batch, limit=self.samples))

    # ORT CalibrationDataReader protocol (duck-typed: it checks for get_next only)
    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = iter(self._calib.batches(self._batch, limit=self.samples))
        arrays = next(self._iter, None)
        return None if arrays is None else self.feed(arrays)


def _match_inputs(calib: CalibrationData, model_inputs: dict[str, set[str]]) -> dict[str, str]:
    """{calibration array name: model input name}; every model input must be fed."""
    mapping = {}
    for main, aliases in model_inputs.items():
        found = next((k for k in calib.arrays if k in aliases or k == main), None)
        if found is None and len(model_inputs) == 1 and len(calib.arrays) == 1:
            found = next(iter(calib.arrays))  # one input, one array: names need not match
        if found is None:
            raise PassError(f"int8-static: the calibration data has no array for model input "
                            f"{main!r} (it has {', '.join(sorted(calib.arrays)) or 'none'})")
        mapping[found] = main
    return mapping


# --- ONNX --------------------------------------------------------------------------------------

def _run_onnx(model: ModelFile, opts: Int8Static.Options, ctx: PassContext,
              calib: CalibrationData) -> PassResult:
    ctx.progress(0.0, "reading the model")
    source = load_onnx(model.path, with_weights=False)
    before = op_counts(source)
    inputs = graph_inputs(source)
    names = _match_inputs(calib, {i.name: {i.name} for i in inputs})
    batch, fixed = _onnx_batch(inputs, min(opts.samples, calib.count), opts.method)
    feeder = _Feeder(calib, names, onnx_input_dtypes(source), batch, opts.samples, ctx,
                     whole_batches=fixed)
    check_node_names(opts.exclude, node_names(source), "exclude")
    ctx.check_cancelled()

    ctx.progress(0.05, "preparing (opset 13, shape inference, Conv+BN folding)")
    src, messages, preprocessed = quant_prepare(model, ctx, "int8-static",
                                                preprocess=opts.preprocess, min_opset=13)
    out = ctx.output_path(output_stem(model, "int8-static"), ".onnx")
    reduce_range, why = resolve_reduce_range(opts.reduce_range)
    try:
        check_node_names(opts.exclude, node_names(load_onnx(src, with_weights=False)), "exclude",
                         " after pre-processing (folded BatchNormalization nodes are gone)")
        reused = _quantize_onnx(src, out, opts, feeder, reduce_range)
        ctx.progress(CALIB_SPAN[1], "checking the result opens in ONNX Runtime")
        messages += check_onnx_runs(out, model.path, "int8-static")
        quantized = load_onnx(out, with_weights=False)
    except BaseException:
        remove_files(onnx_files(out))
        raise
    finally:
        if src != model.path:
            remove_files(onnx_files(src))
    ctx.progress(1.0, "quantized")

    after = op_counts(quantized)
    n = _onnx_quantized_nodes(quantized)
    if not n:
        messages.append("int8-static: no node was quantized")
    details = {
        "nodes_quantized": n,
        "format": opts.quant_format,
        "method": opts.method + (f" ({ENTROPY_BINS} bins)" if opts.method == "entropy" else ""),
        "per_channel": opts.per_channel,
        "reduce_range": {"on": reduce_range, "why": why},
        "preprocessed": preprocessed,
        "model_type": _model_type_detail(opts, transformer=False),
        "engine": "onnxruntime quantize_static",
        "samples_used": feeder.samples,
        "ranges": ("reused: the same model and data were calibrated earlier in this process"
                   if reused else "calibrated"),
        "excluded": list(opts.exclude),
        "op_changes": op_count_changes(before, after),
    }
    return PassResult(ModelFile(out, "onnx"), changed=n > 0, details=details, messages=messages)


def _onnx_batch(inputs, samples: int, method: str) -> tuple[int, bool]:
    """(batch size, whether it is the model's fixed one) for the calibration runs.

    A free batch dimension gets ONNX_BATCH samples per run; ORT's histogram calibrators
    (entropy, percentile) stack the batches, so there it must divide the sample count.
    """
    fixed = {i.type.tensor_type.shape.dim[0].dim_value for i in inputs
             if i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_value > 0}
    if fixed:
        return min(fixed), True
    if method == "minmax":
        return ONNX_BATCH, False
    return next(b for b in range(min(ONNX_BATCH, samples), 0, -1) if samples % b == 0), False


def _quantize_onnx(src: Path, out: Path, opts: Int8Static.Options, feeder: _Feeder,
                   reduce_range: bool) -> bool:
    """Quantize `src` into `out`; True when the activation ranges came from the memo."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[opts.method]
    qdq = opts.quant_format == "qdq"
    large = is_large_onnx(src)
    chatter = io.StringIO()  # ORT prints calibration progress; keep the CLI's stdout clean
    try:
        with contextlib.redirect_stdout(chatter), in_directory(Path(out).parent), \
                tempfile.TemporaryDirectory(dir=Path(out).parent.resolve(),
                                            prefix=".calibration-") as tmp:
            memo_key = (_ranges_key(Path(src), feeder, opts.method)
                        if _SHARING and not large else None)
            cache = Path(tmp) / "ranges.json"
            reused = memo_key in _RANGES
            if reused:  # the same model and data were calibrated in this process
                cache.write_text(_RANGES[memo_key], encoding="utf-8")
            elif method == CalibrationMethod.Entropy:
                cache = _entropy_ranges(Path(src).resolve(), feeder, Path(tmp), large)
            quantize_static(
                str(Path(src).resolve()), str(Path(out).resolve()),
                None if cache.is_file() else feeder,
                quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                per_channel=opts.per_channel,
                reduce_range=reduce_range,
                # ORT's advice for CPUs: S8S8 with QDQ, U8S8 with QOperator
                activation_type=QuantType.QInt8 if qdq else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(opts.exclude) or None,
                calibrate_method=method,
                calibration_cache_path=cache,
                use_external_data_format=large)
            if memo_key is not None and memo_key not in _RANGES and cache.is_file():
                _remember_ranges(memo_key, cache.read_text(encoding="utf-8"))
        return reused
    except Cancelled:
        raise
    except Exception as e:  # ORT raises ValueError / RuntimeError naming the node it failed on
        raise PassError(f"int8-static: ONNX Runtime's quantizer failed (calibration runs the "
                        f"model in ONNX Runtime): {ort_error(e, src)}") from e
    finally:
        log.debug("quantize_static said: %s", chatter.getvalue().strip())


# Activation ranges by (pre-processed model, calibration batches, method): variants that
# differ only in how they quantize (per-channel or per-tensor weights, QDQ or QOperator, nodes
# kept in float) calibrate the same tensors on the same data, so a caller that builds several
# (optimize's search, its sensitivity ranking) runs the calibration once, inside
# shared_calibration(). Keyed by content: a changed model, data set or method calibrates anew.
# The quantized model is byte-identical to one calibrated afresh.
_RANGES: dict[str, str] = {}
_RANGES_KEEP = 16
_SHARING = 0


@contextlib.contextmanager
def shared_calibration() -> Iterator[None]:
    """Within this block, ONNX builds of the same model on the same data share one calibration
    (ranges are forgotten when the outermost block ends)."""
    global _SHARING
    _SHARING += 1
    try:
        yield
    finally:
        _SHARING -= 1
        if not _SHARING:
            _RANGES.clear()


def _ranges_key(src: Path, feeder: _Feeder, method: str) -> str:
    import hashlib

    import onnxruntime

    h = hashlib.sha256()
    h.update(f"{onnxruntime.__version__}|{method}|{ENTROPY_BINS}|{feeder.samples}|"
             f"{feeder._batch}|{sorted(feeder._names.items())}".encode())
    with open(src, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    for name in sorted(feeder._calib.arrays):
        a = feeder._calib.arrays[name][:feeder.samples]
        h.update(name.encode() + str(a.shape).encode() + str(a.dtype).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _remember_ranges(key: str, text: str) -> None:
    while len(_RANGES) >= _RANGES_KEEP:
        _RANGES.pop(next(iter(_RANGES)))
    _RANGES[key] = text


def _entropy_ranges(src: Path, feeder: _Feeder, tmp: Path, large: bool) -> Path:
    """ORT's entropy (KL) calibrator with a 2048-bin histogram, saved as its calibration cache.

    quantize_static builds that calibrator with 128 bins for 128 quantized levels, where the KL
    search has a single candidate, so "entropy" would give min-max ranges; the cache file is
    ORT's own way to hand quantize_static ranges computed elsewhere.
    """
    from onnxruntime.quantization.calibrate import (
        CalibrationMethod, create_calibrator, save_tensors_data,
    )

    calibrator = create_calibrator(
        src, None, augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy, use_external_data_format=large,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": 128})
    calibrator.collect_data(feeder)
    cache = tmp / "ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


_QOPERATOR_PREFIXES = ("QLinear", "QGemm", "QAttention", "MatMulInteger", "ConvInteger")


def _onnx_quantized_nodes(proto) -> int:
    """Nodes that now run on quantized inputs: fed by DequantizeLinear (QDQ) or QLinear* ops."""
    produced_by_dq = {o for n in proto.graph.node if n.op_type == "DequantizeLinear"
                      for o in n.output}
    count = 0
    for n in proto.graph.node:
        if n.op_type.startswith(_QOPERATOR_PREFIXES):
            count += 1
        elif n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(
                i in produced_by_dq for i in n.input):
            count += 1
    return count


def _model_type_detail(opts: Int8Static.Options, *, transformer: bool) -> str:
    kind = "transformer" if transformer else "other"
    return kind if opts.model_type != "auto" else (
        f"{kind} (auto: {'attention' if transformer else 'no attention, or mostly convolutions'})")


def _onnx_transformer(model: ModelFile, opts: Int8Static.Options) -> bool:
    if opts.model_type != "auto":
        return opts.model_type == "transformer"
    return onnx_is_transformer(load_onnx(model.path, with_weights=False))


def _run_onnx_nncf(model: ModelFile, opts: Int8Static.Options, ctx: PassContext,
                   calib: CalibrationData) -> PassResult:
    """Transformers in ONNX: NNCF's ONNX backend with its transformer recipe, QDQ output."""
    messages = _ignored_options(opts, ("quant_format", "per_channel", "method", "reduce_range",
                                       "preprocess"), "with model_type transformer")
    ctx.progress(0.0, "reading the model")
    source = load_onnx(model.path)
    before = op_counts(source)
    inputs = graph_inputs(source)
    check_node_names(opts.exclude, node_names(source), "exclude")
    fixed = [i.type.tensor_type.shape.dim[0].dim_value for i in inputs
             if i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_value > 0]
    feeder = _Feeder(calib, _match_inputs(calib, {i.name: {i.name} for i in inputs}),
                     onnx_input_dtypes(source), min(fixed) if fixed else 1, opts.samples, ctx,
                     whole_batches=bool(fixed))
    ctx.check_cancelled()
    quantized = _nncf_quantize(source, opts, feeder, transformer=True)
    out = ctx.output_path(output_stem(model, "int8-static"), ".onnx")
    try:
        ctx.progress(CALIB_SPAN[1], "saving; checking the result opens in ONNX Runtime")
        save_onnx(quantized, out)
        messages += check_onnx_runs(out, model.path, "int8-static")
    except BaseException:
        remove_files(onnx_files(out))
        raise
    ctx.progress(1.0, "quantized")
    n = _onnx_quantized_nodes(quantized)
    if not n:
        messages.append("int8-static: NNCF quantized no node")
    details = {
        "nodes_quantized": n,
        "format": "qdq",
        "method": "nncf transformer (SmoothQuant, min-max ranges, fast bias correction)",
        "per_channel": True,
        "model_type": _model_type_detail(opts, transformer=True),
        "engine": "nncf (ONNX backend)",
        "samples_used": feeder.samples,
        "excluded": list(opts.exclude),
        "op_changes": op_count_changes(before, op_counts(quantized)),
    }
    return PassResult(ModelFile(out, "onnx"), changed=n > 0, details=details, messages=messages)


# --- OpenVINO ----------------------------------------------------------------------------------

def _run_openvino(model: ModelFile, opts: Int8Static.Options, ctx: PassContext,
                  calib: CalibrationData) -> PassResult:
    messages = _ignored_options(opts, ("quant_format", "per_channel", "method", "reduce_range"),
                                "on OpenVINO")
    ctx.progress(0.0, "reading the IR")
    ov_model = read_openvino(model.path)
    transformer = (opts.model_type == "transformer" if opts.model_type != "auto"
                   else openvino_is_transformer(ov_model))
    before = openvino_op_counts(ov_model)
    check_node_names(opts.exclude, {op.get_friendly_name() for op in ov_model.get_ops()},
                     "exclude", " (OpenVINO names its nodes itself: take them from the IR)")
    inputs = {p.get_any_name(): set(p.get_names()) for p in ov_model.inputs}
    dtypes = {p.get_any_name(): p.get_element_type().to_dtype() for p in ov_model.inputs}
    batch, fixed = _openvino_batch(ov_model)
    feeder = _Feeder(calib, _match_inputs(calib, inputs), dtypes, batch, opts.samples, ctx,
                     whole_batches=fixed)
    ctx.check_cancelled()

    quantized = _nncf_quantize(ov_model, opts, feeder, transformer=transformer)
    n = openvino_int_weight_layers(quantized)
    after = openvino_op_counts(quantized)
    ctx.progress(CALIB_SPAN[1], "saving the IR")
    out = save_openvino(quantized, ctx, output_stem(model, "int8-static"), compress_to_fp16=False)
    ctx.progress(1.0, "quantized")
    if not n:
        messages.append("int8-static: NNCF quantized no node")
    details = {
        "nodes_quantized": n,
        "fake_quantize": after.get("FakeQuantize", 0),
        "method": ("nncf transformer (SmoothQuant, min-max ranges, fast bias correction)"
                   if transformer else "nncf (min-max ranges, fast bias correction)"),
        "model_type": _model_type_detail(opts, transformer=transformer),
        "engine": "nncf (OpenVINO backend)",
        "samples_used": feeder.samples,
        "excluded": list(opts.exclude),
        "op_changes": op_count_changes(before, after),
    }
    return PassResult(ModelFile(out, "openvino"), changed=n > 0, details=details,
                      messages=messages)


def _ignored_options(opts: Int8Static.Options, keys: tuple[str, ...], where: str) -> list[str]:
    defaults = Int8Static.Options()
    ignored = [k for k in keys if getattr(opts, k) != getattr(defaults, k)]
    if not ignored:
        return []
    return [f"int8-static: {', '.join(ignored)} do not apply {where}: NNCF uses its own "
            "scheme (per-channel weights, min-max activation ranges)"]


def _openvino_batch(ov_model) -> tuple[int, bool]:
    """The IR's fixed batch size, else 1 (NNCF's advice: one sample per calibration item)."""
    for p in ov_model.inputs:
        shape = p.get_partial_shape()
        if shape.rank.is_static and len(shape) and shape[0].is_static:
            return max(1, shape[0].get_length()), True
    return 1, False


def _nncf_quantize(model, opts: Int8Static.Options, feeder: _Feeder, *, transformer: bool):
    """nncf.quantize on an OpenVINO model or an onnx.ModelProto."""
    import nncf

    dataset = nncf.Dataset(feeder.raw_batches(), feeder.feed)
    ignored = nncf.IgnoredScope(names=list(opts.exclude)) if opts.exclude else None
    kind = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    try:
        return nncf.quantize(model, dataset, subset_size=feeder.batches, ignored_scope=ignored,
                             **kind)
    except Cancelled:
        raise
    except Exception as e:  # nncf.InternalError / ValidationError / OpenVINO RuntimeError
        raise PassError(f"int8-static: NNCF quantization failed: {error_line(e)}") from e
