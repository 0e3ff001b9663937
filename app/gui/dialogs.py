"""Dialogs that never block the event loop: they are shown with open()/show() and report back
through callbacks, so a running job keeps streaming while a message is on screen (and tests
can read and close them without patching)."""
from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)


class RecentLog(logging.Handler):
    """The last lines logged in this process: what an error dialog's Details show when the
    error brought no traceback or worker log of its own."""

    def __init__(self, size: int = 200):
        super().__init__(logging.DEBUG)
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line must never break the window
            pass


_recent: RecentLog | None = None


def recent_log() -> RecentLog:
    """The process-wide handler (installed on the 'app', 'converters' and 'profilers'
    loggers once; their levels are left as they are)."""
    global _recent
    if _recent is None:
        _recent = RecentLog()
        for name in ("app", "converters", "profilers"):
            logging.getLogger(name).addHandler(_recent)  # what their levels let through
    return _recent


def error_details(message: str, details: str = "") -> str:
    """What 'Show Details…' holds: the traceback or worker log when there is one, and the
    window's recent log lines in any case (so the button is always there)."""
    parts = [details.strip()] if details.strip() else [f"{message}"]
    lines = list(recent_log().lines)[-40:]
    if lines:
        parts.append("Recent log (" + time.strftime("%H:%M:%S") + "):\n" + "\n".join(lines))
    return "\n\n".join(parts)


def error_dialog(parent: QWidget | None, title: str, message: str, details: str = "",
                 ) -> QMessageBox:
    """A readable message first; the worker's stderr tail (or traceback, or recent log)
    behind 'Show Details…'."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(title)
    box.setInformativeText(message)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    box.setDetailedText(error_details(message, details))
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.show()
    return box


def code_consent_dialog(parent: QWidget | None, path: str, reason: str,
                        on_answer: Callable[[bool], None], action: str = "load"
                        ) -> QMessageBox:
    """Ask before running code a model file carries (a pickle, a TorchScript or torch.export
    program): say plainly what that allows. Asked once per file; `action` names the job."""
    pickle = "pickle" in reason.lower()
    what = "a Python pickle" if pickle else "a PyTorch program (TorchScript or torch.export)"
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Load a Python pickle?" if pickle else "Run code from this file?")
    box.setText(f"<b>{_escape(path)}</b> contains {what}.")
    box.setInformativeText(
        "Loading or running it lets the file run <b>arbitrary code</b> on this computer, with "
        "your permissions: read your files, send data elsewhere, use your machine. It runs in "
        "a separate worker process which, where the system allows it (Linux Landlock), may "
        "write only to its own folders; the report says which protection was in force.<br><br>"
        "Only continue if the file comes from a source you trust.")
    box.setDetailedText(reason)
    trust = box.addButton(f"Trust and {action}", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def finished(_: int) -> None:
        on_answer(box.clickedButton() is trust)

    box.finished.connect(finished)
    box.open()
    return box


pickle_consent_dialog = code_consent_dialog  # the older name


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
