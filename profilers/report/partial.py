"""A report for a run that did not finish: status, the error, and everything that arrived.

A worker killed mid-run (crash, memory cap, timeout, cancel) sends no report; the samples and
stages it streamed before are still the record of what happened, so the CLI writes them with
the same schema as a finished run (the writers treat missing figures as unknown, never as 0).
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

_UNITS = {"ms": "ms", "mb": "MB", "percent": "%", "w": "W", "c": "°C"}


def _unit(name: str) -> str | None:
    return _UNITS.get(name.rsplit("_", 1)[-1].lower()) if "_" in name else None


def partial_report(config: dict[str, Any], *, status: str, error: str | None,
                   error_kind: str | None = None, samples: dict[str, list] | None = None,
                   stages: list[dict[str, Any]] | None = None,
                   layers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report of an unfinished profile (status "failed" or "cancelled")."""
    from profilers.report import SCHEMA
    from profilers.stats import latency_stats

    samples = samples or {}
    timelines: dict[str, Any] = {}
    for name, points in samples.items():
        pts = [p for p in points if isinstance(p, (list, tuple)) and len(p) == 2]
        timelines[name] = {"t_s": [float(t) for t, _ in pts], "values": [v for _, v in pts],
                           "unit": _unit(name), "source": "received before the worker stopped"}
    latencies = [float(v) for v in timelines.get("latency_ms", {}).get("values", [])
                 if isinstance(v, (int, float))]
    latency = None
    if latencies:
        import numpy as np

        latency = latency_stats(np.asarray(latencies)).to_dict()
    rss = [v for v in timelines.get("rss_mb", {}).get("values", []) if isinstance(v, (int, float))]
    cpu = [v for v in timelines.get("cpu_percent", {}).get("values", [])
           if isinstance(v, (int, float))]
    stage = stages[-1].get("stage") if stages else None
    model = config.get("model")
    options = config.get("options") or {}
    return {
        "schema": SCHEMA,
        "status": status,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": config.get("backend"),
        "device": config.get("device"),
        "threads": options.get("threads") if isinstance(options, dict) else None,
        "model": {"path": model, "format": None, "sha256": None, "file_size": None,
                  "nodes": None, "params": None, "macs": None, "flops": None},
        "config": config,
        "inputs": {},
        "inputs_source": None,
        "environment": {},
        "load_ms": None,
        "runtime": {},
        "first_inference_ms": None,
        "latency_ms": latency,
        "throughput_ips": None,
        "iterations": len(latencies),
        "measure_s": None,
        "memory": {"rss_peak_mb": max(rss) if rss else None,
                   "rss_mean_mb": sum(rss) / len(rss) if rss else None},
        "cpu": {"mean_percent": sum(cpu) / len(cpu) if cpu else None},
        "power": {"source": None, "note": "the run did not finish", "mean_w": None,
                  "energy_per_inference_j": None, "inferences_per_joule": None},
        "gpu": {},
        "sampling": None,
        "timelines": timelines,
        "spikes": [],
        "layers": list(layers or []),
        "stages": list(stages or []),
        "errors": [{"kind": error_kind, "stage": stage, "message": error or status}],
        "budgets": [],
    }
