"""One self-contained HTML page per profile run: opens offline, prints, can be mailed around.

No JavaScript, no external fonts, scripts or stylesheets: the charts are inline SVG built in
Python (profilers.report.svg). Every value may be missing (a failed or cancelled run stops
anywhere), so every figure goes through `fmt_num`, which shows "—" for what is not there.
A power figure always carries its source; an estimated one says "estimated" next to it.
"""
from __future__ import annotations

import html
import logging
import math
import numbers
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from profilers.budgets import LATENCY_METRICS
from profilers.report import honest, svg
from profilers.report._io import atomic_write_text

log = logging.getLogger(__name__)

DASH = "—"
TOP_LAYERS = 25  # bars in the slowest-layers chart
MAX_LAYER_ROWS = 2000  # rows in the layer table; the CSV has them all
PERCENTILES = (("p50", "p50"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"),
               ("p999", "p99.9"))
RESOURCE_CHARTS = (  # timeline name, title, y label, budget metric
    ("rss_mb", "Resident memory (RSS)", "MB", "rss"),
    ("cpu_percent", "CPU use of the worker process", "% of one core", None),
    ("power_w", "Power", "W", "power"),
    ("gpu_mem_mb", "GPU memory used", "MB", None),
    ("gpu_power_w", "GPU board power", "W", None),
)

_STYLE = """
:root { --fg:#222; --muted:#666; --line:#dde1e6; --bg:#f6f7f9; --ok:#2e8b57; --bad:#c23b3b;
        --warn:#b8660b; --accent:#2f6db3; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial,
       sans-serif; color: var(--fg); margin: 0 auto; padding: 24px 28px 48px; max-width: 1000px; }
h1 { font-size: 22px; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 17px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid
     var(--line); }
h3 { font-size: 14px; margin: 18px 0 6px; }
.sub { color: var(--muted); margin: 0 0 10px; word-break: break-all; }
.meta span { display: inline-block; margin: 0 14px 4px 0; }
.meta b { font-weight: 600; }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px;
         font-weight: 600; border: 1px solid currentColor; white-space: nowrap; }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
.muted { color: var(--muted); }
.est { color: var(--warn); background: #fff4e5; }
.meas { color: var(--ok); background: #eaf6ef; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0 4px; }
.card { flex: 1 1 150px; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
        background: var(--bg); }
.card .k { font-size: 12px; color: var(--muted); }
.card .v { font-size: 20px; font-weight: 600; white-space: nowrap; }
.card .d { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.val { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.note { color: var(--muted); font-size: 12px; }
tr.section td { background: var(--bg); font-weight: 600; }
tr.fallback td { background: #fff4e5; }
table.kv td:first-child { width: 34%; color: var(--muted); }
.name { word-break: break-all; }
figure { margin: 14px 0 22px; }
figure svg { display: block; }
figcaption { color: var(--muted); font-size: 12px; margin-top: 4px; }
.errors { border: 1px solid var(--bad); border-radius: 6px; padding: 8px 14px; background:
          #fdf0f0; }
.empty { color: var(--muted); font-style: italic; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
@media print {
  body { padding: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  figure, .cards, tr { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
@page { margin: 12mm; }
"""


# ---------------------------------------------------------------- formatting


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _num(v: Any) -> float | None:
    """A finite real number as float, anything else (None, str, NaN, bool) as None."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def fmt_num(v: Any, sig: int = 4) -> str:
    """About `sig` significant digits, thousands separators, "—" when missing.

    The report, the tests and the GUI format the same value the same way through this.
    """
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return f"{int(v):,}"
    f = _num(v)
    if f is None:
        return DASH
    a = abs(f)
    if a == 0:
        return "0"
    if a >= 10 ** (sig - 1):
        return f"{f:,.0f}"
    if a >= 1:
        return f"{f:.{sig - 1 - math.floor(math.log10(a))}f}"
    return f"{f:#.{sig - 1}g}" if a >= 1e-4 else f"{f:.2e}"


def fmt_val(v: Any, unit: str = "", sig: int = 4) -> str:
    s = fmt_num(v, sig)
    return s if s == DASH or not unit else f"{s} {unit}"


def fmt_si(v: Any, unit: str = "") -> str:
    """1.23 G, 45.6 M: for parameter, MAC and byte counts."""
    f = _num(v)
    if f is None:
        return DASH
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(f) >= scale:
            return f"{f / scale:.3g} {prefix}{unit}".rstrip()
    return f"{f:.4g} {unit}".rstrip()


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _dict(d: Any) -> dict[str, Any]:
    return d if isinstance(d, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def is_estimate(source: Any) -> bool:
    return isinstance(source, str) and source.lower().startswith("estimat")


def _source_badge(source: Any) -> str:
    if not source:
        return ""
    if is_estimate(source):
        return '<span class="badge est">estimated</span>'
    return f'<span class="badge meas">measured · {_e(source)}</span>'


def _text(v: Any) -> str:
    """A config / environment value as text: lists joined, dicts as k=v, None as a dash."""
    if v is None or v == "":
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v) if v else DASH
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items()) if v else DASH
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}"
    if isinstance(v, numbers.Real):
        return f"{float(v):g}"  # settings are exact values, not measurements
    return str(v)


def _date(created: Any) -> str:
    if not isinstance(created, str):
        return DASH
    try:
        d = datetime.fromisoformat(created)
    except ValueError:
        return created
    tz = d.strftime("%Z") or ""
    return d.strftime("%Y-%m-%d %H:%M:%S") + (f" {tz}" if tz else "")


# ---------------------------------------------------------------- data access


@dataclass
class _Timeline:
    x: np.ndarray  # seconds since the run started, or iteration index when time is missing
    v: np.ndarray
    idx: np.ndarray  # original index of each kept point (spikes are iteration indices)
    unit: str
    source: str
    note: str
    x_is_time: bool


def _floats(values: list[Any]) -> np.ndarray:
    """Float array, NaN where a value is missing or not a number (fast path: all numbers)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([np.nan if _num(x) is None else x for x in values], dtype=np.float64)


def _timeline(report: dict[str, Any], name: str) -> _Timeline | None:
    tl = _get(report, "timelines", name)
    if not isinstance(tl, dict):
        return None
    values = _list(tl.get("values"))
    if not values:
        return None
    t = _list(tl.get("t_s"))
    v = _floats(values)
    x_is_time = len(t) == len(values)
    if x_is_time:
        x = _floats(t)
    else:
        x = np.arange(v.size, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(v)
    if not ok.any():
        return None
    return _Timeline(x[ok], v[ok], np.flatnonzero(ok), str(tl.get("unit") or ""),
                     str(tl.get("source") or ""), str(tl.get("note") or ""), x_is_time)


def _budgets(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in _list(report.get("budgets")) if isinstance(b, dict)]


def _budget_lines(report: dict[str, Any], metrics: set[str]) -> list[svg.HLine]:
    out = []
    for b in _budgets(report):
        limit = _num(b.get("limit"))
        if b.get("metric") in metrics and limit is not None:
            out.append(svg.HLine(limit, f"budget {b.get('budget', '')}", svg.RED, dashed=False))
    return out


def _layers(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [r for r in _list(report.get("layers")) if isinstance(r, dict)]
    return sorted(rows, key=lambda r: _num(r.get("time_ms")) or 0.0, reverse=True)


# ---------------------------------------------------------------- sections


def _header(r: dict[str, Any]) -> str:
    model = _dict(r.get("model"))
    path = model.get("path")
    name = os.path.basename(str(path)) if path else "unknown model"
    status = str(r.get("status") or "unknown")
    cls = {"ok": "ok", "failed": "bad", "cancelled": "warn"}.get(status, "warn")
    label = {"ok": "completed"}.get(status, status)
    threads = r.get("threads")
    return (f"<header><h1>{_e(name)}</h1>"
            f'<p class="sub">{_e(path or DASH)}</p><div class="meta">'
            f"<span><b>Backend</b> {_e(r.get('backend') or DASH)}</span>"
            f"<span><b>Device</b> {_e(r.get('device') or DASH)}</span>"
            f"<span><b>Threads</b> {_e(threads if threads else 'runtime default')}</span>"
            f"<span><b>Date</b> {_e(_date(r.get('created')))}</span>"
            f'<span><b>Status</b> <span class="badge {cls}">{_e(label)}</span></span>'
            "</div></header>")


def _errors(r: dict[str, Any]) -> str:
    errors = _list(r.get("errors"))
    if not errors:
        return ""
    items = []
    for err in errors:
        if isinstance(err, dict):
            msg = err.get("message") or err.get("error") or _text(err)
            where = err.get("stage") or err.get("kind")
            items.append(f"<li>{f'<b>{_e(where)}</b>: ' if where else ''}{_e(msg)}</li>")
        else:
            items.append(f"<li>{_e(err)}</li>")
    return f'<div class="errors"><b>Errors</b><ul>{"".join(items)}</ul></div>'


def _card(key: str, value: str, detail: str = "") -> str:
    return (f'<div class="card"><div class="k">{_e(key)}</div><div class="v">{_e(value)}</div>'
            f'<div class="d">{detail}</div></div>')


def _key_figures(r: dict[str, Any]) -> str:
    lat = _dict(r.get("latency_ms"))
    power = _dict(r.get("power"))
    cards = [
        _card("Latency p50", fmt_val(lat.get("p50"), "ms"), _e(honest.ci_text(lat, "p50"))),
        _card("Latency p99", fmt_val(lat.get("p99"), "ms"), _e(honest.ci_text(lat, "p99"))),
        _card("Throughput", fmt_val(r.get("throughput_ips"), "inf/s")),
        _card("Peak memory (RSS)", fmt_val(_get(r, "memory", "rss_peak_mb"), "MB")),
        _card("Power", fmt_val(power.get("mean_w"), "W"), _source_badge(power.get("source"))),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _row(label: str, value: str, note: str = "", raw: bool = False) -> str:
    """One summary row; `value` is escaped unless `raw` (it then holds badges we built)."""
    v = value if raw else _e(value)
    return f'<tr><td>{_e(label)}</td><td class="val">{v}</td><td class="note">{note}</td></tr>'


def _section(title: str) -> str:
    return f'<tr class="section"><td colspan="3">{_e(title)}</td></tr>'


def _summary(r: dict[str, Any]) -> str:
    lat = _dict(r.get("latency_ms"))
    mem, cpu, power = _dict(r.get("memory")), _dict(r.get("cpu")), _dict(r.get("power"))
    src = {name: _e(_get(r, "timelines", name, "source") or "") for name in
           ("rss_mb", "cpu_percent")}
    rows = [_section("Latency (measured loop)"),
            _row("Load", fmt_val(r.get("load_ms"), "ms"), "model load and compile"),
            _row("First inference", fmt_val(r.get("first_inference_ms"), "ms"),
                 "timed apart, not part of the statistics below")]
    for key, label in PERCENTILES:
        rows.append(_row(f"Latency {label}", fmt_val(lat.get(key), "ms"),
                         _e(honest.ci_text(lat, key)) if key in ("p50", "p99") else ""))
    if honest.device_line(r):
        rows.append(_row("Runtime's own latency", honest.device_line(r),
                         "timed by the runtime itself, without the Python call around it"))
    mean, std = fmt_num(lat.get("mean")), fmt_num(lat.get("std"))
    rows += [
        _row("Mean ± std", DASH if mean == DASH else f"{mean} ± {std} ms", "std with ddof=1"),
        _row("Min / max", f"{fmt_num(lat.get('min'))} / {fmt_num(lat.get('max'))} ms"
             if _num(lat.get("min")) is not None else DASH),
        _row("Coefficient of variation",
             DASH if _num(lat.get("cv")) is None else f"{lat['cv'] * 100:.2f} %", "std / mean"),
        _row("Spikes", fmt_num(lat.get("spikes")), "iterations above median + 6 × MAD"),
        _row("Throughput", fmt_val(r.get("throughput_ips"), "inferences/s"),
             "iterations / loop wall time" + (
                 f"; 1000 / mean = {_e(fmt_num(lat['throughput_ips']))}"
                 if _num(lat.get("throughput_ips")) is not None else "")),
        _row("Iterations", fmt_num(r.get("iterations")),
             f"in {_e(fmt_val(r['measure_s'], 's'))}"
             if _num(r.get("measure_s")) is not None else ""),
        _section("Resources"),
        _row("Peak memory (RSS)", fmt_val(mem.get("rss_peak_mb"), "MB"),
             "kernel high-water mark of the worker process"),
        _row("Mean memory (RSS)", fmt_val(mem.get("rss_mean_mb"), "MB"),
             f"during the loop; source {src['rss_mb'] or DASH}"),
        _row("CPU use (mean)", fmt_val(cpu.get("mean_percent"), "%"),
             f"100 % = one core busy; source {src['cpu_percent'] or DASH}"),
    ]
    rows += _power_rows(power)
    rows += _gpu_rows(_dict(r.get("gpu")))
    sampling = _dict(r.get("sampling"))
    if sampling:
        frac = _num(sampling.get("busy_fraction"))
        rows.append(_row("Sampling", f"every {_text(sampling.get('period_s'))} s, "
                         f"{fmt_num(sampling.get('ticks'))} ticks",
                         "sampler thread busy " + (DASH if frac is None else f"{frac * 100:.2f} %")
                         + " of the run"))
    return f"<h2>Summary</h2><table>{''.join(rows)}</table>" + honest.stability_html(r)


def _power_rows(power: dict[str, Any]) -> list[str]:
    source, note = power.get("source"), power.get("note")
    est = is_estimate(source)
    tag = " (estimated)" if est else ""
    badge = _source_badge(source)
    src_note = (f"source: <b>{_e(source)}</b>" if source else "no power source") + (
        f" — {_e(note)}" if note else "")
    mean = fmt_val(power.get("mean_w"), "W")
    energy = _num(power.get("energy_per_inference_j"))
    return [
        _row("Power (mean)", f"{_e(mean)}{_e(tag) if mean != DASH else ''} {badge}", src_note,
             raw=True),
        _row("Energy per inference", DASH if energy is None else
             f"{fmt_num(energy * 1e3)} mJ{tag}", "mean power × loop time / iterations"),
        _row("Inferences per joule", fmt_num(power.get("inferences_per_joule")) +
             (tag if _num(power.get("inferences_per_joule")) is not None else "")),
    ]


def _gpu_rows(gpu: dict[str, Any]) -> list[str]:
    rows = []
    for key, label in (("gpu_mem_mb", "GPU memory"), ("gpu_power_w", "GPU power")):
        g = _dict(gpu.get(key))
        if not g:
            continue
        unit = str(g.get("unit") or "")
        value = f"mean {fmt_val(g.get('mean'), unit)}, max {fmt_val(g.get('max'), unit)}"
        note = f"source: <b>{_e(g.get('source') or DASH)}</b>"
        if g.get("note"):
            note += f" — {_e(g['note'])}"
        rows.append(_row(label, f"{_e(value)} {_source_badge(g.get('source'))}", note, raw=True))
    return rows


def _budget_section(r: dict[str, Any]) -> str:
    budgets = _budgets(r)
    if not budgets:
        return ""
    rows = []
    for b in budgets:
        ok = b.get("ok")
        verdict = ('<span class="badge ok">PASS</span>' if ok is True else
                   '<span class="badge bad">FAIL</span>' if ok is False else
                   '<span class="badge muted">no value</span>')
        unit = str(b.get("unit") or "")
        live = "broken during the run" if b.get("broken_live") else ""
        rows.append(f"<tr><td>{_e(b.get('budget') or DASH)}</td>"
                    f'<td class="num">{_e(fmt_val(b.get("limit"), unit))}</td>'
                    f'<td class="num">{_e(fmt_val(b.get("value"), unit))}</td>'
                    f"<td>{verdict}</td><td class=\"note\">{_e(live)}</td></tr>")
    failed = sum(1 for b in budgets if b.get("ok") is False)
    head = (f'<p><span class="badge bad">{failed} of {len(budgets)} budgets broken</span></p>'
            if failed else f'<p><span class="badge ok">all {len(budgets)} budgets met</span></p>'
            if all(b.get("ok") is True for b in budgets) else "")
    return ("<h2>Budgets</h2>" + head + '<table><tr><th>Budget</th><th class="num">Limit</th>'
            '<th class="num">Value</th><th>Verdict</th><th>Live check</th></tr>'
            + "".join(rows) + "</table>")


def _figure(chart: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{chart}{cap}</figure>"


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _latency_range(p999: float, v: np.ndarray, lines: list[svg.HLine], spread: float,
                   reach: float) -> tuple[float, float, bool]:
    """(lo, hi, clipped): stop the axis at `reach` x p99.9 when the slowest iterations lie
    beyond `spread` x p99.9, so a few spikes do not squash the bulk into one line; budget
    lines stay in view when they are near."""
    lo, top = float(v.min()), float(v.max())
    hi, clipped = top, False
    if top > spread * p999 and reach * p999 > lo:  # a p99.9 under the fastest: not a figure
        hi, clipped = reach * p999, True
    for h in lines:
        if hi < h.value <= 2 * hi:
            hi = h.value * 1.05
    return lo, hi, clipped and top > hi


def _latency_charts(r: dict[str, Any], tl: _Timeline | None,
                    x_range: tuple[float, float] | None) -> list[str]:
    if tl is None:
        return [_empty("No latency measurements in this report.")]
    lat = _dict(r.get("latency_ms"))
    p50 = _num(lat.get("p50")) or float(np.percentile(tl.v, 50))
    p99 = _num(lat.get("p99")) or float(np.percentile(tl.v, 99))
    budget_lines = _budget_lines(r, LATENCY_METRICS)
    p999 = _num(lat.get("p999")) or float(np.percentile(tl.v, 99.9))
    lo, hi, clipped = _latency_range(p999, tl.v, budget_lines, 2.5, 1.6)
    y_range = svg.nice_range(lo, hi)
    if clipped:
        y_range = (y_range[0], hi)
    h_lo, h_hi, _ = _latency_range(p999, tl.v, budget_lines, 1.3, 1.15)
    spikes = np.array([i for i in _list(r.get("spikes")) if isinstance(i, int)], dtype=np.int64)
    is_spike = np.isin(tl.idx, spikes)
    x_label = "time since the run started (s)" if tl.x_is_time else "iteration"
    titles = [f"iteration {int(i):,}: {fmt_num(val)} ms"
              for i, val in zip(tl.idx[is_spike], tl.v[is_spike])]
    hlines = [svg.HLine(p50, f"p50 {fmt_num(p50)} ms", svg.GREEN),
              svg.HLine(p99, f"p99 {fmt_num(p99)} ms", svg.ORANGE), *budget_lines]
    markers = [svg.Markers(tl.x[is_spike], tl.v[is_spike], f"spike ({int(is_spike.sum()):,})",
                           svg.RED, titles)] if is_spike.any() else []
    timeline = svg.line_chart(
        [svg.Series(tl.x, tl.v, f"latency ({tl.v.size:,} iterations)", svg.BLUE, 1)],
        title="Latency per iteration", x_label=x_label, y_label="ms", hlines=hlines,
        markers=markers, x_range=x_range if tl.x_is_time else None, y_range=y_range)
    hist = svg.histogram(tl.v, bins=60, value_range=(h_lo, h_hi), title="Latency distribution",
                         x_label="latency (ms)", vlines=hlines)
    strip = _percentile_strip(lat, tl.v, h_lo, h_hi)
    cap = f"source: {_e(tl.source or 'perf_counter_ns')}; only the backend call is timed."
    if clipped:
        cap += (f" The axis stops at {_e(fmt_num(hi))} ms so that the bulk stays visible; the "
                f"slowest iteration took {_e(fmt_num(float(tl.v.max())))} ms.")
    return [_figure(timeline, cap), _figure(hist), _figure(strip)]


def _percentile_strip(lat: dict[str, Any], v: np.ndarray, lo: float, hi: float) -> str:
    q25, q75 = (float(x) for x in np.percentile(v, (25, 75)))
    marks = [(label, _num(lat.get(key))) for key, label in PERCENTILES]
    marks = [(label, val if val is not None else float(np.percentile(v, float(label[1:]))))
             for label, val in marks]
    marks += [("min", float(v.min())), ("max", float(v.max()))]
    return svg.percentile_strip(marks, value_range=(lo, hi),
                                whisker=(float(v.min()), float(v.max())), box=(q25, q75),
                                box_label=f"p25–p75: {fmt_num(q25)}–{fmt_num(q75)} ms",
                                title="Latency percentiles (box: p25–p75, whiskers: min–max)",
                                x_label="latency (ms)")


def _resource_charts(r: dict[str, Any], tls: dict[str, _Timeline | None],
                     x_range: tuple[float, float] | None,
                     loop: tuple[float, float] | None) -> list[str]:
    out = []
    for name, title, y_label, budget_metric in RESOURCE_CHARTS:
        tl = tls.get(name)
        if tl is None:
            if name in ("rss_mb", "cpu_percent", "power_w"):
                out.append(f"<h3>{_e(title)}</h3>" + _empty("Not sampled in this run."))
            continue
        est = is_estimate(tl.source)
        full_title = f"{title} — {'ESTIMATED' if est else 'measured'} (source: {tl.source})" \
            if name.endswith("power_w") else f"{title} (source: {tl.source})"
        lines = _budget_lines(r, {budget_metric}) if budget_metric else []
        bands = [svg.Band(*loop, "measured loop")] if loop and tl.x_is_time else []
        color = svg.ORANGE if est else svg.PURPLE if name.endswith("power_w") else svg.BLUE
        chart = svg.line_chart([svg.Series(tl.x, tl.v, f"{y_label} ({tl.v.size:,} samples)",
                                           color, 1.4)],
                               title=full_title, x_label="time since the run started (s)"
                               if tl.x_is_time else "sample", y_label=y_label, hlines=lines,
                               bands=bands, x_range=x_range if tl.x_is_time else None,
                               height=220)
        cap = f"source: <b>{_e(tl.source or DASH)}</b>"
        if est:
            cap = '<span class="badge est">estimated</span> ' + cap
        if tl.note:
            cap += f" — {_e(tl.note)}"
        out.append(_figure(chart, cap))
    return out


def _charts(r: dict[str, Any]) -> str:
    tls = {name: _timeline(r, name) for name in _dict(r.get("timelines"))}
    timed = [t for t in tls.values() if t is not None and t.x_is_time]
    x_range = ((min(float(t.x.min()) for t in timed), max(float(t.x.max()) for t in timed))
               if timed else None)  # one time axis for every chart, to line events up
    lat = tls.get("latency_ms")
    loop = (float(lat.x.min()), float(lat.x.max())) if lat and lat.x_is_time else None
    return ("<h2>Latency</h2>" + "".join(_latency_charts(r, lat, x_range))
            + "<h2>Resources over time</h2>" + "".join(_resource_charts(r, tls, x_range, loop)))


def _layer_label(row: dict[str, Any]) -> str:
    return f"{row.get('op_type') or '?'} · {row.get('name') or '?'}"


def _layer_section(r: dict[str, Any]) -> str:
    layers = _layers(r)
    if not layers:
        return ""
    total = sum(_num(x.get("time_ms")) or 0.0 for x in layers)
    any_fallback = any(x.get("fallback") for x in layers)
    bars = []
    for row in layers[:TOP_LAYERS]:
        t = _num(row.get("time_ms"))
        parts = [fmt_val(t, "ms")]
        if t is not None and total > 0:
            parts.append(f"{t / total * 100:.1f} %")
        parts += [str(row[k]) for k in ("device", "precision") if row.get(k)]
        if row.get("fallback"):
            parts.append("CPU fallback")
        bars.append(svg.Bar(_layer_label(row), t or 0.0, " · ".join(parts),
                            svg.ORANGE if row.get("fallback") else svg.BLUE,
                            f"{row.get('name')} ({row.get('op_type')})"))
    legend = [(svg.BLUE, "time per inference")]
    if any_fallback:
        legend.append((svg.ORANGE, "CPU fallback: ran on the CPU although another device was "
                                   "asked for"))
    chart = svg.hbar_chart(bars, title=f"Slowest {len(bars)} of {len(layers):,} layers",
                           value_label="ms per inference", legend=legend)
    cap = ("From a separate profiling run (per-layer timing slows inference), so layer times "
           f"need not add up to the latency above; layer total {_e(fmt_val(total, 'ms'))}."
           + (f" {_e(honest.layers_line(r))}." if honest.layers_line(r) else ""))
    return ("<h2>Layers</h2>" + _figure(chart, cap) + _layer_table(layers, total))


def _layer_table(layers: list[dict[str, Any]], total: float) -> str:
    rows = []
    for i, row in enumerate(layers[:MAX_LAYER_ROWS], 1):
        t = _num(row.get("time_ms"))
        share = f"{t / total * 100:.1f} %" if t is not None and total > 0 else DASH
        cls = ' class="fallback"' if row.get("fallback") else ""
        rows.append(f'<tr{cls}><td class="num">{i}</td><td class="name">'
                    f"{_e(row.get('name') or DASH)}</td><td>{_e(row.get('op_type') or DASH)}</td>"
                    f'<td class="num">{_e(fmt_num(t))}</td><td class="num">{share}</td>'
                    f"<td>{_e(row.get('device') or DASH)}</td>"
                    f"<td>{_e(row.get('exec_type') or DASH)}</td>"
                    f"<td>{_e(row.get('precision') or DASH)}</td>"
                    f"<td>{'CPU fallback' if row.get('fallback') else ''}</td>"
                    f'<td class="name">{_e(row.get("node_id") or DASH)}</td></tr>')
    more = (f'<p class="muted">{len(layers) - MAX_LAYER_ROWS:,} faster layers not shown; the '
            "CSV export has every layer.</p>" if len(layers) > MAX_LAYER_ROWS else "")
    return ('<h3>All layers, slowest first</h3><table><tr><th class="num">#</th><th>Layer</th>'
            '<th>Op</th><th class="num">ms</th><th class="num">Share</th><th>Device</th>'
            "<th>Exec type</th><th>Precision</th><th>Fallback</th><th>Graph node</th></tr>"
            + "".join(rows) + "</table>" + more)


def _kv_table(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_text(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def _environment(r: dict[str, Any]) -> str:
    env = _dict(r.get("environment"))
    model = _dict(r.get("model"))
    cores = ", ".join(f"{_text(env[k])} {label}" for k, label in (
        ("cores_physical", "physical"), ("cores_logical", "logical"), ("cpus_usable", "usable"))
        if env.get(k) is not None) or None
    machine = [("CPU", env.get("cpu_model")), ("Cores", cores),
               ("Memory", fmt_val(env.get("memory_gb"), "GB")), ("OS", env.get("os")),
               ("Platform", env.get("platform")), ("Python", env.get("python"))]
    machine += honest.environment_pairs(env)
    machine += [(f"{name}", version) for name, version in _dict(env.get("libraries")).items()]
    runtime = [(k, v) for k, v in _dict(r.get("runtime")).items()]
    size = _num(model.get("file_size"))
    model_rows = [("Path", model.get("path")), ("Format", model.get("format")),
                  ("File size", fmt_si(size, "B") if size is not None else None),
                  ("SHA-256", model.get("sha256")), ("Nodes", model.get("nodes")),
                  ("Parameters", fmt_si(model.get("params"))),
                  ("MACs per inference", fmt_si(model.get("macs"))),
                  ("FLOPs per inference", fmt_si(model.get("flops")))]
    inputs = [(name, " × ".join(str(d) for d in _list(_get(spec, "shape")))
               + f" ({_text(_get(spec, 'dtype'))})")
              for name, spec in _dict(r.get("inputs")).items()]
    inputs.append(("Source", r.get("inputs_source")))
    config = _flatten(_dict(r.get("config")))
    parts = ["<h2>Environment</h2>", "<h3>Machine and libraries</h3>", _kv_table(machine),
             "<h3>Runtime (as the backend reports it after loading)</h3>",
             _kv_table(runtime) if runtime else _empty("No runtime details recorded."),
             "<h3>Model</h3>", _kv_table(model_rows), "<h3>Inputs</h3>", _kv_table(inputs)]
    if config:
        parts += ["<h3>Run configuration</h3>", _kv_table(config)]
    return "".join(parts)


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


# ---------------------------------------------------------------- entry points


def render_html(report: dict[str, Any]) -> str:
    """The whole page as one string (the GUI can show it; write_html saves it)."""
    r = report if isinstance(report, dict) else {}
    name = os.path.basename(str(_get(r, "model", "path") or "")) or "profile"
    body = [_header(r), _errors(r), _key_figures(r), _summary(r), _budget_section(r),
            _charts(r), _layer_section(r), _environment(r),
            f"<footer>ModelDeck report · schema {_e(r.get('schema') or DASH)} · generated "
            f"{_e(datetime.now().astimezone().strftime('%Y-%m-%d %H:%M'))}</footer>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>ModelDeck · {_e(name)} · {_e(r.get('backend') or '')} "
            f"{_e(r.get('device') or '')}</title><style>{_STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def write_html(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the self-contained report page, atomically (temp file, then rename)."""
    page = render_html(report)
    out = atomic_write_text(path, page)
    log.info("wrote HTML report %s (%.0f kB)", out, len(page.encode()) / 1e3)
    return out
