"""`modeldeck --self-test` run from source: the same checks `make installer-test` runs on the
frozen bundle (workers, two backends, a pass, a report, the window offscreen)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from app import selftest
from tests.conftest import REPO, SAMPLES


def test_self_test_passes_from_source_and_writes_the_report(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "--self-test", str(tmp_path),
                           "--seconds", "1", "--timeout", "120"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("PASS: 7 passed, 0 failed"), proc.stdout
    for name in ("profile onnxruntime", "profile openvino", "convert int8-dynamic",
                 "report json+html", "gui offscreen"):
        assert any(line.startswith(f"ok   {name}") for line in lines), (name, proc.stdout)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"].startswith("modeldeck.report/") and report["iterations"] > 0
    assert (tmp_path / "report.html").stat().st_size > 0
    assert (tmp_path / "digits_cnn_int8.onnx").stat().st_size > 0


def test_self_test_fails_loudly_on_a_missing_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(selftest, "SAMPLE_NAME", "no_such_model.onnx")
    assert selftest.main([str(tmp_path), "--no-gui", "--seconds", "0.2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL sample:" in out and out.strip().splitlines()[-1].startswith("FAIL:")


def test_resources_are_found_from_source():
    assert selftest.sample_dir() == SAMPLES
