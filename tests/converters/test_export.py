"""Format conversions on the bundled sample: .pt2 / TorchScript -> ONNX, ONNX / .pt2 / TFLite ->
OpenVINO IR. Each converted model is run against its source on the sample's test set."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from converters.export import CONVERSIONS, conversion_path
from converters.export.to_onnx import stem_of
from converters.formats import sha256_of
from converters.passes import Cancelled, ModelFile, PassContext, PassError
from profilers.verify import fidelity, run_model
from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX, SAMPLES
from tests.converters.tflite_builder import conv_fc_model

SAMPLE_PT2 = ModelFile(SAMPLES / "digits_cnn.pt2", "torch")
SAMPLE_TS = ModelFile(SAMPLES / "digits_cnn.ts.pt", "torch")
SAMPLE_ONNX_FILE = ModelFile(SAMPLE_ONNX, "onnx")


def convert(model: ModelFile, target: str, ctx: PassContext, **kwargs):
    """Run one conversion and check it left its source byte for byte as it was."""
    before = sha256_of(model.files())
    result = CONVERSIONS[(model.format, target)](model, ctx, **kwargs)
    assert sha256_of(model.files()) == before
    assert result.output.path.parent == ctx.work_dir
    assert all(p.is_file() for p in result.output.files())
    return result


@pytest.fixture(scope="module")
def inputs():
    return np.load(SAMPLE_NPZ)["inputs"]


@pytest.fixture(scope="module")
def torch_logits(inputs):
    return run_model(SAMPLE_PT2, {"x": inputs})[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return PassContext(work_dir=tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def pt2_onnx(work):
    return convert(SAMPLE_PT2, "onnx", work)


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_registered_paths():
    assert conversion_path("torch", "onnx") == [("torch", "onnx")]
    # through ONNX, the hub, even though OpenVINO's PyTorch frontend is registered too
    assert conversion_path("torch", "openvino") == [("torch", "onnx"), ("onnx", "openvino")]
    assert conversion_path("tflite", "openvino") == [("tflite", "openvino")]
    with pytest.raises(PassError, match="cannot convert"):
        conversion_path("openvino", "tflite")


@pytest.mark.slow  # the dynamo exporter takes a few seconds even on the small sample
def test_pt2_to_onnx_uses_dynamo(pt2_onnx, inputs, torch_logits):
    r = pt2_onnx
    assert r.details["exporter"] == "dynamo" and not r.messages
    assert r.output.path.name == "digits_cnn.onnx" and r.output.files() == [r.output.path]
    m = onnx.load(str(r.output.path))
    assert [i.name for i in m.graph.input] == ["x"]  # the torch argument name
    assert [o.name for o in m.graph.output] == ["output"]
    assert _dims(m.graph.input[0]) == ["batch", 1, 8, 8]
    assert _dims(m.graph.output[0]) == ["batch", 10]
    assert m.opset_import[0].version == 18
    assert not r.details["external_data"]
    # 450 samples in batches of 64: the last batch has 2, so the batch really is dynamic
    logits = run_model(r.output, {"x": inputs})[0]
    assert np.abs(logits - torch_logits).max() < 1e-4


def test_torchscript_to_onnx_falls_back(work, inputs, torch_logits):
    r = convert(SAMPLE_TS, "onnx", work)
    assert r.details["exporter"] == "torchscript"
    assert any("dynamo exporter does not accept TorchScript" in m for m in r.messages)
    assert r.output.path.name.startswith("digits_cnn.") and r.output.path.suffix == ".onnx"
    m = onnx.load(str(r.output.path))
    assert [i.name for i in m.graph.input] == ["x"]
    assert _dims(m.graph.input[0]) == ["batch", 1, 8, 8]
    logits = run_model(r.output, {"x": inputs})[0]
    assert np.abs(logits - torch_logits).max() < 1e-4


def test_large_model_weights_go_to_external_data(tmp_path, inputs, torch_logits):
    ctx = PassContext(work_dir=tmp_path)
    r = convert(SAMPLE_TS, "onnx", ctx, external_data_threshold=1)  # "everything is large"
    data = r.output.path.with_name(r.output.path.name + ".data")
    assert r.details["external_data"] and data.is_file()
    assert r.output.files() == [r.output.path, data]
    assert r.output.path.stat().st_size < 50_000 < data.stat().st_size
    m = onnx.load(str(r.output.path), load_external_data=False)
    assert {e.value for t in m.graph.initializer for e in t.external_data
            if e.key == "location"} == {data.name}
    logits = run_model(r.output, {"x": inputs})[0]
    assert np.abs(logits - torch_logits).max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([r.output.path.name, data.name])


def test_onnx_to_openvino(work, inputs):
    r = convert(SAMPLE_ONNX_FILE, "openvino", work)
    assert r.output.path.suffix == ".xml" and r.output.path.with_suffix(".bin").is_file()
    assert r.details["inputs"] == [{"name": "input", "shape": "[?,1,8,8]"}]
    assert r.details["compress_to_fp16"] is False
    ref = run_model(SAMPLE_ONNX_FILE, {"input": inputs})[0]
    got = run_model(r.output, {"input": inputs})[0]
    f = fidelity(ref, got)
    assert f["cosine"] > 0.9999 and f["top1_agreement"] == 1.0
    assert _ir_is_fp32(r.output)


def _ir_is_fp32(model: ModelFile) -> bool:
    import openvino as ov

    ir = ov.Core().read_model(str(model.path))
    types = {op.get_output_element_type(0).get_type_name() for op in ir.get_ops()
             if op.get_type_name() == "Constant"}
    return "f16" not in types and "f32" in types


@pytest.mark.slow  # OpenVINO's PyTorch frontend takes a few seconds
def test_pt2_to_openvino(work, inputs, torch_logits):
    r = convert(SAMPLE_PT2, "openvino", work)
    assert r.details["inputs"] == [{"name": "x", "shape": "[?,1,8,8]"}]
    assert r.details["outputs"] == [{"name": "output", "shape": "[?,10]"}]
    got = run_model(r.output, {"x": inputs})[0]
    assert fidelity(torch_logits, got)["cosine"] > 0.9999


def test_tflite_to_openvino(tmp_path):
    src = tmp_path / "conv_fc.tflite"
    src.write_bytes(conv_fc_model())
    r = convert(ModelFile(src, "tflite"), "openvino", PassContext(work_dir=tmp_path / "out"))
    assert r.output.path.name == "conv_fc.xml"
    x = np.random.default_rng(0).random((5, 8, 8, 3), dtype=np.float32)
    ref = run_model(ModelFile(src, "tflite"), {"input": x})[0]  # fixed batch 1: one by one
    got = run_model(r.output, {"input": x})[0]
    assert ref.shape == got.shape == (5, 10)
    assert fidelity(ref, got)["cosine"] > 0.9999


def test_openvino_refuses_custom_op(tmp_path):
    node = helper.make_node("FancyOp", ["x"], ["y"], domain="com.example", name="fancy")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    ctx = PassContext(work_dir=tmp_path / "out")
    with pytest.raises(PassError, match=r"FancyOp") as err:
        convert(ModelFile(path, "onnx"), "openvino", ctx)
    assert "custom.onnx" in str(err.value)
    assert not ctx.work_dir.exists() or not any(ctx.work_dir.iterdir())


def _cancel_on_call(n: int):
    """cancelled() that turns True on its n-th call: stops the conversion at a later phase."""
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] >= n
    return cancelled


# The n-th check: 1 is up front; the last one comes after the files are written, before they
# are moved into place (TorchScript -> ONNX checks 4 times, ONNX -> IR 3 times).
@pytest.mark.parametrize("source,target,n", [(SAMPLE_TS, "onnx", 1), (SAMPLE_TS, "onnx", 4),
                                             (SAMPLE_ONNX_FILE, "openvino", 3)])
def test_cancel_leaves_nothing(tmp_path, source, target, n):
    ctx = PassContext(work_dir=tmp_path / "work", cancelled=_cancel_on_call(n))
    with pytest.raises(Cancelled):
        convert(source, target, ctx)
    leftovers = list(ctx.work_dir.iterdir()) if ctx.work_dir.exists() else []
    assert leftovers == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script / save
def test_torchscript_without_shapes_asks_for_them(tmp_path):
    import torch

    src = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), str(src))
    with pytest.raises(PassError, match="modeldeck.json"):
        convert(ModelFile(src, "torch"), "onnx", PassContext(work_dir=tmp_path / "out"))


def test_state_dict_is_refused(tmp_path):
    import torch

    src = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(4, 2).state_dict(), str(src))
    with pytest.raises(PassError, match="no graph"):
        convert(ModelFile(src, "torch"), "onnx", PassContext(work_dir=tmp_path / "out"))


def test_stem_of():
    assert stem_of(SAMPLES / "digits_cnn.ts.pt") == "digits_cnn"
    assert stem_of(SAMPLES / "digits_cnn.pt2") == "digits_cnn"
    assert stem_of(SAMPLES / "my.model.onnx") == "my.model"


def test_pt2_falls_back_when_dynamo_fails(tmp_path, monkeypatch, inputs, torch_logits):
    from converters.export import to_onnx

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported op aten::frobnicate\nmore detail")

    monkeypatch.setattr(to_onnx, "_export_dynamo", broken)
    r = convert(SAMPLE_PT2, "onnx", PassContext(work_dir=tmp_path))
    assert r.details["exporter"] == "torchscript"
    assert any("dynamo ONNX exporter failed (unsupported op aten::frobnicate)" in m
               for m in r.messages)
    m = onnx.load(str(r.output.path))
    assert [i.name for i in m.graph.input] == ["x"]
    assert _dims(m.graph.input[0]) == ["batch", 1, 8, 8]  # the program's batch is dynamic
    logits = run_model(r.output, {"x": inputs})[0]
    assert np.abs(logits - torch_logits).max() < 1e-4


@pytest.mark.slow  # the dynamo exporter takes a few seconds
def test_fixed_batch_pt2_says_so(tmp_path):
    import torch

    src = tmp_path / "linear.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(4, 2).eval(), (torch.zeros(1, 4),)),
                      str(src))
    r = convert(ModelFile(src, "torch"), "onnx", PassContext(work_dir=tmp_path / "out"))
    assert r.details["exporter"] == "dynamo" and not r.details["dynamic_batch"]
    assert any("fixed batch size" in m for m in r.messages)
    m = onnx.load(str(r.output.path))
    assert _dims(m.graph.input[0]) == [1, 4] and _dims(m.graph.output[0]) == [1, 2]


@pytest.fixture(autouse=True, scope="module")
def _consent_to_run_models():
    """These tests run PyTorch programs in-process: running one needs the user's consent."""
    from converters.formats import consent

    with consent(True):
        yield

