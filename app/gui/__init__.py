"""The desktop GUI (PySide6 + pyqtgraph). Never imports a framework: models come as plain data.

Importing this package also guards against a reference-count bug of PySide6 6.12 on
Python < 3.12: every call of a Qt method returning void (QPainter.setPen, QWidget.update, ...)
drops one reference to None that it never took. Python 3.12 made None immortal, so it does
not matter there; on 3.11 the count reaches zero after a few thousand calls and the process
aborts ("Fatal Python error: none_dealloc"), at the latest when it exits. We give None, True
and False the same immortality: a reference count too large to ever reach zero.
"""
from __future__ import annotations

import sys


def _immortalize_singletons() -> None:
    if sys.version_info >= (3, 12) or hasattr(sys, "gettotalrefcount"):  # immortal / debug build
        return
    import ctypes

    for obj in (None, True, False):
        cell = ctypes.c_ssize_t.from_address(id(obj))
        if cell.value == sys.getrefcount(obj) - 1 and cell.value < 1 << 40:  # ob_refcnt, sane
            cell.value += 1 << 48


_immortalize_singletons()
