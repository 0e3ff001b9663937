"""Shared by the simplify / fp16 / int8 / weight-only pass tests: run a pass the way the pipeline
does (never touching the source), run models, and the sample's held-out split."""
from __future__ import annotations

import hashlib
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from converters.passes import (
    CalibrationData, ModelFile, PassContext, PassResult, get_pass, make_options,
)
from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX
from tests.converters.onnx_builders import make, tensor_in, weight

CALIB_N = 300  # the first 300 samples calibrate, the other 150 evaluate


def sha256(model: ModelFile) -> str:
    h = hashlib.sha256()
    for p in model.files():
        h.update(p.read_bytes())
    return h.hexdigest()


def run_pass(name: str, model: ModelFile, work: Path, calibration: CalibrationData | None = None,
             ctx: PassContext | None = None, **options) -> PassResult:
    """Run a pass from string options (as the CLI gives them); the source must stay untouched."""
    cls = get_pass(name)
    assert model.format in cls.accepts
    opts = make_options(cls, {k: str(v) if not isinstance(v, (list, tuple)) else v
                              for k, v in options.items()})
    before = sha256(model)
    ctx = ctx or PassContext(work_dir=work, calibration=calibration)
    result = cls().run(model, opts, ctx)
    assert sha256(model) == before, "the pass modified its source"
    if result.changed:
        assert result.output.path != model.path
        assert result.output.path.parent == work
    return result


def sample_model() -> ModelFile:
    return ModelFile(SAMPLE_ONNX, "onnx")


def sample_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration inputs, evaluation inputs, evaluation labels)."""
    data = np.load(SAMPLE_NPZ)
    x, y = data["inputs"], data["labels"]
    return x[:CALIB_N], x[CALIB_N:], y[CALIB_N:]


def sample_calibration() -> CalibrationData:
    return CalibrationData(arrays={"input": sample_split()[0]}, source="sample")


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def ov_compile(path: Path, threads: int = 0):
    import openvino as ov

    # f32: the comparison is of weights, not of the bf16 some CPUs pick by themselves
    # and no dynamic quantization of activations, which AVX-512 CPUs apply to compressed weights
    config = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    return ov.Core().compile_model(str(path), "CPU", config)


def ov_run(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    result = ov_compile(path)(feeds)
    return [result[i] for i in range(len(result))]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest per-row cosine similarity."""
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def to_openvino(onnx_path: Path, work: Path, name: str) -> ModelFile:
    """The ONNX model as an FP32 OpenVINO IR (weights left in float32)."""
    import openvino as ov

    work.mkdir(parents=True, exist_ok=True)
    xml = work / f"{name}.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return ModelFile(xml, "openvino")


def median_latencies(a, b, feeds, iterations: int = 50, warmup: int = 10) -> tuple[float, float]:
    """Median seconds per call of two compiled models, calls interleaved (drift hits both)."""
    for _ in range(warmup):
        a(feeds), b(feeds)
    ta, tb = [], []
    for _ in range(iterations):
        t = time.perf_counter()
        a(feeds)
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b(feeds)
        tb.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def matmul_model(width: int = 256, path: Path | None = None) -> onnx.ModelProto:
    """x[batch, width] -> MatMul -> Relu -> MatMul: MatMul-heavy, K divisible by 128."""
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="/fc1/MatMul"),
             helper.make_node("Relu", ["h"], ["r"], name="/relu/Relu"),
             helper.make_node("MatMul", ["r", "W2"], ["y"], name="/fc2/MatMul")]
    w1, w2 = weight("W1", [width, width], seed=1), weight("W2", [width, width], seed=2)
    for w in (w1, w2):  # He-like scale keeps activations O(1)
        arr = onnx.numpy_helper.to_array(w) / np.sqrt(width)
        w.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), w.name))
    model = make(nodes, [tensor_in("x", ["batch", width])], [tensor_in("y", ["batch", width])],
                 [w1, w2])
    if path is not None:
        onnx.save(model, str(path))
    return model


def initializer_types(path: Path) -> set[int]:
    return {t.data_type for t in onnx.load(str(path)).graph.initializer}


FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
