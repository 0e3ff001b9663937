"""Where the live latency axis ends on a real run, against the old p99.5 rule.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/chart_range.py MODEL [ITERATIONS]

Runs MODEL in the window (one thread, ITERATIONS iterations, default 3000) and prints the
median, p99 and max latency, how many spikes were marked, the y-axis top the charts chose and
the one the old rule (p99.5 x 1.2, everything when nothing is far out) would have, and where
the median sits on each (a 0.12 ms median on a 50 ms axis is a line at zero).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import numpy as np
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    model = sys.argv[1] if len(sys.argv) > 1 else str(REPO / "resources/samples/digits_cnn.onnx")
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    tmp = Path(tempfile.mkdtemp(prefix="modeldeck-range-"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp))
    app = QApplication(sys.argv[:1])
    from app.gui.charts import nice_ceiling
    from app.gui.main_window import MainWindow

    def wait(cond, timeout_s: float = 600.0) -> None:
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
    opened: list[str] = []
    w.sig_model_opened.connect(opened.append)
    w.open_model(model)
    wait(lambda: bool(opened))
    w.backend.length_mode.setCurrentText("iterations")
    w.backend.iterations.setValue(iterations)
    w.backend.threads.setValue(1)
    done: list[object] = []
    w.sig_profile_finished.connect(done.append)
    w.run_profile()
    wait(lambda: bool(done))
    _, v = w.charts.series["latency_ms"].buffer.view()
    old = float(np.percentile(v, 99.5)) * 1.2
    if float(v.max()) <= old * 1.5:
        old = float(v.max()) * 1.05
    old = nice_ceiling(old)
    top = w.charts.plots["latency"].getViewBox().viewRange()[1][1]
    med = float(np.median(v))
    print(f"{Path(model).name}: {v.size} it, p50 {med:.4f} ms, p99 {np.percentile(v, 99):.4f} "
          f"ms, max {v.max():.4f} ms, spikes marked {w.charts._spikes.total}; y-axis top "
          f"{top:.4g} ms (old rule {old:.4g} ms): the median at {med / top:.0%} of the axis "
          f"height (was {med / old:.0%})")
    w.close()
    app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
