"""Work around a reference-counting bug of PySide6 6.12.0 on Python < 3.12.

With PySide6-Essentials 6.12.0 on CPython 3.11, every Python override of a virtual method that
returns None (paintEvent, showEvent, ...) drops one reference to None, and every Signal.emit()
drops one reference to True or False. After a few thousand paints or emits CPython frees a
singleton and aborts ("Fatal Python error: none_dealloc" / "bool_dealloc") — a live chart at
30 Hz dies within minutes. PySide6 6.11.3 does not do this, and on Python 3.12+ these objects
are immortal, so the bug is harmless there. Reproducer: bench/gui_bench.py --refcount-check.

The fix belongs in the dependency pin (PySide6-Essentials 6.11.3, or Python 3.12+). Until then
this gives None/True/False a huge extra reference count — what Python 3.12 does by design (PEP
683) — so the leaked decrements can never reach zero. These singletons are never freed anyway.
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

_EXTRA_REFS = 1 << 40  # ~10^12 leaked decrements before it could matter
_applied = False


def needs_guard() -> bool:
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if hasattr(sys, "gettotalrefcount"):  # a debug build lays PyObject out differently
        return False
    try:
        import PySide6
    except ImportError:
        return False
    return PySide6.__version__.startswith("6.12.")


def apply() -> bool:
    """Idempotent; returns whether the guard is active."""
    global _applied
    if _applied:
        return True
    if not needs_guard():
        return False
    import ctypes

    for obj in (None, True, False):
        before = sys.getrefcount(obj)
        ctypes.c_ssize_t.from_address(id(obj)).value += _EXTRA_REFS  # ob_refcnt is field 0
        if sys.getrefcount(obj) - before != _EXTRA_REFS:  # not the layout we expect: undo
            ctypes.c_ssize_t.from_address(id(obj)).value -= _EXTRA_REFS
            log.warning("PySide6 refcount guard not applied (unexpected object layout)")
            return False
    _applied = True
    log.info("PySide6 %s on Python %s: refcount guard for None/True/False applied",
             __import__("PySide6").__version__, sys.version.split()[0])
    return True


apply()
