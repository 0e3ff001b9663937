"""What each compression variant buys: latency on ONNX Runtime and OpenVINO relative to FP32 on
ONNX Runtime, size ratio, and accuracy (sample) or fidelity (ResNet-50, whose Model Zoo weights are
constants, so only fidelity and speed mean something). Prints a table; never asserts.

    .venv/bin/python bench/variants_bench.py [--threads 1] [--models sample,resnet50]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.pipeline import ConvertSpec, StepSpec, run_pipeline  # noqa: E402
from profilers.backends import BackendOptions  # noqa: E402
from profilers.runner import RunConfig, run_profile  # noqa: E402

VARIANTS = [  # name, passes, target format
    ("fp32 onnx", [], None),
    ("fp32 IR", [], "openvino"),
    ("fp16 onnx", [StepSpec("fp16")], None),
    ("int8-dynamic onnx", [StepSpec("int8-dynamic")], None),
    ("int8-static onnx", [StepSpec("int8-static")], None),
    ("int8-static IR (NNCF)", [StepSpec("int8-static")], "openvino"),
    ("weight-only int8 IR", [StepSpec("weight-only", {"bits": "8"})], "openvino"),
    ("prune-magnitude 50% onnx", [StepSpec("prune-magnitude", {"amount": "0.5"})], None),
    ("lowrank 0.9 energy onnx", [StepSpec("lowrank", {"energy": "0.9"})], None),
]


def p50(model: Path, backend: str, threads: int, iterations: int, rounds: int,
        shapes: dict[str, list[int]]) -> float:
    cfg = RunConfig(model=str(model), backend=backend, iterations=iterations, warmup=20,
                    shapes=shapes,
                    samplers=False, options=BackendOptions(threads=threads, precision=(
                        "f32" if backend == "openvino" else None)))
    return statistics.median(run_profile(cfg, lambda e: None)["latency_ms"]["p50"]
                             for _ in range(rounds))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default="sample,resnet50")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1, help="batch for the sample (dynamic batch)")
    args = ap.parse_args()
    import onnx

    light = Path(onnx.__file__).parent / "backend/test/data/light"
    models = {"sample": (ROOT / "resources/samples/digits_cnn.onnx", "sample", "sample",
                         max(100, 2000 // args.batch), {"input": [args.batch, 1, 8, 8]}),
              "resnet50": (light / "light_resnet50.onnx", None, "random", 30, {})}
    work = Path(tempfile.mkdtemp(prefix="modeldeck-variants-"))
    for key in args.models.split(","):
        src, eval_data, calib, iters, shapes = models[key]
        print(f"\n{src.name} (threads {args.threads}; shapes {shapes or 'as stored'}; "
              f"p50 of {args.rounds} runs x {iters} "
              f"iterations; eval {eval_data or 'none: fidelity vs FP32 on generated inputs'})")
        print(f"  {'variant':<26s} {'size':>7s} {'ORT p50':>9s} {'OV p50':>9s} {'acc/cos':>9s}"
              f"   (latency relative to FP32 on ONNX Runtime)")
        base = None
        for name, passes, to in VARIANTS:
            if key == "resnet50" and passes and passes[0].name in ("int8-static",):
                passes = [StepSpec("int8-static", {"samples": "16"})]
            out = work / f"{key}-{name.replace(' ', '_')}{'.xml' if to else '.onnx'}"
            t0 = time.perf_counter()
            if passes or to:
                res = run_pipeline(ConvertSpec(model=str(src), output=str(out), to=to,
                                               passes=tuple(passes), eval=eval_data,
                                               calib=calib, verify_samples=1000))
                step = res["steps"][-1]
                source_size = res["steps"][0]["size_bytes"]
            else:
                out = src
                res = run_pipeline(ConvertSpec(model=str(src), output=str(work / "x.xml"),
                                               to="openvino", eval=eval_data,
                                               verify_samples=1000))
                step = res["steps"][0]
                source_size = step["size_bytes"]
            quality = (step["accuracy"] or {}).get("accuracy") if eval_data else \
                (step["fidelity"] or {}).get("cosine")
            ort = p50(out, "onnxruntime", args.threads, iters, args.rounds, shapes) \
                if out.suffix == ".onnx" else None
            ov = p50(out, "openvino", args.threads, iters, args.rounds, shapes)
            base = base or ort
            fmt = lambda v: "—" if v is None else f"{v / base:.2f}x"  # noqa: E731
            print(f"  {name:<26s} {step['size_bytes'] / source_size:>6.2f}x {fmt(ort):>9s} "
                  f"{fmt(ov):>9s} {quality if quality is None else round(quality, 4)!s:>9s}"
                  f"   ({time.perf_counter() - t0:.0f} s)")
        print(f"  FP32 ONNX Runtime p50 = {base:.4f} ms")


if __name__ == "__main__":
    main()
