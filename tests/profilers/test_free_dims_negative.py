"""A model that declares a free dimension as -1 (Paddle's exporter does, e.g. rapidocr's text
direction classifier: output [-1, 2]) runs on OpenVINO: -1 is not a fixed size its output
contradicts. Before, every OpenVINO flow refused it ("returned output ... [1, 2] where the model
declares [-1, 2]").

Real model: rapidocr==3.10.0, rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx (fetched once
by tests/real_models.py; skipped when the package index is unreachable).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest


@pytest.mark.slow
def test_paddle_classifier_with_a_minus_one_output_dim_runs_on_openvino():
    from profilers.backends import BackendOptions, get_backend
    from tests.real_models import wheel_member

    path = wheel_member("rapidocr", "3.10.0",
                        "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")
    dims = [d.dim_value for d in onnx.load(str(path), load_external_data=False)
            .graph.output[0].type.tensor_type.shape.dim]
    assert dims and dims[0] == -1, "the model must declare -1 for this test to mean it"
    cls = get_backend("openvino")
    ok, why = cls.available()
    if not ok:
        pytest.skip(why)
    b = cls()
    b.load(path, "onnx", "CPU", BackendOptions(threads=1))
    try:
        x = np.random.default_rng(0).random((2, 3, 48, 192), dtype=np.float32)
        out = b.infer({b.input_specs()[0].name: x})
    finally:
        b.close()
    assert np.asarray(out[0]).shape == (2, 2)
