"""Accuracy-aware INT8 on OpenVINO: NNCF's quantize_with_accuracy_control.

Used by the search when full INT8 through NNCF misses the budget: NNCF quantizes the IR, ranks
its quantizers by how much accuracy each costs (on the validation data) and returns the most
sensitive ones to float until the metric is within `max_drop` of the float model's. The metric
is the constraint the full INT8 missed: top-1 accuracy against the labels, or the cosine of the
outputs with the FP32 baseline's (fidelity, when there are no labels or cosine was the miss).

NNCF, OpenVINO and numpy only inside the functions (the window imports app.optimize).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
BATCH = 16  # validation batch where the IR's batch dimension is free


def quantize_with_accuracy_control(
        ir: Path, out: Path, calib: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
        reference: np.ndarray, labels: np.ndarray | None, metric: str, max_drop: float,
        calib_samples: int = 300, cancelled: Callable[[], bool] = lambda: False
) -> dict[str, Any]:
    """Quantize the OpenVINO IR `ir` with NNCF's accuracy control; save it to `out` (.xml).

    `feeds` are the validation inputs, `reference` the FP32 baseline's outputs on them,
    `labels` their labels (None: fidelity only). Returns details for the lineage record:
    NNCF's own metric figures and how many quantizers it returned to float."""
    import nncf
    import openvino as ov

    from converters.errors import Cancelled, ModelDeckError

    if metric not in ("accuracy", "cosine"):
        raise ModelDeckError(f"accuracy control: unknown metric {metric!r}")
    if metric == "accuracy" and labels is None:
        raise ModelDeckError("accuracy control on accuracy needs labelled evaluation data")
    core = ov.Core()
    model = core.read_model(str(ir))
    inputs = [p.get_any_name() for p in model.inputs]
    if len(inputs) != 1 or len(feeds) != 1 or len(calib) != 1:
        raise ModelDeckError("accuracy control here takes models with one input")
    shape = model.inputs[0].get_partial_shape()
    fixed = shape.rank.is_static and len(shape) and shape[0].is_static
    batch = shape[0].get_length() if fixed else BATCH
    x_val = next(iter(feeds.values()))
    x_cal = next(iter(calib.values()))[:calib_samples]
    dtype = model.inputs[0].get_element_type().to_dtype()
    n = len(x_val)

    def check() -> None:
        if cancelled():
            raise Cancelled("cancelled")

    def calib_item(x: np.ndarray) -> np.ndarray:
        check()
        return np.ascontiguousarray(x, dtype=dtype)

    # calibration one sample at a time (NNCF's advice); validation in batches of `batch`
    cal_items = [x_cal[i:i + 1] for i in range(len(x_cal))] if not fixed or batch == 1 else [
        x_cal[i:i + batch] for i in range(0, len(x_cal) - len(x_cal) % batch, batch)]
    val_items = [(s, x_val[s:s + batch]) for s in range(0, n, batch)]

    def run_all(compiled, items) -> np.ndarray:
        parts = []
        for _s, x in items:
            check()
            real = len(x)
            if real < batch and fixed:
                x = np.concatenate([x, np.repeat(x[-1:], batch - real, axis=0)])
            out = compiled(np.ascontiguousarray(x, dtype=dtype))[0]
            parts.append(np.asarray(out)[:real])
        return np.concatenate(parts)

    def score(out: np.ndarray, idx: np.ndarray) -> float:
        if metric == "accuracy":
            return float(np.mean(out.argmax(axis=-1) == labels[idx]))
        return _cosine(reference[idx], out)

    def validate(compiled, items) -> tuple[float, list[float]]:
        """NNCF's protocol: the metric and one value per item (here: per batch), which makes
        NNCF rank on the metric itself rather than on raw outputs."""
        items = list(items)
        out = run_all(compiled, items)
        per, idx_all, at = [], [], 0
        for s, x in items:
            idx = np.arange(s, s + len(x))
            per.append(score(out[at:at + len(x)], idx))
            idx_all.append(idx)
            at += len(x)
        return score(out, np.concatenate(idx_all)), per

    ignored = None
    try:
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(cal_items, calib_item), nncf.Dataset(val_items),
            validate, max_drop=max_drop, subset_size=len(cal_items), ignored_scope=ignored)
    except Cancelled:
        raise
    except Exception as e:  # nncf.InternalError / ValidationError / OpenVINO RuntimeError
        from converters.passes._common import error_line

        raise ModelDeckError(f"NNCF's accuracy control failed: {error_line(e)}") from e
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return {"engine": "nncf.quantize_with_accuracy_control", "metric": metric,
            "max_drop": max_drop, "calibration_samples": len(x_cal),
            "validation_samples": n, "fake_quantize": _count(quantized, "FakeQuantize"),
            "nncf": nncf.__version__}


def write_lineage(path: Path, source: Path, details: dict[str, Any]) -> Path:
    """A record of how the model was made (not a `convert --recipe`: the layers NNCF returns
    to float depend on the validation data; `optimize` rebuilds it)."""
    path.write_text(json.dumps({"schema": "modeldeck.optimize-step/1", "source": str(source),
                                "step": details}, indent=2), encoding="utf-8")
    return path


def _count(model: Any, op: str) -> int:
    return sum(1 for o in model.get_ops() if o.get_type_name() == op)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den else 0.0
