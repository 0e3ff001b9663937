"""The wheel guard: scrolling over a list of fields scrolls the list and changes no field."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QApplication, QListWidget, QListWidgetItem, QSpinBox, QComboBox,
)


def wheel(widget, dy: int = -120) -> None:
    """One wheel notch (down by default) over the middle of `widget`."""
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    glob = QPointF(widget.mapToGlobal(pos.toPoint()))
    ev = QWheelEvent(pos, glob, QPoint(0, 0), QPoint(0, dy), Qt.MouseButton.NoButton,
                     Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, ev)


def _list_of_spins(qtbot, n: int = 30):
    lst = QListWidget()
    qtbot.addWidget(lst)
    spins = []
    for i in range(n):
        item = QListWidgetItem(f"row {i}")
        lst.addItem(item)
        spin = QSpinBox()
        spin.setRange(0, 1000)
        spin.setValue(64)
        lst.setItemWidget(item, spin)
        spins.append(spin)
    lst.resize(200, 150)
    lst.show()
    qtbot.waitExposed(lst)
    return lst, spins


def test_wheel_over_unfocused_spin_scrolls_the_list(qtbot):
    from app.gui.widgets import guard_wheel

    guard_wheel()
    lst, spins = _list_of_spins(qtbot)
    bar = lst.verticalScrollBar()
    assert bar.maximum() > 0
    before = bar.value()
    target = next(s for s in spins if s.isVisible())
    for _ in range(3):
        wheel(target)
    assert all(s.value() == 64 for s in spins), "a spin box under the pointer changed"
    assert bar.value() > before, "the list did not scroll"


def test_focused_spin_still_takes_the_wheel(qtbot):
    from app.gui.widgets import guard_wheel

    guard_wheel()
    lst, spins = _list_of_spins(qtbot, 3)
    spin = spins[0]
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    wheel(spin, dy=120)
    assert spin.value() == 65


def test_combo_outside_a_scroll_area_ignores_the_wheel(qtbot):
    from app.gui.widgets import guard_wheel

    guard_wheel()
    combo = QComboBox()
    combo.addItems(["a", "b", "c"])
    qtbot.addWidget(combo)
    combo.show()
    qtbot.waitExposed(combo)
    wheel(combo)
    assert combo.currentIndex() == 0
