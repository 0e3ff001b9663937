"""Low-rank candidates, only where the per-layer profile says they can pay.

The lowrank pass (converters/passes/lowrank.py) factorises a Gemm/MatMul weight K×N into K×r
and r×N: fewer MACs when r·(K+N) < K·N, on any runtime, and a smaller file. It only touches
matrix products by a weight, so it is worth a build only when those carry most of the model's
MACs (an MLP, a transformer encoder's projections and feed-forward layers); on a
convolution-dominated model (the VGG sample) the rest of the model's time is untouched, so the
candidates are not generated and the result's notes say why.

The outputs change (the weights are approximated): candidates are screened like the others and
rejected with the accuracy reason when they miss the budget. Each rank ratio is tried alone and,
with calibration data, followed by static INT8 (order.py: structure before precision).
"""
from __future__ import annotations

from typing import Any

from app.optimize.candidates import Candidate, _step

DENSE_THRESHOLD = 0.5  # share of MACs in Gemm/MatMul-by-a-weight from which low-rank is tried
RATIOS = (0.5, 0.25)  # fractions of each matrix's rank kept


def lowrank_candidates(profile: dict[str, Any] | None, source_format: str,
                       probe: Any, *, backends: tuple[str, ...] = (),
                       threads: int | None = 1, has_calibration: bool
                       ) -> tuple[list[Candidate], str]:
    """(candidates, the note saying why they were or were not generated)."""
    dense = (profile or {}).get("dense_share")
    if dense is None:
        return [], "low-rank not tried: no per-layer MAC profile of this model"
    conv = max(0.0, float(profile.get("heavy_share") or 0.0) - dense)
    if dense < DENSE_THRESHOLD:
        return [], (f"low-rank not tried: matrix products by a weight (Gemm/MatMul) carry "
                    f"{dense:.0%} of the MACs, below the {DENSE_THRESHOLD:.0%} where factorising "
                    f"them pays (convolutions and other products carry {conv:.0%})")
    if source_format not in ("onnx", "torch"):  # conversions never go back to ONNX
        return [], (f"low-rank not tried: it rewrites ONNX graphs, and this {source_format} "
                    "model cannot be converted to ONNX")
    devices = getattr(probe, "devices", {}) or {}
    have = {b for b, devs in devices.items() if devs} or {"onnxruntime"}
    if "onnxruntime" not in (set(backends) or have) or "onnxruntime" not in have:
        return [], ("low-rank not tried: its candidates run on ONNX Runtime, which this search "
                    "does not use")
    onnx_to = "onnx" if source_format == "torch" else None
    out: list[Candidate] = []
    for ratio in RATIOS:
        tag = f"{round(ratio * 100)}"
        lowrank = _step("lowrank", ratio=ratio)
        out.append(Candidate(
            f"ort-lowrank{tag}", "lowrank", "onnxruntime", passes=(lowrank,), to=onnx_to,
            threads=threads,
            note=f"SVD of Gemm/MatMul weights keeping {ratio:.0%} of each rank"))
        if has_calibration:
            out.append(Candidate(
                f"ort-lowrank{tag}-int8", "lowrank-int8", "onnxruntime",
                passes=(lowrank, _step("int8-static", method="minmax", per_channel=True)),
                to=onnx_to, threads=threads, needs_calibration=True,
                note=f"low-rank ({ratio:.0%} of each rank), then static INT8"))
    ratios = ", ".join(f"{r:g}" for r in RATIOS)
    return out, (f"low-rank tried at rank ratios {ratios}"
                 + (" (alone and followed by INT8)" if has_calibration else "")
                 + f": matrix products by a weight carry {dense:.0%} of the MACs "
                   f"(≥ {DENSE_THRESHOLD:.0%})")


def cheap_first(todo: list[Candidate], extra: list[Candidate]) -> list[Candidate]:
    """`extra` placed before the first costly candidate of `todo` (pruning, distillation:
    candidates.generate puts those last), so a low-rank build (seconds) is not left waiting
    behind minutes of training."""
    at = next((i for i, c in enumerate(todo) if c.cost > 30), len(todo))
    return todo[:at] + list(extra) + todo[at:]
