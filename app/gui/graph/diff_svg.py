"""`modeldeck diff A B -o both.svg`: the two graphs side by side, coloured as the window's
graph diff colours them (Qt-free, from the layout, like svg.py)."""
from __future__ import annotations

from html import escape
from pathlib import Path

from app.gui.graph.fold import FoldTree
from app.gui.graph.svg import MARGIN, layout_for_svg, svg_text
from converters.graph import ModelGraph
from converters.graph_diff import GraphDiff

# the window's palette (diff_view.STATUS_PALETTE), kept here without Qt
STATUS_COLOURS = {"removed": "#c0392b", "added": "#2e8b57", "changed": "#e07b24",
                  "fused": "#8e6bb8", "inserted": "#b3a21b", "same": "#7b8794"}
_ORDER = list(STATUS_COLOURS)
GAP = 60.0
HEAD = 70.0


def _fills(tree: FoldTree, status: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Header colour of every box (a folded group: its most important status), and outlines
    for changed nodes."""
    fills: dict[str, str] = {}
    outlines: dict[str, str] = {}
    for it in tree.visible():
        if it.kind in ("input", "output"):
            continue
        sts = {status.get(leaf.key) for leaf in tree.leaf_nodes(it)} - {None}
        if not sts:
            continue
        st = min(sts, key=_ORDER.index)
        fills[it.key] = STATUS_COLOURS[st]
        if st in ("changed", "added", "removed"):
            outlines[it.key] = STATUS_COLOURS[st]
    return fills, outlines


def write_diff_svg(diff: GraphDiff, base: ModelGraph, other: ModelGraph,
                   path: str | Path) -> Path:
    parts = []
    x = 0.0
    height = 0.0
    for model, status, notes, title in ((base, diff.base_status, diff.notes_base, "base"),
                                        (other, diff.other_status, diff.notes_other, "other")):
        tree = FoldTree(model)
        tree.auto_fold()
        sl, boxes = layout_for_svg(tree)
        fills, outlines = _fills(tree, status)
        inner = svg_text(tree, sl, boxes, model.meta.path, fills, outlines, notes)
        w, h = sl.width + 2 * MARGIN, sl.height + 2 * MARGIN
        # a group, not a nested <svg>: SVG Tiny readers (Qt's among them) skip nested ones
        body = inner.split("\n", 1)[1].rsplit("</svg>", 1)[0]
        inner = (f'<g transform="translate({x + MARGIN:.0f},{HEAD + MARGIN:.0f})">'
                 f"{body}</g>")
        parts.append((x, title, model.meta.path, inner))
        x += w + GAP
        height = max(height, h)
    s = diff.summary()
    width = x - GAP
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
           f'height="{height + HEAD:.0f}" font-family="DejaVu Sans, Arial, sans-serif">',
           f'<rect width="{width:.0f}" height="{height + HEAD:.0f}" fill="#fff"/>',
           f'<text x="10" y="22" font-size="14">{s["matched"]} nodes matched '
           f'({s["by_name"]} by name, {s["by_structure"]} by structure, {s["by_order"]} by '
           f'order) · {s["changed"]} changed · {s["fused"]} folded · {s["inserted"]} Q/DQ or '
           f'casts inserted · {s["only_base"]} removed · {s["only_other"]} added</text>']
    lx = 10.0
    for st, colour in STATUS_COLOURS.items():
        out.append(f'<rect x="{lx:.0f}" y="32" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{lx + 16:.0f}" y="43" font-size="12">{st}</text>')
        lx += 90
    for x0, title, p, inner in parts:
        out.append(f'<text x="{x0 + 10:.0f}" y="62" font-size="13" font-weight="bold">'
                   f'{escape(title)}: {escape(Path(p).name)}</text>')
        out.append(inner)
    out.append("</svg>\n")
    path = Path(path)
    path.write_text("\n".join(out), encoding="utf-8")
    return path
