"""OpenVINO IR loading: IRs converted here from the onnx package's light Model Zoo graphs and
from small built models (scopes, dynamic dims, If/Loop bodies), plus the ways an IR goes wrong
(a lone .bin, a missing .bin, a damaged or foreign .xml)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.analysis import analyze
from converters.errors import ModelLoadError
from converters.formats import detect_format, open_model, sha256_of
from converters.formats.openvino_format import OpenVinoFormat
from converters.graph import ModelGraph
from tests.conftest import light_model

# ResNet-50 as OpenVINO keeps it: BatchNorm is folded into the convolutions (scale into the
# weights, shift into one bias per output channel), so the IR holds
# 23,454,912 conv weights + 26,560 per-channel biases + 2,048,000 fc weights + 1,000 fc bias.
RESNET50_CONV_WEIGHTS = 23_454_912
RESNET50_IR_PARAMS = 25_530_472


def _save_ir(source: Path | ov.Model, xml: Path, fp16: bool = False) -> Path:
    model = source if isinstance(source, ov.Model) else ov.convert_model(str(source))
    ov.save_model(model, str(xml), compress_to_fp16=fp16)
    return xml


@pytest.fixture(scope="module")
def resnet50_ir(tmp_path_factory) -> Path:
    return _save_ir(light_model("resnet50"), tmp_path_factory.mktemp("r50") / "resnet50.xml")


@pytest.fixture(scope="module")
def resnet50(resnet50_ir) -> ModelGraph:
    return open_model(resnet50_ir)


def _float_weights(m: ModelGraph) -> list:
    return [t for t in m.graph.tensors.values()
            if t.is_weight and t.dtype in ("float32", "float16")]


def test_resnet50_ops_and_shapes(resnet50, resnet50_ir):
    assert detect_format(resnet50_ir) is OpenVinoFormat
    m = resnet50
    ops = Counter(n.op_type for n in m.graph.nodes)
    assert ops == {"Add": 70, "Convolution": 53, "Relu": 49, "MaxPool": 1, "AvgPool": 1,
                   "Reshape": 1, "MatMul": 1, "Softmax": 1}  # 70 Add = 53 biases + 16 skips + fc
    assert m.node_count() == 177  # constants, Parameter and Result are not nodes
    assert m.graph.inputs == ["gpu_0/data_0"]
    x = m.graph.tensors["gpu_0/data_0"]
    assert (x.dtype, x.shape, x.is_weight) == ("float32", [1, 3, 224, 224], False)
    assert [m.graph.tensors[o].shape for o in m.graph.outputs] == [[1, 1000]]

    convs = [n for n in m.graph.nodes if n.op_type == "Convolution"]
    assert convs[0].domain == "opset1"
    assert convs[0].attributes["strides"] == [2, 2]
    assert m.graph.tensors[convs[0].outputs[0]].shape == [1, 64, 112, 112]
    for conv in convs:
        data, weight = (m.graph.tensors[i] for i in conv.inputs)
        assert not data.is_weight and weight.is_weight
        out = m.graph.tensors[conv.outputs[0]]
        assert out.dtype == "float32" and all(isinstance(d, int) for d in out.shape)
    # every node input and output resolves to a tensor with a known shape
    for n in m.graph.nodes:
        for name in n.inputs + n.outputs:
            assert m.graph.tensors[name].shape is not None, name
    assert len({n.id for n in m.graph.nodes}) == len(m.graph.nodes)


def test_resnet50_weights(resnet50):
    m = resnet50
    weights = _float_weights(m)
    assert all(t.dtype == "float32" and t.nbytes == 4 * t.numel for t in weights)
    assert sum(t.numel for t in weights) == RESNET50_IR_PARAMS
    convs = [n for n in m.graph.nodes if n.op_type == "Convolution"]
    assert sum(m.graph.tensors[n.inputs[1]].numel for n in convs) == RESNET50_CONV_WEIGHTS
    assert m.graph.tensors[convs[0].inputs[1]].shape == [64, 3, 7, 7]
    assert analyze(m).params == RESNET50_IR_PARAMS


def test_resnet50_meta_and_json_roundtrip(resnet50, resnet50_ir):
    m = resnet50
    bin_path = resnet50_ir.with_suffix(".bin")
    assert m.meta.format == "openvino"
    assert m.meta.path == str(resnet50_ir)
    assert m.meta.file_size == resnet50_ir.stat().st_size + bin_path.stat().st_size
    assert m.meta.sha256 == sha256_of([resnet50_ir, bin_path])
    assert m.meta.producer.startswith("OpenVINO ")
    assert m.meta.opset == {} and m.meta.notes == []
    assert ModelGraph.from_json(m.to_json()) == m


def test_fp16_compressed_ir_keeps_stored_weights(tmp_path):
    """save_model's default stores weights as float16 with a Convert after each one."""
    xml = _save_ir(light_model("resnet50"), tmp_path / "r50_fp16.xml", fp16=True)
    m = open_model(xml)
    ops = Counter(n.op_type for n in m.graph.nodes)
    assert ops["Convolution"] == 53 and ops["Convert"] == 108
    weights = _float_weights(m)
    assert {t.dtype for t in weights} == {"float16"}
    assert all(t.nbytes == 2 * t.numel for t in weights)
    assert sum(t.numel for t in weights) == RESNET50_IR_PARAMS
    assert any("Convert" in note for note in m.meta.notes)
    convert = next(n for n in m.graph.nodes if n.op_type == "Convert")
    assert m.graph.tensors[convert.inputs[0]].is_weight
    assert m.graph.tensors[convert.outputs[0]].dtype == "float32"
    assert analyze(m).params == RESNET50_IR_PARAMS  # counted through the Converts


def test_squeezenet_ir_loads_from_its_bin(tmp_path):
    xml = _save_ir(light_model("squeezenet"), tmp_path / "squeezenet.xml")
    m = open_model(xml.with_suffix(".bin"))  # the .bin leads to its .xml
    assert m.meta.path == str(xml)
    assert Counter(n.op_type for n in m.graph.nodes)["Convolution"] == 26
    assert ModelGraph.from_json(m.to_json()) == m


def _small_onnx(path: Path) -> Path:
    """Conv+bias -> Relu -> global pool -> Flatten -> MatMul, named the way torch.onnx does,
    with a symbolic batch dim."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("conv1.weight", (8, 3, 3, 3)), ("conv1.bias", (8,)),
                            ("fc.weight", (8, 10)))
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"],
                         ["/features/conv1/Conv_output_0"], name="/features/conv1/Conv",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["/features/conv1/Conv_output_0"],
                         ["/features/relu/Relu_output_0"], name="/features/relu/Relu"),
        helper.make_node("GlobalAveragePool", ["/features/relu/Relu_output_0"],
                         ["/pool/GlobalAveragePool_output_0"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["/pool/GlobalAveragePool_output_0"], ["/Flatten_output_0"],
                         name="/Flatten"),
        helper.make_node("MatMul", ["/Flatten_output_0", "fc.weight"], ["logits"],
                         name="/fc/MatMul"),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_small_model_scopes_names_and_dynamic_dims(tmp_path):
    xml = _save_ir(_small_onnx(tmp_path / "small.onnx"), tmp_path / "small.xml")
    m = open_model(xml)
    by_name = {n.name: n for n in m.graph.nodes}
    assert by_name["/features/relu/Relu"].scope == "/features/relu"
    assert by_name["/pool/GlobalAveragePool"].op_type == "ReduceMean"
    assert by_name["/Flatten"].scope == ""
    # OpenVINO splits Conv+bias into Convolution and Add, keeping the name on the Add
    assert by_name["/features/conv1/Conv/WithoutBiases"].op_type == "Convolution"
    assert by_name["/features/conv1/Conv/WithoutBiases"].scope == "/features/conv1/Conv"
    assert by_name["/features/conv1/Conv"].op_type == "Add"
    assert by_name["/features/conv1/Conv"].scope == "/features/conv1"
    assert all(n.scope == "" for n in m.graph.nodes if "/" not in n.name)

    # tensor names from the source model survive; the symbolic batch is unknown (None)
    assert m.graph.inputs == ["input"] and m.graph.outputs == ["logits"]
    assert m.graph.tensors["input"].shape == [None, 3, 16, 16]
    assert m.graph.tensors["/features/relu/Relu_output_0"].shape == [None, 8, 16, 16]
    assert m.graph.tensors["logits"].shape == [None, 10]
    conv_w = m.graph.tensors["conv1.weight"]
    assert (conv_w.is_weight, conv_w.shape, conv_w.nbytes) == (True, [8, 3, 3, 3], 8 * 27 * 4)
    matmul = next(n for n in m.graph.nodes if n.op_type == "MatMul")
    assert matmul.attributes == {"transpose_a": False, "transpose_b": True}
    assert m.graph.tensors[matmul.inputs[1]].shape == [10, 8]  # stored transposed
    assert ModelGraph.from_json(m.to_json()) == m


def test_if_and_loop_bodies_become_subgraphs(tmp_path):
    def branch(op: str, out: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, ["x"], [out])], op, [],
                                 [helper.make_tensor_value_info(out, TensorProto.FLOAT, [2, 3])])

    then_g, else_g = branch("Relu", "t_out"), branch("Neg", "e_out")
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "y"], ["acc_out"], name="/loop/add"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="/loop/id")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2, 3])])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
         helper.make_node("Loop", ["n", "", "y"], ["z"], body=body)],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("n", TensorProto.INT64, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "flow.onnx"))
    m = open_model(_save_ir(tmp_path / "flow.onnx", tmp_path / "flow.xml"))

    if_node = next(n for n in m.graph.nodes if n.op_type == "If")
    loop = next(n for n in m.graph.nodes if n.op_type == "Loop")
    assert set(if_node.subgraphs) == {"then_body", "else_body"}
    assert set(loop.subgraphs) == {"body"}
    assert [n.op_type for n in if_node.subgraphs["then_body"].nodes] == ["Relu"]
    then_body = if_node.subgraphs["then_body"]
    assert len(then_body.inputs) == 1 and len(then_body.outputs) == 1
    assert then_body.tensors[then_body.outputs[0]].shape == [2, 3]
    assert "Add" in [n.op_type for n in loop.subgraphs["body"].nodes]

    items = list(m.walk())
    assert {i.depth for i in items} == {0, 1}
    assert len({i.node.id for i in items}) == len(items) == m.node_count()
    assert m.graph.tensors[m.graph.outputs[0]].shape == [2, 3]
    for item in items:  # every input resolves, inside bodies too
        assert all(item.tensor(name) is not None for name in item.node.inputs)
    graphs = [m.graph, *if_node.subgraphs.values(), *loop.subgraphs.values()]
    names = [name for g in graphs for name in g.tensors]
    assert len(names) == len(set(names))  # unique across the model, bodies included
    assert ModelGraph.from_json(m.to_json()) == m


def test_tensor_iterator_body(tmp_path):
    """ONNX Scan becomes an OpenVINO TensorIterator."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body",
        [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("y_t", TensorProto.FLOAT, [2])])
    graph = helper.make_graph(
        [helper.make_node("Scan", ["s0", "xs"], ["s", "ys"], body=body, num_scan_inputs=1)],
        "g",
        [helper.make_tensor_value_info("s0", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("xs", TensorProto.FLOAT, [5, 2])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("ys", TensorProto.FLOAT, [5, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.save(model, str(tmp_path / "scan.onnx"))
    m = open_model(_save_ir(tmp_path / "scan.onnx", tmp_path / "scan.xml"))
    (ti,) = m.graph.nodes
    assert ti.op_type == "TensorIterator" and set(ti.subgraphs) == {"body"}
    assert "Add" in [n.op_type for n in ti.subgraphs["body"].nodes]
    assert sorted(m.graph.tensors[o].shape for o in ti.outputs) == [[2], [5, 2]]
    assert m.meta.notes == []


def test_ir_without_constants_needs_no_bin(tmp_path):
    import openvino.opset13 as ops

    x = ops.parameter([1, 4], np.float32, name="x")
    model = ov.Model([ops.relu(x)], [x], "weightless")
    xml = _save_ir(model, tmp_path / "weightless.xml")
    xml.with_suffix(".bin").unlink(missing_ok=True)
    m = open_model(xml)
    assert [n.op_type for n in m.graph.nodes] == ["Relu"]
    assert m.meta.file_size == xml.stat().st_size


# --- bad input -----------------------------------------------------------------------------

def test_bin_without_xml(tmp_path):
    xml = _save_ir(light_model("squeezenet"), tmp_path / "model.xml")
    xml.unlink()
    bin_path = tmp_path / "model.bin"
    assert detect_format(bin_path) is OpenVinoFormat
    with pytest.raises(ModelLoadError, match=r"model\.bin is the weights half of an OpenVINO IR: "
                                             r"open the \.xml file instead \(model\.xml\)"):
        open_model(bin_path)


def test_xml_without_bin(tmp_path):
    xml = _save_ir(light_model("squeezenet"), tmp_path / "model.xml")
    xml.with_suffix(".bin").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.bin is missing: an OpenVINO IR is two files"):
        open_model(xml)


def test_truncated_xml(tmp_path):
    xml = _save_ir(light_model("squeezenet"), tmp_path / "model.xml")
    xml.write_bytes(xml.read_bytes()[:3000])
    with pytest.raises(ModelLoadError, match=r"model\.xml could not be read as an OpenVINO IR.*"
                                             r"Start-end tags mismatch"):
        open_model(xml)


def test_xml_that_is_not_an_ir(tmp_path):
    xml = tmp_path / "settings.xml"
    xml.write_text('<?xml version="1.0"?>\n<settings><a>1</a></settings>\n')
    assert detect_format(xml) is OpenVinoFormat  # by suffix: its loader explains
    with pytest.raises(ModelLoadError, match=r"settings\.xml is not an OpenVINO IR: no <net>"):
        open_model(xml)


def test_sniff_leaves_pytorch_bins_alone():
    assert not OpenVinoFormat.sniff(Path("pytorch_model.bin"), b"PK\x03\x04" + bytes(60))
    assert not OpenVinoFormat.sniff(Path("pytorch_model.bin"), b"\x80\x02}q\x00")
    assert OpenVinoFormat.sniff(Path("model.bin"), bytes(64))
    assert OpenVinoFormat.sniff(Path("model.xml"), b'<?xml version="1.0"?>\n<net name="m">')
    assert not OpenVinoFormat.sniff(Path("pom.xml"), b'<?xml version="1.0"?>\n<project>')


def test_truncated_bin(tmp_path):
    xml = _save_ir(light_model("squeezenet"), tmp_path / "model.xml")
    bin_path = xml.with_suffix(".bin")
    bin_path.write_bytes(bin_path.read_bytes()[:500])
    with pytest.raises(ModelLoadError, match=r"model\.bin may belong to another model: "
                                             r"Incorrect weights in bin file"):
        open_model(xml)


@pytest.mark.parametrize("marker", [b'names="', b'element_type="', b'<layer id="1" name="'])
def test_xml_with_invalid_utf8_has_a_clear_message(tmp_path, marker):
    # Was `internal error: UnicodeDecodeError` from read_model or from a tensor's names.
    xml = _save_ir(light_model("squeezenet"), tmp_path / "model.xml")
    data = xml.read_bytes()
    i = data.index(marker) + len(marker)
    xml.write_bytes(data[:i] + b"\xff\xfe" + data[i + 2:])
    with pytest.raises(ModelLoadError, match=r"model\.xml is damaged: byte \d+ \(line \d+\) is not "
                                             r"valid UTF-8"):
        open_model(xml)


def test_bin_that_is_a_fifo_is_refused(tmp_path):
    import os

    xml = _save_ir(light_model("squeezenet"), tmp_path / "model.xml")
    xml.with_suffix(".bin").unlink()
    os.mkfifo(xml.with_suffix(".bin"))  # OpenVINO would block reading it
    with pytest.raises(ModelLoadError, match=r"model\.bin is a named pipe.*OpenVINO IR weights"):
        open_model(xml)
