"""Model summary and the selected node: attributes, input/output shapes, params, MACs, and its
measured time / device / precision once a run has them."""
from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QHeaderView, QMenu, QPlainTextEdit, QTreeWidget, QTreeWidgetItem,
    QVBoxLayout, QWidget,
)

from converters.graph import ModelGraph, WalkItem


def human(n: float | int | None, unit: str = "") -> str:
    if n is None:
        return "—"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "—"
    for div, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}"
    return f"{int(n)} B"


def shape_str(shape: list[Any] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


FULL_ROLE = Qt.ItemDataRole.UserRole + 1  # the whole value of a row cut for display


def _full(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class NodeDetailsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.graph: ModelGraph | None = None
        self.summary: dict[str, Any] = {}
        self.items: dict[str, WalkItem] = {}
        self.costs: dict[str, dict[str, Any]] = {}
        self.times: dict[str, dict[str, Any]] = {}
        self.selected: str | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["property", "value"])
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 150)
        header.setStretchLastSection(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # full text in tooltips
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        # long values: elided in the row, whole in the tooltip, and copied or opened whole
        # (double-click, the context menu, Ctrl+C)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.itemDoubleClicked.connect(lambda item, _col: self.show_value(item))
        copy = QAction("Copy value", self.tree)
        copy.setShortcut(QKeySequence(QKeySequence.StandardKey.Copy))
        copy.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        copy.triggered.connect(lambda: self.copy_value(self.tree.currentItem()))
        self.tree.addAction(copy)
        self.value_dialog: QDialog | None = None
        layout.addWidget(self.tree)
        self.model_root = QTreeWidgetItem(self.tree, ["Model", "no model open"])
        self.node_root = QTreeWidgetItem(self.tree, ["Node", "select a node in the graph"])
        for root in (self.model_root, self.node_root):
            f = root.font(0)
            f.setBold(True)
            root.setFont(0, f)
            root.setExpanded(True)

    def set_model(self, graph: ModelGraph, summary: dict[str, Any],
                  costs: dict[str, dict[str, Any]]) -> None:
        self.graph, self.summary, self.costs = graph, summary, costs
        self.items = {item.node.id: item for item in graph.walk()}
        self.times = {}
        self.selected = None
        self._fill_model()
        self._fill_node(None)

    def set_layer_times(self, rows: list[dict[str, Any]]) -> None:
        self.times = {r["node_id"]: r for r in rows if r.get("node_id")}
        self._fill_node(self.selected)

    def select_node(self, node_id: str | None) -> None:
        self.selected = node_id
        self._fill_node(node_id)

    # --- filling ---------------------------------------------------------------------------
    def _fill_model(self) -> None:
        s = self.summary
        root = self.model_root
        root.takeChildren()
        root.setText(1, s.get("path", "").rsplit("/", 1)[-1])
        opset = ", ".join(f"{k or 'ai.onnx'} {v}" for k, v in (s.get("opset") or {}).items())
        rows = [("format", s.get("format")), ("producer", s.get("producer") or "unknown"),
                ("opset", opset or "—"), ("file", human_bytes(s.get("file_size"))),
                ("nodes", f"{s.get('nodes', 0):,}"), ("parameters", f"{s.get('params', 0):,}"),
                ("MACs", human(s.get("macs")) + macs_basis(s)), ("FLOPs", human(s.get("flops"))),
                ("activations (peak)", human_bytes(s.get("activation_bytes_peak")))]
        for key, value in rows:
            QTreeWidgetItem(root, [key, str(value)])
        for kind in ("inputs", "outputs"):
            parent = QTreeWidgetItem(root, [kind, str(len(s.get(kind) or []))])
            for t in s.get(kind) or []:
                desc = f"{t.get('dtype')} {shape_str(t.get('shape'))}"
                QTreeWidgetItem(parent, [t["name"], desc])
            parent.setExpanded(True)
        if s.get("uncounted_ops"):
            parent = QTreeWidgetItem(root, ["not counted", ", ".join(s["uncounted_ops"])])
            for op, u in s["uncounted_ops"].items():
                QTreeWidgetItem(parent, [op, f"×{u.get('count')}: {u.get('reason')}"])
        for note in s.get("notes") or []:
            item = QTreeWidgetItem(root, ["note", note])
            item.setToolTip(1, note)
        _tooltips(root)
        root.setExpanded(True)

    def _fill_node(self, node_id: str | None) -> None:
        root = self.node_root
        root.takeChildren()
        item = self.items.get(node_id) if node_id else None
        if item is None:
            root.setText(1, "select a node in the graph")
            return
        n = item.node
        root.setText(1, f"{n.op_type} {n.name}")
        cost = self.costs.get(n.id, {})
        rows = [("op type", n.op_type + (f" ({n.domain})" if n.domain else "")),
                ("name", n.name), ("id", n.id), ("scope", n.scope or "—")]
        if cost:
            rows += [("params", f"{cost.get('params', 0):,}"),
                     ("MACs", "not counted" + (f": {cost['note']}" if cost.get("note") else "")
                      if cost.get("macs") is None else human(cost.get("macs")))]
        t = self.times.get(n.id)
        if t:
            rows += [("time", f"{t['time_ms']:.4f} ms per inference"),
                     ("device", t.get("device") or "—"),
                     ("precision", t.get("precision") or "—")]
            if t.get("fallback"):
                rows.append(("fallback", "ran on the CPU although another device was asked"))
        for key, value in rows:
            row = QTreeWidgetItem(root, [key, str(value)])
            row.setToolTip(1, str(value))
        for kind, names in (("inputs", n.inputs), ("outputs", n.outputs)):
            parent = QTreeWidgetItem(root, [kind, str(len([x for x in names if x]))])
            for name in names:
                if not name:
                    continue
                tensor = item.tensor(name)
                desc = "?" if tensor is None else f"{tensor.dtype} {shape_str(tensor.shape)}"
                if tensor is not None and tensor.is_weight:
                    desc += "  (weight)"
                child = QTreeWidgetItem(parent, [name, desc])
                child.setToolTip(0, name)
                child.setToolTip(1, desc)
            parent.setExpanded(True)
        if n.attributes:
            parent = QTreeWidgetItem(root, ["attributes", str(len(n.attributes))])
            for k, v in n.attributes.items():
                child = QTreeWidgetItem(parent, [k, _short(v)])
                child.setToolTip(1, _short(v, 2000))
                child.setData(1, FULL_ROLE, _full(v))
            parent.setExpanded(True)
        if n.subgraphs:
            parent = QTreeWidgetItem(root, ["subgraphs", ", ".join(n.subgraphs)])
            for k, g in n.subgraphs.items():
                QTreeWidgetItem(parent, [k, f"{len(g.nodes)} nodes"])
        _tooltips(root)
        root.setExpanded(True)
        self.tree.scrollToItem(root, QTreeWidget.ScrollHint.PositionAtTop)

    # --- whole values ----------------------------------------------------------------------
    @staticmethod
    def full_value(item: QTreeWidgetItem | None) -> str:
        if item is None:
            return ""
        full = item.data(1, FULL_ROLE)
        return str(full) if full is not None else item.text(1)

    def copy_value(self, item: QTreeWidgetItem | None) -> None:
        if item is not None:
            QGuiApplication.clipboard().setText(self.full_value(item))

    def show_value(self, item: QTreeWidgetItem | None) -> QDialog | None:
        """The whole value in a read-only, selectable text box (not modal)."""
        if item is None or not self.full_value(item):
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle(item.text(0) or "value")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        lay = QVBoxLayout(dialog)
        text = QPlainTextEdit(self.full_value(item))
        text.setReadOnly(True)
        text.setObjectName("whole_value")
        lay.addWidget(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: self.copy_value(item))
        buttons.rejected.connect(dialog.close)
        lay.addWidget(buttons)
        dialog.resize(560, 320)
        dialog.show()
        self.value_dialog = dialog
        return dialog

    def _context_menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
            return
        menu = QMenu(self.tree)
        menu.addAction("Copy value", lambda: self.copy_value(item))
        menu.addAction("Copy row", lambda: QGuiApplication.clipboard().setText(
            f"{item.text(0)}\t{self.full_value(item)}"))
        menu.addAction("Show whole value…", lambda: self.show_value(item))
        menu.popup(self.tree.viewport().mapToGlobal(pos))

    def node_rows(self) -> dict[str, str]:
        """The node section as {property: value} (tests, copy)."""
        return {self.node_root.child(i).text(0): self.node_root.child(i).text(1)
                for i in range(self.node_root.childCount())}


def _tooltips(item: QTreeWidgetItem) -> None:
    """Every row cut by the column's width can be read whole by hovering it."""
    for col in (0, 1):
        if not item.toolTip(col) and item.text(col):
            item.setToolTip(col, item.text(col) + ("\n(double-click: the whole value; Ctrl+C "
                                                   "copies it)" if col == 1 else ""))
    for i in range(item.childCount()):
        _tooltips(item.child(i))


def macs_basis(summary: dict[str, Any]) -> str:
    """' at 1×3×224×224 (default sizes)': the sizes MACs were counted at, said where they are
    shown, so a figure at assumed sizes never reads as the model's only cost."""
    wl = summary.get("workload") or {}
    shapes = [i.get("shape") for i in wl.get("inputs", [])]
    if not shapes:
        return " (at declared sizes)" if summary.get("assumed_dims") else ""
    first = "×".join(str(d) for d in shapes[0]) or "scalar"
    more = f" +{len(shapes) - 1} inputs" if len(shapes) > 1 else ""
    why = " (default sizes, see Inputs)" if wl.get("assumed") else ""
    return f" at {first}{more}{why}"

