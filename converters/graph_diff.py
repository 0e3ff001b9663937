"""Two variants of one model, matched node by node: what a pass changed (FP32 vs INT8, before
and after pruning, fused or not).

Plain model data (no Qt, no runtime), so the window's graph diff, `modeldeck diff` and tests
share it. Matching works on each graph's *compute* nodes: weight producers (Constant nodes,
DequantizeLinear of a stored weight, anything fed only by weights) are weights, and
QuantizeLinear / DequantizeLinear / Cast / Identity on the data path are seen through, so
inserting them moves nothing. Then, in order:

1. names: the same node name with the same op family (Conv ~ ConvInteger ~ QLinearConv);
2. structure: from every matched pair, unmatched neighbours of the same op family are paired
   in input order; a BatchNormalization, bias Add or activation that one side folded into its
   neighbour is seen through and reported as fused;
3. order: what is left is aligned by op-family sequence in topological order.

For each pair: op, precision, output shape, parameter count and (given per-node times) time.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from converters.graph import ModelGraph, Node, TensorInfo

TRANSPARENT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                             "Identity", "Cast"})
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
FUSABLE_OPS = frozenset({"BatchNormalization", "Add", "Mul", "Relu", "Clip", "LeakyRelu",
                         "Sigmoid", "HardSigmoid", "HardSwish", "Div", "Sub"})
_FAMILY = {"ConvInteger": "Conv", "QLinearConv": "Conv", "FusedConv": "Conv",
           "MatMulInteger": "MatMul", "QLinearMatMul": "MatMul", "FusedMatMul": "MatMul",
           "MatMulNBits": "MatMul", "DynamicQuantizeMatMul": "MatMul", "QGemm": "MatMul",
           "Gemm": "MatMul",
           "QLinearAdd": "Add", "QLinearMul": "Mul", "QLinearSigmoid": "Sigmoid",
           "QLinearGlobalAveragePool": "GlobalAveragePool", "QLinearConcat": "Concat",
           "QLinearLeakyRelu": "LeakyRelu", "DynamicQuantizeLSTM": "LSTM",
           "QLinearSoftmax": "Softmax", "QLinearAveragePool": "AveragePool"}
# where quantized ops keep their real weights (the rest of their inputs are scales and zero
# points, which are no parameters of the model)
_WEIGHT_SLOTS = {"QLinearConv": (3, 8), "QLinearMatMul": (3,), "ConvInteger": (1,),
                 "MatMulInteger": (1,), "QGemm": (3, 6), "QLinearAdd": (0, 3),
                 "QLinearMul": (0, 3), "MatMulNBits": (1, 5), "DynamicQuantizeMatMul": (1, 4)}
_INTEGER_OPS = {"ConvInteger": "INT8", "QLinearConv": "INT8", "MatMulInteger": "INT8",
                "QLinearMatMul": "INT8", "DynamicQuantizeMatMul": "INT8", "QGemm": "INT8",
                "DynamicQuantizeLSTM": "INT8", "MatMulNBits": "INT4"}
_DTYPE_PRECISION = {"float32": "FP32", "float16": "FP16", "bfloat16": "BF16", "float64": "FP64",
                    "int8": "INT8", "uint8": "UINT8", "int4": "INT4", "uint4": "UINT4",
                    "int16": "INT16", "uint16": "UINT16", "float8e4m3fn": "FP8"}


# the ONNX op another format's op stands for (TorchScript / torch.export aten ops, OpenVINO IR
# opset names), so a variant converted between formats matches its source
_CROSS = {"conv1d": "Conv", "conv2d": "Conv", "conv3d": "Conv", "_convolution": "Conv",
          "convolution": "Conv", "groupconvolution": "Conv", "batch_norm": "BatchNormalization",
          "_native_batch_norm_legit_no_training": "BatchNormalization", "relu": "Relu",
          "relu_": "Relu", "max_pool2d": "MaxPool", "max_pool1d": "MaxPool",
          "avg_pool2d": "AveragePool", "avgpool": "AveragePool",
          "adaptive_avg_pool2d": "GlobalAveragePool", "linear": "Gemm", "addmm": "Gemm",
          "fullyconnected": "Gemm", "mm": "MatMul", "bmm": "MatMul", "matmul": "MatMul",
          "flatten": "Flatten", "view": "Reshape", "reshape": "Reshape", "add": "Add",
          "add_": "Add", "mul": "Mul", "multiply": "Mul", "sub": "Sub", "subtract": "Sub",
          "div": "Div", "divide": "Div", "sigmoid": "Sigmoid", "tanh": "Tanh",
          "softmax": "Softmax", "cat": "Concat", "concat": "Concat", "gelu": "Gelu",
          "layer_norm": "LayerNormalization", "hardswish": "HardSwish", "hswish": "HardSwish",
          "hardsigmoid": "HardSigmoid", "hsigmoid": "HardSigmoid", "transpose": "Transpose",
          "permute": "Transpose", "embedding": "Gather", "lstm": "LSTM", "gru": "GRU"}


def _cross(op: str) -> str:
    """'aten::conv2d', 'aten.conv2d.default', 'Convolution' -> 'Conv'; ONNX ops unchanged."""
    key = op
    for prefix in ("aten::", "aten."):
        if key.startswith(prefix):
            key = key[len(prefix):].split(".")[0]
    return _CROSS.get(key.lower(), op)


def family(op: str) -> str:
    """The float op a quantized or fused op (or another format's op) stands for."""
    op = _cross(op)
    return _FAMILY.get(op, op)


@dataclass
class NodeFacts:
    """What the diff compares about one compute node."""

    id: str
    name: str
    op: str
    order: int
    preds: list[str] = field(default_factory=list)  # compute predecessors, input order
    succs: list[str] = field(default_factory=list)
    shape: str = ""  # first output's shape
    params: int = 0  # weight elements it reads
    precision: str = ""  # "FP32", "INT8", ...


@dataclass
class Match:
    base: str  # node id in the base graph
    other: str
    how: str  # "name" | "structure" | "order"
    changes: list[str] = field(default_factory=list)  # "precision FP32 → INT8", ...
    time_delta_ms: float | None = None


@dataclass
class GraphDiff:
    """The matching; statuses per node id colour each side of the diff view."""

    base_path: str
    other_path: str
    matches: list[Match]
    only_base: list[str]  # compute nodes of base with no counterpart (removed)
    only_other: list[str]  # ... of other (added)
    fused: dict[str, str]  # base node id -> the other graph's node it was folded into
    fused_other: dict[str, str]  # other node id -> the base node it was folded into
    inserted: list[str]  # Q/DQ (and casts) the other graph adds on the data path
    base: dict[str, NodeFacts]
    other: dict[str, NodeFacts]
    base_status: dict[str, str] = field(default_factory=dict)  # id -> same|changed|removed|fused
    other_status: dict[str, str] = field(default_factory=dict)  # id -> same|changed|added|...
    notes_base: dict[str, str] = field(default_factory=dict)  # id -> one line for the tooltip
    notes_other: dict[str, str] = field(default_factory=dict)

    def match_of_base(self) -> dict[str, str]:
        return {m.base: m.other for m in self.matches}

    def match_of_other(self) -> dict[str, str]:
        return {m.other: m.base for m in self.matches}

    def summary(self) -> dict[str, int]:
        how = [m.how for m in self.matches]
        return {"matched": len(self.matches), "by_name": how.count("name"),
                "by_structure": how.count("structure"), "by_order": how.count("order"),
                "changed": sum(1 for m in self.matches if m.changes),
                "only_base": len(self.only_base), "only_other": len(self.only_other),
                "fused": len(self.fused) + len(self.fused_other),
                "inserted": len(self.inserted),
                "base_nodes": len(self.base), "other_nodes": len(self.other)}

    def to_wire(self) -> dict[str, Any]:
        """Everything, as JSON data: a worker computes the diff, the window shows it."""
        return asdict(self)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> GraphDiff:
        d = dict(d)
        d["matches"] = [Match(**m) for m in d["matches"]]
        d["base"] = {k: NodeFacts(**f) for k, f in d["base"].items()}
        d["other"] = {k: NodeFacts(**f) for k, f in d["other"].items()}
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """The report `modeldeck diff --json` prints: pairs and their changes by name."""
        b, o = self.base, self.other

        def node(f: NodeFacts) -> dict[str, Any]:
            return {"id": f.id, "name": f.name, "op_type": f.op, "shape": f.shape,
                    "params": f.params, "precision": f.precision}

        return {
            "base": self.base_path, "other": self.other_path, "summary": self.summary(),
            "matches": [{"base": m.base, "other": m.other, "how": m.how,
                         "base_name": b[m.base].name, "other_name": o[m.other].name,
                         "base_op": b[m.base].op, "other_op": o[m.other].op,
                         "changes": m.changes, "time_delta_ms": m.time_delta_ms}
                        for m in self.matches],
            "only_base": [node(b[k]) for k in self.only_base],
            "only_other": [node(o[k]) for k in self.only_other],
            "fused": [{"base": k, "base_name": b[k].name, "base_op": b[k].op, "into": v,
                       "into_name": o[v].name} for k, v in self.fused.items()],
            "fused_other": [{"other": k, "other_name": o[k].name, "other_op": o[k].op,
                             "into": v} for k, v in self.fused_other.items()],
            "inserted": self.inserted,
        }


class _Facts:
    """Compute nodes of one graph and their data-path neighbours, Q/DQ seen through."""

    def __init__(self, model: ModelGraph):
        self.model = model
        tensors: dict[str, TensorInfo] = {}
        nodes: list[Node] = []
        for item in model.walk():
            nodes.append(item.node)
            for g in item.scopes:
                tensors.update(g.tensors)
        tensors.update(model.graph.tensors)
        self.tensors = tensors
        producer: dict[str, Node] = {}
        for n in nodes:
            for o in n.outputs:
                if o:
                    producer[o] = n
        # weight-like tensors: stored weights, and what nodes fed by weights alone compute
        weight = {k for k, t in tensors.items() if t.is_weight}
        weight_nodes: set[str] = set()
        for n in nodes:  # file order is topological in valid ONNX
            ins = [i for i in n.inputs if i]
            if not n.subgraphs and all(i in weight or (i not in producer and i in tensors
                                                       and tensors[i].is_weight) for i in ins):
                if ins or n.op_type in ("Constant", "ConstantOfShape"):
                    weight.update(o for o in n.outputs if o)
                    weight_nodes.add(n.id)
        self.weight = weight
        self.transparent = {n.id: n for n in nodes
                            if n.id not in weight_nodes and n.op_type in TRANSPARENT_OPS}
        transparent = set(self.transparent)
        self.producer = producer
        core = [n for n in nodes if n.id not in weight_nodes and n.id not in transparent]
        self.nodes = {n.id: n for n in core}
        self.facts: dict[str, NodeFacts] = {}
        for i, n in enumerate(core):
            self.facts[n.id] = NodeFacts(n.id, n.name, n.op_type, i)
        for n in core:
            f = self.facts[n.id]
            quantized_in = False
            for t in n.inputs:
                if not t or t in weight:
                    continue
                p, q = self._through(t)
                quantized_in = quantized_in or q
                if p is not None and p not in f.preds:
                    f.preds.append(p)
                    self.facts[p].succs.append(n.id)
            f.params, wdtype = self._weights(n)
            out = tensors.get(n.outputs[0]) if n.outputs and n.outputs[0] else None
            f.shape = _shape(out)
            f.precision = self._precision(n, quantized_in, wdtype, out)

    def _through(self, tensor: str) -> tuple[str | None, bool]:
        """The compute node producing `tensor` behind Q/DQ/Cast/Identity; whether Q/DQ was seen."""
        quantized = False
        seen = 0
        while seen < 64:
            p = self.producer.get(tensor)
            if p is None:
                return None, quantized
            if p.id in self.facts or p.id in self.nodes:
                return p.id, quantized
            if p.op_type not in TRANSPARENT_OPS:
                return None, quantized  # a weight node
            quantized = quantized or p.op_type in QUANT_OPS
            data = [i for i in p.inputs[:1] if i]
            if not data:
                return None, quantized
            tensor = data[0]
            seen += 1
        return None, quantized

    def _weights(self, n: Node) -> tuple[int, str]:
        """(elements of the weights it reads, the dtype they are stored in)."""
        total, dtype = 0, ""
        slots = _WEIGHT_SLOTS.get(n.op_type)
        for i, t in enumerate(n.inputs):
            if not t or t not in self.weight or (slots is not None and i not in slots):
                continue
            root = self._weight_root(t)
            info = self.tensors.get(root)
            if info is None:
                continue
            k = info.numel
            if k:
                total += k
                if not dtype or k > 1:
                    dtype = info.dtype or dtype
        return total, dtype

    def _weight_root(self, t: str) -> str:
        """Through DequantizeLinear / Cast / Identity back to the stored tensor."""
        for _ in range(8):
            p = self.producer.get(t)
            if p is None or p.op_type not in TRANSPARENT_OPS or not p.inputs or not p.inputs[0]:
                return t
            t = p.inputs[0]
        return t

    @staticmethod
    def _precision(n: Node, quantized_in: bool, wdtype: str, out: TensorInfo | None) -> str:
        if n.op_type in _INTEGER_OPS:
            return _INTEGER_OPS[n.op_type]
        w = _DTYPE_PRECISION.get(wdtype, "")
        if quantized_in:
            return "INT8"
        if w in ("INT8", "UINT8", "INT4", "UINT4"):
            return f"{w} weights"
        dt = out.dtype if out is not None else None
        return _DTYPE_PRECISION.get(dt or "", w or (dt or "").upper())


def _shape(t: TensorInfo | None) -> str:
    if t is None or t.shape is None:
        return ""
    return "×".join("?" if not isinstance(d, int) else str(d) for d in t.shape)


def diff_graphs(base: ModelGraph, other: ModelGraph,
                base_times: Mapping[str, float] | None = None,
                other_times: Mapping[str, float] | None = None) -> GraphDiff:
    """Match `other`'s compute nodes to `base`'s (see the module docstring).

    `*_times`: node id -> ms of a per-layer profile, when one exists; a match then carries the
    time delta.
    """
    a, b = _Facts(base), _Facts(other)
    fa, fb = a.facts, b.facts
    pairs: dict[str, tuple[str, str]] = {}  # base id -> (other id, how)
    back: dict[str, str] = {}
    fwd: dict[str, str] = {}  # base id -> other id, as pairs
    fused_a: dict[str, str] = {}  # base node folded into an other node (ids repeat across
    fused_b: dict[str, str] = {}  # models, so each side keeps its own)

    def pair(x: str, y: str, how: str) -> bool:
        if x in pairs or y in back:
            return False
        pairs[x] = (y, how)
        back[y] = x
        fwd[x] = y
        return True

    # 1. names
    by_name_b: dict[str, list[str]] = {}
    for k, f in fb.items():
        if f.name:
            by_name_b.setdefault(f.name, []).append(k)
    names_a: dict[str, int] = {}
    for f in fa.values():
        names_a[f.name] = names_a.get(f.name, 0) + 1
    for k, f in fa.items():
        cands = by_name_b.get(f.name, []) if f.name else []
        if len(cands) == 1 and names_a[f.name] == 1 and family(fb[cands[0]].op) == family(f.op):
            pair(k, cands[0], "name")

    # 2. structure: spread from matched pairs to neighbours of the same family; a fusable op
    # whose family the other side lacks there was folded into the pair's node: look through it
    def spread(queue: list[tuple[str, str]]) -> None:
        while queue:
            _spread_one(*queue.pop(), queue)

    def _spread_one(x: str, y: str, queue: list[tuple[str, str]]) -> None:
        for side in ("succs", "preds"):
            for _ in range(8):
                ca = _candidates(fa, x, side, pairs, fused_a)
                cb = _candidates(fb, y, side, back, fused_b)
                if not ca and not cb:
                    break
                progress = False
                for xa in ca:
                    fam = family(fa[xa].op)
                    yb = next((c for c in cb if c not in back and family(fb[c].op) == fam), None)
                    if yb is not None and pair(xa, yb, "structure"):
                        queue.append((xa, yb))
                        progress = True
                ca = [c for c in ca if c not in pairs]
                cb = [c for c in cb if c not in back]
                fams_a = {family(fa[c].op) for c in ca}
                fams_b = {family(fb[c].op) for c in cb}
                for xa in ca:
                    if _cross(fa[xa].op) in FUSABLE_OPS and family(fa[xa].op) not in fams_b:
                        fused_a[xa] = _host(fa[xa], fwd, y)
                        progress = True
                for yb in cb:
                    if _cross(fb[yb].op) in FUSABLE_OPS and family(fb[yb].op) not in fams_a:
                        fused_b[yb] = _host(fb[yb], back, x)
                        progress = True
                if not progress:
                    break

    spread([(x, y) for x, (y, _) in pairs.items()])

    # 3. order: align what is left by op family
    rest_a = [k for k in fa if k not in pairs and k not in fused_a]
    rest_b = [k for k in fb if k not in back and k not in fused_b]
    if rest_a and rest_b:
        sm = difflib.SequenceMatcher(None, [family(fa[k].op) for k in rest_a],
                                     [family(fb[k].op) for k in rest_b], autojunk=False)
        found = []
        for blk in sm.get_matching_blocks():
            for i in range(blk.size):
                if pair(rest_a[blk.a + i], rest_b[blk.b + i], "order"):
                    found.append((rest_a[blk.a + i], rest_b[blk.b + i]))
        spread(found)  # fused neighbours of pairs found by order

    matches: list[Match] = []
    for x, (y, how) in sorted(pairs.items(), key=lambda kv: fa[kv[0]].order):
        m = Match(x, y, how, _changes(fa[x], fb[y]))
        if base_times is not None and other_times is not None and x in base_times \
                and y in other_times:
            m.time_delta_ms = float(other_times[y]) - float(base_times[x])
            m.changes.append(f"time {base_times[x]:.3f} → {other_times[y]:.3f} ms")
        matches.append(m)
    d = GraphDiff(base.meta.path, other.meta.path, matches,
                  [k for k in fa if k not in pairs and k not in fused_a],
                  [k for k in fb if k not in back and k not in fused_b], fused_a, fused_b,
                  _inserted(a, b), fa, fb)
    _statuses(d)
    return d


def _host(f: NodeFacts, match: Mapping[str, str], default: str) -> str:
    """What a folded node went into: the counterpart of the node feeding it (BatchNorm and
    activations fold into the Conv before them), else of the node it feeds."""
    for k in f.preds + f.succs:
        if k in match:
            return match[k]
    return default


def _inserted(a: _Facts, b: _Facts) -> list[str]:
    """Q/DQ, casts and identities of b on the data path that a has no same-named one of."""
    have: dict[tuple[str, str], int] = {}
    for n in a.transparent.values():
        have[(n.op_type, n.name)] = have.get((n.op_type, n.name), 0) + 1
    out = []
    for k, n in b.transparent.items():
        if have.get((n.op_type, n.name), 0) > 0:
            have[(n.op_type, n.name)] -= 1
        else:
            out.append(k)
    return out


def _candidates(facts: dict[str, NodeFacts], x: str, side: str, matched: Mapping[str, Any],
                fused: dict[str, str]) -> list[str]:
    """Unmatched neighbours of x on one side, looking through the ops found fused."""
    out: list[str] = []
    stack = list(getattr(facts[x], side))
    seen: set[str] = set()
    while stack:
        c = stack.pop(0)
        if c in seen:
            continue
        seen.add(c)
        if c in fused:
            stack.extend(getattr(facts[c], side))
            continue
        if c not in matched:
            out.append(c)
    return out


def _changes(x: NodeFacts, y: NodeFacts) -> list[str]:
    out = []
    if _cross(x.op) != _cross(y.op):  # aten::conv2d and Conv are one op in two formats
        out.append(f"op {x.op} → {y.op}")
    if x.precision != y.precision and x.precision and y.precision:
        out.append(f"precision {x.precision} → {y.precision}")
    if x.shape != y.shape and x.shape and y.shape:
        out.append(f"shape {x.shape} → {y.shape}")
    if x.params != y.params:
        rel = f" ({(y.params - x.params) / x.params:+.0%})" if x.params else ""
        out.append(f"params {x.params:,} → {y.params:,}{rel}")
    return out


def _statuses(d: GraphDiff) -> None:
    for m in d.matches:
        st = "changed" if m.changes else "same"
        d.base_status[m.base] = d.other_status[m.other] = st
        text = "; ".join(m.changes) if m.changes else "unchanged"
        how = {"name": "by name", "structure": "by structure", "order": "by order"}[m.how]
        d.notes_base[m.base] = f"→ {d.other[m.other].name or m.other} ({how}): {text}"
        d.notes_other[m.other] = f"← {d.base[m.base].name or m.base} ({how}): {text}"
    for k in d.only_base:
        d.base_status[k] = "removed"
        d.notes_base[k] = "not in the other graph"
    for k in d.only_other:
        d.other_status[k] = "added"
        d.notes_other[k] = "not in the base graph"
    for k, host in d.fused.items():
        d.base_status[k] = "fused"
        d.notes_base[k] = f"folded into {d.other[host].name or host}"
    for k, host in d.fused_other.items():
        d.other_status[k] = "fused"
        d.notes_other[k] = f"added around {d.base[host].name or host}'s counterpart " \
                           "(a rescale, bias or activation of the new form)"
    for k in d.inserted:
        d.other_status[k] = "inserted"
        d.notes_other[k] = "inserted on the data path (quantization / cast)"
