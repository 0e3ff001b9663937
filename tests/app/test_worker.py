"""The worker process and its Qt-free client: results, streaming, and every failure mode
(bad file, bad shapes, refused model, cancel, crash, hang) as a real subprocess."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from app.jobs.client import JobClient
from converters.graph import ModelGraph
from profilers.runner import RunConfig
from tests.conftest import SAMPLE_ONNX


def profile_spec(**kw) -> dict:
    cfg = RunConfig(**{"model": str(SAMPLE_ONNX), "iterations": 50, "warmup": 2, **kw})
    return {"job": "profile", "config": cfg.to_dict()}


def test_profile_job_streams_and_returns_the_report():
    events = []
    outcome = JobClient(profile_spec(), on_event=events.append, timeout_s=120).run()
    assert outcome.status == "ok", (outcome.error, outcome.stderr_tail)
    report = outcome.result
    assert report["iterations"] == 50
    assert [v for _, v in outcome.samples["latency_ms"]] == \
        report["timelines"]["latency_ms"]["values"]
    assert events[-1]["event"] == "result"
    assert outcome.returncode == 0


def test_inspect_job_returns_a_graph():
    outcome = JobClient({"job": "inspect", "model": str(SAMPLE_ONNX), "graph": True},
                        timeout_s=60).run()
    assert outcome.status == "ok", outcome.error
    graph = ModelGraph.from_dict(outcome.result["graph"])
    assert graph.node_count() == outcome.result["nodes"] == 14


def test_bad_file_is_bad_input(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    outcome = JobClient(profile_spec(model=str(bad)), timeout_s=60).run()
    assert outcome.status == "failed" and outcome.error_kind == "bad_input"
    assert "Git LFS pointer" in outcome.error
    assert outcome.returncode == 2


def test_bad_shapes_are_bad_input():
    outcome = JobClient(profile_spec(shapes={"input": [1, 3, 8, 8]}), timeout_s=60).run()
    assert outcome.error_kind == "bad_input" and "dim 1 is fixed to 1" in outcome.error


def test_model_openvino_refuses_names_the_op(tmp_path):
    import onnx

    from tests.converters.onnx_builders import custom_domain_model

    p = tmp_path / "custom.onnx"
    onnx.save(custom_domain_model(), p)
    outcome = JobClient(profile_spec(model=str(p), backend="openvino"), timeout_s=60).run()
    assert outcome.error_kind == "bad_input"
    assert "MySecretOp" in outcome.error


def _start_and_wait_for_measure(spec, timeout_s=None):
    measuring = threading.Event()

    def on_event(e):
        if e.get("event") == "samples" and "latency_ms" in e["series"]:
            measuring.set()

    client = JobClient(spec, on_event=on_event, timeout_s=timeout_s).start()
    return client, measuring


def _wait_then(client, measuring, action):
    result = {}

    def waiter():
        result["outcome"] = client.wait()

    t = threading.Thread(target=waiter)
    t.start()
    assert measuring.wait(60), "the worker never started measuring"
    action(client)
    t.join(60)
    assert not t.is_alive()
    return result["outcome"]


def test_cancel_stops_the_job():
    client, measuring = _start_and_wait_for_measure(profile_spec(iterations=None, duration_s=60))
    outcome = _wait_then(client, measuring, lambda c: c.cancel())
    assert outcome.status == "cancelled"
    assert outcome.samples["latency_ms"]  # what arrived before the cancel is kept


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_crashed_worker_is_a_failed_job_with_samples_kept(sig):
    client, measuring = _start_and_wait_for_measure(profile_spec(iterations=None, duration_s=60))
    outcome = _wait_then(client, measuring, lambda c: os.kill(c.proc.pid, sig))
    assert outcome.status == "failed" and outcome.error_kind == "crashed"
    assert signal.Signals(sig).name in outcome.error
    assert outcome.samples["latency_ms"]
    if sig == signal.SIGSEGV:  # faulthandler wrote where it died
        assert "Fatal Python error" in outcome.stderr_tail


def test_hung_worker_times_out():
    outcome = JobClient(profile_spec(iterations=None, duration_s=60), timeout_s=4).run()
    assert outcome.status == "failed" and outcome.error_kind == "timeout"
    assert "4 s" in outcome.error


def test_unknown_job_is_reported():
    outcome = JobClient({"job": "nope"}, timeout_s=30).run()
    assert outcome.status == "failed" and "bad job spec" in outcome.error
