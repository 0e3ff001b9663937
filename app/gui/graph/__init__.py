"""The model graph view: folding (fold.py, structure.py for scope-less levels), layered layout
(layout.py), box contents (content.py), the widget (view.py), the graph diff (diff_view.py,
matching in converters/graph_diff.py) and drawing without a window (svg.py, diff_svg.py,
headless.py).

fold, structure, layout, content, palette, svg and diff_svg are Qt-free; `GraphView` is
imported from here lazily so that importing the package for them does not load Qt.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.gui.graph.view import GraphView

__all__ = ["GraphView"]


def __getattr__(name: str) -> Any:
    if name == "GraphView":
        from app.gui.graph.view import GraphView

        return GraphView
    raise AttributeError(name)
