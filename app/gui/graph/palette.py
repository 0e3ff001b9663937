"""Op categories and their colours as plain data: shared by the window (style.py, Qt) and the
headless SVG writer (svg.py), which must not need Qt.
"""
from __future__ import annotations

# op type -> category. Anything not listed is "other" (custom domains land there too).
_CATEGORY_OPS: dict[str, tuple[str, ...]] = {
    "layer": ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "MatMul",
              "MatMulInteger", "QLinearMatMul", "MatMulNBits", "FusedMatMul", "Einsum", "LSTM",
              "GRU", "RNN", "Attention", "MultiHeadAttention", "GroupQueryAttention",
              "DeformConv", "Linear", "Convolution", "GroupConvolution", "FullyConnected",
              "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"),
    "activation": ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "Tanh", "Elu",
                   "Selu", "Celu", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Softplus",
                   "Softsign", "HardSwish", "Mish", "Swish", "Clip", "ThresholdedRelu",
                   "Softmax", "LogSoftmax", "RELU", "RELU6", "LOGISTIC", "SOFTMAX"),
    "normalization": ("BatchNormalization", "LayerNormalization", "InstanceNormalization",
                      "GroupNormalization", "LpNormalization", "LRN", "MeanVarianceNormalization",
                      "SimplifiedLayerNormalization", "SkipLayerNormalization",
                      "SkipSimplifiedLayerNormalization", "RMSNormalization", "BatchNormInference",
                      "MVN", "NormalizeL2"),
    "pool": ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
             "GlobalLpPool", "MaxRoiPool", "RoiAlign", "MaxUnpool", "AvgPool",
             "MAX_POOL_2D", "AVERAGE_POOL_2D"),
    "tensor": ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split",
               "Slice", "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements",
               "ScatterND", "Shape", "Size", "Expand", "Tile", "Pad", "Resize", "Upsample",
               "DepthToSpace", "SpaceToDepth", "Identity", "Cast", "CastLike", "Range",
               "NonZero", "Where", "TopK", "OneHot", "Trilu", "CumSum", "RESHAPE",
               "CONCATENATION", "TRANSPOSE", "SQUEEZE", "STRIDED_SLICE", "PAD"),
    "constant": ("Constant", "ConstantOfShape", "EyeLike", "RandomNormal", "RandomUniform",
                 "RandomNormalLike", "RandomUniformLike", "Parameter", "Const"),
    "quantization": ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                     "FakeQuantize", "QUANTIZE", "DEQUANTIZE"),
    "control": ("If", "Loop", "Scan", "SequenceMap"),
    "dropout": ("Dropout",),
}
CATEGORY_OF: dict[str, str] = {op: cat for cat, ops in _CATEGORY_OPS.items() for op in ops}

CATEGORY_COLOURS: dict[str, str] = {
    "layer": "#335588",
    "activation": "#8c3a2f",
    "normalization": "#3c6e47",
    "pool": "#2f6f73",
    "tensor": "#6c5147",
    "constant": "#7b7f86",
    "quantization": "#b3631b",
    "control": "#6a4a8c",
    "dropout": "#70757a",
    "math": "#4c5866",
    "other": "#3f4750",
}
CATEGORY_LABELS: dict[str, str] = {
    "layer": "Conv / MatMul / RNN", "activation": "Activation", "normalization": "Normalization",
    "pool": "Pooling", "tensor": "Tensor / shape", "constant": "Constant",
    "quantization": "Quantization", "control": "Control flow", "dropout": "Dropout",
    "math": "Elementwise / math", "other": "Other",
}
# importance when a group shows one colour: the category doing the real work wins
_CATEGORY_RANK = ("layer", "control", "quantization", "normalization", "pool", "activation",
                  "math", "tensor", "dropout", "other", "constant")

_MATH_OPS = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal",
             "Floor", "Ceil", "Round", "Sum", "Mean", "Max", "Min", "Erf", "Sin", "Cos",
             "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
             "ReduceL1", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "Equal",
             "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not", "Xor", "Mod",
             "BitShift", "Sign", "IsNaN", "IsInf", "ADD", "MUL", "SUB", "DIV", "MEAN"}


def category(op_type: str) -> str:
    cat = CATEGORY_OF.get(op_type)
    if cat is not None:
        return cat
    return "math" if op_type in _MATH_OPS else "other"


def dominant_category(op_counts: dict[str, int]) -> str:
    """The colour a group takes: its most important category present."""
    cats = {category(op) for op in op_counts}
    for c in _CATEGORY_RANK:
        if c in cats:
            return c
    return "other"
