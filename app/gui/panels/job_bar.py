"""Status text + progress bar + cancel button for one running job (every long job has one).

Progress arrives ~10 times a second; the bar shows it at most 4 times a second (a label or a
progress bar that changes re-lays out and repaints the status bar: cheap once, not 10 Hz)."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QToolButton, QWidget

from app.gui.jobs import WorkerJob


class JobBar(QWidget):
    """Follows the WorkerJob it is bound to; idle it shows the last status line."""

    def __init__(self, parent: QWidget | None = None, compact: bool = False):
        super().__init__(parent)
        self.job: WorkerJob | None = None
        self.title = ""
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.status = QLabel("ready")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(not compact)
        self.progress.setMaximumWidth(120 if compact else 220)
        self.progress.setMaximumHeight(18)
        self.progress.hide()
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop the job (the worker is killed if it does not stop "
                                      "within a few seconds)")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        layout.addWidget(self.status, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_button)
        self._pending_text: str | None = None
        self._pending_value: int | None = None
        self._throttle = QTimer(self, singleShot=True, interval=250)
        self._throttle.timeout.connect(self._flush)

    def _later(self, text: str | None = None, value: int | None = None) -> None:
        if text is not None:
            self._pending_text = text
        if value is not None:
            self._pending_value = value
        if not self._throttle.isActive():
            self._throttle.start()

    def _flush(self) -> None:
        if self._pending_value is not None and self.job is not None:
            self.progress.setRange(0, 1000)
            self.progress.setValue(self._pending_value)
        if self._pending_text is not None and self.job is not None:
            self.status.setText(self._pending_text)
        self._pending_text = self._pending_value = None

    def bind(self, job: WorkerJob, title: str) -> None:
        self.job, self.title = job, title
        self.status.setText(f"{title}: starting…")
        self.progress.setRange(0, 0)  # busy until the first progress event
        self.progress.show()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        job.sig_event.connect(self._on_event)
        job.sig_finished.connect(self._on_finished)

    def cancel(self) -> None:
        if self.job is not None and not self.job.is_done():
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText(f"{self.title}: cancelling…")

    def _on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "stage":
            msg = event.get("message") or ""
            self.status.setText(f"{self.title}: {event.get('stage', '')}"
                                + (f" — {msg}" if msg else ""))
        elif kind == "progress":
            text = None
            if event.get("message"):
                stage = self.job.stage if self.job else ""
                text = f"{self.title}: {stage} — {event['message']}"
            self._later(text, int(1000 * float(event.get("frac") or 0.0)))

    def _on_finished(self, outcome) -> None:
        self._throttle.stop()
        self._pending_text = self._pending_value = None
        self.progress.hide()
        self.cancel_button.hide()
        if outcome.status == "ok":
            self.status.setText(f"{self.title}: done")
        elif outcome.status == "cancelled":
            self.status.setText(f"{self.title}: cancelled")
        else:
            self.status.setText(f"{self.title}: failed — {outcome.error}")
        self.job = None

    def set_text(self, text: str) -> None:
        self.status.setText(text)
