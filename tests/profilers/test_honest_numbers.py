"""Honest numbers: intervals, steady state, the stable/noisy verdict, the runtime's own latency,
per-layer times that add up, and A/B comparisons that say when a difference is not measurable.
Real models and real runtimes; no timed assertions (only properties that hold at any speed)."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from profilers.backends import BackendOptions
from profilers.runner import RunConfig, run_profile
from profilers.stability import LoadWatch, usable_cpus, verdict
from profilers.stats import (SettleDetector, latency_intervals, quantile_ci, quantile_ci_ranks,
                             ratio_ci)
from tests.conftest import SAMPLE_ONNX, light_model


# --- statistics --------------------------------------------------------------------------------

def test_order_statistic_ranks_match_the_tables():
    # the classic distribution-free 95 % ranks for the median and the 99th percentile
    assert quantile_ci_ranks(10, 0.5) == (2, 9)
    assert quantile_ci_ranks(100, 0.5) == (40, 61)
    assert quantile_ci_ranks(1000, 0.99) == (983, 997)
    low, high = quantile_ci_ranks(50, 0.99)  # too few to bound p99 from above
    assert high == 51


def test_median_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true_median = np.exp(0.0)  # lognormal(0, 1)
    hits = 0
    for _ in range(400):
        lo, hi = quantile_ci(rng.lognormal(size=200), 0.5)
        hits += lo <= true_median <= hi
    assert 0.92 <= hits / 400 <= 0.99


def test_intervals_contain_the_estimate():
    v = np.random.default_rng(2).gamma(2.0, size=3000)
    iv = latency_intervals(v)
    assert iv["p50_ci"][0] <= np.percentile(v, 50) <= iv["p50_ci"][1]
    assert iv["p99_ci"][0] <= np.percentile(v, 99) <= iv["p99_ci"][1]
    assert iv["p99_ci_bounded"] is True


def test_ratio_interval_spans_one_for_the_same_distribution_and_not_for_a_real_difference():
    rng = np.random.default_rng(3)
    a = [rng.normal(1.0, 0.1, 100) * d for d in rng.normal(1.0, 0.02, 10)]
    b = [rng.normal(1.0, 0.1, 100) * d for d in rng.normal(1.0, 0.02, 10)]
    ratio, lo, hi = ratio_ci(a, b)
    assert lo <= 1.0 <= hi
    slower = [x * 1.3 for x in b]
    ratio, lo, hi = ratio_ci(a, slower)
    assert lo > 1.0 and 1.2 < ratio < 1.4


def test_settle_detector_waits_for_the_plateau_and_caps():
    det = SettleDetector(window=10, min_iterations=5, cap=200)
    values = list(np.linspace(5.0, 1.0, 40)) + [1.0] * 100  # falls for 40 iterations, then flat
    for i, v in enumerate(values, 1):
        if det.add(v):
            break
    assert det.settled and 40 < det.settled_at <= 60
    never = SettleDetector(window=10, min_iterations=5, cap=100)
    n = 0
    while not never.add(1.0 if (n // 10) % 2 else 2.0):  # alternates every window
        n += 1
    assert not never.settled and len(never.values) == 100


def test_verdict_names_its_reasons_and_advice():
    flat = np.full(300, 1.0)
    quiet = verdict(flat, cv=0.01, spikes=0, threads=1, spinning=False, load={"other_cores": 0.0},
                    state={}, settled_at=20, warmup_asked=10)
    assert quiet["verdict"] == "stable" and quiet["warnings"] == []
    # a few interrupts: CV far above its limit, yet no percentile moves: still stable
    ticks = np.random.default_rng(4).normal(0.1, 0.002, 2000)
    ticks[::400] = 1.0
    cv = float(ticks.std(ddof=1) / ticks.mean())
    assert cv > 0.25
    assert verdict(ticks, cv=cv, spikes=5, threads=1, spinning=False, load={}, state={},
                   settled_at=20, warmup_asked=10)["verdict"] == "stable"
    drifting = np.concatenate([np.full(100, 1.0), np.full(100, 1.1), np.full(100, 1.2)])
    busy = verdict(drifting, cv=0.3, spikes=0, threads=4, spinning=True,
                   load={"other_cores": 1.5}, state={"governor": "powersave"}, settled_at=None,
                   warmup_asked=10)
    kinds = {r["kind"] for r in busy["reasons"]}
    assert busy["verdict"] == "noisy"
    assert {"spread", "drift", "load", "unsettled", "governor"} <= kinds
    assert any("threads to 1" in a for a in busy["advice"])


def test_a_few_spikes_are_a_note_and_many_make_the_run_noisy():
    """A quiet VM puts a few percent of iterations at ~2x the median (seen in CI on a 6 ms
    model): the p99 then measures the machine's hiccups, the median is sound. One in ten is
    noise."""
    rng = np.random.default_rng(7)
    for frac, noisy in ((0.05, False), (0.15, True)):
        v = rng.normal(6.0, 0.05, 300)
        v[:: int(1 / frac)] = 18.0  # 3x: the CV passes 25 % with 5 % of spikes
        spikes = int((v > 10).sum())
        r = verdict(v, cv=float(v.std(ddof=1) / v.mean()), spikes=spikes, threads=1,
                    spinning=False, load={"other_cores": 0.0}, state={}, settled_at=20,
                    warmup_asked=10)
        kinds = {x["kind"]: x["noisy"] for x in r["reasons"]}
        assert kinds.get("spikes") is noisy, r["reasons"]
        assert r["verdict"] == ("noisy" if noisy else "stable"), r["reasons"]


# --- real runs ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ov_report():
    cfg = RunConfig(model=str(SAMPLE_ONNX), backend="openvino", iterations=500, warmup=20,
                    layers=True, layer_iterations=30, samplers=False,
                    options=BackendOptions(threads=1, precision="f32"))
    return run_profile(cfg, lambda e: None)


def test_report_schema_2_fields(ov_report):
    lat = ov_report["latency_ms"]
    assert ov_report["schema"] == "modeldeck.report/2"
    assert lat["p50_ci"][0] <= lat["p50"] <= lat["p50_ci"][1]
    assert lat["p99_ci"][0] <= lat["p99"] <= lat["p99_ci"][1]
    st = ov_report["stability"]
    assert st["verdict"] in ("stable", "noisy") and isinstance(st["warnings"], list)
    assert st["warmup_iterations"] >= 20
    assert st["settled_at_iteration"] is None or st["settled_at_iteration"] >= 5
    env = ov_report["environment"]
    for key in ("governor", "frequency_mhz", "load_before", "load_during", "pinned_cpus"):
        assert key in env
    assert env["load_during"]["wall_s"] > 0


def test_openvino_device_latency_is_inside_the_host_call(ov_report):
    dev = ov_report["latency_device_ms"]
    # OpenVINO times the request in C++, inside the Python call we time: never longer
    assert dev["count"] == ov_report["iterations"]
    assert 0 < dev["p50"] <= ov_report["latency_ms"]["p50"]
    assert dev["min"] <= ov_report["latency_ms"]["min"]


def test_openvino_layer_times_add_up_within_the_request(ov_report):
    s = ov_report["layers_summary"]
    # OpenVINO reports running averages since compilation (the first inference, 100x slower on
    # FullyConnected, included); differenced, the layers fit inside the request they ran in
    assert s["statistic"] == "mean"
    assert 0 < s["sum_ms"] <= s["profiled_run_ms"] * 1.02 + 0.005
    assert s["unaccounted_ms"] == pytest.approx(s["profiled_run_ms"] - s["sum_ms"])


def test_onnxruntime_spinning_is_recorded():
    from profilers.backends.onnxruntime_backend import _spinning_choice

    assert _spinning_choice(BackendOptions(spinning=True)) == (True, "asked")
    on, why = _spinning_choice(BackendOptions())
    assert on == (usable_cpus() > 4) and why


def test_old_reports_still_render(tmp_path):
    """A schema-1 report (no intervals, no verdict) still goes through `modeldeck report`."""
    from profilers.report import load_report, write_csv, write_html, write_json

    old = {"schema": "modeldeck.report/1", "status": "ok", "backend": "onnxruntime",
           "device": "CPU", "model": {"path": "m.onnx"},
           "latency_ms": {"p50": 1.0, "p99": 2.0}, "iterations": 10, "layers": []}
    path = write_json(old, tmp_path / "old.json")
    report = load_report(path)
    html = write_html(report, tmp_path / "old.html").read_text()
    assert "Stability" not in html and "CI" not in html
    write_csv(report, tmp_path / "csv")


def test_html_and_csv_show_intervals_and_verdict(ov_report, tmp_path):
    from profilers.report import write_csv, write_html

    html = write_html(ov_report, tmp_path / "r.html").read_text()
    assert "95 % CI" in html and "Stability" in html and ov_report["stability"]["verdict"] in html
    assert "Runtime&#x27;s own latency" in html or "Runtime's own latency" in html
    summary = (tmp_path / "csv" / "summary.csv")
    write_csv(ov_report, tmp_path / "csv")
    text = summary.read_text()
    assert "latency_p50_ci_low_ms" in text and "stability_verdict" in text
    assert "latency_device_p50_ms" in text


def _burners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


@pytest.mark.slow
def test_verdict_is_noisy_with_cpu_burning_processes_beside_the_run():
    procs = _burners(min(usable_cpus(), 8))
    try:
        time.sleep(0.5)  # let them take the cores
        cfg = RunConfig(model=str(SAMPLE_ONNX), iterations=2000, warmup=10, samplers=False,
                        options=BackendOptions(threads=1))
        report = run_profile(cfg, lambda e: None)
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
    st = report["stability"]
    assert st["verdict"] == "noisy", st
    assert "load" in {r["kind"] for r in st["reasons"]}
    assert st["load"]["other_cores"] > 0.5
    assert st["advice"]


@pytest.mark.slow
def test_verdict_is_stable_on_a_quiet_run_of_a_millisecond_model():
    before = LoadWatch().start()
    time.sleep(1.0)
    busy = before.stop().get("other_cores") or 0.0
    if busy > 0.3:
        pytest.skip(f"this machine is busy before the run ({busy:.1f} cores used by other "
                    "processes): a quiet run cannot be had here now")
    cfg = RunConfig(model=str(light_model("squeezenet")), iterations=300, warmup=10,
                    samplers=False, options=BackendOptions(threads=1))
    # A shared machine (a CI VM) has slow spells nobody here controls. Each try is judged
    # only when a plain Python loop timed just before and after it was steady and ran at the
    # same speed both times: the machine was quiet, and not slower at the end than at the
    # start, by a measure that owes nothing to the code under test (a clean-clone CI run had
    # the loop at 4.8 % spread and the run's median drifting 8.8 %: the VM slowed mid-run).
    # One such try must be stable; a run where none was quiet skips and says so.
    judged = []
    for _ in range(4):
        spread0, speed0 = _spin()
        st = run_profile(cfg, lambda e: None)["stability"]
        spread1, speed1 = _spin()
        spread = max(spread0, spread1, abs(speed1 / speed0 - 1))
        other = st["load"].get("other_cores") or 0.0
        if spread > 0.04 or other > 0.5:
            continue  # not a quiet try
        if st["verdict"] == "stable":
            assert st["settled_at_iteration"] is not None
            return
        judged.append((spread, st["warnings"]))
    if not judged:
        pytest.skip("this machine was never steady enough for a quiet run (a plain Python "
                    "loop varied over 4 %, or changed speed by that much, around every try)")
    pytest.fail(f"noisy on every quiet try (loop spread, warnings): {judged}")


def _spin(n: int = 200) -> tuple[float, float]:
    """Spread (1.4826 x MAD / median) and median of a fixed pure-Python loop of ~1 ms, timed
    n times."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sum(range(20_000))
        times.append(time.perf_counter() - t)
    v = np.asarray(times)
    med = float(np.median(v))
    return 1.4826 * float(np.median(np.abs(v - med))) / med, med


@pytest.mark.slow
def test_compare_of_a_model_with_itself_says_no_measurable_difference():
    from profilers.compare import NO_DIFFERENCE, run_compare

    base = RunConfig(model=str(SAMPLE_ONNX), iterations=300, warmup=10, rounds=10,
                     samplers=False, options=BackendOptions(threads=1))
    # A 95 % interval excludes 1 for identical models one time in twenty by construction:
    # up to three tries, each checked; a biased method (order effects) fails all three.
    seen = []
    for _ in range(3):
        result = run_compare([str(SAMPLE_ONNX), str(SAMPLE_ONNX)], base)
        first, second = result["rows"]
        assert first["relative"]["latency_verdict"] == "reference"
        lo, hi = second["relative"]["latency_p50_ci"]
        assert lo <= second["relative"]["latency_p50"] <= hi
        assert result["interleaved"]["rounds"] == 10
        assert second["latency_ms"]["count"] == \
            10 * result["interleaved"]["iterations_per_round"]
        if second["relative"]["latency_verdict"] == NO_DIFFERENCE:
            return
        seen.append((lo, hi))
    pytest.fail(f"a model against itself read as different on every try: {seen}")


def test_onnxruntime_layer_sum_is_reconciled_with_its_own_run_timestamps():
    cfg = RunConfig(model=str(SAMPLE_ONNX), iterations=50, warmup=5, layers=True,
                    layer_iterations=30, samplers=False, options=BackendOptions(threads=1))
    s = run_profile(cfg, lambda e: None)["layers_summary"]
    assert s["source"] == "onnxruntime profiler timestamps" and s["statistic"] == "median"
    # each node's median run against the median model_run: kernels run inside the run
    assert 0 < s["sum_ms"] <= s["profiled_run_ms"] * 1.1


def test_default_threads_leave_a_core_free_on_small_machines(monkeypatch):
    import profilers.runner as runner

    asked, why = runner._default_threads(BackendOptions(threads=3))
    assert asked.threads == 3 and "asked" in why
    monkeypatch.setattr(runner, "usable_cpus", lambda: 2)
    small, why = runner._default_threads(BackendOptions())
    assert small.threads == 1 and "few cores" in why
    monkeypatch.setattr(runner, "usable_cpus", lambda: 64)
    big, why = runner._default_threads(BackendOptions())
    assert big.threads is None or big.threads <= 64


def test_openvino_times_the_model_compiled_at_the_run_sizes(ov_report):
    # the sample declares a dynamic batch; benchmark_app -shape compiles it static, so do we
    assert ov_report["runtime"]["compiled_static_shapes"] == {"input": [1, 1, 8, 8]}


@pytest.mark.slow
def test_cli_prints_intervals_verdict_and_ratio_lines(tmp_path):
    from tests.conftest import REPO

    def cli(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = cli("profile", str(SAMPLE_ONNX), "--backend", "openvino", "--threads", "1",
              "--iterations", "300", "--json", str(tmp_path / "r.json"))
    assert "interval    p50 95 % CI" in out and "runtime's   p50" in out
    assert "stability   STABLE" in out or "stability   NOISY" in out
    out = cli("compare", str(SAMPLE_ONNX), str(SAMPLE_ONNX), "--threads", "1",
              "--iterations", "60", "--rounds", "3")
    assert "p50 relative to digits_cnn.onnx, timed interleaved (3 rounds of 20 iterations" in out
    assert "× 1." in out or "× 0." in out
