"""Screenshots of the window's Optimize dock on the VGG sample: mid-search and finished.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python bench/gui_optimize_screenshots.py
    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python bench/gui_optimize_screenshots.py

The window starts at its default size on the screen Xvfb gives, opens
resources/samples/digits_vgg.onnx, opens Run ▸ Optimize… (the sample's evaluation and
calibration data are filled in by the dock), starts the search with its defaults and grabs the
window while the Pareto chart fills and when the search has finished, as
resources/screenshots/optimize_<running|done>_<W>x<H>.png. It prints the best line, how many
points the chart holds and any docks that overlap (there should be none). Settings, variants and
the search's cache go to a temporary folder.
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
    p.add_argument("--model", default=str(REPO / "resources" / "samples" / "digits_vgg.onnx"))
    p.add_argument("--out", default=str(REPO / "resources" / "screenshots"))
    args = p.parse_args()
    if not os.environ.get("DISPLAY"):
        raise SystemExit("no DISPLAY: run under xvfb-run (see the docstring)")
    tmp = Path(tempfile.mkdtemp(prefix="modeldeck-optimize-shot-"))

    app = start_app(tmp / "cfg")
    from app.gui.layout import overlaps

    screen = app.primaryScreen().availableGeometry()
    w = show_window(tmp / "variants")
    open_model(w, args.model)
    w.show_optimize()
    panel = w.optimize_panel
    panel.extra = {"cache_dir": str(tmp / "cache")}
    finished: list[object] = []
    panel.sig_finished.connect(finished.append)
    panel.start()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    size = f"{screen.width()}x{screen.height()}"
    wait(lambda: panel.chart.count() >= 6 or finished, what="points on the chart")
    w.grab().save(str(out / f"optimize_running_{size}.png"))
    print(f"running: {panel.chart.count()} points; {panel.best_label.text()!r}")
    wait(lambda: finished, what="the search")
    pause(0.5)
    w.grab().save(str(out / f"optimize_done_{size}.png"))
    print(f"done: window {w.width()}x{w.height()}, {panel.chart.count()} points; best line "
          f"{panel.best_label.text()!r}; status {panel.status.text()!r}; overlapping docks: "
          f"{overlaps(w)}")
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
