"""The window's Optimize action: the Pareto chart fills while the search runs in its worker,
a point opens its variant, Stop keeps the best so far."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"
CNN = SAMPLES / "digits_cnn.onnx"
EVAL = SAMPLES / "digits_test.npz"


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    from PySide6.QtCore import QSettings

    folder = tmp_path / "qsettings"
    folder.mkdir()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield folder


def _panel(qtbot, tmp_path, **extra):
    from app.gui.optimize_panel import OptimizePanel

    panel = OptimizePanel(tmp_path / "work")
    qtbot.addWidget(panel)
    panel.set_model(str(CNN))
    # the bundled sample's own data is filled in for it
    assert panel.eval_edit.text().endswith("digits_test.npz")
    panel.extra = {"subset": 96, "screen_rounds": 2, "full_rounds": 2, "final_rounds": 3,
                   "round_ms": 10.0, "cache_dir": str(tmp_path / "cache"), "use_cache": False,
                   **extra}
    return panel


@pytest.mark.slow
def test_pareto_chart_fills_while_the_search_runs(qtbot, tmp_path):
    panel = _panel(qtbot, tmp_path, only=["ort-int8-dynamic", "ort-int8", "ort-int8-pertensor"])
    seen: list[tuple[int, bool]] = []  # (points on the chart, job still running) per event

    def on_event(e):
        if e.get("event") == "candidate":
            seen.append((panel.chart.count(), panel.job.is_running()))

    job = panel.start()
    assert job is not None and not panel.start_btn.isEnabled()
    job.sig_event.connect(on_event)
    with qtbot.waitSignal(panel.sig_finished, timeout=300_000) as finished:
        pass
    result = finished.args[0]
    assert result is not None and result["best"] is not None
    # points arrived one by one while the worker was still running, not all at the end
    running_counts = [n for n, running in seen if running]
    assert len(running_counts) >= 3 and running_counts[0] < panel.chart.count()
    assert panel.chart.count() >= 4  # baseline + three candidates
    assert "Best" in panel.best_label.text() and panel.start_btn.isEnabled()
    assert f"at {result['best']['threads']} thread(s)" in panel.best_label.text()
    # clicking the winner's point opens that variant
    with qtbot.waitSignal(panel.sig_open_variant, timeout=5_000) as opened:
        panel._open_point(panel.chart.points[result["best"]["name"]])
    assert Path(opened.args[0]).exists()


@pytest.mark.slow
def test_stop_keeps_the_best_so_far(qtbot, tmp_path):
    panel = _panel(qtbot, tmp_path, only=["ort-int8", "ort-int8-dynamic", "ort-fp16",
                                          "ort-int8-entropy", "ort-int8-percentile"])
    job = panel.start()

    def stop_after_good(e):
        p = e.get("point") or {}
        if e.get("event") == "candidate" and p.get("meets") and p.get("name") != "baseline":
            panel.stop()

    job.sig_event.connect(stop_after_good)
    with qtbot.waitSignal(panel.sig_finished, timeout=300_000) as finished:
        pass
    result = finished.args[0]
    assert result is not None, panel.status.text()
    assert result["stopped"] == "cancelled" and result["best"] is not None
    assert "stopped" in panel.status.text()


def test_window_has_the_optimize_action(qtbot, tmp_path):
    from app.gui.main_window import MainWindow

    w = MainWindow(work_dir=tmp_path / "variants")
    qtbot.addWidget(w)
    assert w.act_optimize.text().replace("&", "") == "Optimize…"
    w.act_optimize.trigger()
    assert w.dock_optimize.widget() is w.optimize_panel
    assert w.optimize_panel.start() is None  # no model open: told so, nothing started
    assert "Open a model" in w.optimize_panel.status.text()
    w.close()


def test_optimize_dock_fits_a_1366x768_window(qtbot, tmp_path):
    """Opened on a 1366x768 window, the dock takes a tab beside the live charts (the whole
    bottom area) and a usable height: the Pareto chart at least 160 px tall beside the form,
    whose rows keep their heights (stacked, the chart was ~60 px and the form rows cut)."""
    from PySide6.QtWidgets import QAbstractSpinBox, QComboBox

    from app.gui.main_window import MainWindow

    w = MainWindow(work_dir=tmp_path / "variants")
    qtbot.addWidget(w)
    w.resize(1366, 740)
    w.show()
    qtbot.waitUntil(lambda: w.devices_job is None, timeout=120_000)
    with qtbot.waitSignal(w.sig_model_opened, timeout=120_000):
        w.open_model(str(SAMPLES / "digits_vgg.onnx"))
    w.show_optimize()
    qtbot.wait(200)
    panel = w.optimize_panel
    assert w.dock_optimize in w.tabifiedDockWidgets(w.dock_charts)
    assert panel.chart.height() >= 160 and panel.chart.width() >= 260
    assert panel.chart.geometry().left() > panel.drop_spin.mapTo(panel, panel.drop_spin.rect()
                                                                 .topRight()).x()  # beside
    fields = (panel.findChildren(QAbstractSpinBox) + panel.findChildren(QComboBox)
              + [panel.eval_edit, panel.calib_edit])
    assert len(fields) >= 5
    for field in fields:
        assert field.height() >= field.minimumSizeHint().height(), field
    w.close()
