"""lowrank: fewer parameters on the sample with the same predictions, a valid graph, and
exact agreement with numpy's truncated SVD on hand-built Gemm (transB=1), MatMul and Conv."""
from __future__ import annotations

import numpy as np
import pytest

from converters.analysis import analyze
from converters.formats import open_model, sha256_of
from converters.passes import ModelFile, PassContext, PassError, get_pass, make_options
from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX

PASS = get_pass("lowrank")


def run(path, tmp_path, **options):
    opts = make_options(PASS, {k: str(v) for k, v in options.items()})
    return PASS().run(ModelFile(path, "onnx"), opts, PassContext(work_dir=tmp_path))


def ort_run(path, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def truncated(matrix: np.ndarray, rank: int) -> np.ndarray:
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vt[:rank]


def save(tmp_path, graph, name="tiny.onnx"):
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_sample_fewer_params_same_predictions(tmp_path):
    import onnx

    source_sha = sha256_of([SAMPLE_ONNX])
    result = run(SAMPLE_ONNX, tmp_path / "work", energy=0.9)
    assert sha256_of([SAMPLE_ONNX]) == source_sha
    params_before = analyze(open_model(SAMPLE_ONNX)).params
    params_after = analyze(open_model(result.output.path)).params
    assert params_after < params_before
    assert params_before - params_after == result.details["params_saved"]
    onnx.checker.check_model(onnx.load(str(result.output.path)), full_check=True)

    fc1 = result.details["layers"]["/classifier/fc1/Gemm"]
    assert fc1["rank_full"] == 256 and fc1["rank_kept"] < 256 and fc1["energy_kept"] >= 0.9
    data = np.load(SAMPLE_NPZ)
    ref = ort_run(SAMPLE_ONNX, {"input": data["inputs"]})
    out = ort_run(result.output.path, {"input": data["inputs"]})
    agreement = float(np.mean(ref.argmax(1) == out.argmax(1)))
    acc_before = float(np.mean(ref.argmax(1) == data["labels"]))
    acc_after = float(np.mean(out.argmax(1) == data["labels"]))
    print(f"\nlowrank energy 0.9: params {params_before:,} -> {params_after:,}, fc1 rank "
          f"{fc1['rank_kept']}/{fc1['rank_full']}, top-1 agreement {agreement:.4f}, accuracy "
          f"{acc_before:.4f} -> {acc_after:.4f}")
    assert agreement >= 0.9


def test_gemm_transb_matches_numpy(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b = rng.standard_normal((48, 64)).astype(np.float32)  # [N, K]: transB=1
    c = rng.standard_normal(48).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="gemm", transB=1, alpha=0.5,
                          beta=2.0)],
        "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 48])],
        [numpy_helper.from_array(b, "b"), numpy_helper.from_array(c, "c")])
    path = save(tmp_path, graph)
    result = run(path, tmp_path / "work", ratio=0.25, min_params=100)
    rank = result.details["layers"]["gemm"]["rank_kept"]
    assert rank == 12
    a = rng.standard_normal((5, 64)).astype(np.float32)
    expected = 0.5 * a @ truncated(b.T, rank) + 2.0 * c
    np.testing.assert_allclose(ort_run(result.output.path, {"a": a}), expected, rtol=1e-4,
                               atol=1e-4)


def test_matmul_and_transposed_a(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 40)).astype(np.float32)
    b = rng.standard_normal((64, 40)).astype(np.float32)  # [K, N]; y = h^T · b (transA=1)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node("Gemm", ["h", "b"], ["y"], name="gemm_ta", transA=1)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [40, 40])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    path = save(tmp_path, graph)
    result = run(path, tmp_path / "work", ratio=0.2, min_params=100)
    r_mm = result.details["layers"]["mm"]["rank_kept"]
    r_g = result.details["layers"]["gemm_ta"]["rank_kept"]
    x = rng.standard_normal((64, 64)).astype(np.float32)
    expected = (x @ truncated(w, r_mm)).T @ truncated(b, r_g)
    np.testing.assert_allclose(ort_run(result.output.path, {"x": x}), expected, rtol=1e-3,
                               atol=1e-3)


def test_conv_becomes_kxk_then_1x1(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)

    def conv_graph(weight):
        return helper.make_graph(
            [helper.make_node("Conv", ["x", "w", "bias"], ["y"], name="conv", pads=[1, 1, 1, 1],
                              strides=[2, 2], kernel_shape=[3, 3])],
            "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 9, 9])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 32, 5, 5])],
            [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "bias")])

    path = save(tmp_path, conv_graph(w))
    without = run(path, tmp_path / "w0", ratio=0.25, min_params=100)
    assert not without.changed and "include_conv" in without.details["skipped"]["conv"]
    result = run(path, tmp_path / "work", ratio=0.25, min_params=100, include_conv=True)
    ops = [n.op_type for n in onnx.load(str(result.output.path)).graph.node]
    assert ops == ["Conv", "Conv"]
    rank = result.details["layers"]["conv"]["rank_kept"]
    reference = save(tmp_path, conv_graph(
        truncated(w.reshape(32, -1), rank).reshape(w.shape).astype(np.float32)), "ref.onnx")
    x = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(ort_run(result.output.path, {"x": x}),
                               ort_run(reference, {"x": x}), rtol=1e-3, atol=1e-3)


def test_no_saving_no_rewrite(tmp_path):
    result = run(SAMPLE_ONNX, tmp_path, energy=1.0)
    assert not result.changed and result.output.path == SAMPLE_ONNX
    assert "would not save parameters" in result.details["skipped"]["/classifier/fc1/Gemm"]


def test_options_exactly_one_of_energy_or_ratio():
    assert make_options(PASS, {"ratio": "0.5"}).energy is None
    assert make_options(PASS, {}).energy == 0.95
    with pytest.raises(PassError, match="exactly one"):
        make_options(PASS, {"energy": "0.9", "ratio": "0.5"})
    with pytest.raises(PassError, match="exactly one"):
        make_options(PASS, {"energy": "none"})
    with pytest.raises(PassError, match="energy"):
        make_options(PASS, {"energy": "1.5"})
