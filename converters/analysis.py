"""What a model costs: parameters, weight bytes, MACs and FLOPs per node and in total.

Conventions (stated so the figures can be checked):
- MACs count multiply-accumulates of matrix-shaped work (conv, gemm/matmul, recurrent cells).
  FLOPs = 2 x MACs for that work plus bias adds, plus an estimate for other ops (elementwise 1 per
  output element, softmax 3, normalisation 2-5, pooling one per window element).
- Parameters are counted where a constant value meets computed data: a weight that reaches a
  compute node through Transpose/Convert/DequantizeLinear/ConstantOfShape is counted once, at that
  node, with the shape it has there. Integer index/shape tensors (int32/int64/bool) are not
  parameters. Weight bytes are the stored bytes of the weights, whatever their dtype.
- Symbolic dims (a dynamic batch) are taken as 1 and reported in `assumed_dims`.
- An op without a formula, or whose shapes are unknown, is listed in `uncounted`, never taken as 0.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from converters.graph import Dim, ModelGraph, Node, WalkItem

_INDEX_DTYPES = {"int32", "int64", "uint32", "uint64", "bool", "string"}
_DTYPE_BYTES = {"float64": 8, "int64": 8, "uint64": 8, "complex64": 8, "complex128": 16,
                "float32": 4, "int32": 4, "uint32": 4, "float16": 2, "bfloat16": 2, "int16": 2,
                "uint16": 2, "int8": 1, "uint8": 1, "bool": 1}


@dataclass
class NodeCost:
    node_id: str
    op_type: str
    params: int = 0
    weight_bytes: int = 0
    macs: int | None = 0  # None: not counted (see `note`)
    flops: int | None = 0
    note: str = ""


@dataclass
class Analysis:
    params: int
    param_bytes: int  # the counted parameters at the dtype they are consumed in
    weight_bytes: int  # stored bytes of every weight in the file
    macs: int
    flops: int
    activation_bytes_peak: int  # live activations along the main graph's order (estimate)
    node_count: int
    ops: dict[str, int]
    uncounted: dict[str, dict[str, Any]]  # op -> {"count": n, "reason": ...}
    assumed_dims: dict[str, int]
    nodes: list[NodeCost] = field(default_factory=list)

    def to_dict(self, layers: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not layers:
            d.pop("nodes")
        return d


class _Shapes:
    """Shape lookups for one node; symbolic dims resolve to 1 and are recorded."""

    def __init__(self, item: WalkItem, assumed: dict[str, int]):
        self.item, self.assumed = item, assumed

    def _resolve(self, shape: list[Dim] | None) -> list[int] | None:
        if shape is None:
            return None
        out = []
        for d in shape:
            if isinstance(d, int):
                out.append(d)
            elif isinstance(d, str):
                self.assumed.setdefault(d, 1)
                out.append(self.assumed[d])
            else:
                return None
        return out

    def inp(self, i: int) -> list[int] | None:
        names = self.item.node.inputs
        if i >= len(names) or not names[i]:
            return None
        t = self.item.tensor(names[i])
        return self._resolve(t.shape) if t else None

    def out(self, i: int = 0) -> list[int] | None:
        names = self.item.node.outputs
        if i >= len(names):
            return None
        t = self.item.tensor(names[i])
        return self._resolve(t.shape) if t else None

    def has_input(self, i: int) -> bool:
        return i < len(self.item.node.inputs) and bool(self.item.node.inputs[i])


class _NoShape(Exception):
    pass


def _need(shape: list[int] | None) -> list[int]:
    if shape is None:
        raise _NoShape
    return shape


def _numel(shape: list[int] | None) -> int:
    return math.prod(_need(shape))


Cost = tuple[int, int]  # (macs, flops)
Formula = Callable[[Node, _Shapes], Cost]


def _conv(weight_index: int, skip: int) -> Formula:
    """out elements x (in-channels-per-group x kernel) read off the weight's shape.

    The weight layout holds groups and kernel size, so dilation and groups need no special case.
    `skip` is how many leading weight dims are not part of the per-output work (1 for
    [Cout, Cin/g, k...], 2 for OpenVINO's grouped [G, Cout/g, Cin/g, k...]).
    """
    def f(n: Node, s: _Shapes) -> Cost:
        w = _need(s.inp(weight_index))
        macs = _numel(s.out()) * math.prod(w[skip:])
        bias = _numel(s.out()) if s.has_input(weight_index + 1) and n.op_type == "Conv" else 0
        return macs, 2 * macs + bias
    return f


def _conv_transpose(weight_index: int, skip: int) -> Formula:
    """Each input element is scattered over (Cout/g x kernel) outputs."""
    def f(n: Node, s: _Shapes) -> Cost:
        w = _need(s.inp(weight_index))
        macs = _numel(s.inp(0)) * math.prod(w[skip:])
        return macs, 2 * macs
    return f


def _torch_conv(n: Node, s: _Shapes) -> Cost:
    transposed = bool(n.attributes.get("transposed", False))
    return (_conv_transpose(1, 1) if transposed else _conv(1, 1))(n, s)


def _gemm(n: Node, s: _Shapes) -> Cost:
    a = _need(s.inp(0))
    k = a[0] if n.attributes.get("transA", 0) else a[1]
    macs = _numel(s.out()) * k
    return macs, 2 * macs + (_numel(s.out()) if s.has_input(2) else 0)


def _matmul(a_index: int = 0) -> Formula:
    """Batched matmul, attention-shaped ones included: out elements x K."""
    def f(n: Node, s: _Shapes) -> Cost:
        a = _need(s.inp(a_index))
        transpose = n.attributes.get("transpose_a", False) in (True, "true", 1)
        k = a[-2] if transpose and len(a) >= 2 else a[-1]
        macs = _numel(s.out()) * k
        return macs, 2 * macs
    return f


def _linear(n: Node, s: _Shapes) -> Cost:
    w = _need(s.inp(1))
    macs = _numel(s.out()) * w[-1]
    return macs, 2 * macs + (_numel(s.out()) if s.has_input(2) else 0)


def _matmul_nbits(n: Node, s: _Shapes) -> Cost:
    macs = _numel(s.out()) * int(n.attributes["K"])
    return macs, 2 * macs


def _recurrent(gates: int, x_index: int, w_index: int, r_index: int, seq_axis: int) -> Formula:
    """seq x batch x (numel(W) + numel(R)): every step multiplies input and state by all gates.

    W is [dirs, gates*H, I] and R is [dirs, gates*H, H], so their element counts already hold
    directions, gates and hidden size. Gate nonlinearities add ~ (gates+2) x H x dirs per step.
    """
    def f(n: Node, s: _Shapes) -> Cost:
        x = _need(s.inp(x_index))
        axis = seq_axis
        if n.op_type in ("LSTM", "GRU", "RNN") and n.attributes.get("layout", 0) == 1:
            axis = 1
        seq, batch = x[axis], x[1 - axis]
        w, r = _need(s.inp(w_index)), _need(s.inp(r_index))
        macs = seq * batch * (math.prod(w) + math.prod(r))
        hidden_units = math.prod(r[:-1]) // gates  # dirs x H
        return macs, 2 * macs + seq * batch * hidden_units * (gates + 2)
    return f


def _torch_recurrent(n: Node, s: _Shapes) -> Cost:
    """aten::lstm/gru/rnn: weights arrive as tensors among the inputs; sum the 2-D ones."""
    x = _need(s.inp(0))
    batch_first = bool(n.attributes.get("batch_first", False))
    seq, batch = (x[1], x[0]) if batch_first else (x[0], x[1])
    weights = [s.inp(i) for i in range(1, len(n.inputs))]
    mats = sum(math.prod(w) for w in weights if w is not None and len(w) == 2)
    if not mats:
        raise _NoShape
    macs = seq * batch * mats
    return macs, 2 * macs


def _per_out(k: int) -> Formula:
    def f(n: Node, s: _Shapes) -> Cost:
        return 0, k * _numel(s.out())
    return f


def _per_in(k: int) -> Formula:
    def f(n: Node, s: _Shapes) -> Cost:
        return 0, k * _numel(s.inp(0))
    return f


def _variadic(n: Node, s: _Shapes) -> Cost:
    return 0, max(1, len([i for i in n.inputs if i]) - 1) * _numel(s.out())


def _pool(n: Node, s: _Shapes) -> Cost:
    a = n.attributes
    kernel = a.get("kernel_shape") or a.get("kernel") or a.get("kernel_size") or [1]
    if isinstance(kernel, int):
        kernel = [kernel]
    return 0, _numel(s.out()) * math.prod(int(k) for k in kernel)


def _batchnorm(n: Node, s: _Shapes) -> Cost:
    e = _numel(s.out())
    return e, 2 * e  # folded to one scale and one shift per element


def _resize(n: Node, s: _Shapes) -> Cost:
    mode = str(n.attributes.get("mode", "nearest")).lower()
    taps = 4 if "linear" in mode else 16 if "cubic" in mode else 1
    return 0, taps * _numel(s.out())


def _free(n: Node, s: _Shapes) -> Cost:
    return 0, 0


_FREE = """
Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Gather GatherElements GatherND
Shape Size Identity Constant ConstantOfShape Cast CastLike Dropout Expand Tile Pad DepthToSpace
SpaceToDepth Range NonZero ScatterND ScatterElements Optional OptionalGetElement SequenceAt
SequenceConstruct SequenceInsert SplitToSequence ConcatFromSequence Trilu EyeLike OneHot
ShapeOf Convert ConvertLike Broadcast StridedSlice VariadicSplit Parameter Result Const ReadValue
Assign ScatterUpdate ScatterElementsUpdate ScatterNDUpdate Roll Reverse ReverseSequence
aten::view aten::reshape aten::flatten aten::permute aten::transpose aten::t aten::cat
aten::contiguous aten::size aten::select aten::slice aten::unsqueeze aten::squeeze aten::expand
aten::dropout aten::dropout_ aten::clone aten::detach aten::_to_copy aten::to aten::numel
aten::alias aten::_unsafe_view aten::unsafe_view aten::split aten::chunk aten::stack
aten::index aten::embedding aten::zeros aten::ones aten::full aten::arange aten::empty
aten::feature_dropout aten::view_as aten::expand_as aten::type_as aten::split_with_sizes
aten::unbind aten::getitem aten::Int aten::ScalarImplicit aten::copy_ aten::zeros_like
aten::ones_like aten::squeeze_ aten::unsqueeze_ aten::flatten_ aten::gather
prim::ListConstruct prim::ListUnpack prim::TupleConstruct prim::TupleUnpack prim::Constant
prim::GetAttr prim::NumToTensor prim::device prim::dtype
"""
_ELEMENTWISE = """
Add Sub Mul Div Relu LeakyRelu PRelu Sigmoid Tanh Clip Exp Log Sqrt Pow Neg Abs Erf Gelu
HardSigmoid HardSwish Elu Selu Celu Softplus Softsign Where Equal Less LessOrEqual Greater
GreaterOrEqual Not And Or Xor Reciprocal Floor Ceil Round Sign Mod BitShift ThresholdedRelu
Mish Swish Sin Cos IsNaN IsInf QuantizeLinear DequantizeLinear DynamicQuantizeLinear BiasGelu
FastGelu QuickGelu
Subtract Multiply Divide Clamp Maximum Minimum Power Negative Ceiling HSwish HSigmoid SoftPlus
Select LogicalNot LogicalAnd LogicalOr NotEqual SquaredDifference FloorMod Sqrt Elu Mish
aten::add aten::add_ aten::sub aten::mul aten::mul_ aten::div aten::relu aten::relu_
aten::sigmoid aten::tanh aten::gelu aten::silu aten::silu_ aten::hardtanh aten::hardtanh_
aten::clamp aten::leaky_relu aten::exp aten::log aten::sqrt aten::rsqrt aten::pow aten::neg
aten::abs aten::hardswish aten::hardswish_ aten::hardsigmoid aten::elu aten::where aten::eq
aten::lt aten::gt aten::le aten::ge aten::ne aten::rsub aten::reciprocal aten::erf aten::sign
aten::floor aten::ceil aten::round aten::masked_fill aten::mish aten::softplus
aten::quantize_per_tensor aten::dequantize
"""
_REDUCE = """
GlobalAveragePool GlobalMaxPool GlobalLpPool ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd
ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceSumSquare ArgMax ArgMin CumSum TopK
ReduceLogicalAnd ReduceLogicalOr
aten::mean aten::sum aten::amax aten::amin aten::max aten::min aten::argmax aten::argmin
aten::adaptive_avg_pool1d aten::adaptive_avg_pool2d aten::adaptive_avg_pool3d aten::cumsum
aten::topk aten::adaptive_max_pool2d aten::_adaptive_avg_pool2d
"""

FORMULAS: dict[str, Formula] = {}
FORMULAS.update({op: _free for op in _FREE.split()})
FORMULAS.update({op: _per_out(1) for op in _ELEMENTWISE.split()})
FORMULAS.update({op: _per_in(1) for op in _REDUCE.split()})
FORMULAS.update({op: _variadic for op in ("Sum", "Max", "Min", "Mean")})
FORMULAS.update({op: _per_out(3) for op in ("Softmax", "LogSoftmax", "SoftMax", "Hardmax",
                                             "aten::softmax", "aten::_softmax",
                                             "aten::log_softmax", "aten::_log_softmax")})
FORMULAS.update({op: _per_out(5) for op in (
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization",
    "MeanVarianceNormalization", "MVN", "NormalizeL2", "RMSNormalization",
    "SimplifiedLayerNormalization", "SkipLayerNormalization", "LRN", "aten::layer_norm",
    "aten::native_layer_norm", "aten::group_norm", "aten::native_group_norm",
    "aten::instance_norm")})
FORMULAS.update({op: _batchnorm for op in (
    "BatchNormalization", "BatchNormInference", "aten::batch_norm",
    "aten::_native_batch_norm_legit_no_training", "aten::native_batch_norm")})
FORMULAS.update({op: _pool for op in (
    "MaxPool", "AveragePool", "LpPool", "AvgPool", "MaxRoiPool", "aten::max_pool1d",
    "aten::max_pool2d", "aten::max_pool3d", "aten::avg_pool1d", "aten::avg_pool2d",
    "aten::avg_pool3d", "aten::max_pool2d_with_indices")})
FORMULAS.update({op: _resize for op in (
    "Resize", "Upsample", "Interpolate", "aten::upsample_nearest2d", "aten::upsample_bilinear2d",
    "aten::upsample_bicubic2d", "aten::upsample_nearest1d", "aten::upsample_nearest3d")})
FORMULAS.update({
    "Conv": _conv(1, 1), "ConvInteger": _conv(1, 1), "QLinearConv": _conv(3, 1),
    "FusedConv": _conv(1, 1), "NhwcConv": _conv(1, 1),
    "Convolution": _conv(1, 1), "GroupConvolution": _conv(1, 2),
    "BinaryConvolution": _conv(1, 1), "DeformableConvolution": _conv(2, 1),
    "ConvTranspose": _conv_transpose(1, 1), "ConvolutionBackpropData": _conv_transpose(1, 1),
    "GroupConvolutionBackpropData": _conv_transpose(1, 2),
    "aten::convolution": _torch_conv, "aten::_convolution": _torch_conv,
    "aten::conv1d": _conv(1, 1), "aten::conv2d": _conv(1, 1), "aten::conv3d": _conv(1, 1),
    "aten::conv_transpose1d": _conv_transpose(1, 1),
    "aten::conv_transpose2d": _conv_transpose(1, 1),
    "aten::conv_transpose3d": _conv_transpose(1, 1),
    "Gemm": _gemm, "MatMul": _matmul(), "MatMulInteger": _matmul(), "FusedMatMul": _matmul(),
    "QLinearMatMul": _matmul(0), "MatMulNBits": _matmul_nbits, "FullyConnected": _linear,
    "Einsum": None,  # no general formula: listed as uncounted
    "aten::matmul": _matmul(), "aten::mm": _matmul(), "aten::bmm": _matmul(),
    "aten::linear": _linear, "aten::addmm": _matmul(1), "aten::baddbmm": _matmul(1),
    "LSTM": _recurrent(4, 0, 1, 2, 0), "GRU": _recurrent(3, 0, 1, 2, 0),
    "RNN": _recurrent(1, 0, 1, 2, 0),
    "LSTMSequence": _recurrent(4, 0, 4, 5, 1), "GRUSequence": _recurrent(3, 0, 3, 4, 1),
    "RNNSequence": _recurrent(1, 0, 3, 4, 1),
    "LSTMCell": _recurrent(4, 0, 3, 4, -1), "GRUCell": _recurrent(3, 0, 2, 3, -1),
    "RNNCell": _recurrent(1, 0, 2, 3, -1),
    "aten::lstm": _torch_recurrent, "aten::gru": _torch_recurrent,
    "aten::rnn_tanh": _torch_recurrent, "aten::rnn_relu": _torch_recurrent,
})
FORMULAS = {k: v for k, v in FORMULAS.items() if v is not None}

# Control-flow containers: their cost is their bodies' nodes, which are walked separately.
_CONTAINERS = {"If", "Loop", "Scan", "TensorIterator", "prim::If", "prim::Loop"}


def _tensor_bytes(dtype: str | None, shape: list[int] | None) -> int:
    if shape is None:
        return 0
    return math.prod(shape) * _DTYPE_BYTES.get(dtype or "float32", 4)


def analyze(model: ModelGraph, keep_nodes: bool = True) -> Analysis:
    """Walk every node once; attribute constants to the node where they meet data."""
    assumed: dict[str, int] = {}
    const_sources: dict[str, frozenset[str]] = {}  # constant-derived tensor -> stored weights
    counted_tensors: set[str] = set()
    counted_sources: set[str] = set()
    nodes: list[NodeCost] = []
    ops: Counter[str] = Counter()
    uncounted: dict[str, dict[str, Any]] = {}
    total_params = total_macs = total_flops = param_bytes = 0
    weight_bytes = 0

    seen_graphs: set[int] = set()
    for item in model.walk():
        if id(item.graph) not in seen_graphs:
            seen_graphs.add(id(item.graph))
            for t in item.graph.tensors.values():
                if t.is_weight and t.name not in const_sources:
                    const_sources[t.name] = frozenset([t.name])
                    weight_bytes += t.nbytes or 0
        n = item.node
        ops[n.op_type] += 1
        ins = [i for i in n.inputs if i]
        if all(i in const_sources for i in ins) and n.op_type not in _CONTAINERS:
            # Runs on constants only (ConstantOfShape, Transpose of a weight, Dequantize...):
            # its outputs are weights in another form, counted where they are consumed.
            src = frozenset().union(*(const_sources[i] for i in ins)) if ins else frozenset()
            for o in n.outputs:
                if o:
                    const_sources[o] = src
            cost = NodeCost(n.id, n.op_type, note="constant")
            if keep_nodes:
                nodes.append(cost)
            continue

        cost = NodeCost(n.id, n.op_type)
        shapes = _Shapes(item, assumed)
        for name in ins:
            if name not in const_sources or name in counted_tensors:
                continue
            counted_tensors.add(name)
            t = item.tensor(name)
            if t is not None and (t.dtype or "float32") not in _INDEX_DTYPES:
                numel = _numel_or_zero(shapes, t.shape)
                cost.params += numel
                param_bytes += numel * _DTYPE_BYTES.get(t.dtype or "float32", 1)
            for src in const_sources[name] - counted_sources:
                counted_sources.add(src)
                st = item.tensor(src)
                cost.weight_bytes += (st.nbytes or 0) if st else 0

        if n.op_type in _CONTAINERS:
            cost.note = "control flow: cost is in its subgraph nodes"
        else:
            formula = FORMULAS.get(n.op_type)
            if formula is None:
                cost.macs = cost.flops = None
                cost.note = "no formula for this op"
            else:
                try:
                    cost.macs, cost.flops = formula(n, shapes)
                except (_NoShape, IndexError, KeyError, TypeError, ValueError):
                    cost.macs = cost.flops = None
                    cost.note = "shapes unknown"
        if cost.macs is None:
            u = uncounted.setdefault(n.op_type, {"count": 0, "reason": cost.note})
            u["count"] += 1
        else:
            total_macs += cost.macs
            total_flops += cost.flops or 0
        total_params += cost.params
        if keep_nodes:
            nodes.append(cost)

    return Analysis(params=total_params, param_bytes=param_bytes, weight_bytes=weight_bytes, macs=total_macs,
                    flops=total_flops, activation_bytes_peak=_peak_activations(model, assumed),
                    node_count=sum(ops.values()), ops=dict(ops.most_common()),
                    uncounted=uncounted, assumed_dims=assumed, nodes=nodes)


def _numel_or_zero(shapes: _Shapes, shape: list[Dim] | None) -> int:
    resolved = shapes._resolve(shape)
    return math.prod(resolved) if resolved is not None else 0


def _peak_activations(model: ModelGraph, assumed: dict[str, int]) -> int:
    """Largest sum of live activation bytes when the main graph runs in its stored order.

    A tensor lives from its producer to its last consumer; weights are not activations.
    This is a lower-bound estimate: runtimes add workspace and may reorder.
    """
    g = model.graph
    last_use: dict[str, int] = {}
    for i, n in enumerate(g.nodes):
        for name in n.inputs:
            last_use[name] = i
    for name in g.outputs:
        last_use[name] = len(g.nodes)

    def nbytes(name: str) -> int:
        t = g.tensors.get(name)
        if t is None or t.is_weight or t.shape is None:
            return 0
        dims = [d if isinstance(d, int) else assumed.get(d, 1) if isinstance(d, str) else None
                for d in t.shape]
        if any(d is None for d in dims):
            return 0
        return _tensor_bytes(t.dtype, dims)  # type: ignore[arg-type]

    live = {name: nbytes(name) for name in g.inputs}
    current = peak = sum(live.values())
    for i, n in enumerate(g.nodes):
        for o in n.outputs:
            if o and o not in live:
                live[o] = nbytes(o)
                current += live[o]
        peak = max(peak, current)
        for name in set(n.inputs) | set(n.outputs):
            if name in live and last_use.get(name, -1) <= i:
                current -= live.pop(name)
    return peak
