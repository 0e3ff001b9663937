"""Compare variants of a model: same inputs, same backend settings, one row per model.

Each model is profiled with the same RunConfig (only the path changes) and run on the same
verification inputs, so latency, memory, fidelity against the first model and accuracy sit side
by side. Per-layer times are matched by node name where both models have the node.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.errors import ModelDeckError
from profilers.runner import Emit, RunConfig, run_profile

DEFAULT_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "openvino",
                   "torch": "torch"}


def backend_for(model: str | Path, fallback: str = "onnxruntime") -> str:
    """The backend a model runs on when none is named: its format's default (TorchScript and
    .pt2 → torch, OpenVINO IR → openvino). A file that cannot be read gets `fallback`, and the
    run then says what is wrong with it."""
    from converters.formats import detect_format

    try:
        return DEFAULT_BACKEND.get(detect_format(Path(model)).name, fallback)
    except (ModelDeckError, OSError, ValueError):
        return fallback


def run_compare(models: list[str], base: RunConfig, eval_data: str | None = None,
                emit: Emit = lambda e: None, cancelled: Callable[[], bool] = lambda: False,
                backend_given: bool = True, verify_samples: int = 256) -> dict[str, Any]:
    from converters.formats import detect_format
    from converters.passes import ModelFile
    from profilers.verify import (
        classification_metrics, fidelity, run_model, verification_inputs,
    )

    if len(models) < 2:
        raise ModelDeckError("compare needs at least two models")
    files = [ModelFile(Path(m), detect_format(Path(m)).name) for m in models]
    feeds, labels, _, feeds_source, _ = verification_inputs(
        files[0], shapes=dict(base.shapes), inputs=base.inputs_npz, eval=eval_data,
        samples=verify_samples)
    resolved: dict[str, list[int]] | None = None  # the first run's sizes, for every variant
    rows: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    reference = None
    for i, mf in enumerate(files):
        backend = base.backend if backend_given else DEFAULT_BACKEND[mf.format]
        emit({"event": "stage", "stage": "compare", "message": f"model {i + 1} of {len(files)}: "
              f"{mf.path.name} on {backend}"})
        cfg = dataclasses.replace(base, model=str(mf.path), backend=backend)
        if resolved is not None and not base.inputs_npz:
            cfg = dataclasses.replace(cfg, shapes=resolved)

        def sub(event: dict[str, Any], i=i) -> None:
            if event.get("event") in ("samples", "progress", "budget"):
                emit({**event, "model_index": i})

        report = run_profile(cfg, sub, cancelled)
        if resolved is None:  # in the runtime's names; a re-export's other names map by order
            resolved = {k: v["shape"] for k, v in report["inputs"].items()}
        outputs = run_model(mf, feeds, backend=backend)[0]
        if reference is None:
            reference = outputs
        reports.append(report)
        rows.append({
            "model": str(mf.path), "format": mf.format, "backend": backend,
            "size_bytes": mf.size_bytes(), "params": report["model"]["params"],
            "macs": report["model"]["macs"],
            "latency_ms": {k: report["latency_ms"][k] for k in ("p50", "p90", "p99", "mean")},
            "throughput_ips": report["throughput_ips"],
            "rss_peak_mb": report["memory"]["rss_peak_mb"],
            "fidelity": fidelity(reference, outputs),
            "accuracy": classification_metrics(outputs, labels) if labels is not None else None,
            "layers": report["layers"],
        })
    first = rows[0]
    for r in rows:
        r["relative"] = {
            "latency_p50": r["latency_ms"]["p50"] / first["latency_ms"]["p50"],
            "size": r["size_bytes"] / first["size_bytes"] if first["size_bytes"] else None,
        }
    return {"schema": "modeldeck.compare/1", "rows": rows, "verified_on": feeds_source,
            "config": base.to_dict(), "layer_deltas": layer_deltas(rows),
            "environment": reports[0]["environment"]}


def layer_deltas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-layer time of every model next to the first, for layers present in both."""
    if not rows or not rows[0]["layers"]:
        return []
    base = {layer["name"]: layer for layer in rows[0]["layers"]}
    out = []
    for i, r in enumerate(rows[1:], start=1):
        for layer in r["layers"]:
            ref = base.get(layer["name"])
            if ref is None:
                continue
            out.append({"model_index": i, "name": layer["name"], "op_type": layer["op_type"],
                        "base_ms": ref["time_ms"], "time_ms": layer["time_ms"],
                        "delta_ms": layer["time_ms"] - ref["time_ms"]})
    return sorted(out, key=lambda d: d["delta_ms"])
