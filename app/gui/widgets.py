"""Small widget helpers shared by the panels.

`guard_wheel` stops the mouse wheel from changing a value the user is not editing: scrolling a
list or a dock that holds spin boxes and combo boxes otherwise changes whatever field passes
under the pointer (a distill batch size went 64 → 58 unnoticed). Guarded fields take the wheel
only once they have focus (a click or Tab); otherwise the wheel goes to the scroll area behind.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea, QAbstractSpinBox, QApplication, QComboBox, QSlider, QWidget,
)

_GUARDED = (QAbstractSpinBox, QComboBox, QSlider)  # not QScrollBar: scrolling is its job


def _scroll_parent(w: QWidget) -> QAbstractScrollArea | None:
    p = w.parentWidget()
    while p is not None:
        if isinstance(p, QAbstractScrollArea):
            return p
        p = p.parentWidget()
    return None


class WheelGuard(QObject):
    """Application-wide event filter: a wheel event over an unfocused spin box, combo box or
    slider is passed to the nearest scroll area above it (or dropped), never to the field."""

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if event.type() != QEvent.Type.Wheel or not isinstance(obj, _GUARDED):
            return False
        if obj.hasFocus():
            return False
        if obj.focusPolicy() & Qt.FocusPolicy.WheelFocus == Qt.FocusPolicy.WheelFocus:
            obj.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel must not focus it either
        area = _scroll_parent(obj)
        if area is not None:  # the area's viewport hands it to its scroll bar
            QApplication.sendEvent(area.viewport(), event)
        event.accept()  # a real (spontaneous) wheel event would otherwise go on to the parents
        return True  # eaten: the field keeps its value


_guard: WheelGuard | None = None


def guard_wheel(app: QApplication | None = None) -> WheelGuard:
    """Install the guard once for the whole application (idempotent); returns it."""
    global _guard
    app = app or QApplication.instance()
    if _guard is None:
        _guard = WheelGuard()
    if app is not None and not getattr(app, "_modeldeck_wheel_guard", False):
        app.installEventFilter(_guard)
        app._modeldeck_wheel_guard = True  # type: ignore[attr-defined]
    return _guard


def no_wheel_focus(*widgets: QWidget) -> None:
    """Fields that should be focused by click or Tab only (what the guard relies on)."""
    for w in widgets:
        w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
