"""Dialogs that never block the event loop: they are shown with open()/show() and report back
through callbacks, so a running job keeps streaming while a message is on screen (and tests
can read and close them without patching)."""
from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)


def error_dialog(parent: QWidget | None, title: str, message: str, details: str = "",
                 ) -> QMessageBox:
    """A readable message first; the worker's stderr tail behind 'Show Details…'."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(title)
    box.setInformativeText(message)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if details.strip():
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.show()
    return box


def pickle_consent_dialog(parent: QWidget | None, path: str, reason: str,
                          on_answer: Callable[[bool], None]) -> QMessageBox:
    """Ask before loading a pickle: say plainly what loading it would allow."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Load a Python pickle?")
    box.setText(f"<b>{_escape(path)}</b> contains a Python pickle.")
    box.setInformativeText(
        "Loading it would allow the file to run <b>arbitrary code</b> on this computer, with "
        "your permissions: read or delete your files, install software, send data elsewhere. "
        "It is loaded in a separate worker process, but that process is not a sandbox.<br><br>"
        "Only continue if the file comes from a source you trust.")
    box.setDetailedText(reason)
    trust = box.addButton("Trust and load", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def finished(_: int) -> None:
        on_answer(box.clickedButton() is trust)

    box.finished.connect(finished)
    box.open()
    return box


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
