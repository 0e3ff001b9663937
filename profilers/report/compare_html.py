"""A self-contained HTML page for `modeldeck compare`: the side-by-side table and bar charts."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from profilers.report import svg
from profilers.report._io import atomic_write_text
from profilers.report.html import _STYLE, fmt_num, fmt_si


def _e(v: Any) -> str:
    return svg.esc(v)


def _pct(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def _ratio_note(rel: dict[str, Any] | None) -> str:
    """The interval and verdict under a × p50 figure (schema 2 comparisons)."""
    rel = rel or {}
    ci = rel.get("latency_p50_ci")
    if not isinstance(ci, list) or len(ci) != 2 or rel.get("latency_verdict") == "reference":
        return ""
    return (f"<br><small>[{fmt_num(ci[0], 3)}–{fmt_num(ci[1], 3)}] "
            f"{_e(rel.get('latency_verdict') or '')}</small>")


def _layers_note(rows: list[dict[str, Any]], names: list[str]) -> str:
    """How each model's layer times add up against its end-to-end time of the same run."""
    parts = []
    for n, r in zip(names, rows):
        s = r.get("layers_summary") or {}
        if s.get("sum_ms") is not None and s.get("profiled_run_ms") is not None:
            parts.append(f"{_e(n)}: layers add up to {fmt_num(s['sum_ms'])} ms of "
                         f"{fmt_num(s['profiled_run_ms'])} ms end to end "
                         f"({fmt_num(s.get('unaccounted_ms'))} ms unaccounted)")
    return f"<p class=\"muted\">{'; '.join(parts)}.</p>" if parts else ""


def render_compare_html(result: dict[str, Any]) -> str:
    rows = result.get("rows", [])
    head = ("<tr><th>model</th><th>format / backend</th><th>size</th><th>params</th>"
            "<th>p50 ms</th><th>p99 ms</th><th>× p50</th><th>RSS MB</th><th>cosine</th>"
            "<th>top-1 agr.</th><th>accuracy</th></tr>")
    body = []
    for r in rows:
        fid = r.get("fidelity") or {}
        acc = (r.get("accuracy") or {}).get("accuracy")
        body.append(
            f"<tr><td>{_e(os.path.basename(r['model']))}</td><td>{_e(r['format'])} / "
            f"{_e(r['backend'])}</td><td>{fmt_si(r['size_bytes'], 'B')}</td>"
            f"<td>{fmt_si(r['params'])}</td><td>{fmt_num(r['latency_ms']['p50'])}</td>"
            f"<td>{fmt_num(r['latency_ms']['p99'])}</td>"
            f"<td>{fmt_num(r['relative']['latency_p50'], 3)}"
            f"{_ratio_note(r.get('relative'))}</td>"
            f"<td>{fmt_num(r['rss_peak_mb'])}</td><td>{fmt_num(fid.get('cosine'), 6)}</td>"
            f"<td>{_pct(fid.get('top1_agreement'))}</td><td>{_pct(acc)}</td></tr>")
    names = [os.path.basename(r["model"]) for r in rows]
    charts = [
        svg.hbar_chart([svg.Bar(n, r["latency_ms"]["p50"], f"{r['latency_ms']['p50']:.4g} ms")
                        for n, r in zip(names, rows)], title="Median latency", value_label="ms"),
        svg.hbar_chart([svg.Bar(n, r["size_bytes"] / 1e6, f"{r['size_bytes'] / 1e6:.3g} MB",
                                color=svg.GREEN) for n, r in zip(names, rows)],
                       title="Size on disk", value_label="MB"),
    ]
    deltas = result.get("layer_deltas") or []
    delta_rows = "".join(
        f"<tr><td>{_e(names[d['model_index']])}</td><td>{_e(d['name'])}</td>"
        f"<td>{_e(d['op_type'])}</td><td>{fmt_num(d['base_ms'])}</td>"
        f"<td>{fmt_num(d['time_ms'])}</td><td>{fmt_num(d['delta_ms'])}</td></tr>"
        for d in deltas[:200])
    layers = (f"<h2>Per-layer time deltas</h2><table><tr><th>model</th><th>layer</th><th>op</th>"
              f"<th>first model ms</th><th>this model ms</th><th>Δ ms</th></tr>{delta_rows}"
              "</table>" + _layers_note(rows, names)) if deltas else ""
    cfg = result.get("config", {})
    inter = result.get("interleaved") or {}
    counts = sorted({r.get("iterations") for r in rows if r.get("iterations")})
    how = (f"{'/'.join(str(c) for c in counts)} iterations each" if counts else
           f"{cfg.get('iterations')} iterations each" if cfg.get("iterations") else
           f"{cfg.get('duration_s'):g} s each" if cfg.get("duration_s") else "")
    if inter:
        how += (f"; latency timed interleaved, {inter.get('rounds')} rounds of "
                f"{inter.get('iterations_per_round')} iterations per model, × p50 with its "
                "95 % interval")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>ModelDeck comparison</title><style>{_STYLE}</style></head><body>"
            f"<h1>Comparison of {len(rows)} models</h1>"
            f"<p>Device {_e(cfg.get('device'))}, threads {_e(cfg.get('options', {}).get('threads') or 'default')}, "
            f"{_e(how)}; fidelity against the first model "
            f"on {_e(result.get('verified_on'))}.</p>"
            f"<table>{head}{''.join(body)}</table>"
            + "".join(f"<figure>{c}</figure>" for c in charts) + layers
            + "<footer>ModelDeck comparison · schema "
            f"{_e(result.get('schema'))}</footer></body></html>\n")


def write_compare_html(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    return atomic_write_text(path, render_compare_html(result))
