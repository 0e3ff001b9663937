"""Compare variants of a model: same inputs, same backend settings, one row per model.

Each model is profiled with the same RunConfig (only the path changes) and run on the same
verification inputs, so latency, memory, fidelity against the first model and accuracy sit side
by side. Per-layer times are matched by node name where both models have the node.

Latency is then timed again, interleaved: every model loaded at once, then `rounds` rounds in
which each model runs its share of the iterations (the order reversed every other round), so
drift of the machine hits every model alike. Each ratio to the first model comes with a
bootstrap interval over rounds; one that spans 1 reads "no measurable difference".
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.errors import ModelDeckError
from converters.workload import WorkloadError
from profilers.runner import Emit, RunConfig, run_profile

NO_DIFFERENCE = "no measurable difference"
ONE_ROUND = ("one round cannot tell (the order is reversed from the second round on): "
             "time 2 rounds or more")

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

        try:
            report = run_profile(cfg, sub, cancelled)
        except WorkloadError as e:  # sizes only: a refused consent or a bad file says its own
            if resolved is None or base.inputs_npz or base.shapes:
                raise
            sizes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in resolved.items())
            raise ModelDeckError(
                f"{mf.path.name} does not take the inputs of {files[0].path.name} ({sizes}): "
                f"compare variants of one model, which share their inputs ({e})") from None
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
            "iterations": report["iterations"],
            "stability": {k: report["stability"].get(k) for k in ("verdict", "warnings")},
            "throughput_ips": report["throughput_ips"],
            "rss_peak_mb": report["memory"]["rss_peak_mb"],
            "fidelity": fidelity(reference, outputs),
            "accuracy": classification_metrics(outputs, labels) if labels is not None else None,
            "layers": report["layers"],
            "layers_summary": report.get("layers_summary"),
        })
    configs = [dataclasses.replace(base, model=r["model"], backend=r["backend"],
                                   shapes=resolved if not base.inputs_npz else base.shapes)
               for r in rows]
    total = base.iterations or 100  # per model, split across the rounds
    rounds = min(base.rounds, total)
    per_round = math.ceil(total / rounds)
    timed = interleaved_rounds(configs, rounds, per_round, emit, cancelled)
    first = rows[0]
    for i, (r, model_rounds) in enumerate(zip(rows, timed)):
        r["latency_ms_solo"] = r["latency_ms"]  # the model's own profile run, for reference
        r["latency_ms"] = _interleaved_latency(model_rounds)
        r["relative"] = {
            "size": r["size_bytes"] / first["size_bytes"] if first["size_bytes"] else None,
            **(ab_ratio(timed[0], model_rounds) if i else
               {"latency_p50": 1.0, "latency_p50_ci": [1.0, 1.0], "latency_verdict": "reference"}),
        }
    return {"schema": "modeldeck.compare/2", "rows": rows, "verified_on": feeds_source,
            "config": base.to_dict(), "layer_deltas": layer_deltas(rows),
            "interleaved": {"rounds": rounds, "iterations_per_round": per_round,
                            "order": "reversed every other round",
                            "interval": "95 % bootstrap over rounds (rounds and iterations "
                                        "resampled)"},
            "environment": reports[0]["environment"]}


def interleaved_rounds(configs: list[RunConfig], rounds: int, per_round: int,
                       emit: Emit = lambda e: None,
                       cancelled: Callable[[], bool] = lambda: False) -> list[list[Any]]:
    """Per model, per round, the latencies (ms) of `per_round` iterations, the models taking
    turns within every round. All models are loaded and warmed up (until settled) first, so
    they are in memory together (the profiles before ran one at a time)."""
    import numpy as np

    from converters.errors import Cancelled
    from converters.formats import open_model
    from profilers.runner import (_default_threads, _load_backend, _prepare_inputs,
                                  _sizes_to_open_at, _warm_up)

    def stage(name: str, msg: str = "") -> None:
        if cancelled():
            raise Cancelled
        emit({"event": "stage", "stage": "compare", "message": msg})

    loaded = []
    try:
        for i, cfg in enumerate(configs):
            graph = open_model(cfg.model, input_shapes=_sizes_to_open_at(cfg))
            options, _ = _default_threads(dataclasses.replace(cfg.options, profile_layers=False))
            backend, _ = _load_backend(cfg, graph.meta.format, options)
            loaded.append(backend)
            _, feeds = _prepare_inputs(cfg, backend, graph)
            backend.fix_shapes(feeds)  # as the profile's timed loop does
            backend.infer(feeds)
            backend.prepare(feeds)
            _warm_up(cfg, backend, lambda name, msg, i=i: stage(
                name, f"interleaved timing: warming up model {i + 1} of {len(configs)}"),
                cancelled)
        out: list[list[Any]] = [[] for _ in configs]
        for r in range(rounds):
            stage("compare", f"interleaved timing: round {r + 1} of {rounds}")
            emit({"event": "progress", "frac": round(r / rounds, 4),
                  "message": f"interleaved round {r + 1} of {rounds}"})
            order = range(len(configs)) if r % 2 == 0 else reversed(range(len(configs)))
            for i in order:
                backend, values = loaded[i], np.empty(per_round)
                for k in range(per_round):
                    a = time.perf_counter_ns()
                    backend.run_prepared()
                    values[k] = (time.perf_counter_ns() - a) / 1e6
                out[i].append(values)
                if cancelled():
                    raise Cancelled
        return out
    finally:
        for backend in loaded:
            backend.close()


def _interleaved_latency(rounds: list[Any]) -> dict[str, Any]:
    import numpy as np

    from profilers.stats import latency_intervals

    v = np.concatenate(rounds)
    p50, p90, p99 = (float(x) for x in np.percentile(v, [50, 90, 99]))
    return {"p50": p50, "p90": p90, "p99": p99, "mean": float(v.mean()),
            "count": int(v.size), **latency_intervals(v)}


def ab_ratio(reference: list[Any], rounds: list[Any]) -> dict[str, Any]:
    """p50 ratio of a model to the reference with its interval, and what it says."""
    from profilers.stats import ratio_ci

    ratio, low, high = ratio_ci(reference, rounds)
    if len(rounds) < 2:  # no order reversed, no spread between rounds: nothing to claim
        verdict = ONE_ROUND
    elif low <= 1.0 <= high:
        verdict = NO_DIFFERENCE
    elif high < 1.0:
        verdict = f"faster: {1 - high:.1%} to {1 - low:.1%} less time"
    else:
        verdict = f"slower: {low - 1:.1%} to {high - 1:.1%} more time"
    return {"latency_p50": ratio, "latency_p50_ci": [low, high], "latency_verdict": verdict}


def _node_match(base: str, other: str) -> dict[str, str]:
    """other node id -> base node id, from the graph diff's matching (names, then structure
    through Q/DQ and folded ops): a conversion renames the layers it changes."""
    from converters.formats import open_model
    from converters.graph_diff import diff_graphs

    try:
        d = diff_graphs(open_model(Path(base)), open_model(Path(other)))
    except (ModelDeckError, OSError, ValueError):  # no matching: layers pair by name only
        return {}
    return {m.other: m.base for m in d.matches}


def layer_deltas(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-layer time of every model next to the first, for layers present in both (by name,
    else by the graph matching), the biggest changes first."""
    if not rows or not rows[0]["layers"]:
        return []
    base = {layer["name"]: layer for layer in rows[0]["layers"]}
    by_node = {layer["node_id"]: layer for layer in rows[0]["layers"] if layer.get("node_id")}
    out = []
    for i, r in enumerate(rows[1:], start=1):
        match: dict[str, str] | None = None
        for layer in r["layers"]:
            ref = base.get(layer["name"])
            if ref is None and layer.get("node_id"):
                if match is None:
                    match = _node_match(rows[0]["model"], r["model"])
                ref = by_node.get(match.get(layer["node_id"], ""))
            if ref is None:
                continue
            out.append({"model_index": i, "name": layer["name"], "op_type": layer["op_type"],
                        "base_name": ref["name"], "base_ms": ref["time_ms"],
                        "time_ms": layer["time_ms"],
                        "delta_ms": layer["time_ms"] - ref["time_ms"]})
    return sorted(out, key=lambda d: -abs(d["delta_ms"]))
