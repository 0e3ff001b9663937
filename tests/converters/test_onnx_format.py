"""ONNX loading: real Model Zoo graphs plus built edge cases (subgraphs, Constant weights,
external data inside and outside the folder, symbolic dims, other domains, bad files)."""
from __future__ import annotations

import re
import shutil

import onnx
import pytest
from onnx import TensorProto, helper

from converters.analysis import analyze
from converters.errors import ModelLoadError
from converters.formats import detect_format, open_model
from converters.graph import ModelGraph
from tests.converters import onnx_builders as B


def test_resnet50_graph_shapes_and_roundtrip(light):
    path = light("resnet50")
    proto = onnx.load(str(path))
    m = open_model(path)
    assert m.meta.format == "onnx"
    assert m.node_count() == len(proto.graph.node) == 415
    assert m.meta.opset == {"ai.onnx": 9}
    assert m.graph.inputs == ["gpu_0/data_0"]  # initializers listed as inputs are not inputs
    convs = [n for n in m.graph.nodes if n.op_type == "Conv"]
    assert len(convs) == 53
    first = m.graph.tensors[convs[0].outputs[0]]
    assert first.shape == [1, 64, 112, 112]
    # ConstantOfShape-made weights get their shape from inference
    assert m.graph.tensors[convs[0].inputs[1]].shape == [64, 3, 7, 7]
    again = ModelGraph.from_json(m.to_json())
    assert again == m


def test_sha256_and_size_cover_the_file(light, tmp_path):
    src = light("squeezenet")
    dst = tmp_path / "s.onnx"
    shutil.copy(src, dst)
    m = open_model(dst)
    assert m.meta.file_size == dst.stat().st_size
    import hashlib
    assert m.meta.sha256 == hashlib.sha256(dst.read_bytes()).hexdigest()


def test_constant_node_weights_are_parameters(tmp_path):
    p = tmp_path / "c.onnx"
    onnx.save(B.constant_weight_model(), p)
    m = open_model(p)
    w = m.graph.tensors["W"]
    assert w.is_weight and w.shape == [64, 32] and w.nbytes == 64 * 32 * 4
    a = analyze(m)
    assert a.params == 64 * 32 + 32
    assert a.macs == 4 * 64 * 32
    mm = next(c for c in a.nodes if c.op_type == "MatMul")
    assert mm.params == 64 * 32


def test_if_subgraph_nodes_are_nested_and_addressable(tmp_path):
    p = tmp_path / "if.onnx"
    onnx.save(B.if_model(), p)
    m = open_model(p)
    assert [n.op_type for n in m.graph.nodes] == ["If"]
    if_node = m.graph.nodes[0]
    assert set(if_node.subgraphs) == {"then_branch", "else_branch"}
    assert m.node_count() == 5  # If + 2 x (MatMul, Relu)
    node = m.find("n0/then_branch/n0")
    assert node is not None and node.op_type == "MatMul"
    depths = {item.node.id: item.depth for item in m.walk()}
    assert depths["n0"] == 0 and depths["n0/else_branch/n1"] == 1
    a = analyze(m)
    assert a.params == 2 * 16 * 16
    assert a.macs == 2 * (2 * 16 * 16)  # both branches counted: the cost of either path
    assert a.ops == {"If": 1, "MatMul": 2, "Relu": 2}
    assert ModelGraph.from_json(m.to_json()) == m


def test_loop_body_is_a_subgraph(tmp_path):
    body = B.loop_body()
    loop = helper.make_node("Loop", ["n", "c", "x"], ["y"], body=body, name="loop")
    model = B.make([loop], [B.tensor_in("n", [], TensorProto.INT64),
                            B.tensor_in("c", [], TensorProto.BOOL), B.tensor_in("x", [4])],
                   [B.tensor_in("y", [4])])
    p = tmp_path / "loop.onnx"
    onnx.save(model, p)
    m = open_model(p)
    assert m.node_count() == 3
    assert list(m.graph.nodes[0].subgraphs) == ["body"]
    assert analyze(m).params == 4


def test_external_data_inside_folder(tmp_path):
    p = tmp_path / "ext.onnx"
    B.save_with_external_data(B.conv_model(), p)
    data = tmp_path / "model.onnx.data"
    assert data.exists()
    m = open_model(p)
    assert m.meta.file_size == p.stat().st_size + data.stat().st_size
    a = analyze(m)
    assert a.params == 16 * 8 * 3 * 3 + 16
    assert a.weight_bytes == a.params * 4
    before = m.meta.sha256
    with open(data, "r+b") as f:  # same size, different weights: the digest must change
        f.write(b"\x00\x01\x02\x03")
    assert open_model(p).meta.sha256 != before


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_external_data_outside_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(b"\0" * 10_000)
    p = folder / "evil.onnx"
    B.save_with_external_data(B.conv_model(), p)
    proto = onnx.load(str(p), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(proto, str(p))
    with pytest.raises(ModelLoadError, match="outside the model's folder"):
        open_model(p)


def test_external_data_missing_or_truncated(tmp_path):
    p = tmp_path / "ext.onnx"
    B.save_with_external_data(B.conv_model(), p)
    data = tmp_path / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="truncated"):
        open_model(p)
    data.unlink()
    with pytest.raises(ModelLoadError, match="missing.*model.onnx.data|model.onnx.data.*missing"):
        open_model(p)


def test_symbolic_dims_kept_and_assumed(tmp_path):
    p = tmp_path / "conv.onnx"
    onnx.save(B.conv_model(), p)
    m = open_model(p)
    assert m.graph.tensors["x"].shape == ["batch", 8, 32, 32]
    assert m.graph.tensors["y"].shape == ["batch", 16, 30, 30]
    a = analyze(m)
    assert a.assumed_dims == {"batch": 1}
    assert a.macs == 16 * 30 * 30 * 8 * 3 * 3


def test_int_input_and_other_domains(tmp_path):
    p = tmp_path / "ids.onnx"
    onnx.save(B.int_input_model(), p)
    m = open_model(p)
    assert m.graph.tensors["ids"].dtype == "int64"
    assert m.graph.tensors["ids"].shape == ["batch", "seq"]
    q = tmp_path / "ms.onnx"
    onnx.save(B.custom_domain_model(), q)
    m = open_model(q)
    assert [(n.op_type, n.domain) for n in m.graph.nodes] == [
        ("FastGelu", "com.microsoft"), ("MySecretOp", "org.example")]
    assert m.meta.opset["org.example"] == 1
    a = analyze(m)
    # onnx's shape inference does not know com.microsoft ops, so FastGelu's output shape is
    # unknown: listed as such rather than counted as 0
    assert a.uncounted == {"MySecretOp": {"count": 1, "reason": "no formula for this op"},
                           "FastGelu": {"count": 1, "reason": "shapes unknown"}}


def test_attributes_are_json_safe(tmp_path):
    p = tmp_path / "conv.onnx"
    onnx.save(B.conv_model(groups=2, dilation=2), p)
    conv = open_model(p).graph.nodes[0]
    assert conv.attributes == {"group": 2, "dilations": [2, 2], "pads": [0, 0, 0, 0]}
    assert conv.scope == "/block/conv"


# --- bad files: each gets its own message ---------------------------------------------------

def _bad(tmp_path, name: str, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return p


@pytest.mark.parametrize("name,content,match", [
    ("empty.onnx", b"", "empty"),
    ("page.onnx", b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML page"),
    ("lfs.onnx", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n",
     "Git LFS pointer"),
    ("noise.onnx", bytes(range(256)) * 4, "not a valid ONNX file"),
    ("notes.txt", b"just some text", "not a model format"),
])
def test_bad_files_have_clear_messages(tmp_path, name, content, match):
    with pytest.raises(ModelLoadError, match=match):
        open_model(_bad(tmp_path, name, content))


def test_truncated_onnx(tmp_path, light):
    data = light("squeezenet").read_bytes()
    p = _bad(tmp_path, "cut.onnx", data[: len(data) // 2])
    assert detect_format(p).name == "onnx"
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        open_model(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        open_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelLoadError, match="is a folder"):
        open_model(tmp_path)


def test_onnx_sniffed_by_content_not_suffix(tmp_path, light):
    p = tmp_path / "model.weird"
    shutil.copy(light("squeezenet"), p)
    assert open_model(p).meta.format == "onnx"


# --- hostile and broken files (issue #10) -----------------------------------------------------

def test_fifo_and_device_links_are_refused_before_opening(tmp_path):
    import os

    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(ModelLoadError, match="named pipe.*not a regular file"):
        open_model(fifo)
    zero = tmp_path / "zero.onnx"
    zero.symlink_to("/dev/zero")  # reading it never ends
    with pytest.raises(ModelLoadError, match="link to /dev/zero.*character device"):
        open_model(zero)
    dangling = tmp_path / "gone.onnx"
    dangling.symlink_to(tmp_path / "nothing.onnx")
    with pytest.raises(ModelLoadError, match="symbolic link to a missing file"):
        open_model(dangling)


def test_symlink_to_a_regular_model_is_read(tmp_path, light):
    link = tmp_path / "link.onnx"
    link.symlink_to(light("squeezenet"))
    assert open_model(link).meta.format == "onnx"


def test_oversized_file_is_refused_without_reading_it(tmp_path):
    p = tmp_path / "big.onnx"
    with open(p, "wb") as f:
        f.write(b"\x08\x07")
        f.truncate(3 << 30)  # sparse: costs no disk
    with pytest.raises(ModelLoadError, match=r"file is 3\.2 GB; ONNX model files are read whole"):
        open_model(p)


def _external_with(tmp_path, **entries):
    p = tmp_path / "ext.onnx"
    B.save_with_external_data(B.conv_model(), p)
    proto = onnx.load(str(p), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key in entries:
                e.value = entries[e.key]
    onnx.save(proto, str(p))
    return p


@pytest.mark.parametrize("entries, match", [
    ({"offset": "abc"}, "offset 'abc', not a whole number"),
    ({"offset": "-5"}, "offset '-5', not a whole number"),
    ({"length": "1e3"}, "length '1e3', not a whole number"),
    ({"offset": "99999999"}, "truncated or the offset is wrong"),
    ({"length": "8"}, "declares 8 bytes of external data but its shape and type need"),
])
def test_external_data_offsets_and_lengths_are_validated(tmp_path, entries, match):
    with pytest.raises(ModelLoadError, match=match):
        open_model(_external_with(tmp_path, **entries))


def test_external_data_that_is_a_fifo_is_refused(tmp_path):
    import os

    p = tmp_path / "ext.onnx"
    B.save_with_external_data(B.conv_model(), p)
    data = tmp_path / "model.onnx.data"
    data.unlink()
    os.mkfifo(data)
    with pytest.raises(ModelLoadError, match="named pipe.*external data file"):
        open_model(p)


def _notes(tmp_path, model) -> list[str]:
    p = tmp_path / "m.onnx"
    onnx.save(model, str(p))
    return open_model(p).meta.notes


def test_negative_dim_is_unknown_not_a_native_abort(tmp_path):
    m = B.conv_model(batch=1)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = -1  # aborted infer_shapes (134)
    p = tmp_path / "m.onnx"
    onnx.save(m, str(p))
    g = open_model(p)
    assert g.graph.tensors["x"].shape == [1, 8, None, 32]
    assert any("negative dims in 'x'" in n for n in g.meta.notes)


def _relu(i, o, name):
    return helper.make_node("Relu", [i], [o], name=name)


@pytest.mark.parametrize("build, match", [
    (lambda: B.make([_relu("y", "h", "a"), _relu("h", "y", "b")], [B.tensor_in("x", [1, 4])],
                    [B.tensor_in("y", [1, 4])]), r"a cycle: 2 nodes .*'a', 'b'"),
    (lambda: B.make([_relu("nope", "y", "a")], [B.tensor_in("x", [1, 4])],
                    [B.tensor_in("y", [1, 4])]), "inputs nothing produces: 'nope'"),
    (lambda: B.make([_relu("x", "y", "a"), _relu("x", "y", "a")], [B.tensor_in("x", [1, 4])],
                    [B.tensor_in("y", [1, 4])]), "tensors produced more than once: 'y'"),
    (lambda: B.make([_relu("x", "y", "a")], [B.tensor_in("x", [1, 4])],
                    [B.tensor_in("z", [1, 4])]), "graph outputs nothing produces: 'z'"),
])
def test_structural_faults_are_warnings(tmp_path, build, match):
    notes = _notes(tmp_path, build())
    assert any(re.search(match, n) for n in notes), notes
    assert all(n.startswith("warning:") for n in notes)


def test_attribute_and_opset_faults_are_warnings(tmp_path):
    m = B.conv_model()
    m.graph.node[0].attribute.append(helper.make_attribute("kernel_shape", [0, 0]))
    assert any("kernel_shape [0, 0] must be >= 1" in n for n in _notes(tmp_path, m))
    m = B.conv_model()
    next(a for a in m.graph.node[0].attribute if a.name == "group").i = 10**9
    assert any("group 1000000000 does not divide" in n for n in _notes(tmp_path, m))
    m = B.conv_model()
    m.opset_import[0].version = 999
    assert any("opset 999" in n for n in _notes(tmp_path, m))


def test_subgraph_may_use_outer_names_but_not_dangling_ones(tmp_path):
    assert not [n for n in _notes(tmp_path, B.if_model()) if "invalid graph" in n]
    m = B.if_model()
    branch = m.graph.node[-1].attribute[0].g
    branch.node[0].input[0] = "ghost"
    notes = _notes(tmp_path, m)
    assert any("inputs nothing produces in" in n and "'ghost'" in n for n in notes), notes


def test_valid_models_get_no_warnings(tmp_path, light):
    assert open_model(light("resnet50")).meta.notes == []
    assert open_model("resources/samples/digits_cnn.onnx").meta.notes == []


def test_declared_sizes_past_the_budget_are_named(tmp_path):
    from onnx import numpy_helper
    import numpy as np

    from converters.limits import declared_memory_bytes

    notes = _notes(tmp_path, B.conv_model(batch=2**31))
    assert any(re.search(r"would need ~64\.0 TB for these input sizes", n) for n in notes), notes
    shape = helper.make_node("Constant", [], ["s"],
                             value=numpy_helper.from_array(np.array([1000, 1000, 1000], np.int64)))
    fill = helper.make_node("ConstantOfShape", ["s"], ["y"])
    m = B.make([shape, fill], [], [B.tensor_in("y", None)])
    p = tmp_path / "cos.onnx"
    onnx.save(m, str(p))
    g = open_model(p)
    assert declared_memory_bytes(g) == 4 * 10**9 + 24  # the float fill + the shape constant
    assert not any("would need" in n for n in g.meta.notes)  # 3.7 GiB, under the 4 GiB budget
    small = open_model(tmp_path / "m.onnx")
    assert declared_memory_bytes(small, {"x": [1, 8, 32, 32]}) == 4 * 8 * 32 * 32


@pytest.mark.parametrize("name", ["Wc", "const_w"])  # an initializer name, a node name
def test_names_that_are_not_utf8_are_refused(tmp_path, name):
    # protobuf returns such string fields as bytes; was `internal error: TypeError`
    data = B.constant_weight_model().SerializeToString()
    assert name.encode() in data
    p = tmp_path / "m.onnx"
    p.write_bytes(data.replace(name.encode(), b"\xff\xfe" + name.encode()[2:], 1))
    with pytest.raises(ModelLoadError, match=r"m\.onnx is damaged: .*not valid UTF-8"):
        open_model(p)
