"""The folded graph as an SVG drawing, written straight from the layout: no Qt, no window.

`modeldeck graph MODEL -o out.svg` uses it (app/graph_cli.py). Boxes, frames and edges follow
the window's layout engine and box contents (content.py); text is measured with fixed
per-character widths of a 12 px sans-serif face instead of Qt's font metrics, so boxes are a
few pixels wider or narrower than in the window, never cut.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape
from pathlib import Path

from app.gui.graph.content import MUTED, box_content
from app.gui.graph.fold import GROUP, INPUT, OUTPUT, FoldItem, FoldTree
from app.gui.graph.layout import GROUP_TITLE, CompoundLayout, EdgeRoute, SceneLayout
from app.gui.graph.palette import CATEGORY_COLOURS, category, dominant_category

TITLE_PX, BODY_PX = 12.0, 11.0
HEADER_H, LINE_H, PAD = 22.0, 15.0, 8.0
MIN_W, MAX_W = 96.0, 250.0
MARGIN = 30.0
_NARROW = set("iljtfI.,:;'|!()[]{} ")
_WIDE = set("MWmw@%")


def _char_em(ch: str) -> float:
    return 0.34 if ch in _NARROW else 0.9 if ch in _WIDE else 0.7 if ch.isupper() else 0.6


def text_width(text: str, px: float, bold: bool = False) -> float:
    """Width of `text` in a sans-serif face at `px`: per-character classes, a close upper
    estimate for DejaVu Sans / Arial."""
    return sum(_char_em(ch) for ch in text) * px * (1.2 if bold else 1.0)


def _elide(text: str, px: float, width: float, bold: bool = False) -> str:
    """Cut the middle out of `text` so it fits `width` (one pass: exporters' names run long)."""
    f = px * (1.2 if bold else 1.0)
    ws = [_char_em(ch) * f for ch in text]
    if sum(ws) <= width:
        return text
    budget = width - _char_em("…") * f
    i, j, used = 0, len(text), 0.0
    while i < j:
        take_head = i <= len(text) - j
        w = ws[i] if take_head else ws[j - 1]
        if used + w > budget:
            break
        used += w
        if take_head:
            i += 1
        else:
            j -= 1
    return text[:i] + "…" + text[j:]


class SvgBoxes:
    """Box contents and sizes for the SVG, cached per item (the layout asks more than once)."""

    def __init__(self, tree: FoldTree):
        self.tree = tree
        self._cache: dict[str, tuple[str, list[tuple[str, int]], float, float]] = {}
        self._summary: dict[str, tuple[int, dict[str, int]]] = {}

    def summary(self, it: FoldItem) -> tuple[int, dict[str, int]]:
        s = self._summary.get(it.key)
        if s is None:
            hist = self.tree.op_histogram(it)
            s = self._summary[it.key] = (sum(hist.values()), hist)
        return s

    def text(self, it: FoldItem) -> tuple[str, list[tuple[str, int]], float, float]:
        hit = self._cache.get(it.key)
        if hit is not None:
            return hit
        title, lines = box_content(self.tree, it, self.summary)
        extra = 16.0 if it.is_group else 0.0
        widest = max([text_width(title, TITLE_PX, True) + extra] +
                     [text_width(s, BODY_PX) for s, _ in lines])
        w = min(MAX_W, max(MIN_W, widest + 2 * PAD + 2))
        inner = w - 2 * PAD
        title = _elide(title, TITLE_PX, inner - extra, True)
        lines = [(_elide(s, BODY_PX, inner), r) for s, r in lines]
        if it.kind in (INPUT, OUTPUT):
            h = TITLE_PX + 6 + LINE_H * len(lines) + 12
        else:
            h = HEADER_H + (LINE_H * len(lines) + 7 if lines else 0)
        entry = (title, lines, float(round(w)), float(round(h)))
        self._cache[it.key] = entry
        return entry

    def size(self, it: FoldItem) -> tuple[float, float]:
        _, _, w, h = self.text(it)
        return w, h


def layout_for_svg(tree: FoldTree) -> tuple[SceneLayout, SvgBoxes]:
    boxes = SvgBoxes(tree)
    return CompoundLayout(tree, boxes.size).run(), boxes


def fill_of(tree: FoldTree, it: FoldItem, boxes: SvgBoxes) -> str:
    if it.node is not None:
        cat = category(it.node.op_type)
    else:
        cat = dominant_category(boxes.summary(it)[1])
    return CATEGORY_COLOURS.get(cat, CATEGORY_COLOURS["other"])


def write_svg(tree: FoldTree, path: str | Path, title: str = "",
              fills: Mapping[str, str] | None = None,
              outlines: Mapping[str, str] | None = None,
              notes: Mapping[str, str] | None = None,
              layout: tuple[SceneLayout, SvgBoxes] | None = None) -> Path:
    """Write the tree's visible part (as folded now) to `path`. Returns the path.

    `fills`: item key -> header colour (default: by op category); `outlines`: key -> a
    coloured border (the graph diff marks changed nodes so); `notes`: key -> a line added
    to the box's tooltip.
    """
    sl, boxes = layout or layout_for_svg(tree)
    path = Path(path)
    path.write_text(svg_text(tree, sl, boxes, title, fills, outlines, notes), encoding="utf-8")
    return path


def svg_text(tree: FoldTree, sl: SceneLayout, boxes: SvgBoxes, title: str = "",
             fills: Mapping[str, str] | None = None,
             outlines: Mapping[str, str] | None = None,
             notes: Mapping[str, str] | None = None) -> str:
    fills = fills or {}
    outlines = outlines or {}
    notes = notes or {}
    w, h = sl.width + 2 * MARGIN, sl.height + 2 * MARGIN
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="{-MARGIN:.0f} {-MARGIN:.0f} {w:.0f} {h:.0f}" '
        'font-family="DejaVu Sans, Arial, Helvetica, sans-serif">',
        f"<title>{escape(title or tree.model.meta.path or 'graph')}</title>",
        "<style>.t{font-weight:bold;font-size:12px}.b{font-size:11px;fill:#222}"
        ".m{font-size:11px;fill:#777}.f{font-weight:bold;font-size:12px;fill:#333}"
        ".e{fill:none;stroke:#8a8f96;stroke-width:1.2}.a{fill:#8a8f96}</style>",
        f'<rect x="{-MARGIN:.0f}" y="{-MARGIN:.0f}" width="{w:.0f}" height="{h:.0f}" '
        'fill="#ffffff"/>',
    ]
    items = tree.items
    # frames, outer first
    for key, (x, y, fw, fh) in sorted(sl.frames.items(), key=lambda kv: -kv[1][2] * kv[1][3]):
        it = items[key]
        label = it.label if it.node is None or it.body else f"{it.node.op_type} · {it.node.name}"
        stroke = outlines.get(key, "#c9ccd1")
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{fw:.1f}" height="{fh:.1f}" rx="8" '
                   f'fill="#000" fill-opacity="0.035" stroke="{stroke}"/>')
        if it.node is not None and not it.body:
            colour = fills.get(key) or fill_of(tree, it, boxes)
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{fw:.1f}" height="{GROUP_TITLE}" '
                       f'rx="8" fill="{colour}"/>')
            cls = 't" fill="#fff'
        else:
            cls = "f"
        out.append(f'<text class="{cls}" x="{x + 10:.1f}" y="{y + 17:.1f}">'
                   f"{escape(_elide(label, TITLE_PX, fw - 20, True))}</text>")
    # edges
    for r in sl.edges:
        out.append(_edge(r))
    # boxes
    for key, (x, y, bw, bh) in sl.boxes.items():
        it = items[key]
        text, lines, _, _ = boxes.text(it)
        tip = _tooltip(it, notes.get(key))
        if it.kind in (INPUT, OUTPUT):
            out.append(f'<g><title>{escape(tip)}</title><rect x="{x:.1f}" y="{y:.1f}" '
                       f'width="{bw:.1f}" height="{bh:.1f}" rx="{min(bh / 2, 12):.1f}" '
                       f'fill="#eceef1" stroke="{outlines.get(key, "#9aa0a6")}"/>')
            cx = x + bw / 2
            ty = y + (bh - TITLE_PX - 6 - LINE_H * len(lines)) / 2 + TITLE_PX
            out.append(f'<text class="t" fill="#222" x="{cx:.1f}" y="{ty:.1f}" '
                       f'text-anchor="middle">{escape(text)}</text>')
            for i, (s, _) in enumerate(lines):
                out.append(f'<text class="m" x="{cx:.1f}" y="{ty + 4 + LINE_H * (i + 1):.1f}" '
                           f'text-anchor="middle">{escape(s)}</text>')
            out.append("</g>")
            continue
        colour = fills.get(key) or fill_of(tree, it, boxes)
        stroke = outlines.get(key)
        out.append(f"<g><title>{escape(tip)}</title>")
        if it.kind == GROUP:  # a stack: there is more inside
            out.append(f'<rect x="{x + 4:.1f}" y="{y + 4:.1f}" width="{bw:.1f}" '
                       f'height="{bh:.1f}" rx="5" fill="#fff" stroke="#9aa0a6"/>')
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" rx="5" '
                   f'fill="#fff" stroke="#9aa0a6"/>')
        hh = min(HEADER_H, bh)
        out.append(f'<path d="M{x:.1f},{y + hh:.1f}V{y + 5:.1f}a5,5 0 0 1 5,-5H{x + bw - 5:.1f}'
                   f'a5,5 0 0 1 5,5V{y + hh:.1f}Z" fill="{colour}"/>')
        if stroke:
            out.append(f'<rect x="{x - 2:.1f}" y="{y - 2:.1f}" width="{bw + 4:.1f}" '
                       f'height="{bh + 4:.1f}" rx="7" fill="none" stroke="{stroke}" '
                       'stroke-width="3"/>')
        out.append(f'<text class="t" fill="#fff" x="{x + PAD:.1f}" y="{y + 15.5:.1f}">'
                   f"{escape(text)}</text>")
        if it.kind == GROUP:
            out.append(f'<text class="t" fill="#fff" x="{x + bw - PAD:.1f}" y="{y + 15.5:.1f}" '
                       'text-anchor="end">+</text>')
        ty = y + hh + 3 + BODY_PX
        for s, role in lines:
            out.append(f'<text class="{"m" if role == MUTED else "b"}" x="{x + PAD:.1f}" '
                       f'y="{ty:.1f}">{escape(s)}</text>')
            ty += LINE_H
        out.append("</g>")
    out.append("</svg>\n")
    return "\n".join(out)


def _edge(r: EdgeRoute) -> str:
    pts = r.points
    if len(pts) < 2:
        return ""
    ex, ey = pts[-1]
    _, py = pts[-2]
    down = ey >= py
    if r.arrow:
        pts = pts[:-1] + [(ex, ey - 7 if down else ey + 7)]
    x0, y0 = pts[0]
    d = [f"M{x0:.1f},{y0:.1f}"]
    for x1, y1 in pts[1:]:
        dy = (y1 - y0) * 0.5
        d.append(f"C{x0:.1f},{y0 + dy:.1f} {x1:.1f},{y1 - dy:.1f} {x1:.1f},{y1:.1f}")
        x0, y0 = x1, y1
    s = f'<path class="e" d="{"".join(d)}"/>'
    if r.arrow:
        k = -1 if down else 1
        s += (f'<path class="a" d="M{ex:.1f},{ey:.1f}L{ex - 3.6:.1f},{ey + k * 8:.1f}'
              f'L{ex + 3.6:.1f},{ey + k * 8:.1f}Z"/>')
    return s


def _tooltip(it: FoldItem, note: str | None) -> str:
    if it.node is not None:
        text = f"{it.node.op_type} {it.node.name}".strip()
    elif it.kind in (INPUT, OUTPUT):
        text = it.label
    else:
        text = it.path or it.label
    return f"{text}\n{note}" if note else text


ExpandFn = Callable[[FoldTree], None]


def apply_expand(tree: FoldTree, expand: str | int | None) -> None:
    """None: as the window opens it (folded to a few hundred boxes); "all": every group open;
    N: the first N levels of groups open (0: everything folded)."""
    if expand is None:
        tree.auto_fold()
        return
    if expand == "all":
        tree.expand_all()
        return
    depth = int(expand)
    if depth < 0:
        raise ValueError(f"--expand takes 'all' or a number of levels >= 0, not {expand!r}")
    tree.collapse_all()
    level = [c for c in tree.root.children if c.is_group]
    for _ in range(depth):
        nxt = []
        for g in level:
            g.expanded = True
            for c in g.children:
                if c.is_group:
                    nxt.extend([c] if not c.body else [x for x in c.children if x.is_group])
        level = nxt
