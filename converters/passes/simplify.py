"""simplify: constant folding, operator fusion and dead-code removal with onnxslim.

Exporters leave shape arithmetic, BatchNormalization after Conv, unused branches and
weight-generating subgraphs in a model; folding them gives a smaller, faster graph with the same
outputs, and a cleaner graph for the passes that follow (quantizers calibrate fewer tensors).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from converters.passes import (
    ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes._common import (
    error_line, load_onnx, onnx_files, op_count_changes, op_counts, output_stem, remove_files,
    save_onnx,
)

log = logging.getLogger(__name__)


@register_pass
class Simplify(Pass):
    name = "simplify"
    accepts = frozenset({"onnx"})
    stage = "graph"  # see converters/passes/order.py
    description = "Fold constants, fuse Conv+BN / Gemm patterns and drop dead nodes (onnxslim)"

    @dataclass(frozen=True)
    class Options:
        skip_fusion: bool = False  # keep Conv+BN etc. separate (e.g. to prune BN channels later)
        skip_constant_folding: bool = False
        size_threshold: int = 0  # bytes: larger folded constants are not made; 0: no limit

        def __post_init__(self) -> None:
            if self.size_threshold < 0:
                raise ValueError("size_threshold must be 0 (no limit) or a number of bytes")

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        ctx.progress(0.0, "reading the model")
        proto = load_onnx(model.path)
        before = op_counts(proto)
        inits_before = len(proto.graph.initializer)
        ctx.check_cancelled()

        ctx.progress(0.1, "simplifying (onnxslim)")
        slimmed = _slim(proto, opts)
        ctx.check_cancelled()

        after = op_counts(slimmed)
        out = ctx.output_path(output_stem(model, self.name), ".onnx")
        try:
            save_onnx(slimmed, out)
        except Exception as e:
            remove_files(onnx_files(out))
            raise PassError(f"simplify: saving {out.name} failed: {error_line(e)}") from e
        ctx.progress(1.0, "simplified")

        changes = op_count_changes(before, after)
        details = {
            "nodes_before": sum(before.values()),
            "nodes_after": sum(after.values()),
            "initializers_before": inits_before,
            "initializers_after": len(slimmed.graph.initializer),
            "op_changes": changes,  # {op: [before, after]}
            "skipped": [k for k, v in (("fusion", opts.skip_fusion),
                                       ("constant_folding", opts.skip_constant_folding)) if v],
        }
        changed = bool(changes) or details["initializers_before"] != details["initializers_after"]
        messages = [] if changed else ["simplify found nothing to fold, fuse or remove"]
        return PassResult(ModelFile(out, "onnx"), changed=changed, details=details,
                          messages=messages)


def _slim(proto, opts: Simplify.Options):
    """onnxslim.slim on a ModelProto (it edits its argument, so give it a copy)."""
    import onnx
    import onnxslim

    skip = []
    if opts.skip_fusion:
        skip.append("graph_fusion")
    if opts.skip_constant_folding:
        skip.append("constant_folding")
    work = onnx.ModelProto()
    work.CopyFrom(proto)
    try:
        result = onnxslim.slim(work, skip_optimizations=skip or None,
                               size_threshold=opts.size_threshold or None)
    except Exception as e:  # onnxslim raises plain exceptions naming the node it choked on
        raise PassError(f"simplify: onnxslim failed: {error_line(e)}") from e
    if result is None:
        raise PassError("simplify: onnxslim returned no model")
    return result
