"""weight-only: INT8 / INT4 weights, float activations (no calibration data).

For models bound by weight memory (LLMs, big MLPs) this is the usual compression: weights shrink
4x (INT8) or ~7x (INT4, blockwise scales) and are dequantized inside the MatMul kernel.
OpenVINO: nncf.compress_weights (INT8 per channel; INT4 in groups, with `ratio` of the layers in
INT4 and the rest in INT8). ONNX: ONNX Runtime's MatMulNBitsQuantizer, which covers MatMul nodes
only; Gemm nodes are first rewritten to MatMul + Add with ORT's own helper.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from converters.passes import (
    ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes._common import (
    check_node_names, check_onnx_runs, error_line, load_onnx, node_names, onnx_files,
    op_count_changes, op_counts, openvino_int_weight_layers, openvino_weight_types, output_stem,
    read_openvino, remove_files, save_onnx, save_openvino,
)

log = logging.getLogger(__name__)


@register_pass
class WeightOnly(Pass):
    name = "weight-only"
    accepts = frozenset({"onnx", "openvino"})
    stage = "precision"  # see converters/passes/order.py
    description = "INT8 / INT4 weight compression (MatMul weights; activations stay float)"

    @dataclass(frozen=True)
    class Options:
        bits: int = 8  # 8 or 4
        group_size: int = 128  # weights per scale along the input dim (INT4; ONNX: both)
        ratio: float = 1.0  # OpenVINO INT4: share of layers in INT4, the rest INT8
        symmetric: bool = False  # symmetric needs no zero point: smaller, a little less exact
        exclude: tuple[str, ...] = ()  # node names left uncompressed
        gemm_to_matmul: bool = True  # ONNX: rewrite Gemm as MatMul + Add so it is covered

        def __post_init__(self) -> None:
            if self.bits not in (4, 8):
                raise ValueError(f"bits must be 4 or 8, not {self.bits}")
            if self.group_size < 16 or self.group_size & (self.group_size - 1):
                raise ValueError(f"group_size must be a power of two >= 16, not {self.group_size}")
            if not 0.0 < self.ratio <= 1.0:
                raise ValueError(f"ratio must be in (0, 1], not {self.ratio}")

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        if model.format == "openvino":
            return _run_openvino(model, opts, ctx)
        return _run_onnx(model, opts, ctx)


# --- ONNX --------------------------------------------------------------------------------------

def _run_onnx(model: ModelFile, opts: WeightOnly.Options, ctx: PassContext) -> PassResult:
    ctx.progress(0.0, "reading the model")
    proto = load_onnx(model.path)
    check_node_names(opts.exclude, node_names(proto), "exclude")
    before = op_counts(proto)
    messages = ([] if opts.ratio == 1.0 else
                ["weight-only: ratio applies to OpenVINO only; every covered MatMul is compressed"])
    gemms = _gemm_to_matmul(proto) if opts.gemm_to_matmul and before.get("Gemm") else 0
    if not _has_constant_matmul(proto):
        return _nothing_to_compress(model, proto, before, opts, messages)
    ctx.check_cancelled()

    ctx.progress(0.2, f"compressing MatMul weights to INT{opts.bits}")
    quantized = _matmul_nbits(proto, opts)
    after = op_counts(quantized)
    compressed = after.get("com.microsoft.MatMulNBits", 0)
    if not compressed:
        return _nothing_to_compress(model, proto, before, opts, messages)
    out = ctx.output_path(output_stem(model, f"int{opts.bits}-weights"), ".onnx")
    try:
        save_onnx(quantized, out)
        ctx.progress(0.8, "checking the result opens in ONNX Runtime")
        messages += check_onnx_runs(out, model.path, "weight-only")
    except BaseException:
        remove_files(onnx_files(out))
        raise
    ctx.progress(1.0, "compressed")
    details = {
        "nodes_compressed": compressed,
        "bits": opts.bits,
        "block_size": opts.group_size,
        "symmetric": opts.symmetric,
        "gemm_rewritten": gemms,
        "excluded": list(opts.exclude),
        "op_changes": op_count_changes(before, after),
    }
    if before.get("Gemm", 0) > gemms:
        messages.append(f"weight-only: {before['Gemm'] - gemms} Gemm node(s) were left in float "
                        "(MatMulNBits covers MatMul only; transposed-A or scaled Gemms are not "
                        "rewritten)")
    return PassResult(ModelFile(out, "onnx"), changed=True, details=details, messages=messages)


def _gemm_to_matmul(proto) -> int:
    """ORT's own Gemm -> MatMul (+ Add) rewrite (the one quantize_dynamic uses), in place.

    Returns how many Gemm nodes were rewritten (those with alpha = beta = 1 and no transA).
    """
    from onnxruntime.quantization.onnx_model import ONNXModel

    count = sum(1 for n in proto.graph.node if n.op_type == "Gemm")
    wrapped = ONNXModel(proto)
    wrapped.replace_gemm_with_matmul()
    wrapped.remove_unused_constant()  # the untransposed originals of transB weights
    return count - sum(1 for n in proto.graph.node if n.op_type == "Gemm")


def _has_constant_matmul(proto) -> bool:
    inits = {t.name: t for t in proto.graph.initializer}
    return any(n.op_type == "MatMul" and len(n.input) > 1 and n.input[1] in inits
               and len(inits[n.input[1]].dims) >= 2 for n in proto.graph.node)


def _matmul_nbits(proto, opts: WeightOnly.Options):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # a Gemm named n became a MatMul named n_MatMul: exclude both names
    exclude = [*opts.exclude, *(f"{n}_MatMul" for n in opts.exclude)]
    try:
        quantizer = MatMulNBitsQuantizer(proto, bits=opts.bits, block_size=opts.group_size,
                                         is_symmetric=opts.symmetric, nodes_to_exclude=exclude,
                                         op_types_to_quantize=("MatMul",))
        quantizer.process()
    except Exception as e:  # AssertionError / ValueError naming the node or the block size
        raise PassError(f"weight-only: ONNX Runtime's MatMulNBits quantizer failed: "
                        f"{error_line(e)}") from e
    return quantizer.model.model


def _nothing_to_compress(model: ModelFile, proto, before, opts: WeightOnly.Options,
                         messages: list[str]) -> PassResult:
    """The source is handed on unchanged, with a message saying why."""
    now = op_counts(proto)  # after the Gemm rewrite, if any
    if before.get("Gemm") and not opts.gemm_to_matmul:
        why = ("its Gemm nodes are not covered by MatMulNBits (set gemm_to_matmul=true to "
               "rewrite them as MatMul + Add)")
    elif now.get("MatMul"):
        why = ("no MatMul has a constant 2-D weight initializer (weights computed in the graph "
               "are not covered: run the simplify pass first to fold them)")
        if opts.exclude:
            why += "; or all were excluded: " + ", ".join(opts.exclude)
    elif now.get("Gemm"):
        why = (f"its {now['Gemm']} Gemm node(s) could not be rewritten as MatMul (transA, alpha "
               "or beta set), and MatMulNBits covers MatMul only")
    else:
        why = "the model has no MatMul or Gemm node (MatMulNBits covers MatMul only)"
    messages.append(f"weight-only: nothing to compress: {why}")
    details = {"nodes_compressed": 0, "bits": opts.bits, "ops": dict(before)}
    return PassResult(model, changed=False, details=details, messages=messages)


# --- OpenVINO ----------------------------------------------------------------------------------

def _run_openvino(model: ModelFile, opts: WeightOnly.Options, ctx: PassContext) -> PassResult:
    ctx.progress(0.0, "reading the IR")
    ov_model = read_openvino(model.path)
    check_node_names(opts.exclude, {op.get_friendly_name() for op in ov_model.get_ops()},
                     "exclude", " (OpenVINO names its nodes itself: take them from the IR)")
    before = openvino_weight_types(ov_model)
    layers_before = openvino_int_weight_layers(ov_model)
    ctx.check_cancelled()

    ctx.progress(0.2, f"compressing weights to INT{opts.bits} (NNCF)")
    compressed = _compress_openvino(ov_model, opts)
    ctx.check_cancelled()
    ctx.progress(0.8, "saving the IR")
    out = save_openvino(compressed, ctx, output_stem(model, f"int{opts.bits}-weights"),
                        compress_to_fp16=False)
    after = openvino_weight_types(read_openvino(out))
    ctx.progress(1.0, "compressed")
    n = openvino_int_weight_layers(compressed) - layers_before
    messages = [] if n > 0 else ["weight-only: NNCF found no weight to compress"]
    details = {
        "layers_compressed": n,
        "mode": _mode_name(opts),
        "group_size": opts.group_size if opts.bits == 4 else None,
        "ratio": opts.ratio if opts.bits == 4 else None,
        "weight_types_before": before,
        "weight_types_after": after,
        "excluded": list(opts.exclude),
    }
    if opts.bits == 8 and opts.ratio != 1.0:
        messages.append("weight-only: ratio applies to INT4 only")
    return PassResult(ModelFile(out, "openvino"), changed=n > 0, details=details,
                      messages=messages)


def _mode_name(opts: WeightOnly.Options) -> str:
    return f"INT{opts.bits}_{'SYM' if opts.symmetric else 'ASYM'}"


def _compress_openvino(ov_model, opts: WeightOnly.Options):
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedCompressionParameters, GroupSizeFallbackMode,
    )

    kwargs = {}
    if opts.bits == 4:  # INT8 is per output channel: group size and ratio do not apply
        kwargs = dict(group_size=opts.group_size, ratio=opts.ratio,
                      advanced_parameters=AdvancedCompressionParameters(
                          group_size_fallback_mode=GroupSizeFallbackMode.ADJUST))
    if opts.exclude:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(opts.exclude))
    try:
        return nncf.compress_weights(ov_model, mode=getattr(nncf.CompressWeightsMode,
                                                            _mode_name(opts)), **kwargs)
    except Exception as e:  # nncf.ValidationError / InternalError / OpenVINO RuntimeError
        raise PassError(f"weight-only: NNCF weight compression failed: {error_line(e)}") from e
