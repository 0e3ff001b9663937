"""The second sample (digits_vgg): the shipped files agree with each other and with their
metadata, its calibration images are not test images, and it is heavy enough to measure."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"
META = json.loads((SAMPLES / "digits_vgg.json").read_text())


def test_files_and_split():
    test = np.load(SAMPLES / "digits_vgg_test.npz")
    calib = np.load(SAMPLES / "digits_vgg_calib.npz")
    assert test["inputs"].shape == (META["num_test_samples"], 1, 32, 32)
    assert test["inputs"].dtype == np.float32 and test["labels"].dtype == np.int64
    assert sorted(set(test["labels"].tolist())) == list(range(10))
    assert calib["inputs"].shape[1:] == (1, 32, 32) and len(calib["inputs"]) == 256
    # calibration comes from the training split: no test image among them
    test_rows = {r.tobytes() for r in test["inputs"]}
    assert not any(r.tobytes() in test_rows for r in calib["inputs"])


def test_onnx_accuracy_matches_metadata_and_counts_its_macs():
    import onnxruntime as ort

    from app.optimize.probe import conv_profile
    from converters.formats import open_model

    test = np.load(SAMPLES / "digits_vgg_test.npz")
    sess = ort.InferenceSession(str(SAMPLES / "digits_vgg.onnx"),
                                providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": test["inputs"]})[0]
    assert float(np.mean(logits.argmax(1) == test["labels"])) == pytest.approx(
        META["test_accuracy"])
    profile = conv_profile(open_model(SAMPLES / "digits_vgg.onnx"))
    assert profile["macs"] == pytest.approx(META["macs"], rel=0.01)  # ~0.45 GMAC
    assert profile["macs"] > 4e8 and profile["heavy_share"] > 0.99


@pytest.mark.slow
def test_pt2_twin_agrees_with_onnx():
    import onnxruntime as ort
    import torch

    x = np.load(SAMPLES / "digits_vgg_test.npz")["inputs"][:32]
    sess = ort.InferenceSession(str(SAMPLES / "digits_vgg.onnx"),
                                providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0]
    program = torch.export.load(str(SAMPLES / "digits_vgg.pt2"))
    with torch.no_grad():
        out = program.module()(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(out - ref)) < 1e-3
