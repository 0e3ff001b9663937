"""`modeldeck inspect` as a user runs it: a subprocess, its stdout, stderr and exit code."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_inspect_json(light):
    r = run_cli("inspect", str(light("resnet50")), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["format"] == "onnx"
    assert s["nodes"] == 415
    assert abs(s["params"] - 25.6e6) / 25.6e6 < 0.01
    assert abs(s["macs"] - 4.1e9) / 4.1e9 < 0.03
    assert s["flops"] > s["macs"]
    assert s["inputs"] == [{"name": "gpu_0/data_0", "dtype": "float32", "shape": [1, 3, 224, 224]}]
    assert s["outputs"][0]["shape"] == [1, 1000]
    assert s["ops"]["Conv"] == 53
    assert s["uncounted_ops"] == {}
    assert "layers" not in s


def test_inspect_layers_json(light):
    r = run_cli("inspect", str(light("squeezenet")), "--json", "--layers")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert len(s["layers"]) == s["nodes"] == 105
    convs = [row for row in s["layers"] if row["op_type"] == "Conv"]
    assert sum(row["macs"] for row in convs) <= s["macs"]
    assert all(row["output_shapes"][0] is not None for row in convs)


def test_inspect_text(light):
    r = run_cli("inspect", str(light("squeezenet")), "--layers")
    assert r.returncode == 0, r.stderr
    assert "parameters  1,235,496" in r.stdout
    assert "MaxPool" in r.stdout


def test_bad_file_one_line_exit_2(tmp_path):
    bad = tmp_path / "page.onnx"
    bad.write_text("<html><body>404</body></html>")
    r = run_cli("inspect", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "HTML page" in lines[0]
    assert "Traceback" not in r.stderr


def test_debug_shows_traceback(tmp_path):
    bad = tmp_path / "empty.onnx"
    bad.write_bytes(b"")
    r = run_cli("--debug", "inspect", str(bad))
    assert r.returncode != 0
    assert "Traceback" in r.stderr and "empty" in r.stderr
