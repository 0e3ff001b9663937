"""Checks ModelDeck's GPU paths on a machine with an NVIDIA GPU: torch CUDA, ONNX Runtime's CUDA
execution provider, and NVML memory/power sampling, through the same CLI a user runs.

    PYTHONPATH=. python3 bench/cuda_check.py --out OUTDIR

Prints one line per check and writes every report to OUTDIR. Needs no display and no OpenVINO.
On a machine without a GPU every check says why it cannot run (that is itself a check of the
messages a user sees).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ONNX = ROOT / "resources" / "samples" / "digits_cnn.onnx"


def cli(*args: str, timeout: float = 300) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, text=True,
                       capture_output=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(
                           x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)})
    return p.returncode, (p.stdout + p.stderr).strip(), time.perf_counter() - t0


def make_torchscript(out: Path) -> Path | None:
    """A ResNet-like block stack traced with this machine's torch (a file saved by a newer torch
    may not load in an older one), big enough for the GPU to draw measurable power."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None

    class Block(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.a = nn.Conv2d(c, c, 3, padding=1)
            self.b = nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x):
            return torch.relu(x + self.b(torch.relu(self.a(x))))

    model = nn.Sequential(nn.Conv2d(3, 128, 3, padding=1), *[Block(128) for _ in range(8)],
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)).eval()
    path = out / "convnet.ts.pt"
    with torch.no_grad():
        torch.jit.trace(model, torch.randn(8, 3, 224, 224)).save(str(path))
    return path


def summarise(path: Path) -> dict:
    r = json.loads(path.read_text())
    lat = r.get("latency_ms", {})
    return {"backend": r.get("backend"), "device": r.get("device"),
            "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"), "p50_ci": lat.get("p50_ci"),
            "device_latency_ms": r.get("latency_device_ms"),
            "throughput_ips": r.get("throughput_ips"), "stability": r.get("stability"),
            "runtime": r.get("runtime"), "gpu": r.get("gpu"), "power": r.get("power"),
            "memory": r.get("memory"), "timelines": sorted(r.get("timelines") or {}),
            "layers": len(r.get("layers") or []),
            "top_layers": [(x.get("name"), x.get("op_type"), x.get("time_ms"))
                           for x in (r.get("layers") or [])[:5]]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("build/cuda_check"))
    ap.add_argument("--iterations", type=int, default=300)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}

    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,power.draw,"
                              "power.limit", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        smi = f"nvidia-smi not usable: {e}"
    results["nvidia_smi"] = smi
    print("nvidia-smi:", smi)

    rc, text, _ = cli("devices", "--json")
    results["devices"] = json.loads(text) if rc == 0 and text.startswith(("[", "{")) else text
    print("devices:", text[:2000])

    runs = []
    ts = make_torchscript(Path(tempfile.mkdtemp(prefix="modeldeck-cuda-")))
    it = str(args.iterations)
    if ts is not None:
        runs += [("torch_cuda_convnet", [str(ts), "--backend", "torch", "--device", "CUDA",
                                          "--shape", "input=8x3x224x224", "--trust", "--layers"]),
                 ("torch_cpu_convnet_1it", [str(ts), "--backend", "torch", "--device", "CPU",
                                             "--shape", "input=1x3x64x64", "--trust",
                                             "--iterations", "20"])]
    runs += [("torch_cuda_sample", [str(SAMPLE_ONNX.with_suffix(".ts.pt")), "--backend", "torch",
                                    "--device", "CUDA", "--trust"]),
             ("ort_cuda_sample", [str(SAMPLE_ONNX), "--backend", "onnxruntime", "--device",
                                  "CUDA", "--layers"]),
             ("ort_cpu_sample", [str(SAMPLE_ONNX), "--backend", "onnxruntime", "--device",
                                 "CPU", "--threads", "1"])]
    for name, argv in runs:
        out_json = args.out / f"{name}.json"
        if "--iterations" not in argv:
            argv = [*argv, "--iterations", it]
        rc, text, wall = cli("profile", *argv, "--json", str(out_json), "--quiet")
        entry: dict[str, object] = {"rc": rc, "wall_s": round(wall, 1)}
        if rc == 0 and out_json.exists():
            entry.update(summarise(out_json))
        else:
            entry["message"] = text[-1500:]
        results[name] = entry
        print(f"{name}: {json.dumps(entry)}")

    (args.out / "summary.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
