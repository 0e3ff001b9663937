"""fp16: store weights (and compute, where the runtime can) in float16.

Halves the file with almost no accuracy cost; GPUs and recent CPUs run float16 natively.
ONNX uses ONNX Runtime's converter (onnxruntime.transformers.float16), which keeps ops without
float16 kernels (its default block list plus ours) in float32 behind Cast nodes.
OpenVINO stores the IR's weights as FP16 (ov.save_model(compress_to_fp16=True)); the device then
picks its inference precision when it compiles the model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from converters.passes import (
    ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes._common import (
    check_node_names, check_onnx_runs, error_line, initializer_dtypes, load_onnx, node_names,
    onnx_files, op_count_changes, op_counts, openvino_weight_types, output_stem, read_openvino,
    remove_files, save_onnx, save_openvino,
)

log = logging.getLogger(__name__)

FP16_MAX = 65504.0
FP16_MIN_POSITIVE = 5.96e-08


@register_pass
class Fp16(Pass):
    name = "fp16"
    accepts = frozenset({"onnx", "openvino"})
    stage = "precision"  # see converters/passes/order.py
    description = "Convert float32 weights (and compute) to float16"

    @dataclass(frozen=True)
    class Options:
        keep_io_types: bool = True  # inputs / outputs stay float32: callers need not change
        op_block_list: tuple[str, ...] = ()  # op types kept in float32 (ONNX; added to ORT's list)
        node_block_list: tuple[str, ...] = ()  # node names kept in float32 (ONNX)

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        if model.format == "openvino":
            return _run_openvino(model, opts, ctx)
        return _run_onnx(model, opts, ctx)


# --- ONNX ------------------------------------------------------------------------------------

def _run_onnx(model: ModelFile, opts: Fp16.Options, ctx: PassContext) -> PassResult:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    ctx.progress(0.0, "reading the model")
    proto = load_onnx(model.path)
    check_node_names(opts.node_block_list, node_names(proto), "node_block_list")
    before_ops, before_dtypes = op_counts(proto), initializer_dtypes(proto)
    converted, overflow, underflow = _float_initializer_stats(proto)
    ctx.check_cancelled()

    ctx.progress(0.2, "converting to float16")
    large = proto.ByteSize() > 1_800_000_000  # ONNX shape inference refuses > 2 GiB in memory
    try:
        fp16 = convert_float_to_float16(
            proto, keep_io_types=opts.keep_io_types, disable_shape_infer=large,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *opts.op_block_list],
            node_block_list=list(opts.node_block_list))
    except Exception as e:
        raise PassError(f"fp16: conversion failed: {error_line(e)}") from e
    ctx.check_cancelled()

    out = ctx.output_path(output_stem(model, "fp16"), ".onnx")
    try:
        save_onnx(fp16, out)
        ctx.progress(0.8, "checking the result opens in ONNX Runtime")
        messages = check_onnx_runs(out, model.path, "fp16")
    except BaseException:
        remove_files(onnx_files(out))
        raise
    ctx.progress(1.0, "converted to float16")

    if overflow:
        messages.append(f"fp16: {overflow} weight values exceed the float16 range and were "
                        f"clamped to ±{FP16_MAX:g}; if accuracy suffers, keep their ops in "
                        "float32 with op_block_list / node_block_list")
    details = {
        "tensors_converted": converted,
        "values_clamped_to_max": overflow,
        "values_raised_to_min": underflow,  # tiny magnitudes: harmless
        "initializer_dtypes_before": before_dtypes,
        "initializer_dtypes_after": initializer_dtypes(fp16),
        "io_types": _io_types(fp16),
        "op_changes": op_count_changes(before_ops, op_counts(fp16)),  # Casts added
    }
    return PassResult(ModelFile(out, "onnx"), changed=converted > 0, details=details,
                      messages=messages)


def _float_initializer_stats(proto) -> tuple[int, int, int]:
    """(float32 initializers, values above float16's max, nonzero values below its min)."""
    from onnx import TensorProto, numpy_helper

    count = over = under = 0
    for t in proto.graph.initializer:
        if t.data_type != TensorProto.FLOAT:
            continue
        count += 1
        a = np.abs(numpy_helper.to_array(t))
        over += int(np.count_nonzero(np.isfinite(a) & (a > FP16_MAX)))
        under += int(np.count_nonzero((a > 0) & (a < FP16_MIN_POSITIVE)))
    return count, over, under


def _io_types(proto) -> dict[str, str]:
    from onnx import helper

    inits = {t.name for t in proto.graph.initializer}
    return {v.name: helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
            for v in [*proto.graph.input, *proto.graph.output]
            if v.name not in inits and v.type.tensor_type.elem_type}


# --- OpenVINO --------------------------------------------------------------------------------

def _run_openvino(model: ModelFile, opts: Fp16.Options, ctx: PassContext) -> PassResult:
    messages = []
    if opts.op_block_list or opts.node_block_list:
        messages.append("fp16: op_block_list / node_block_list apply to ONNX only; OpenVINO "
                        "compresses every float32 weight and keeps precision-sensitive parts "
                        "in float32 itself")
    if not opts.keep_io_types:
        messages.append("fp16: OpenVINO keeps the inputs and outputs float32 (keep_io_types=false "
                        "has no effect on an IR)")
    ctx.progress(0.0, "reading the IR")
    ov_model = read_openvino(model.path)
    before = openvino_weight_types(ov_model)
    ctx.check_cancelled()

    ctx.progress(0.3, "saving with FP16 weights")
    out = save_openvino(ov_model, ctx, output_stem(model, "fp16"), compress_to_fp16=True)
    after = openvino_weight_types(read_openvino(out))
    ctx.progress(1.0, "converted to FP16")
    converted = before.get("f32", 0) - after.get("f32", 0)
    details = {
        "tensors_converted": converted,
        "weight_types_before": before,
        "weight_types_after": after,
        "note": "weights are stored as FP16 and decompressed when the model is compiled; the "
                "device chooses the inference precision (e.g. CPU: f32, or bf16 where supported)",
    }
    if not converted:
        messages.append("fp16: the IR has no float32 weights to compress")
    return PassResult(ModelFile(out, "openvino"), changed=converted > 0, details=details,
                      messages=messages)
