"""Compression passes to apply: a checkbox per registered pass, its option editors
generated from the pass's Options dataclass (fields + type hints), a target format and the
calibration / evaluation data. Adding a pass to converters.passes adds it here, unchanged.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import typing
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QHBoxLayout,
    QLabel, QLineEdit, QPushButton, QScrollArea, QSpinBox, QToolButton, QVBoxLayout, QWidget,
)

from app.gui import settings

log = logging.getLogger(__name__)

SETTINGS_KEY = "passes_panel"
TARGETS = [("keep the format", None), ("ONNX", "onnx"), ("OpenVINO IR", "openvino")]
CALIB_SOURCES = [("bundled sample (digits)", "sample"), ("file (.npz of inputs)…", "file"),
                 ("folder of images…", "folder"), ("random data", "random")]
EVAL_SOURCES = [("none (fidelity only)", None), ("bundled digits test set", "sample"),
                ("file (.npz with labels)…", "file")]
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
    name: str
    cls: type
    container: QWidget
    check: QCheckBox
    body: QWidget
    editors: list[OptionEditor]
    error: QLabel

    @property
    def checked(self) -> bool:
        return self.check.isChecked()

    def values(self, changed_only: bool = True) -> dict[str, Any]:
        return {e.name: e.value() for e in self.editors if not (changed_only and e.is_default())}


# --- the panel -------------------------------------------------------------------------------

class PassesPanel(QWidget):
    sig_apply_requested = Signal()
    sig_selection_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.boxes: dict[str, PassBox] = {}
        self._restoring = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.list_widget = QWidget()
        self.list_layout = QVBoxLayout(self.list_widget)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.scroll.setWidget(self.list_widget)
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
        self.loaded = False
        loading = QLabel("loading passes…")
        self.list_layout.addWidget(loading)
        self._restore_common()
        self._on_calib_changed()
        self._on_eval_changed()

    def ensure_loaded(self) -> None:
        """Build the pass list (imports the registry and numpy): after the first paint."""
        if not self.loaded:
            self.load_passes()

    # --- registry --------------------------------------------------------------------------
    def load_passes(self) -> None:
        """Build one group per registered pass; a broken registry is shown, not fatal."""
        while self.list_layout.count():
            item = self.list_layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self.boxes.clear()
        try:
            from converters.passes import PASSES
        except Exception as e:  # the engine is importable without frameworks; say what broke
            log.warning("passes unavailable: %s", e)
            label = QLabel(f"Passes are unavailable: {type(e).__name__}: {e}")
            label.setWordWrap(True)
            retry = QPushButton("Retry")
            retry.clicked.connect(self.load_passes)
            self.list_layout.addWidget(label)
            self.list_layout.addWidget(retry)
            self.list_layout.addStretch(1)
            if hasattr(self, "apply_button"):
                self.apply_button.setEnabled(False)
            return
        for name, cls in PASSES.items():
            self.boxes[name] = self._make_box(name, cls)
            self.list_layout.addWidget(self.boxes[name].container)
        self.list_layout.addStretch(1)
        self.loaded = True
        self._restore_passes()
        self.apply_button.setEnabled(True)
        self._update_summary()

    def _make_box(self, name: str, cls: type) -> PassBox:
        """A checkbox per pass; its description and option editors show while it is checked,
        so a long registry stays a short list."""
        container = QWidget()
        container.setObjectName(f"pass_{name}")
        outer = QVBoxLayout(container)
        outer.setContentsMargins(0, 0, 0, 2)
        outer.setSpacing(0)
        check = QCheckBox(name)
        accepts = ", ".join(sorted(getattr(cls, "accepts", ()) or ()))
        calib = " Needs calibration data." if getattr(cls, "needs_calibration", False) else ""
        check.setToolTip(f"{cls.description or name}\nRuns on: {accepts}.{calib}")
        body = QFrame()
        body.setFrameShape(QFrame.Shape.StyledPanel)
        form = QFormLayout(body)
        form.setContentsMargins(8, 4, 6, 4)
        description = QLabel((cls.description or "") + (f" Runs on {accepts}." if accepts else "")
                             + calib)
        description.setWordWrap(True)
        description.setEnabled(False)  # secondary text, palette-aware
        form.addRow(description)
        editors = []
        try:
            hints = typing.get_type_hints(cls.Options)
            tips = _field_comments(cls.Options)
            for f in dataclasses.fields(cls.Options):
                editor = OptionEditor(f, hints.get(f.name, str), tips.get(f.name, ""))
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
        outer.addWidget(check)
        outer.addWidget(body)
        outer.addWidget(error)
        body.setVisible(False)
        check.toggled.connect(body.setVisible)
        check.toggled.connect(self._changed)
        return PassBox(name, cls, container, check, body, editors, error)

    # --- state -----------------------------------------------------------------------------
    def checked_passes(self) -> list[str]:
        return [name for name, box in self.boxes.items() if box.checked]

    def set_checked(self, name: str, checked: bool = True) -> None:
        self.boxes[name].check.setChecked(checked)

    def set_option(self, pass_name: str, option: str, value: Any) -> None:
        for e in self.boxes[pass_name].editors:
            if e.name == option:
                e.set_value(value)

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
        """[{"name", "options"}] for the checked passes, validated with the registry's own
        make_options so a bad value is reported here, before a worker starts."""
        self.ensure_loaded()
        from converters.passes import make_options

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
        target = self.target_format() or "same format"
        passes = ", ".join(self.checked_passes()) or "no passes"
        return f"{passes} → {target}"

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
        self._update_summary()
        self.save()
        self.sig_selection_changed.emit()

    def _update_summary(self) -> None:
        if not hasattr(self, "summary"):
            return
        needs = self.needs_calibration()
        self.calib_note.setText(f"needed by {', '.join(needs)}" if needs else
                                "no checked pass needs it (used for verification only)")
        self.summary.setText(f"Pipeline: {self.describe()}")

    def save(self) -> None:
        if self._restoring or not self.loaded:
            return
        state = {"checked": self.checked_passes(), "target": self.target_format(),
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
                    self.boxes[name].check.setChecked(True)
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
