"""fp16: weights become float16, the file halves, I/O stays float32, outputs barely move."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from converters.passes import PassError
from tests.converters.passes.quant_helpers import (
    FLOAT, FLOAT16, cosine, initializer_types, ort_run, ov_run, run_pass, sample_model,
    sample_split, to_openvino,
)


def _io_elem_types(path) -> set[int]:
    g = onnx.load(str(path)).graph
    return {v.type.tensor_type.elem_type for v in [*g.input, *g.output]}


def test_onnx_sample_weights_halve(tmp_path):
    src = sample_model()
    result = run_pass("fp16", src, tmp_path)

    assert result.changed and result.output.format == "onnx"
    assert initializer_types(result.output.path) == {FLOAT16}
    assert result.details["tensors_converted"] == 22
    assert result.details["initializer_dtypes_after"] == {"float16": 22}
    assert 0.45 < result.output.size_bytes() / src.size_bytes() < 0.55
    assert _io_elem_types(result.output.path) == {FLOAT}  # keep_io_types
    assert result.details["io_types"] == {"input": "float32", "logits": "float32"}

    _, x, y = sample_split()
    ref, out = ort_run(src.path, {"input": x})[0], ort_run(result.output.path, {"input": x})[0]
    assert out.dtype == np.float32
    assert cosine(ref, out) > 0.999
    assert (ref.argmax(1) == out.argmax(1)).mean() >= 0.99


def test_onnx_io_float16_when_asked(tmp_path):
    result = run_pass("fp16", sample_model(), tmp_path, keep_io_types=False)
    assert _io_elem_types(result.output.path) == {FLOAT16}
    _, x, _ = sample_split()
    out = ort_run(result.output.path, {"input": x.astype(np.float16)})[0]
    assert out.dtype == np.float16


def test_onnx_blocked_node_keeps_float32_weights(tmp_path):
    result = run_pass("fp16", sample_model(), tmp_path,
                      node_block_list=["/classifier/fc2/Gemm"], op_block_list=["Conv"])
    dtypes = {t.name: t.data_type for t in onnx.load(str(result.output.path)).graph.initializer}
    assert dtypes["classifier.fc2.weight"] == FLOAT
    assert dtypes["features.conv1.weight"] == FLOAT  # Conv is blocked by op type
    assert dtypes["classifier.fc1.weight"] == FLOAT16


def test_onnx_unknown_blocked_node_is_named(tmp_path):
    with pytest.raises(PassError, match="no node named 'nope'"):
        run_pass("fp16", sample_model(), tmp_path, node_block_list=["nope"])


def test_openvino_ir_weights_become_f16(tmp_path):
    src = to_openvino(sample_model().path, tmp_path / "ir", "digits")
    result = run_pass("fp16", src, tmp_path / "work")

    assert result.changed and result.output.format == "openvino"
    assert result.details["weight_types_before"].get("f32")
    assert "f32" not in result.details["weight_types_after"]
    assert result.details["weight_types_after"]["f16"] == result.details["tensors_converted"]
    assert 0.45 < result.output.size_bytes() / src.size_bytes() < 0.55

    _, x, _ = sample_split()
    ref, out = ov_run(src.path, {"input": x})[0], ov_run(result.output.path, {"input": x})[0]
    assert cosine(ref, out) > 0.999
