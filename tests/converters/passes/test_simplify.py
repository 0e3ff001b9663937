"""simplify: onnxslim folds constants, fuses Conv+BN and drops dead nodes; outputs unchanged."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from converters.passes import ModelFile, PassError, make_options
from converters.passes.simplify import Simplify
from tests.converters.onnx_builders import make, tensor_in, weight
from tests.converters.passes.quant_helpers import ort_run, run_pass, sample_model, sample_split


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_resnet50_weight_generators_fold(light, tmp_path):
    """light_resnet50 makes its weights with 239 ConstantOfShape nodes: they become initializers."""
    src = ModelFile(light("resnet50"), "onnx")
    result = run_pass("simplify", src, tmp_path)

    ops = _ops(result.output.path)
    assert result.changed
    assert "ConstantOfShape" not in ops and "BatchNormalization" not in ops
    assert result.details["nodes_before"] == 415
    assert result.details["nodes_after"] < 415 // 3
    assert result.details["op_changes"]["ConstantOfShape"] == [239, 0]

    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    name = "gpu_0/data_0"
    np.testing.assert_allclose(ort_run(result.output.path, {name: x})[0],
                               ort_run(src.path, {name: x})[0], rtol=1e-4, atol=1e-6)


def _dead_branch_model(path):
    """y = relu(x); a MatMul -> Tanh branch computes something nobody reads."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="live/Relu"),
             helper.make_node("MatMul", ["x", "W"], ["d"], name="dead/MatMul"),
             helper.make_node("Tanh", ["d"], ["d2"], name="dead/Tanh")]
    model = make(nodes, [tensor_in("x", ["batch", 32])], [tensor_in("y", ["batch", 32])],
                 [weight("W", [32, 32])])
    onnx.save(model, str(path))
    return ModelFile(path, "onnx")


def test_dead_branch_removed(tmp_path):
    src = _dead_branch_model(tmp_path / "dead.onnx")
    result = run_pass("simplify", src, tmp_path / "work")

    out = onnx.load(str(result.output.path))
    assert [n.op_type for n in out.graph.node] == ["Relu"]
    assert not out.graph.initializer  # W went with its branch
    assert result.details["op_changes"] == {"MatMul": [1, 0], "Tanh": [1, 0]}
    x = np.random.default_rng(1).standard_normal((4, 32)).astype(np.float32)
    np.testing.assert_array_equal(ort_run(result.output.path, {"x": x})[0],
                                  ort_run(src.path, {"x": x})[0])


def test_sample_conv_bn_fused_outputs_kept(tmp_path):
    result = run_pass("simplify", sample_model(), tmp_path)

    assert result.details["op_changes"] == {"BatchNormalization": [3, 0]}
    _, x, _ = sample_split()
    np.testing.assert_allclose(ort_run(result.output.path, {"input": x})[0],
                               ort_run(sample_model().path, {"input": x})[0], rtol=1e-4, atol=1e-4)


def test_skip_fusion_keeps_batchnorm(tmp_path):
    result = run_pass("simplify", sample_model(), tmp_path, skip_fusion=True)
    assert _ops(result.output.path).count("BatchNormalization") == 3
    assert result.details["skipped"] == ["fusion"]


def test_options_are_checked():
    assert make_options(Simplify, {"skip_fusion": "yes", "size_threshold": "1024"}) == \
        Simplify.Options(skip_fusion=True, size_threshold=1024)
    with pytest.raises(PassError, match="size_threshold"):
        make_options(Simplify, {"size_threshold": "-1"})


def test_unreadable_model_is_a_pass_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(PassError, match="bad.onnx"):
        run_pass("simplify", ModelFile(bad, "onnx"), tmp_path / "work")
