"""Parameter and MAC counts: published figures for real architectures, exact ones for built ops."""
from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from converters.analysis import analyze
from converters.formats import open_model
from tests.converters import onnx_builders as B

# Published figures. Parameter counts here include BatchNorm running mean/variance, which the
# ONNX graphs carry as weights (torchvision's 25.557 M for ResNet-50 excludes those 53 k).
PUBLISHED = {
    # name: (params, rel tol, MACs at 224x224 or None, rel tol)
    "resnet50": (25.6e6, 0.01, 4.1e9, 0.03),
    "vgg19": (143.67e6, 0.002, 19.6e9, 0.01),
    "bvlc_alexnet": (61.0e6, 0.01, None, None),
    "squeezenet": (1.24e6, 0.01, None, None),
    "densenet121": (8.0e6, 0.03, 2.87e9, 0.03),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_light_models_match_published_figures(light, name):
    params, ptol, macs, mtol = PUBLISHED[name]
    a = analyze(open_model(light(name)))
    assert a.params == pytest.approx(params, rel=ptol)
    if macs is not None:
        assert a.macs == pytest.approx(macs, rel=mtol)
    assert a.uncounted == {}
    assert a.flops >= 2 * a.macs


def _analyze(tmp_path, model):
    p = tmp_path / "m.onnx"
    onnx.save(model, p)
    return analyze(open_model(p))


@pytest.mark.parametrize("groups,dilation", [(1, 1), (2, 1), (8, 1), (1, 2), (4, 3)])
def test_conv_groups_and_dilation(tmp_path, groups, dilation):
    cin, cout, k, hw = 8, 16, 3, 32
    a = _analyze(tmp_path, B.conv_model(groups=groups, dilation=dilation, cin=cin, cout=cout))
    out_hw = hw - dilation * (k - 1)
    # each output element sums over its group's input channels and the kernel
    assert a.macs == cout * out_hw * out_hw * (cin // groups) * k * k
    assert a.params == cout * (cin // groups) * k * k + cout


def test_conv_transpose(tmp_path):
    w = B.weight("W", [8, 4, 2, 2])  # [Cin, Cout/g, kh, kw]
    node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[2, 2])
    a = _analyze(tmp_path, B.make([node], [B.tensor_in("x", [1, 8, 10, 10])],
                                  [B.tensor_in("y", None)], [w]))
    assert a.macs == (8 * 10 * 10) * 4 * 2 * 2


def test_gemm_trans_and_batched_attention_matmul(tmp_path):
    w = B.weight("W", [32, 64])
    gemm = helper.make_node("Gemm", ["a", "W"], ["y"], transA=1)
    a = _analyze(tmp_path, B.make([gemm], [B.tensor_in("a", [32, 5])], [B.tensor_in("y", None)],
                                  [w]))
    assert a.macs == 5 * 64 * 32
    q = B.tensor_in("q", [2, 8, 16, 64])
    kt = B.tensor_in("kt", [2, 8, 64, 16])
    mm = helper.make_node("MatMul", ["q", "kt"], ["s"])
    a = _analyze(tmp_path, B.make([mm], [q, kt], [B.tensor_in("s", None)]))
    assert a.macs == 2 * 8 * 16 * 16 * 64
    assert a.params == 0


@pytest.mark.parametrize("directions", [1, 2])
def test_lstm_scales_with_sequence(tmp_path, directions):
    seq, batch, inp, hidden = 10, 3, 20, 32
    a = _analyze(tmp_path, B.lstm_model(seq, batch, inp, hidden, directions))
    assert a.macs == seq * batch * directions * 4 * hidden * (inp + hidden)
    assert a.params == directions * 4 * hidden * (inp + hidden)


def test_weight_through_transpose_and_cast_counted_once(tmp_path):
    w16 = B.weight("W16", [32, 64], dtype="float16")
    cast = helper.make_node("Cast", ["W16"], ["W32"], to=onnx.TensorProto.FLOAT)
    tr = helper.make_node("Transpose", ["W32"], ["Wt"], perm=[1, 0])
    mm = helper.make_node("MatMul", ["x", "Wt"], ["y"])
    a = _analyze(tmp_path, B.make([cast, tr, mm], [B.tensor_in("x", [4, 64])],
                                  [B.tensor_in("y", None)], [w16]))
    assert a.params == 32 * 64
    assert a.weight_bytes == 32 * 64 * 2  # stored as float16
    assert a.param_bytes == 32 * 64 * 4  # consumed as float32
    assert a.macs == 4 * 64 * 32


def test_shape_tensors_are_not_parameters(tmp_path):
    shape = onnx.numpy_helper.from_array(__import__("numpy").array([4, -1], "int64"), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    a = _analyze(tmp_path, B.make([node], [B.tensor_in("x", [4, 2, 3])], [B.tensor_in("y", None)],
                                  [shape]))
    assert a.params == 0 and a.weight_bytes == 16 and a.macs == 0 and a.uncounted == {}


def test_unknown_op_is_listed_not_zero(tmp_path):
    a = _analyze(tmp_path, B.custom_domain_model())
    assert "MySecretOp" in a.uncounted
    assert all(c.macs is None for c in a.nodes if c.op_type == "MySecretOp")


def test_activation_peak_is_plausible(light):
    a = analyze(open_model(light("resnet50")))
    # at least the largest single activation (1x64x112x112 fp32) and below the sum of all
    assert a.activation_bytes_peak >= 64 * 112 * 112 * 4
    assert a.activation_bytes_peak < 200e6
    assert math.isfinite(a.activation_bytes_peak)


# --- each stored weight counted once ---------------------------------------------------------

def _sliced_gates(tag: str, w: str, hidden: int) -> tuple[list, str]:
    """Slice a [4H, I] weight into its four gates and Concat them back, as exporters do."""
    nodes, parts = [], []
    for g in range(4):
        bounds = [numpy_helper.from_array(np.array([v], "int64"), f"{tag}_{name}{g}")
                  for name, v in (("s", g * hidden), ("e", (g + 1) * hidden), ("a", 0))]
        nodes += [helper.make_node("Constant", [], [b.name], value=b) for b in bounds]
        nodes.append(helper.make_node("Slice", [w] + [b.name for b in bounds], [f"{tag}_g{g}"]))
        parts.append(f"{tag}_g{g}")
    nodes.append(helper.make_node("Concat", parts, [f"{tag}_w"], axis=0))
    return nodes, f"{tag}_w"


def test_weight_sliced_in_two_branches_is_counted_once(tmp_path):
    """One stored weight, sliced and re-concatenated in both If branches (the silero-vad
    export pattern): one count of its stored elements, while each branch's MACs stay."""
    hidden, inp = 8, 16
    w = B.weight("W", [4 * hidden, inp])

    def branch(tag):
        nodes, wt = _sliced_gates(tag, "W", hidden)
        nodes.append(helper.make_node("MatMul", ["x", f"{tag}_wT"], [f"y_{tag}"]))
        nodes.insert(-1, helper.make_node("Transpose", [wt], [f"{tag}_wT"], perm=[1, 0]))
        return helper.make_graph(nodes, tag, [], [B.tensor_in(f"y_{tag}", [2, 4 * hidden])])

    node = helper.make_node("If", ["cond"], ["y"], then_branch=branch("then"),
                            else_branch=branch("else"))
    a = _analyze(tmp_path, B.make([node], [B.tensor_in("x", [2, inp]),
                                          B.tensor_in("cond", [], onnx.TensorProto.BOOL)],
                                  [B.tensor_in("y", [2, 4 * hidden])], [w]))
    assert a.params == 4 * hidden * inp
    assert a.param_bytes == 4 * hidden * inp * 4
    assert a.macs == 2 * (2 * 4 * hidden * inp)  # each branch's MatMul, both listed
    owners = [c for c in a.nodes if c.params]
    assert len(owners) == 1 and owners[0].op_type == "MatMul"


def test_overlapping_slices_of_one_weight_count_it_once(tmp_path):
    w = B.weight("W", [16, 32])
    consts = {name: numpy_helper.from_array(np.array(v, "int64"), name)
              for name, v in (("s0", [0]), ("e0", [24]), ("s1", [8]), ("e1", [32]), ("ax", [1]))}
    nodes = [helper.make_node("Slice", ["W", "s0", "e0", "ax"], ["W0"]),
             helper.make_node("Slice", ["W", "s1", "e1", "ax"], ["W1"]),
             helper.make_node("MatMul", ["x", "W0"], ["y0"]),
             helper.make_node("MatMul", ["x", "W1"], ["y1"])]
    a = _analyze(tmp_path, B.make(nodes, [B.tensor_in("x", [4, 16])],
                                  [B.tensor_in("y0", None), B.tensor_in("y1", None)],
                                  [w, *consts.values()]))
    assert a.params == 16 * 32  # not 2 x 16 x 24
    assert a.weight_bytes == 16 * 32 * 4 + 5 * 8  # the slice bounds are stored too
    assert a.macs == 2 * (4 * 24 * 16)


def test_dequantized_weight_counts_its_elements_not_its_scales(tmp_path):
    """int8 weight x per-channel scale: the scales are stored bytes, not parameters."""
    q = numpy_helper.from_array(
        np.random.default_rng(0).integers(-127, 127, (32, 64)).astype(np.int8), "Wq")
    scale = numpy_helper.from_array(np.full([64], 0.01, np.float32), "scale")
    zp = numpy_helper.from_array(np.zeros([64], np.int8), "zp")
    nodes = [helper.make_node("DequantizeLinear", ["Wq", "scale", "zp"], ["W"], axis=1),
             helper.make_node("MatMul", ["x", "W"], ["y"])]
    a = _analyze(tmp_path, B.make(nodes, [B.tensor_in("x", [2, 32])], [B.tensor_in("y", None)],
                                  [q, scale, zp], opset=13))
    assert a.params == 32 * 64
    assert a.weight_bytes == 32 * 64 + 64 * 4 + 64
    assert a.param_bytes == 32 * 64 * 4  # consumed as float32


# Real exports. silero-vad 6.2.3's silero_vad.onnx keeps its weights in Constant nodes inside an
# If on the sample rate; the LSTM weights are sliced into gates in both branches of an inner If
# (batch of one or not), which counted them twice (809,478 shown for 545,286 stored).
SILERO = ("silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx", 545_286)
# openwakeword 0.5.1 ships an older silero VAD: initializers in nested If bodies.
OWW_SILERO = ("openwakeword", "0.5.1", "openwakeword/resources/models/silero_vad.onnx", 444_944)


def _stored_float_elements(path) -> int:
    """Float elements of every initializer and Constant, subgraphs included, read by onnx."""
    m = onnx.load(str(path))
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    total = 0

    def walk(g):
        nonlocal total
        tensors = list(g.initializer)
        for n in g.node:
            if n.op_type == "Constant":  # not ConstantOfShape's one-element fill value
                tensors += [a.t for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
        total += sum(math.prod(t.dims) for t in tensors if t.data_type in floats)

    walk(m.graph)
    return total


@pytest.mark.parametrize("package,version,member,stored", [SILERO, OWW_SILERO],
                         ids=["silero-vad", "openwakeword-silero"])
def test_vad_models_count_every_stored_weight_once(package, version, member, stored):
    from tests.real_models import wheel_member

    path = wheel_member(package, version, member)
    assert _stored_float_elements(path) == stored
    a = analyze(open_model(path))
    assert a.params == stored
    # the LSTMs' input comes out of an If with no shape: their Y output gives seq and batch
    assert a.ops["LSTM"] >= 4 and "LSTM" not in a.uncounted


# --- MACs and FLOPs --------------------------------------------------------------------------

def test_batchnorm_is_flops_not_macs(tmp_path):
    c, hw = 16, 10
    bn = [B.weight(n, [c], seed=i) for i, n in enumerate(("g", "b", "m"))]
    var = numpy_helper.from_array(np.ones([c], np.float32), "v")
    node = helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])
    a = _analyze(tmp_path, B.make([node], [B.tensor_in("x", [1, c, hw, hw])],
                                  [B.tensor_in("y", None)], [*bn, var]))
    assert a.macs == 0
    assert a.flops == 2 * c * hw * hw
    assert a.params == 4 * c


def test_symbolic_dims_take_given_values(tmp_path):
    p = tmp_path / "conv.onnx"
    onnx.save(B.conv_model(batch="batch"), p)
    m = open_model(p)
    one = analyze(m)
    assert one.assumed_dims == {"batch": 1}
    four = analyze(m, dims={"batch": 4})
    assert four.macs == 4 * one.macs and four.activation_bytes_peak == 4 * one.activation_bytes_peak
    assert four.assumed_dims == {}
    assert four.params == one.params
    with pytest.raises(ValueError, match="batch"):
        analyze(m, dims={"batch": -1})


def test_lstm_macs_follow_a_symbolic_sequence(tmp_path):
    batch, inp, hidden = 3, 20, 32
    p = tmp_path / "lstm.onnx"
    onnx.save(B.lstm_model("sequence", batch, inp, hidden), p)
    m = open_model(p)
    a = analyze(m, dims={"sequence": 128})
    assert a.macs == 128 * batch * 4 * hidden * (inp + hidden)
    assert a.assumed_dims == {}
    assert analyze(m).assumed_dims == {"sequence": 1}


# --- OpenVINO IR and TFLite ------------------------------------------------------------------

def _ir(source, xml, **convert):
    import openvino as ov

    ov.save_model(ov.convert_model(str(source), **convert), str(xml), compress_to_fp16=True)
    return open_model(xml)


def test_ir_of_the_sample_counts_like_its_onnx(tmp_path):
    """The sample's dynamic batch becomes OpenVINO's unnamed '?'; f16 weights widened by
    Convert nodes are weights, not activations."""
    from tests.conftest import SAMPLE_ONNX

    onnx_a = analyze(open_model(SAMPLE_ONNX))
    ir = _ir(SAMPLE_ONNX, tmp_path / "digits.xml")
    a = analyze(ir)
    assert a.macs == pytest.approx(onnx_a.macs, rel=0.01)
    assert a.uncounted == {}
    assert a.assumed_dims == {"?": 1}
    assert 0 < a.activation_bytes_peak == onnx_a.activation_bytes_peak
    assert analyze(ir, dims={"?": 8}).macs == 8 * a.macs
    # BatchNorm folded into the convolutions by OpenVINO: 896 fewer stored parameters
    assert a.params == onnx_a.params - 7 * 128


@pytest.mark.parametrize("name", ["squeezenet",
                                  pytest.param("resnet50", marks=pytest.mark.slow)])
def test_ir_of_a_zoo_model_counts_like_its_onnx(tmp_path, light, name):
    """With a dynamic batch, f16 weights, and (ResNet-50) BatchNorm folded by OpenVINO."""
    import openvino as ov

    path = light(name)
    onnx_a = analyze(open_model(path))
    a = analyze(_ir(path, tmp_path / "m.xml", input=ov.PartialShape([-1, 3, 224, 224])))
    assert a.uncounted == {}
    assert a.macs == pytest.approx(onnx_a.macs, rel=0.02)
    assert a.activation_bytes_peak == pytest.approx(onnx_a.activation_bytes_peak, rel=0.5)


@pytest.mark.parametrize("seq", [10, 20])
def test_ir_lstm_sequence_scales_with_its_length(tmp_path, seq):
    batch, inp, hidden = 3, 20, 32
    src = tmp_path / "lstm.onnx"
    onnx.save(B.lstm_model(seq, batch, inp, hidden), src)
    a = analyze(_ir(src, tmp_path / "lstm.xml"))
    assert a.ops.get("LSTMSequence") == 1
    assert a.macs == seq * batch * 4 * hidden * (inp + hidden)


def _digits_tflite() -> bytes:
    """The sample CNN as a TFLite flatbuffer: its own weights, BatchNorm folded, NHWC."""
    from tests.conftest import SAMPLE_ONNX
    from tests.converters import tflite_builder as T

    w = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(SAMPLE_ONNX)).graph.initializer}

    def folded(i):
        scale = w[f"features.bn{i}.weight"] / np.sqrt(w[f"features.bn{i}.running_var"] + 1e-5)
        kernel = w[f"features.conv{i}.weight"] * scale[:, None, None, None]
        bias = (w[f"features.conv{i}.bias"] - w[f"features.bn{i}.running_mean"]) * scale
        return kernel.transpose(0, 2, 3, 1), bias + w[f"features.bn{i}.bias"]  # OHWI

    m = _PoolingTfliteBuilder()
    x = m.tensor("input", [1, 8, 8, 1])
    for i, (hw, cout) in enumerate([(8, 32), (8, 64), (4, 128)], start=1):
        kernel, bias = folded(i)
        k = m.tensor(f"conv{i}/weights", list(kernel.shape), kernel)
        b = m.tensor(f"conv{i}/bias", [cout], bias)
        y = m.tensor(f"conv{i}/Relu", [1, hw, hw, cout])
        m.op(T.CONV_2D, [x, k, b], [y], padding=T.SAME, activation=T.RELU)
        x = y
        if i == 2:
            y = m.tensor("pool", [1, 4, 4, 64])
            m.op(_MAX_POOL_2D, [x], [y], stride=2, filter=2)
            x = y
    # fc1 reads NCHW-flattened features in the ONNX model; reorder its columns for NHWC
    fc1 = w["classifier.fc1.weight"].reshape(256, 128, 4, 4).transpose(0, 2, 3, 1).reshape(256, -1)
    fc2 = w["classifier.fc2.weight"]
    for name, weight, bias, act in (("fc1", fc1, w["classifier.fc1.bias"], T.RELU),
                                    ("fc2", fc2, w["classifier.fc2.bias"], 0)):
        wt = m.tensor(f"{name}/weights", list(weight.shape), weight)
        bt = m.tensor(f"{name}/bias", list(bias.shape), bias)
        y = m.tensor(f"{name}/out", [1, weight.shape[0]])
        m.op(T.FULLY_CONNECTED, [x, wt, bt], [y], activation=act)
        x = y
    m.inputs, m.outputs = [0], [x]
    return m.to_bytes()


_MAX_POOL_2D = 17  # BuiltinOperator; its options are Pool2DOptions, union member 5


class _PoolingTfliteBuilder:
    """tflite_builder's writer plus MAX_POOL_2D, which the sample CNN needs."""

    def __new__(cls):
        from tests.converters import tflite_builder as T

        class Builder(T.TfliteModelBuilder):
            @staticmethod
            def _operator(b, op, opcode_index):
                if op.code != _MAX_POOL_2D:
                    return T.TfliteModelBuilder._operator(b, op, opcode_index)
                b.StartObject(6)  # Pool2DOptions: padding, stride_w/h, filter_width/height, act
                b.PrependInt8Slot(0, 1, 0)  # VALID
                for slot, key in ((1, "stride"), (2, "stride"), (3, "filter"), (4, "filter")):
                    b.PrependInt32Slot(slot, op.options[key], 0)
                options = b.EndObject()
                inputs, outputs = T._int_vector(b, op.inputs), T._int_vector(b, op.outputs)
                b.StartObject(5)  # Operator
                b.PrependUint32Slot(0, opcode_index, 0)
                b.PrependUOffsetTRelativeSlot(1, inputs, 0)
                b.PrependUOffsetTRelativeSlot(2, outputs, 0)
                b.PrependUint8Slot(3, 5, 0)
                b.PrependUOffsetTRelativeSlot(4, options, 0)
                return b.EndObject()

        return Builder()


def test_tflite_of_the_sample_counts_like_its_onnx(tmp_path):
    from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX

    path = tmp_path / "digits.tflite"
    path.write_bytes(_digits_tflite())
    a = analyze(open_model(path))
    onnx_a = analyze(open_model(SAMPLE_ONNX))
    assert a.uncounted == {}
    assert a.macs == pytest.approx(onnx_a.macs, rel=0.01)
    assert a.activation_bytes_peak > 0
    assert a.params == onnx_a.params - 7 * 128  # BatchNorm folded before writing

    # and it is the same network: OpenVINO on the TFLite file agrees with ONNX Runtime
    import onnxruntime as ort
    import openvino as ov

    x = np.load(SAMPLE_NPZ)["inputs"][:1].astype(np.float32)  # [1, 1, 8, 8]
    want = ort.InferenceSession(str(SAMPLE_ONNX)).run(None, {"input": x})[0]
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled.infer_new_request({0: x.transpose(0, 2, 3, 1)})  # NHWC
    assert np.allclose(next(iter(got.values())), want, atol=1e-3)


def test_qdq_quantised_sample_keeps_its_parameter_count(tmp_path):
    """ONNX Runtime's QDQ int8 model: weights int8, biases int32, and a scale and zero point
    for every activation; parameters as in the float model (less nothing, plus nothing)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX

    class Digits(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x[None]} for x in
                                 np.load(SAMPLE_NPZ)["inputs"][:8].astype(np.float32)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path / "digits_qdq.onnx"
    quantize_static(str(SAMPLE_ONNX), str(out), Digits(), quant_format=QuantFormat.QDQ)
    float_a, q = analyze(open_model(SAMPLE_ONNX)), analyze(open_model(out))
    assert q.ops.get("DequantizeLinear", 0) > 10
    assert q.params == float_a.params
    assert q.macs == float_a.macs
    assert q.weight_bytes < float_a.weight_bytes / 3


def test_int32_bias_through_dequantize_is_a_parameter(tmp_path):
    """A QDQ model's bias is stored as int32 and widened by DequantizeLinear: a parameter,
    while the Reshape's int64 shape beside it is not."""
    bias = numpy_helper.from_array(np.arange(16, dtype=np.int32), "bias_q")
    scale = numpy_helper.from_array(np.array(0.01, np.float32), "bias_scale")
    shape = numpy_helper.from_array(np.array([1, 16], np.int64), "shape")
    w = B.weight("W", [8, 16])
    nodes = [helper.make_node("DequantizeLinear", ["bias_q", "bias_scale"], ["b"]),
             helper.make_node("Reshape", ["b", "shape"], ["b2"]),
             helper.make_node("MatMul", ["x", "W"], ["h"]),
             helper.make_node("Add", ["h", "b2"], ["y"])]
    a = _analyze(tmp_path, B.make(nodes, [B.tensor_in("x", [2, 8])], [B.tensor_in("y", None)],
                                  [bias, scale, shape, w], opset=13))
    assert a.params == 8 * 16 + 16
    assert a.weight_bytes == 8 * 16 * 4 + 16 * 4 + 4 + 2 * 8
