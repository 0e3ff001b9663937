"""The main window's layout rules: it fits a 1366×768 screen, it never grows past the screen
it is on, and its docks never overlap.

Qt grows a window to its layout's minimum size whenever a child's minimum grows (a long status
text, a plot row, a form), and when the minimums add up to more than the window, docks paint
over each other. So: form-like docks scroll instead of imposing their height, labels whose
text grows elide instead of imposing their width, and after anything that changes contents the
window is clamped to the screen's available area.
"""
from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import (
    QDockWidget, QFrame, QLabel, QMainWindow, QScrollArea, QSizePolicy, QWidget,
)

SMALL_SCREEN = (1366, 768)
CENTRAL_MIN_WIDTH = 420  # the graph: room for a readable overview beside two dock columns
CHARTS_IDLE_HEIGHT = 90  # the charts dock before any run: a line saying what will appear
CHARTS_RUN_SHARE = 0.38  # of the window's height once a run streams


def scrollable(widget: QWidget, min_width: int = 200) -> QScrollArea:
    """`widget` in a frameless vertical scroll area: a dock holding a form then asks for a
    few rows of height, not the whole form's."""
    area = QScrollArea()
    area.setObjectName(f"{widget.objectName() or type(widget).__name__}_scroll")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setWidget(widget)
    area.setMinimumWidth(min_width)
    area.setMinimumHeight(80)
    return area


def elide_width(label: QLabel) -> None:
    """A label whose text grows (rolling figures, budgets) no longer sets a minimum width:
    it is cut by the layout and its tooltip carries the whole text."""
    label.setSizePolicy(QSizePolicy.Policy.Ignored, label.sizePolicy().verticalPolicy())
    label.setMinimumWidth(1)


def available(window: QWidget) -> QRect | None:
    screen = window.screen()
    return screen.availableGeometry() if screen is not None else None


def default_size(window: QWidget) -> tuple[int, int]:
    """A first start's size: 90 % of a large screen, at least 1400×880, never more than the
    screen (a small one is then filled)."""
    area = available(window)
    if area is None:
        return 1400, 880
    return (min(area.width(), max(1400, int(area.width() * 0.9))),
            min(area.height(), max(880, int(area.height() * 0.9))))


def side_widths(window: QWidget) -> tuple[int, int]:
    """First-start widths of the left (passes, backend) and right (details, variants) dock
    columns: about a quarter of the window each, so the graph and charts keep half."""
    w = window.width()
    return (max(260, min(380, int(w * 0.22))), max(260, min(440, int(w * 0.24))))


def fit_to_screen(window: QMainWindow) -> None:
    """Shrink (never grow) the window to the available area of the screen it is on."""
    area = available(window)
    if area is None or window.isMaximized() or window.isFullScreen():
        return
    frame = window.frameGeometry()
    extra_w = max(frame.width() - window.width(), 0)
    extra_h = max(frame.height() - window.height(), 0)
    w = min(window.width(), area.width() - extra_w)
    h = min(window.height(), area.height() - extra_h)
    if (w, h) != (window.width(), window.height()):
        window.resize(max(w, 1), max(h, 1))


def visible_docks(window: QMainWindow) -> list[QDockWidget]:
    return [d for d in window.findChildren(QDockWidget)
            if d.isVisible() and not d.isFloating() and d.parent() is window
            and not d.visibleRegion().isEmpty()]  # a tab behind another is not drawn


def overlaps(window: QMainWindow) -> list[tuple[str, str]]:
    """Pairs of docks (or a dock and the central widget) that paint over each other."""
    items = [(d.objectName(), d.geometry()) for d in visible_docks(window)]
    central = window.centralWidget()
    if central is not None and central.isVisible():
        items.append(("central", central.geometry()))
    out = []
    for i, (a, ga) in enumerate(items):
        for b, gb in items[i + 1:]:
            if ga.intersects(gb):
                out.append((a, b))
    return out
