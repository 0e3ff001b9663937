"""`compare`: variants side by side on the same inputs and settings."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.pipeline import ConvertSpec, StepSpec, run_pipeline
from profilers.backends import BackendOptions
from profilers.compare import run_compare
from profilers.runner import RunConfig
from tests.conftest import REPO, SAMPLE_ONNX


@pytest.fixture(scope="module")
def int8_variant(tmp_path_factory):
    out = tmp_path_factory.mktemp("variants") / "digits_int8.onnx"
    run_pipeline(ConvertSpec(model=str(SAMPLE_ONNX), output=str(out),
                             passes=(StepSpec("int8-dynamic"),)))
    return out


def test_compare_rows_fidelity_accuracy_and_layer_deltas(int8_variant):
    base = RunConfig(model=str(SAMPLE_ONNX), iterations=50, warmup=5, layers=True,
                     layer_iterations=5, options=BackendOptions(threads=1))
    result = run_compare([str(SAMPLE_ONNX), str(int8_variant)], base, eval_data="sample")
    first, second = result["rows"]
    assert first["fidelity"]["cosine"] == pytest.approx(1.0)
    assert first["relative"]["latency_p50"] == pytest.approx(1.0)
    assert second["size_bytes"] < 0.5 * first["size_bytes"]
    assert 0.95 < second["fidelity"]["top1_agreement"] <= 1.0
    assert first["accuracy"]["accuracy"] > 0.97 and second["accuracy"]["accuracy"] > 0.95
    assert result["layer_deltas"]  # conv layers exist in both graphs under the same names
    assert all(d["model_index"] == 1 for d in result["layer_deltas"])


def test_compare_cli_html(int8_variant, tmp_path):
    html = tmp_path / "cmp.html"
    r = subprocess.run([sys.executable, "-m", "app.cli", "compare", str(SAMPLE_ONNX),
                        str(int8_variant), "--iterations", "30", "--eval", "sample", "--json",
                        "--html", str(html)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert [row["backend"] for row in rows] == ["onnxruntime", "onnxruntime"]
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2
    assert int8_variant.name in page
