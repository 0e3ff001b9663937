"""Inspect time (load + shape inference + analysis) for the onnx package's Model Zoo graphs.

Prints, per model, the median of several in-process runs and one cold `modeldeck inspect --json`
subprocess (Python start-up and imports included). Target: DenseNet-121 (1,746 nodes) < 0.3 s
in process. Also prints our parameter/MAC counts next to the published ones, and the peak of
live activations. Parameters here include BatchNorm running mean/variance, which the ONNX graphs
store (torchvision's 25.557 M for ResNet-50 leaves out those 53 k); BatchNorm is FLOPs, not MACs.

    .venv/bin/python bench/inspect_bench.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converters.analysis import analyze  # noqa: E402
from converters.formats import open_model  # noqa: E402

PUBLISHED = {  # params, MACs at 224x224 (torchvision / original papers; None: not published)
    "bvlc_alexnet": (61.0e6, 0.72e9), "densenet121": (7.98e6, 2.87e9),
    "inception_v1": (6.8e6, 1.5e9), "inception_v2": (11.2e6, 2.0e9),
    "resnet50": (25.56e6, 4.1e9), "shufflenet": (None, None), "squeezenet": (1.24e6, 0.35e9),
    "vgg19": (143.67e6, 19.6e9), "zfnet512": (None, None),
}


def main(repeats: int = 7) -> None:
    import onnx

    light = Path(onnx.__file__).parent / "backend/test/data/light"
    print(f"{'model':<14} {'nodes':>6} {'params':>9} {'pub.':>8} {'GMACs':>7} {'pub.':>6} "
          f"{'act MiB':>7} {'inspect ms':>11} {'cold CLI ms':>12}")
    for name, (p_pub, m_pub) in PUBLISHED.items():
        path = light / f"light_{name}.onnx"
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = analyze(open_model(path))
            times.append(time.perf_counter() - t0)
        cold = _cold_cli_ms(path)
        pub_p = f"{p_pub / 1e6:.2f}M" if p_pub else "—"
        pub_m = f"{m_pub / 1e9:.2f}" if m_pub else "—"
        print(f"{name:<14} {a.node_count:>6} {a.params / 1e6:>8.2f}M {pub_p:>8} "
              f"{a.macs / 1e9:>7.2f} {pub_m:>6} {a.activation_bytes_peak / 2**20:>7.1f} "
              f"{statistics.median(times) * 1e3:>11.0f} {cold:>12}")
    dn = light / "light_densenet121.onnx"
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        analyze(open_model(dn))
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    print(f"\nDenseNet-121 inspect: median {med * 1e3:.0f} ms over {repeats} runs; target 300 ms; "
          f"ratio to target {med / 0.3:.2f}")


def _cold_cli_ms(path: Path) -> str:
    """One `modeldeck inspect --json` subprocess, in ms; a failing CLI is reported, not fatal."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "app.cli", "inspect", str(path), "--json"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    ms = (time.perf_counter() - t0) * 1e3
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        print(f"  cold CLI failed (exit {proc.returncode}): {lines[-1] if lines else ''}",
              file=sys.stderr)
        return "failed"
    return f"{ms:.0f}"


if __name__ == "__main__":
    main()
