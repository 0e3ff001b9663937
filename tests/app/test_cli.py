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


# --- profile / devices / report ---------------------------------------------------------------

def test_profile_json_html_csv(tmp_path):
    from tests.conftest import SAMPLE_ONNX

    out, html, csv_dir = tmp_path / "run.json", tmp_path / "run.html", tmp_path / "csv"
    r = run_cli("profile", str(SAMPLE_ONNX), "--backend", "onnxruntime", "--threads", "1",
                "--iterations", "100", "--json", str(out), "--html", str(html),
                "--csv", str(csv_dir))
    assert r.returncode == 0, r.stderr
    s = json.loads(out.read_text())
    for key in ("p50", "p90", "p95", "p99", "mean", "min", "max", "std"):
        assert s["latency_ms"][key] > 0
    assert s["throughput_ips"] > 0 and s["first_inference_ms"] > 0 and s["load_ms"] > 0
    assert s["memory"]["rss_peak_mb"] > 0
    assert s["power"]["source"] and "energy_per_inference_j" in s["power"]
    assert (s["backend"], s["device"], s["threads"]) == ("onnxruntime", "CPU", 1)
    assert f"p50 {s['latency_ms']['p50']:.3f}" in r.stdout
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    assert (csv_dir / "iterations.csv").exists()
    # `report` regenerates the HTML from the JSON
    html2 = tmp_path / "again.html"
    r = run_cli("report", str(out), "--html", str(html2))
    assert r.returncode == 0, r.stderr
    assert html2.stat().st_size > 1000


def test_profile_broken_budget_exits_3(tmp_path):
    from tests.conftest import SAMPLE_ONNX

    r = run_cli("profile", str(SAMPLE_ONNX), "--iterations", "30", "--budget", "p99=1us",
                "--json", "-", "--quiet")
    assert r.returncode == 3, r.stderr
    s = json.loads(r.stdout)
    assert s["budgets"][0]["ok"] is False


def test_profile_bad_shape_exits_2():
    from tests.conftest import SAMPLE_ONNX

    r = run_cli("profile", str(SAMPLE_ONNX), "--shape", "input=1x2x8x8", "--iterations", "5")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "dim 1 is fixed to 1" in r.stderr


def test_devices_lists_cpu():
    r = run_cli("devices", "--json")
    assert r.returncode == 0, r.stderr
    rows = {b["backend"]: b for b in json.loads(r.stdout)}
    for name in ("onnxruntime", "openvino", "torch"):
        assert rows[name]["available"]
        assert any(d["name"] == "CPU" and d["available"] for d in rows[name]["devices"])


def test_report_rejects_non_reports(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"hello": 1}')
    r = run_cli("report", str(p), "--html", str(tmp_path / "o.html"))
    assert r.returncode == 2 and "report" in r.stderr.lower()


def test_limits_must_be_positive(light):
    for flag, value in (("--timeout", "0"), ("--timeout", "inf"), ("--memory-limit", "-5"),
                        ("--memory-limit", "lots")):
        r = run_cli("inspect", str(light("squeezenet")), flag, value)
        assert r.returncode == 2 and flag in r.stderr, (flag, value, r.stderr)
        assert "Traceback" not in r.stderr


def test_inspect_within_a_tiny_time_limit_says_so(light):
    r = run_cli("inspect", str(light("densenet121")), "--timeout", "0.3")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "modeldeck: error: the job did not finish within 0.3 s and was stopped (allow more "
        "time with --timeout S)"]
