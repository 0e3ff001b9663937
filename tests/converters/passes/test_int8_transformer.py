"""INT8 defaults that hold on transformers as well as CNNs.

Models: a BERT-style encoder built by transformers from a small config (tests/real_models.py;
random weights, with outliers=True given a trained model's spread, which is where INT8 choices
show), rapidocr==3.10.0's PP-OCRv6_rec_small.onnx (a CNN with an attention neck, from PyPI),
and the bundled digits CNN. Fidelity is the cosine of the float32 and INT8 outputs on valid
inputs (token ids inside the vocabulary, token types {0, 1}, mask ones, sequence 128).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from converters.passes import CalibrationData, ModelFile
from app.pipeline import ConvertSpec, StepSpec, run_pipeline
from profilers.verify import fidelity
from tests.conftest import SAMPLE_NPZ
from tests.converters.passes.quant_helpers import ort_run, run_pass, sample_model
from tests.real_models import BERT_INPUTS, bert_inputs, bert_onnx, wheel_member

REC = ("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_rec_small.onnx")


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> ModelFile:
    return ModelFile(bert_onnx(tmp_path_factory.mktemp("bert"), outliers=True), "onnx")


@pytest.fixture(scope="module")
def feeds() -> dict[str, np.ndarray]:
    return bert_inputs(4, 128, seed=1)


def _cosine(src, out, feeds) -> float:
    return fidelity(ort_run(src, feeds)[0], ort_run(out, feeds)[0])["cosine"]


def _calibration() -> CalibrationData:
    return CalibrationData(arrays=bert_inputs(16, 128, seed=2), source="generated tokens")


def test_bert_builder_gives_dynamic_token_inputs(bert):
    proto = onnx.load(str(bert.path))
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert tuple(inputs) == BERT_INPUTS
    for t in inputs.values():
        assert t.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in t.shape.dim] == ["batch", "sequence"]
    assert ort_run(bert.path, bert_inputs(2, 33))[0].shape == (2, 33, 128)


def test_int8_dynamic_defaults_hold_on_bert(bert, feeds, tmp_path):
    """Measured: defaults (per-channel, MatMul/Gemm) 0.993; the former defaults (per-tensor,
    every op type incl. the embedding Gathers) 0.967."""
    result = run_pass("int8-dynamic", bert, tmp_path / "new")
    assert result.details["nodes_quantized"] == 13  # 12 encoder MatMuls + the pooler's Gemm
    new = _cosine(bert.path, result.output.path, feeds)
    old = run_pass("int8-dynamic", bert, tmp_path / "old", per_channel="false",
                   op_types=["Conv", "Gather", "Gemm", "MatMul", "Transpose"])
    before = _cosine(bert.path, old.output.path, feeds)
    print(f"\nBERT int8-dynamic cosine: former defaults {before:.4f}, defaults {new:.4f}")
    assert new >= 0.985
    assert before < new - 0.01


@pytest.mark.slow
def test_convert_bert_int8_dynamic_end_to_end(bert, tmp_path):
    """Through the pipeline, with no shapes given: no KeyError, verified fidelity holds."""
    out = tmp_path / "bert-int8.onnx"
    result = run_pipeline(ConvertSpec(model=str(bert.path), output=str(out),
                                      passes=(StepSpec("int8-dynamic"),)))
    step = result["steps"][-1]
    assert out.is_file() and result["first_broken"] is None
    assert step["fidelity"]["cosine"] >= 0.985


@pytest.mark.slow
def test_convert_ocr_recogniser_int8_dynamic(tmp_path):
    """rapidocr==3.10.0 PP-OCRv6 rec: attention MatMuls quantized, its 57 Convs left float
    (with Conv quantized on the fly the cosine was 0.97)."""
    rec = wheel_member(*REC)
    out = tmp_path / "rec-int8.onnx"
    result = run_pipeline(ConvertSpec(model=str(rec), output=str(out),
                                      passes=(StepSpec("int8-dynamic"),)))
    step = result["steps"][-1]
    assert step["details"]["nodes_quantized"] >= 9
    assert step["fidelity"]["cosine"] >= 0.99
    assert result["first_broken"] is None


@pytest.mark.slow
def test_int8_static_bert_takes_the_transformer_recipe(bert, feeds, tmp_path):
    """ONNX: NNCF's transformer recipe (0.998) where ORT's quantize_static gets 0.891."""
    result = run_pass("int8-static", bert, tmp_path / "auto", calibration=_calibration())
    assert result.details["model_type"] == "transformer (auto: attention)"
    assert result.details["engine"] == "nncf (ONNX backend)"
    auto = _cosine(bert.path, result.output.path, feeds)
    other = run_pass("int8-static", bert, tmp_path / "other", calibration=_calibration(),
                     model_type="other")
    assert other.details["engine"] == "onnxruntime quantize_static"
    cnn_recipe = _cosine(bert.path, other.output.path, feeds)
    print(f"\nBERT int8-static cosine: CNN recipe {cnn_recipe:.4f}, transformer {auto:.4f}")
    assert auto >= 0.99
    assert cnn_recipe < auto - 0.02


@pytest.mark.slow
def test_int8_static_openvino_bert(bert, feeds, tmp_path):
    import openvino as ov

    xml = tmp_path / "bert.xml"
    ov.save_model(ov.convert_model(str(bert.path)), str(xml), compress_to_fp16=False)
    result = run_pass("int8-static", ModelFile(xml, "openvino"), tmp_path / "w",
                      calibration=_calibration())
    assert result.details["model_type"] == "transformer (auto: attention)"
    compiled = ov.Core().compile_model(str(result.output.path), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    out = np.asarray(compiled(feeds)[compiled.outputs[0]])
    cos = fidelity(ort_run(bert.path, feeds)[0], out)["cosine"]
    print(f"\nBERT int8-static OpenVINO cosine {cos:.4f}")
    assert cos >= 0.99


def test_int8_static_sample_cnn_keeps_the_cnn_recipe(tmp_path):
    """The digits CNN: ORT QDQ per-channel as before, accuracy on the whole held-out file
    (what `convert --eval resources/samples/digits_test.npz` reports) stays at 99.33%."""
    data = np.load(SAMPLE_NPZ)
    x, y = data["inputs"], data["labels"]
    result = run_pass("int8-static", sample_model(), tmp_path,
                      calibration=CalibrationData(arrays={"input": x}, source="sample"))
    assert result.details["model_type"] == "other (auto: no attention, or mostly convolutions)"
    assert result.details["engine"] == "onnxruntime quantize_static"
    fp32 = float((ort_run(sample_model().path, {"input": x})[0].argmax(1) == y).mean())
    int8 = float((ort_run(result.output.path, {"input": x})[0].argmax(1) == y).mean())
    assert int8 >= fp32 - 0.005 and int8 >= 0.99
