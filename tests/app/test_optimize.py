"""optimize: the probe's prediction, honest intervals, the search on the real digits sample
(accuracy-aware fallback, cache, cancel with the best so far), its outputs and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.optimize.honest import paired_accuracy_drop, speedup_interval
from app.optimize.probe import MachineProbe, check_prediction, parse_cpuinfo, predict_int8

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"
CNN = SAMPLES / "digits_cnn.onnx"
EVAL = SAMPLES / "digits_test.npz"

X86_NO_VNNI = "model name\t: Some Core i7\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
X86_VNNI = "model name\t: Some Xeon\nflags\t\t: fpu avx avx2 fma avx512f avx512_vnni\n"
ARM_DOT = "Hardware\t: Graviton\nFeatures\t: fp asimd asimddp i8mm\n"
CONV_HEAVY = {"macs": 450e6, "heavy_share": 0.99, "small_share": 0.01}


def _probe(text: str, arch: str = "x86_64") -> MachineProbe:
    model, isa = parse_cpuinfo(text)
    return MachineProbe(arch=arch, cpu_model=model, cores=2, isa=isa)


# --- probe and prediction ------------------------------------------------------------------

def test_cpuinfo_flags_are_named():
    assert parse_cpuinfo(X86_VNNI) == ("Some Xeon", ("AVX2", "FMA", "AVX-512", "AVX-512 VNNI"))
    assert _probe(ARM_DOT, "aarch64").int8_dot == "i8mm"
    assert _probe(X86_NO_VNNI).int8_dot is None


def test_prediction_follows_the_int8_units_and_the_model():
    small = {"macs": 40e6, "heavy_share": 0.95, "small_share": 0.8}
    assert predict_int8(_probe(X86_NO_VNNI), small).int8 == "slower"
    assert "no VNNI" in predict_int8(_probe(X86_NO_VNNI), small).text
    assert predict_int8(_probe(X86_NO_VNNI), CONV_HEAVY).int8 != "faster"
    assert predict_int8(_probe(X86_VNNI), CONV_HEAVY).int8 == "faster"
    assert predict_int8(_probe(ARM_DOT, "aarch64"), CONV_HEAVY).int8 == "faster"
    tiny = {"macs": 3e6, "heavy_share": 0.99, "small_share": 0.0}
    assert predict_int8(_probe(X86_VNNI), tiny).int8 != "faster"  # overheads dominate


def test_prediction_on_this_machine():
    """What this machine's /proc/cpuinfo says about VNNI decides the prediction for a
    convolution-heavy model (the bench and the CLI then measure it: confirmed or refuted)."""
    from app.optimize.probe import conv_profile, probe_machine
    from converters.formats import open_model

    probe = probe_machine(with_runtimes=False)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set()
    for line in cpuinfo.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags |= set(line.split(":", 1)[1].split())
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})
    model = SAMPLES / "digits_vgg.onnx"
    profile = conv_profile(open_model(model)) if model.exists() else CONV_HEAVY
    assert profile["heavy_share"] > 0.9
    pred = predict_int8(probe, profile)
    assert (pred.int8 == "faster") == vnni, pred.text
    assert (probe.int8_dot is not None) == vnni


def test_prediction_check_needs_the_interval_on_one_side():
    pred = predict_int8(_probe(X86_VNNI), CONV_HEAVY)
    assert check_prediction(pred, 2.0, (1.6, 2.4))["verdict"] == "confirmed"
    assert check_prediction(pred, 0.8, (0.7, 0.9))["verdict"] == "refuted"
    assert check_prediction(pred, 1.05, (0.9, 1.2))["verdict"] == "inconclusive"
    assert check_prediction(pred, None)["verdict"] == "unmeasured"


# --- honest intervals ----------------------------------------------------------------------

def test_paired_bootstrap_accuracy_drop():
    rng = np.random.default_rng(1)
    base = rng.random(400) < 0.95
    assert paired_accuracy_drop(base, base.copy()).to_dict() == {
        "value": 0.0, "low": 0.0, "high": 0.0}
    cand = base.copy()
    flipped = np.flatnonzero(base)[:8]  # 8 of 400 samples lost: a 2-point drop
    cand[flipped] = False
    iv = paired_accuracy_drop(base, cand)
    assert iv.value == pytest.approx(0.02)
    assert 0 < iv.low < iv.value < iv.high < 0.05
    with pytest.raises(ValueError):
        paired_accuracy_drop(base, cand[:10])


def test_speedup_interval_from_paired_rounds():
    base = [np.full(20, 10.0) + i * 0.1 for i in range(8)]
    cand = [np.full(20, 4.0) + i * 0.04 for i in range(8)]
    iv = speedup_interval(base, cand)
    assert iv.low <= iv.value <= iv.high
    assert iv.value == pytest.approx(2.5, rel=0.02)


# --- the search on the real sample ---------------------------------------------------------

def _spec(tmp_path: Path, **kw):
    from app.optimize.search import OptimizeSpec

    base = dict(model=str(CNN), output_dir=str(tmp_path / "out"), eval=str(EVAL),
                calib=str(EVAL), subset=96, screen_rounds=2, full_rounds=3, final_rounds=3,
                round_ms=10.0, cache_dir=str(tmp_path / "cache"), threads=1,
                thread_choices=(1,))
    base.update(kw)
    return OptimizeSpec(**base)


@pytest.mark.slow
def test_search_writes_winner_recipe_json_and_html(tmp_path):
    from app.optimize.search import run_optimize
    from app.pipeline import run_pipeline, spec_from_recipe

    events = []
    r = run_optimize(_spec(tmp_path, only=("ort-int8-dynamic", "ort-int8", "ort-fp16")),
                     events.append)
    assert r["status"] == "ok" and r["best"] is not None
    best = r["best"]
    for key in ("path", "backend", "config", "latency_ms", "speedup", "accuracy",
                "accuracy_drop", "cosine"):
        assert key in best
    assert best["latency_ms"]["low"] <= best["latency_ms"]["p50"] <= best["latency_ms"]["high"]
    assert best["accuracy_drop"]["high"] <= 0.01  # meets the budget by its interval
    assert {t["name"] for t in r["tried"]} == {"ort-int8-dynamic", "ort-int8", "ort-fp16"}
    assert all(t["reason"] for t in r["tried"])
    assert r["pareto"] and r["prediction"]["text"]
    out = Path(r["outputs"]["dir"])
    saved = json.loads((out / "optimize.json").read_text())
    assert saved["best"]["name"] == best["name"]
    assert "<svg" in (out / "optimize.html").read_text()
    assert Path(best["path"]).exists()
    # the recipe replays with `convert --recipe` and gives the same model
    spec, warnings = spec_from_recipe(r["outputs"]["recipes"][-1], str(CNN),
                                      str(tmp_path / "replayed.onnx"))
    assert not warnings
    replayed = run_pipeline(spec)
    assert Path(replayed["output"]).stat().st_size == Path(best["path"]).stat().st_size
    assert any(e.get("event") == "candidate" for e in events)


@pytest.mark.slow
def test_prediction_is_checked_by_dynamic_int8_when_no_static_int8_was_timed(tmp_path):
    """A search limited to dynamic INT8 still measures INT8 kernels: the prediction is
    confirmed or refuted by it, not left 'unmeasured'."""
    from app.optimize.search import run_optimize

    r = run_optimize(_spec(tmp_path, only=("ort-int8-dynamic",)))
    check = r["prediction_check"]
    assert check["verdict"] != "unmeasured", check
    assert check["candidate"] == "ort-int8-dynamic"


@pytest.mark.slow
def test_accuracy_aware_fallback_meets_a_budget_full_int8_misses(tmp_path):
    """Full INT8 misses a fidelity floor set between its cosine and 1; keeping the most
    sensitive layers in float (ranked leave-one-out) meets it."""
    from app.optimize.search import run_optimize

    first = run_optimize(_spec(tmp_path, only=("ort-int8",)))
    full = next(t for t in first["tried"] if t["name"] == "ort-int8")
    floor = 1 - (1 - full["cosine"]) / 3
    # no cache: the INT8 that misses the floor is still timed, so the fallback knows it
    # would win on speed
    r = run_optimize(_spec(tmp_path, only=("ort-int8",), min_cosine=floor,
                           output_dir=str(tmp_path / "out2"), use_cache=False))
    tried = {t["name"]: t for t in r["tried"]}
    assert tried["ort-int8"]["status"] == "rejected" and "cosine" in tried["ort-int8"]["reason"]
    assert r["sensitivity"], "layers were ranked"
    assert r["best"] is not None, r.get("why_no_winner")
    assert r["best"]["name"].startswith("ort-int8-mixed")
    assert r["best"]["cosine"] >= floor
    kept_float = r["best"]["config"]["passes"][0]["options"]["exclude"]
    assert kept_float and set(kept_float) <= {s["node"] for s in r["sensitivity"]}


@pytest.mark.slow
def test_int8_variants_share_one_calibration_and_give_the_same_model(tmp_path):
    """Inside shared_calibration, a per-tensor build reuses the per-channel build's activation
    ranges (no second calibration) and writes the same bytes as one calibrated afresh."""
    import hashlib

    from app.pipeline import ConvertSpec, StepSpec, run_pipeline
    from converters.passes.int8_static import shared_calibration

    def build(name, **opts):
        spec = ConvertSpec(model=str(CNN), output=str(tmp_path / f"{name}.onnx"),
                           passes=(StepSpec("int8-static", opts),), calib=str(EVAL),
                           verify_samples=8)
        r = run_pipeline(spec, emit=lambda e: None)
        step = next(s for s in r["steps"] if s.get("pass") == "int8-static")
        return hashlib.sha256(Path(r["output"]).read_bytes()).hexdigest(), step

    with shared_calibration():
        _, first = build("pc", per_channel=True)
        shared, second = build("pt", per_channel=False)
        _, third = build("pc-entropy", per_channel=True, method="entropy")
    fresh, alone = build("pt-fresh", per_channel=False)
    assert first["details"]["ranges"] == "calibrated"
    assert second["details"]["ranges"].startswith("reused")
    assert third["details"]["ranges"] == "calibrated"  # another method calibrates anew
    assert alone["details"]["ranges"] == "calibrated"  # outside the block: nothing kept
    assert shared == fresh


@pytest.mark.slow
def test_nncf_accuracy_control_meets_a_budget_full_openvino_int8_misses(tmp_path):
    """On OpenVINO, full INT8 (NNCF) misses a fidelity floor set between its cosine and 1;
    NNCF's quantize_with_accuracy_control returns quantizers to float until it is met."""
    from app.optimize.search import run_optimize

    first = run_optimize(_spec(tmp_path, only=("ov-int8",), subset=450))
    full = next(t for t in first["tried"] if t["name"] == "ov-int8")
    assert full["cosine"] < 0.99999, "full INT8 must lose some fidelity for this test to mean it"
    floor = 1 - (1 - full["cosine"]) / 3
    r = run_optimize(_spec(tmp_path, only=("ov-int8",), min_cosine=floor, subset=450,
                           output_dir=str(tmp_path / "out2")))
    tried = {t["name"]: t for t in r["tried"]}
    assert tried["ov-int8"]["status"] == "rejected" and "cosine" in tried["ov-int8"]["reason"]
    assert "ov-int8-ac" in tried, list(tried)
    assert r["best"] is not None, r.get("why_no_winner")
    assert r["best"]["name"] == "ov-int8-ac" and r["best"]["backend"] == "openvino"
    assert r["best"]["cosine"] >= floor > full["cosine"]
    step = r["best"]["config"]["passes"][0]
    assert step["name"] == "nncf-accuracy-control" and step["options"]["metric"] == "cosine"
    assert Path(r["best"]["path"]).exists()
    record = json.loads(Path(r["outputs"]["recipes"][-1]).read_text())
    assert record["step"]["engine"] == "nncf.quantize_with_accuracy_control"
    import openvino as ov

    full_fq = sum(o.get_type_name() == "FakeQuantize"
                  for o in ov.Core().read_model(full["path"]).get_ops())
    assert 0 < record["step"]["fake_quantize"] <= full_fq  # some layers stay INT8
    assert any("--only ov-int8" in c for c in r["best"]["commands"])


@pytest.mark.slow
def test_second_run_comes_from_the_cache(tmp_path):
    from app.optimize.search import run_optimize

    spec = _spec(tmp_path, only=("ort-int8-dynamic", "ort-int8"))
    first = run_optimize(spec)
    assert first["cache"]["misses"] > 0
    second = run_optimize(spec)
    assert second["cache"]["misses"] == 0 and second["cache"]["hits"] > 0
    assert all(t["cached"] and t["build_s"] is None for t in second["tried"]
               if t["latency_ms"])
    assert second["best"]["name"] == first["best"]["name"]
    assert second["best"]["latency_ms"] == first["best"]["latency_ms"]
    # another machine (fingerprint) does not reuse these measurements
    from app.optimize.cache import Cache

    other = Cache(tmp_path / "cache", "another-machine")
    assert other.get("anything") is None


@pytest.mark.slow
def test_threads_are_a_candidate_dimension_against_a_baseline_at_the_same_threads(tmp_path):
    """The search times only screening survivors at the other thread count, reusing their
    accuracy (threads change speed, not accuracy); the sweep runs everything at both."""
    from app.optimize.search import run_optimize

    only = ("ort-int8", "ort-fp16")
    screened: dict[str, dict] = {}  # each candidate's figures as screening published them

    def keep(e):
        if e.get("event") == "candidate" and e["point"]["stage"] == "screen":
            screened[e["point"]["name"]] = e["point"]

    r = run_optimize(_spec(tmp_path, only=only, thread_choices=(1, 2), min_cosine=0.99), keep)
    assert r["thread_choices"] == [1, 2] and r["threads"] == 1
    tried = {t["name"]: t for t in r["tried"]}
    # ort-fp16 is skipped or rejected in screening: never timed at 2 threads
    assert "ort-fp16-2t" not in tried or tried["ort-fp16-2t"]["latency_ms"] is None
    one, two = tried["ort-int8"], tried["ort-int8-2t"]
    assert two["candidate"]["threads"] == 2 and two["latency_ms"]["threads"] == 2
    assert one["latency_ms"]["threads"] == 1
    for k in ("accuracy", "accuracy_drop", "cosine", "agreement", "samples"):
        # the 2-thread variant was not evaluated again
        assert screened["ort-int8-2t"][k] == screened["ort-int8"][k], k
    assert two["path"] == one["path"]  # one build for both thread counts
    best = r["best"]
    assert best["threads"] == best["config"]["threads"] == best["baseline_threads"]
    assert best["threads"] in (1, 2) and best["speedup"]["low"] > 1.0
    assert best["confirmation"]["rounds_from_full_stage"] == 3  # full-stage rounds reused
    html = (tmp_path / "out" / "optimize.html").read_text()
    assert f"at {best['threads']} thread(s)" in html and "threads tried 1, 2" in html

    sweep = run_optimize(_spec(tmp_path / "sweep", only=only, thread_choices=(1, 2),
                               exhaustive=True))
    names = {t["name"] for t in sweep["tried"] if t["latency_ms"]}
    assert names == {"ort-int8", "ort-int8-2t", "ort-fp16", "ort-fp16-2t"}
    assert all(t["stage"] == "full" for t in sweep["tried"])


def test_thread_choices_default_to_one_and_the_usable_cores():
    from app.optimize.search import OptimizeSpec, thread_counts, usable_cores

    spec = OptimizeSpec(model="m.onnx", output_dir="o")
    assert thread_counts(spec) == tuple(dict.fromkeys((1, usable_cores())))
    assert thread_counts(OptimizeSpec(model="m.onnx", output_dir="o", threads=3)) == (3,)
    assert thread_counts(OptimizeSpec(model="m.onnx", output_dir="o", threads=2,
                                      thread_choices=(1, 2))) == (2, 1)
    with pytest.raises(Exception, match="thread choices"):
        OptimizeSpec(model="m.onnx", output_dir="o", thread_choices=(0,))
    again = OptimizeSpec.from_dict(OptimizeSpec(model="m.onnx", output_dir="o",
                                                thread_choices=(1, 2)).to_dict())
    assert again.thread_choices == (1, 2)


@pytest.mark.slow
def test_cancelled_search_keeps_its_best_so_far(tmp_path):
    from app.optimize.search import run_optimize

    state = {"cancel": False}

    def emit(e):
        p = e.get("point") or {}
        if e.get("event") == "candidate" and p.get("name") == "ort-int8" and p.get("meets"):
            state["cancel"] = True  # stop right after the first good candidate

    r = run_optimize(_spec(tmp_path, only=("ort-int8", "ort-int8-dynamic", "ort-fp16"),
                           use_cache=False), emit, lambda: state["cancel"])
    assert r["stopped"] == "cancelled"
    assert r["best"] is not None and r["best"]["name"] == "ort-int8"
    assert Path(r["best"]["path"]).exists()
    # stopped after screening: the winner is the screening build, and says so
    reason = next(t["reason"] for t in r["tried"] if t["name"] == "ort-int8")
    assert "provisional" in reason and "64 of the calibration samples" in reason
    assert json.loads((tmp_path / "out" / "optimize.json").read_text())["stopped"] == "cancelled"
    never = {t["name"] for t in r["tried"] if t["status"] == "planned"}
    assert never, ("the search stopped before trying everything", [(t["name"], t["status"], t["reason"]) for t in r["tried"]])


# --- CLI -----------------------------------------------------------------------------------

def test_cli_parses_budgets_and_durations():
    import argparse

    from app.optimize.cli import parse_drop, parse_duration

    assert parse_drop("1%") == pytest.approx(0.01)
    assert parse_drop("0.5 %") == pytest.approx(0.005)
    assert parse_drop("0.02") == pytest.approx(0.02)
    assert parse_duration("15m") == 900 and parse_duration("90s") == 90
    for bad in ("abc", "150%"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_drop(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("soon")


def test_cli_bad_model_is_a_clear_message(tmp_path, capsys):
    from app.cli import main

    code = main(["optimize", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "o")])
    assert code == 2
    assert "missing.onnx" in capsys.readouterr().err


def test_a_histogram_remedy_is_not_started_without_time_for_it(tmp_path):
    """Entropy/percentile calibration costs ~10x the min-max build and ORT's entropy step does
    not check cancel: a remedy is not started when the budget left is shorter than that."""
    from app.optimize import candidates as cands
    from app.optimize.search import OptimizeSpec, Point, Search

    entropy = cands.Candidate("ort-int8-entropy", "int8", "onnxruntime", remedy_for="ort-int8",
                              passes=(cands._step("int8-static", method="entropy"),))
    other = cands.Candidate("ort-int8-qop", "int8", "onnxruntime",
                            passes=(cands._step("int8-static", method="minmax"),))
    parent = Point("ort-int8", {}, build_s=3.0)
    short = Search(OptimizeSpec(model="m.onnx", output_dir=str(tmp_path), time_budget_s=20))
    why = short.remedy_too_slow(entropy, parent)
    assert why and "~30 s" in why and "ort-int8's build" in why
    assert short.remedy_too_slow(other, parent) is None  # min-max: no histogram
    long = Search(OptimizeSpec(model="m.onnx", output_dir=str(tmp_path), time_budget_s=600))
    assert long.remedy_too_slow(entropy, parent) is None
    sweep = Search(OptimizeSpec(model="m.onnx", output_dir=str(tmp_path), time_budget_s=20,
                                exhaustive=True))
    assert sweep.remedy_too_slow(entropy, parent) is None  # the sweep builds everything
