"""What optimize's energy figure sees: CPU (or RAPL energy) per inference of one model on ONNX
Runtime at 1 thread, 2 threads with the pool spinning and 2 threads without, interleaved in the
same rounds, read as `optimize --objective energy` reads it (around each block of iterations,
pool threads charged to their own session) and, for contrast, with the process's CPU time per
block only (a spinning pool's tail then lands on whichever runner comes next).

Prints ratios to 1 thread, never gates on absolute figures:

    .venv/bin/python bench/energy_bench.py [--model resources/samples/digits_vgg.onnx]
        [--data resources/samples/digits_vgg_test.npz] [--rounds 6]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = ROOT / "resources" / "samples"


def main(argv: list[str] | None = None) -> int:
    from app.optimize.energy import EnergyMeter, session_threads
    from app.optimize.honest import interleaved_rounds, median_interval
    from app.optimize.search import _match, _Run
    from profilers.backends import BackendOptions, get_backend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SAMPLES / "digits_vgg.onnx"))
    ap.add_argument("--data", default=str(SAMPLES / "digits_vgg_test.npz"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--round-ms", type=float, default=150.0)
    args = ap.parse_args(argv)
    data = np.load(args.data)
    x = data["inputs"][:1] if "inputs" in data else next(iter(data.values()))[:1]

    def load(threads: int, spinning: bool | None) -> _Run:
        b = get_backend("onnxruntime")()
        with session_threads("onnxruntime") as pool:
            b.load(Path(args.model), "onnx", "CPU",
                   BackendOptions(threads=threads, spinning=spinning))
        return _Run(b, _match({"input": x}, b.input_specs()), pool_threads=pool)

    configs = {"1 thread": (1, None), "2 threads, spinning": (2, True),
               "2 threads, no spinning": (2, False)}
    runs = {name: load(*c) for name, c in configs.items()}
    try:
        for r in runs.values():
            for _ in range(5):
                r.once()
        t = time.perf_counter()
        runs["1 thread"].once()
        latency = (time.perf_counter() - t) * 1e3
        iters = int(min(400, max(10, args.round_ms / max(latency, 1e-3))))
        order = list(runs.values())
        owned = EnergyMeter.for_runs(order)
        plain = EnergyMeter(len(order), rapl=owned.rapl)  # no pool threads: block CPU only
        lat = interleaved_rounds([r.once for r in order], args.rounds, iters, meter=_Both(
            owned, plain))
    finally:
        for r in runs.values():
            r.close()
    print(f"{args.model}: {args.rounds} interleaved rounds x {iters} iterations per runner; "
          f"energy source {owned.source} ({owned.note})")
    base = owned.figures(0)
    base_plain = plain.figures(0)
    for i, name in enumerate(runs):
        f, fp = owned.figures(i), plain.figures(i)
        p50 = median_interval(lat[i]).value
        print(f"  {name:24s} p50 {p50:8.3f} ms  CPU/inference {f['cpu_ms']['value']:7.3f} ms "
              f"[{f['cpu_ms']['low']:.3f}, {f['cpu_ms']['high']:.3f}]  "
              f"x{f['cpu_ms']['value'] / base['cpu_ms']['value']:.2f} of 1 thread  "
              f"| block CPU only: {fp['cpu_ms']['value']:7.3f} ms "
              f"x{fp['cpu_ms']['value'] / base_plain['cpu_ms']['value']:.2f}  "
              f"| {f['value']:.3g} mJ ({f['source']})")
    return 0


class _Both:
    """Feeds two meters from the same blocks."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def read(self):
        return self.a.read(), self.b.read()

    def add(self, runner: int, start, iterations: int) -> None:
        self.a.add(runner, start[0], iterations)
        self.b.add(runner, start[1], iterations)

    def end_round(self) -> None:
        self.a.end_round()
        self.b.end_round()


if __name__ == "__main__":
    sys.exit(main())
