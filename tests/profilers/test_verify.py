"""Fidelity numbers, classification metrics (checked against scikit-learn), the first divergent
node of two ONNX models, running models on a data set, and evaluation / calibration data."""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters.passes import ModelFile
from profilers.verify import (
    RANDOM_WARNING,
    VerifyError,
    classification_metrics,
    fidelity,
    first_divergent_node,
    load_calibration,
    load_eval_data,
    run_model,
)
from profilers.backends import InputSpec
from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX, SAMPLES
from tests.converters.onnx_builders import conv_model

DIGITS = [InputSpec("input", "float32", ("batch", 1, 8, 8))]
SAMPLE_ACCURACY = json.loads((SAMPLES / "digits_cnn.json").read_text())["test_accuracy"]


# --- fidelity --------------------------------------------------------------------------------

def test_fidelity_identical_is_json_safe():
    x = np.random.default_rng(0).standard_normal((16, 10)).astype(np.float32)
    f = fidelity(x, x.copy())
    assert f["cosine"] == pytest.approx(1.0) and f["cosine_mean"] == pytest.approx(1.0)
    assert f["max_abs_err"] == 0.0 and f["max_rel_err"] == 0.0
    assert f["sqnr_db"] is None  # infinite: no noise at all
    assert f["top1_agreement"] == 1.0
    json.dumps(f, allow_nan=False)


def test_fidelity_known_sqnr():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((200, 10))
    noise = rng.standard_normal(ref.shape)
    noise *= math.sqrt(np.sum(ref ** 2) / np.sum(noise ** 2) / 100.0)  # signal/noise = 100
    f = fidelity(ref, ref + noise)
    assert f["sqnr_db"] == pytest.approx(20.0, abs=1e-9)
    assert f["max_abs_err"] == pytest.approx(np.abs(noise).max())
    assert f["max_rel_err"] == pytest.approx(np.abs(noise).max() / np.abs(ref).max())
    assert 0.99 < f["cosine"] < 1.0 and 0.98 < f["cosine_mean"] < 1.0
    agree = np.mean(ref.argmax(1) == (ref + noise).argmax(1))
    assert f["top1_agreement"] == pytest.approx(agree) and 0.5 < agree < 1.0
    assert all(isinstance(v, float) for v in f.values())


def test_fidelity_top1_and_shapes():
    ref = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32)
    cand = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 2, 0]], dtype=np.float32)
    assert fidelity(ref, cand)["top1_agreement"] == 0.5
    assert fidelity(ref[:, :, None], cand[:, :, None])["top1_agreement"] is None  # not [N, C]
    with pytest.raises(VerifyError, match="shape"):
        fidelity(ref, cand[:3])


def test_fidelity_nan_is_json_safe():
    ref = np.ones((2, 3))
    f = fidelity(ref, np.full((2, 3), np.nan))
    json.dumps(f, allow_nan=False)
    assert f["cosine"] is None and f["sqnr_db"] is None


# --- classification metrics ------------------------------------------------------------------

def test_classification_metrics_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, size=300)
    logits = rng.standard_normal((300, 10))
    logits[:, 7] -= 10  # class 7 is never predicted: precision 0 by convention
    logits[labels == 3, 3] += 3  # class 3 mostly right
    got = classification_metrics(logits, labels)
    preds = logits.argmax(1)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(labels, preds))
    for avg in ("macro", "weighted"):
        p, r, f1, _ = metrics.precision_recall_fscore_support(labels, preds, average=avg,
                                                              zero_division=0)
        assert got[f"precision_{avg}"] == pytest.approx(p)
        assert got[f"recall_{avg}"] == pytest.approx(r)
        assert got[f"f1_{avg}"] == pytest.approx(f1)
    assert got["confusion_matrix"] == metrics.confusion_matrix(labels, preds,
                                                               labels=range(10)).tolist()
    json.dumps(got, allow_nan=False)


def test_classification_metrics_absent_class_matches_sklearn():
    """Labels use 3 of 5 classes: averages run over classes seen, the matrix covers all 5."""
    metrics = pytest.importorskip("sklearn.metrics")
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(5)[[0, 1, 1, 1, 4, 2]]
    got = classification_metrics(logits, labels)
    p, r, f1, _ = metrics.precision_recall_fscore_support(labels, logits.argmax(1),
                                                          average="macro", zero_division=0)
    assert (got["precision_macro"], got["recall_macro"], got["f1_macro"]) == pytest.approx(
        (p, r, f1))
    assert len(got["confusion_matrix"]) == 5 and got["confusion_matrix"][2][4] == 1


def test_classification_metrics_errors():
    with pytest.raises(VerifyError, match="labels"):
        classification_metrics(np.zeros((3, 2)), np.zeros(4))


# --- running models --------------------------------------------------------------------------

def test_sample_accuracy_through_run_model():
    data = load_eval_data("sample", DIGITS)
    logits = run_model(ModelFile(SAMPLE_ONNX, "onnx"), data.inputs, batch_size=100)[0]
    assert logits.shape == (450, 10)
    assert classification_metrics(logits, data.labels)["accuracy"] == pytest.approx(
        SAMPLE_ACCURACY, abs=1e-6)


def test_run_model_fixed_batch(tmp_path):
    """A model fixed to batch 4 runs 10 samples as 4 + 4 + 2 (padded, padding dropped)."""
    path = tmp_path / "fixed.onnx"
    onnx.save(conv_model(batch=4, hw=8), str(path))
    x = np.random.default_rng(3).random((10, 8, 8, 8), dtype=np.float32)
    out = run_model(ModelFile(path, "onnx"), {"x": x})[0]
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save(conv_model(hw=8), str(dynamic))
    ref = run_model(ModelFile(dynamic, "onnx"), {"x": x})[0]
    assert out.shape == ref.shape == (10, 16, 6, 6)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_run_model_matches_feeds_by_position():
    """The TorchScript sample calls its input "input" (modeldeck.json); the data says "x"."""
    x = np.load(SAMPLE_NPZ)["inputs"][:5]
    torch_out = run_model(ModelFile(SAMPLES / "digits_cnn.ts.pt", "torch"), {"x": x})[0]
    onnx_out = run_model(ModelFile(SAMPLE_ONNX, "onnx"), {"x": x})[0]
    np.testing.assert_allclose(torch_out, onnx_out, atol=1e-4)


# --- first divergent node ---------------------------------------------------------------------

def _scaled_copy(tmp_path, node_name: str, factor: float) -> ModelFile:
    model = onnx.load(str(SAMPLE_ONNX))
    node = next(n for n in model.graph.node if n.name == node_name)
    init = next(i for i in model.graph.initializer if i.name == node.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * factor, init.name))
    path = tmp_path / "scaled.onnx"
    onnx.save(model, str(path))
    return ModelFile(path, "onnx")


def test_first_divergent_node_names_the_changed_conv(tmp_path):
    feeds = {"input": np.load(SAMPLE_NPZ)["inputs"]}
    candidate = _scaled_copy(tmp_path, "/features/conv2/Conv", -1.0)
    found = first_divergent_node(ModelFile(SAMPLE_ONNX, "onnx"), candidate, feeds)
    assert found is not None
    assert found["reference_node"] == {"name": "/features/conv2/Conv", "op_type": "Conv"}
    assert found["candidate_node"] == {"name": "/features/conv2/Conv", "op_type": "Conv"}
    assert found["tensor"] == "/features/conv2/Conv_output_0" and found["cosine"] < 0.99
    json.dumps(found, allow_nan=False)


def test_first_divergent_node_none(tmp_path):
    feeds = {"input": np.load(SAMPLE_NPZ)["inputs"]}
    same = _scaled_copy(tmp_path, "/features/conv1/Conv", 1.0)
    assert first_divergent_node(ModelFile(SAMPLE_ONNX, "onnx"), same, feeds) is None
    other = tmp_path / "other.onnx"
    onnx.save(conv_model(), str(other))  # no tensor in common with the sample
    assert first_divergent_node(ModelFile(SAMPLE_ONNX, "onnx"), ModelFile(other, "onnx"),
                                feeds) is None


# --- evaluation data ---------------------------------------------------------------------------

def test_load_eval_data_sample():
    data = load_eval_data("sample", DIGITS)
    assert data.inputs["input"].shape == (450, 1, 8, 8) and data.count == 450
    assert data.inputs["input"].dtype == np.float32
    assert data.labels.dtype == np.int64 and data.labels.shape == (450,)


def test_load_eval_data_sample_for_nhwc_model():
    data = load_eval_data("sample", [InputSpec("img", "float32", (1, 8, 8, 1))])
    assert data.inputs["img"].shape == (450, 8, 8, 1)


def test_load_eval_data_npz_by_name(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, a=np.zeros((6, 3), np.float64), b=np.ones((6, 2), np.int32),
             labels=np.arange(6))
    specs = [InputSpec("a", "float32", ("N", 3)), InputSpec("b", "int64", ("N", 2))]
    data = load_eval_data(str(path), specs)
    assert data.inputs["a"].dtype == np.float32 and data.inputs["b"].dtype == np.int64
    assert list(data.labels) == list(range(6))


def test_load_eval_data_errors(tmp_path):
    with pytest.raises(VerifyError, match="no such file"):
        load_eval_data(str(tmp_path / "missing.npz"), DIGITS)
    with pytest.raises(VerifyError, match=r"expects \['N', 3, 8, 8\]"):
        load_eval_data("sample", [InputSpec("input", "float32", ("batch", 3, 8, 8))])
    path = tmp_path / "bad.npz"
    np.savez(path, other=np.zeros((2, 1, 8, 8)))
    with pytest.raises(VerifyError, match="no array named 'input'"):
        load_eval_data(str(path), DIGITS)
    np.savez(path, inputs=np.zeros((2, 1, 8, 8)), labels=np.zeros(3))
    with pytest.raises(VerifyError, match="3 labels for 2 samples"):
        load_eval_data(str(path), DIGITS)


# --- calibration data ----------------------------------------------------------------------------

def test_calibration_sample_and_npz(tmp_path):
    calib = load_calibration("sample", DIGITS)
    assert calib.source == "sample" and calib.count == 300 and calib.warning is None
    assert next(calib.batches(1))["input"].shape == (1, 1, 8, 8)

    path = tmp_path / "calib.npz"
    np.savez(path, input=np.arange(20 * 64, dtype=np.float32).reshape(20, 1, 8, 8))
    a = load_calibration(str(path), DIGITS, limit=5, seed=1)
    b = load_calibration(str(path), DIGITS, limit=5, seed=1)
    assert a.count == 5 and a.source == str(path)
    np.testing.assert_array_equal(a.arrays["input"], b.arrays["input"])  # seeded
    assert load_calibration(str(path), DIGITS, limit=50).count == 20


def test_calibration_image_folder(tmp_path):
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(4)
    for i, size in enumerate([(12, 10), (8, 8), (30, 20)]):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        image.fromarray(pixels).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    gray = load_calibration(str(tmp_path), DIGITS)
    x = gray.arrays["input"]
    assert x.shape == (3, 1, 8, 8) and x.dtype == np.float32 and gray.source == str(tmp_path)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0
    rgb = load_calibration(str(tmp_path), [InputSpec("img", "float32", (1, 16, 16, 3))],
                           limit=2)
    assert rgb.arrays["img"].shape == (2, 16, 16, 3)


def test_calibration_errors(tmp_path):
    with pytest.raises(VerifyError, match="no such file or folder"):
        load_calibration(str(tmp_path / "nope"), DIGITS)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VerifyError, match="holds no images"):
        load_calibration(str(empty), DIGITS)
    with pytest.raises(VerifyError, match="not an image input"):
        load_calibration(str(empty), [InputSpec("t", "int64", ("N", 16))])


def test_calibration_random_warns():
    calib = load_calibration("random", DIGITS, limit=10)
    assert calib.source == "random" and calib.warning == RANDOM_WARNING
    x = calib.arrays["input"]
    assert x.shape == (10, 1, 8, 8) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() < 1.0
    assert next(calib.batches(1))["input"].shape == (1, 1, 8, 8)
    with pytest.raises(VerifyError, match="dynamic dims"):
        load_calibration("random", [InputSpec("x", "float32", ("N", 3, "h", "w"))])


@pytest.fixture(autouse=True, scope="module")
def _consent_to_run_models():
    """These tests run PyTorch programs in-process: running one needs the user's consent."""
    from converters.formats import consent

    with consent(True):
        yield

