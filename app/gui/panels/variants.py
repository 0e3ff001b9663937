"""Variants of the current model (the original plus every applied pipeline) and their
side-by-side comparison. Each conversion row carries its own progress bar and cancel button
while its worker runs; a failed row keeps its message and the worker's stderr for 'details'."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton,
    QTableWidget, QTableWidgetItem, QTabWidget, QToolButton, QVBoxLayout, QWidget,
)

from app.gui.jobs import WorkerJob
from app.gui.variant_store import VariantStore, to_record
from app.gui.widgets import FlowLayout
from app.gui.panels.node_details import human, human_bytes

log = logging.getLogger(__name__)

COLUMNS = ["name", "format", "size", "params", "sparsity", "fidelity", "accuracy", "p50",
           "status"]
COMPARE_HINT = "Select variants and press Compare."
COMPARE_COLUMNS = ["model", "size", "× size", "p50", "× p50", "p99", "cosine", "top-1 agree",
                   "accuracy", "params", "RSS peak", "format"]


@dataclass
class Variant:
    name: str
    path: str = ""
    format: str = ""
    size_bytes: int | None = None
    params: int | None = None
    sparsity: float | None = None
    fidelity: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    latency_p50: float | None = None
    status: str = "ok"  # running | ok | failed | cancelled
    message: str = ""
    details: str = ""  # stderr tail of a failed job
    steps: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    job: WorkerJob | None = None


def fmt_fidelity(f: dict[str, Any] | None) -> str:
    if not f or f.get("cosine") is None:
        return "—"
    return f"cos {f['cosine']:.5f}"


def fmt_accuracy(a: dict[str, Any] | None) -> str:
    if not a or a.get("accuracy") is None:
        return "—"
    return f"{100 * a['accuracy']:.2f}%"


def fmt_sparsity(s: float | None) -> str:
    return "—" if s is None else f"{100 * s:.1f}%"


class _RowProgress(QWidget):
    """Progress bar + cancel button living in a table cell while a conversion runs."""

    def __init__(self, job: WorkerJob):
        super().__init__()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.bar.setMaximumHeight(16)
        self.bar.setTextVisible(False)
        self.cancel = QToolButton()
        self.cancel.setText("✕")
        self.cancel.setToolTip("Cancel this conversion")
        self.cancel.clicked.connect(job.cancel)
        self.cancel.clicked.connect(lambda: self.cancel.setEnabled(False))
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.cancel)

    def set_fraction(self, frac: float) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * frac))


class VariantsPanel(QWidget):
    sig_open = Signal(str)
    sig_profile = Signal(str)
    sig_compare = Signal(list)
    sig_export = Signal(str)
    sig_details = Signal(object)  # Variant whose failure details to show
    sig_diff = Signal(list)  # two variant paths, base first: Diff graphs

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.variants: list[Variant] = []
        self._progress: dict[int, _RowProgress] = {}
        self.runner_check: Callable[[set[str]], tuple[bool, str]] = lambda _formats: (True, "")
        self.store: VariantStore | None = None  # where the rows outlive the open model
        self.root: str | None = None  # the model the rows descend from
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs)

        page = QWidget()
        v = QVBoxLayout(page)
        v.setContentsMargins(2, 2, 2, 2)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        v.addWidget(self.table, 1)
        buttons = FlowLayout()  # wraps in a narrow dock instead of widening the window
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Show this variant's graph and make it the current model")
        self.profile_button = QPushButton("Profile")
        self.profile_button.setToolTip("Profile with the backend panel's settings")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Profile the selected variants (all when fewer than two "
                                       "are selected) on the same inputs, side by side")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Copy the variant's files (and lineage) to a folder")
        self.diff_button = QPushButton("Diff graphs")
        self.diff_button.setToolTip("Select two variants: their graphs side by side, nodes "
                                    "matched, changes coloured (the upper row is the base)")
        for b in (self.open_button, self.profile_button, self.compare_button, self.export_button,
                  self.diff_button):
            buttons.addWidget(b)
        v.addLayout(buttons)
        self.tabs.addTab(page, "Variants")

        cpage = QWidget()
        cv = QVBoxLayout(cpage)
        cv.setContentsMargins(2, 2, 2, 2)
        self.compare_note = QLabel(COMPARE_HINT)
        self.compare_note.setWordWrap(True)
        cv.addWidget(self.compare_note)
        self.compare_table = QTableWidget(0, len(COMPARE_COLUMNS))
        self.compare_table.setHorizontalHeaderLabels(COMPARE_COLUMNS)
        self.compare_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare_table.verticalHeader().hide()
        self.compare_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        cv.addWidget(self.compare_table, 1)
        self.tabs.addTab(cpage, "Comparison")

        self.open_button.clicked.connect(lambda: self._emit_path(self.sig_open))
        self.profile_button.clicked.connect(lambda: self._emit_path(self.sig_profile))
        self.export_button.clicked.connect(lambda: self._emit_path(self.sig_export))
        self.compare_button.clicked.connect(self._emit_compare)
        self.diff_button.clicked.connect(
            lambda: self.sig_diff.emit([v.path for v in self._usable(self.selected())][:2]))
        self._update_buttons()

    # --- rows ------------------------------------------------------------------------------
    def clear(self) -> None:
        for v in self.variants:
            if v.job is not None and not v.job.is_done():
                v.job.cancel()
        self.variants.clear()
        self._progress.clear()
        self.table.setRowCount(0)
        self.clear_comparison()
        self._update_buttons()

    def clear_comparison(self) -> None:
        """Another model: the previous model's comparison no longer applies."""
        self.compare_table.setRowCount(0)
        self.compare_note.setText(COMPARE_HINT)
        self.compare_note.setToolTip("")
        self.tabs.setCurrentIndex(0)

    def set_store(self, store: VariantStore | None) -> None:
        self.store = store

    def set_original(self, summary: dict[str, Any], path: str | None = None) -> Variant:
        """A newly opened model: the table restarts with it as the reference row, followed
        by the variants made from it earlier (kept in the data folder's index)."""
        self.clear()
        path = path or summary.get("path", "")
        self.root = os.path.abspath(path) if path else None
        v = Variant(name="original", path=path, format=summary.get("format", ""),
                    size_bytes=summary.get("file_size"), params=summary.get("params"),
                    message="source model")
        saved = self.store.load(self.root) if self.store is not None and self.root else {}
        figures = saved.get("original") or {}
        if figures.get("size_bytes") in (None, v.size_bytes):  # the same file as then
            v.accuracy = figures.get("accuracy")
            v.sparsity = figures.get("sparsity")
            v.latency_p50 = figures.get("latency_p50")
        self._append(v)
        for rec in saved.get("variants") or []:
            r = Variant(name=str(rec.get("name") or os.path.basename(rec["path"])),
                        status="ok")
            for key, value in rec.items():
                if key in ("name", "status", "job", "result"):
                    continue
                if hasattr(r, key):
                    setattr(r, key, value)
            r.message = rec.get("message") or "done"
            self._append(r)
        return v

    def _persist(self) -> None:
        if self.store is None or not self.root or not self.variants:
            return
        original = self.variants[0]
        self.store.save(self.root, {"size_bytes": original.size_bytes,
                                    "accuracy": original.accuracy,
                                    "sparsity": original.sparsity,
                                    "latency_p50": original.latency_p50},
                        [to_record(v) for v in self.variants[1:]
                         if v.status == "ok" and v.path])

    def add_conversion(self, name: str, job: WorkerJob) -> Variant:
        v = Variant(name=name, status="running", job=job, message="starting…")
        row = self._append(v)
        progress = _RowProgress(job)
        self._progress[id(v)] = progress
        self.table.setCellWidget(row, COLUMNS.index("status"), progress)
        job.sig_event.connect(lambda e, v=v: self._on_event(v, e))
        job.sig_finished.connect(lambda o, v=v: self._on_finished(v, o))
        return v

    def _append(self, v: Variant) -> int:
        self.variants.append(v)
        row = self.table.rowCount()
        self.table.insertRow(row)
        self._refresh(v)
        return row

    def row_of(self, v: Variant) -> int:
        return self.variants.index(v)

    def _refresh(self, v: Variant) -> None:
        row = self.row_of(v)
        values = [v.name, v.format or "…", human_bytes(v.size_bytes) if v.size_bytes else "—",
                  human(v.params) if v.params is not None else "—", fmt_sparsity(v.sparsity),
                  fmt_fidelity(v.fidelity), fmt_accuracy(v.accuracy),
                  "—" if v.latency_p50 is None else f"{v.latency_p50:.3f} ms",
                  v.status if v.status != "ok" else (v.message or "ok")]
        for col, text in enumerate(values):
            item = self.table.item(row, col)
            if item is None:
                item = QTableWidgetItem()
                self.table.setItem(row, col, item)
            item.setText(text)
            if col in (2, 3, 4, 5, 6, 7):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tip = v.path or v.message
        if v.steps:
            tip += "\n" + "\n".join(_step_line(s) for s in v.steps)
        if v.status == "failed":
            tip = f"{v.message}\n(double-click for details)"
            self.table.item(row, COLUMNS.index("status")).setText(f"failed: {v.message}")
        for col in range(len(COLUMNS)):
            self.table.item(row, col).setToolTip(tip)
        if v.fidelity:
            f = v.fidelity
            self.table.item(row, COLUMNS.index("fidelity")).setToolTip(
                "\n".join(f"{k}: {val}" for k, val in f.items()))
        self._update_buttons()

    def set_latency(self, path: str, p50_ms: float) -> None:
        for v in self.variants:
            if v.path and os.path.abspath(v.path) == os.path.abspath(path):
                v.latency_p50 = p50_ms
                self._refresh(v)
        self._persist()

    def set_accuracy(self, path: str, accuracy: dict[str, Any] | None) -> None:
        if not accuracy:
            return
        for v in self.variants:
            if v.path and os.path.abspath(v.path) == os.path.abspath(path):
                v.accuracy = accuracy
                self._refresh(v)
        self._persist()

    # --- conversion jobs -------------------------------------------------------------------
    def _on_event(self, v: Variant, event: dict[str, Any]) -> None:
        kind = event.get("event")
        progress = self._progress.get(id(v))
        if kind == "progress" and progress is not None:
            progress.set_fraction(float(event.get("frac") or 0.0))
            progress.setToolTip(str(event.get("message", "")))
        elif kind == "stage":
            v.message = str(event.get("message") or event.get("stage"))
            if progress is not None:
                progress.setToolTip(v.message)
        elif kind == "step":
            step = event.get("step") or {}
            v.steps.append(step)
            if step.get("pass") != "source":
                self._apply_step(v, step)
            else:
                self._source_figures(step)
            self._refresh(v)

    def _source_figures(self, step: dict[str, Any]) -> None:
        """A conversion measures its source first (accuracy with labels, sparsity): the
        original row shows them too."""
        if not self.variants or not step.get("output"):
            return
        original = self.variants[0]
        if os.path.abspath(original.path or "") != os.path.abspath(step["output"]):
            return
        original.accuracy = step.get("accuracy") or original.accuracy
        if step.get("sparsity") is not None:
            original.sparsity = step["sparsity"]
        self._refresh(original)

    def _apply_step(self, v: Variant, step: dict[str, Any]) -> None:
        v.path = step.get("output") or v.path
        v.format = step.get("format") or v.format
        v.size_bytes = step.get("size_bytes", v.size_bytes)
        v.params = step.get("params", v.params)
        v.sparsity = step.get("sparsity", v.sparsity)
        v.fidelity = step.get("fidelity") or v.fidelity
        v.accuracy = step.get("accuracy") or v.accuracy

    def _on_finished(self, v: Variant, outcome) -> None:
        progress = self._progress.pop(id(v), None)
        row = self.row_of(v) if v in self.variants else -1
        if row < 0:
            return
        if progress is not None:
            self.table.removeCellWidget(row, COLUMNS.index("status"))
        v.job = None
        if outcome.status == "ok":
            result = outcome.result or {}
            v.result = result
            steps = [s for s in result.get("steps") or [] if s.get("pass") != "source"]
            if steps:
                self._apply_step(v, steps[-1])
            v.path = result.get("output") or v.path
            v.format = result.get("format") or v.format
            v.status, v.message = "ok", "done"
            messages = [m for s in steps for m in s.get("messages") or []]
            if messages:
                v.message = "done — " + messages[-1]
        elif outcome.status == "cancelled":
            v.status, v.message = "cancelled", "cancelled"
        else:
            v.status, v.message, v.details = "failed", outcome.error or "failed", \
                outcome.stderr_tail
        self._refresh(v)
        self._persist()

    # --- comparison ------------------------------------------------------------------------
    def show_comparison(self, result: dict[str, Any]) -> None:
        rows = result.get("rows") or []
        t = self.compare_table
        t.setRowCount(len(rows))
        for r, row in enumerate(rows):
            lat = row.get("latency_ms") or {}
            rel = row.get("relative") or {}
            fid = row.get("fidelity") or {}
            values = [
                self._name_of(row.get("model", "")), human_bytes(row.get("size_bytes")),
                _ratio(rel.get("size")), _ms(lat.get("p50")), _ratio(rel.get("latency_p50")),
                _ms(lat.get("p99")),
                "—" if fid.get("cosine") is None else f"{fid['cosine']:.5f}",
                _pct(fid.get("top1_agreement")),
                fmt_accuracy(row.get("accuracy")), human(row.get("params")),
                "—" if row.get("rss_peak_mb") is None else f"{row['rss_peak_mb']:.0f} MB",
                row.get("format", "")]
            from profilers.report.compare_honest import ratio_text

            ab = ratio_text(rel)  # × p50 with its interval from interleaved rounds
            for c, text in enumerate(values):
                item = QTableWidgetItem(str(text))
                item.setToolTip(row.get("model", "") + (
                    f"\n× p50 {ab}" if ab and COMPARE_COLUMNS[c] == "× p50" else ""))
                if 0 < c < len(values) - 1:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight |
                                          Qt.AlignmentFlag.AlignVCenter)
                t.setItem(r, c, item)
            if lat.get("p50") is not None:
                self.set_latency(row.get("model", ""), lat["p50"])
            self.set_accuracy(row.get("model", ""), row.get("accuracy"))
        backends = sorted({str(r.get("backend", "")) for r in rows})
        config = result.get("config") or {}
        self.compare_note.setText(
            f"{len(rows)} models on {', '.join(backends)} / {config.get('device', '')}, same "
            f"inputs ({result.get('verified_on', '')}); × columns are relative to the first row.")
        self.compare_note.setToolTip(self.compare_note.text())
        self.tabs.setCurrentIndex(1)

    def _name_of(self, path: str) -> str:
        for v in self.variants:
            if v.path and os.path.abspath(v.path) == os.path.abspath(path):
                return v.name
        return os.path.basename(path)

    # --- buttons ---------------------------------------------------------------------------
    def selected(self) -> list[Variant]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.variants[r] for r in rows if r < len(self.variants)]

    def _usable(self, vs: list[Variant]) -> list[Variant]:
        return [v for v in vs if v.status == "ok" and v.path]

    def _update_buttons(self) -> None:
        sel = self._usable(self.selected())
        self.open_button.setEnabled(len(sel) == 1)
        self.profile_button.setEnabled(len(sel) == 1)
        self.export_button.setEnabled(len(sel) == 1)
        self.diff_button.setEnabled(len(sel) == 2)
        usable = self._usable(self.variants)
        ok, why = self.runner_check({v.format for v in usable if v.format})
        self.compare_button.setEnabled(len(usable) >= 2 and ok)
        self.compare_button.setToolTip(
            why if len(usable) >= 2 and not ok else
            "Profile the selected variants (all when fewer than two are selected) on the same "
            "inputs, side by side" + ("" if len(usable) >= 2 else
                                      " — needs at least two finished variants"))

    def set_runner_check(self, check: Callable[[set[str]], tuple[bool, str]]) -> None:
        """How to tell whether the chosen backend runs variants of these formats (and why
        not): Compare runs them all on that one backend."""
        self.runner_check = check
        self._update_buttons()

    def _emit_path(self, signal) -> None:
        sel = self._usable(self.selected())
        if len(sel) == 1:
            signal.emit(sel[0].path)

    def compare_paths(self) -> list[str]:
        sel = self._usable(self.selected())
        if len(sel) < 2:
            sel = self._usable(self.variants)
        return [v.path for v in sel]

    def _emit_compare(self) -> None:
        paths = self.compare_paths()
        if len(paths) >= 2:
            self.sig_compare.emit(paths)

    def _on_double_click(self, row: int, _col: int) -> None:
        v = self.variants[row]
        if v.status == "failed":
            self.sig_details.emit(v)
        elif v.status == "ok" and v.path:
            self.sig_open.emit(v.path)


def _step_line(s: dict[str, Any]) -> str:
    parts = [f"{s.get('pass')}: {s.get('format', '')}"]
    if s.get("size_bytes"):
        parts.append(human_bytes(s["size_bytes"]))
    if s.get("fidelity"):
        parts.append(fmt_fidelity(s["fidelity"]))
    if s.get("seconds") is not None:
        parts.append(f"{s['seconds']:.1f} s")
    return "  ".join(parts)


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f} ms"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"
