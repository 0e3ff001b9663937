"""The window for real work (issue 11): backend from the model's format, layout that fits the
screen, variants that last, charts that do not mislead, and the small traps."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import SAMPLE_ONNX, SAMPLES


def _devices(window, qtbot):
    qtbot.waitUntil(lambda: window.devices_job is None, timeout=120_000)


def _open(window, qtbot, path, trust: bool = False):
    if trust:
        window.trusted_files.add(os.path.abspath(path))
    with qtbot.waitSignal(window.sig_model_opened, timeout=120_000):
        window.open_model(str(path))


# --- backend from the model's format -------------------------------------------------------
@pytest.mark.slow
def test_pt2_opens_with_torch_and_onnx_goes_back(window, qtbot, tmp_path):
    _devices(window, qtbot)
    names = [window.backend.backend_combo.itemData(i)
             for i in range(window.backend.backend_combo.count())]
    if "torch" not in names:
        pytest.skip(f"no torch backend here ({names})")
    assert window.backend.values()["backend"] == "onnxruntime"
    _open(window, qtbot, SAMPLES / "digits_cnn.pt2", trust=True)
    assert window.backend.values()["backend"] == "torch"
    assert window.backend.format_note.isHidden()
    _open(window, qtbot, SAMPLE_ONNX)  # torch cannot run ONNX: back to the default
    assert window.backend.values()["backend"] == "onnxruntime"
    # a TorchScript file named .jit: found by content, runs on torch
    jit = tmp_path / "digits.jit"
    shutil.copy(SAMPLES / "digits_cnn.ts.pt", jit)
    _open(window, qtbot, jit, trust=True)
    assert window.backend.values()["backend"] == "torch"


@pytest.mark.slow
def test_a_user_choice_that_runs_the_format_is_kept(window, qtbot):
    _devices(window, qtbot)
    combo = window.backend.backend_combo
    i = combo.findData("openvino")
    if i < 0 or not combo.model().item(i).isEnabled():
        pytest.skip("no openvino backend here")
    combo.setCurrentIndex(i)  # the user prefers OpenVINO for ONNX models
    _open(window, qtbot, SAMPLE_ONNX)
    assert window.backend.values()["backend"] == "openvino"


@pytest.mark.slow
def test_compare_disabled_with_why_when_the_backend_cannot_run_the_variants(window, qtbot):
    from app.gui.panels.variants import Variant

    _devices(window, qtbot)
    _open(window, qtbot, SAMPLE_ONNX)
    panel = window.variants
    ir = Variant(name="→ openvino", path=str(SAMPLE_ONNX.with_suffix(".xml")),
                 format="openvino")
    panel._append(ir)
    combo = window.backend.backend_combo
    combo.setCurrentIndex(combo.findData("onnxruntime"))
    assert not panel.compare_button.isEnabled()
    tip = panel.compare_button.toolTip()
    assert "onnxruntime cannot run openvino" in tip
    assert window.compare([v.path for v in panel.variants]) is None
    assert window.errors[-1]["title"] == "Cannot compare"
    i = combo.findData("openvino")
    if i >= 0 and combo.model().item(i).isEnabled():
        combo.setCurrentIndex(i)  # OpenVINO runs both ONNX and IR
        assert panel.compare_button.isEnabled()


# --- charts that do not mislead --------------------------------------------------------------
@pytest.fixture
def charts(qtbot):
    from app.gui.charts import LiveCharts

    c = LiveCharts()
    qtbot.addWidget(c)
    c.resize(1200, 300)
    c.show()
    qtbot.waitExposed(c)
    return c


def _series(t, v):
    import numpy as np

    return np.c_[t, v].tolist()


def _y(charts, key):
    return charts.plots[key].getViewBox().viewRange()[1]


def test_latency_range_is_the_body_and_spikes_are_marked(charts):
    """A 0.12 ms model with 2 % spikes at 5 ms: the axis shows the 0.12 ms body."""
    import numpy as np

    rng = np.random.default_rng(0)
    t = np.linspace(0, 5, 5000)
    lat = 0.12 + 0.01 * rng.random(5000)
    lat[::50] = 5.0
    charts.reset(())
    charts.add_samples({"latency_ms": _series(t, lat)})
    charts.redraw()
    charts.stop()
    lo, hi = _y(charts, "latency")
    assert lo == 0 and 0.13 < hi < 0.5, (lo, hi)  # was 5+ (scaled to the spikes)
    st, sv = charts.spike_markers.getData()
    assert sv is not None and len(sv) >= 90  # the spikes are marked ...
    assert float(np.max(sv)) <= hi  # ... pinned inside the axis, not scaled to


def test_no_spikes_shows_everything(charts):
    import numpy as np

    t = np.linspace(0, 5, 1000)
    lat = np.linspace(1.0, 3.0, 1000)  # a slow drift is data, not a spike
    charts.reset(())
    charts.add_samples({"latency_ms": _series(t, lat)})
    charts.stop()
    assert _y(charts, "latency")[1] >= 3.0


def test_resource_axes_with_an_rss_budget(charts):
    """CPU and power axes follow their readings, not a first-sample blip nor another
    plot's budget; the RSS budget stays in view on the memory axis."""
    import numpy as np

    t = np.linspace(0, 5, 100)
    cpu = np.full(100, 95.0)
    cpu[0] = 1000.0  # psutil's first reading over a few ms
    power = np.full(100, 12.0)
    power[1] = 100.0
    charts.reset(["rss=500MB"])
    charts.add_samples({"rss_mb": _series(t, 150 + t), "cpu_percent": _series(t, cpu),
                        "power_w": _series(t, power)})
    charts.stop()
    assert _y(charts, "cpu")[1] <= 200, _y(charts, "cpu")
    assert _y(charts, "power")[1] <= 20, _y(charts, "power")
    assert 500 <= _y(charts, "memory")[1] <= 1000


def test_budget_label_says_live_then_final_as_the_report(charts):
    import numpy as np

    charts.reset(["p99=20ms"])
    t = np.linspace(0, 1, 300)
    charts.add_samples({"latency_ms": _series(t, np.full(300, 15.0))})
    charts.mark_budget_broken("p99=20ms", 24.6)
    text = charts.budget_label.text()
    assert "live" in text and "24.6" in text and "final" in text  # "final figure pending"
    report = {"latency_ms": {"p50": 15.0, "p99": 17.8}, "iterations": 300,
              "budgets": [{"budget": "p99=20ms", "metric": "p99", "limit": 20.0, "unit": "ms",
                           "value": 17.8, "ok": True, "broken_live": True}]}
    charts.set_result(report)
    text = charts.budget_label.text()
    assert "final p99 17.80 ms — PASS" in text and "broken live" in text
    line = charts._budget_lines["p99=20ms"]
    assert line.label.format == "✓ p99 ≤ 20 ms PASS"


@pytest.mark.slow
def test_charts_and_time_colouring_reset_for_the_next_model(window, qtbot):
    from tests.conftest import light_model

    _devices(window, qtbot)
    _open(window, qtbot, SAMPLE_ONNX)
    window.backend.iterations.setValue(200)
    window.backend.length_mode.setCurrentText("iterations")
    window.backend.budgets.setText("p99=0.001ms, rss=100000MB")  # one fails, one passes
    with qtbot.waitSignal(window.sig_profile_finished, timeout=120_000) as blocker:
        window.run_profile()
    assert blocker.args[0].status == "ok"
    assert window.charts.point_count("latency_ms") > 0
    # the label ends with the report's own verdicts, each said to be the final figure
    from app.gui.charts import fmt_ms

    label = window.charts.budget_label.text()
    verdicts = {b["budget"]: b for b in window.last_report["budgets"]}
    p99 = verdicts["p99=0.001ms"]
    assert p99["ok"] is False and f"final p99 {fmt_ms(p99['value'])} — FAIL" in label
    assert verdicts["rss=100000MB"]["ok"] is True and "final rss" in label and "PASS" in label
    assert "pending" not in label
    window.backend.budgets.setText("")
    _open(window, qtbot, light_model("squeezenet"))
    assert window.charts.point_count("latency_ms") == 0
    assert window.charts.p50_label.text() == ""
    assert window.charts.rolling_label.text() == "no run yet"
    mode = getattr(window.graph_view, "colour_mode", None)
    if callable(mode):
        assert mode() == "op"
    assert window.last_report is None


# --- variants that last ----------------------------------------------------------------------
def _convert(window, qtbot, name: str = "fp16"):
    """A real conversion of the open model through the worker, as Apply makes one (without
    the passes panel, which another change owns)."""
    from app.gui.jobs import WorkerJob

    source = window.model_path
    output = window._output_path(source, "onnx", [{"name": name}], None)
    convert = {"model": source, "output": output, "to": None,
               "passes": [{"name": name, "options": {}}], "calib": None, "eval": "sample",
               "trust_code": False, "shapes": {}}
    job = WorkerJob({"job": "convert", "convert": convert, **convert}, window)
    variant = window.variants.add_conversion(name, job)
    job.start()
    qtbot.waitUntil(lambda: variant.status != "running", timeout=180_000)
    assert variant.status == "ok", (variant.message, variant.details)
    return variant


@pytest.mark.slow
def test_variants_restored_when_the_model_is_reopened(window, qtbot, tmp_path):
    from tests.conftest import light_model

    _devices(window, qtbot)
    _open(window, qtbot, SAMPLE_ONNX)
    variant = _convert(window, qtbot)
    original = window.variants.variants[0]
    # the original row gets the accuracy its conversion measured on the sample's labels
    assert original.accuracy and original.accuracy["accuracy"] > 0.9
    assert window.variants.table.item(0, 6).text() != "—"
    window.backend.iterations.setValue(100)
    window.backend.length_mode.setCurrentText("iterations")
    with qtbot.waitSignal(window.sig_profile_finished, timeout=120_000):
        window.run_profile()
    assert original.latency_p50 is not None  # and the latency of its run
    window.variants.show_comparison({"rows": [], "config": {}})  # something in the tab
    window.variants.compare_note.setText("previous model's comparison")

    _open(window, qtbot, light_model("squeezenet"))
    assert [v.name for v in window.variants.variants] == ["original"]
    assert window.variants.compare_table.rowCount() == 0
    assert "previous model" not in window.variants.compare_note.text()

    _open(window, qtbot, SAMPLE_ONNX)
    rows = window.variants.variants
    assert [v.name for v in rows] == ["original", "fp16"]
    assert rows[1].path == variant.path and rows[1].status == "ok"
    assert rows[1].fidelity == variant.fidelity and rows[1].size_bytes == variant.size_bytes
    assert rows[0].accuracy == original.accuracy
    assert rows[0].latency_p50 == original.latency_p50
    assert window.variants.table.item(1, 0).text() == "fp16"

    # a variant whose file was deleted is not restored
    os.unlink(variant.path)
    _open(window, qtbot, light_model("squeezenet"))
    _open(window, qtbot, SAMPLE_ONNX)
    assert [v.name for v in window.variants.variants] == ["original"]


def test_damaged_index_is_set_aside(tmp_path):
    from app.gui.variant_store import VariantStore

    (tmp_path / "variants.json").write_text("{not json")
    store = VariantStore(tmp_path)
    assert store.load(SAMPLE_ONNX) == {"original": {}, "variants": []}
    assert (tmp_path / "variants.json.bad").exists()
    store.save(SAMPLE_ONNX, {"latency_p50": 1.0}, [])
    assert store.load(SAMPLE_ONNX)["original"] == {"latency_p50": 1.0}


# --- a layout that fits the screen -----------------------------------------------------------
def _probe(tmp_path, size: tuple[int, int], model) -> list[dict]:
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = tmp_path / "screen.json"
    cfg.write_text(json.dumps({"screens": [{"name": "s0", "x": 0, "y": 0, "width": size[0],
                                            "height": size[1], "logicalDpi": 96,
                                            "logicalBaseDpi": 96, "dpr": 1}]}))
    env = {**os.environ, "QT_QPA_PLATFORM": f"offscreen:configfile={cfg}"}
    r = subprocess.run([sys.executable, "-m", "tests.app.gui.layout_probe", str(model)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_window_fits_the_screen_with_no_overlapping_docks(tmp_path, size):
    """Opening a model and finishing a run never widen the window past the screen; the
    minimum sizes add up to less than a 1366×768 screen; no dock paints over another; the
    empty charts take little height before the first run."""
    stages = _probe(tmp_path, size, SAMPLE_ONNX)
    assert [s["stage"] for s in stages] == ["start", "opened", "ran", "shrunk to 1000x600",
                                            "shrunk to 800x400"]
    for s in stages[3:]:  # shrunk: still no dock over another, the Variants buttons shown
        assert s["overlaps"] == [] and s["buttons_shown"], s
    stages = stages[:3]
    for s in stages:
        assert s["screen"] == list(size)
        assert s["frame"][0] <= size[0] and s["frame"][1] <= size[1], s
        assert s["min"][0] <= 1366 and s["min"][1] <= 768, s
        assert s["overlaps"] == [], s
        assert s["central"][0] >= 400 and s["central"][1] >= 300, s
        assert s["pass_rows"] == -1 or s["pass_rows"] >= 6, s  # not ~4 rows
        assert s["buttons_shown"], s
    start, _, ran = stages
    assert start["charts_h"] < 0.2 * start["window"][1], start  # not half the height
    assert ran["charts_h"] > start["charts_h"]  # the run gets its charts


# --- small traps -----------------------------------------------------------------------------
def test_wheel_over_the_passes_list_changes_no_field(window, qtbot):
    """Scrolling the passes dock over its spin boxes and combos leaves every value as it was
    (a distill batch went 64 → 58 unnoticed)."""
    from PySide6.QtWidgets import QAbstractSpinBox, QComboBox

    from tests.app.gui.test_widgets import wheel

    window.passes.ensure_loaded()
    fields = [w for w in window.passes.findChildren(QAbstractSpinBox)
              + window.passes.findChildren(QComboBox)]
    assert fields
    before = [f.text() if isinstance(f, QAbstractSpinBox) else f.currentIndex() for f in fields]
    for f in fields:
        f.clearFocus()
        for _ in range(3):
            wheel(f)
            wheel(f, dy=120)
    after = [f.text() if isinstance(f, QAbstractSpinBox) else f.currentIndex() for f in fields]
    assert after == before


def test_wheel_over_the_passes_list_scrolls_it(window, qtbot):
    from PySide6.QtWidgets import QAbstractItemView

    from tests.app.gui.test_widgets import wheel

    window.passes.ensure_loaded()
    lst = window.passes.findChild(QAbstractItemView, "pass_list")
    if lst is None:
        pytest.skip("the passes panel has no pass_list")
    lst.setFixedHeight(60)  # fewer rows than passes: the list must scroll
    qtbot.waitUntil(lambda: lst.verticalScrollBar().maximum() > 0)
    bar = lst.verticalScrollBar()
    bar.setValue(0)
    wheel(lst.viewport())
    assert bar.value() > 0


def test_long_values_in_details_can_be_read_whole(opened, qtbot):
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QPlainTextEdit

    d = opened.details
    long_value = list(range(400))
    node = next(item.node for item in opened.current_graph.walk())
    node.attributes["long_list"] = long_value
    d.select_node(node.id)
    attrs = next(d.node_root.child(i) for i in range(d.node_root.childCount())
                 if d.node_root.child(i).text(0) == "attributes")
    row = next(attrs.child(i) for i in range(attrs.childCount())
               if attrs.child(i).text(0) == "long_list")
    assert row.text(1).endswith("…") and len(row.text(1)) <= 120
    whole = d.full_value(row)
    assert whole == str(long_value).replace(" ", "").replace(",", ", ")
    d.copy_value(row)
    assert QGuiApplication.clipboard().text() == whole
    dialog = d.show_value(row)
    assert dialog.findChild(QPlainTextEdit, "whole_value").toPlainText() == whole
    dialog.close()
    # every row has a tooltip with its whole text
    rows = [d.model_root.child(i) for i in range(d.model_root.childCount())]
    assert all(r.toolTip(1) for r in rows if r.text(1))


def test_open_filter_knows_every_suffix(window):
    from app.gui.file_dialogs import model_filter
    from converters.formats import FORMATS

    f = model_filter()
    assert "*.jit" in f
    for fmt in FORMATS.values():
        for s in fmt.suffixes:
            if s != ".bin":
                assert f"*{s}" in f


def test_export_dialogs_start_in_documents_then_the_last_folder(opened, qtbot, tmp_path,
                                                                 monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from app.gui.file_dialogs import documents_dir
    from tests.conftest import REPO

    seen = []
    target = tmp_path / "reports" / "r.json"
    target.parent.mkdir()

    def fake_save(parent, caption, start, filters=""):
        seen.append(start)
        return str(target), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_save))
    opened.last_report = {"schema": "modeldeck.report/1", "iterations": 1}
    opened._last_result_kind = "run"
    monkeypatch.setattr(opened, "export_report", lambda path: [path])
    opened.export_report_dialog()
    assert os.path.dirname(seen[0]) == documents_dir()
    assert not seen[0].startswith(str(REPO))
    opened.export_report_dialog()
    assert os.path.dirname(seen[1]) == str(target.parent)  # the folder used last time
    opened.export_graph_dialog()
    assert os.path.dirname(seen[2]) == documents_dir()  # graphs remember their own folder


def test_error_dialogs_always_have_details(window):
    window.show_error("Nothing to profile", "open a model first")
    box = window.last_error_dialog
    assert box.detailedText().strip()  # the 'Show Details…' button is there
    assert any(b.text().startswith("Show Details") for b in box.buttons())
    box.close()
    try:
        raise ValueError("a bad value deep inside")
    except ValueError as e:
        window.show_error("Cannot start the run", str(e))
    box = window.last_error_dialog
    assert "Traceback" in box.detailedText() and "a bad value deep inside" in box.detailedText()
    box.close()


def test_variants_made_before_the_index_come_back_from_their_lineage(tmp_path):
    """A variant folder without variants.json (older versions): the lineage file each final
    output has names its source, so the row still comes back."""
    import json

    from app.gui.variant_store import VariantStore

    out = tmp_path / "digits_cnn.fp16.onnx"
    shutil.copy(SAMPLE_ONNX, out)
    (tmp_path / (out.name + ".lineage.json")).write_text(json.dumps({
        "schema": "modeldeck.lineage/1", "source": {"path": str(SAMPLE_ONNX), "sha256": "x"},
        "to": None, "passes": [{"name": "fp16", "options": {}}], "output": str(out)}))
    other = tmp_path / "other.int8-dynamic.onnx"
    shutil.copy(SAMPLE_ONNX, other)
    (tmp_path / (other.name + ".lineage.json")).write_text(json.dumps({
        "source": {"path": "/elsewhere/other.onnx"}, "passes": [{"name": "int8-dynamic"}],
        "output": str(other)}))
    loaded = VariantStore(tmp_path).load(SAMPLE_ONNX)["variants"]
    assert [(v["name"], v["path"], v["format"]) for v in loaded] == [
        ("fp16", str(out), "onnx")]
    assert loaded[0]["size_bytes"] == SAMPLE_ONNX.stat().st_size
    # once in the index, the row is not listed twice
    VariantStore(tmp_path).save(SAMPLE_ONNX, {}, loaded)
    assert len(VariantStore(tmp_path).load(SAMPLE_ONNX)["variants"]) == 1


def test_the_graph_views_own_export_starts_in_documents(opened, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from app.gui.file_dialogs import documents_dir

    if not hasattr(opened.graph_view, "_export_dialog"):
        pytest.skip("no graph view")
    seen = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a: (seen.append(a[2]), ("", ""))[1]))
    opened.graph_view._export_dialog()
    assert seen == [os.path.join(documents_dir(), "digits_cnn.png")]
