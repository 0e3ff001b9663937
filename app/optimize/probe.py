"""What this machine can do fast, read before any pass runs, and what that predicts for INT8.

INT8 is not faster everywhere: on x86 without VNNI the int8 dot product takes three instructions
(vpmaddubsw, vpmaddwd, vpaddd) and saturates, so INT8 convolutions often lose to FP32 with FMA;
with AVX-512 VNNI / AVX-VNNI one instruction does it, and AMX does whole tiles. On ARM, the
dot-product extension (asimddp) and i8mm play that role. Small convolutions (few channels) are
memory- and overhead-bound, so quantize/dequantize costs more than the integer math saves.

The prediction is stated before the search measures anything and confirmed or refuted by it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# cpuinfo flag -> what we call it. x86 first, then ARM (/proc/cpuinfo "Features").
X86_FLAGS = {
    "avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI", "avx512_bf16": "AVX-512 BF16", "avx512_fp16": "AVX-512 FP16",
    "amx_tile": "AMX", "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16",
}
ARM_FLAGS = {"asimd": "NEON", "asimddp": "dot-product", "i8mm": "i8mm", "fphp": "fp16",
             "asimdhp": "fp16 SIMD", "bf16": "bf16", "sve": "SVE", "sve2": "SVE2"}
SMALL_CONV_CHANNELS = 32  # below this many output channels a conv is "small" for INT8


@dataclass(frozen=True)
class MachineProbe:
    arch: str
    cpu_model: str
    cores: int
    isa: tuple[str, ...]  # names from X86_FLAGS / ARM_FLAGS present here
    runtimes: dict[str, str] = field(default_factory=dict)  # name -> version ("" absent)
    devices: dict[str, list[str]] = field(default_factory=dict)  # runtime -> device names

    @property
    def int8_dot(self) -> str | None:
        """The fast int8 dot-product unit, or None when INT8 must emulate it."""
        for name in ("AMX-INT8", "AVX-512 VNNI", "AVX-VNNI", "i8mm", "dot-product"):
            if name in self.isa:
                return name
        return None

    @property
    def bf16(self) -> bool:
        return any(n in self.isa for n in ("AMX-BF16", "AVX-512 BF16", "bf16"))

    def fingerprint(self) -> str:
        """What makes a measurement from here comparable: CPU, ISA, cores, runtime versions."""
        text = json.dumps([self.arch, self.cpu_model, self.cores, sorted(self.isa),
                           sorted(self.runtimes.items())], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "isa": list(self.isa), "int8_dot": self.int8_dot,
                "bf16": self.bf16, "fingerprint": self.fingerprint()}


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(CPU model, ISA names) from /proc/cpuinfo text, x86 ("flags") or ARM ("Features")."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags |= set(value.split())
    names = [n for f, n in X86_FLAGS.items() if f in flags]
    names += [n for f, n in ARM_FLAGS.items() if f in flags]
    return model, tuple(dict.fromkeys(names))


def _runtimes() -> tuple[dict[str, str], dict[str, list[str]]]:
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str] = {}
    for pkg in ("onnxruntime", "openvino", "torch", "nncf"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = ""
    devices: dict[str, list[str]] = {}
    # Each runtime asked directly (torch's import alone takes seconds: not needed here).
    if versions.get("onnxruntime"):
        try:
            import onnxruntime

            devices["onnxruntime"] = list(onnxruntime.get_available_providers())
        except Exception as e:  # a broken install is a runtime without devices
            devices["onnxruntime"] = []
            log.info("onnxruntime: %s", e)
    if versions.get("openvino"):
        try:
            import openvino

            devices["openvino"] = list(openvino.Core().available_devices)
        except Exception as e:
            devices["openvino"] = []
            log.info("openvino: %s", e)
    return versions, devices


def probe_machine(cpuinfo: str | None = None, with_runtimes: bool = True) -> MachineProbe:
    """Read this machine. `cpuinfo` text replaces /proc/cpuinfo (tests, remote targets)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    model, isa = parse_cpuinfo(cpuinfo)
    versions, devices = _runtimes() if with_runtimes else ({}, {})
    return MachineProbe(arch=platform.machine(), cpu_model=model or platform.processor(),
                        cores=os.cpu_count() or 1, isa=isa, runtimes=versions, devices=devices)


@dataclass(frozen=True)
class Prediction:
    int8: str  # "faster" | "slower" | "unclear"
    text: str  # one sentence a person reads before the search starts
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"int8": self.int8, "text": self.text, "reasons": list(self.reasons)}


def conv_profile(graph: Any) -> dict[str, Any]:
    """Share of MACs in convolutions / matmuls and how much of it is in small ones (few output
    channels, read from the weight's first dim); `dense_share`: in matrix products with a
    weight (Gemm / MatMul / linear: what a low-rank factorisation can shrink)."""
    from converters.analysis import analyze

    a = analyze(graph)
    cost = {c.node_id: int(c.macs or 0) for c in a.nodes}
    total = max(int(a.macs or 0), 1)
    heavy = small = dense = 0
    for item in graph.walk():
        node = item.node
        if not _is_heavy(node.op_type):
            continue
        macs = cost.get(node.id, 0)
        heavy += macs
        if _is_dense(item, node):
            dense += macs
        channels = _out_channels(item.graph, node)
        if channels is not None and channels < SMALL_CONV_CHANNELS:
            small += macs
    return {"macs": int(a.macs or 0), "heavy_share": heavy / total, "small_share": small / total,
            "dense_share": dense / total}


def graph_at_run_sizes(path: Path, fmt: str) -> Any:
    """The model's graph at the sizes it is run at (free dims resolved as every flow resolves
    them: batch 1, a typical sequence, an image size its layers accept), so its MACs are the
    real ones: at the declared sizes free dims count as 1, and a BERT encoder at sequence 128
    was counted at 0.3 M MACs, an OCR classifier at 0.1 M ('overheads dominate')."""
    from converters.errors import ModelDeckError
    from converters.formats import open_model
    from converters.workload import make_dry_check, resolve_workload

    declared = open_model(path)
    if fmt == "torch":
        return declared
    try:
        workload = resolve_workload(declared, None, None, None,
                                    dry_check=make_dry_check(str(path), fmt))
        if all(declared.graph.tensors[n].shape == workload.get(n).shape
               for n in declared.graph.inputs
               if n in declared.graph.tensors and workload.get(n) is not None):
            return declared
        return open_model(path, input_shapes=workload.shapes())
    except ModelDeckError as e:  # counted at the declared sizes, as inspect does
        log.info("MACs at the declared sizes: %s", e)
        return declared


_HEAVY = ("conv", "gemm", "matmul", "linear", "addmm", "bmm", "einsum")


def _is_heavy(op_type: str) -> bool:
    """Convolutions and matrix products, by any reader's spelling (ONNX Conv, OpenVINO
    Convolution, torch aten.convolution / aten.linear / aten.addmm)."""
    name = op_type.lower()
    return any(h in name for h in _HEAVY)


_DENSE = ("gemm", "matmul", "linear", "addmm")


def _is_dense(item: Any, node: Any) -> bool:
    """A matrix product by a weight (not activation × activation, as attention's Q·Kᵀ)."""
    name = node.op_type.lower()
    if "conv" in name or not any(d in name for d in _DENSE) or len(node.inputs) < 2:
        return False
    t = item.tensor(node.inputs[1])
    return bool(t is not None and t.is_weight)


def _out_channels(graph: Any, node: Any) -> int | None:
    try:
        shape = graph.tensors[node.inputs[1]].shape
        return int(shape[0]) if shape and isinstance(shape[0], int) else None
    except (KeyError, IndexError, AttributeError, TypeError, ValueError):
        return None


def predict_int8(probe: MachineProbe, model: dict[str, Any] | None = None) -> Prediction:
    """INT8 vs FP32 on this machine, from the ISA and (when known) the model's convolutions."""
    reasons: list[str] = []
    unit = probe.int8_dot
    heavy = (model or {}).get("heavy_share")
    small = (model or {}).get("small_share")
    macs = (model or {}).get("macs")
    if unit:
        reasons.append(f"{unit} present: one instruction per int8 dot product")
    elif probe.arch.lower() in ("x86_64", "amd64", "i686"):
        reasons.append("no VNNI or AMX: int8 dot products take three instructions and "
                       "saturate (ORT then needs reduce_range)")
    else:
        reasons.append("no int8 dot-product extension listed")
    if heavy is not None:
        reasons.append(f"{heavy:.0%} of MACs in convolutions / matmuls")
    if small is not None and small > 0.5:
        reasons.append(f"{small:.0%} of MACs in small convolutions (< {SMALL_CONV_CHANNELS} "
                       "channels)")
    if macs is not None and macs < 20e6:
        reasons.append(f"only {macs / 1e6:.1f} M MACs: overheads dominate")
    tiny = (macs is not None and macs < 20e6) or (small is not None and small > 0.5)
    if unit and not tiny and (heavy is None or heavy > 0.5):
        verdict, head = "faster", "INT8 likely faster here"
    elif not unit and (tiny or heavy is None or heavy <= 0.8):
        verdict, head = "slower", "INT8 likely slower here"
    elif not unit:
        verdict, head = "unclear", "INT8 may be only a little faster here"
    else:
        verdict, head = "unclear", "INT8 gain uncertain here"
    return Prediction(verdict, f"{head}: {'; '.join(reasons)}", tuple(reasons))


def check_prediction(pred: Prediction, int8_speedup: float | None,
                     interval: tuple[float, float] | None = None) -> dict[str, Any]:
    """Confirmed / refuted / unmeasured, from the measured INT8-over-FP32 speedup (same runtime,
    same threads). With an interval, a verdict needs the whole interval on one side of 1."""
    if int8_speedup is None:
        return {"verdict": "unmeasured", "text": "no INT8 variant was measured"}
    lo, hi = interval or (int8_speedup, int8_speedup)
    measured = "faster" if lo > 1.0 else "slower" if hi < 1.0 else "same"
    if pred.int8 == "unclear" or measured == "same":
        verdict = "inconclusive"
    else:
        verdict = "confirmed" if measured == pred.int8 else "refuted"
    return {"verdict": verdict, "measured": measured, "speedup": int8_speedup,
            "interval": list(interval) if interval else None,
            "text": f"prediction {verdict}: INT8 measured {int8_speedup:.2f}× FP32"
                    + (f" [{lo:.2f}, {hi:.2f}]" if interval else "")}
