"""What a model costs: parameters, weight bytes, MACs and FLOPs per node and in total.

Conventions (stated so the figures can be checked):
- MACs count multiply-accumulates of matrix-shaped work only (conv, gemm/matmul, attention,
  recurrent cells). FLOPs = 2 x MACs for that work plus bias adds, plus an estimate for other
  ops (elementwise 1 per output element, softmax 3, normalisation 2-5 -- BatchNorm included,
  which is a per-element scale and shift, not a MAC -- pooling one per window element).
- Parameters are stored weights, each counted once whatever path reaches it. Every tensor
  computed from constants only (Slice, Concat, Transpose, Reshape, Cast/Convert,
  DequantizeLinear, FakeQuantize, Squeeze/Unsqueeze, Split, Gather on a constant...) is traced
  back to the stored weights it came from; the full stored element count of each such weight is
  attributed to the first compute node (one that also takes computed data) that consumes any
  tensor derived from it, in walk order (main graph first, a node before its subgraphs). So a
  weight sliced into several gates, or reached from two If branches, is counted once, and a
  weight used only in part still counts whole. A ConstantOfShape on constants is a weight stored
  as its shape (the onnx package's light zoo graphs keep all weights so): it counts at its
  output's size. Not parameters, though their stored bytes count: the smaller operands of an
  elementwise op on constants only (the scales and zero points of a dequantisation, weight x
  scale - zero point: the largest operand stays the parameter), the scale and zero-point inputs
  of quantise/dequantise ops on activations (QDQ graphs, FakeQuantize), and integer index/shape
  tensors (int32/int64/bool, or anything consumed as one) unless widened to floats (an int32
  bias through DequantizeLinear is a parameter). Weight bytes are the stored bytes of every
  weight in the file, whatever their dtype; param_bytes are the counted parameters at the dtype
  they are consumed in.
- Symbolic dims take their value from `analyze(dims=...)` by name; the others are taken as 1 and
  reported in `assumed_dims` ({name: value}). Graphs read through OpenVINO (IR, TFLite) keep no
  dim names: there an unknown dim is the unnamed dynamic dim "?" (1 unless dims["?"] says).
- Activations are the tensors computed from the graph's inputs; constant-derived ones (an f16
  weight widened by Convert) are weights, not activations.
- An op without a formula, or whose shapes are unknown, is listed in `uncounted`, never taken as 0.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from converters.graph import Dim, ModelGraph, Node, TensorInfo, WalkItem

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


UNNAMED_DIM = "?"  # OpenVINO keeps no names for dynamic dims: they all go by this one
# Formats read through OpenVINO's frontends, where an unknown dim is a dynamic one.
_UNNAMED_DYNAMIC_FORMATS = {"openvino", "tflite"}


class _Dims:
    """Concrete values for dims: given by name first, else 1, recorded in `assumed`."""

    def __init__(self, given: dict[str, int] | None, unnamed_dynamic: bool):
        self.given = _check_dims(given)
        self.unnamed_dynamic = unnamed_dynamic
        self.assumed: dict[str, int] = {}

    def value(self, d: Dim) -> int | None:
        if isinstance(d, int) and not isinstance(d, bool):
            return d if d >= 0 else None
        if d is None:
            if not self.unnamed_dynamic:
                return None
            d = UNNAMED_DIM
        if not isinstance(d, str):
            return None
        if d in self.given:
            return self.given[d]
        return self.assumed.setdefault(d, 1)

    def resolve(self, shape: list[Dim] | None) -> list[int] | None:
        if shape is None:
            return None
        out = []
        for d in shape:
            v = self.value(d)
            if v is None:
                return None
            out.append(v)
        return out


def _check_dims(dims: dict[str, int] | None) -> dict[str, int]:
    """Dim values are whole numbers >= 0; anything else is the caller's bug, said plainly."""
    out: dict[str, int] = {}
    for name, value in (dims or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"dim {name!r} must be a whole number >= 0, not {value!r}")
        out[str(name)] = value
    return out


class _Shapes:
    """Shape lookups for one node, with symbolic dims resolved through `_Dims`."""

    def __init__(self, item: WalkItem, dims: _Dims):
        self.item, self.dims = item, dims

    def _resolve(self, shape: list[Dim] | None) -> list[int] | None:
        return self.dims.resolve(shape)

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


def _recurrent(gates: int, x_index: int, w_index: int, r_index: int,
               seq_axis: int | None) -> Formula:
    """seq x batch x (numel(W) + numel(R)): every step multiplies input and state by all gates.

    W is [dirs, gates*H, I] and R is [dirs, gates*H, H], so their element counts already hold
    directions, gates and hidden size. Gate nonlinearities add ~ (gates+2) x H x dirs per step.
    `seq_axis` None: a cell, one step on X [batch, I].
    """
    def f(n: Node, s: _Shapes) -> Cost:
        x = s.inp(x_index)
        onnx_op = n.op_type in ("LSTM", "GRU", "RNN")
        layout = n.attributes.get("layout", 0) if onnx_op else 0
        if x is None and onnx_op and s.out(0) is not None:
            y = s.out(0)  # X unknown (it came out of an If): Y [seq, dirs, batch, H] tells
            seq, batch = (y[1], y[0]) if layout == 1 else (y[0], y[2])
        elif seq_axis is None:
            seq, batch = 1, _need(x)[0]
        else:
            axis = 1 if layout == 1 else seq_axis
            x = _need(x)
            seq, batch = x[axis], x[1 - axis]
        w, r = _need(s.inp(w_index)), _need(s.inp(r_index))
        macs = seq * batch * (math.prod(w) + math.prod(r))
        hidden_units = math.prod(r[:-1]) // gates  # dirs x H
        return macs, 2 * macs + seq * batch * hidden_units * (gates + 2)
    return f


def _sdpa(n: Node, s: _Shapes) -> Cost:
    """OpenVINO ScaledDotProductAttention: Q.K^T then weights.V, softmax in between.

    Q [..., L, E], K [..., S, E], output [..., L, Ev]: batch x L x S x (E + Ev) MACs.
    """
    q, k, out = _need(s.inp(0)), _need(s.inp(1)), _need(s.out())
    length, e, src = q[-2], q[-1], k[-2]
    batch = math.prod(out[:-2])
    macs = batch * length * src * (e + out[-1])
    return macs, 2 * macs + 3 * batch * length * src


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
    return 0, 2 * _numel(s.out())  # one scale and one shift per element: no MACs


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
ShuffleChannels BatchToSpace SpaceToBatch Eye SliceScatter Unique
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
LessEqual GreaterEqual LogicalXor SoftSign FakeQuantize FakeConvert Bucketize IsFinite
Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Tan BitwiseAnd BitwiseOr BitwiseXor BitwiseNot
BitwiseLeftShift BitwiseRightShift
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
ReduceLogicalAnd ReduceLogicalOr AdaptiveAvgPool AdaptiveMaxPool
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
    "LSTMCell": _recurrent(4, 0, 3, 4, None), "GRUCell": _recurrent(3, 0, 2, 3, None),
    "RNNCell": _recurrent(1, 0, 2, 3, None), "ScaledDotProductAttention": _sdpa,
    "aten::lstm": _torch_recurrent, "aten::gru": _torch_recurrent,
    "aten::rnn_tanh": _torch_recurrent, "aten::rnn_relu": _torch_recurrent,
})
FORMULAS = {k: v for k, v in FORMULAS.items() if v is not None}

# Control-flow containers: their cost is their bodies' nodes, which are walked separately.
_CONTAINERS = {"If", "Loop", "Scan", "TensorIterator", "prim::If", "prim::Loop"}


# Ops that make a tensor from a shape: on constants only, a weight the file stores as its shape
# (the onnx package's light Model Zoo graphs hold every weight this way).
_GENERATORS = {"ConstantOfShape", "RandomNormal", "RandomUniform"}

# Inputs that are quantisation scales and zero points (of activations or of a weight that is
# counted through another input): stored bytes, not parameters.
_QUANT_META: dict[str, tuple[int, ...]] = {
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "FakeQuantize": (1, 2, 3, 4),
    "MatMulInteger": (2, 3), "ConvInteger": (2, 3), "MatMulNBits": (2, 3, 4),
    "QLinearConv": (1, 2, 4, 5, 6, 7), "QLinearMatMul": (1, 2, 4, 5, 6, 7),
}

# Ops that turn a stored integer tensor into floats: from there it is a weight.
_WIDENING = {"DequantizeLinear", "Cast", "CastLike", "Convert", "ConvertLike"}

# Elementwise ops that, on constants only, dequantise a weight (weight x scale - zero point):
# only their largest operand stays a parameter.
_DEQUANTIZE_LIKE = set(_ELEMENTWISE.split())


def _tensor_bytes(dtype: str | None, shape: list[int] | None) -> int:
    if shape is None:
        return 0
    return math.prod(shape) * _DTYPE_BYTES.get(dtype or "float32", 4)


@dataclass(frozen=True)
class _Const:
    """A tensor computed from constants only, and the stored weights it came from."""

    params: frozenset[str]  # stored weights whose elements count as parameters
    stored: frozenset[str]  # every stored tensor it reads (scales, zero points, shapes too)


def _is_index(dtype: str | None) -> bool:
    return (dtype or "float32") in _INDEX_DTYPES


def analyze(model: ModelGraph, keep_nodes: bool = True,
            dims: dict[str, int] | None = None) -> Analysis:
    """Walk every node once; count each stored weight once, where it first meets data.

    `dims` gives values to symbolic dims by name (e.g. {"batch": 1, "sequence": 128}); the
    symbolic dims it leaves out are taken as 1 and listed in `assumed_dims`.
    """
    dim_values = _Dims(dims, model.meta.format in _UNNAMED_DYNAMIC_FORMATS)
    stored: dict[str, TensorInfo] = {}  # stored weight name -> its tensor
    consts: dict[str, _Const] = {}  # constant-derived tensor -> where it came from
    attributed: set[str] = set()  # stored tensors whose bytes a node already holds
    counted: set[str] = set()  # stored weights already counted as parameters
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
                if t.is_weight and t.name not in stored:
                    stored[t.name] = t
                    own = frozenset([t.name])
                    consts[t.name] = _Const(frozenset() if _is_index(t.dtype) else own, own)
                    weight_bytes += t.nbytes or 0
        n = item.node
        ops[n.op_type] += 1
        ins = [i for i in n.inputs if i]
        if all(i in consts for i in ins) and n.op_type not in _CONTAINERS:
            # Runs on constants only (Constant, Slice of a weight, Dequantize...): its outputs
            # are weights in another form, counted where they meet data.
            derived = _derive(n, ins, consts, stored, item)
            for o in n.outputs:
                if not o or o in stored:
                    continue
                if n.op_type in _GENERATORS:
                    # A weight the file describes by its shape only: counted at its own size.
                    t = item.tensor(o)
                    stored[o] = TensorInfo(o, t.dtype if t else None, t.shape if t else None,
                                           is_weight=True, nbytes=0)
                    derived = _Const(frozenset([o]), derived.stored | {o})
                consts[o] = derived
            if keep_nodes:
                nodes.append(NodeCost(n.id, n.op_type, note="constant"))
            continue

        cost = NodeCost(n.id, n.op_type)
        meta = _QUANT_META.get(n.op_type, ())
        for pos, name in enumerate(n.inputs):
            c = consts.get(name) if name else None
            if c is None:
                continue
            for src in c.stored - attributed:
                attributed.add(src)
                cost.weight_bytes += stored[src].nbytes or 0
            t = item.tensor(name)
            consumed = t.dtype if t is not None else None
            if _is_index(consumed) or pos in meta:
                continue  # a shape, an index, a quantisation scale: not a parameter
            for src in c.params - counted:
                st = stored[src]
                counted.add(src)
                numel = st.numel or 0
                cost.params += numel
                param_bytes += numel * _DTYPE_BYTES.get(consumed or st.dtype or "float32", 1)

        if n.op_type in _CONTAINERS:
            cost.note = "control flow: cost is in its subgraph nodes"
        else:
            formula = FORMULAS.get(n.op_type)
            if formula is None:
                cost.macs = cost.flops = None
                cost.note = "no formula for this op"
            else:
                try:
                    cost.macs, cost.flops = formula(n, _Shapes(item, dim_values))
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

    peak = _peak_activations(model, dim_values, consts)
    return Analysis(params=total_params, param_bytes=param_bytes, weight_bytes=weight_bytes,
                    macs=total_macs, flops=total_flops, activation_bytes_peak=peak,
                    node_count=sum(ops.values()), ops=dict(ops.most_common()),
                    uncounted=uncounted, assumed_dims=dict(dim_values.assumed), nodes=nodes)


def _derive(n: Node, ins: list[str], consts: dict[str, _Const], stored: dict[str, TensorInfo],
            item: WalkItem) -> _Const:
    """Where the outputs of a constants-only node come from.

    Every input's stored tensors are read. The parameters are those of the inputs that are
    data, not shapes or indices (a Slice's bounds, a Reshape's shape), except through an
    elementwise op (weight x scale - zero point), where only the largest operands keep theirs
    and the smaller ones (scales, zero points) are bytes, not parameters. An integer weight
    widened to floats (an int32 bias through DequantizeLinear) becomes a parameter there.
    """
    if not ins:
        return _Const(frozenset(), frozenset())
    keep = ins
    if n.op_type in _DEQUANTIZE_LIKE and len(ins) > 1:
        sizes = {i: _stored_numel(item.tensor(i)) for i in ins}
        if all(v is not None for v in sizes.values()):
            largest = max(sizes.values())  # type: ignore[type-var]
            keep = [i for i in ins if sizes[i] == largest]
    params = frozenset().union(*(consts[i].params for i in keep if not _is_index(_dtype(item, i))))
    first = ins[0]
    out = item.tensor(n.outputs[0]) if n.outputs and n.outputs[0] else None
    if (n.op_type in _WIDENING and first in stored and first in keep and out is not None
            and out.dtype is not None and not _is_index(out.dtype)):
        params |= {first}
    return _Const(params, frozenset().union(*(consts[i].stored for i in ins)))


def _dtype(item: WalkItem, name: str) -> str | None:
    t = item.tensor(name)
    return t.dtype if t is not None else None


def _stored_numel(t: TensorInfo | None) -> int | None:
    return t.numel if t is not None else None


def _peak_activations(model: ModelGraph, dims: _Dims, consts: dict[str, _Const]) -> int:
    """Largest sum of live activation bytes when the main graph runs in its stored order.

    A tensor lives from its producer to its last consumer; weights, and tensors computed from
    weights only, are not activations. This is a lower-bound estimate: runtimes add workspace
    and may reorder.
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
        if t is None or t.is_weight or name in consts:
            return 0
        return _tensor_bytes(t.dtype, dims.resolve(t.shape))

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
