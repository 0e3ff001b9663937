"""Does the search find what an exhaustive sweep finds, in a fraction of its time?

Runs `optimize` twice on the same model from empty caches: the search (cheap first, subset
screening, successive halving, remedies only when needed) and an exhaustive sweep (every
candidate built, evaluated on the whole set and timed with the full number of rounds). Then the
two winners and the FP32 baseline are timed against each other in interleaved rounds, each
winner at its own threads and against the FP32 baseline at the same threads (threads are a
candidate dimension: 1 and the usable cores). Prints ratios, never gates on absolute times:

    search time / sweep time          (target ≤ 0.25)
    search winner p50 / sweep winner p50 with a 95 % interval   (target ≤ 1.05)
    each winner's speedup over FP32 ONNX Runtime

    .venv/bin/python bench/optimize_bench.py [--model resources/samples/digits_vgg.onnx]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "resources" / "samples"


def run(model: str, eval_: str, calib: str, out: Path, exhaustive: bool, budget: float) -> tuple:
    from app.optimize.search import OptimizeSpec, run_optimize

    spec = OptimizeSpec(model=model, output_dir=str(out), eval=eval_, calib=calib,
                        max_drop=0.01, threads=1, time_budget_s=budget,
                        cache_dir=str(out / "cache"), exhaustive=exhaustive)

    def show(e):
        if e.get("event") == "candidate":
            p = e["point"]
            lat = p.get("latency_ms") or {}
            print(f"    {p['name']:<24s} {p['stage']:<6s} {p['status']:<8s} "
                  f"{lat.get('p50', float('nan')):8.3f} ms  {p.get('reason', '')}", flush=True)

    t, cpu = time.perf_counter(), time.process_time()
    result = run_optimize(spec, show)
    took = time.perf_counter() - t
    result["_cpu_s"] = time.process_time() - cpu  # all threads of this process
    result["_load"] = _load_avg()
    builds = {p["name"]: p["build_s"] for p in result["tried"] if p.get("build_s")}
    print(f"  {took:.1f} s; spent {result.get('spent')}; builds {builds}", flush=True)
    return result, took


def _load_avg() -> float | None:
    import os

    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def warm_up(model: str, eval_: str, calib: str, tmp: Path) -> None:
    """One small untimed run through every code path both runs take (ORT and NNCF
    quantization, both runtimes), so that neither pays the lazy imports and first-use costs
    the other then gets for free (the first run used to pay about a second for both)."""
    from app.optimize.search import OptimizeSpec, run_optimize

    spec = OptimizeSpec(model=model, output_dir=str(tmp / "warm"), eval=eval_, calib=calib,
                        threads=1, thread_choices=(1,), subset=16, screen_rounds=1,
                        full_rounds=1, final_rounds=1, screen_calibration=8,
                        only=("ort-int8", "ov-int8"), use_cache=False)
    run_optimize(spec)


def head_to_head(paths: list[tuple[str, str, str, str | None, int | None]], feeds: dict,
                 rounds: int) -> list[list[np.ndarray]]:
    from app.optimize.honest import interleaved_rounds
    from app.optimize.search import measure_job

    runs = [measure_job(Path(p), fmt, backend, prec, threads, feeds)
            for p, fmt, backend, prec, threads in paths]
    try:
        for r in runs:
            for _ in range(20):
                r.once()
        per = (1.0 / 1000) * 60  # 60 ms per runner per round
        t = time.perf_counter()
        runs[0].once()
        iters = int(max(5, per / max(time.perf_counter() - t, 1e-5)))
        return interleaved_rounds([r.once for r in runs], rounds, iters)
    finally:
        for r in runs:
            r.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SAMPLES / "digits_vgg.onnx"))
    ap.add_argument("--eval", default=str(SAMPLES / "digits_vgg_test.npz"))
    ap.add_argument("--calib", default=str(SAMPLES / "digits_vgg_calib.npz"))
    ap.add_argument("--budget", type=float, default=1800.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args()

    # both runs share this process: import the heavy libraries first so that neither pays
    # their import time (the first run would otherwise pay it for both)
    import importlib

    for mod in ("torch", "onnxruntime", "onnxruntime.quantization", "onnxruntime.tools",
                "openvino", "nncf"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
    with tempfile.TemporaryDirectory(prefix="optimize-bench-") as tmp:
        tmp = Path(tmp)
        print("warm-up (untimed) ...", flush=True)
        warm_up(args.model, args.eval, args.calib, tmp)
        print("search (empty cache):", flush=True)
        search, t_search = run(args.model, args.eval, args.calib, tmp / "search", False,
                               args.budget)
        print("exhaustive sweep (empty cache):", flush=True)
        sweep, t_sweep = run(args.model, args.eval, args.calib, tmp / "sweep", True,
                             args.budget)
        ws, wx = search["best"], sweep["best"]
        if not ws or not wx:
            print(f"no winner: search {search.get('why_no_winner')}, sweep "
                  f"{sweep.get('why_no_winner')}")
            return 1
        x = np.load(args.eval)["inputs"][:1]
        feeds = {"input": x}
        entries = []
        for w, res in ((ws, search), (wx, sweep)):
            pt = next(t for t in res["tried"] if t["name"] == w["name"])
            entries.append((pt["path"], pt["format"], w["backend"], w["config"]["precision"],
                            w["threads"]))
        base_at = {}  # FP32 ONNX Runtime at each winner's threads
        for w in (ws, wx):
            if w["threads"] not in base_at:
                base_at[w["threads"]] = len(entries)
                entries.append((search["baseline"]["path"], search["baseline"]["format"],
                                "onnxruntime", None, w["threads"]))
        from app.optimize.honest import median_interval, speedup_interval

        timed = head_to_head(entries, feeds, args.rounds)
        r_search, r_sweep = timed[0], timed[1]
        base_search, base_sweep = timed[base_at[ws["threads"]]], timed[base_at[wx["threads"]]]
        rel = speedup_interval(r_sweep, r_search)  # sweep p50 / search p50
        rows = {
            "search_s": t_search, "sweep_s": t_sweep, "time_ratio": t_search / t_sweep,
            "search_cpu_s": search["_cpu_s"], "sweep_cpu_s": sweep["_cpu_s"],
            "cpu_ratio": search["_cpu_s"] / sweep["_cpu_s"],
            "load_avg": [search["_load"], sweep["_load"]],
            "search_best": ws["name"], "sweep_best": wx["name"],
            "search_p50_ms": median_interval(r_search).to_dict(),
            "sweep_p50_ms": median_interval(r_sweep).to_dict(),
            "search_over_sweep_latency": {k: 1 / v for k, v in rel.to_dict().items()},
            "search_threads": ws["threads"], "sweep_threads": wx["threads"],
            "search_speedup_vs_fp32": speedup_interval(base_search, r_search).to_dict(),
            "sweep_speedup_vs_fp32": speedup_interval(base_sweep, r_sweep).to_dict(),
            "search_accuracy_drop": ws.get("accuracy_drop"),
            "sweep_accuracy_drop": wx.get("accuracy_drop"),
            "prediction": search["prediction"]["text"],
            "prediction_check": search["prediction_check"]["text"],
        }
    lat = rows["search_over_sweep_latency"]
    rows["search_spent"], rows["sweep_spent"] = search.get("spent"), sweep.get("spent")
    print(f"\nsearch {t_search:.0f} s vs sweep {t_sweep:.0f} s: time ratio "
          f"{rows['time_ratio']:.2f} (target ≤ 0.25); CPU time {search['_cpu_s']:.0f} s vs "
          f"{sweep['_cpu_s']:.0f} s: ratio {rows['cpu_ratio']:.2f}; load average after each "
          f"{rows['load_avg']} (timings need a quiet machine: a loaded one slows the search's "
          "timing rounds and widens its intervals)")
    for name, res in (("search", search), ("sweep", sweep)):
        sp = res.get("spent") or {}
        print(f"  {name}: build {sp.get('build_s', 0):.1f} s, evaluate "
              f"{sp.get('evaluate_s', 0):.1f} s, time {sp.get('time_s', 0):.1f} s, other "
              f"{res['seconds'] - sum(sp.values()):.1f} s (baseline, confirmation, outputs)")
    print(f"winners: search {ws['name']} ({ws['threads']} thr.), sweep {wx['name']} "
          f"({wx['threads']} thr.); search p50 / sweep p50 = "
          f"{lat['value']:.3f} [{lat['high']:.3f}, {lat['low']:.3f}] (target ≤ 1.05)")
    for k in ("search_speedup_vs_fp32", "sweep_speedup_vs_fp32"):
        v = rows[k]
        print(f"{k}: {v['value']:.2f}× [{v['low']:.2f}, {v['high']:.2f}] (against FP32 at the "
              "same threads, interleaved)")
    print(f"prediction: {rows['prediction']}\nmeasured: {rows['prediction_check']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
