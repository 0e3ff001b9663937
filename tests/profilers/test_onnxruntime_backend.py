"""ONNX Runtime backend on real models: the onnx package's light Model Zoo graphs and tiny ones."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from converters.formats import open_model
from profilers.backends import BackendError, BackendOptions, get_backend
from tests.conftest import light_model
from tests.converters.onnx_builders import conv_model, make, tensor_in


def _cuda_in_ort() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture
def backend():
    b = get_backend("onnxruntime")()
    yield b
    b.close()


def _feed(backend, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.random([d if isinstance(d, int) else batch for d in s.shape],
                               dtype=np.float32).astype(s.dtype)
            for s in backend.input_specs()}


def _save(model: onnx.ModelProto, tmp_path, name: str = "m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_available_and_devices():
    cls = get_backend("onnxruntime")
    ok, version = cls.available()
    assert ok and version[0].isdigit()
    devices = {d.name: d for d in cls.devices()}
    assert devices["CPU"].available
    for gpu in ("CUDA", "TensorRT"):  # always listed, with a reason when this build lacks it
        assert gpu in devices
        assert devices[gpu].available or "onnxruntime-gpu" in devices[gpu].reason


def test_conv_matches_reference_with_symbolic_batch(backend, tmp_path):
    from onnx.reference import ReferenceEvaluator

    model = conv_model()  # x: ["batch", 8, 32, 32]
    path = _save(model, tmp_path)
    info = backend.load(path, "onnx", "CPU", BackendOptions(threads=2, graph_optimization="basic"))
    assert info.load_ms > 0
    assert info.details["threads"] == 2
    assert info.details["providers"] == ["CPUExecutionProvider"]
    assert info.details["graph_optimization"] == "basic"
    (spec,) = backend.input_specs()
    assert (spec.name, spec.dtype, spec.shape) == ("x", "float32", ("batch", 8, 32, 32))
    feed = _feed(backend, batch=3)
    (y,) = backend.infer(feed)
    assert y.shape == (3, 16, 30, 30)
    (expected,) = ReferenceEvaluator(model).run(None, feed)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_squeezenet_runs_and_matches_reference_output():
    from onnx import numpy_helper

    path = light_model("squeezenet")
    b = get_backend("onnxruntime")()
    try:
        b.load(path, "onnx", "CPU", BackendOptions())
        (spec,) = b.input_specs()
        assert spec.shape == (1, 3, 224, 224)
        (y,) = b.infer(_feed(b))
    finally:
        b.close()
    # Light models have all-zero weights, so the output does not depend on the input.
    expected = numpy_helper.to_array(
        onnx.load_tensor(str(path.with_name("light_squeezenet_output_0.pb"))))
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_layer_profile_maps_squeezenet_nodes():
    path = light_model("squeezenet")
    graph = open_model(path)
    ids = {item.node.name: item.node.id for item in graph.walk()}
    b = get_backend("onnxruntime")()
    try:
        b.load(path, "onnx", "CPU", BackendOptions(threads=1, profile_layers=True))
        feed = _feed(b)
        for _ in range(3):
            b.infer(feed)
        layers = b.layer_profile(ids)
    finally:
        b.close()
    assert layers
    assert [lt.time_ms for lt in layers] == sorted((lt.time_ms for lt in layers), reverse=True)
    assert all(lt.time_ms >= 0 and lt.device == "CPU" and not lt.fallback for lt in layers)
    assert {lt.precision for lt in layers} == {"float32"}
    mapped = {lt.node_id for lt in layers if lt.node_id is not None}
    model_convs = {item.node.id for item in graph.walk() if item.node.op_type == "Conv"}
    # "all" optimisation renames convs to "<output>_nchwc" after fusing their Relu; they are
    # traced back to the Conv nodes.
    assert len(mapped & model_convs) >= 0.9 * len(model_convs)
    for lt in layers:
        if lt.node_id is not None and lt.op_type == "Conv":
            assert graph.find(lt.node_id).op_type == "Conv"
    # A node's time is per inference: the sum stays in the range of one inference.
    assert 0 < sum(lt.time_ms for lt in layers) < 5_000


def test_layer_profile_exact_names_without_optimisation(backend, tmp_path):
    path = _save(conv_model(), tmp_path)
    backend.load(path, "onnx", "CPU",
                 BackendOptions(graph_optimization="disable", profile_layers=True))
    feed = _feed(backend, batch=2)
    for _ in range(2):
        backend.infer(feed)
    (layer,) = backend.layer_profile({"/block/conv/Conv": "n0"})
    assert (layer.name, layer.op_type, layer.node_id) == ("/block/conv/Conv", "Conv", "n0")
    assert layer.exec_type == "CPUExecutionProvider" and layer.time_ms > 0
    assert backend.layer_profile({"/block/conv/Conv": "n0"}) == [layer]  # cached, ORT ends once


def test_layer_profile_needs_profiling(backend, tmp_path):
    backend.load(_save(conv_model(), tmp_path), "onnx", "CPU", BackendOptions())
    with pytest.raises(BackendError, match="profile_layers"):
        backend.layer_profile({})


def test_custom_domain_op_is_refused_with_its_name(backend, tmp_path):
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example.ops")
    model = make([node], [tensor_in("x", [2, 3])], [tensor_in("y", [2, 3])],
                 extra_opsets=[("com.example.ops", 1)])
    with pytest.raises(BackendError) as err:
        backend.load(_save(model, tmp_path), "onnx", "CPU", BackendOptions())
    msg = str(err.value)
    assert "FancyOp" in msg and "m.onnx" in msg and "[ONNXRuntimeError]" not in msg
    assert "\n" not in msg


def test_invalid_graph_is_refused(backend, tmp_path):
    node = helper.make_node("Relu", ["missing"], ["y"], name="r")
    model = make([node], [tensor_in("x", [2, 3])], [tensor_in("y", [2, 3])])
    with pytest.raises(BackendError, match="missing"):
        backend.load(_save(model, tmp_path), "onnx", "CPU", BackendOptions())


@pytest.mark.skipif(_cuda_in_ort(), reason="this onnxruntime has CUDA")
def test_cuda_request_lists_available_devices(backend, tmp_path):
    path = _save(conv_model(), tmp_path)
    with pytest.raises(BackendError, match=r"CUDA.*onnxruntime-gpu.*available: CPU"):
        backend.load(path, "onnx", "CUDA", BackendOptions())


def test_unknown_device_is_refused(backend, tmp_path):
    with pytest.raises(BackendError, match="'NPU'.*available: CPU"):
        backend.load(_save(conv_model(), tmp_path), "onnx", "NPU", BackendOptions())


@pytest.mark.skipif(not _cuda_in_ort(), reason="needs onnxruntime-gpu and a CUDA GPU")
def test_cuda_runs_and_profiles(tmp_path):
    path = _save(conv_model(), tmp_path)
    b = get_backend("onnxruntime")()
    try:
        info = b.load(path, "onnx", "CUDA", BackendOptions(profile_layers=True))
        assert info.details["providers"][0] == "CUDAExecutionProvider"
        feed = _feed(b, batch=2)
        (y,) = b.infer(feed)
        assert y.shape == (2, 16, 30, 30)
        layers = b.layer_profile({"/block/conv/Conv": "n0"})
    finally:
        b.close()
    assert any(lt.device == "CUDA" for lt in layers)


def test_input_specs_keep_symbolic_and_unknown_dims(backend, tmp_path):
    node = helper.make_node("Identity", ["ids"], ["out"], name="id")
    model = make([node], [tensor_in("ids", ["n", None], TensorProto.INT64)],
                 [tensor_in("out", None, TensorProto.INT64)])
    backend.load(_save(model, tmp_path), "onnx", "CPU", BackendOptions())
    (spec,) = backend.input_specs()
    assert (spec.dtype, spec.shape) == ("int64", ("n", None))


def test_profile_times_are_per_run_without_the_warmup_run():
    """The arithmetic on a hand-written trace in ORT's format: first run left out, mean of rest."""
    from profilers.backends.onnxruntime_backend import _layer_times

    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(name, ts, dur, provider="CPUExecutionProvider"):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": "Conv", "provider": provider,
                         "input_type_shape": [{"float16": [1, 3]}]}}

    events = [run(0, 100), node("a", 10, 90),          # warm-up run: left out
              run(200, 50), node("a", 210, 20), node("b", 230, 4, "CUDAExecutionProvider"),
              run(300, 50), node("a", 310, 40), node("b", 330, 6, "CUDAExecutionProvider")]
    a, b = _layer_times(events, "CUDAExecutionProvider", {"a": "n0"}, None)
    assert (a.name, a.node_id, a.time_ms, a.device, a.fallback) == ("a", "n0", 0.03, "CPU", True)
    assert (b.name, b.node_id, b.time_ms, b.device, b.fallback) == ("b", None, 0.005, "CUDA", False)
    assert a.precision == "float16"
