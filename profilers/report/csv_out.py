"""CSV export for spreadsheets and pandas: one tidy file per kind of row.

iterations.csv  iteration, t_s, latency_ms, spike (0/1)       every measured iteration
samples.csv     series, t_s, value, unit, source (long)       sampler timelines (RSS, CPU, power…)
layers.csv      the per-layer rows, as the backend gave them   only when the run has layers
summary.csv     metric, value, unit, source                    the headline figures

Numbers are written with Python's shortest round-trip repr; a missing value is an empty cell.
The latency timeline is only in iterations.csv, not repeated in samples.csv.
"""
from __future__ import annotations

import csv
import logging
import math
import numbers
import os
from pathlib import Path
from typing import IO, Any

from profilers.report._io import atomic_write

log = logging.getLogger(__name__)

LAYER_COLUMNS = ("name", "op_type", "time_ms", "node_id", "device", "exec_type", "precision",
                 "fallback")


def _cell(v: Any) -> str | int:
    """CSV cell: finite numbers as repr, bools as 0/1, missing as empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        return repr(f) if math.isfinite(f) else ""
    return str(v)


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    def body(f: IO[str]) -> None:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)

    return atomic_write(path, body, newline="")


def iteration_rows(report: dict[str, Any]) -> list[list[Any]]:
    tl = _d(_d(report.get("timelines")).get("latency_ms"))
    values, t = _l(tl.get("values")), _l(tl.get("t_s"))
    spikes = {i for i in _l(report.get("spikes")) if isinstance(i, int)}
    return [[i, _cell(t[i] if i < len(t) else None), _cell(v), int(i in spikes)]
            for i, v in enumerate(values)]


def sample_rows(report: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, tl in _d(report.get("timelines")).items():
        if name == "latency_ms" or not isinstance(tl, dict):
            continue
        unit, source = _cell(tl.get("unit")), _cell(tl.get("source"))
        for t, v in zip(_l(tl.get("t_s")), _l(tl.get("values"))):
            if _cell(v) != "":
                rows.append([name, _cell(t), _cell(v), unit, source])
    return rows


def layer_rows(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    layers = [r for r in _l(report.get("layers")) if isinstance(r, dict)]
    extra = sorted({k for r in layers for k in r} - set(LAYER_COLUMNS))
    header = [*LAYER_COLUMNS, *extra]
    return header, [[_cell(r.get(k)) for k in header] for r in layers]


def summary_rows(report: dict[str, Any]) -> list[list[Any]]:
    lat, mem = _d(report.get("latency_ms")), _d(report.get("memory"))
    power, cpu = _d(report.get("power")), _d(report.get("cpu"))
    tls = _d(report.get("timelines"))

    def src(name: str) -> Any:
        return _d(tls.get(name)).get("source")

    rows: list[tuple[str, Any, str, Any]] = [
        ("load_ms", report.get("load_ms"), "ms", None),
        ("first_inference_ms", report.get("first_inference_ms"), "ms", None),
        ("iterations", report.get("iterations"), "count", None),
        ("measure_s", report.get("measure_s"), "s", None),
    ]
    for key in ("mean", "std", "min", "max", "p50", "p90", "p95", "p99", "p999"):
        rows.append((f"latency_{key}_ms", lat.get(key), "ms", src("latency_ms")))
    rows += _honest_rows(report, lat)
    rows += [
        ("latency_cv", lat.get("cv"), "ratio", None),
        ("latency_spikes", lat.get("spikes"), "count", None),
        ("throughput_ips", report.get("throughput_ips"), "inferences/s", None),
        ("rss_peak_mb", mem.get("rss_peak_mb"), "MB", "getrusage"),
        ("rss_mean_mb", mem.get("rss_mean_mb"), "MB", src("rss_mb")),
        ("cpu_mean_percent", cpu.get("mean_percent"), "% of one core", src("cpu_percent")),
        ("power_mean_w", power.get("mean_w"), "W", power.get("source")),
        ("energy_per_inference_j", power.get("energy_per_inference_j"), "J",
         power.get("source")),
        ("inferences_per_joule", power.get("inferences_per_joule"), "1/J", power.get("source")),
    ]
    for name, g in _d(report.get("gpu")).items():
        g = _d(g)
        for stat in ("mean", "max"):
            rows.append((f"{name}_{stat}", g.get(stat), str(g.get("unit") or ""), g.get("source")))
    return [[m, _cell(v), u, _cell(s)] for m, v, u, s in rows]


def _honest_rows(report: dict[str, Any], lat: dict[str, Any]) -> list[tuple[str, Any, str, Any]]:
    """Intervals, the runtime's own latency and the verdict (schema 2; absent before)."""
    rows: list[tuple[str, Any, str, Any]] = []
    for key in ("p50", "p99"):
        ci = lat.get(f"{key}_ci")
        if isinstance(ci, list) and len(ci) == 2:
            conf = lat.get("ci_confidence")
            conf = conf if isinstance(conf, (int, float)) and 0 < conf < 1 else 0.95
            how = f"{conf * 100:.0f}% CI, {lat.get('ci_method')}"
            rows += [(f"latency_{key}_ci_low_ms", ci[0], "ms", how),
                     (f"latency_{key}_ci_high_ms", ci[1], "ms", how)]
    dev = _d(report.get("latency_device_ms"))
    for key in ("p50", "p99"):
        if dev.get(key) is not None:
            rows.append((f"latency_device_{key}_ms", dev[key], "ms", dev.get("source")))
    st = _d(report.get("stability"))
    if st.get("verdict"):
        rows += [("stability_verdict", st["verdict"], "stable|noisy",
                  "; ".join(str(w) for w in _l(st.get("warnings"))) or None),
                 ("settled_at_iteration", st.get("settled_at_iteration"), "iteration",
                  st.get("warmup_rule"))]
    layers = _d(report.get("layers_summary"))
    if layers.get("unaccounted_ms") is not None:
        rows.append(("layers_unaccounted_ms", layers["unaccounted_ms"], "ms",
                     f"{layers.get('statistic')} of the profiled run minus the layer sum"))
    return rows


def write_csv(report: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the CSV files into `out_dir` (created if missing); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        _write(out / "iterations.csv", ["iteration", "t_s", "latency_ms", "spike"],
               iteration_rows(report)),
        _write(out / "samples.csv", ["series", "t_s", "value", "unit", "source"],
               sample_rows(report)),
    ]
    header, layers = layer_rows(report)
    if layers:
        paths.append(_write(out / "layers.csv", header, layers))
    paths.append(_write(out / "summary.csv", ["metric", "value", "unit", "source"],
                        summary_rows(report)))
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
