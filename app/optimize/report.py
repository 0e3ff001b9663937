"""The optimize result as one self-contained HTML page: verdict, Pareto chart, every candidate.

The chart is inline SVG built from profilers/report/svg.py's axes and scales (no JavaScript):
latency on x, accuracy (cosine without labels) on y, marker area by model size, the Pareto
front joined by a line, the baseline and the winner labelled.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from app.optimize.energy import chart_axis
from app.optimize.energy import html_cell as energy_cell
from app.optimize.energy import html_note as energy_note
from app.optimize.energy import html_verdict as energy_verdict
from profilers.report import svg

STATUS_COLOR = {"best": svg.GREEN, "kept": svg.BLUE, "rejected": svg.GREY, "failed": svg.RED}


def _e(v: Any) -> str:
    return html.escape(str(v))


def _quality(p: dict[str, Any], labelled: bool) -> float | None:
    if labelled and p.get("accuracy") is not None:
        return float(p["accuracy"]) * 100
    return None if p.get("cosine") is None else float(p["cosine"])


def pareto_svg(result: dict[str, Any], width: int = 720, height: int = 380) -> str:
    """Scatter of every measured candidate; the front as a line."""
    labelled = bool(result.get("budget", {}).get("labels"))
    pts = [result["baseline"], *result.get("tried", [])]
    xof, xword, xlabel, xunit = chart_axis(result)  # energy under the energy objective
    pts = [p for p in pts if p.get("latency_ms") and xof(p) is not None
           and _quality(p, labelled) is not None]
    title = f"{xword} × " + ("accuracy" if labelled else "fidelity") + " (marker area: size)"
    if not pts:
        return svg._svg_open(width, 60, title) + svg._title(title) + "</svg>"
    xs = [xof(p) for p in pts]
    ys = [_quality(p, labelled) for p in pts]
    x0, x1 = svg.nice_range(min(xs), max(xs))
    lo, hi = min(ys), max(ys)
    if labelled and result.get("baseline", {}).get("accuracy") is not None:
        lo = min(lo, (result["baseline"]["accuracy"] - result["budget"]["max_drop"]) * 100)
    lo, hi = lo - max((hi - lo) * 0.15, 0.25), hi + max((hi - lo) * 0.15, 0.25)
    y0, y1 = svg.nice_range(lo, hi, zero=False)
    if labelled:
        y0, y1 = max(y0, 0.0), min(y1, 100.0 + (y1 - y0) * 0.05)
    top, left, right, bottom = 44, svg._MARGIN_L, width - svg._MARGIN_R, height - svg._MARGIN_B
    sx = svg._Scale(x0, x1, left, right)
    sy = svg._Scale(y0, y1, bottom, top)
    yt, ystep = svg.nice_ticks(y0, y1), svg.nice_step(y1 - y0)
    xt, xstep = svg._x_ticks(sx)
    out = [svg._svg_open(width, height, title), svg._title(title),
           svg._y_axis(sy, yt, ystep, left, right), svg._x_axis(sx, xt, xstep, bottom),
           svg._axis_labels(xlabel, "accuracy (%)" if labelled else "cosine",
                            width, height, top)]
    sizes = [p.get("size_bytes") or 0 for p in pts]
    smax = max(sizes) or 1
    front = set(result.get("pareto", []))
    fpts = sorted((p for p in pts if p["name"] in front), key=xof)
    if len(fpts) > 1:
        d = " ".join(f"{'M' if i == 0 else 'L'}{svg.f1(sx(xof(p)))} "
                     f"{svg.f1(sy(_quality(p, labelled)))}" for i, p in enumerate(fpts))
        out.append(f'<path d="{d}" fill="none" stroke="{svg.ORANGE}" stroke-width="1.5" '
                   'stroke-dasharray="4 3"/>')
    if labelled and result.get("baseline", {}).get("accuracy") is not None:
        floor = (result["baseline"]["accuracy"] - result["budget"]["max_drop"]) * 100
        if y0 <= floor <= y1:
            out.append(f'<line x1="{left}" x2="{right}" y1="{svg.f1(sy(floor))}" '
                       f'y2="{svg.f1(sy(floor))}" stroke="{svg.RED}" stroke-dasharray="2 3"/>'
                       f'<text x="{right - 4}" y="{svg.f1(sy(floor) - 4)}" text-anchor="end" '
                       f'fill="{svg.RED}">budget</text>')
    for p, x, y, s in zip(pts, xs, ys, sizes):
        r = 3 + 9 * math.sqrt(s / smax)
        color = svg.PURPLE if p["name"] == "baseline" else STATUS_COLOR.get(p.get("status"),
                                                                            svg.GREY)
        tip = f"{p['name']}: {x:.3f} {xunit}, {y:.3f}, {s / 1e6:.2f} MB — {p.get('reason', '')}"
        out.append(f'<circle cx="{svg.f1(sx(x))}" cy="{svg.f1(sy(y))}" r="{svg.f1(r)}" '
                   f'fill="{color}" fill-opacity="0.55" stroke="{color}">'
                   f'<title>{svg.esc(tip)}</title></circle>')
        if p["name"] == "baseline" or p.get("status") == "best" or p["name"] in front:
            out.append(f'<text x="{svg.f1(sx(x) + r + 3)}" y="{svg.f1(sy(y) + 4)}">'
                       f'{svg.esc(svg.shorten(p["name"], 24))}</text>')
    out.append(svg._legend([("dot", svg.PURPLE, "baseline"), ("dot", svg.GREEN, "best"),
                            ("dot", svg.BLUE, "kept"), ("dot", svg.GREY, "rejected"),
                            ("dash", svg.ORANGE, "Pareto front")], left, 32, right))
    out.append("</svg>")
    return "".join(out)


def _iv(d: dict[str, Any] | None, pct: bool = False, fmt: str = ".3f") -> str:
    if not d:
        return "—"
    if pct:
        return f"{d['value']:.2%} [{d['low']:.2%}, {d['high']:.2%}]"
    v = d.get("value", d.get("p50"))
    return f"{v:{fmt}} [{d['low']:{fmt}}, {d['high']:{fmt}}]"


def _served(best: dict[str, Any]) -> str:
    """Objective throughput: the winner's samples/s at its serving (app/optimize/throughput)."""
    tp = best.get("throughput")
    if not tp:
        return ""
    gain = tp.get("config_gain")
    return (f"<p class=v>Served at batch {tp['batch']} with {tp['streams']} request(s) in "
            f"flight on {_e(tp.get('threads') or 'default')} thread(s): "
            f"{tp['value']:,.0f} samples/s [{tp['low']:,.0f}, {tp['high']:,.0f}], "
            f"{_iv(tp['vs_baseline'], fmt='.2f')}× "
            f"{_e(tp.get('baseline_config', 'FP32 ONNX Runtime served the same'))}"
            + (f" (which itself gains {_iv(gain, fmt='.2f')}× over batch 1, one request in "
               "flight)" if gain else "") + ".</p>")


def render_html(result: dict[str, Any]) -> str:
    best = result.get("best")
    base = result["baseline"]
    pc = result.get("prediction_check") or {}
    rows = []
    for p in [base, *result.get("tried", [])]:
        rows.append(
            "<tr>" + "".join(f"<td>{c}</td>" for c in (
                _e(p["name"]), _e(p.get("candidate", {}).get("backend", ""))
                + f" ({_e(p.get('candidate', {}).get('threads') or 'default')} thr.)",
                _e(p.get("status", "")), _e(p.get("stage", "")),
                _iv(p.get("latency_ms")) if p.get("latency_ms") else "—",
                _iv(p.get("speedup"), fmt=".2f") if p.get("speedup") else "—",
                "—" if p.get("accuracy") is None else f"{p['accuracy']:.2%}",
                _iv(p.get("accuracy_drop"), pct=True),
                "—" if p.get("cosine") is None else f"{p['cosine']:.5f}",
                "—" if not p.get("size_bytes") else f"{p['size_bytes'] / 1e6:.2f} MB",
                energy_cell(p), _e(p.get("reason", "")))) + "</tr>")
    if best:
        verdict = (f"<p class=v><b>{_e(best['name'])}</b> on {_e(best['backend'])} "
                   f"at {_e(best.get('threads') or 'default')} thread(s): "
                   f"{_iv(best['speedup'], fmt='.2f')}× faster than FP32 ONNX Runtime at the "
                   f"same threads (p50 {_iv(best['latency_ms'])} ms, interleaved), accuracy drop "
                   f"{_iv(best.get('accuracy_drop'), pct=True)}, cosine "
                   f"{best['cosine']:.5f}.</p>" + _served(best))
    else:
        verdict = f"<p class=v>No winner: {_e(result.get('why_no_winner', ''))}</p>"
    verdict += energy_verdict(result)
    cmds = "".join(f"<pre>{_e(c)}</pre>" for c in (best or {}).get("commands", []))
    sens = result.get("sensitivity") or []
    sens_rows = "".join(
        f"<tr><td>{_e(r['node'])}</td><td>{r['macs'] / 1e6:.1f} M</td>"
        f"<td>{r['cosine_if_float']:.5f}</td><td>"
        f"{'—' if r.get('agreement_if_float') is None else format(r['agreement_if_float'], '.2%')}"
        f"</td></tr>" for r in sens)
    sens_html = ("<h2>Layer sensitivity (leave one out)</h2><table><tr><th>layer kept float"
                 "</th><th>MACs</th><th>cosine</th><th>top-1 agreement</th></tr>"
                 f"{sens_rows}</table>") if sens else ""
    probe = result.get("probe", {})
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.get("notes", []))
    stopped = (f"<p class=warn>Search stopped early ({_e(result['stopped'])}): the best so far "
               "is shown.</p>") if result.get("stopped") else ""
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>ModelDeck optimize — {_e(Path(result['model']).name)}</title>
<style>body{{font-family:{svg.FONT};margin:24px;color:#222;max-width:1100px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border-bottom:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top}}.v{{font-size:15px}}.warn{{color:#b05000}}pre{{background:#f4f5f7;
padding:6px;overflow-x:auto}}</style></head><body>
<h1>Optimize: {_e(Path(result['model']).name)}</h1>
<p>Objective {_e(result['objective'])}, budget: accuracy drop ≤ {result['budget']['max_drop']:.2%}
{'' if result['budget'].get('min_cosine') is None else f", cosine ≥ {result['budget']['min_cosine']}"};
threads tried {_e(', '.join(str(t) for t in result.get('thread_choices') or [result.get('threads') or 'default']))} (each against FP32 ONNX Runtime at the same count); evaluated on {_e(result.get('evaluated_on'))};
{result.get('seconds', 0):.0f} s.</p>{stopped}
{verdict}
<p><b>Prediction</b> (before any pass ran): {_e(result['prediction']['text'])}<br>
<b>Measured</b>: {_e(pc.get('text', ''))}</p>
<p>Machine: {_e(probe.get('cpu_model'))}, {probe.get('cores')} cores, {_e(', '.join(probe.get('isa', [])))}</p>
{pareto_svg(result)}
{cmds}
<h2>Candidates</h2><table><tr><th>name</th><th>backend</th><th>status</th><th>stage</th>
<th>p50 ms [95 %]</th><th>speedup</th><th>accuracy</th><th>drop [95 %]</th><th>cosine</th>
<th>size</th><th>mJ/inference [95 %]</th><th>why</th></tr>{''.join(rows)}</table>
{energy_note(result)}
{sens_html}
<ul>{notes}</ul></body></html>"""


def write_html(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(render_html(result), encoding="utf-8")
    tmp.replace(path)
    return path
