"""TFLite loading through OpenVINO's frontend, on a .tflite written by tflite_builder (no
TensorFlow): op types, NHWC shapes, weights, metadata, and damaged files."""
from __future__ import annotations

from collections import Counter

import pytest

from converters.errors import ModelLoadError
from converters.formats import detect_format, open_model, sha256_of
from converters.formats.tflite_format import TfliteFormat
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
    with pytest.raises(ModelLoadError, match=r"cut\.tflite could not be read as a TensorFlow Lite "
                                             r"model.*corrupted or malformed"):
        open_model(path)


def test_file_without_identifier(tmp_path):
    path = tmp_path / "junk.tflite"
    path.write_bytes(b"\x00" * 64)
    assert detect_format(path) is TfliteFormat  # by suffix: its loader explains
    with pytest.raises(ModelLoadError, match=r"junk\.tflite is not a TensorFlow Lite model: "
                                             r"the 'TFL3' identifier is missing"):
        open_model(path)
