"""Statistics, budgets and input generation: pure computations, checked against numpy."""
from __future__ import annotations

import numpy as np
import pytest

from profilers.backends import InputSpec
from profilers.budgets import BudgetError, parse_budget
from profilers.inputs import InputError, from_npz, generate, parse_shape_args
from profilers.stats import latency_stats, spike_mask
from tests.conftest import SAMPLE_NPZ


def test_latency_stats_match_numpy():
    rng = np.random.default_rng(0)
    v = rng.lognormal(0.0, 0.2, 10_000)
    s = latency_stats(v)
    assert s.count == 10_000
    assert s.p50 == pytest.approx(np.percentile(v, 50))
    assert s.p99 == pytest.approx(np.percentile(v, 99))
    assert s.p999 == pytest.approx(np.percentile(v, 99.9))
    assert s.mean == pytest.approx(v.mean()) and s.std == pytest.approx(v.std(ddof=1))
    assert s.cv == pytest.approx(v.std(ddof=1) / v.mean())
    assert s.throughput_ips == pytest.approx(1000 / v.mean())
    assert s.min <= s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.p999 <= s.max


def test_spikes_found_and_flat_series_clean():
    v = np.full(1000, 2.0) + np.random.default_rng(1).normal(0, 0.01, 1000)
    assert spike_mask(v).sum() == 0
    v[[10, 500, 900]] = 9.0
    assert list(np.flatnonzero(spike_mask(v))) == [10, 500, 900]
    assert spike_mask(np.full(50, 3.0)).sum() == 0  # MAD 0 must not flag everything
    with pytest.raises(ValueError):
        latency_stats(np.array([]))


@pytest.mark.parametrize("text,metric,limit,unit", [
    ("p99=20ms", "p99", 20.0, "ms"), ("p50=1.5s", "p50", 1500.0, "ms"),
    ("mean=250us", "mean", 0.25, "ms"), ("rss=500MB", "rss", 500.0, "MB"),
    ("rss=2GB", "rss", 2000.0, "MB"), ("power=15W", "power", 15.0, "W"),
])
def test_budget_parsing(text, metric, limit, unit):
    b = parse_budget(text)
    assert (b.metric, b.limit, b.unit) == (metric, pytest.approx(limit), unit)
    assert b.check(b.limit) is True and b.check(b.limit * 1.01) is False


@pytest.mark.parametrize("text", ["p99", "p98=3ms", "p99=3MB", "rss=5ms", "p99=fast"])
def test_bad_budgets(text):
    with pytest.raises(BudgetError, match="--budget"):
        parse_budget(text)


def test_generated_inputs_respect_dtypes_and_dynamic_dims():
    specs = [InputSpec("img", "float32", ("batch", 3, 8, 8)),
             InputSpec("ids", "int64", (None, 16)), InputSpec("mask", "bool", (1, 16))]
    feeds = generate(specs)
    assert feeds["img"].shape == (1, 3, 8, 8) and feeds["img"].dtype == np.float32
    assert 0 <= feeds["img"].min() and feeds["img"].max() < 1
    assert feeds["ids"].dtype == np.int64 and 0 <= feeds["ids"].min() and feeds["ids"].max() < 10
    assert feeds["mask"].dtype == np.bool_
    feeds = generate(specs, parse_shape_args(["img=4x3x8x8", "ids=4x16"]))
    assert feeds["img"].shape == (4, 3, 8, 8) and feeds["ids"].shape == (4, 16)


@pytest.mark.parametrize("shape_args,match", [
    (["img=1x3x8"], "has rank 3"), (["img=1x4x8x8"], "dim 1 is fixed to 3"),
    (["nope=1x2"], "which the model does not have"), (["img=1xAx8x8"], "bad input size"),
])
def test_wrong_shapes_have_clear_messages(shape_args, match):
    with pytest.raises(InputError, match=match):
        generate([InputSpec("img", "float32", ("batch", 3, 8, 8))], parse_shape_args(shape_args))


def test_dynamic_non_batch_dim_takes_a_role_default():
    # a free time axis of a rank-2 input: a sequence, 128 by default; no flag needed
    assert generate([InputSpec("seq", "float32", (1, None))])["seq"].shape == (1, 128)
    with pytest.raises(InputError, match="does not say what shape input 'x' takes"):
        generate([InputSpec("x", "float32", None)])


def test_npz_inputs_cut_to_batch(tmp_path):
    spec = [InputSpec("input", "float32", ("batch", 1, 8, 8))]
    feeds = from_npz(SAMPLE_NPZ, spec, {"input": [16, 1, 8, 8]})
    real = np.load(SAMPLE_NPZ)["inputs"][:16]
    np.testing.assert_array_equal(feeds["input"], real)
    bad = tmp_path / "bad.npz"
    np.savez(bad, input=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(InputError, match="shape"):
        from_npz(bad, spec)


def test_cpu_percent_between_close_reads_stays_physical():
    """One busy thread read every millisecond stays near 100 %: a clock counting 10 ms ticks
    read 0 % or 1000 % (the window's CPU axis ran to 1000 %)."""
    import time

    from profilers.samplers.cpu import ProcessCpu

    cpu = ProcessCpu()
    cpu.start()
    readings = []
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        spin = time.perf_counter() + 0.001
        while time.perf_counter() < spin:
            pass
        value = cpu.read()
        if value is not None:
            readings.append(value)
    assert len(readings) > 100
    assert max(readings) < 150  # one thread cannot use more than one core
    assert sorted(readings)[len(readings) // 2] > 20  # and it was busy
