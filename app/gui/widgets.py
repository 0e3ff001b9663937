"""Small widget helpers shared by the panels.

`guard_wheel` stops the mouse wheel from changing a value the user is not editing: scrolling a
list or a dock that holds spin boxes and combo boxes otherwise changes whatever field passes
under the pointer (a distill batch size went 64 → 58 unnoticed). Guarded fields take the wheel
only once they have focus (a click or Tab); otherwise the wheel goes to the scroll area behind.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import (
    QAbstractScrollArea, QAbstractSpinBox, QApplication, QComboBox, QLayout, QLayoutItem,
    QSlider, QWidget,
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


class FlowLayout(QLayout):
    """Buttons in rows that wrap to the width they get: a row of five buttons then does not set
    a dock's (and the window's) minimum width."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 4):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setSpacing(spacing)
        self.setContentsMargins(0, 0, 0, 0)

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 (Qt override)
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 (Qt override)
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 (Qt override)
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 (Qt override)
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 (Qt override)
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt override)
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 (Qt override)
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        w = sum(i.sizeHint().width() for i in self._items) + self.spacing() * max(
            len(self._items) - 1, 0)
        h = max((i.sizeHint().height() for i in self._items), default=0)
        m = self.contentsMargins()
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 (Qt override)
        size = QSize()
        for i in self._items:
            size = size.expandedTo(i.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _place(self, rect: QRect, move: bool) -> int:
        m = self.contentsMargins()
        r = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, line = r.x(), r.y(), 0
        for item in self._items:
            if item.widget() is not None and item.widget().isHidden():
                continue
            hint = item.sizeHint()
            if x + hint.width() > r.right() + 1 and line > 0:
                x, y, line = r.x(), y + line + self.spacing(), 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self.spacing()
            line = max(line, hint.height())
        return y + line - rect.y() + m.bottom()
