"""Where and how to run: backend, device, threads, run length, hints, layers, budgets.

Backends and devices come from a "devices" worker job (the GUI process never imports a
runtime); an absent device stays in the list, disabled, with the reason as its text and tooltip.
"""
from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
    QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from app.gui import settings
from app.gui.panels.inputs_table import InputsTable
from app.gui.panels.target_picker import TargetPicker

log = logging.getLogger(__name__)

DEFAULT_BACKENDS = [{"backend": "onnxruntime", "available": True, "version": "",
                     "formats": ["onnx"],
                     "devices": [{"name": "CPU", "description": "", "available": True,
                                  "reason": ""}]}]
SETTINGS_KEY = "backend_panel"


class BackendPanel(QWidget):
    sig_run_requested = Signal()
    sig_stop_requested = Signal()
    sig_backend_changed = Signal(str)  # the backend now chosen (by the user or by a format)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.backends: list[dict[str, Any]] = DEFAULT_BACKENDS
        self._preferred: tuple[str | None, str | None] = (None, None)  # until devices arrive
        self.model_format: str | None = None
        outer = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        outer.addLayout(form)

        self.target_picker = TargetPicker()  # this computer or a remote target (SSH)
        form.addRow("Run on", self.target_picker)
        self.backend_combo = QComboBox()
        self.backend_combo.setModel(QStandardItemModel(self))
        self.device_combo = QComboBox()
        self.device_combo.setModel(QStandardItemModel(self))
        form.addRow("Backend", self.backend_combo)
        form.addRow("Device", self.device_combo)
        self.devices_note = QLabel("looking for devices…")
        self.devices_note.setWordWrap(True)
        self.devices_note.setEnabled(False)  # secondary text, palette-aware
        form.addRow("", self.devices_note)

        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("runtime default")
        form.addRow("Threads", self.threads)

        length = QHBoxLayout()
        self.length_mode = QComboBox()
        self.length_mode.addItems(["iterations", "seconds"])
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 10_000_000)
        self.iterations.setValue(1000)
        self.iterations.setGroupSeparatorShown(True)
        self.duration = QDoubleSpinBox()
        self.duration.setRange(0.1, 24 * 3600)
        self.duration.setValue(10.0)
        self.duration.setSuffix(" s")
        length.addWidget(self.iterations, 1)
        length.addWidget(self.duration, 1)
        length.addWidget(self.length_mode)
        form.addRow("Run for", length)
        self.warmup = QSpinBox()
        self.warmup.setRange(0, 100_000)
        self.warmup.setValue(10)
        form.addRow("Warm-up", self.warmup)

        self.hint = QComboBox()
        self.hint.addItems(["LATENCY", "THROUGHPUT"])
        self.hint.setToolTip("OpenVINO performance hint")
        form.addRow("Hint", self.hint)
        self.precision = QComboBox()
        self.precision.addItems(["device default", "f32", "f16", "bf16"])
        self.precision.setToolTip("OpenVINO inference precision (the default is recorded in "
                                  "the report: some CPUs pick bf16)")
        form.addRow("Precision", self.precision)
        self.graph_opt = QComboBox()
        self.graph_opt.addItems(["all", "extended", "basic", "disable"])
        self.graph_opt.setToolTip("ONNX Runtime graph optimisation level")
        form.addRow("Graph opt.", self.graph_opt)
        self.layers = QCheckBox("per-layer times (a separate, slower run)")
        form.addRow("", self.layers)
        self.budgets = QLineEdit()
        self.budgets.setPlaceholderText("e.g. p99=20ms, rss=500MB, power=15W")
        self.budgets.setToolTip("Budgets checked live and at the end: p50/p90/p95/p99/p999/"
                                "mean/max/first in ms, rss in MB, power in W")
        form.addRow("Budgets", self.budgets)
        self.budget_error = QLabel("")
        self.budget_error.setWordWrap(True)
        self.budget_error.hide()
        form.addRow("", self.budget_error)
        self.format_note = QLabel("")
        self.format_note.setWordWrap(True)
        self.format_note.hide()
        outer.addWidget(self.format_note)
        inputs_label = QLabel("Inputs")
        inputs_label.setToolTip("What the model is measured on; edit a size to change it")
        outer.addWidget(inputs_label)
        self.inputs_table = InputsTable()
        outer.addWidget(self.inputs_table)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Run profile")
        self.run_button.setToolTip("Profile the current model (Ctrl+R)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.stop_button)
        outer.addLayout(buttons)
        outer.addStretch(1)

        self.run_button.clicked.connect(self.sig_run_requested)
        self.stop_button.clicked.connect(self.sig_stop_requested)
        self.backend_combo.currentIndexChanged.connect(self._on_backend_changed)
        self.length_mode.currentIndexChanged.connect(self._on_length_mode)
        self.budgets.textChanged.connect(self._check_budgets)
        self._fill_backends()
        self.restore()
        self._on_length_mode()
        for w in (self.backend_combo, self.device_combo, self.length_mode, self.hint,
                  self.precision, self.graph_opt):
            w.currentIndexChanged.connect(self.save)
        for w in (self.threads, self.iterations, self.warmup):
            w.valueChanged.connect(self.save)
        self.duration.valueChanged.connect(self.save)
        self.layers.toggled.connect(self.save)
        self.budgets.editingFinished.connect(self.save)

    # --- devices ---------------------------------------------------------------------------
    def set_devices(self, backends: list[dict[str, Any]]) -> None:
        """Result of a "devices" job: real backends get an entry, helpers (nvml) a note."""
        runnable = [b for b in backends if b.get("formats")]
        notes = [f"{b['backend']}: {b['version']}" for b in backends if not b.get("formats")]
        if runnable:
            self.backends = runnable
            self._fill_backends(*self._preferred)
            self._choose_for_format()  # a model opened before the list came
        missing = [f"{b['backend']} not available: {b['version']}" for b in runnable
                   if not b.get("available")]
        self.devices_note.setText("\n".join(missing + notes) or "all backends available")
        self.devices_note.setToolTip(self.devices_note.text())

    def devices_failed(self, message: str) -> None:
        self.devices_note.setText(f"could not list devices: {message}")

    def _fill_backends(self, want_backend: str | None = None, want_device: str | None = None
                       ) -> None:
        model: QStandardItemModel = self.backend_combo.model()  # type: ignore[assignment]
        self.backend_combo.blockSignals(True)
        model.clear()
        select = 0
        for i, b in enumerate(self.backends):
            item = QStandardItem(b["backend"] if b.get("available") else
                                 f"{b['backend']} (not available)")
            item.setData(b["backend"], Qt.ItemDataRole.UserRole)
            if not b.get("available"):
                item.setEnabled(False)
                item.setToolTip(str(b.get("version", "")))
            else:
                item.setToolTip(f"{b['backend']} {b.get('version', '')} — runs "
                                f"{', '.join(b.get('formats', []))}")
            model.appendRow(item)
            if b["backend"] == want_backend and b.get("available"):
                select = i
        self.backend_combo.setCurrentIndex(select)
        self.backend_combo.blockSignals(False)
        self._on_backend_changed(want_device=want_device)

    def _on_backend_changed(self, *_: Any, want_device: str | None = None) -> None:
        b = self._backend_entry()
        model: QStandardItemModel = self.device_combo.model()  # type: ignore[assignment]
        want_device = want_device or self.device_combo.currentData()
        self.device_combo.blockSignals(True)
        model.clear()
        select = -1
        for d in (b or {}).get("devices", []):
            label = d["name"] + (f" — {d['description']}" if d.get("description") else "")
            if not d.get("available", True):
                label = f"{d['name']} (unavailable: {d.get('reason', '')})"
            item = QStandardItem(label)
            item.setData(d["name"], Qt.ItemDataRole.UserRole)
            item.setToolTip(d.get("reason") or d.get("description") or d["name"])
            item.setEnabled(bool(d.get("available", True)))
            model.appendRow(item)
            if d.get("available", True) and (select < 0 or d["name"] == want_device):
                select = model.rowCount() - 1
        self.device_combo.setCurrentIndex(max(select, 0))
        self.device_combo.blockSignals(False)
        name = (b or {}).get("backend", "")
        self.hint.setEnabled(name == "openvino")
        self.precision.setEnabled(name == "openvino")
        self.graph_opt.setEnabled(name == "onnxruntime")
        self._check_format()
        self.sig_backend_changed.emit(name)

    def _backend_entry(self) -> dict[str, Any] | None:
        name = self.backend_combo.currentData()
        return next((b for b in self.backends if b["backend"] == name), None)

    # --- model format ----------------------------------------------------------------------
    def set_model_format(self, fmt: str | None) -> None:
        """A model of `fmt` is open: a backend that cannot run it (or the previous model's
        format's default) gives way to the format's default backend (TorchScript and .pt2 run
        on torch, OpenVINO IR on openvino); a backend the user picked that runs it is kept."""
        previous, self.model_format = self.model_format, fmt
        self._choose_for_format(previous)

    def _choose_for_format(self, previous: str | None = None) -> None:
        from profilers.compare import DEFAULT_BACKEND

        fmt = self.model_format
        want = DEFAULT_BACKEND.get(fmt or "")
        b = self._backend_entry()
        current = (b or {}).get("backend")
        runs = bool(b and fmt in (b.get("formats") or ()))
        if want and current != want and (not runs or (
                previous is not None and previous != fmt
                and current == DEFAULT_BACKEND.get(previous))):
            self._preferred = (want, self._preferred[1])  # also once the devices arrive
            i = self.backend_combo.findData(want)
            if i >= 0 and self.backend_combo.model().item(i).isEnabled():
                self.backend_combo.setCurrentIndex(i)  # _on_backend_changed checks the format
                return
        self._check_format()

    def can_run(self, formats: list[str] | set[str]) -> tuple[bool, str]:
        """Whether the chosen backend runs every one of `formats`, and if not, why."""
        b = self._backend_entry()
        if b is None:
            return False, "no backend is chosen (Backend panel)"
        runs = set(b.get("formats") or ())
        if not runs:
            return True, ""
        bad = sorted(set(formats) - runs)
        if bad:
            able = [x["backend"] for x in self.backends if x.get("available")
                    and set(formats) <= set(x.get("formats") or ())]
            hint = (f"choose {' or '.join(able)} in the Backend panel" if able else
                    "no backend here runs them all: convert the variants to one format")
            return False, (f"{b['backend']} cannot run {', '.join(bad)} variants "
                           f"(it runs {', '.join(sorted(runs))}): {hint}")
        return True, ""

    def _check_format(self) -> None:
        b = self._backend_entry()
        fmt = self.model_format
        if b and fmt and b.get("formats") and fmt not in b["formats"]:
            self.format_note.setText(f"{b['backend']} runs {', '.join(b['formats'])} models, "
                                     f"not {fmt}: convert the model (Passes ▸ target format) "
                                     "or pick another backend")
            self.format_note.show()
        else:
            self.format_note.hide()

    # --- values ----------------------------------------------------------------------------
    def _on_length_mode(self, *_: Any) -> None:
        by_time = self.length_mode.currentText() == "seconds"
        self.iterations.setVisible(not by_time)
        self.duration.setVisible(by_time)

    def budget_texts(self) -> list[str]:
        return [t.strip() for t in self.budgets.text().replace(";", ",").split(",") if t.strip()]

    def _check_budgets(self) -> bool:
        from profilers.budgets import parse_budget

        try:
            for t in self.budget_texts():
                parse_budget(t)
        except Exception as e:
            self.budget_error.setText(f"⚠ {e}")
            self.budget_error.show()
            return False
        self.budget_error.hide()
        return True

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def values(self) -> dict[str, Any]:
        return {"backend": self.backend_combo.currentData() or "onnxruntime",
                "device": self.device_combo.currentData() or "CPU",
                "threads": self.threads.value(), "length_mode": self.length_mode.currentText(),
                "iterations": self.iterations.value(), "duration_s": self.duration.value(),
                "warmup": self.warmup.value(), "hint": self.hint.currentText(),
                "precision": self.precision.currentText(),
                "graph_opt": self.graph_opt.currentText(), "layers": self.layers.isChecked(),
                "budgets": self.budgets.text()}

    def set_values(self, v: dict[str, Any]) -> None:
        """Restore saved choices; unknown or stale values are ignored, never fatal."""
        def pick(combo: QComboBox, text: Any) -> None:
            i = combo.findData(text) if combo.findData(text) >= 0 else combo.findText(str(text))
            if i >= 0:
                combo.setCurrentIndex(i)

        if "backend" in v:
            pick(self.backend_combo, v["backend"])
            self._on_backend_changed(want_device=v.get("device"))
        for combo, key in ((self.length_mode, "length_mode"), (self.hint, "hint"),
                           (self.precision, "precision"), (self.graph_opt, "graph_opt")):
            if key in v:
                pick(combo, v[key])
        for spin, key in ((self.threads, "threads"), (self.iterations, "iterations"),
                          (self.warmup, "warmup")):
            if isinstance(v.get(key), int):
                spin.setValue(v[key])
        if isinstance(v.get("duration_s"), (int, float)):
            self.duration.setValue(float(v["duration_s"]))
        if isinstance(v.get("layers"), bool):
            self.layers.setChecked(v["layers"])
        if isinstance(v.get("budgets"), str):
            self.budgets.setText(v["budgets"])

    def save(self) -> None:
        v = self.values()
        self._preferred = (v["backend"], v["device"])
        settings.set_json(SETTINGS_KEY, v)

    def restore(self) -> None:
        saved = settings.get_json(SETTINGS_KEY, {})
        if isinstance(saved, dict):
            self.set_values(saved)
            self._preferred = (saved.get("backend"), saved.get("device"))

    def run_config(self, model: str, **overrides: Any) -> dict[str, Any]:
        """RunConfig.to_dict() for the worker; raises ModelDeckError/ValueError on bad input
        before any process starts."""
        from profilers.backends import BackendOptions
        from profilers.runner import RunConfig

        v = self.values()
        if not self._check_budgets():
            raise ValueError(self.budget_error.text().lstrip("⚠ "))
        if not self.inputs_table.valid():
            raise ValueError(self.inputs_table.invalid_message())
        options = BackendOptions(
            threads=v["threads"] or None, graph_optimization=v["graph_opt"],
            performance_hint=v["hint"],
            precision=None if v["precision"] == "device default" else v["precision"])
        by_time = v["length_mode"] == "seconds"
        kw: dict[str, Any] = dict(
            model=model, backend=v["backend"], device=v["device"], options=options,
            iterations=None if by_time else v["iterations"],
            duration_s=v["duration_s"] if by_time else None, warmup=v["warmup"],
            layers=v["layers"], budgets=tuple(self.budget_texts()),
            shapes=self.inputs_table.user_shapes())
        kw.update(overrides)
        return RunConfig(**kw).to_dict()
