"""The runner in process, on the trained sample, with each backend installed here."""
from __future__ import annotations

import numpy as np
import pytest

from converters.errors import ModelDeckError
from profilers.backends import BackendError, BackendOptions
from profilers.runner import Cancelled, RunConfig, run_profile
from tests.conftest import SAMPLE_NPZ, SAMPLES, SAMPLE_ONNX


def _run(**kw):
    events = []
    cfg = RunConfig(**{"model": str(SAMPLE_ONNX), "iterations": 60, "warmup": 3,
                       "options": BackendOptions(threads=1), **kw})
    return run_profile(cfg, events.append), events


@pytest.mark.parametrize("backend,model", [
    ("onnxruntime", "digits_cnn.onnx"), ("openvino", "digits_cnn.onnx"),
    ("torch", "digits_cnn.pt2"), ("torch", "digits_cnn.ts.pt"),
])
def test_profile_each_backend_on_the_sample(backend, model):
    report, events = _run(backend=backend, model=str(SAMPLES / model))
    assert report["status"] == "ok" and report["backend"] == backend
    lat = report["latency_ms"]
    assert report["iterations"] == lat["count"] == 60
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert report["first_inference_ms"] > 0 and report["load_ms"] > 0
    assert report["memory"]["rss_peak_mb"] > 50
    assert report["power"]["source"] in ("rapl", "estimate")
    # the timeline holds exactly the measured latencies, and its median is the reported p50
    values = np.asarray(report["timelines"]["latency_ms"]["values"])
    assert values.size == 60 and np.median(values) == pytest.approx(lat["p50"])
    stages = [e["stage"] for e in events if e["event"] == "stage"]
    assert stages == ["inspect", "load", "first", "warmup", "measure"]
    streamed = [p for e in events if e["event"] == "samples" for p in e["series"].get("latency_ms", [])]
    assert [v for _, v in streamed] == list(values)


def test_duration_bound_and_samplers():
    report, _ = _run(iterations=None, duration_s=0.6, sample_period_s=0.02)
    assert 0.55 < report["measure_s"] < 1.5
    rss = report["timelines"]["rss_mb"]
    assert len(rss["values"]) >= 10 and rss["source"] == "psutil"
    assert report["sampling"]["ticks"] >= 10
    assert 0 <= report["sampling"]["busy_fraction"] < 0.2


def test_layers_are_a_separate_run_mapped_to_nodes():
    report, events = _run(layers=True, layer_iterations=5)
    layers = report["layers"]
    assert layers and any(e["event"] == "layer" for e in events)
    assert report["iterations"] == 60  # the profiled iterations are not in the clean loop
    convs = [row for row in layers if row["op_type"] == "Conv"]
    assert len(convs) == 3 and all(row["node_id"] for row in convs)


def test_budgets_verdicts():
    report, events = _run(budgets=("p99=0.000001ms", "rss=100GB"))
    verdicts = {b["budget"]: b["ok"] for b in report["budgets"]}
    assert verdicts == {"p99=0.000001ms": False, "rss=100GB": True}
    assert any(e["event"] == "budget" and not e["ok"] for e in events)  # seen live too


def test_real_inputs_from_npz():
    report, _ = _run(inputs_npz=str(SAMPLE_NPZ), shapes={"input": [8, 1, 8, 8]})
    assert report["inputs"] == {"input": {"shape": [8, 1, 8, 8], "dtype": "float32"}}


def test_cancel_stops_between_iterations():
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        run_profile(RunConfig(model=str(SAMPLE_ONNX), duration_s=30), lambda e: None, cancelled)


def test_wrong_backend_for_format_is_a_clear_error():
    with pytest.raises(BackendError, match="does not run onnx models"):
        _run(backend="torch")


def test_bad_config_rejected_before_work():
    with pytest.raises(ModelDeckError):
        RunConfig(model="x.onnx", iterations=0)
    with pytest.raises(ModelDeckError, match="--budget"):
        RunConfig(model="x.onnx", budgets=("p99=fast",))


@pytest.fixture(autouse=True, scope="module")
def _consent_to_run_models():
    """These tests run PyTorch programs in-process: running one needs the user's consent."""
    from converters.formats import consent

    with consent(True):
        yield



def test_gpu_run_reports_the_boards_measured_power():
    """On an H200 the report said 'estimate, 10 W' (the host CPU) while NVML measured the board
    at 650 W: a GPU run's power is the board's, the host's estimate named beside it."""
    from profilers.runner import headline_power

    host = {"mean": 10.0, "max": 11.0, "source": "estimate", "note": "estimated"}
    gpu = {"mean": 649.5, "max": 702.3, "source": "nvml", "note": "GPU board power from NVML"}
    p = headline_power({"power_w": host, "gpu_power_w": gpu})
    assert p["source"] == "nvml" and p["mean"] == 649.5
    assert "host CPU 10.0 W (estimate)" in p["note"]
    assert headline_power({"power_w": host}) is host
    assert headline_power({}) is None
