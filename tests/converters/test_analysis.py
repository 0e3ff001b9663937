"""Parameter and MAC counts: published figures for real architectures, exact ones for built ops."""
from __future__ import annotations

import math

import onnx
import pytest
from onnx import helper

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
