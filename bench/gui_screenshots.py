"""Screenshots of the main views for the README, made with real workers and real models.

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python bench/gui_screenshots.py [--out DIR]

Writes (default resources/screenshots/):
  graph_time_overlay.png   the sample's graph coloured by per-layer time, a node selected
  live_run.png             a duration run streaming: latency with a budget line, RSS, CPU, power
  variants_comparison.png  fp16 / int8-dynamic variants and their side-by-side comparison
  converter_queue.png      files dropped on the converter: done, running, queued, failed
Settings go to a temporary folder; the user's own ModelDeck settings are untouched.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gui_harness import open_model, pause, show_window, start_app, wait  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "resources" / "screenshots"))
    p.add_argument("--size", default="1800x1100", help="window size WxH")
    p.add_argument("--dark", action="store_true",
                   help="a dark palette, as a system in dark mode gives (files get _dark)")
    args = p.parse_args()
    if not os.environ.get("DISPLAY") and "QT_QPA_PLATFORM" not in os.environ:
        print("no DISPLAY: run under xvfb-run (falling back to offscreen rendering)",
              file=sys.stderr)
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="modeldeck-shots-"))

    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    app = start_app(tmp / "cfg")
    if args.dark:
        _dark_palette(app)
    from tests.conftest import SAMPLE_ONNX

    def shot(name: str) -> None:
        pause(0.3)  # let the charts' timer and the layout settle
        path = out / (name.replace(".png", "_dark.png") if args.dark else name)
        w.grab().save(str(path))
        print(f"wrote {path}")

    width, height = (int(v) for v in args.size.split("x"))
    w = show_window(tmp / "variants", (width, height))
    w.resizeDocks([w.dock_passes], [380], Qt.Orientation.Horizontal)
    w.resizeDocks([w.dock_details], [430], Qt.Orientation.Horizontal)
    w.resizeDocks([w.dock_charts], [300], Qt.Orientation.Vertical)

    w.ensure_charts().set_log_latency(True)  # a shared, busy machine: spikes 30x the median
    open_model(w, SAMPLE_ONNX)

    # 1. graph with the per-layer time overlay
    b = w.backend
    b.length_mode.setCurrentText("iterations")
    b.iterations.setValue(3000)
    b.layers.setChecked(True)
    b.budgets.setText("p99=1ms")
    finished = []
    w.sig_profile_finished.connect(finished.append)
    w.run_profile()
    wait(lambda: finished, what="the profile")
    times = {}
    if w.last_report:
        for row in w.last_report.get("layers") or []:
            if row.get("node_id"):
                times[row["node_id"]] = times.get(row["node_id"], 0) + row["time_ms"]
    if times:
        slowest = max(times, key=times.get)
        w._on_node_selected(slowest)
        w.resizeDocks([w.dock_charts], [230], Qt.Orientation.Vertical)
        pause(0.3)
        w.graph_view.select_node(slowest)  # centred at 100 %: labels readable
    w.dock_details.raise_()
    shot("graph_time_overlay.png")

    # 2. a live run, mid-stream
    w.resizeDocks([w.dock_charts], [330], Qt.Orientation.Vertical)
    b.layers.setChecked(False)
    b.length_mode.setCurrentText("seconds")
    b.duration.setValue(12.0)
    b.budgets.setText("p99=0.5ms, rss=400MB")
    finished.clear()
    w.run_profile()
    wait(lambda: w.charts.series["latency_ms"].buffer.total > 0, what="samples")
    pause(6.0)
    shot("live_run.png")
    w.stop_profile()
    wait(lambda: finished, what="the run to stop")

    # 3. variants and their comparison
    w.passes.set_eval("sample")
    w.passes.set_target_format(None)
    variants = []
    for name in ("fp16", "int8-dynamic"):
        for other in w.passes.checked_passes():
            w.passes.set_checked(other, False)
        w.passes.set_checked(name)
        variants.append(w.apply_passes())
    wait(lambda: all(v.status != "running" for v in variants), what="the conversions")
    b.length_mode.setCurrentText("iterations")
    b.iterations.setValue(500)
    b.budgets.setText("")
    job = w.compare([v.path for v in w.variants.variants if v.status == "ok"])
    done = []
    job.sig_finished.connect(done.append)
    wait(lambda: done, what="the comparison")
    w.dock_variants.raise_()
    w.variants.tabs.setCurrentIndex(1)
    w.resizeDocks([w.dock_variants], [760], Qt.Orientation.Horizontal)
    shot("variants_comparison.png")
    w.variants.tabs.setCurrentIndex(0)
    shot("variants_table.png")

    # 4. the converter queue
    for other in w.passes.checked_passes():
        w.passes.set_checked(other, False)
    w.passes.set_checked("int8-dynamic")
    w.passes.set_eval(None)
    drops = []
    for name in ("camera_model.onnx", "doorbell_model.onnx", "kiosk_model.onnx"):
        shutil.copy(SAMPLE_ONNX, tmp / name)
        drops.append(tmp / name)
    broken = tmp / "half_download.onnx"
    broken.write_bytes(b"<!DOCTYPE html><html><body>Sign in to continue</body></html>")
    drops.insert(1, broken)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(f)) for f in drops])
    w.dock_converter.raise_()
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    w.converter.dropEvent(event)
    wait(lambda: any(i.status == "ok" for i in w.converter.items), what="a first conversion")
    shot("converter_queue_running.png")
    wait(lambda: w.converter.pending() == 0, what="the queue")
    shot("converter_queue.png")

    w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _dark_palette(app) -> None:
    """What a desktop in dark mode hands Qt: the window must follow it, nothing hard-coded."""
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    p = QPalette()
    for role, colour in ((QPalette.ColorRole.Window, "#2b2b2b"),
                         (QPalette.ColorRole.WindowText, "#e6e6e6"),
                         (QPalette.ColorRole.Base, "#1e1e1e"),
                         (QPalette.ColorRole.AlternateBase, "#262626"),
                         (QPalette.ColorRole.Text, "#e6e6e6"),
                         (QPalette.ColorRole.Button, "#333333"),
                         (QPalette.ColorRole.ButtonText, "#e6e6e6"),
                         (QPalette.ColorRole.Highlight, "#3d6fb6"),
                         (QPalette.ColorRole.HighlightedText, "#ffffff"),
                         (QPalette.ColorRole.ToolTipBase, "#333333"),
                         (QPalette.ColorRole.ToolTipText, "#e6e6e6"),
                         (QPalette.ColorRole.PlaceholderText, "#8a8a8a"),
                         (QPalette.ColorRole.Light, "#505050"),
                         (QPalette.ColorRole.Midlight, "#404040"),
                         (QPalette.ColorRole.Mid, "#3a3a3a"),
                         (QPalette.ColorRole.Dark, "#1a1a1a"),
                         (QPalette.ColorRole.Shadow, "#000000")):
        p.setColor(role, QColor(colour))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#7a7a7a"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#7a7a7a"))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#7a7a7a"))
    app.setPalette(p)


if __name__ == "__main__":
    sys.exit(main())
