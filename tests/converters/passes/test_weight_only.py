"""weight-only: MatMul weights to INT8 / INT4 (ONNX: MatMulNBits; OpenVINO: NNCF)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from converters.passes import ModelFile, PassError, make_options
from converters.passes.weight_only import WeightOnly
from tests.converters.passes.quant_helpers import (
    cosine, matmul_model, ort_run, ov_run, run_pass, sample_model, sample_split, to_openvino,
)


@pytest.fixture
def mlp(tmp_path) -> ModelFile:
    path = tmp_path / "mlp.onnx"
    matmul_model(256, path)
    return ModelFile(path, "onnx")


def _x(n: int = 32) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, 256)).astype(np.float32)


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize(("bits", "max_ratio", "min_cos"), [(4, 0.2, 0.97), (8, 0.3, 0.9999)])
def test_onnx_matmuls_become_matmulnbits(mlp, tmp_path, bits, max_ratio, min_cos):
    result = run_pass("weight-only", mlp, tmp_path / "work", bits=bits, group_size=128)

    assert result.changed
    assert _ops(result.output.path) == ["MatMulNBits", "Relu", "MatMulNBits"]
    assert result.details["nodes_compressed"] == 2 and result.details["bits"] == bits
    assert result.output.size_bytes() < max_ratio * mlp.size_bytes()
    ref, out = ort_run(mlp.path, {"x": _x()})[0], ort_run(result.output.path, {"x": _x()})[0]
    assert cosine(ref, out) > min_cos


def test_onnx_excluded_matmul_stays_float(mlp, tmp_path):
    result = run_pass("weight-only", mlp, tmp_path / "work", bits=4, exclude=["/fc2/MatMul"])
    assert _ops(result.output.path) == ["MatMulNBits", "Relu", "MatMul"]


def test_onnx_sample_gemms_rewritten(tmp_path):
    """The sample's classifier is two Gemms: ORT's rewrite makes them MatMul + Add first."""
    result = run_pass("weight-only", sample_model(), tmp_path, bits=8)
    ops = _ops(result.output.path)
    assert ops.count("MatMulNBits") == 2 and "Gemm" not in ops
    assert result.details["gemm_rewritten"] == 2
    _, x, _ = sample_split()
    ref = ort_run(sample_model().path, {"input": x})[0]
    out = ort_run(result.output.path, {"input": x})[0]
    assert (ref.argmax(1) == out.argmax(1)).mean() >= 0.97


def test_onnx_gemm_only_model_without_rewrite_has_nothing_to_compress(tmp_path):
    result = run_pass("weight-only", sample_model(), tmp_path, gemm_to_matmul=False)
    assert not result.changed
    assert result.output == sample_model()
    assert "nothing to compress" in result.messages[-1] and "Gemm" in result.messages[-1]
    assert not list(tmp_path.iterdir())


def test_options_are_checked():
    assert make_options(WeightOnly, {"bits": "4", "group_size": "64", "symmetric": "true"}) == \
        WeightOnly.Options(bits=4, group_size=64, symmetric=True)
    for bad in ({"bits": "3"}, {"group_size": "100"}, {"ratio": "0"}):
        with pytest.raises(PassError):
            make_options(WeightOnly, bad)


@pytest.mark.parametrize(("bits", "symmetric", "types", "min_cos"),
                         [(8, False, {"u8"}, 0.9999), (4, True, {"i4"}, 0.97),
                          (4, False, {"u4"}, 0.97)])
def test_openvino_weights_compressed(mlp, tmp_path, bits, symmetric, types, min_cos):
    ir = to_openvino(mlp.path, tmp_path / "ir", "mlp")
    result = run_pass("weight-only", ir, tmp_path / "work", bits=bits, symmetric=symmetric,
                      group_size=128)

    assert result.changed and result.output.format == "openvino"
    after = result.details["weight_types_after"]
    assert types <= set(after), after
    assert result.details["layers_compressed"] == 2
    assert result.output.size_bytes() < 0.35 * ir.size_bytes()
    ref, out = ov_run(ir.path, {"x": _x()})[0], ov_run(result.output.path, {"x": _x()})[0]
    assert cosine(ref, out) > min_cos


def test_openvino_excluded_node_kept(mlp, tmp_path):
    ir = to_openvino(mlp.path, tmp_path / "ir", "mlp")
    result = run_pass("weight-only", ir, tmp_path / "work", exclude=["/fc1/MatMul"])
    assert result.details["layers_compressed"] == 1
    with pytest.raises(PassError, match="OpenVINO names its nodes"):
        run_pass("weight-only", ir, tmp_path / "work", exclude=["/fc2/MatMul"])
