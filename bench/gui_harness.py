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


def show_window(work_dir: Path, size: tuple[int, int] | None = None,
                maximized: bool = False) -> Any:
    """The main window shown (at `size`, or maximized), once ready and its devices probed."""
    from app.gui.main_window import MainWindow

    w = MainWindow(work_dir=work_dir)
    if size:
        w.resize(*size)
    ready: list[int] = []
    w.sig_ready.connect(lambda: ready.append(1))
    w.showMaximized() if maximized else w.show()
    wait(lambda: ready, what="window")
    wait(lambda: w.devices_job is None, what="the devices probe")
    return w


def open_model(w: Any, path: Path | str) -> None:
    """Open `path` in window `w` and wait until it is shown."""
    opened: list[str] = []
    w.sig_model_opened.connect(opened.append)
    w.open_model(str(path))
    wait(lambda: opened, what=f"{Path(path).name} to open")
