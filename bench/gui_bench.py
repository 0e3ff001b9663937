"""GUI benchmarks: start-up time and the GUI process's CPU while live charts stream.

    .venv/bin/python bench/gui_bench.py [--runs 5] [--seconds 60] [--skip-startup|--skip-stream]
    .venv/bin/python bench/gui_bench.py --refcount-check   # does this PySide6 drop refcounts?

Prints figures and their ratio to the targets; never fails on a number (machines differ).
  start-up  `modeldeck --measure-startup` in a fresh process: process start -> first painted
            main window (target < 1000 ms); the time until the deferred parts (live charts,
            pass list) are built is printed too.
  streaming a `duration` profile of the bundled sample while the charts redraw at ~30 Hz; the
            GUI process's own CPU time (all its threads; the worker is another process) over
            the streaming window (target < 15 % of one core).
Headless machines: QT_QPA_PLATFORM=offscreen is used when there is no DISPLAY.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STARTUP_TARGET_MS = 1000.0
CPU_TARGET_PERCENT = 15.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def bench_startup(runs: int) -> None:
    paint, ready, outside = [], [], []
    with tempfile.TemporaryDirectory() as cfg:
        env = {**_env(), "XDG_CONFIG_HOME": cfg}  # fresh settings, not the user's
        for i in range(runs):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "app.cli", "--measure-startup"], cwd=REPO,
                               env=env, capture_output=True, text=True, timeout=120)
            wall = (time.perf_counter() - t0) * 1e3
            if r.returncode != 0 or not r.stdout.strip():
                print(f"  run {i + 1}: failed (exit {r.returncode}): {r.stderr[-500:]}")
                continue
            paint.append(float(r.stdout.split()[0]))
            outside.append(wall)
            for line in r.stderr.splitlines():
                if "charts ready" in line:
                    ready.append(float(line.split("charts ready")[1].split()[0]))
    if not paint:
        print("start-up: no successful run")
        return
    med = statistics.median(paint)
    print(f"start-up to first painted window: median {med:.0f} ms (min {min(paint):.0f}, "
          f"max {max(paint):.0f}; {len(paint)} runs) — {med / STARTUP_TARGET_MS:.2f}× the "
          f"{STARTUP_TARGET_MS:.0f} ms target")
    if ready:
        print(f"  deferred parts built (charts, passes): median {statistics.median(ready):.0f} "
              "ms after process start")
    print(f"  whole subprocess incl. exit, seen from outside: median "
          f"{statistics.median(outside):.0f} ms")


def bench_streaming(seconds: float) -> None:
    os.environ.update({k: v for k, v in _env().items() if k == "QT_QPA_PLATFORM"})
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    tmp = tempfile.mkdtemp(prefix="modeldeck-bench-")
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tmp)
    _app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841 (kept alive)
    from app.gui.main_window import MainWindow
    from tests.conftest import SAMPLE_ONNX

    def wait(cond, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                return False
            loop = QEventLoop()
            QTimer.singleShot(20, loop.quit)
            loop.exec()
        return True

    w = MainWindow(work_dir=tmp)
    w.resize(1600, 1000)
    ready, opened, finished = [], [], []
    w.sig_ready.connect(lambda: ready.append(1))
    w.sig_model_opened.connect(opened.append)
    w.sig_profile_finished.connect(finished.append)
    w.show()
    wait(lambda: ready, 60)
    w.open_model(str(SAMPLE_ONNX))
    if not wait(lambda: opened, 120):
        print("streaming: the sample did not open")
        return
    b = w.backend
    b.length_mode.setCurrentText("seconds")
    b.duration.setValue(seconds)
    b.layers.setChecked(False)
    b.budgets.setText("p99=5ms")
    redraws = [0]
    w.ensure_charts().timer.timeout.connect(lambda: redraws.__setitem__(0, redraws[0] + 1))
    samples = [0]
    mark: dict[str, float] = {}

    def on_event(e: dict) -> None:
        """Start the clocks at the first latency sample: worker start-up is not streaming."""
        if e.get("event") != "samples":
            return
        samples[0] += 1
        if "cpu0" not in mark and "latency_ms" in e.get("series", {}):
            mark.update(cpu0=time.process_time(), wall0=time.perf_counter(), r0=redraws[0],
                        s0=samples[0])

    loop = QEventLoop()
    w.sig_profile_finished.connect(lambda _: loop.quit())
    QTimer.singleShot(int((seconds + 180) * 1000), loop.quit)
    w.run_profile()
    w.profile_job.sig_event.connect(on_event)
    loop.exec()  # the real event loop, no polling: what a user's session does
    if "cpu0" not in mark:
        print("streaming: no latency samples arrived")
        return
    cpu0, wall0, r0, s0 = mark["cpu0"], mark["wall0"], mark["r0"], mark["s0"]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    outcome = finished[0] if finished else None
    pct = 100.0 * cpu / wall if wall > 0 else float("nan")
    points = w.charts.point_count("latency_ms")
    print(f"GUI CPU while streaming: {pct:.1f}% of one core ({cpu:.2f} s CPU over {wall:.1f} s) "
          f"— {pct / CPU_TARGET_PERCENT:.2f}× the {CPU_TARGET_PERCENT:.0f}% target")
    print(f"  {points:,} latency points on the chart, {(samples[0] - s0) / wall:.1f} sample "
          f"events/s, {(redraws[0] - r0) / wall:.1f} redraw ticks/s; run "
          f"{outcome.status if outcome else 'did not finish'}"
          + (f", p50 {w.last_report['latency_ms']['p50']:.3f} ms" if w.last_report else ""))
    w.close()


def refcount_check() -> None:
    """Does this PySide6 drop references to True/False on Signal.emit (6.12.0, Python 3.11)?"""
    code = ("import os; os.environ['QT_QPA_PLATFORM']='offscreen'\n"
            "from PySide6.QtCore import QObject, Signal\n"
            "class E(QObject):\n    sig = Signal()\n"
            "e = E()\nfor _ in range(100000): e.sig.emit()\nprint('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    import PySide6

    if r.returncode == 0:
        print(f"PySide6 {PySide6.__version__}, Python {sys.version.split()[0]}: 100k emits: fine")
    else:
        print(f"PySide6 {PySide6.__version__}, Python {sys.version.split()[0]}: the process "
              f"aborted after 100k emits ({r.stderr.strip().splitlines()[0]}): this PySide6 "
              "leaks references (6.12.0 does on Python 3.11); pin 6.11.3 or use Python 3.12+")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="start-up measurements")
    p.add_argument("--seconds", type=float, default=60.0, help="streaming run length")
    p.add_argument("--skip-startup", action="store_true")
    p.add_argument("--skip-stream", action="store_true")
    p.add_argument("--refcount-check", action="store_true")
    args = p.parse_args()
    try:
        load = os.getloadavg()
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} (timings on a busy "
              "machine run long)")
    except OSError:
        pass
    if args.refcount_check:
        refcount_check()
        return 0
    if not args.skip_startup:
        bench_startup(args.runs)
    if not args.skip_stream:
        bench_streaming(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
