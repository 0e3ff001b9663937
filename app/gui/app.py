"""GUI entry point: `modeldeck [MODEL] [--measure-startup]`.

--measure-startup prints the milliseconds from process start (the OS's record of it, so the
interpreter's own start-up counts) to the first painted main window, then exits 0.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

log = logging.getLogger(__name__)


def _process_start_epoch() -> float:
    """When the OS started this process (interpreter start-up included).

    On Linux from /proc with clock-tick (10 ms) resolution: psutil's create_time() adds the
    boot time, which /proc/stat gives in whole seconds, so it can be off by up to a second.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        age_s = uptime_s - int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - age_s
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # no psutil: from the moment this module loaded (an underestimate)
        return _MODULE_LOADED


_MODULE_LOADED = time.time()


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="modeldeck", description="ModelDeck desktop window "
                                "(subcommands: inspect, profile, devices, report, convert, "
                                "compare — see `modeldeck inspect -h`)")
    p.add_argument("model", nargs="?", help="model to open")
    p.add_argument("--measure-startup", action="store_true",
                   help="print ms from process start to the first painted window, then exit")
    p.add_argument("--debug", action="store_true", help="debug logging")
    return p.parse_args(argv)


def run_gui(argv: list[str]) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    started = _process_start_epoch()

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.gui import settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(settings.ORGANISATION)
    app.setApplicationName(settings.APPLICATION)
    app.setApplicationDisplayName("ModelDeck")
    app.setDesktopFileName("modeldeck")

    from app.gui.main_window import MainWindow

    window = MainWindow()
    if args.measure_startup:
        marks: dict[str, float] = {}

        def first_paint() -> None:
            marks["paint"] = (time.time() - started) * 1e3

        def ready() -> None:
            marks["ready"] = (time.time() - started) * 1e3
            print(f"{marks.get('paint', marks['ready']):.1f}", flush=True)
            print(f"first paint {marks.get('paint', float('nan')):.1f} ms, charts ready "
                  f"{marks['ready']:.1f} ms after process start", file=sys.stderr, flush=True)
            window.close()
            app.exit(0)

        window.sig_first_painted.connect(first_paint)
        window.sig_ready.connect(ready)
        QTimer.singleShot(60_000, lambda: app.exit(1))  # never hang a benchmark
    window.show()
    if args.model and not args.measure_startup:
        window.open_model(args.model)  # a missing or bad file is the worker's readable error
    return app.exec()
