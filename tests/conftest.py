"""Shared fixtures: the onnx package's Model Zoo graphs, the bundled sample, model builders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "samples"
SAMPLE_ONNX = SAMPLES / "digits_cnn.onnx"
SAMPLE_NPZ = SAMPLES / "digits_test.npz"


def light_model(name: str) -> Path:
    """Path of one of the onnx package's light Model Zoo graphs (e.g. "resnet50")."""
    import onnx

    path = Path(onnx.__file__).parent / "backend/test/data/light" / f"light_{name}.onnx"
    if not path.exists():
        pytest.fail(f"{path} missing: the onnx package should ship it")
    return path


@pytest.fixture
def light():
    return light_model
