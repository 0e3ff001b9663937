"""Run as a script under an offscreen screen of a given size (QT_QPA_PLATFORM=offscreen:
configfile=...): opens the main window, a model, runs a short profile, and prints the layout
at each stage as JSON (used by test_window_fit; the test process's own screen is 800×800)."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    tmp = Path(tempfile.mkdtemp(prefix="modeldeck-layout-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp))
    app = QApplication(sys.argv[:1])
    from app.gui.layout import overlaps
    from app.gui.main_window import MainWindow

    def wait(cond, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            loop = QEventLoop()
            QTimer.singleShot(30, loop.quit)
            loop.exec()

    w = MainWindow(work_dir=tmp / "variants")
    ready: list[int] = []
    w.sig_ready.connect(lambda: ready.append(1))
    w.show()
    wait(lambda: bool(ready))
    wait(lambda: w.devices_job is None)
    stages = []

    def record(stage: str) -> None:
        end = time.monotonic() + 0.3
        wait(lambda: time.monotonic() > end)
        area = w.screen().availableGeometry()
        hint = w.minimumSizeHint()
        stages.append({"stage": stage, "window": [w.width(), w.height()],
                       "frame": [w.frameGeometry().width(), w.frameGeometry().height()],
                       "screen": [area.width(), area.height()],
                       "min": [max(hint.width(), w.minimumWidth()),
                               max(hint.height(), w.minimumHeight())],
                       "overlaps": overlaps(w), "charts_h": w.dock_charts.height(),
                       "pass_rows": pass_rows(),
                       "buttons_shown": all(not b.visibleRegion().isEmpty() for b in (
                           w.variants.open_button, w.variants.compare_button,
                           w.variants.export_button)),
                       "central": [w.centralWidget().width(), w.centralWidget().height()]})

    def pass_rows() -> float:
        from PySide6.QtWidgets import QAbstractItemView

        lst = w.passes.findChild(QAbstractItemView, "pass_list")
        if lst is None or not lst.count():
            return -1.0
        return lst.viewport().height() / max(lst.sizeHintForRow(0), 1)

    record("start")
    opened: list[str] = []
    w.sig_model_opened.connect(opened.append)
    w.open_model(sys.argv[1])
    wait(lambda: bool(opened))
    record("opened")
    w.backend.length_mode.setCurrentText("iterations")
    w.backend.iterations.setValue(300)
    w.backend.budgets.setText("p99=20ms, rss=2000MB")
    done: list[object] = []
    w.sig_profile_finished.connect(done.append)
    w.run_profile()
    wait(lambda: bool(done))
    record("ran")
    for width, height in ((1000, 600), (800, 400)):  # the user shrinks it (to its minimum)
        w.resize(width, height)
        record(f"shrunk to {width}x{height}")
    print(json.dumps(stages))
    w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
