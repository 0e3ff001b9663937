"""Run ▸ Optimize…: the menu entry, cheap at startup; the panel (pyqtgraph) is built on use."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt


def attach(window: Any, menu: Any) -> None:
    """Add Run ▸ Optimize… to the window: a dock built on first use, following the model."""
    def show() -> None:
        from PySide6.QtWidgets import QDockWidget

        from app.gui.optimize_panel import OptimizePanel  # pyqtgraph: on use, not at startup

        panel = getattr(window, "optimize_panel", None)
        if panel is None:
            panel = OptimizePanel(Path(window.work_dir))
            panel.sig_open_variant.connect(lambda p: window.open_model(p, as_variant=True))
            if hasattr(window, "_trusted"):  # consent given when the model was opened
                panel.trust_check = lambda path: window._trusted([path])
            backend = getattr(window, "backend", None)
            panel.picker = getattr(backend, "target_picker", None)  # "Run on": here or a target
            if hasattr(window, "show_error"):  # failures in the window's own error dialog
                panel.show_error = window.show_error
            dock = QDockWidget("Optimize", window)
            dock.setObjectName("dock_optimize")
            dock.setWidget(panel)
            window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
            charts = getattr(window, "dock_charts", None)
            if charts is not None and not charts.isFloating():
                # a tab beside the live charts: the whole bottom area, not half of it
                window.tabifyDockWidget(charts, dock)
            window.optimize_panel, window.dock_optimize = panel, dock
        panel.set_model(window.root_path or window.model_path)
        window.dock_optimize.show()
        window.dock_optimize.raise_()
        if not window.dock_optimize.isFloating():  # room for the form and the chart
            window.resizeDocks([window.dock_optimize], [max(300, int(window.height() * 0.42))],
                               Qt.Orientation.Vertical)

    window.act_optimize = menu.addAction("&Optimize…")
    window.act_optimize.triggered.connect(show)
    window.show_optimize = show
