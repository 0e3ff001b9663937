"""The main window with real worker processes and real models (offscreen Qt, no GPU).

Every long job runs in a worker: these tests wait on the window's signals, never sleep, and
check what a user would see: the graph, the charts' buffers, the p50 label, variant rows,
queued conversions, exported files, and readable errors that leave the window usable.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from app.gui.charts import LATENCY_CAPACITY, fmt_ms
from tests.conftest import REPO, SAMPLE_ONNX

JOB_TIMEOUT_MS = 120_000


def _short_run(window, iterations: int = 200) -> None:
    b = window.backend
    b.length_mode.setCurrentText("iterations")
    b.iterations.setValue(iterations)
    b.warmup.setValue(5)
    b.layers.setChecked(False)
    b.budgets.setText("")


def _run(window, qtbot, timeout=JOB_TIMEOUT_MS):
    with qtbot.waitSignal(window.sig_profile_finished, timeout=timeout) as blocker:
        assert window.run_profile() is not None
    return blocker.args[0]


# --- chart data structures (no window) ------------------------------------------------------

def test_ring_buffer_wraps_without_copies_and_buckets_keep_every_peak():
    import numpy as np

    from app.gui.charts import Buckets, RingBuffer, nice_ceiling

    ring = RingBuffer(1000)
    buckets = Buckets(ring, k=10)
    t = np.arange(2537, dtype=float)
    v = np.sin(t / 40)
    v[2300] = 50.0  # a spike inside the buffered window
    for i in range(0, t.size, 37):  # arrives in batches, as samples events do
        ring.extend(t[i:i + 37], v[i:i + 37])
    vt, vv = ring.view()
    assert len(ring) == 1000 and vt[0] == 1537 and vt[-1] == 2536
    assert np.shares_memory(vv, ring._v)  # a view into the preallocated buffer
    mid_x, mid_y, env_x, env_y = buckets.reduced(40)
    assert env_y.max() == 50.0 and env_y.min() == vv.min()  # the envelope keeps extremes
    assert env_x[0] >= vt[0] and mid_x[-1] == vt[-1]  # no dropped points, newest included
    assert len(mid_x) < 100  # ~width points, not 1000
    assert [nice_ceiling(x) for x in (0.7, 3, 42, 999)] == [1.0, 5.0, 50.0, 1000.0]


# --- open ------------------------------------------------------------------------------------

def test_open_sample_shows_graph_summary_and_node_details(opened, qtbot):
    w = opened
    assert w.current_graph is not None and w.current_graph.node_count() == 14
    shown = w.graph_view.model() if hasattr(w.graph_view, "model") else w.graph_view.graph
    assert shown is w.current_graph and shown.node_count() == 14
    assert "14 nodes" in w.summary_label.text() and "onnx" in w.summary_label.text()
    assert w.windowTitle().endswith("digits_cnn.onnx")
    assert [v.name for v in w.variants.variants] == ["original"]
    conv = next(item.node for item in w.current_graph.walk() if item.node.op_type == "Conv")
    w.graph_view.sig_node_selected.emit(conv.id)
    rows = w.details.node_rows()
    assert rows["op type"] == "Conv" and int(rows["params"].replace(",", "")) > 0
    assert rows["MACs"] not in ("", "—")
    assert "inputs" in rows and "attributes" in rows


def test_bad_file_gives_a_readable_error_and_keeps_the_model(opened, qtbot, tmp_path):
    w = opened
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n")
    with qtbot.waitSignal(w.sig_error, timeout=JOB_TIMEOUT_MS) as blocker:
        w.open_model(str(bad))
    title, message = blocker.args
    assert "broken.onnx" in title and "Git LFS pointer" in message
    assert w.last_error_dialog is not None and "Git LFS" in w.last_error_dialog.informativeText()
    assert w.current_graph.node_count() == 14 and w.model_path == str(SAMPLE_ONNX)
    assert w.isVisible()


def test_pickle_asks_consent_before_trusting(window, qtbot, tmp_path):
    torch = pytest.importorskip("torch")
    from PySide6.QtWidgets import QMessageBox

    path = tmp_path / "whole_module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), path)
    (tmp_path / "whole_module.modeldeck.json").write_text(
        json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}]}))
    window.open_model(str(path))

    def consent_box():
        boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()
                 and "pickle" in b.text()]
        assert boxes
        return boxes[0]

    qtbot.waitUntil(lambda: bool(consent_box()), timeout=JOB_TIMEOUT_MS)
    box = consent_box()
    assert "arbitrary code" in box.informativeText()
    trust = next(b for b in box.buttons() if b.text() == "Trust and load")
    with qtbot.waitSignal(window.sig_model_opened, timeout=JOB_TIMEOUT_MS):
        trust.click()
    assert window.current_graph.node_count() >= 2


# --- profile ---------------------------------------------------------------------------------

def test_profile_streams_into_charts_and_p50_matches_the_report(opened, qtbot):
    w = opened
    _short_run(w, 200)
    w.backend.budgets.setText("p99=500ms")
    outcome = _run(w, qtbot)
    assert outcome.status == "ok", (outcome.error, outcome.stderr_tail)
    report = w.last_report
    charts = w.charts
    assert charts.point_count("latency_ms") == report["iterations"] == 200
    assert charts.point_count("rss_mb") > 0
    buf = charts.series["latency_ms"].buffer
    assert buf._v.size == 2 * LATENCY_CAPACITY  # preallocated, never regrown
    assert charts.final_p50_ms == report["latency_ms"]["p50"]
    assert fmt_ms(report["latency_ms"]["p50"]) in charts.p50_label.text()
    power_axis = charts.plots["power"].getAxis("left").labelText
    assert "power" in power_axis
    if report["power"]["source"] == "estimate":
        assert "estimated" in power_axis
    assert w.variants.variants[0].latency_p50 == report["latency_ms"]["p50"]
    assert not charts.streaming


def test_per_layer_times_reach_the_graph_and_details(opened, qtbot):
    w = opened
    _short_run(w, 50)
    w.backend.layers.setChecked(True)
    seen = {}
    w.graph_view.set_node_times = lambda times: seen.setdefault("times", times)
    outcome = _run(w, qtbot)
    assert outcome.status == "ok", outcome.error
    ids = {item.node.id for item in w.current_graph.walk()}
    assert seen["times"] and set(seen["times"]) <= ids
    node_id = max(seen["times"], key=seen["times"].get)
    w.details.select_node(node_id)
    assert "ms per inference" in w.details.node_rows()["time"]
    if hasattr(w.graph_view, "colour_mode"):
        assert w.graph_view.colour_mode() == "time"


def test_killed_worker_fails_the_job_and_keeps_the_samples(opened, qtbot):
    w = opened
    b = w.backend
    b.length_mode.setCurrentText("seconds")
    b.duration.setValue(60.0)
    job = w.run_profile()
    qtbot.waitUntil(lambda: w.charts.series["latency_ms"].buffer.total > 50, timeout=60_000)
    with qtbot.waitSignal(w.sig_profile_finished, timeout=30_000) as blocker:
        job.proc.kill()
    outcome = blocker.args[0]
    assert outcome.status == "failed" and outcome.error_kind == "crashed"
    kept = w.charts.point_count("latency_ms")
    assert kept > 50
    assert w.errors[-1]["title"] == "The run failed"
    assert "without a result" in w.errors[-1]["message"]
    assert w.isVisible() and not w.charts.streaming
    w.charts.redraw()
    assert w.charts.point_count("latency_ms") == kept  # still on the chart
    assert w.backend.run_button.isEnabled()


def test_cancel_stops_the_run(opened, qtbot):
    w = opened
    w.backend.length_mode.setCurrentText("seconds")
    w.backend.duration.setValue(60.0)
    w.run_profile()
    qtbot.waitUntil(lambda: w.charts.series["latency_ms"].buffer.total > 0, timeout=60_000)
    with qtbot.waitSignal(w.sig_profile_finished, timeout=30_000) as blocker:
        qtbot.mouseClick(w.job_bar.cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].status == "cancelled"
    assert "cancelled" in w.job_bar.status.text().lower()
    assert w.charts.point_count("latency_ms") > 0


# --- passes, variants, comparison, export ----------------------------------------------------

def test_apply_pass_adds_a_variant_and_compare_shows_both(opened, qtbot, tmp_path):
    w = opened
    w.passes.set_checked("fp16")
    w.passes.set_target_format(None)
    w.passes.set_eval("sample")
    variant = w.apply_passes()
    assert variant is not None and len(w.variants.variants) == 2
    qtbot.waitUntil(lambda: variant.status != "running", timeout=JOB_TIMEOUT_MS)
    assert variant.status == "ok", (variant.message, variant.details)
    assert variant.format == "onnx" and os.path.exists(variant.path)
    assert str(tmp_path) in variant.path  # the window's work folder, never next to the source
    original = w.variants.variants[0]
    assert variant.size_bytes < original.size_bytes
    assert variant.fidelity["cosine"] > 0.99
    assert variant.accuracy["accuracy"] > 0.9
    assert w.variants.table.item(1, 0).text() == "fp16"

    _short_run(w, 50)
    job = w.compare([original.path, variant.path])
    assert job is not None
    with qtbot.waitSignal(job.sig_finished, timeout=JOB_TIMEOUT_MS) as blocker:
        pass
    outcome = blocker.args[0]
    assert outcome.status == "ok", (outcome.error, outcome.stderr_tail)
    assert w.variants.compare_table.rowCount() == 2
    assert w.variants.variants[1].latency_p50 is not None
    out = tmp_path / "comparison.json"
    w.export_report(str(out))
    assert len(json.loads(out.read_text())["rows"]) == 2


def test_export_run_report_json_html_csv(opened, qtbot, tmp_path):
    w = opened
    _short_run(w, 50)
    assert _run(w, qtbot).status == "ok"
    j = tmp_path / "run.json"
    w.export_report(str(j))
    data = json.loads(j.read_text())
    assert data["schema"].startswith("modeldeck.report/") and data["iterations"] == 50
    h = tmp_path / "run.html"
    w.export_report(str(h))
    assert h.exists() and "<html" in h.read_text()[:2000].lower()
    files = w.export_report(str(tmp_path / "run.csv"))
    assert files and all(os.path.exists(f) for f in files)


def test_dropping_two_files_on_the_converter_queues_two_conversions(window, qtbot, tmp_path):
    w = window
    w.passes.set_checked("fp16")
    w.passes.set_eval(None)
    files = []
    for name in ("a.onnx", "b.onnx"):
        shutil.copy(SAMPLE_ONNX, tmp_path / name)
        files.append(tmp_path / name)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in files])
    panel = w.converter
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    panel.dropEvent(event)
    assert event.isAccepted()
    assert [os.path.basename(i.path) for i in panel.items] == ["a.onnx", "b.onnx"]
    assert len(panel.running()) <= panel.parallel.value()
    qtbot.waitUntil(lambda: panel.pending() == 0, timeout=2 * JOB_TIMEOUT_MS)
    for item in panel.items:
        assert item.status == "ok", item.result_label.text()
        assert "→" in item.result_label.text() and "cosine" in item.result_label.text()
        assert os.path.exists(item.outcome.result["output"])


def test_converter_shows_a_readable_failure_with_details(window, qtbot, tmp_path):
    w = window
    w.passes.set_checked("fp16")
    bad = tmp_path / "empty.onnx"
    bad.write_bytes(b"")
    item = w.converter.enqueue(str(bad))
    qtbot.waitUntil(lambda: item.status not in ("queued", "running"), timeout=JOB_TIMEOUT_MS)
    assert item.status == "failed"
    assert "empty" in item.result_label.text()
    assert not item.details_button.isHidden()  # (its dock tab may be behind another)


# --- settings, import rule -------------------------------------------------------------------

def test_settings_persist_in_the_temporary_location(qtbot, isolated_settings, tmp_path):
    from app.gui import settings
    from app.gui.main_window import MainWindow

    w = MainWindow(work_dir=tmp_path)
    qtbot.addWidget(w)
    w.backend.threads.setValue(3)
    w.dock_converter.raise_()
    settings.add_recent_file(str(SAMPLE_ONNX))
    w.close()
    assert any(isolated_settings.rglob("*.ini")), "settings went somewhere else"
    w2 = MainWindow(work_dir=tmp_path)
    qtbot.addWidget(w2)
    assert w2.backend.threads.value() == 3
    assert settings.recent_files()[0] == str(SAMPLE_ONNX)
    w2.close()


def test_measure_startup_prints_milliseconds_and_exits(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "app.cli", "--measure-startup"], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    ms = float(r.stdout.split()[0])
    assert 0 < ms < 60_000  # a figure, not a verdict: bench/gui_bench.py compares it


def test_gui_process_never_imports_a_framework(tmp_path):
    """Open the window, inspect and profile the sample: the GUI process itself must not have
    imported torch, openvino, onnxruntime or nncf (they live in the workers)."""
    script = f"""
import os, sys, json
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QSettings, QTimer
QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, {str(tmp_path)!r})
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.gui.main_window import MainWindow
w = MainWindow(work_dir={str(tmp_path)!r})
w.backend.iterations.setValue(20)
w.sig_model_opened.connect(lambda p: w.run_profile())
w.sig_profile_finished.connect(lambda o: app.exit(0 if o.status == "ok" else 3))
w.sig_ready.connect(lambda: w.open_model({str(SAMPLE_ONNX)!r}))
QTimer.singleShot(120000, lambda: app.exit(2))
w.show()
code = app.exec()
heavy = sorted(m for m in ("torch", "openvino", "onnxruntime", "nncf") if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy}}))
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                       timeout=180, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["code"] == 0, r.stderr[-2000:]
    assert out["heavy"] == []


def test_many_paints_and_emits_do_not_crash_the_gui_process():
    """PySide6 6.12.0 on Python 3.11 dropped a reference to None per overridden paintEvent and
    to True/False per Signal.emit(): the process aborted after a few thousand (hence the pin
    to 6.11.3). A live chart repaints and the worker's events are emitted for minutes on end,
    so this must hold for whatever PySide6 the constraints pick next."""
    script = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QWidget
app = QApplication([])
class W(QWidget):
    def paintEvent(self, event):
        pass
class E(QObject):
    sig_event = Signal(dict)
w, e = W(), E()
e.sig_event.connect(lambda d: None)
w.show()
for i in range(20000):
    w.repaint()
    e.sig_event.emit({"i": i})
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-1500:]


def test_dynamic_model_runs_without_touching_any_field(window, qtbot):
    """An OCR recogniser with a free batch and a free width (rapidocr 3.10.0,
    rapidocr/models/PP-OCRv6_rec_small.onnx): the Inputs table fills with resolved sizes and
    their sources, a short profile runs at them, and an edited size is what the next run uses."""
    from tests.real_models import wheel_member

    path = wheel_member("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_rec_small.onnx")
    w = window
    with qtbot.waitSignal(w.sig_model_opened, timeout=JOB_TIMEOUT_MS):
        w.open_model(str(path))
    table = w.backend.inputs_table.table
    assert table.rowCount() == 1 and table.item(0, 0).text() == "x"
    assert table.item(0, 2).text() == "1 × 3 × 48 × 224"
    assert "default" in table.item(0, 3).text()
    assert "default sizes" in w.summary_label.text()  # MACs say they are at assumed sizes
    _short_run(w, 5)
    w.backend.threads.setValue(1)
    outcome = _run(w, qtbot)
    assert outcome.status == "ok", (outcome.error, outcome.stderr_tail)
    assert w.last_report["inputs"]["x"]["shape"] == [1, 3, 48, 224]
    macs_at_224 = w.summary["macs"]
    with qtbot.waitSignal(w.sig_recounted, timeout=JOB_TIMEOUT_MS):
        table.item(0, 2).setText("1x3x48x320")  # the user edits the width: MACs follow
    assert table.item(0, 3).text() == "set by you" and table.item(0, 2).text() == "1 × 3 × 48 × 320"
    assert "at 1×3×48×320" in w.summary_label.text() and "default" not in w.summary_label.text()
    assert w.summary["macs"] > 1.3 * macs_at_224  # the width is ~1.4x wider
    outcome = _run(w, qtbot)
    assert outcome.status == "ok", (outcome.error, outcome.stderr_tail)
    assert w.last_report["inputs"]["x"]["shape"] == [1, 3, 48, 320]
    assert w.last_report["workload"]["inputs"][0]["shape_source"] == "set by you"
    table.item(0, 2).setText("1x3xabc")  # not a size: the run refuses before starting
    assert not w.backend.inputs_table.valid()
    assert "not a size" in w.backend.inputs_table.invalid_message()


def test_a_size_set_for_one_input_binds_its_named_dims_in_the_table(window, qtbot, tmp_path):
    """BERT-style encoder (transformers config, random weights): setting input_ids to 1 x 64
    gives attention_mask and token_type_ids 64 too (one 'sequence'); a conflicting size is said
    in the Inputs panel, not as a crash or a dialog."""
    from tests.real_models import bert_onnx

    w = window
    with qtbot.waitSignal(w.sig_model_opened, timeout=JOB_TIMEOUT_MS):
        w.open_model(str(bert_onnx(tmp_path)))
    panel = w.backend.inputs_table
    rows = {panel.table.item(r, 0).text(): r for r in range(panel.table.rowCount())}
    assert panel.table.item(rows["attention_mask"], 2).text() == "1 × 128"
    assert "integers 0..1" in panel.table.item(rows["token_type_ids"], 4).text()
    with qtbot.waitSignal(w.sig_recounted, timeout=JOB_TIMEOUT_MS):
        panel.table.item(rows["input_ids"], 2).setText("1x64")
    assert panel.table.item(rows["attention_mask"], 2).text() == "1 × 64"
    assert "set by you (input_ids)" in panel.table.item(rows["attention_mask"], 3).text()
    assert panel.user_shapes() == {"input_ids": [1, 64]}
    panel.table.item(rows["token_type_ids"], 2).setText("1x32")  # 'sequence' is 64 already
    qtbot.waitUntil(lambda: "⚠" in panel.note.text(), timeout=JOB_TIMEOUT_MS)
    assert "must have one size" in panel.note.text()
    panel.reset()  # back to the model's own sizes
    qtbot.waitUntil(lambda: panel.table.item(rows["input_ids"], 2).text() == "1 × 128",
                    timeout=JOB_TIMEOUT_MS)
    assert panel.user_shapes() == {}
