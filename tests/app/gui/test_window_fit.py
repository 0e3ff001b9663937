"""The window for real work (issue 11): backend from the model's format, layout that fits the
screen, variants that last, charts that do not mislead, and the small traps."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import SAMPLE_ONNX, SAMPLES


def _devices(window, qtbot):
    qtbot.waitUntil(lambda: window.devices_job is None, timeout=120_000)


def _open(window, qtbot, path, trust: bool = False):
    if trust:
        window.trusted_files.add(os.path.abspath(path))
    with qtbot.waitSignal(window.sig_model_opened, timeout=120_000):
        window.open_model(str(path))


# --- backend from the model's format -------------------------------------------------------
@pytest.mark.slow
def test_pt2_opens_with_torch_and_onnx_goes_back(window, qtbot, tmp_path):
    _devices(window, qtbot)
    names = [window.backend.backend_combo.itemData(i)
             for i in range(window.backend.backend_combo.count())]
    if "torch" not in names:
        pytest.skip(f"no torch backend here ({names})")
    assert window.backend.values()["backend"] == "onnxruntime"
    _open(window, qtbot, SAMPLES / "digits_cnn.pt2", trust=True)
    assert window.backend.values()["backend"] == "torch"
    assert window.backend.format_note.isHidden()
    _open(window, qtbot, SAMPLE_ONNX)  # torch cannot run ONNX: back to the default
    assert window.backend.values()["backend"] == "onnxruntime"
    # a TorchScript file named .jit: found by content, runs on torch
    jit = tmp_path / "digits.jit"
    shutil.copy(SAMPLES / "digits_cnn.ts.pt", jit)
    _open(window, qtbot, jit, trust=True)
    assert window.backend.values()["backend"] == "torch"


def test_a_user_choice_that_runs_the_format_is_kept(window, qtbot):
    _devices(window, qtbot)
    combo = window.backend.backend_combo
    i = combo.findData("openvino")
    if i < 0 or not combo.model().item(i).isEnabled():
        pytest.skip("no openvino backend here")
    combo.setCurrentIndex(i)  # the user prefers OpenVINO for ONNX models
    _open(window, qtbot, SAMPLE_ONNX)
    assert window.backend.values()["backend"] == "openvino"


def test_compare_disabled_with_why_when_the_backend_cannot_run_the_variants(window, qtbot):
    from app.gui.panels.variants import Variant

    _devices(window, qtbot)
    _open(window, qtbot, SAMPLE_ONNX)
    panel = window.variants
    ir = Variant(name="→ openvino", path=str(SAMPLE_ONNX.with_suffix(".xml")),
                 format="openvino")
    panel._append(ir)
    combo = window.backend.backend_combo
    combo.setCurrentIndex(combo.findData("onnxruntime"))
    assert not panel.compare_button.isEnabled()
    tip = panel.compare_button.toolTip()
    assert "onnxruntime cannot run openvino" in tip
    assert window.compare([v.path for v in panel.variants]) is None
    assert window.errors[-1]["title"] == "Cannot compare"
    i = combo.findData("openvino")
    if i >= 0 and combo.model().item(i).isEnabled():
        combo.setCurrentIndex(i)  # OpenVINO runs both ONNX and IR
        assert panel.compare_button.isEnabled()
