"""The model graph view: folding (fold.py), layered layout (layout.py), the widget (view.py).

fold and layout are Qt-free; `GraphView` is imported from here lazily so that importing the
package for them does not load Qt.
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
