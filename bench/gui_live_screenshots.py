"""Screenshots of a live run of a dynamic-shape real model at the screen sizes users have.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python bench/gui_live_screenshots.py MODEL
    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python bench/gui_live_screenshots.py MODEL

The window starts at its default size on the screen Xvfb gives (it must fit by itself: no
resizing here), opens MODEL (a model with dynamic axes: the Inputs table gives the sizes), runs
a duration profile with a latency and an RSS budget, and grabs the window mid-run as
resources/screenshots/live_run_<W>x<H>.png. It prints the window's size before and after the
run and any docks that overlap (there should be none). Settings go to a temporary folder.
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
    p.add_argument("model")
    p.add_argument("--out", default=str(REPO / "resources" / "screenshots"))
    p.add_argument("--seconds", type=float, default=8.0, help="the run's length")
    p.add_argument("--budgets", default="p99=50ms, rss=1500MB")
    args = p.parse_args()
    if not os.environ.get("DISPLAY"):
        raise SystemExit("no DISPLAY: run under xvfb-run (see the docstring)")
    tmp = Path(tempfile.mkdtemp(prefix="modeldeck-live-"))

    app = start_app(tmp / "cfg")
    from app.gui.layout import overlaps

    screen = app.primaryScreen().availableGeometry()
    w = show_window(tmp / "variants")
    print(f"screen {screen.width()}x{screen.height()}; window at start {w.width()}x{w.height()}")
    open_model(w, args.model)
    pause(0.5)
    w.graph_view.fit() if hasattr(w.graph_view, "fit") else None
    print(f"after opening: {w.width()}x{w.height()}; sizes "
          f"{w.backend.inputs_table.user_shapes() or 'from the model'}")
    b = w.backend
    b.length_mode.setCurrentText("seconds")
    b.duration.setValue(args.seconds)
    b.threads.setValue(1)
    b.budgets.setText(args.budgets)
    finished: list[object] = []
    w.sig_profile_finished.connect(finished.append)
    w.run_profile()
    wait(lambda: w.charts.series["latency_ms"].buffer.total > 0, what="samples")
    pause(args.seconds * 0.6)
    name = f"live_run_{screen.width()}x{screen.height()}.png"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(out / name))
    print(f"wrote {out / name} ({w.width()}x{w.height()}); overlapping docks: {overlaps(w)}")
    wait(lambda: finished, what="the run")
    pause(0.5)
    print(f"after the run: {w.width()}x{w.height()}; overlapping docks: {overlaps(w)}; "
          f"report p50 {(w.last_report or {}).get('latency_ms', {}).get('p50')} ms, budgets "
          f"{[(x['budget'], x['ok']) for x in (w.last_report or {}).get('budgets') or []]}; "
          f"label: {w.charts.budget_label.text()}")
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
