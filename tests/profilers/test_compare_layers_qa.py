"""compare --layers pairs a variant's layers with the first model's through the graph matching,
so the layers a conversion renamed (int8-dynamic's 'X_quant' MatMulInteger for the float Gemm)
are compared too; and the biggest changes come first. Before, the renamed layers (the ones that
changed) were left out and the CLI's ten lines were the ten smallest deltas."""
from __future__ import annotations

import pytest

from app.pipeline import ConvertSpec, StepSpec, run_pipeline
from profilers.backends import BackendOptions
from profilers.compare import run_compare
from profilers.runner import RunConfig
from tests.conftest import SAMPLE_ONNX


@pytest.mark.slow
def test_layer_deltas_follow_renamed_quantized_layers(tmp_path):
    out = tmp_path / "digits_int8.onnx"
    run_pipeline(ConvertSpec(model=str(SAMPLE_ONNX), output=str(out),
                             passes=(StepSpec("int8-dynamic"),)))
    base = RunConfig(model=str(SAMPLE_ONNX), iterations=30, warmup=5, layers=True,
                     layer_iterations=5, options=BackendOptions(threads=1), rounds=2)
    deltas = run_compare([str(SAMPLE_ONNX), str(out)], base)["layer_deltas"]
    renamed = [d for d in deltas if d["name"] != d.get("base_name", d["name"])]
    assert renamed, [d["name"] for d in deltas]  # e.g. /classifier/fc1/Gemm_quant <- ...Gemm
    sizes = [abs(d["delta_ms"]) for d in deltas]
    assert sizes == sorted(sizes, reverse=True)
