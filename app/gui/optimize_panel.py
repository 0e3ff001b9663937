"""The window's Optimize action: a search in a worker, a Pareto chart filling as it runs.

Each candidate the worker measures arrives as a `candidate` event and becomes a point: latency
on x, accuracy (cosine when the data has no labels) on y, marker size by model size, colour by
verdict. Clicking a point opens that variant in the window. Stop asks the worker to finish with
the best so far (it writes its outputs and result before it ends). Nothing here imports a
runtime: the search runs in the worker (app.optimize, through app.jobs).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from app.gui.layout import scrollable
from app.gui.jobs import WorkerJob

log = logging.getLogger(__name__)

STATUS_COLOURS = {"best": "#10b981", "kept": "#3b82f6", "rejected": "#9ca3af",
                  "baseline": "#a855f7", "planned": "#9ca3af"}
CANCEL_GRACE_S = 60.0  # the search writes its best so far after Stop: give it time


class ParetoChart(pg.PlotWidget):
    """Latency × accuracy scatter, one point per candidate (its latest figures), clickable."""

    sig_point_clicked = Signal(object)  # the candidate's point dict

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.points: dict[str, dict[str, Any]] = {}
        self.labelled = True
        self.objective = "latency"
        self.setLabel("bottom", "latency p50 (ms)")
        self.setLabel("left", "accuracy (%)")
        self.showGrid(x=True, y=True, alpha=0.3)
        self.scatter = pg.ScatterPlotItem(pxMode=True, hoverable=True)
        self.scatter.sigClicked.connect(self._clicked)
        self.addItem(self.scatter)
        self.front = pg.PlotDataItem(pen=pg.mkPen("#f59e0b", width=1.5,
                                                  style=Qt.PenStyle.DashLine))
        self.addItem(self.front)

    def clear_points(self) -> None:
        self.points.clear()
        self._redraw()

    def set_objective(self, objective: str) -> None:
        """The x axis follows the objective: energy per inference under 'energy', else
        latency."""
        self.objective = objective
        self.setLabel("bottom", "energy per inference (mJ)" if objective == "energy"
                      else "time per sample (ms, 1000 / samples per s)"
                      if objective == "throughput" else "latency p50 (ms)")
        self._redraw()

    def cost(self, p: dict[str, Any]) -> float | None:
        """The point's x: mJ per inference under the energy objective, else p50 ms."""
        if self.objective == "energy":
            return (p.get("energy_mj") or {}).get("value")
        tp = p.get("throughput")
        if self.objective == "throughput" and tp:  # served: ms per sample at its serving
            return 1000.0 / tp["value"]  # (unserved points: p50 = ms per sample one at a time)
        return (p.get("latency_ms") or {}).get("p50")

    def count(self) -> int:
        return len(self.drawable())

    def quality(self, p: dict[str, Any]) -> float | None:
        if self.labelled and p.get("accuracy") is not None:
            return float(p["accuracy"]) * 100
        return None if p.get("cosine") is None else float(p["cosine"])

    def drawable(self) -> list[dict[str, Any]]:
        return [p for p in self.points.values()
                if p.get("latency_ms") and self.cost(p) is not None
                and self.quality(p) is not None]

    def add_point(self, point: dict[str, Any]) -> None:
        if point.get("name") == "baseline" and point.get("accuracy") is None:
            self.labelled = False
            self.setLabel("left", "cosine vs FP32")
        self.points[point["name"]] = point
        self._redraw()

    def _redraw(self) -> None:
        pts = self.drawable()
        sizes = [p.get("size_bytes") or 0 for p in pts]
        biggest = max(sizes, default=0) or 1
        spots = []
        for p, s in zip(pts, sizes):
            status = "baseline" if p["name"] == "baseline" else p.get("status", "kept")
            colour = STATUS_COLOURS.get(status, "#ef4444")
            spots.append({"pos": (self.cost(p), self.quality(p)),
                          "size": 8 + 18 * math.sqrt(s / biggest), "data": p["name"],
                          "brush": pg.mkBrush(colour), "pen": pg.mkPen(colour)})
        self.scatter.setData(spots)
        front = pareto(pts, self.quality, self.cost)
        self.front.setData([self.cost(p) for p in front],
                           [self.quality(p) for p in front])

    def _clicked(self, _item: Any, spots: list[Any], *_args: Any) -> None:
        if len(spots):
            name = spots[0].data()
            if name in self.points:
                self.sig_point_clicked.emit(self.points[name])


def _energy_text(p: dict[str, Any], chart: ParetoChart) -> str:
    """', 0.52 mJ per inference (cpu-time estimate)' under the energy objective."""
    e = p.get("energy_mj")
    if chart.objective != "energy" or not e:
        return ""
    return f", {e['value']:.3g} mJ per inference ({e['source']})"


def pareto(points: list[dict[str, Any]], quality, cost=None) -> list[dict[str, Any]]:
    """Points no other beats on both cost (lower: latency unless given) and quality
    (higher), by cost."""
    cost = cost or (lambda p: p["latency_ms"]["p50"])
    out = []
    for p in points:
        lat, q = cost(p), quality(p)
        if not any(o is not p and cost(o) <= lat and quality(o) >= q
                   and (cost(o) < lat or quality(o) > q) for o in points):
            out.append(p)
    return sorted(out, key=cost)


class OptimizePanel(QWidget):
    """Settings, Start / Stop, progress, the live Pareto chart and the best so far."""

    sig_open_variant = Signal(str)  # a model file to open as a variant of the current model
    sig_finished = Signal(object)  # the search's result dict (None when it failed)

    def __init__(self, work_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.work_dir = Path(work_dir)
        self.model_path: str | None = None
        self.job: WorkerJob | None = None
        self.target: str | None = None  # where the running or last search ran (None: here)
        self.result: dict[str, Any] | None = None
        self.best: dict[str, Any] | None = None
        self.prediction = ""
        self.extra: dict[str, Any] = {}  # spec fields set by code (tests, a preset)
        self.trust_check = lambda path: False  # the window's: did the user consent for it?
        # how a failure is shown: the window's error dialog when docked (optimize_action sets
        # it), a non-modal dialog of the panel's own otherwise
        self.show_error = self._error_dialog
        self.last_error: tuple[str, str] | None = None
        self.picker: Any = None  # the backend dock's "Run on" (a remote target searches there)

        self.eval_edit = QLineEdit(placeholderText="labelled .npz (inputs + labels)")
        self.calib_edit = QLineEdit(placeholderText=".npz of inputs for INT8 calibration")
        self.drop_spin = QDoubleSpinBox(minimum=0.0, maximum=50.0, value=1.0, singleStep=0.5,
                                        suffix=" %")
        self.objective = QComboBox()
        self.objective.addItems(["latency", "throughput", "size", "energy"])
        self.budget_spin = QSpinBox(minimum=1, maximum=240, value=15, suffix=" min")
        self.start_btn = QPushButton("Start")
        self.stop_btn = QPushButton("Stop (keep best so far)")
        self.stop_btn.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Open a model, then start the search.")
        self.status.setWordWrap(True)
        self.best_label = QLabel("")
        self.best_label.setWordWrap(True)
        self.chart = ParetoChart()
        self.chart.sig_point_clicked.connect(self._open_point)

        form = QFormLayout()
        form.addRow("Evaluation data", self._with_browse(self.eval_edit))
        form.addRow("Calibration data", self._with_browse(self.calib_edit))
        form.addRow("Max accuracy drop", self.drop_spin)
        form.addRow("Objective", self.objective)
        form.addRow("Time budget", self.budget_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.stop_btn)
        # two columns: settings and words on the left, the chart beside them with the whole
        # height (stacked, a 1366x768 screen left the chart ~60 px tall and squeezed the form)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.status)
        left.addStretch(1)
        for label in (self.status, self.best_label):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        column = QWidget()
        column.setLayout(left)
        # the form keeps its rows' heights and scrolls in a low dock instead of squeezing them
        area = scrollable(column, min_width=300)
        area.setMaximumWidth(440)
        self.chart.setMinimumSize(260, 160)
        right = QVBoxLayout()  # the chart and, under it, the best so far
        right.addWidget(self.chart, 1)
        right.addWidget(self.best_label)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(area)
        layout.addLayout(right, 1)
        self.start_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)

    def _with_browse(self, edit: QLineEdit) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        btn = QPushButton("…")
        btn.setFixedWidth(28)
        btn.clicked.connect(lambda: self._browse(edit))
        row.addWidget(btn)
        return box

    def _browse(self, edit: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose data", "", "NumPy arrays (*.npz)")
        if path:
            edit.setText(path)

    def set_model(self, path: str | None) -> None:
        self.model_path = path
        if path and not self.is_running():
            self.status.setText(f"Ready to search variants of {Path(path).name}.")
            guess = _sample_data(path)
            if guess and not self.eval_edit.text():
                self.eval_edit.setText(guess.get("eval", ""))
                self.calib_edit.setText(guess.get("calib", ""))

    def is_running(self) -> bool:
        return self.job is not None and not self.job.is_done()

    def spec(self) -> dict[str, Any]:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = self.work_dir / "optimize" / f"{Path(self.model_path or 'model').stem}-{stamp}"
        return {"model": self.model_path, "output_dir": str(out),
                "eval": self.eval_edit.text().strip() or None,
                "calib": self.calib_edit.text().strip() or None,
                "max_drop": self.drop_spin.value() / 100.0,
                "objective": self.objective.currentText(),
                "time_budget_s": self.budget_spin.value() * 60.0,
                "trust_code": bool(self.model_path and self.trust_check(self.model_path)),
                **self.extra}

    def start(self) -> WorkerJob | None:
        if self.is_running():
            return self.job
        if not self.model_path:
            self.status.setText("Open a model first (File ▸ Open).")
            return None
        problem = self._check_fields()
        if problem:
            self.status.setText(problem)
            self.show_error("Cannot start the search", problem)
            return None
        self.chart.clear_points()
        self.chart.set_objective(self.objective.currentText())
        self.result = self.best = None
        self.best_label.setText("")
        self.progress.setValue(0)
        self.status.setText("Reading this machine…")
        target = self.picker.target() if self.picker is not None else None
        if target:  # the whole search runs on the target; its output folder comes home
            from app.targets.optimize_cli import target_spec

            opt = self.spec()
            spec = target_spec(opt, bool(opt["trust_code"]), opt["output_dir"])
            self.status.setText(f"Connecting to {target}: the search runs there…")
            self.job = self.picker.job(spec, self, cancel_grace_s=CANCEL_GRACE_S)
        else:
            spec = {"job": "optimize", "optimize": self.spec()}
            self.job = WorkerJob(spec, self, cancel_grace_s=CANCEL_GRACE_S)
        self.target = target
        self.job.sig_event.connect(self._on_event)
        self.job.sig_finished.connect(self._on_finished)
        self.start_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self.job.start()
        return self.job

    def stop(self) -> None:
        if self.is_running():
            self.status.setText("Stopping: keeping the best so far…")
            self.stop_btn.setEnabled(False)
            self.job.cancel()

    def _on_event(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "candidate":
            p = e["point"]
            self.chart.add_point(p)
            if p.get("status") == "best" or (
                    p.get("meets") and p.get("status") == "kept" and p["name"] != "baseline"
                    and self.chart.cost(p) is not None and (
                        self.best is None or self.chart.cost(p)
                        < (self.chart.cost(self.best) or math.inf))):
                self.best = p
                self._show_best(p, final=p.get("status") == "best")
        elif kind == "prediction":
            self.prediction = e["prediction"]["text"]
            self.status.setText(self.prediction)
        elif kind == "progress":
            self.progress.setValue(int(1000 * float(e.get("frac") or 0)))
            if e.get("message"):
                self.status.setText(f"{e['message']}\n{self.prediction}")

    def _show_best(self, p: dict[str, Any], final: bool) -> None:
        sp = p.get("speedup") or {}
        acc = p.get("accuracy")
        self.best_label.setText(
            f"{'Best' if final else 'Best so far'}: {p['name']} — "
            f"{p['latency_ms']['p50']:.3f} ms, {sp.get('value', 0):.2f}× the FP32 baseline"
            + ("" if acc is None else f", accuracy {acc:.2%}") + _energy_text(p, self.chart)
            + " (click a point to open it)")

    def _on_finished(self, outcome: Any) -> None:
        self.start_btn.setEnabled(True)
        self.stop_btn.setEnabled(False)
        self.progress.setValue(1000)
        result = outcome.result if outcome.status == "ok" else None
        self.result = result
        if result is None:
            what = "stopped" if outcome.status == "cancelled" else "failed"
            message = window_words(outcome.error or "no result")
            self.status.setText(f"The search {what}: {message}"
                                + ("; the best so far stays on the chart" if self.best else ""))
            if outcome.status != "cancelled":
                self.show_error("The search failed", message,
                                getattr(outcome, "stderr_tail", "") or "")
        else:
            best = result.get("best")
            stopped = f" (stopped: {result['stopped']})" if result.get("stopped") else ""
            check = (result.get("prediction_check") or {}).get("text", "")
            self.status.setText(f"Done in {result['seconds']:.0f} s{stopped}. {check}. Files in "
                                f"{result['outputs'].get('dir', '')}")
            if best:
                self.best_label.setText(
                    f"Best: {best['name']} on {best['backend']}"
                    + (f" at {best['threads']} thread(s)" if best.get("threads") else "")
                    + f" — {best['speedup']['value']:.2f}×"
                    f" [{best['speedup']['low']:.2f}, {best['speedup']['high']:.2f}] faster"
                    + (" than FP32 at the same threads" if best.get("threads") else "") + ", "
                    f"p50 {best['latency_ms']['p50']:.3f} ms"
                    + ("" if best.get("accuracy") is None else
                       f", accuracy {best['accuracy']:.2%}") + _energy_text(best, self.chart)
                    + ("" if not best.get("throughput") else  # objective throughput
                       f", {best['throughput']['value']:,.0f} samples/s at batch "
                       f"{best['throughput']['batch']} with {best['throughput']['streams']} "
                       "request(s) in flight") + " (click a point to open it)")
            else:
                why = result.get("why_no_winner", "No winner.")
                if result.get("stopped") == "time budget reached" and not any(
                        t.get("latency_ms") for t in result.get("tried", [])):
                    why += (". The time budget ran out before any variant was timed: give a "
                            "longer Time budget and start again.")
                self.best_label.setText(why)
        self.sig_finished.emit(result)

    def _check_fields(self) -> str | None:
        """What the fields name that cannot be data, said before a worker starts (the worker
        reads and checks the files themselves)."""
        for label, edit, folder_ok in (("Evaluation data", self.eval_edit, False),
                                       ("Calibration data", self.calib_edit, True)):
            text = edit.text().strip()
            if not text or text in ("sample", "random"):
                continue
            path = Path(text).expanduser()
            if not path.exists():
                return (f"{label}: {text} does not exist. Choose an .npz file with the "
                        "“…” button, or clear the field.")
            if path.is_dir() and not folder_ok:
                return (f"{label}: {path.name} is a folder. Choose one .npz file holding the "
                        "model's inputs and their labels.")
        if self.model_path and not Path(self.model_path).is_file():
            return (f"The model {Path(self.model_path).name} is no longer there: open it "
                    "again (File ▸ Open).")
        return None

    def _error_dialog(self, title: str, message: str, details: str = "") -> None:
        from app.gui.dialogs import error_dialog

        self.last_error = (title, message)
        self.error_box = error_dialog(self, title, message, details)

    def _open_point(self, p: dict[str, Any]) -> None:
        path = p.get("path")
        if path and Path(path).exists():
            self.sig_open_variant.emit(path)
        elif getattr(self, "target", None):
            self.status.setText(f"{p['name']} was built on {self.target} and stayed there: only "
                                "the winner comes home (see the output folder).")
        else:
            self.status.setText(f"{p['name']} has no model file to open ({p.get('reason', '')}).")


# the CLI's words in messages shared with it, and what they are called in this panel
_WINDOW_WORDS = (
    (r"--time-budget", "the Time budget"), (r"--max-drop", "the Max accuracy drop"),
    (r"--eval\b", "Evaluation data"), (r"--calib\b", "Calibration data"),
    (r"--memory-limit MB or MODELDECK_MEM_LIMIT_MB", "the MODELDECK_MEM_LIMIT_MB setting"),
    (r"--memory-limit( MB)?", "the MODELDECK_MEM_LIMIT_MB setting"),
    (r"--trust\b", "trusting the model when the window asks"),
    (r"--shape\b", "input sizes"), (r"--only / --backends", "fewer candidates"),
)


def window_words(message: str) -> str:
    """A worker's message in this panel's terms (it never names a CLI flag)."""
    import re

    for pattern, words in _WINDOW_WORDS:
        message = re.sub(pattern, words, message)
    return message


def _sample_data(model: str) -> dict[str, str] | None:
    """The bundled samples' own evaluation and calibration data, filled in for them."""
    p = Path(model)
    for stem, ev, cal in (("digits_vgg", "digits_vgg_test.npz", "digits_vgg_calib.npz"),
                          ("digits_cnn", "digits_test.npz", "digits_test.npz")):
        if p.stem.startswith(stem) and (p.parent / ev).exists():
            return {"eval": str(p.parent / ev), "calib": str(p.parent / cal)}
    return None
