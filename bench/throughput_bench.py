"""Samples/s of a model served at threads × streams × batch, every configuration interleaved
with every other in the same rounds (what `optimize --objective throughput` measures for its
finalists). Prints one figure per configuration with its 95 % interval, the ratio to FP32 ONNX
Runtime at the same serving, and what the serving brings to FP32 ONNX Runtime (its samples/s
over batch 1, one request in flight, same threads). Ratios only: on a shared machine the
absolute figures move with the load.

    .venv/bin/python bench/throughput_bench.py [--model resources/samples/digits_vgg.onnx]
        [--int8] [--rounds 6] [--block-ms 75]

--int8 adds ONNX Runtime's static INT8 of the model (calibrated on --calib), built first.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLES = ROOT / "resources" / "samples"


def build_int8(model: Path, calib: str, out_dir: Path) -> Path:
    from app.pipeline import ConvertSpec, StepSpec, run_pipeline

    spec = ConvertSpec(model=str(model), output=str(out_dir / f"{model.stem}-int8.onnx"),
                       passes=(StepSpec("int8-static", {"method": "minmax",
                                                        "per_channel": True}),),
                       calib=calib, verify_samples=16)
    return Path(run_pipeline(spec, emit=lambda e: None)["output"])


def main() -> int:
    from app.optimize.search import usable_cores
    from app.optimize.throughput import (
        BATCHES, Serving, batch_of, figures, interleaved_throughput, open_server,
        stream_choices,
    )

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(SAMPLES / "digits_vgg.onnx"))
    ap.add_argument("--data", default=str(SAMPLES / "digits_vgg_test.npz"))
    ap.add_argument("--calib", default=str(SAMPLES / "digits_vgg_calib.npz"))
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--block-ms", type=float, default=75.0)
    a = ap.parse_args()

    model = Path(a.model)
    data = np.load(a.data)
    feeds = {"input": data["inputs"][:16].astype(np.float32)}
    variants = [("FP32 onnxruntime", "onnxruntime", None, model),
                ("FP32 openvino", "openvino", "f32", model)]
    tmp = Path(tempfile.mkdtemp(prefix="modeldeck-tp-"))
    if a.int8:
        t = time.monotonic()
        variants.append(("INT8 onnxruntime", "onnxruntime", None,
                         build_int8(model, a.calib, tmp)))
        print(f"built INT8 in {time.monotonic() - t:.1f} s")

    probe = open_server(model, "onnx", "onnxruntime", None, Serving(1), feeds)
    fixed, why = batch_of(probe.backend.input_specs())
    probe.close()
    batches = BATCHES if fixed is None else (fixed,)
    cores = usable_cores()
    print(f"{model.name}: {why}; usable cores {cores}")
    configs = [Serving(t, s, b) for t in dict.fromkeys((1, cores))
               for s in stream_choices(t, cores) for b in batches]
    servers, keys = [], []
    for label, backend, precision, path in variants:
        for cfg in configs:
            servers.append(open_server(path, "onnx", backend, precision, cfg, feeds))
            keys.append((label, cfg))
    t = time.monotonic()
    try:
        got = interleaved_throughput(servers, a.rounds, a.block_ms)
    finally:
        for s in servers:
            s.close()
    wall = time.monotonic() - t
    by = dict(zip(keys, got))
    print(f"{len(servers)} configurations, {a.rounds} interleaved rounds, {wall:.0f} s\n")
    print(f"{'variant':18s} {'thr':>3s} {'str':>3s} {'bat':>3s}  {'samples/s [95 %]':>24s}  "
          f"{'vs FP32 ORT same serving':>26s}  {'FP32 ORT: serving gain':>24s}  "
          f"{'request p50 ms':>14s}")
    for (label, cfg), m in by.items():
        base = by[("FP32 onnxruntime", cfg)]
        plain = by[("FP32 onnxruntime", Serving(cfg.threads, 1, batches[0]))]
        f = figures(m, base, plain, cfg)
        vs, gain = f["vs_baseline"], f.get("config_gain")
        lat = f.get("request_latency_ms") or {}
        print(f"{label:18s} {cfg.threads:3d} {cfg.streams:3d} {cfg.batch:3d}  "
              f"{f['value']:8.0f} [{f['low']:6.0f}, {f['high']:6.0f}]  "
              f"{vs['value']:6.2f}× [{vs['low']:.2f}, {vs['high']:.2f}]      "
              + (f"{gain['value']:6.2f}× [{gain['low']:.2f}, {gain['high']:.2f}]  "
                 if gain else f"{'(itself)':>24s}  ")
              + f"{lat.get('p50', float('nan')):14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
