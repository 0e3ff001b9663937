"""What the window screenshot scripts share: a QApplication whose settings live in a given
folder (the user's are never touched), and waiting on the event loop for a condition (the
window keeps painting and jobs keep reporting while a script waits)."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def start_app(settings_dir: Path) -> Any:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(settings_dir))
    app = QApplication(sys.argv[:1])
    app.setApplicationDisplayName("ModelDeck")
    return app


def wait(cond: Callable[[], Any], timeout_s: float = 300.0, what: str = "") -> None:
    """Run the event loop until `cond()` holds; give up (exit) after `timeout_s`."""
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        loop = QEventLoop()
        QTimer.singleShot(30, loop.quit)
        loop.exec()


def pause(seconds: float) -> None:
    """Let the window run for `seconds` (paint, animate, take events)."""
    end = time.monotonic() + seconds
    wait(lambda: time.monotonic() >= end, seconds + 5)
