"""int8-dynamic: Gemm/MatMul and Conv run as integer ops, the file shrinks ~4x, top-1 holds."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from converters.passes import ModelFile, PassError
from tests.converters.onnx_builders import make, tensor_in
from tests.converters.passes.quant_helpers import ort_run, run_pass, sample_model, sample_split


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def _agreement(path) -> float:
    _, x, _ = sample_split()
    ref = ort_run(sample_model().path, {"input": x})[0]
    return float((ort_run(path, {"input": x})[0].argmax(1) == ref.argmax(1)).mean())


def test_sample_defaults_quantize_the_dense_layers_per_channel(tmp_path):
    """Defaults: MatMul / Gemm with per-channel weights; Conv stays float (int8-static's job)."""
    src = sample_model()
    result = run_pass("int8-dynamic", src, tmp_path)

    ops = _ops(result.output.path)
    assert result.changed
    assert ops.count("MatMulInteger") == 2 and "Gemm" not in ops
    assert "ConvInteger" not in ops and ops.count("Conv") == 3
    assert "DynamicQuantizeLinear" in ops
    assert result.details["per_channel"] is True
    assert result.details["op_types"] == ["Attention", "Gemm", "LSTM", "MatMul"]
    changes = result.details["op_changes"]
    assert changes["MatMulInteger"] == [0, 2] and changes["Gemm"] == [2, 0]
    assert result.details["nodes_quantized"] == 2
    # per-channel: one scale per output unit of each dense layer (fc1 256, fc2 10)
    scales = sorted(int(np.prod(t.dims)) for t in onnx.load(str(result.output.path)).graph.initializer
                    if t.name.endswith("_scale") and t.dims)
    assert scales == [10, 256]
    assert result.output.size_bytes() < 0.45 * src.size_bytes()
    assert _agreement(result.output.path) >= 0.99


def test_sample_conv_on_request(tmp_path):
    src = sample_model()
    result = run_pass("int8-dynamic", src, tmp_path, op_types=["Conv", "Gemm"])

    ops = _ops(result.output.path)
    assert ops.count("MatMulInteger") == 2 and ops.count("ConvInteger") == 3
    assert result.details["nodes_quantized"] == 5
    assert result.output.size_bytes() < 0.3 * src.size_bytes()
    assert _agreement(result.output.path) >= 0.97


def test_only_gemm_per_channel_quint8(tmp_path):
    result = run_pass("int8-dynamic", sample_model(), tmp_path, op_types=["Gemm"],
                      per_channel=True, weight_type="quint8")
    ops = _ops(result.output.path)
    assert ops.count("MatMulInteger") == 2 and "ConvInteger" not in ops
    assert result.details["nodes_quantized"] == 2
    assert _agreement(result.output.path) >= 0.97


def test_excluded_gemm_stays_float(tmp_path):
    result = run_pass("int8-dynamic", sample_model(), tmp_path, op_types=["Gemm"],
                      exclude=["/classifier/fc2/Gemm"])
    assert _ops(result.output.path).count("MatMulInteger") == 1
    assert result.details["excluded"] == ["/classifier/fc2/Gemm"]


def test_unknown_op_type_refused(tmp_path):
    with pytest.raises(PassError, match="op_types"):
        run_pass("int8-dynamic", sample_model(), tmp_path, op_types=["Softmax"])


def test_nothing_to_quantize_says_so(tmp_path):
    path = tmp_path / "relu.onnx"
    onnx.save(make([helper.make_node("Relu", ["x"], ["y"])], [tensor_in("x", [2, 4])],
                   [tensor_in("y", [2, 4])]), str(path))
    result = run_pass("int8-dynamic", ModelFile(path, "onnx"), tmp_path / "work")
    assert not result.changed
    assert "no node was quantized" in result.messages[-1]
    assert "int8-static suits CNNs" in result.messages[-1]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(ort_run(result.output.path, {"x": x})[0], x)


def test_old_ir_model_with_generated_weights(light, tmp_path):
    """light_squeezenet lists its weights as inputs (IR 3) and makes them with ConstantOfShape:
    pre-processing on a copy folds them, so the Convs can be quantized."""
    result = run_pass("int8-dynamic", ModelFile(light("squeezenet"), "onnx"), tmp_path,
                      op_types=["Conv"])
    assert result.changed and result.details["preprocessed"]
    assert _ops(result.output.path).count("ConvInteger") == result.details["nodes_quantized"] > 20
    assert [p.name for p in tmp_path.iterdir()] == [result.output.path.name]  # no leftovers


def test_convert_names_the_node_where_fidelity_broke(tmp_path):
    """`convert --pass int8-dynamic` once ended in `internal error: KeyError: 'name'` after
    writing the file: the CLI read first_broken["node"]["name"], which the pipeline lacked.
    A threshold above what INT8 reaches makes fidelity "break" on purpose."""
    import subprocess
    import sys

    from tests.conftest import REPO, SAMPLE_ONNX

    out = tmp_path / "q.onnx"
    proc = subprocess.run([sys.executable, "-m", "app.cli", "convert", str(SAMPLE_ONNX),
                           "--pass", "int8-dynamic", "--fidelity-threshold", "0.9999999",
                           "-o", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "internal error" not in proc.stderr and "KeyError" not in proc.stderr
    assert "fidelity broke at step 1 (int8-dynamic" in proc.stdout
    assert "first diverging node /" in proc.stdout
    assert out.is_file()
