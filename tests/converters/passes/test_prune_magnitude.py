"""prune-magnitude on the bundled sample: exact sparsity, measured compressed size, accuracy
reported, the source untouched, and the same pruning for ONNX and torch.export files."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from converters.formats import sha256_of
from converters.passes import (
    Cancelled, ModelFile, PassContext, PassError, get_pass, make_options,
)
from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX, SAMPLES

SAMPLE_PT2 = SAMPLES / "digits_cnn.pt2"
PASS = get_pass("prune-magnitude")


def run(path, fmt, tmp_path, **options):
    opts = make_options(PASS, {k: str(v) for k, v in options.items()})
    return PASS().run(ModelFile(path, fmt), opts, PassContext(work_dir=tmp_path))


def onnx_accuracy(path) -> float:
    import onnxruntime as ort

    data = np.load(SAMPLE_NPZ)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": data["inputs"]})[0]
    return float(np.mean(logits.argmax(1) == data["labels"]))


def eligible_weights(path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {name: inits[name] for node in model.graph.node if node.op_type in ("Conv", "Gemm")
            for name in node.input[1:2] if inits[name].size >= 1000}


@pytest.fixture(scope="module")
def onnx_half(tmp_path_factory):
    work = tmp_path_factory.mktemp("pm")
    source_sha = sha256_of([SAMPLE_ONNX])
    result = run(SAMPLE_ONNX, "onnx", work, amount=0.5)
    assert sha256_of([SAMPLE_ONNX]) == source_sha
    return result


def test_global_sparsity_is_the_amount(onnx_half):
    weights = eligible_weights(onnx_half.output.path)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.size for w in weights.values())
    assert abs(zeros / total - 0.5) <= 0.01
    assert onnx_half.details["eligible_sparsity"] == pytest.approx(zeros / total, abs=1e-6)
    assert onnx_half.details["zero_count"] == zeros
    # global: the big fc1 takes more than its share, small layers less
    layers = onnx_half.details["layers"]
    assert layers["classifier.fc1.weight"]["sparsity"] > 0.5 > layers["features.conv2.weight"][
        "sparsity"]


def test_biases_and_norms_untouched(onnx_half):
    import onnx
    from onnx import numpy_helper

    before = {t.name: numpy_helper.to_array(t)
              for t in onnx.load(str(SAMPLE_ONNX)).graph.initializer}
    after = {t.name: numpy_helper.to_array(t)
             for t in onnx.load(str(onnx_half.output.path)).graph.initializer}
    for name, value in before.items():
        if value.size < 1000:
            np.testing.assert_array_equal(after[name], value)


def test_accuracy_reported_and_compressed_size_smaller(onnx_half):
    acc_before, acc_after = onnx_accuracy(SAMPLE_ONNX), onnx_accuracy(onnx_half.output.path)
    gz_before = len(gzip.compress(SAMPLE_ONNX.read_bytes(), 6))
    gz_after = len(gzip.compress(onnx_half.output.path.read_bytes(), 6))
    print(f"\nprune-magnitude 0.5 (ONNX): accuracy {acc_before:.4f} -> {acc_after:.4f}, "
          f"gzip {gz_before:,} -> {gz_after:,} bytes, file {SAMPLE_ONNX.stat().st_size:,} -> "
          f"{onnx_half.output.path.stat().st_size:,} bytes")
    assert gz_after < gz_before
    details = onnx_half.details
    assert details["compressed_bytes_after"] < details["compressed_bytes_before"]
    assert acc_after > 0.9  # half of an over-sized model's weights is mostly slack


def test_message_says_zeros_are_not_faster(onnx_half):
    text = " ".join(onnx_half.messages)
    assert "not make dense kernels faster" in text and "compressed size" in text
    assert "sparse runtime" in text and "measured" in text


def test_layer_scope_prunes_every_tensor_equally(tmp_path):
    result = run(SAMPLE_ONNX, "onnx", tmp_path, amount=0.3, scope="layer")
    for name, w in eligible_weights(result.output.path).items():
        assert abs(float((w == 0).mean()) - 0.3) < 0.001, name


def test_exclude_and_min_params(tmp_path):
    result = run(SAMPLE_ONNX, "onnx", tmp_path, amount=0.5, exclude="classifier.fc1",
                 min_params=3000)
    assert set(result.details["layers"]) == {"features.conv2.weight", "features.conv3.weight"}
    fc1 = eligible_weights(result.output.path)["classifier.fc1.weight"]
    assert (fc1 == 0).sum() == 0


def test_torch_export_matches_onnx(tmp_path, onnx_half):
    import torch

    source_sha = sha256_of([SAMPLE_PT2])
    result = run(SAMPLE_PT2, "torch", tmp_path, amount=0.5)
    assert sha256_of([SAMPLE_PT2]) == source_sha
    assert result.output.path.suffix == ".pt2" and result.output.path.parent == tmp_path
    assert result.details["zero_count"] == onnx_half.details["zero_count"]
    program = torch.export.load(str(result.output.path))
    fc1 = program.state_dict["classifier.fc1.weight"]
    assert float((fc1 == 0).float().mean()) == pytest.approx(
        onnx_half.details["layers"]["classifier.fc1.weight"]["sparsity"], abs=1e-6)
    data = np.load(SAMPLE_NPZ)
    with torch.no_grad():
        logits = program.module()(torch.from_numpy(data["inputs"])).numpy()
    accuracy = float(np.mean(logits.argmax(1) == data["labels"]))
    print(f"\nprune-magnitude 0.5 (.pt2): accuracy {accuracy:.4f}, gzip "
          f"{result.details['compressed_bytes_before']:,} -> "
          f"{result.details['compressed_bytes_after']:,} bytes")
    assert accuracy > 0.9


def test_bad_amount_is_refused():
    with pytest.raises(PassError, match="amount"):
        make_options(PASS, {"amount": "1.5"})
    with pytest.raises(PassError, match="scope"):
        make_options(PASS, {"scope": "everywhere"})


def test_cancel_leaves_no_output(tmp_path):
    ctx = PassContext(work_dir=tmp_path, cancelled=lambda: True)
    with pytest.raises(Cancelled):
        PASS().run(ModelFile(SAMPLE_ONNX, "onnx"), make_options(PASS, {"amount": "0.5"}), ctx)
    assert not list(tmp_path.iterdir())


def test_nothing_eligible_is_not_an_error(tmp_path):
    result = run(SAMPLE_ONNX, "onnx", tmp_path, amount=0.5, min_params=10_000_000)
    assert not result.changed and result.output.path == SAMPLE_ONNX
    assert "nothing to prune" in result.messages[0]


@pytest.fixture(autouse=True, scope="module")
def _consent_to_run_models():
    """These tests run PyTorch programs in-process: running one needs the user's consent."""
    from converters.formats import consent

    with consent(True):
        yield

