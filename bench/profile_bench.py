"""Is ModelDeck's measurement honest? Three comparisons on the same machine, in one run:

1. our median latency (worker process, samplers on) vs a bare ONNX Runtime `run` loop
   (same threads); target within +-3%;
2. our median vs OpenVINO's own benchmark_app (-api sync, same threads, f32); target +-3%;
3. our throughput with samplers on vs off; target >= 0.99.

Runs are interleaved (A B A B ...) so drift of the machine hits both sides alike, and each
figure is the median over rounds. Prints ratios; never asserts absolute times.

    .venv/bin/python bench/profile_bench.py [--rounds 3] [--threads 1] [--iterations 2000]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.jobs.client import JobClient  # noqa: E402
from profilers.runner import RunConfig  # noqa: E402


def ours(model: Path, backend: str, threads: int, iterations: int, samplers: bool = True,
         precision: str | None = None) -> dict:
    from profilers.backends import BackendOptions

    cfg = RunConfig(model=str(model), backend=backend, iterations=iterations, warmup=50,
                    samplers=samplers, options=BackendOptions(threads=threads,
                                                              precision=precision))
    out = JobClient({"job": "profile", "config": cfg.to_dict()}, timeout_s=600).run()
    if out.status != "ok":
        raise SystemExit(f"profile failed: {out.error}\n{out.stderr_tail}")
    return out.result


def bare_ort(model: Path, threads: int, iterations: int) -> float:
    """The reference: the shortest honest ORT loop, in a fresh process like ours."""
    code = f"""
import time, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = {threads}
s = ort.InferenceSession({str(model)!r}, so, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in i.shape]
x = {{i.name: np.random.default_rng(0).random(shape, dtype=np.float32)}}
for _ in range(50): s.run(None, x)
t = []
for _ in range({iterations}):
    a = time.perf_counter_ns(); s.run(None, x); t.append(time.perf_counter_ns() - a)
print(np.median(t) / 1e6)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def benchmark_app(model: Path, threads: int, seconds: float) -> float:
    exe = Path(sys.executable).with_name("benchmark_app")
    r = subprocess.run([str(exe), "-m", str(model), "-api", "sync", "-hint", "none", "-nstreams", "1",
                        "-nthreads", str(threads), "-infer_precision", "f32", "-t", str(max(1, round(seconds))),
                        "-shape", "[1,1,8,8]" if "digits" in model.name else "[1,3,224,224]"],
                       capture_output=True, text=True)
    m = re.search(r"Median:\s*([0-9.]+)\s*(ms|us)", r.stdout)
    if not m:
        raise SystemExit(f"benchmark_app output not understood:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=2000)
    args = ap.parse_args()
    import onnx

    models = [ROOT / "resources/samples/digits_cnn.onnx",
              Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"]
    print(f"threads={args.threads} rounds={args.rounds} iterations={args.iterations}")
    for model in models:
        n = args.iterations if "digits" in model.name else max(200, args.iterations // 10)
        a_ort, b_ort, a_ov, b_ov, on, off = [], [], [], [], [], []
        for _ in range(args.rounds):
            a_ort.append(ours(model, "onnxruntime", args.threads, n)["latency_ms"]["p50"])
            b_ort.append(bare_ort(model, args.threads, n))
            r = ours(model, "openvino", args.threads, n, precision="f32")
            a_ov.append(r["latency_ms"]["p50"])
            secs = max(3.0, r["measure_s"])
            b_ov.append(benchmark_app(model, args.threads, secs))
            on.append(ours(model, "onnxruntime", args.threads, n, samplers=True)["throughput_ips"])
            off.append(ours(model, "onnxruntime", args.threads, n, samplers=False)["throughput_ips"])
        med = statistics.median
        print(f"\n{model.name}")
        print(f"  ORT median: ours {med(a_ort):.4f} ms, bare loop {med(b_ort):.4f} ms, "
              f"ratio {med(a_ort) / med(b_ort):.3f} (target 0.97-1.03)")
        print(f"  OpenVINO median: ours {med(a_ov):.4f} ms, benchmark_app {med(b_ov):.4f} ms, "
              f"ratio {med(a_ov) / med(b_ov):.3f} (target 0.97-1.03)")
        print(f"  throughput samplers on/off: {med(on):.1f} / {med(off):.1f} ips, "
              f"ratio {med(on) / med(off):.3f} (target >= 0.99)")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(bench took {time.perf_counter() - t0:.0f} s)")
