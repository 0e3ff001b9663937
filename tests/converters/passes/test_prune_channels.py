"""prune-channels on the sample .pt2: fewer parameters and MACs, a .pt2 that still runs with a
dynamic batch, a measured speed-up, and clear refusals for what cannot be pruned safely."""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
import torch
from torch import nn

from converters.formats import sha256_of
from converters.passes import ModelFile, PassContext, PassError, get_pass, make_options
from tests.conftest import SAMPLE_NPZ, SAMPLES

SAMPLE_PT2 = SAMPLES / "digits_cnn.pt2"
SAMPLE_TS = SAMPLES / "digits_cnn.ts.pt"
PASS = get_pass("prune-channels")


def run(path, tmp_path, **options):
    opts = make_options(PASS, {k: str(v) for k, v in options.items()})
    return PASS().run(ModelFile(path, "torch"), opts, PassContext(work_dir=tmp_path))


def accuracy(module) -> float:
    data = np.load(SAMPLE_NPZ)
    with torch.no_grad():
        logits = module(torch.from_numpy(data["inputs"])).numpy()
    return float(np.mean(logits.argmax(1) == data["labels"]))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    work = tmp_path_factory.mktemp("pc")
    source_sha = sha256_of([SAMPLE_PT2])
    result = run(SAMPLE_PT2, work, ratio=0.5)
    assert sha256_of([SAMPLE_PT2]) == source_sha
    assert result.output.path.parent == work and result.output.path.suffix == ".pt2"
    return result


def test_params_and_macs_drop(pruned):
    d = pruned.details
    print(f"\nprune-channels 0.5: params {d['params_before']:,} -> {d['params_after']:,}, "
          f"MACs {d['macs_before']:,} -> {d['macs_after']:,}")
    assert d["params_after"] < d["params_before"] and d["macs_after"] < d["macs_before"]
    assert d["layers"]["features.conv1"] == {"in_before": 1, "in_after": 1, "out_before": 32,
                                             "out_after": 16}
    assert d["layers"]["classifier.fc1"]["in_after"] == 16 * 64  # flatten follows conv3
    assert d["layers"]["classifier.fc2"]["out_after"] == 10  # the output layer is kept
    assert d["kept_whole"] == ["classifier.fc2"]


def test_pruned_program_loads_and_runs_any_batch(pruned):
    program = torch.export.load(str(pruned.output.path))
    module = program.module()
    for batch in (1, 64):
        with torch.no_grad():
            assert module(torch.randn(batch, 1, 8, 8)).shape == (batch, 10)
    acc_before = accuracy(torch.export.load(str(SAMPLE_PT2)).module())
    print(f"\nprune-channels 0.5: accuracy {acc_before:.4f} -> {accuracy(module):.4f} "
          "(before fine-tuning)")
    assert program.state_dict["features.conv1.weight"].shape == (16, 1, 3, 3)


def _median_times(modules, x, rounds=30):
    """Median seconds per call of each module, runs interleaved so drift hits both alike."""
    times = [[] for _ in modules]
    with torch.no_grad():
        for m in modules:  # warm-up
            for _ in range(3):
                m(x)
        for _ in range(rounds):
            for i, m in enumerate(modules):
                start = time.perf_counter()
                m(x)
                times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def test_real_speed_up_on_cpu(pruned):
    original = torch.export.load(str(SAMPLE_PT2)).module()
    smaller = torch.export.load(str(pruned.output.path)).module()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_orig, t_pruned = _median_times([original, smaller], torch.randn(64, 1, 8, 8))
    finally:
        torch.set_num_threads(threads)
    print(f"\nprune-channels 0.5, torch CPU, batch 64, 1 thread: {t_orig * 1e3:.2f} ms -> "
          f"{t_pruned * 1e3:.2f} ms (speed-up x{t_orig / t_pruned:.2f})")
    assert t_pruned <= t_orig


def test_ignore_keeps_a_layer_whole_and_round_to(tmp_path):
    result = run(SAMPLE_PT2, tmp_path, ratio=0.5, ignore="features.conv1", round_to=8,
                 importance="l1")
    layers = result.details["layers"]
    assert layers["features.conv1"]["out_after"] == 32
    assert all(v["out_after"] % 8 == 0 for n, v in layers.items() if n != "classifier.fc2")


def test_unknown_ignore_names_the_modules(tmp_path):
    with pytest.raises(PassError, match="features.conv1"):
        run(SAMPLE_PT2, tmp_path, ignore="features.nope")


def test_torchscript_input(tmp_path):
    result = run(SAMPLE_TS, tmp_path, ratio=0.25)
    module = torch.export.load(str(result.output.path)).module()
    assert module(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert result.details["params_after"] < result.details["params_before"]


class _Scaled(nn.Module):
    """A learnable per-channel scale applied with a plain multiply: not a module we can lift."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1, 8, 1, 1))
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc((self.conv(x) * self.scale).flatten(1))


def test_parameter_in_an_unknown_op_is_refused(tmp_path):
    program = torch.export.export(_Scaled().eval(), (torch.zeros(2, 1, 8, 8),))
    path = tmp_path / "scaled.pt2"
    torch.export.save(program, str(path))
    with pytest.raises(PassError, match=r"aten::mul.*'scale'"):
        run(path, tmp_path / "work")
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").iterdir())


def test_options_are_validated():
    with pytest.raises(PassError, match="ratio"):
        make_options(PASS, {"ratio": "1.2"})
    assert make_options(PASS, {"round_to": "none"}).round_to is None


@pytest.fixture(autouse=True, scope="module")
def _consent_to_run_models():
    """These tests run PyTorch programs in-process: running one needs the user's consent."""
    from converters.formats import consent

    with consent(True):
        yield

