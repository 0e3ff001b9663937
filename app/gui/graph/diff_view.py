"""The graph diff: two variants side by side, nodes matched across the transformation.

The matching itself is converters/graph_diff.py (Qt-free; `modeldeck diff` prints it). Here:
two GraphViews coloured by what happened to each node (unchanged, changed, fused into a
neighbour, Q/DQ inserted, added, removed), or by precision, op type or time; a click on a node
selects its counterpart on the other side; the table below lists every changed pair with its
precision, shape, parameter and time deltas, and a click on a row shows both nodes.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel,
                               QMainWindow, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from app.gui.graph.view import GraphView
from converters.graph import ModelGraph
from converters.graph_diff import GraphDiff

log = logging.getLogger(__name__)

# status -> (colour, legend label), most important first (a folded group shows the first found)
STATUS_PALETTE: dict[str, tuple[str, str]] = {
    "removed": ("#c0392b", "only in this graph (removed)"),
    "added": ("#2e8b57", "only in this graph (added)"),
    "changed": ("#e07b24", "matched, changed"),
    "fused": ("#8e6bb8", "folded into (or split off) a neighbour"),
    "inserted": ("#b3a21b", "inserted Q/DQ or cast"),
    "same": ("#7b8794", "matched, unchanged"),
}
# time change of a matched node, when both variants were profiled per layer
DELTA_PALETTE: dict[str, tuple[str, str]] = {
    "slower": ("#c0392b", "slower (over +10 %)"),
    "faster": ("#2e8b57", "faster (over −10 %)"),
    "similar": ("#7b8794", "within ±10 %"),
}
DELTA_TOLERANCE = 0.10
MODES = {"status": "Changes", "delta": "Time change", "precision": "Precision", "op": "Op type",
         "time": "Time"}
COLUMNS = ("Base node", "Other node", "Matched", "Changes")


class _Side(QWidget):
    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.title = QLabel(title)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setStyleSheet("font-weight: bold; padding: 2px 6px;")
        self.view = GraphView(self)
        # one colour choice for both sides (above them), a narrower search: two fit 1366 px
        self.view.mode_box.hide()
        self.view.search_box.setMinimumWidth(100)
        self.setMinimumWidth(360)
        lay.addWidget(self.title)
        lay.addWidget(self.view, 1)


class GraphDiffView(QWidget):
    """Base on the left, other on the right; selections follow each other."""

    sig_pair_selected = Signal(str, str)  # base node id, other node id ("" when none)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.diff: GraphDiff | None = None
        self._delta: tuple[dict[str, str], dict[str, str]] = ({}, {})
        self._mode = "status"
        self._to_other: dict[str, str] = {}
        self._to_base: dict[str, str] = {}
        self._syncing = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        bar = QHBoxLayout()
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.mode_box = QComboBox()
        for key, label in MODES.items():
            self.mode_box.addItem(f"Colour: {label}", key)
        self.mode_box.currentIndexChanged.connect(
            lambda i: self.set_colour_mode(self.mode_box.itemData(i)))
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.mode_box)
        lay.addLayout(bar)
        self.base_side = _Side("base")
        self.other_side = _Side("other")
        self.base, self.other = self.base_side.view, self.other_side.view
        graphs = QSplitter(Qt.Orientation.Horizontal)
        graphs.addWidget(self.base_side)
        graphs.addWidget(self.other_side)
        graphs.setChildrenCollapsible(False)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        head.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_row)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(graphs)
        split.addWidget(self.table)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setChildrenCollapsible(False)
        lay.addWidget(split, 1)
        self.base.sig_node_selected.connect(lambda k: self._follow(k, from_base=True))
        self.other.sig_node_selected.connect(lambda k: self._follow(k, from_base=False))

    # --- public -------------------------------------------------------------------------------
    def set_diff(self, base: ModelGraph, other: ModelGraph, diff: GraphDiff,
                 base_title: str = "", other_title: str = "",
                 base_times: Mapping[str, float] | None = None,
                 other_times: Mapping[str, float] | None = None,
                 base_precisions: Mapping[str, str] | None = None,
                 other_precisions: Mapping[str, str] | None = None) -> None:
        """Show a diff. Precisions default to what the diff read from the graphs; times (node
        id -> ms, from per-layer profiles) colour the "Time" mode when given."""
        self.diff = diff
        self._to_other = diff.match_of_base()
        self._to_base = diff.match_of_other()
        for f in diff.fused:  # a folded node points at its host
            self._to_other.setdefault(f, diff.fused[f])
        for f in diff.fused_other:
            self._to_base.setdefault(f, diff.fused_other[f])
        self.base_side.title.setText(base_title or Path(base.meta.path).name or "base")
        self.other_side.title.setText(other_title or Path(other.meta.path).name or "other")
        for view, model, status, notes, facts, prec, times in (
                (self.base, base, diff.base_status, diff.notes_base, diff.base,
                 base_precisions, base_times),
                (self.other, other, diff.other_status, diff.notes_other, diff.other,
                 other_precisions, other_times)):
            view.set_model(model)
            view.set_node_status(status, STATUS_PALETTE, "Changes")
            view.set_node_notes(notes)
            view.set_node_precisions(prec if prec is not None else
                                     {k: f.precision for k, f in facts.items() if f.precision})
            view.set_node_times(times)
        i = self.mode_box.findData("time")
        self.mode_box.model().item(i).setEnabled(bool(base_times or other_times))
        self._delta = _time_change(diff, base_times or {}, other_times or {})
        i = self.mode_box.findData("delta")
        self.mode_box.model().item(i).setEnabled(bool(self._delta[0]))
        self._mode = ""
        self.set_colour_mode("status")
        self._fill_summary()
        self._fill_table()

    def set_colour_mode(self, mode: str) -> None:
        """"status" (what happened to each node), "delta" (time change, when both variants
        were profiled per layer), or a GraphView mode: "precision", "op", "time"."""
        d = self.diff
        if d is not None and mode in ("status", "delta") and mode != self._mode:
            if mode == "delta":
                pairs = ((self.base, self._delta[0]), (self.other, self._delta[1]))
                palette, title = DELTA_PALETTE, "Time change"
            else:
                pairs = ((self.base, d.base_status), (self.other, d.other_status))
                palette, title = STATUS_PALETTE, "Changes"
            for v, status in pairs:
                v.set_node_status(status, palette, title)
        self._mode = mode
        for v in (self.base, self.other):
            v.set_colour_mode("status" if mode == "delta" else mode)
        i = self.mode_box.findData(mode)
        if i != self.mode_box.currentIndex():
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(i)
            self.mode_box.blockSignals(False)

    def select_pair(self, base_id: str | None, other_id: str | None) -> None:
        self._syncing = True
        try:
            self.base.select_node(base_id or None)
            self.other.select_node(other_id or None)
        finally:
            self._syncing = False
        self.sig_pair_selected.emit(base_id or "", other_id or "")

    # --- internals ------------------------------------------------------------------------------
    def _follow(self, key: str, from_base: bool) -> None:
        if self._syncing:
            return
        if from_base:
            self.select_pair(key, self._to_other.get(key))
        else:
            self.select_pair(self._to_base.get(key), key)

    def _fill_summary(self) -> None:
        s = self.diff.summary()
        parts = [f"<b>{s['matched']}</b> nodes matched of {s['base_nodes']} / "
                 f"{s['other_nodes']} ({s['by_name']} by name, {s['by_structure']} by "
                 f"structure, {s['by_order']} by order)",
                 f"<b>{s['changed']}</b> changed"]
        if s["fused"]:
            parts.append(f"{s['fused']} folded into neighbours")
        if s["inserted"]:
            parts.append(f"{s['inserted']} Q/DQ or casts inserted")
        if s["only_base"]:
            parts.append(f"{s['only_base']} removed")
        if s["only_other"]:
            parts.append(f"{s['only_other']} added")
        self.summary.setText(" · ".join(parts) +
                             "<br><span style='color:gray'>Click a node: its counterpart is "
                             "shown on the other side. Weights and Q/DQ are seen through.</span>")

    def _fill_table(self) -> None:
        d = self.diff
        rows: list[tuple[str, str, str, str, str, str]] = []
        for m in d.matches:
            if m.changes:
                rows.append((d.base[m.base].name or m.base, d.other[m.other].name or m.other,
                             m.how, "; ".join(m.changes), m.base, m.other))
        for k in d.only_base:
            rows.append((d.base[k].name or k, "—", "removed", d.base[k].op, k, ""))
        for k in d.only_other:
            rows.append(("—", d.other[k].name or k, "added", d.other[k].op, "", k))
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row[:4]):
                item = QTableWidgetItem(text)
                if c == 0:
                    item.setData(Qt.ItemDataRole.UserRole, (row[4], row[5]))
                item.setToolTip(text)
                self.table.setItem(r, c, item)

    def _on_row(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if len(rows) != 1:
            return
        item = self.table.item(rows.pop(), 0)
        base_id, other_id = item.data(Qt.ItemDataRole.UserRole)
        self.select_pair(base_id, other_id)


def _time_change(diff: GraphDiff, base_times: Mapping[str, float],
                 other_times: Mapping[str, float]) -> tuple[dict[str, str], dict[str, str]]:
    """Per side, node id -> slower / faster / similar, for matched nodes timed on both."""
    a: dict[str, str] = {}
    b: dict[str, str] = {}
    for m in diff.matches:
        t0, t1 = base_times.get(m.base), other_times.get(m.other)
        if t0 is None or t1 is None or t0 <= 0:
            continue
        r = t1 / t0 - 1.0
        st = "slower" if r > DELTA_TOLERANCE else "faster" if r < -DELTA_TOLERANCE else "similar"
        a[m.base] = b[m.other] = st
    return a, b


class GraphDiffWindow(QMainWindow):
    """A window of its own for one diff, so the main window keeps its layout."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        self.view = GraphDiffView(self)
        self.setCentralWidget(self.view)
        self.resize(1280, 800)

    def show_result(self, result: dict[str, Any], base_title: str = "",
                    other_title: str = "", base_times: Mapping[str, float] | None = None,
                    other_times: Mapping[str, float] | None = None) -> None:
        """A `graph_diff` job's result: both graphs and the matching (computed in the worker)."""
        base = ModelGraph.from_dict(result["base"])
        other = ModelGraph.from_dict(result["other"])
        diff = GraphDiff.from_wire(result["diff"])
        self.setWindowTitle(f"Graph diff — {base_title or Path(base.meta.path).name} vs "
                            f"{other_title or Path(other.meta.path).name}")
        self.view.set_diff(base, other, diff, base_title, other_title, base_times, other_times)


def layer_times(window: Any, path: str) -> dict[str, float] | None:
    """Per-node ms of `path` from the window's last comparison (Compare with per-layer
    profiles) or its last run of the open model; None when neither measured it."""
    import os

    want = os.path.abspath(path)
    rows = (getattr(window, "last_comparison", None) or {}).get("rows") or []
    for r in rows:
        if os.path.abspath(str(r.get("model", ""))) == want and r.get("layers"):
            return _times_of(r["layers"])
    report = getattr(window, "last_report", None) or {}
    if report.get("layers") and getattr(window, "model_path", None) and \
            os.path.abspath(window.model_path) == want:
        return _times_of(report["layers"])
    return None


def _times_of(layers: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in layers:
        nid = row.get("node_id")
        if nid:
            out[nid] = out.get(nid, 0.0) + float(row.get("time_ms") or 0.0)
    return out


def start_graph_diff(window: Any, paths: list[str]):
    """Variants ▸ Diff graphs: read and match both variants in a worker, then show them in a
    window of their own. `window` is the MainWindow (job bar, consent, errors)."""
    from app.gui.jobs import WorkerJob

    if len(paths) != 2:
        window.show_error("Diff graphs", "select exactly two variants in the Variants table "
                          "(the first one is the base)")
        return None
    if not window._ask_consent(paths, "read", lambda: start_graph_diff(window, paths)):
        return None
    base, other = paths
    spec = {"job": "graph_diff", "base": base, "other": other,
            "trust_code": window._trusted(paths),
            "base_times": layer_times(window, base), "other_times": layer_times(window, other)}
    job = WorkerJob(spec, window)
    window.job_bar.bind(job, "Matching the two graphs")

    def done(outcome) -> None:
        job.deleteLater()
        if outcome.status == "ok":
            w = GraphDiffWindow(window)  # a child: lives until closed (deleted on close)
            window.graph_diff_window = w
            w.show_result(outcome.result, Path(base).name, Path(other).name,
                          spec["base_times"], spec["other_times"])
            w.show()
        elif outcome.status == "failed":
            window.show_error("The graph diff failed", outcome.error or "unknown error",
                              outcome.stderr_tail)

    job.sig_finished.connect(done)
    job.start()
    return job
