"""Small inline-SVG charts as strings: no JavaScript, no external files, readable in print.

Each function returns one self-contained `<svg>` element (fonts and colours set on it), so the
same charts can go into the HTML report, a comparison report or a Qt view that renders SVG.
Long series are reduced with `downsample_minmax` (min and max per pixel column), which keeps
the envelope and every peak of the line while bounding the size of the file.
"""
from __future__ import annotations

import html
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

BLUE = "#2f6db3"
ORANGE = "#d9822b"
RED = "#c23b3b"
GREEN = "#2e8b57"
GREY = "#8a8f98"
PURPLE = "#7b4fb0"
TEXT = "#222"
GRID = "#e3e5e8"
AXIS = "#9aa0a6"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
CHAR_W = 6.2  # rough width of one 11 px character, for layout without a font metric

_MARGIN_L, _MARGIN_R, _MARGIN_B = 62, 18, 40


@dataclass
class Series:
    x: Sequence[float]
    y: Sequence[float]
    label: str
    color: str = BLUE
    width: float = 1.2


@dataclass
class HLine:
    """Horizontal reference line (a percentile, a budget); `value` is in data units."""

    value: float
    label: str
    color: str = GREY
    dashed: bool = True


@dataclass
class Markers:
    x: Sequence[float]
    y: Sequence[float]
    label: str
    color: str = RED
    titles: Sequence[str] | None = None  # native tooltips, one per point


@dataclass
class Band:
    """Shaded x interval, e.g. the measured loop inside a longer sampling timeline."""

    x0: float
    x1: float
    label: str
    color: str = "#eef3fb"


@dataclass
class Bar:
    label: str
    value: float
    text: str = ""  # drawn after the bar
    color: str = BLUE
    title: str = ""  # tooltip; defaults to label


def shorten(text: str, n: int) -> str:
    """Cut the middle, not the end: layer names differ in their last part (…/Conv_29)."""
    if len(text) <= n:
        return text
    head = n // 3
    return text[:head] + "…" + text[len(text) - (n - head - 1):]


def esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def f1(v: float) -> str:
    """One decimal is enough for pixel coordinates and keeps the file small."""
    return f"{v:.1f}".rstrip("0").rstrip(".") if v == v else "0"


def nice_step(span: float, count: int = 5) -> float:
    """A 1/2/2.5/5 x 10^k step giving about `count` intervals over `span`."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = nice_step(hi - lo, count)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v = start + step * len(ticks)
    return ticks


def nice_range(lo: float, hi: float, zero: bool = True) -> tuple[float, float]:
    """Axis range around data: from 0 unless the data sit far above it, rounded to a tick."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if hi <= lo:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    if zero and lo >= 0 and lo < 0.4 * hi:
        lo = 0.0
    step = nice_step(hi - lo)
    lo = math.floor(lo / step) * step if lo != 0 else 0.0
    hi = math.ceil(hi / step - 1e-9) * step
    return lo, hi if hi > lo else lo + step


def fmt_tick(v: float, step: float) -> str:
    if abs(v) >= 10000:
        return f"{v:,.0f}"
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    if step * 10 ** decimals % 1 > 1e-6:  # 2.5 x 10^k steps need one more digit
        decimals += 1
    return f"{v:.{min(decimals, 6)}f}"


def downsample_minmax(x: Sequence[float], y: Sequence[float], buckets: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Keep the min and the max point of each of `buckets` x columns, in their original order.

    A 100k-point line drawn 800 px wide shows the same envelope, spikes included.
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = xa.size
    if n <= 2 * buckets or buckets < 1:
        return xa, ya
    lo, hi = float(xa.min()), float(xa.max())
    if hi > lo:
        b = np.minimum(((xa - lo) / (hi - lo) * buckets).astype(np.int64), buckets - 1)
    else:
        b = np.arange(n, dtype=np.int64) * buckets // n
    order = np.lexsort((ya, b))  # by bucket, then by value
    sb = b[order]
    starts = np.flatnonzero(np.r_[True, sb[1:] != sb[:-1]])
    ends = np.r_[starts[1:], n] - 1
    keep = np.unique(np.concatenate([order[starts], order[ends]]))
    return xa[keep], ya[keep]


def top_per_bucket(x: np.ndarray, y: np.ndarray, buckets: int) -> np.ndarray:
    """Indices of the highest point per x column: thins thousands of markers, keeps the worst."""
    if x.size <= buckets:
        return np.arange(x.size)
    lo, hi = float(x.min()), float(x.max())
    b = (np.minimum(((x - lo) / (hi - lo) * buckets).astype(np.int64), buckets - 1)
         if hi > lo else np.arange(x.size) * buckets // x.size)
    order = np.lexsort((y, b))
    sb = b[order]
    ends = np.r_[np.flatnonzero(sb[1:] != sb[:-1]), x.size - 1]
    return np.sort(order[ends])


def wants_log(lo: float, hi: float) -> bool:
    """A log axis when the data span more than a decade (a 0.1 ms bulk and 5 ms stalls):
    on a linear axis the bulk would collapse into one bar."""
    return lo > 0 and hi / lo >= 10


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade inside [lo, hi]; denser mantissas when that gives too few."""
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)),
                                              math.ceil(math.log10(hi)) + 1)
                 for m in mantissas if lo <= m * 10.0 ** e <= hi * (1 + 1e-9)]
        if len(ticks) >= 3:
            return ticks
    return ticks


def fmt_log_tick(v: float) -> str:
    return f"{v:,.0f}" if v >= 1000 else f"{v:g}"


class _Scale:
    """Map from data units to pixels, linear or log10."""

    def __init__(self, d0: float, d1: float, p0: float, p1: float, log: bool = False):
        self.d0, self.d1, self.p0, self.p1, self.log = d0, d1, p0, p1, log
        self._t0 = self._t(d0)
        t1 = self._t(d1)
        self.k = (p1 - p0) / (t1 - self._t0) if t1 != self._t0 else 0.0

    def _t(self, v: float) -> float:
        return math.log10(max(v, self.d0 if self.d0 > 0 else 1e-12)) if self.log else v

    def __call__(self, v: float) -> float:
        return self.p0 + (self._t(v) - self._t0) * self.k


def as_svg_file(svg: str) -> str:
    """The namespace a standalone .svg file needs; HTML5 inline SVG does without it, which
    keeps the report free of any URL."""
    return svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{esc(label)}" '
            f'font-family="{esc(FONT)}" font-size="11" fill="{TEXT}" '
            f'style="max-width:100%;height:auto">')


def _title(title: str) -> str:
    if not title:
        return ""
    return (f'<text x="{_MARGIN_L}" y="16" font-size="13" font-weight="600">'
            f'{esc(title)}</text>')


def _legend(items: list[tuple[str, str, str]], x: float, y: float, max_x: float) -> str:
    """items: (kind, color, label), kind one of line, dash, dot, tri, box. Wraps if needed."""
    out, cx, cy = [], x, y
    for kind, color, label in items:
        w = 22 + len(label) * CHAR_W + 14
        if cx + w > max_x and cx > x:
            cx, cy = x, cy + 14
        sym_y = cy - 4
        if kind in ("line", "dash"):
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            out.append(f'<line x1="{f1(cx)}" y1="{f1(sym_y)}" x2="{f1(cx + 16)}" y2="{f1(sym_y)}"'
                       f' stroke="{color}" stroke-width="2"{dash}/>')
        elif kind == "dot":
            out.append(f'<circle cx="{f1(cx + 8)}" cy="{f1(sym_y)}" r="3" fill="{color}"/>')
        elif kind == "tri":
            out.append(f'<path d="M{f1(cx + 8)} {f1(sym_y - 4)}l4 7h-8z" fill="{color}"/>')
        else:
            out.append(f'<rect x="{f1(cx + 2)}" y="{f1(sym_y - 5)}" width="12" height="10" '
                       f'fill="{color}"/>')
        out.append(f'<text x="{f1(cx + 20)}" y="{f1(cy)}">{esc(label)}</text>')
        cx += w
    return "".join(out)


def _legend_rows(items: list[tuple[str, str, str]], width: float) -> int:
    rows, cx = 1, 0.0
    for _, _, label in items:
        w = 22 + len(label) * CHAR_W + 14
        if cx + w > width and cx > 0:
            rows, cx = rows + 1, 0.0
        cx += w
    return rows


def _y_axis(ys: _Scale, ticks: list[float], step: float, x0: float, x1: float) -> str:
    out = []
    for t in ticks:
        py = f1(ys(t))
        out.append(f'<line x1="{f1(x0)}" y1="{py}" x2="{f1(x1)}" y2="{py}" stroke="{GRID}"/>')
        out.append(f'<text x="{f1(x0 - 6)}" y="{py}" dy="4" text-anchor="end">'
                   f'{esc(fmt_tick(t, step))}</text>')
    return "".join(out)


def _x_axis(xs: _Scale, ticks: list[float], step: float, y: float) -> str:
    out = [f'<line x1="{f1(xs.p0)}" y1="{f1(y)}" x2="{f1(xs.p1)}" y2="{f1(y)}" stroke="{AXIS}"/>']
    for t in ticks:
        px = f1(xs(t))
        label = fmt_log_tick(t) if xs.log else fmt_tick(t, step)
        out.append(f'<line x1="{px}" y1="{f1(y)}" x2="{px}" y2="{f1(y + 4)}" stroke="{AXIS}"/>')
        out.append(f'<text x="{px}" y="{f1(y + 16)}" text-anchor="middle">{esc(label)}</text>')
    return "".join(out)


def _x_ticks(xs: _Scale, count: int = 8) -> tuple[list[float], float]:
    if xs.log:
        return log_ticks(xs.d0, xs.d1), 0.0
    return nice_ticks(xs.d0, xs.d1, count), nice_step(xs.d1 - xs.d0, count)


def _axis_labels(x_label: str, y_label: str, width: int, height: int, top: float) -> str:
    out = []
    if x_label:
        mid = _MARGIN_L + (width - _MARGIN_L - _MARGIN_R) / 2
        out.append(f'<text x="{f1(mid)}" y="{height - 6}" text-anchor="middle" fill="#555">'
                   f'{esc(x_label)}</text>')
    if y_label:
        mid = top + (height - _MARGIN_B - top) / 2
        out.append(f'<text transform="translate(13 {f1(mid)}) rotate(-90)" text-anchor="middle" '
                   f'fill="#555">{esc(y_label)}</text>')
    return "".join(out)


def _finite(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(x), len(y))
    xa = np.asarray([np.nan if v is None else v for v in x[:n]], dtype=np.float64)
    ya = np.asarray([np.nan if v is None else v for v in y[:n]], dtype=np.float64)
    ok = np.isfinite(xa) & np.isfinite(ya)
    return xa[ok], ya[ok]


def line_chart(series: Sequence[Series], *, title: str = "", x_label: str = "",
               y_label: str = "", hlines: Sequence[HLine] = (), markers: Sequence[Markers] = (),
               bands: Sequence[Band] = (), x_range: tuple[float, float] | None = None,
               y_range: tuple[float, float] | None = None, width: int = 860,
               height: int = 270, max_markers: int = 1500) -> str:
    """Lines over a shared x axis. Points above `y_range`'s top are drawn on the top edge and
    counted in the legend, so one huge spike does not flatten the rest of the chart."""
    data = [(s, *_finite(s.x, s.y)) for s in series]
    marks = [(m, *_finite(m.x, m.y)) for m in markers]
    xs_all = [a for _, a, _ in data + marks if a.size]
    ys_all = [b for _, _, b in data if b.size]
    if x_range is None:
        x_range = ((min(float(a.min()) for a in xs_all), max(float(a.max()) for a in xs_all))
                   if xs_all else (0.0, 1.0))
    if x_range[1] <= x_range[0]:
        x_range = (x_range[0] - 0.5, x_range[0] + 0.5)
    if y_range is None:
        lo = min((float(b.min()) for b in ys_all), default=0.0)
        hi = max([float(b.max()) for b in ys_all] + [h.value for h in hlines], default=1.0)
        y_range = nice_range(lo, hi)

    legend = [("line", s.color, s.label) for s in series if s.label]
    legend += [("dot", m.color, m.label) for m in markers if m.label]
    legend += [("dash" if h.dashed else "line", h.color, h.label) for h in hlines]
    legend += [("box", b.color, b.label) for b in bands]
    clipped = sum(int((b > y_range[1]).sum()) for _, _, b in data)
    if clipped:
        top = max(float(b.max()) for b in ys_all)
        legend.append(("tri", RED, f"{clipped:,} point{'s' * (clipped > 1)} above "
                                   f"{fmt_tick(y_range[1], nice_step(y_range[1] - y_range[0]))}"
                                   f" (max {top:.4g}) drawn on the top edge"))
    top_px = 26 + 14 * _legend_rows(legend, width - _MARGIN_L - _MARGIN_R) + 6
    xs = _Scale(x_range[0], x_range[1], _MARGIN_L, width - _MARGIN_R)
    ys = _Scale(y_range[0], y_range[1], height - _MARGIN_B, top_px)
    plot_w = int(xs.p1 - xs.p0)

    out = [_svg_open(width, height, title), _title(title),
           _legend(legend, _MARGIN_L, 34, width - _MARGIN_R)]
    for b in bands:
        x0, x1 = max(xs(b.x0), xs.p0), min(xs(b.x1), xs.p1)
        if x1 > x0:
            out.append(f'<rect x="{f1(x0)}" y="{f1(ys.p1)}" width="{f1(x1 - x0)}" '
                       f'height="{f1(ys.p0 - ys.p1)}" fill="{b.color}"/>')
    ystep = nice_step(y_range[1] - y_range[0])
    out.append(_y_axis(ys, nice_ticks(*y_range), ystep, xs.p0, xs.p1))
    xstep = nice_step(x_range[1] - x_range[0], 8)
    out.append(_x_axis(xs, nice_ticks(x_range[0], x_range[1], 8), xstep, ys.p0))

    for s, xa, ya in data:
        if not xa.size:
            continue
        dx, dy = downsample_minmax(xa, ya, plot_w)
        dy = np.clip(dy, y_range[0], y_range[1])
        if dx.size == 1:  # a polyline of one point draws nothing
            out.append(f'<circle cx="{f1(xs(dx[0]))}" cy="{f1(ys(dy[0]))}" r="2.5" '
                       f'fill="{s.color}"/>')
            continue
        pts = " ".join(f"{f1(xs(a))},{f1(ys(b))}" for a, b in zip(dx, dy))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{s.color}" '
                   f'stroke-width="{s.width}" stroke-linejoin="round"/>')
        over = ya > y_range[1]
        if over.any():
            ox = xa[over][top_per_bucket(xa[over], ya[over], plot_w // 4)]
            tris = "".join(f"M{f1(xs(a))} {f1(ys.p1)}l3.5 6h-7z" for a in ox)
            out.append(f'<path d="{tris}" fill="{RED}"/>')
    for h in hlines:
        if y_range[0] <= h.value <= y_range[1]:
            py = f1(ys(h.value))
            dash = ' stroke-dasharray="6 4"' if h.dashed else ""
            out.append(f'<line x1="{f1(xs.p0)}" y1="{py}" x2="{f1(xs.p1)}" y2="{py}" '
                       f'stroke="{h.color}" stroke-width="1.5"{dash}/>')
    for m, xa, ya in marks:
        if not xa.size:
            continue
        keep = top_per_bucket(xa, ya, max_markers) if xa.size > max_markers else np.arange(xa.size)
        dots = []
        for i in keep:
            cy = f1(ys(min(float(ya[i]), y_range[1])))
            tip = f"<title>{esc(m.titles[i])}</title>" if m.titles is not None else ""
            dots.append(f'<circle cx="{f1(xs(float(xa[i])))}" cy="{cy}" r="2.8">{tip}</circle>')
        out.append(f'<g fill="{m.color}" fill-opacity="0.85">{"".join(dots)}</g>')
    out.append(_axis_labels(x_label, y_label, width, height, top_px))
    out.append("</svg>")
    return "".join(out)


def histogram(values: Sequence[float], *, bins: int = 60,
              value_range: tuple[float, float] | None = None, title: str = "",
              x_label: str = "", y_label: str = "count", vlines: Sequence[HLine] = (),
              color: str = BLUE, width: int = 860, height: int = 250,
              log_x: bool | None = None) -> str:
    """Counts per bin; values outside `value_range` are counted in the legend, not dropped
    silently. `vlines` are vertical reference lines (percentiles, budgets) in data units.
    `log_x` None: log-spaced bins when the range spans more than a decade (`wants_log`)."""
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if value_range is None:
        value_range = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
    lo, hi = value_range
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    log = wants_log(lo, hi) if log_x is None else (log_x and lo > 0)
    edges_in = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(v, bins=edges_in)
    above, below = int((v > hi).sum()), int((v < lo).sum())
    legend = [("dash" if h.dashed else "line", h.color, h.label) for h in vlines]
    if above:
        legend.append(("tri", RED, f"{above:,} above {hi:.4g} (max {float(v.max()):.4g}) "
                                   "not shown"))
    if below:
        legend.append(("tri", GREY, f"{below:,} below {lo:.4g} not shown"))
    top_px = 26 + 14 * _legend_rows(legend, width - _MARGIN_L - _MARGIN_R) + 6
    x_lo, x_hi = float(edges[0]), float(edges[-1])
    xs = _Scale(x_lo, x_hi, _MARGIN_L, width - _MARGIN_R, log)
    c_hi = nice_range(0.0, float(counts.max()) if counts.size and counts.max() else 1.0)[1]
    ys = _Scale(0.0, c_hi, height - _MARGIN_B, top_px)

    out = [_svg_open(width, height, title), _title(title),
           _legend(legend, _MARGIN_L, 34, width - _MARGIN_R)]
    cstep = nice_step(c_hi)
    out.append(_y_axis(ys, [t for t in nice_ticks(0.0, c_hi) if t == int(t)], max(cstep, 1),
                       xs.p0, xs.p1))
    out.append(_x_axis(xs, *_x_ticks(xs), ys.p0))
    bars = []
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        if c == 0:
            continue
        x0, x1, y0 = xs(float(a)), xs(float(b)), ys(float(c))
        bars.append(f'<rect x="{f1(x0)}" y="{f1(y0)}" width="{f1(max(x1 - x0 - 0.6, 0.6))}" '
                    f'height="{f1(ys.p0 - y0)}">'
                    f'<title>{a:.4g}–{b:.4g}: {int(c):,}</title></rect>')
    out.append(f'<g fill="{color}">{"".join(bars)}</g>')
    for h in vlines:
        if x_lo <= h.value <= x_hi:
            px = f1(xs(h.value))
            dash = ' stroke-dasharray="6 4"' if h.dashed else ""
            out.append(f'<line x1="{px}" y1="{f1(ys.p0)}" x2="{px}" y2="{f1(ys.p1)}" '
                       f'stroke="{h.color}" stroke-width="1.5"{dash}/>')
    if log and x_label:
        x_label += " — log scale"
    out.append(_axis_labels(x_label, y_label, width, height, top_px))
    out.append("</svg>")
    return "".join(out)


def hbar_chart(bars: Sequence[Bar], *, title: str = "", value_label: str = "",
               legend: Sequence[tuple[str, str]] = (), width: int = 860, row_h: int = 18,
               label_chars: int = 42) -> str:
    """Horizontal bars, one per row, longest first as given; `legend` is (color, label)."""
    if not bars:
        return ""
    shown = [shorten(b.label, label_chars) for b in bars]
    label_w = min(max(len(s) for s in shown) * CHAR_W + 12, 300)
    text_w = min(max((len(b.text) for b in bars), default=0) * CHAR_W + 10, 300)
    items = [("box", c, lbl) for c, lbl in legend]
    top = 26 + (14 * _legend_rows(items, width - 20) if items else 0) + 6
    height = int(top + row_h * len(bars) + 34)
    x0 = 8 + label_w
    hi = max((b.value for b in bars if b.value is not None and math.isfinite(b.value)),
             default=1.0) or 1.0
    xs = _Scale(0.0, hi, x0, width - _MARGIN_R - text_w)  # the longest bar fills the width

    out = [_svg_open(width, height, title),
           f'<text x="8" y="16" font-size="13" font-weight="600">{esc(title)}</text>'
           if title else "", _legend(items, 8, 34, width - 12) if items else ""]
    step = nice_step(hi, 5)
    bottom = top + row_h * len(bars)
    for t in nice_ticks(0.0, hi, 5):
        px = f1(xs(t))
        out.append(f'<line x1="{px}" y1="{f1(top)}" x2="{px}" y2="{f1(bottom)}" '
                   f'stroke="{GRID}"/><text x="{px}" y="{f1(bottom + 14)}" '
                   f'text-anchor="middle">{esc(fmt_tick(t, step))}</text>')
    for i, (b, label) in enumerate(zip(bars, shown)):
        y = top + i * row_h
        value = b.value if b.value is not None and math.isfinite(b.value) else 0.0
        w = max(xs(value) - xs.p0, 0.8)
        tip = esc(b.title or b.label)
        out.append(f'<g><title>{tip}</title>'
                   f'<text x="{f1(x0 - 6)}" y="{f1(y + row_h * 0.7)}" text-anchor="end">'
                   f'{esc(label)}</text>'
                   f'<rect x="{f1(x0)}" y="{f1(y + 2)}" width="{f1(w)}" height="{row_h - 4}" '
                   f'fill="{b.color}"/>'
                   f'<text x="{f1(x0 + w + 5)}" y="{f1(y + row_h * 0.7)}" fill="#444">'
                   f'{esc(b.text)}</text></g>')
    if value_label:
        out.append(f'<text x="{f1((xs.p0 + xs.p1) / 2)}" y="{height - 4}" text-anchor="middle" '
                   f'fill="#555">{esc(value_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def percentile_strip(marks: Sequence[tuple[str, float]], *, value_range: tuple[float, float],
                     whisker: tuple[float, float] | None = None,
                     box: tuple[float, float] | None = None, box_label: str = "",
                     title: str = "", x_label: str = "", width: int = 860,
                     log_x: bool | None = None) -> str:
    """A horizontal box plot: whisker, box (e.g. p25-p75) and labelled percentile ticks.

    Labels are stacked on as many rows as needed so that close percentiles stay legible.
    `log_x` None: a log axis when the range spans more than a decade."""
    lo, hi = value_range
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    log = wants_log(lo, hi) if log_x is None else (log_x and lo > 0)
    if not log:
        lo, hi = nice_range(lo, hi, zero=False)
    xs = _Scale(lo, hi, _MARGIN_L, width - _MARGIN_R, log)
    pts = sorted(((lbl, v) for lbl, v in marks if v is not None and math.isfinite(v)),
                 key=lambda m: m[1])
    rows: list[float] = []  # right edge of the last label per row
    placed = []
    for lbl, v in pts:
        text = f"{lbl} {v:.4g}" + (" → off scale" if v > hi else "")
        text = ("off scale ← " if v < lo else "") + text
        w = len(text) * CHAR_W
        px = min(max(xs(v), xs.p0), xs.p1)
        left = min(max(px - w / 2, 2), width - w - 2)
        row = next((r for r, edge in enumerate(rows) if left > edge + 6), None)
        if row is None:
            row = len(rows)
            rows.append(0.0)
        rows[row] = left + w
        placed.append((text, v, px, left, row))
    n_rows = max(len(rows), 1)
    label_top = 30
    axis_y = label_top + 14 * n_rows + 46
    height = int(axis_y + 40)
    mid = axis_y - 22

    out = [_svg_open(width, height, title), _title(title)]
    if whisker is not None:
        a, b = (min(max(xs(w), xs.p0), xs.p1) for w in whisker)
        out.append(f'<line x1="{f1(a)}" y1="{f1(mid)}" x2="{f1(b)}" y2="{f1(mid)}" '
                   f'stroke="{AXIS}" stroke-width="1.5"/>'
                   f'<line x1="{f1(a)}" y1="{f1(mid - 7)}" x2="{f1(a)}" y2="{f1(mid + 7)}" '
                   f'stroke="{AXIS}" stroke-width="1.5"/>'
                   f'<line x1="{f1(b)}" y1="{f1(mid - 7)}" x2="{f1(b)}" y2="{f1(mid + 7)}" '
                   f'stroke="{AXIS}" stroke-width="1.5"/>')
    if box is not None:
        a, b = xs(box[0]), xs(box[1])
        out.append(f'<rect x="{f1(a)}" y="{f1(mid - 10)}" width="{f1(max(b - a, 1))}" '
                   f'height="20" fill="#dbe7f6" stroke="{BLUE}"><title>{esc(box_label)}</title>'
                   f'</rect>')
    labels = []
    for text, _v, px, left, row in placed:
        ly = label_top + 14 * row + 10
        color = RED if "p99.9" in text or "max" in text else TEXT
        out.append(f'<line x1="{f1(px)}" y1="{f1(ly + 3)}" x2="{f1(px)}" y2="{f1(mid + 10)}" '
                   f'stroke="{color}" stroke-width="1" stroke-dasharray="2 2"/>'
                   f'<line x1="{f1(px)}" y1="{f1(mid - 10)}" x2="{f1(px)}" y2="{f1(mid + 10)}" '
                   f'stroke="{color}" stroke-width="2"/>')
        labels.append(f'<text x="{f1(left)}" y="{f1(ly)}" fill="{color}">{esc(text)}</text>')
    # labels last, on a white halo, so a leader line from a label above never crosses them
    out.append(f'<g stroke="#fff" stroke-width="4" paint-order="stroke">{"".join(labels)}</g>')
    out.append(_x_axis(xs, *_x_ticks(xs), axis_y))
    if log and x_label:
        x_label += " — log scale"
    if x_label:
        out.append(f'<text x="{f1((xs.p0 + xs.p1) / 2)}" y="{height - 4}" text-anchor="middle" '
                   f'fill="#555">{esc(x_label)}</text>')
    out.append("</svg>")
    return "".join(out)
