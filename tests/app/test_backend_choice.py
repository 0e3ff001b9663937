"""A model runs on its format's backend when none is named (CLI), and an explicit one is kept."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, SAMPLE_ONNX, SAMPLES


def test_backend_for_each_format(tmp_path):
    from profilers.compare import DEFAULT_BACKEND, backend_for

    jit = tmp_path / "digits.jit"
    shutil.copy(SAMPLES / "digits_cnn.ts.pt", jit)
    assert backend_for(SAMPLE_ONNX) == DEFAULT_BACKEND["onnx"] == "onnxruntime"
    assert backend_for(SAMPLES / "digits_cnn.pt2") == "torch"
    assert backend_for(jit) == "torch"  # by content: the suffix is not in the torch list
    junk = tmp_path / "notes.txt"
    junk.write_text("not a model")
    assert backend_for(junk) == "onnxruntime"  # the run then says what is wrong


@pytest.mark.slow
def test_profile_jit_without_backend_runs_on_torch(tmp_path):
    jit = tmp_path / "digits.jit"
    shutil.copy(SAMPLES / "digits_cnn.ts.pt", jit)
    out = tmp_path / "run.json"
    r = subprocess.run([sys.executable, "-m", "app.cli", "profile", str(jit), "--trust",
                        "--threads", "1", "--iterations", "20", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["backend"] == "torch"
    # an explicit --backend is kept (onnxruntime cannot run TorchScript: a clear refusal)
    r = subprocess.run([sys.executable, "-m", "app.cli", "profile", str(jit), "--trust",
                        "--backend", "onnxruntime", "--iterations", "5"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "onnxruntime" in r.stderr and "Traceback" not in r.stderr
