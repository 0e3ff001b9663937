"""Render a model's graph to a file without a window: SVG straight from the layout (svg.py,
no Qt), PNG through the window's own GraphView on Qt's offscreen platform."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from app.gui.graph.fold import FoldTree
from app.gui.graph.svg import apply_expand, layout_for_svg, svg_text
from converters.graph import ModelGraph

FORMATS = (".svg", ".png")


@dataclass
class RenderResult:
    path: Path
    boxes: int  # boxes drawn (nodes and folded groups; inputs/outputs not counted)
    hidden_weights: int  # Constant weights shown as rows of their consumers
    fold_s: float
    layout_s: float
    write_s: float
    png_scale: float | None = None  # pixels per layout unit a PNG got (the cap may shrink it)


def render_graph(model: ModelGraph, out: str | Path, expand: str | int | None = None,
                 scale: float = 1.0) -> RenderResult:
    """Write `model`'s graph to `out` (.svg or .png), folded as `expand` says (svg.apply_expand)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot write a graph as {out.suffix or 'a file without suffix'!r}: "
                         "name the output .svg or .png")
    if not out.parent.is_dir():
        raise ValueError(f"folder {out.parent} does not exist")
    t0 = time.perf_counter()
    tree = FoldTree(model)
    apply_expand(tree, expand)
    t1 = time.perf_counter()
    if suffix == ".svg":
        sl, boxes = layout_for_svg(tree)
        t2 = time.perf_counter()
        text = svg_text(tree, sl, boxes, title=model.meta.path)
        out.write_text(text, encoding="utf-8")
        used = None
    else:
        used, t2 = _png(model, tree, out, scale)
    t3 = time.perf_counter()
    return RenderResult(out, tree.visible_node_count(), len(tree.hidden), t1 - t0, t2 - t1,
                        t3 - t2, used)


def _png(model: ModelGraph, tree: FoldTree, out: Path, scale: float):
    """The window's view, offscreen: same fonts, colours and layout as on screen."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from app.gui.graph.view import MAX_EXPORT_PIXELS, GraphView

    app = QApplication.instance() or QApplication([])
    view = GraphView()
    view.resize(1200, 900)
    t2 = time.perf_counter()
    view.set_model(model, fold=lambda t: _same_fold(tree, t))
    rect = view._scene_rect
    used = min(scale, MAX_EXPORT_PIXELS / max(rect.width(), rect.height(), 1.0))
    view.export_image(out, scale=scale)
    view.deleteLater()
    app.processEvents()
    return used, t2


def _same_fold(src: FoldTree, dst: FoldTree) -> None:
    for key, it in dst.items.items():
        other = src.items.get(key)
        if other is not None and it.is_group:
            it.expanded = other.expanded
