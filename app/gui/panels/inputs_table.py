"""The Inputs table: what the model is measured on, one row per input.

Filled from the workload the worker resolved when the model opened (converters/workload.py):
name, dtype, shape, where the shape came from and what the values will be. The shape cell is
editable; an edited size is sent with the next run as a size the user set, and every other
size is resolved again around it (a named dimension keeps one value everywhere).
"""
from __future__ import annotations

import logging
import re
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

log = logging.getLogger(__name__)

COLUMNS = ("Input", "Type", "Shape", "Shape from", "Values")
_SHAPE = re.compile(r"^\s*(\d+(\s*[x×,]\s*\d+)*)?\s*$")


def parse_shape_text(text: str) -> list[int] | None:
    """"1x3x224x224" (or "1, 3, 224, 224"; empty for a scalar) -> [1, 3, 224, 224]; None when
    the text is not a shape."""
    text = text.strip().strip("[]")
    if not _SHAPE.match(text):
        return None
    parts = [p for p in re.split(r"\s*[x×,]\s*", text) if p]
    return [int(p) for p in parts]


def shape_text(shape: list[int]) -> str:
    return " × ".join(str(d) for d in shape) if shape else "scalar"


class InputsTable(QWidget):
    """Sizes and values of the model's inputs; the Shape column is editable."""

    sig_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._resolved: dict[str, list[int]] = {}
        self._sources: dict[str, str] = {}
        self._user: dict[str, list[int]] = {}  # sizes the user set: kept until reset
        self._filling = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.AllEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setMinimumHeight(60)
        self.table.setMaximumHeight(150)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.note = QLabel("Open a model to see its inputs.")
        self.note.setWordWrap(True)
        self.note.setEnabled(False)  # secondary text
        self.reset_button = QPushButton("Reset sizes")
        self.reset_button.setToolTip("Back to the sizes resolved from the model")
        self.reset_button.setEnabled(False)
        row.addWidget(self.note, 1)
        row.addWidget(self.reset_button)
        layout.addLayout(row)
        self.table.itemChanged.connect(self._on_item_changed)
        self.reset_button.clicked.connect(self.reset)

    # --- filling ----------------------------------------------------------------------------
    def set_workload(self, workload: dict[str, Any] | None, note: str = "",
                     keep_user: bool = False) -> None:
        """Show a resolved workload (Workload.to_dict()); None: the sizes could not be decided.
        keep_user: the workload was resolved around the user's sizes (a recount), keep them."""
        self._filling = True
        if not keep_user:
            self._user = {}
            self._sources = {}
        try:
            self.table.setRowCount(0)
            self._resolved = {}
            if not workload:
                self.note.setText(note or "The model's input sizes are not known: set them "
                                  "here before a run.")
                return
            for i in workload.get("inputs", []):
                r = self.table.rowCount()
                self.table.insertRow(r)
                self._resolved[i["name"]] = list(i["shape"])
                if i["name"] not in self._user:  # what Reset goes back to
                    self._sources[i["name"]] = i["shape_source"]
                cells = [i["name"], i["dtype"], shape_text(i["shape"]), i["shape_source"],
                         i.get("values_text", "")]
                why = i.get("values", {}).get("reason", "")
                # the dock is narrow: every cell's tooltip tells the whole row
                full = (f"{i['name']}: {i['dtype']} {shape_text(i['shape'])}\n"
                        f"size from: {i['shape_source']}\nvalues: {i.get('values_text', '')}"
                        + (f" ({why})" if why else ""))
                for c, text in enumerate(cells):
                    item = QTableWidgetItem(str(text))
                    if c != 2:
                        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                        item.setToolTip(full)
                    else:
                        item.setToolTip(full + "\n\nEdit the size, e.g. 1 × 3 × 320 × 320")
                    self.table.setItem(r, c, item)
            notes = list(workload.get("notes") or [])
            if workload.get("assumed"):
                notes.insert(0, "Some sizes are defaults (see 'Shape from'): edit them to "
                                "measure the sizes you deploy.")
            self.note.setText(" ".join(notes) or "Sizes from the model.")
        finally:
            self._filling = False
        self.reset_button.setEnabled(bool(self._user))

    def show_problem(self, message: str) -> None:
        """A size the model cannot take (a conflict, a fixed dim): said here, not in a dialog."""
        self.note.setText("⚠ " + message)

    def clear(self) -> None:
        self.set_workload(None, "Open a model to see its inputs.")

    # --- editing ----------------------------------------------------------------------------
    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 2:
            return
        shape = parse_shape_text(item.text())
        name = self.table.item(item.row(), 0).text()
        self._filling = True
        try:
            if shape is None:
                item.setForeground(QBrush(QColor("#c62828")))
                item.setToolTip("Not a size: write the dims separated by x, e.g. 1 x 3 x 224 x 224")
            else:
                item.setForeground(QBrush())
                item.setText(shape_text(shape))
                if shape != self._resolved.get(name) or name in self._user:
                    self._user[name] = shape
                    self.table.item(item.row(), 3).setText("set by you")
        finally:
            self._filling = False
        self.reset_button.setEnabled(bool(self.user_shapes()) or not self.valid())
        self.sig_changed.emit()

    def valid(self) -> bool:
        return all(parse_shape_text(self.table.item(r, 2).text()) is not None
                   for r in range(self.table.rowCount()))

    def invalid_message(self) -> str:
        bad = [self.table.item(r, 0).text() for r in range(self.table.rowCount())
               if parse_shape_text(self.table.item(r, 2).text()) is None]
        return ("The size of " + ", ".join(bad) + " is not a size: write the dims separated by "
                "x, e.g. 1 x 3 x 224 x 224") if bad else ""

    def user_shapes(self) -> dict[str, list[int]]:
        """Sizes the user set (sent as set by you); the rest are resolved again around them."""
        return {k: list(v) for k, v in self._user.items()}

    def reset(self) -> None:
        had_user, self._user = bool(self._user), {}
        if had_user:  # sizes bound to the user's (same named dim) go back too: recount
            self.reset_button.setEnabled(False)
            self.sig_changed.emit()
            return
        self._filling = True
        try:
            for r in range(self.table.rowCount()):
                name = self.table.item(r, 0).text()
                item = self.table.item(r, 2)
                item.setText(shape_text(self._resolved.get(name, [])))
                item.setForeground(QBrush())
                self.table.item(r, 3).setText(self._sources.get(name, ""))
        finally:
            self._filling = False
        self.reset_button.setEnabled(False)
        self.sig_changed.emit()
