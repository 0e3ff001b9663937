"""lowrank: SVD factorisation of big weight matrices (W ≈ P·Q with a small inner rank r).

A Gemm/MatMul with a K×N weight costs K·N multiply-adds per row; two with K×r and r×N cost
r·(K+N), which is fewer when r·(K+N) < K·N. Unlike zeroed weights this is dense and smaller, so
any runtime runs it faster and the file shrinks. A KxK Conv [Cout, Cin, k, k] is the matrix
[Cout, Cin·k·k]: it becomes a k×k Conv with r outputs followed by a 1×1 Conv r -> Cout.

Rank: keep singular values until `energy` of their squared sum (default 0.95), or `ratio` of the
full rank. The outputs change: check fidelity, and fine-tune (distill) if accuracy drops.
Only the main graph is rewritten (not If/Loop bodies); the weights must be initializers.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from converters.passes import (
    ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes import _model_io as io
from converters.passes._common import check_onnx_runs, iter_nodes, load_onnx, output_stem
from converters.passes.prune_magnitude import excluded

logger = logging.getLogger(__name__)

NAME = "lowrank"
DEFAULT_ENERGY = 0.95


@register_pass
class LowRank(Pass):
    name = NAME
    accepts = frozenset({"onnx"})
    stage = "structure"  # see converters/passes/order.py
    description = ("Factorise large Gemm/MatMul (and optionally Conv) weights with an SVD "
                   "into two thinner layers: fewer parameters and MACs, approximate outputs")

    @dataclass(frozen=True)
    class Options:
        # Optional[...] rather than "X | None": make_options reads typing.Union for "none" values
        energy: Optional[float] = DEFAULT_ENERGY  # keep this fraction of sum(s^2)
        ratio: Optional[float] = None  # or this fraction of the rank (the default energy yields)
        min_params: int = 10000  # smaller weights are left alone
        include_conv: bool = False  # also factorise Conv kernels (k×k conv + 1×1 conv)
        exclude: tuple[str, ...] = ()  # node or weight names / globs kept as they are

        def __post_init__(self) -> None:
            energy = self.energy
            if self.ratio is not None and energy == DEFAULT_ENERGY:
                energy = None  # ratio given: the default energy steps aside
                object.__setattr__(self, "energy", None)
            if (energy is None) == (self.ratio is None):
                raise ValueError("give exactly one of energy (fraction of the squared singular "
                                 "values to keep) or ratio (fraction of the rank to keep)")
            for name, value in (("energy", energy), ("ratio", self.ratio)):
                if value is not None and not 0.0 < value <= 1.0:
                    raise ValueError(f"{name} must be in (0, 1], got {value}")
            if self.min_params < 1:
                raise ValueError(f"min_params must be >= 1, got {self.min_params}")

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        if model.format != "onnx":
            raise PassError(f"{NAME} runs on ONNX models, not {model.format}")
        proto = load_onnx(model.path)
        graph = proto.graph
        candidates = _candidates(proto, opts)
        layers: dict[str, dict[str, Any]] = {}
        skipped: dict[str, str] = {}
        new_nodes: list[Any] = []
        rewritten = 0
        for i, node in enumerate(list(graph.node)):
            ctx.check_cancelled()
            plan = candidates.get(i)
            if plan is None:
                new_nodes.append(node)
                continue
            ctx.progress(0.9 * i / max(len(graph.node), 1), f"factorising {node.name}")
            result = _factorise(node, plan, opts)
            if isinstance(result, str):
                skipped[node.name or node.output[0]] = result
                new_nodes.append(node)
                continue
            replacement, initializers, info = result
            new_nodes.extend(replacement)
            graph.initializer.extend(initializers)
            layers[node.name or node.output[0]] = info
            rewritten += 1
        skipped.update(_skip_reasons(proto, opts, candidates))
        if not rewritten:
            return PassResult(output=model, changed=False,
                              details={"layers": {}, "skipped": skipped, "params_saved": 0},
                              messages=[f"{NAME}: no layer was factorised (see details.skipped)"])
        del graph.node[:]
        graph.node.extend(new_nodes)
        _drop_unused_initializers(graph)
        ctx.progress(0.9, "writing")
        out = io.save_onnx(proto, ctx.output_path(output_stem(model, NAME), ".onnx"))
        messages = check_onnx_runs(out.path, model.path, NAME)
        saved = sum(v["params_before"] - v["params_after"] for v in layers.values())
        details = {"layers": layers, "skipped": skipped, "params_saved": int(saved),
                   "rule": (f"energy {opts.energy}" if opts.energy is not None
                            else f"rank ratio {opts.ratio}")}
        messages.insert(0, f"Factorised {rewritten} layer(s), {saved:,} fewer parameters. "
                           "Low-rank weights approximate the originals, so outputs change: "
                           "check the fidelity figure, and fine-tune (distill) if accuracy drops")
        return PassResult(output=out, changed=True, details=details, messages=messages)


# --- which nodes -------------------------------------------------------------------------

@dataclass
class _Plan:
    kind: str  # "gemm" | "matmul" | "conv"
    weight: str  # initializer name
    array: np.ndarray
    opset: int  # of the default domain


def _candidates(proto: Any, opts: LowRank.Options) -> dict[int, _Plan]:
    """node index -> plan, for nodes whose weight is a float initializer used by that node only."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    outputs = {o.name for o in graph.output}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    plans = {}
    for i, node in enumerate(graph.node):
        kind = {"Gemm": "gemm", "MatMul": "matmul", "Conv": "conv"}.get(node.op_type)
        if kind is None or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        if kind == "conv" and not opts.include_conv:
            continue
        weight = node.input[1]
        t = inits.get(weight)
        if t is None or uses.get(weight, 0) != 1 or weight in outputs:
            continue
        if int(np.prod(t.dims)) < opts.min_params or excluded([node.name, weight], opts.exclude):
            continue
        array = numpy_helper.to_array(t)
        if array.dtype.kind != "f":
            continue
        plans[i] = _Plan(kind, weight, array, opset)
    return plans


def _skip_reasons(proto: Any, opts: LowRank.Options, plans: dict[int, _Plan]) -> dict[str, str]:
    """Why large Gemm/MatMul/Conv weights were not candidates (shared, excluded, ...)."""
    inits = {t.name: t for t in proto.graph.initializer}
    reasons = {}
    for i, node in enumerate(proto.graph.node):
        if node.op_type not in ("Gemm", "MatMul", "Conv") or i in plans:
            continue
        if len(node.input) < 2 or node.input[1] not in inits:
            continue
        t = inits[node.input[1]]
        if int(np.prod(t.dims)) < opts.min_params:
            continue
        label = node.name or node.output[0]
        if node.op_type == "Conv" and not opts.include_conv:
            reasons[label] = "Conv (include_conv=false)"
        elif excluded([node.name, node.input[1]], opts.exclude):
            reasons[label] = "excluded"
        else:
            reasons[label] = "weight is shared, a graph output, or not float"
    return reasons


# --- the factorisation -------------------------------------------------------------------------

def choose_rank(s: np.ndarray, opts: LowRank.Options) -> int:
    """Smallest r with sum(s[:r]^2) >= energy * sum(s^2), or ceil(ratio * full rank)."""
    if opts.ratio is not None:
        return max(1, math.ceil(opts.ratio * len(s)))
    power = np.cumsum(s.astype(np.float64) ** 2)
    if power[-1] == 0:
        return 1
    return int(np.searchsorted(power / power[-1], opts.energy - 1e-12) + 1)


def factor(matrix: np.ndarray, opts: LowRank.Options) -> tuple[np.ndarray, np.ndarray, int, float]:
    """matrix (m×n) ≈ P (m×r) · Q (r×n), the singular values split evenly between the two.
    Returns P, Q, r and the fraction of squared singular values kept."""
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    r = min(choose_rank(s, opts), len(s))
    root = np.sqrt(s[:r])
    kept = float((s[:r] ** 2).sum() / (s ** 2).sum()) if s.any() else 1.0
    return u[:, :r] * root, root[:, None] * vt[:r], r, kept


def _factorise(node: Any, plan: _Plan, opts: LowRank.Options
               ) -> str | tuple[list[Any], list[Any], dict[str, Any]]:
    """(replacement nodes, new initializers, details) or the reason it was left alone."""
    if plan.kind == "conv":
        return _factorise_conv(node, plan, opts)
    attrs = _attrs(node)
    w = plan.array
    if w.ndim != 2:
        return f"{w.ndim}-d weight (only matrices are factorised)"
    if plan.kind == "gemm" and attrs.get("transA", 0) and plan.opset < 11:
        return "Gemm with transA before opset 11 (a Gemm without C needs opset 11)"
    matrix = w.T if plan.kind == "gemm" and attrs.get("transB", 0) else w  # K×N as applied
    k, n = matrix.shape
    p, q, r, kept = factor(matrix, opts)
    if r * (k + n) >= k * n:
        return f"rank {r} of {min(k, n)} kept: {r}×({k}+{n}) would not save parameters"
    if plan.kind == "gemm":
        p = p * attrs.get("alpha", 1.0)  # alpha folds into the first factor
    dtype = w.dtype
    names = _names(node, plan.weight)
    inits = [_tensor(p.astype(dtype), names["p"]), _tensor(q.astype(dtype), names["q"])]
    nodes = _gemm_nodes(node, attrs, names) if plan.kind == "gemm" else _matmul_nodes(node, names)
    if isinstance(nodes, str):
        return nodes
    info = {"op": node.op_type, "weight": plan.weight, "shape": list(w.shape),
            "rank_kept": r, "rank_full": min(k, n), "energy_kept": round(kept, 6),
            "params_before": int(k * n), "params_after": int(r * (k + n))}
    return nodes, inits, info


def _gemm_nodes(node: Any, attrs: dict[str, Any], names: dict[str, str]) -> list[Any] | str:
    """Y = alpha·A'·B' + beta·C  ->  H = A'·(alpha·P);  Y = H·Q + beta·C."""
    from onnx import helper

    a = node.input[0]
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if attrs.get("transA", 0):
        first = helper.make_node("Gemm", [a, names["p"]], [names["h"]], name=names["n1"],
                                 transA=1)
    else:
        first = helper.make_node("MatMul", [a, names["p"]], [names["h"]], name=names["n1"])
    if c is not None:
        second = helper.make_node("Gemm", [names["h"], names["q"], c], list(node.output),
                                  name=names["n2"], beta=attrs.get("beta", 1.0))
    else:
        second = helper.make_node("MatMul", [names["h"], names["q"]], list(node.output),
                                  name=names["n2"])
    return [first, second]


def _matmul_nodes(node: Any, names: dict[str, str]) -> list[Any]:
    """Y = X·W  ->  H = X·P;  Y = H·Q (X may carry batch dims: MatMul broadcasts)."""
    from onnx import helper

    return [helper.make_node("MatMul", [node.input[0], names["p"]], [names["h"]],
                             name=names["n1"]),
            helper.make_node("MatMul", [names["h"], names["q"]], list(node.output),
                             name=names["n2"])]


def _factorise_conv(node: Any, plan: _Plan, opts: LowRank.Options
                    ) -> str | tuple[list[Any], list[Any], dict[str, Any]]:
    """[Cout, Cin, *k] as the matrix [Cout, Cin·prod(k)] -> k-conv to r channels, 1×1 conv."""
    from onnx import helper

    attrs = _attrs(node)
    if attrs.get("group", 1) != 1:
        return "grouped / depthwise Conv (only group=1 is factorised)"
    w = plan.array
    cout, cin, kernel = w.shape[0], w.shape[1], w.shape[2:]
    m, n = cout, int(np.prod(w.shape[1:]))
    u, v, r, kept = factor(w.reshape(m, n), opts)
    if r * (m + n) >= m * n:
        return f"rank {r} of {min(m, n)} kept: {r}×({m}+{n}) would not save parameters"
    names = _names(node, plan.weight)
    first_w = v.reshape(r, cin, *kernel).astype(w.dtype)
    second_w = u.reshape(cout, r, *([1] * len(kernel))).astype(w.dtype)
    keep = {k: a for k, a in attrs.items() if k in ("auto_pad", "dilations", "kernel_shape",
                                                  "pads", "strides")}
    first = helper.make_node("Conv", [node.input[0], names["p"]], [names["h"]],
                             name=names["n1"], **keep)
    second_inputs = [names["h"], names["q"]] + ([node.input[2]] if len(node.input) > 2
                                                and node.input[2] else [])
    second = helper.make_node("Conv", second_inputs, list(node.output), name=names["n2"],
                              kernel_shape=[1] * len(kernel))
    info = {"op": "Conv", "weight": plan.weight, "shape": list(w.shape), "rank_kept": r,
            "rank_full": min(m, n), "energy_kept": round(kept, 6),
            "params_before": int(m * n), "params_after": int(r * (m + n))}
    return [first, second], [_tensor(first_w, names["p"]), _tensor(second_w, names["q"])], info


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _names(node: Any, weight: str) -> dict[str, str]:
    base = node.name or node.output[0]
    return {"p": f"{weight}.lowrank_a", "q": f"{weight}.lowrank_b", "h": f"{base}/lowrank_mid",
            "n1": f"{base}/lowrank_a", "n2": f"{base}/lowrank_b"}


def _tensor(array: np.ndarray, name: str) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def _drop_unused_initializers(graph: Any) -> None:
    """Remove the replaced weights (names read by If/Loop bodies count as used)."""
    used = {name for node in iter_nodes(graph) for name in node.input}
    used |= {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        dropped = {t.name for t in graph.initializer} - used
        del graph.initializer[:]
        graph.initializer.extend(keep)
        inputs = [i for i in graph.input if i.name not in dropped]  # IR < 4 lists them too
        del graph.input[:]
        graph.input.extend(inputs)
