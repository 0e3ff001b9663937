"""Where jobs run: This computer or a configured remote target (the backend dock's first row).

Jobs made through `job()` run on the chosen target: for a remote one the worker is a relay
process (app.targets.relay) that speaks the same protocol, so devices, live charts and cancel
work as for a local run. The picker shows the link's state: connecting, connected, lost. An
unknown host key is shown with its fingerprint and pinned only when the user says yes.
No SSH code runs in this process: the targets file is plain JSON.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox, QHBoxLayout, QLabel, QMessageBox, QToolButton, QVBoxLayout, QWidget,
)

from app.gui import settings
from app.gui.jobs import WorkerJob
from app.targets.config import TargetError, TargetStore

log = logging.getLogger(__name__)

SETTINGS_KEY = "target_picker/target"
THIS_COMPUTER = "This computer"


class TargetPicker(QWidget):
    """sig_target_changed(str | None): the chosen target's name (None: this computer)."""

    sig_target_changed = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._accept_new_once = False
        self._box: QMessageBox | None = None
        self.targets: dict[str, Any] = {}
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.combo = QComboBox()
        self.combo.setToolTip("Where jobs run: this computer, or a remote machine over SSH")
        self.reload_button = QToolButton()
        self.reload_button.setText("↻")
        self.reload_button.setToolTip("Read the list of targets again")
        row.addWidget(self.combo, 1)
        row.addWidget(self.reload_button)
        outer.addLayout(row)
        self.state = QLabel("")
        self.state.setWordWrap(True)
        self.state.hide()
        outer.addWidget(self.state)
        self.reload()
        self.combo.currentIndexChanged.connect(self._on_changed)
        self.reload_button.clicked.connect(self.reload)

    # --- the list ----------------------------------------------------------------------------
    def reload(self) -> None:
        keep = self.target() if self.combo.count() else settings.get_json(SETTINGS_KEY)
        try:
            self.targets = TargetStore().load()
            problem = ""
        except TargetError as e:
            self.targets, problem = {}, str(e)
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(THIS_COMPUTER, None)
        for name, t in self.targets.items():
            self.combo.addItem(name, name)
            self.combo.setItemData(self.combo.count() - 1, t.url, 3)  # ToolTipRole
        index = self.combo.findData(keep) if keep else 0
        self.combo.setCurrentIndex(max(0, index))
        self.combo.blockSignals(False)
        if problem:
            self.set_state(problem, ok=False)
        elif keep and index < 0:
            self.set_state(f"target {keep} is no longer configured: running on this computer",
                           ok=False)
        else:
            self.set_state("")
        if keep != self.target():
            self._on_changed()

    def target(self) -> str | None:
        return self.combo.currentData()

    def set_target(self, name: str | None) -> None:
        index = self.combo.findData(name) if name else 0
        if index < 0:
            raise ValueError(f"no target named {name!r}")
        self.combo.setCurrentIndex(index)

    def _on_changed(self, *_: Any) -> None:
        name = self.target()
        settings.set_json(SETTINGS_KEY, name)
        t = self.targets.get(name) if name else None
        self.set_state(f"jobs run on {name} ({t.url})" if t else "")
        self.sig_target_changed.emit(name)

    # --- jobs ----------------------------------------------------------------------------------
    def command(self) -> list[str] | None:
        """The worker command for the chosen target (None: a local worker)."""
        name = self.target()
        if not name:
            return None
        from app.targets.relay import relay_command

        accept, self._accept_new_once = self._accept_new_once, False
        return relay_command(name, accept_new_host_key=accept)

    def job(self, spec: dict[str, Any], parent=None, **kw: Any) -> WorkerJob:
        """A WorkerJob (not started) on the chosen target, its link state shown here."""
        name = self.target()
        job = WorkerJob(spec, parent, command=self.command(), **kw)
        if name:  # the memory cap is held on the target (in the spec): not on the relay here
            job.limits = dataclasses.replace(job.limits, memory_mb=None)
            job.sig_event.connect(lambda e, n=name: self._on_event(n, e))
            job.sig_finished.connect(lambda o, n=name: self._on_finished(n, o))
        return job

    def _on_event(self, name: str, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "stage" and event.get("stage") == "connect":
            self.set_state(f"connecting to {name}…")
        elif kind == "stage" and event.get("stage") == "transfer":
            self.set_state(f"connected to {name}: {event.get('message', '')}")
        elif kind == "error" and event.get("host_key") == "unknown" and name == self.target():
            self._ask_pin(name, str(event.get("fingerprint", "")))
        elif kind in ("stage", "samples", "progress") and not self.state.text().startswith(
                "connected"):
            self.set_state(f"connected to {name}")

    def _on_finished(self, name: str, outcome) -> None:
        if outcome.error_kind == "link":
            self.set_state(f"Link to {name} lost — {outcome.error}. What arrived before stays "
                           "on screen; run again when the machine is reachable.", ok=False)
        elif outcome.error_kind in ("target", "host_key"):
            self.set_state(outcome.error or f"{name} cannot be used", ok=False)
        elif outcome.status == "ok":
            self.set_state(f"connected to {name}")

    def _ask_pin(self, name: str, fingerprint: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Question, "Unknown host key",
                          f"ModelDeck has not connected to {name} before. Its host key is\n\n"
                          f"{fingerprint}\n\nCompare it with the key the machine's owner "
                          "gives you. Trust it and remember it (in ~/.ssh/known_hosts)?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.buttonClicked.connect(
            lambda b: box.standardButton(b) == QMessageBox.StandardButton.Yes
            and self.pin_confirmed())
        self._box = box
        box.open()

    def pin_confirmed(self) -> None:
        """The user trusts the fingerprint shown: the next job pins it, then runs."""
        self._accept_new_once = True
        self.sig_target_changed.emit(self.target())

    def set_state(self, text: str, ok: bool = True) -> None:
        self.state.setText(text)
        self.state.setVisible(bool(text))
        self.state.setStyleSheet("" if ok else "color: #c0392b;")
