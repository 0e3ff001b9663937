"""int8-dynamic: INT8 weights, activations quantized on the fly (onnxruntime.quantize_dynamic).

Needs no calibration data, so it is the safe first step for MatMul-heavy models (transformers,
RNNs, MLP heads): weights shrink ~4x and MatMul / Gemm run as integer kernels, with activation
scales computed per batch at run time (DynamicQuantizeLinear).

Defaults, measured (cosine of the outputs vs float32; see tests/converters/passes/
test_int8_transformer.py): per-channel weights, and only the ops with weights that do compute
(MatMul, Gemm, Attention, LSTM). On a BERT-style encoder whose weights spread like a trained
model's, every op type with per-tensor weights gave cosine 0.967; embedding Gathers left in
float32 0.992, with per-channel weights 0.993. Conv quantized on the fly cost an OCR recogniser
(rapidocr PP-OCRv6 rec) cosine 0.97 against 0.998 without it: CNNs belong to int8-static.
op_types=Conv;Gather (a ;-separated list of QUANTIZABLE ops) opts back in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from converters.passes import (
    ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes._common import (
    check_node_names, check_onnx_runs, in_directory, is_large_onnx, load_onnx, node_names,
    normalise_reduce_range, onnx_files, op_count_changes, op_counts, ort_error, output_stem,
    quant_prepare, remove_files, resolve_reduce_range,
)

log = logging.getLogger(__name__)

# ops ORT's dynamic quantizer handles (onnxruntime.quantization.registry.IntegerOpsRegistry);
# Gemm is rewritten to MatMul (+ Add) by the quantizer before it quantizes
QUANTIZABLE = ("Attention", "Conv", "EmbedLayerNormalization", "Gather", "Gemm", "LSTM", "MatMul",
               "Transpose")
# quantized when op_types is left empty: compute ops with weights, where on-the-fly activation
# scales hold; Conv (CNNs: int8-static) and Gather (embedding tables: a lookup, per-tensor scale
# only, and the largest fidelity loss on transformers) are opt-in
DEFAULT_OP_TYPES = ("Attention", "Gemm", "LSTM", "MatMul")
# ops that carry integer weights in the result
INTEGER_OPS = frozenset({"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
                         "DynamicQuantizeLSTM", "QAttention", "QEmbedLayerNormalization",
                         "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeConv"})


def quantized_op_count(counts) -> int:
    return sum(n for op, n in counts.items() if op.rsplit(".", 1)[-1] in INTEGER_OPS)


@register_pass
class Int8Dynamic(Pass):
    name = "int8-dynamic"
    accepts = frozenset({"onnx"})
    stage = "precision"  # see converters/passes/order.py
    description = "INT8 weights, activations quantized at run time (no calibration data needed)"

    @dataclass(frozen=True)
    class Options:
        weight_type: Literal["qint8", "quint8"] = "qint8"
        per_channel: bool = True  # one scale per output channel of each weight
        op_types: tuple[str, ...] = ()  # ops to quantize; empty: DEFAULT_OP_TYPES
        exclude: tuple[str, ...] = ()  # node names kept in float32
        preprocess: bool = True  # ORT's quant_pre_process (shape inference, Conv+BN folding)
        # 7-bit weights; "auto": on for x86 CPUs without VNNI (see cpu_saturates_int8)
        reduce_range: Literal["auto", "true", "false"] = "auto"

        def __post_init__(self) -> None:
            normalise_reduce_range(self)
            bad = [op for op in self.op_types if op not in QUANTIZABLE]
            if bad:
                raise ValueError(f"op_types {bad}: dynamic quantization handles "
                                 f"{', '.join(QUANTIZABLE)}")

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        ctx.progress(0.0, "reading the model")
        source = load_onnx(model.path, with_weights=False)
        check_node_names(opts.exclude, node_names(source), "exclude")
        before = op_counts(source)
        ctx.check_cancelled()

        ctx.progress(0.1, "pre-processing (shape inference, Conv+BN folding)")
        src, messages, preprocessed = quant_prepare(model, ctx, self.name,
                                                    preprocess=opts.preprocess)
        out = ctx.output_path(output_stem(model, self.name), ".onnx")
        reduce_range, why = resolve_reduce_range(opts.reduce_range)
        try:
            ctx.check_cancelled()
            ctx.progress(0.4, "quantizing")
            _quantize(src, out, opts, reduce_range, large=is_large_onnx(src))
            ctx.progress(0.8, "checking the result opens in ONNX Runtime")
            messages += check_onnx_runs(out, model.path, self.name)
            after = op_counts(load_onnx(out, with_weights=False))
        except BaseException:
            remove_files(onnx_files(out))
            raise
        finally:
            if src != model.path:
                remove_files(onnx_files(src))
        ctx.progress(1.0, "quantized")

        quantized = quantized_op_count(after)
        if not quantized:
            hint = ("" if opts.op_types else "; Conv and Gather are left out by default: "
                    "int8-static suits CNNs, or pass op_types=Conv to quantize them on the fly")
            messages.append("int8-dynamic: no node was quantized (the model has none of "
                            f"{', '.join(opts.op_types or DEFAULT_OP_TYPES)} with constant "
                            f"weights){hint}")
        details = {
            "nodes_quantized": quantized,
            "weight_type": opts.weight_type,
            "per_channel": opts.per_channel,
            "op_types": list(opts.op_types or DEFAULT_OP_TYPES),
            "reduce_range": {"on": reduce_range, "why": why},
            "preprocessed": preprocessed,
            "excluded": list(opts.exclude),
            "op_changes": op_count_changes(before, after),
        }
        return PassResult(ModelFile(out, "onnx"), changed=quantized > 0, details=details,
                          messages=messages)


def _quantize(src, out, opts: Int8Dynamic.Options, reduce_range: bool, *, large: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = set(opts.op_types or DEFAULT_OP_TYPES)
    if "Gemm" in op_types:  # the quantizer turns Gemm into MatMul (+ Add) first
        op_types.add("MatMul")
    # a Gemm named n becomes a MatMul named n_MatMul: exclude both names
    exclude = [*opts.exclude, *(f"{n}_MatMul" for n in opts.exclude)]
    try:
        with in_directory(Path(out).parent):
            quantize_dynamic(
                str(Path(src).resolve()), str(Path(out).resolve()),
                weight_type=QuantType.QInt8 if opts.weight_type == "qint8" else QuantType.QUInt8,
                per_channel=opts.per_channel,
                reduce_range=reduce_range,
                op_types_to_quantize=sorted(op_types),
                nodes_to_exclude=exclude or None,
                use_external_data_format=large)
    except Exception as e:  # ORT raises ValueError / RuntimeError / AssertionError naming the node
        raise PassError(f"int8-dynamic: ONNX Runtime's quantizer failed: "
                        f"{ort_error(e, src)}") from e
