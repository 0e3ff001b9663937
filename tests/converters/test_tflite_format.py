"""TFLite loading through OpenVINO's frontend, on a .tflite written by tflite_builder (no
TensorFlow): op types, NHWC shapes, weights, metadata, and damaged files."""
from __future__ import annotations

from collections import Counter

import pytest

from converters.errors import ModelLoadError
from converters.formats import detect_format, open_model, sha256_of
from converters.formats.tflite_format import TfliteFormat, _Verifier, verify_tflite
from converters.graph import ModelGraph
from tests.converters.tflite_builder import conv_fc_model

# conv 4x3x3x3 + 4 bias, fc 10x256 + 10 bias, the ADD's constant 10 (see conv_fc_model)
FLOAT_PARAMS = 108 + 4 + 2560 + 10 + 10


@pytest.fixture
def tflite_path(tmp_path):
    path = tmp_path / "conv_fc.tflite"
    path.write_bytes(conv_fc_model())
    return path


def test_graph_ops_and_shapes(tflite_path):
    assert detect_format(tflite_path) is TfliteFormat
    m = open_model(tflite_path)
    ops = Counter(n.op_type for n in m.graph.nodes)
    # NHWC -> NCHW Transposes around the conv, the fused RELU and the biases as own nodes
    assert ops["Convolution"] == 1 and ops["MatMul"] == 1 and ops["Relu"] == 1
    assert ops["Add"] == 3 and ops["Transpose"] == 2 and ops["Reshape"] == 1
    assert "Constant" not in ops

    assert m.graph.inputs == ["input"] and m.graph.outputs == ["output"]
    x = m.graph.tensors["input"]
    assert (x.dtype, x.shape) == ("float32", [1, 8, 8, 3])
    assert m.graph.tensors["output"].shape == [1, 10]
    conv = next(n for n in m.graph.nodes if n.op_type == "Convolution")
    assert conv.attributes["auto_pad"] == "same_upper"
    assert m.graph.tensors[conv.inputs[0]].shape == [1, 3, 8, 8]
    assert m.graph.tensors[conv.inputs[1]].shape == [4, 3, 3, 3]
    assert m.graph.tensors[conv.outputs[0]].shape == [1, 4, 8, 8]
    assert m.graph.tensors["conv/Relu"].shape == [1, 8, 8, 4]  # tensor names are kept
    for n in m.graph.nodes:
        for name in n.inputs + n.outputs:
            assert m.graph.tensors[name].shape is not None, name


def test_weights(tflite_path):
    m = open_model(tflite_path)
    fc = m.graph.tensors["fc/weights"]
    assert (fc.is_weight, fc.dtype, fc.shape, fc.nbytes) == (True, "float32", [10, 256], 10240)
    matmul = next(n for n in m.graph.nodes if n.op_type == "MatMul")
    assert matmul.inputs[1] == "fc/weights"
    floats = [t for t in m.graph.tensors.values() if t.is_weight and t.dtype == "float32"]
    assert sum(t.numel for t in floats) == FLOAT_PARAMS
    assert all(t.nbytes == 4 * t.numel for t in floats)


def test_meta_and_json_roundtrip(tflite_path):
    m = open_model(tflite_path)
    assert m.meta.format == "tflite"
    assert m.meta.path == str(tflite_path)
    assert m.meta.file_size == tflite_path.stat().st_size
    assert m.meta.sha256 == sha256_of([tflite_path])
    assert ModelGraph.from_json(m.to_json()) == m


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.tflite"
    path.write_bytes(conv_fc_model()[:2000])  # the TFL3 identifier survives, the rest does not
    assert detect_format(path) is TfliteFormat
    with pytest.raises(ModelLoadError, match=r"cut\.tflite is a damaged TensorFlow Lite file: .*"
                                             r"outside the file|past the end"):
        open_model(path)


def _flip(data: bytes, pos: int, value: int) -> bytes:
    b = bytearray(data)
    b[pos] = value
    return bytes(b)


def _offsets(data: bytes) -> dict:
    """Where the fields of conv_fc_model's flatbuffer lie (found by the verifier's own walk)."""
    v = _Verifier(data)
    model = v.table(v._u32(0), "Model")
    return {"ops": model[2][0][3], "tensors": model[2][0][0], "v": v}


def _patch_scalar(data: bytes, table: dict, field: int, value: int) -> bytes:
    pos = _Verifier(data).field_position(table[-1], field)
    assert pos is not None, "the builder writes this field"
    return data[:pos] + value.to_bytes(4, "little") + data[pos + 4:]


def test_verifier_accepts_the_builder_model():
    verify_tflite(conv_fc_model())


@pytest.mark.parametrize("case, match", [
    ("op_outputs_length", "writes tensor 3"),  # OpenVINO's frontend SIGSEGVs on this one
    ("op_input_index", "names tensor 200"),
    ("opcode_index", "uses op code 77"),
    ("tensor_buffer", "uses buffer 99"),
    ("root_offset", "outside the file"),
])
def test_damaged_flatbuffers_are_refused_before_openvino(tmp_path, case, match):
    data = conv_fc_model()
    ops = _offsets(data)["ops"]
    if case == "op_outputs_length":  # FULLY_CONNECTED's outputs [6] -> 5 entries: [6,3,3,4,5]
        start, _ = ops[1][2]
        data = _flip(data, start - 4, 5)
    elif case == "op_input_index":
        start, _ = ops[0][1]
        data = _flip(data, start, 200)
    elif case == "opcode_index":
        data = _patch_scalar(data, ops[1], 0, 77)
    elif case == "tensor_buffer":
        data = _patch_scalar(data, _offsets(data)["tensors"][1], 2, 99)
    else:
        data = (len(data) + 64).to_bytes(4, "little") + data[4:]
    path = tmp_path / "bad.tflite"
    path.write_bytes(data)
    with pytest.raises(ModelLoadError, match=r"bad\.tflite is a damaged TensorFlow Lite file: .*"
                       + match):
        open_model(path)

