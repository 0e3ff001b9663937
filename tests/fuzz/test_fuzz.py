"""A bounded fuzz run in `make test`: mutants of every reader's seed models through the CLI.

Every run must end ok or with exit 2 and one clear line: no crash, hang, memory blow-up,
traceback or internal error. The larger campaign is `python -m tests.fuzz.campaign` (README).
"""
from __future__ import annotations

import json
import random

import pytest

from tests.fuzz.campaign import FAILURES, classify, run_cli
from tests.fuzz.mutate import BYTE_MUTATORS, build_seeds, make_mutant, mutants

# 250 files: about 7-8 minutes on 2 cores (each CLI run starts Python and a worker, ~2 s; a
# torch seed ~10 s more for its imports, hence its small share). The larger campaign is the
# documented `python -m tests.fuzz.campaign --count 2000`.
BOUNDED_COUNT = 250


def test_mutants_are_deterministic():
    seeds = build_seeds({"onnx", "tflite"})
    a = [m.files for m in mutants(seeds, 12, base_seed=3)]
    b = [m.files for m in mutants(seeds, 12, base_seed=3)]
    assert a == b
    assert a != [m.files for m in mutants(seeds, 12, base_seed=4)]
    assert all(m.files != s.files for s in seeds for m in (make_mutant(s, 1),))


def test_byte_mutators_change_the_bytes():
    data = bytes(range(256)) * 4
    rng = random.Random(0)
    for name, f in BYTE_MUTATORS.items():
        assert f(data, rng) != data, name


@pytest.mark.parametrize("rc, stderr, timed_out, rss, cls", [
    (0, "", False, 100, "ok"),
    (2, "modeldeck: error: x.onnx is damaged\n", False, 100, "clear"),
    (2, "warning: slow\nmodeldeck: error: bad\n", False, 100, "clear"),
    (2, "some torch log line\nmodeldeck: error: bad\n", False, 100, "unclear"),
    (2, "Traceback (most recent call last):\nmodeldeck: error: bad\n", False, 100, "traceback"),
    (1, "modeldeck: internal error: ValueError: x\n", False, 100, "internal"),
    (-11, "", False, 100, "crash"),
    (134, "", False, 100, "crash"),
    (None, "", True, 100, "hang"),
    (2, "modeldeck: error: bad\n", False, 99999, "memory"),
])
def test_classification(rc, stderr, timed_out, rss, cls):
    assert classify(rc, stderr, timed_out, rss) == cls


def test_runner_measures_crash_hang_and_memory(tmp_path):
    import sys

    py = [sys.executable, "-c"]
    rc, err, hung, _, _ = run_cli(["import faulthandler, os; os.abort()"], tmp_path, 30, py)
    assert classify(rc, err, hung, 0) == "crash"
    rc, err, hung, _, wall = run_cli(["import time; time.sleep(60)"], tmp_path, 1.5, py)
    assert hung and wall < 30 and classify(rc, err, hung, 0) == "hang"
    rc, err, hung, rss, _ = run_cli(["b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096])"],
                                    tmp_path, 30, py)
    assert rc == 0 and rss > 300
    rc, err, hung, rss, _ = run_cli(["b = bytearray(40 << 30)"], tmp_path, 30, py)
    assert classify(rc, err, hung, rss) == "memory"  # the address-space cap stops it early


@pytest.mark.slow
def test_bounded_campaign(tmp_path):
    from tests.fuzz.campaign import campaign

    s = campaign(BOUNDED_COUNT, tmp_path / "fuzz", jobs=2, base_seed=0,
                 weights={"torch": 0.15}, profile_sample=0.0)
    print(json.dumps({k: v for k, v in s.items() if k != "failed_runs"}, indent=1))
    assert s["runs"] >= BOUNDED_COUNT
    assert set(s["by_format"]) == {"onnx", "openvino", "tflite", "torch"}
    assert s["failures"] == 0, json.dumps(s["failed_runs"], indent=1)
    assert not set(s["classes"]) & set(FAILURES)
