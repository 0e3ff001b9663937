"""Compression passes to apply, as an ordered pipeline: a checkable, reorderable list (drag and
drop, or the arrow buttons) of every registered pass, the selected pass's option editors
generated from its Options dataclass (fields + type hints), a target format and the
calibration / evaluation data. Adding a pass to converters.passes adds it here, unchanged.

What may run is decided in one Qt-free place, converters/passes/order.py, which the pipeline,
the CLI and recipe replay use too: passes that cannot apply to the open model's format are
greyed with the reason before anyone presses Apply, and an order the rules refuse is said under
the list (naming the rule and a valid order) with Apply disabled. The checked passes run in the
order shown.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import typing
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame,
    QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QScrollArea,
    QSizePolicy, QSpinBox, QStackedWidget, QToolButton, QVBoxLayout, QWidget,
)

from app.gui import settings
from app.gui.widgets import guard_wheel, no_wheel_focus

log = logging.getLogger(__name__)

SETTINGS_KEY = "passes_panel"
TARGETS = [("keep the format", None), ("ONNX", "onnx"), ("OpenVINO IR", "openvino")]
CALIB_SOURCES = [("bundled sample (digits)", "sample"), ("file (.npz of inputs)…", "file"),
                 ("folder of images…", "folder"), ("random data", "random")]
EVAL_SOURCES = [("none (fidelity only)", None), ("bundled digits test set", "sample"),
                ("file (.npz with labels)…", "file")]
MIN_ROWS = 6  # the list never shows fewer passes than this (it showed about four)
NAME_ROLE = Qt.ItemDataRole.UserRole
RANDOM_WARNING = ("⚠ Random calibration data: the quantisation ranges will not match real "
                  "inputs, so accuracy will suffer. Use it only to try a pipeline.")


# --- one editor per option, chosen from the type hint ----------------------------------------

class OptionEditor:
    """Wraps the widget that edits one Options field and reads back a JSON value."""

    def __init__(self, field: dataclasses.Field, hint: Any, tip: str = ""):
        self.name = field.name
        if field.default is not dataclasses.MISSING:
            self.default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            self.default = field.default_factory()
        else:
            self.default = None
        self.hint = hint
        self.widget = self._make(hint, self.default)
        self.widget.setToolTip(tip or self.name)
        self.widget.setObjectName(f"option_{self.name}")

    def _make(self, hint: Any, default: Any) -> QWidget:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        self.kind = "text"
        if hint is bool:
            self.kind = "bool"
            w = QCheckBox()
            w.setChecked(bool(default))
            return w
        if hint is int:
            self.kind = "int"
            w = QSpinBox()
            w.setRange(-2**31, 2**31 - 1)
            w.setValue(int(default or 0))
            return w
        if hint is float:
            self.kind = "float"
            w = QDoubleSpinBox()
            w.setDecimals(4)
            w.setRange(-1e9, 1e9)
            w.setSingleStep(0.05 if default is not None and 0 <= default <= 1 else 1.0)
            w.setValue(float(default or 0.0))
            return w
        if origin is typing.Literal:
            self.kind = "choice"
            w = QComboBox()
            w.addItems([str(a) for a in args])
            if default is not None:
                w.setCurrentText(str(default))
            return w
        if origin in (tuple, list):
            self.kind = "list"
            w = QLineEdit(";".join(map(str, default or ())))
            w.setPlaceholderText("none (separate names with ;)")
            return w
        w = QLineEdit("" if default is None else str(default))  # str, Optional[...], other
        if default is None:
            w.setPlaceholderText("none")
        return w

    def value(self) -> Any:
        w = self.widget
        if self.kind == "bool":
            return w.isChecked()  # type: ignore[attr-defined]
        if self.kind in ("int", "float"):
            return w.value()  # type: ignore[attr-defined]
        if self.kind == "choice":
            return w.currentText()  # type: ignore[attr-defined]
        text = w.text().strip()  # type: ignore[attr-defined]
        if self.kind == "list":
            return [t.strip() for t in text.split(";") if t.strip()]
        return text  # make_options coerces strings to the field's type (None for "")

    def set_value(self, v: Any) -> None:
        w = self.widget
        try:
            if self.kind == "bool":
                w.setChecked(bool(v))  # type: ignore[attr-defined]
            elif self.kind == "int":
                w.setValue(int(v))  # type: ignore[attr-defined]
            elif self.kind == "float":
                w.setValue(float(v))  # type: ignore[attr-defined]
            elif self.kind == "choice":
                w.setCurrentText(str(v))  # type: ignore[attr-defined]
            elif self.kind == "list":
                w.setText(";".join(map(str, v)))  # type: ignore[attr-defined]
            else:
                w.setText("" if v is None else str(v))  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            pass  # a stale saved value: keep the default

    def is_default(self) -> bool:
        v, d = self.value(), self.default
        if self.kind == "list":
            return list(v) == list(d or ())
        if self.kind == "text":
            return v == ("" if d is None else str(d))
        return v == d


def _field_comments(options_cls: type) -> dict[str, str]:
    """`amount: float = 0.5  # fraction of weights set to zero` -> {"amount": "fraction ..."}:
    the pass authors' own comments become the editors' tooltips."""
    try:
        source = inspect.getsource(options_cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for m in re.finditer(r"^\s*(\w+)\s*:[^=\n]+=[^#\n]*#\s*(.+)$", source, re.MULTILINE):
        out[m.group(1)] = m.group(2).strip()
    return out


@dataclass
class PassBox:
    """One pass: its row in the list and its page of option editors."""
    name: str
    cls: type
    item: QListWidgetItem
    body: QWidget  # the options page
    editors: list[OptionEditor]
    error: QLabel
    applies: QLabel  # whether (and how) it applies to the open model

    @property
    def checked(self) -> bool:
        return self.item.checkState() == Qt.CheckState.Checked

    def values(self, changed_only: bool = True) -> dict[str, Any]:
        return {e.name: e.value() for e in self.editors if not (changed_only and e.is_default())}


class PassList(QListWidget):
    """The pipeline: checkable rows in run order, reordered by drag and drop. Tall enough for
    every pass when the dock has room, never shorter than MIN_ROWS rows; the wheel scrolls it
    (it holds no value editors)."""

    sig_reordered = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("pass_list")
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setAlternatingRowColors(True)
        self.setToolTip("Checked passes run from top to bottom: drag a pass, or use the arrows, "
                        "to change the order")
        # a drag and drop moves rows in the model: whatever moved them, the order changed
        self.model().rowsMoved.connect(lambda *_: self.sig_reordered.emit())

    def _rows_height(self, rows: int) -> int:
        row = self.sizeHintForRow(0) if self.count() else self.fontMetrics().height() + 6
        return rows * max(row, 1) + 2 * self.frameWidth() + 2

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(super().sizeHint().width(), self._rows_height(max(self.count(), MIN_ROWS)))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(super().minimumSizeHint().width(), self._rows_height(MIN_ROWS))


# --- the panel -------------------------------------------------------------------------------

class PassesPanel(QWidget):
    sig_apply_requested = Signal()
    sig_selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        guard_wheel()  # idempotent: unfocused spin boxes and combos never take the wheel
        self.boxes: dict[str, PassBox] = {}
        self._restoring = False
        self._format: str | None = None  # the open model's format (None: no model open)
        self._applicability: dict[str, Any] = {}
        self._suspended: set[str] = set()  # checked, but cannot apply to the open model
        self._problems: list[Any] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)

        list_row = QHBoxLayout()
        self.pass_list = PassList()
        list_row.addWidget(self.pass_list, 1)
        arrows = QVBoxLayout()
        self.up_button = QToolButton()
        self.up_button.setObjectName("pass_up")
        self.up_button.setArrowType(Qt.ArrowType.UpArrow)
        self.up_button.setToolTip("Run the selected pass earlier")
        self.down_button = QToolButton()
        self.down_button.setObjectName("pass_down")
        self.down_button.setArrowType(Qt.ArrowType.DownArrow)
        self.down_button.setToolTip("Run the selected pass later")
        arrows.addWidget(self.up_button)
        arrows.addWidget(self.down_button)
        arrows.addStretch(1)
        list_row.addLayout(arrows)
        # every row when the dock has room (never fewer than MIN_ROWS); the options get the rest
        self.pass_list.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        outer.addLayout(list_row, 0)
        self.applies_note = QLabel("")
        self.applies_note.setObjectName("applies_note")
        self.applies_note.setWordWrap(True)
        self.applies_note.setEnabled(False)  # secondary text, palette-aware
        outer.addWidget(self.applies_note)
        self.order_problem = QLabel("")
        self.order_problem.setObjectName("order_problem")
        self.order_problem.setWordWrap(True)
        self.order_problem.setStyleSheet("QLabel#order_problem { font-weight: bold; }")
        self.order_problem.hide()
        outer.addWidget(self.order_problem)

        self.options_title = QLabel("")
        outer.addWidget(self.options_title)
        self.stack = QStackedWidget()
        self.scroll = QScrollArea()  # the selected pass's options
        self.scroll.setObjectName("pass_options")
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.stack)
        self.scroll.setMinimumHeight(60)
        outer.addWidget(self.scroll, 1)

        form = QFormLayout()
        self.target = QComboBox()
        for label, value in TARGETS:
            self.target.addItem(label, value)
        form.addRow("Target format", self.target)
        calib_row = QHBoxLayout()
        self.calib = QComboBox()
        for label, value in CALIB_SOURCES:
            self.calib.addItem(label, value)
        self.calib_path = QLineEdit()
        self.calib_path.setPlaceholderText("path")
        self.calib_browse = QToolButton()
        self.calib_browse.setText("…")
        calib_row.addWidget(self.calib, 1)
        calib_row.addWidget(self.calib_path, 1)
        calib_row.addWidget(self.calib_browse)
        form.addRow("Calibration", calib_row)
        self.calib_note = QLabel("")
        self.calib_note.setWordWrap(True)
        form.addRow("", self.calib_note)
        eval_row = QHBoxLayout()
        self.eval = QComboBox()
        for label, value in EVAL_SOURCES:
            self.eval.addItem(label, value)
        self.eval_path = QLineEdit()
        self.eval_path.setPlaceholderText("labelled .npz (x, y)")
        eval_row.addWidget(self.eval, 1)
        eval_row.addWidget(self.eval_path, 1)
        form.addRow("Evaluate on", eval_row)
        outer.addLayout(form)
        self.random_warning = QLabel(RANDOM_WARNING)
        self.random_warning.setWordWrap(True)
        self.random_warning.setObjectName("random_warning")
        self.random_warning.setStyleSheet("QLabel#random_warning { font-weight: bold; }")
        outer.addWidget(self.random_warning)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        outer.addWidget(self.summary)
        self.apply_button = QPushButton("Apply to current model")
        self.apply_button.setToolTip("Run the checked passes in a worker: a new variant row")
        outer.addWidget(self.apply_button)

        self.apply_button.clicked.connect(self.sig_apply_requested)
        self.calib.currentIndexChanged.connect(self._on_calib_changed)
        self.eval.currentIndexChanged.connect(self._on_eval_changed)
        self.calib_browse.clicked.connect(self._browse_calib)
        self.target.currentIndexChanged.connect(self._changed)
        self.pass_list.itemChanged.connect(self._on_item_changed)
        self.pass_list.currentItemChanged.connect(self._on_current_changed)
        self.pass_list.sig_reordered.connect(self._changed)
        self.up_button.clicked.connect(lambda: self.move_current(-1))
        self.down_button.clicked.connect(lambda: self.move_current(+1))
        no_wheel_focus(self.target, self.calib, self.eval)
        self.loaded = False
        self.loading = QLabel("loading passes…")
        self.stack.addWidget(self.loading)
        self._restore_common()
        self._on_calib_changed()
        self._on_eval_changed()

    def ensure_loaded(self) -> None:
        """Build the pass list (imports the registry and numpy): after the first paint."""
        if not self.loaded:
            self.load_passes()

    # --- registry --------------------------------------------------------------------------
    def load_passes(self) -> None:
        """One row and one options page per registered pass; a broken registry is shown, not
        fatal."""
        self.pass_list.blockSignals(True)
        self.pass_list.clear()
        self.pass_list.blockSignals(False)
        while self.stack.count():
            w = self.stack.widget(0)
            self.stack.removeWidget(w)
            w.deleteLater()
        self.boxes.clear()
        try:
            from converters.passes import PASSES
            from converters.passes.order import canonical_order
        except Exception as e:  # the engine is importable without frameworks; say what broke
            log.warning("passes unavailable: %s", e)
            page = QWidget()
            lay = QVBoxLayout(page)
            label = QLabel(f"Passes are unavailable: {type(e).__name__}: {e}")
            label.setWordWrap(True)
            retry = QPushButton("Retry")
            retry.clicked.connect(self.load_passes)
            lay.addWidget(label)
            lay.addWidget(retry)
            lay.addStretch(1)
            self.stack.addWidget(page)
            if hasattr(self, "apply_button"):
                self.apply_button.setEnabled(False)
            return
        self.pass_list.blockSignals(True)
        try:
            for name in self._initial_order(canonical_order(list(PASSES))):
                self.boxes[name] = self._make_box(name, PASSES[name])
        finally:
            self.pass_list.blockSignals(False)
        self.loaded = True
        self._restore_passes()
        self.pass_list.setCurrentRow(0)
        self.pass_list.updateGeometry()
        self._refresh()

    def _initial_order(self, canonical: list[str]) -> list[str]:
        """The order the user left (saved), passes new since then at their canonical place."""
        saved = [n for n in (self._saved().get("order") or []) if n in canonical]
        if not saved:
            return canonical
        out = list(saved)
        for n in canonical:
            if n not in out:
                before = canonical[:canonical.index(n)]
                at = max((out.index(b) + 1 for b in before if b in out), default=0)
                out.insert(at, n)
        return out

    def _make_box(self, name: str, cls: type) -> PassBox:
        """A checkable row in the list and a page of option editors, shown while the row is
        the current one, so a long registry stays a short list."""
        item = QListWidgetItem(name)
        item.setData(NAME_ROLE, name)
        item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
                      | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsDragEnabled)
        item.setCheckState(Qt.CheckState.Unchecked)
        self.pass_list.addItem(item)
        accepts = ", ".join(sorted(getattr(cls, "accepts", ()) or ()))
        calib = " Needs calibration data." if getattr(cls, "needs_calibration", False) else ""
        body = QFrame()
        body.setObjectName(f"pass_{name}")
        body.setFrameShape(QFrame.Shape.StyledPanel)
        form = QFormLayout(body)
        form.setContentsMargins(8, 4, 6, 4)
        description = QLabel((cls.description or "") + (f" Runs on {accepts}." if accepts else "")
                             + calib)
        description.setWordWrap(True)
        description.setEnabled(False)  # secondary text, palette-aware
        form.addRow(description)
        applies = QLabel("")
        applies.setWordWrap(True)
        form.addRow(applies)
        editors = []
        try:
            hints = typing.get_type_hints(cls.Options)
            tips = _field_comments(cls.Options)
            for f in dataclasses.fields(cls.Options):
                editor = OptionEditor(f, hints.get(f.name, str), tips.get(f.name, ""))
                no_wheel_focus(editor.widget)
                editors.append(editor)
                form.addRow(f.name.replace("_", " "), editor.widget)
                sig = getattr(editor.widget, "toggled", None) or getattr(
                    editor.widget, "currentIndexChanged", None) or getattr(
                    editor.widget, "editingFinished", None)
                if sig is not None:
                    sig.connect(self._changed)
        except Exception as e:  # an Options class the editor generator does not understand
            form.addRow(QLabel(f"options unavailable: {e}"))
        error = QLabel("")
        error.setWordWrap(True)
        error.hide()
        form.addRow(error)
        self.stack.addWidget(body)
        return PassBox(name, cls, item, body, editors, error, applies)

    # --- order -----------------------------------------------------------------------------
    def order(self) -> list[str]:
        """Every pass, in the order shown (checked or not)."""
        return [self.pass_list.item(i).data(NAME_ROLE) for i in range(self.pass_list.count())]

    def set_order(self, names: list[str]) -> None:
        """Show the passes in this order (names not given keep their place after them)."""
        self.ensure_loaded()
        current = self.order()
        wanted = [n for n in names if n in self.boxes] + [n for n in current if n not in names]
        for row, name in enumerate(wanted):
            self._move_item(name, row)
        self._changed()

    def move_pass(self, name: str, delta: int) -> None:
        row = self.order().index(name)
        target = max(0, min(self.pass_list.count() - 1, row + delta))
        if target != row:
            self._move_item(name, target)
            self._changed()

    def move_current(self, delta: int) -> None:
        item = self.pass_list.currentItem()
        if item is not None:
            self.move_pass(item.data(NAME_ROLE), delta)

    def _move_item(self, name: str, row: int) -> None:
        box = self.boxes[name]
        old = self.pass_list.row(box.item)
        if old == row:
            return
        self.pass_list.blockSignals(True)
        try:
            item = self.pass_list.takeItem(old)
            self.pass_list.insertItem(row, item)
            self.pass_list.setCurrentItem(item)
        finally:
            self.pass_list.blockSignals(False)
        self._on_current_changed(item)

    # --- what applies to the open model --------------------------------------------------
    def set_model_format(self, fmt: str | None) -> None:
        """The open model's format: passes that cannot run on it (nor on a format it can be
        converted to) are greyed and unchecked, with the reason; they come back checked when a
        model they apply to is opened."""
        self._format = fmt
        self._changed()  # refresh, summary (its conversions depend on the format), save

    def model_format(self) -> str | None:
        return self._format

    def applicability(self, name: str) -> Any:
        return self._applicability.get(name)

    # --- state -----------------------------------------------------------------------------
    def checked_passes(self) -> list[str]:
        """The passes that will run, in the order shown."""
        return [n for n in self.order() if self.boxes[n].checked]

    def set_checked(self, name: str, checked: bool = True) -> None:
        self.ensure_loaded()
        self.boxes[name].item.setCheckState(Qt.CheckState.Checked if checked
                                            else Qt.CheckState.Unchecked)

    def set_option(self, pass_name: str, option: str, value: Any) -> None:
        for e in self.boxes[pass_name].editors:
            if e.name == option:
                e.set_value(value)

    def order_problems(self) -> list[str]:
        """What is wrong with the checked passes in the order shown ([] when they may run)."""
        return [str(p) for p in self._problems]

    def target_format(self) -> str | None:
        return self.target.currentData()

    def set_target_format(self, fmt: str | None) -> None:
        i = self.target.findData(fmt)
        if i >= 0:
            self.target.setCurrentIndex(i)

    def calibration(self) -> str | None:
        kind = self.calib.currentData()
        if kind in ("file", "folder"):
            return self.calib_path.text().strip() or None
        return kind

    def set_calibration(self, value: str) -> None:
        if value in ("sample", "random"):
            self.calib.setCurrentIndex(self.calib.findData(value))
        else:
            self.calib.setCurrentIndex(self.calib.findData("file"))
            self.calib_path.setText(value)

    def eval_data(self) -> str | None:
        kind = self.eval.currentData()
        if kind == "file":
            return self.eval_path.text().strip() or None
        return kind

    def set_eval(self, value: str | None) -> None:
        if value in (None, "sample"):
            self.eval.setCurrentIndex(self.eval.findData(value))
        else:
            self.eval.setCurrentIndex(self.eval.findData("file"))
            self.eval_path.setText(value)

    def steps(self) -> list[dict[str, Any]]:
        """[{"name", "options"}] for the checked passes in the order shown, validated with the
        registry's own make_options and the ordering rules, so a bad value or an order that
        cannot run is reported here, before a worker starts."""
        self.ensure_loaded()
        from converters.passes import make_options

        self._refresh()
        if self._problems:
            raise ValueError("the checked passes cannot run in this order: "
                             + "; ".join(self.order_problems()))

        out = []
        problems = []
        for name in self.checked_passes():
            box = self.boxes[name]
            values = box.values()
            try:
                make_options(box.cls, values)
                box.error.hide()
            except Exception as e:
                box.error.setText(f"⚠ {e}")
                box.error.show()
                problems.append(str(e))
            out.append({"name": name, "options": values})
        if problems:
            raise ValueError("; ".join(problems))
        return out

    def needs_calibration(self) -> list[str]:
        return [n for n in self.checked_passes()
                if getattr(self.boxes[n].cls, "needs_calibration", False)]

    def describe(self) -> str:
        """One line for the converter queue: what a dropped file will go through."""
        target = self.target_format()
        passes = " → ".join(self.checked_passes()) or "no passes"
        return f"{passes}; result: {target or 'same format'}"

    # --- reactions -------------------------------------------------------------------------
    def _on_calib_changed(self, *_: Any) -> None:
        kind = self.calib.currentData()
        self.calib_path.setVisible(kind in ("file", "folder"))
        self.calib_browse.setVisible(kind in ("file", "folder"))
        self.random_warning.setVisible(kind == "random")
        self._changed()

    def _on_eval_changed(self, *_: Any) -> None:
        self.eval_path.setVisible(self.eval.currentData() == "file")
        self._changed()

    def _browse_calib(self) -> None:
        if self.calib.currentData() == "folder":
            path = QFileDialog.getExistingDirectory(self, "Folder of calibration images")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Calibration inputs", "",
                                                  "NumPy archives (*.npz)")
        if path:
            self.calib_path.setText(path)
            self._changed()

    def _changed(self, *_: Any) -> None:
        self._refresh()
        self._update_summary()
        self.save()
        self.sig_selection_changed.emit()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        name = item.data(NAME_ROLE)
        if name in self._suspended and item.checkState() == Qt.CheckState.Unchecked:
            self._suspended.discard(name)
        self._changed()

    def _on_current_changed(self, item: QListWidgetItem | None, *_: Any) -> None:
        box = self.boxes.get(item.data(NAME_ROLE)) if item is not None else None
        if box is None:
            return
        self.stack.setCurrentWidget(box.body)
        self.options_title.setText(f"Options of {box.name}")
        self.up_button.setEnabled(self.pass_list.row(item) > 0)
        self.down_button.setEnabled(self.pass_list.row(item) < self.pass_list.count() - 1)

    def _refresh(self) -> None:
        """Say, before Apply, which passes apply to the open model (greyed with the reason when
        not) and whether the checked ones may run in the order shown (Apply disabled, the rule
        and a valid order said, when not)."""
        if not self.loaded:
            return
        from converters.passes.order import applicability, check_pipeline, format_name

        self._applicability = applicability(self._format)
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        off: list[str] = []
        off_by_format: dict[str, list[str]] = {}  # "PyTorch" -> [distill, prune-channels]
        self.pass_list.blockSignals(True)
        try:
            for name, box in self.boxes.items():
                a = self._applicability[name]
                item = box.item
                reason = a.reason[:1].upper() + a.reason[1:] + "."
                if a.ok:
                    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                    if name in self._suspended:
                        self._suspended.discard(name)
                        item.setCheckState(Qt.CheckState.Checked)
                    item.setData(Qt.ItemDataRole.ForegroundRole, None)
                    item.setText(name + (f"  (via {format_name(a.via[-1])})" if a.via else ""))
                    box.applies.setText(reason if self._format else "")
                else:
                    if box.checked:
                        self._suspended.add(name)
                        item.setCheckState(Qt.CheckState.Unchecked)
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsUserCheckable)
                    item.setForeground(grey)
                    item.setText(f"{name}  (not for {format_name(self._format)})")
                    box.applies.setText(f"⚠ Not for this model: {a.reason}.")
                    off.append(f"{name}: {a.reason}")
                    runs_on = " or ".join(format_name(f) for f in sorted(box.cls.accepts))
                    off_by_format.setdefault(runs_on, []).append(name)
                item.setToolTip(f"{box.cls.description or name}\n{reason}")
        finally:
            self.pass_list.blockSignals(False)
        # short under the list (the dock is narrow); each pass's reason in the tooltips
        self.applies_note.setText(
            f"Not for this {format_name(self._format)} model (no conversion to their format): "
            + "; ".join(f"{', '.join(names)} ({fmt} only)"
                        for fmt, names in off_by_format.items()) if off else "")
        self.applies_note.setToolTip("\n".join(off))
        self.applies_note.setVisible(bool(off))
        checked = self.checked_passes()
        try:
            self._problems = check_pipeline(self._format, checked,
                                            [self.boxes[n].values() for n in checked],
                                            to=self.target_format())
        except Exception as e:  # an unknown pass: say it rather than fail later
            self._problems = [str(e)]
        self.pass_list.blockSignals(True)  # itemChanged would come back here
        try:
            for p in self._problems:
                index = getattr(p, "index", None)  # a str (unknown pass) has a method so named
                if isinstance(index, int) and 0 <= index < len(checked):
                    item = self.boxes[checked[index]].item
                    if not item.text().startswith("⚠"):
                        item.setText("⚠ " + item.text())
                    item.setToolTip(item.toolTip() + f"\n⚠ {p}")
        finally:
            self.pass_list.blockSignals(False)
        # one line per offending pass, short; the rules' reasons in the tooltip
        lines: dict[Any, str] = {}
        for p in self._problems:
            lines.setdefault(getattr(p, "index", str(p)), getattr(p, "short", "") or str(p))
        shown = list(lines.values())
        text = "\n".join(f"⚠ {line}" for line in shown[:2])
        if len(shown) > 2:
            text += f"\n(and {len(shown) - 2} more: see the tooltip)"
        self.order_problem.setText(f"Cannot run in this order:\n{text}" if text else "")
        self.order_problem.setToolTip("\n\n".join(dict.fromkeys(self.order_problems())))
        self.order_problem.setVisible(bool(text))
        self.apply_button.setEnabled(not self._problems)
        self.apply_button.setToolTip(
            "Fix the order first (see above the button)" if self._problems
            else "Run the checked passes, top to bottom, in a worker: a new variant row")

    def _update_summary(self) -> None:
        if not hasattr(self, "summary"):
            return
        needs = self.needs_calibration()
        self.calib_note.setText(f"needed by {', '.join(needs)}" if needs else
                                "no checked pass needs it (used for verification only)")
        self.summary.setText(f"Pipeline: {self.planned()}")

    def planned(self) -> str:
        """The steps Apply will run on the open model, format conversions included (e.g.
        "prune-channels → distill → [to ONNX] → int8-dynamic"); describe() when the order
        cannot run or no model is open."""
        names = self.checked_passes()
        if not (self.loaded and self._format and names) or self._problems:
            return self.describe()
        try:
            from app.pipeline import ConvertSpec, plan
            from converters.passes.order import format_name

            spec = ConvertSpec.from_dict({
                "model": "model", "output": "out", "to": self.target_format(),
                "passes": [{"name": n, "options": self.boxes[n].values()} for n in names]})
            steps = [s.name if s.kind == "pass" else f"[to {format_name(s.target)}]"
                     for s in plan(self._format, spec)]
        except Exception as e:  # a bad option value: steps() says which, on Apply
            log.debug("no plan for the summary: %s", e)
            return self.describe()
        return " → ".join(steps)

    def save(self) -> None:
        if self._restoring or not self.loaded:
            return
        state = {"checked": [n for n in self.order()
                             if self.boxes[n].checked or n in self._suspended],
                 "order": self.order(), "target": self.target_format(),
                 "calib": self.calib.currentData(), "calib_path": self.calib_path.text(),
                 "eval": self.eval.currentData(), "eval_path": self.eval_path.text(),
                 "options": {n: b.values() for n, b in self.boxes.items()}}
        settings.set_json(SETTINGS_KEY, state)

    def _saved(self) -> dict[str, Any]:
        state = settings.get_json(SETTINGS_KEY, {})
        return state if isinstance(state, dict) else {}

    def _restore_passes(self) -> None:
        state = self._saved()
        self._restoring = True  # no saving half-restored state
        try:
            for name, values in (state.get("options") or {}).items():
                if name in self.boxes and isinstance(values, dict):
                    for k, v in values.items():
                        self.set_option(name, k, v)
            for name in state.get("checked") or []:
                if name in self.boxes:
                    self.boxes[name].item.setCheckState(Qt.CheckState.Checked)
        finally:
            self._restoring = False

    def _restore_common(self) -> None:
        state = self._saved()
        self._restoring = True
        try:
            self.set_target_format(state.get("target"))
            self.calib_path.setText(str(state.get("calib_path") or ""))
            i = self.calib.findData(state.get("calib"))
            if i >= 0:
                self.calib.setCurrentIndex(i)
            self.eval_path.setText(str(state.get("eval_path") or ""))
            i = self.eval.findData(state.get("eval"))
            if i >= 0:
                self.eval.setCurrentIndex(i)
        finally:
            self._restoring = False
