"""distill: a heavily channel-pruned sample recovers accuracy when it learns from the original
on the training split; cancelling leaves nothing behind; missing inputs are named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from converters.formats import sha256_of
from converters.passes import (
    CalibrationData, Cancelled, ModelFile, PassContext, PassError, get_pass, make_options,
)
from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX, SAMPLES

SAMPLE_PT2 = SAMPLES / "digits_cnn.pt2"
SAMPLE_TS = SAMPLES / "digits_cnn.ts.pt"
DISTILL = get_pass("distill")
PRUNE = get_pass("prune-channels")


def accuracy(path) -> float:
    data = np.load(SAMPLE_NPZ)
    with torch.no_grad():
        logits = torch.export.load(str(path)).module()(torch.from_numpy(data["inputs"]))
    return float(np.mean(logits.numpy().argmax(1) == data["labels"]))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model trains fastest on one thread; on a busy machine more threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_inputs():
    from resources.samples.train_digits_cnn import load_split

    x_train, x_test, _, _ = load_split()
    assert not np.array_equal(x_test, x_train[: len(x_test)])
    return x_train


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    work = tmp_path_factory.mktemp("pruned")
    result = PRUNE().run(ModelFile(SAMPLE_PT2, "torch"), make_options(PRUNE, {"ratio": "0.5"}),
                         PassContext(work_dir=work))
    return result.output


def context(work, train_inputs, **kw):
    return PassContext(work_dir=work, calibration=CalibrationData({"input": train_inputs},
                                                                  "train split"), **kw)


def test_distillation_recovers_accuracy(pruned, train_inputs, tmp_path):
    teacher_sha, student_sha = sha256_of([SAMPLE_PT2]), sha256_of([pruned.path])
    progress = []
    ctx = context(tmp_path, train_inputs, progress=lambda f, m: progress.append(f))
    result = DISTILL().run(pruned, make_options(DISTILL, {"teacher": str(SAMPLE_PT2)}), ctx)
    assert sha256_of([SAMPLE_PT2]) == teacher_sha and sha256_of([pruned.path]) == student_sha
    assert result.output.path.parent == tmp_path and result.output.path.suffix == ".pt2"

    original, before, after = (accuracy(SAMPLE_PT2), accuracy(pruned.path),
                               accuracy(result.output.path))
    d = result.details
    print(f"\ndistill (kl, T=4, 3 epochs, {d['samples']} train samples): accuracy original "
          f"{original:.4f}, pruned {before:.4f} -> distilled {after:.4f}; loss "
          f"{d['loss_before']:.4f} -> {d['loss_after']:.4f}")
    assert before < original - 0.05  # the pruning really hurt
    assert after > before + 0.05
    assert d["loss_after"] < d["loss_before"]
    assert d["epochs"] == 3 and d["samples"] == len(train_inputs)
    assert progress == sorted(progress) and len(progress) > 3 * (len(train_inputs) // 64)


@pytest.mark.parametrize("teacher", [SAMPLE_TS, SAMPLE_ONNX], ids=["torchscript", "onnx"])
def test_other_teacher_formats_and_mse(pruned, train_inputs, tmp_path, teacher):
    opts = make_options(DISTILL, {"teacher": str(teacher), "loss": "mse", "epochs": "1"})
    result = DISTILL().run(pruned, opts, context(tmp_path, train_inputs))
    assert result.details["loss_after"] < result.details["loss_before"]


def test_cancel_mid_run_leaves_no_file(pruned, train_inputs, tmp_path):
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 30  # inside the training loop

    with pytest.raises(Cancelled):
        DISTILL().run(pruned, make_options(DISTILL, {"teacher": str(SAMPLE_PT2)}),
                      context(tmp_path, train_inputs, cancelled=cancelled))
    assert calls["n"] > 30
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_needs_teacher_and_calibration(pruned, train_inputs, tmp_path):
    with pytest.raises(PassError, match="teacher="):
        DISTILL().run(pruned, make_options(DISTILL, {}), context(tmp_path, train_inputs))
    with pytest.raises(PassError, match="calibration"):
        DISTILL().run(pruned, make_options(DISTILL, {"teacher": str(SAMPLE_PT2)}),
                      PassContext(work_dir=tmp_path))
    with pytest.raises(PassError, match="temperature"):
        make_options(DISTILL, {"temperature": "0"})


def test_no_improvement_returns_the_model_unchanged(train_inputs, tmp_path):
    """The original as its own student already matches: Adam could only add noise."""
    opts = make_options(DISTILL, {"teacher": str(SAMPLE_PT2), "epochs": "1"})
    result = DISTILL().run(ModelFile(SAMPLE_PT2, "torch"), opts, context(tmp_path, train_inputs))
    assert not result.changed and result.output.path == SAMPLE_PT2
    assert "returned unchanged" in result.messages[0]
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


@pytest.fixture(autouse=True, scope="module")
def _consent_to_run_models():
    """These tests run PyTorch programs in-process: running one needs the user's consent."""
    from converters.formats import consent

    with consent(True):
        yield

