"""Converter queue: drop model files here and each becomes a conversion (the passes panel's
target format and checked passes), run in workers one or two at a time, each with its own
progress bar, cancel button and result line."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QFileDialog, QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSpinBox,
    QToolButton, QVBoxLayout, QWidget,
)

from app.gui.jobs import WorkerJob
from app.gui.panels.node_details import human_bytes

log = logging.getLogger(__name__)

SpecFactory = Callable[[str], dict[str, Any]]  # model path -> worker spec (raises ValueError)


def local_files(mime) -> list[str]:
    """Local file paths in a drag's mime data (URLs from a file manager)."""
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


class QueueItem(QFrame):
    """One queued conversion and its widgets."""

    sig_details = Signal(object)

    def __init__(self, path: str, plan: str):
        super().__init__()
        self.path = path
        self.plan = plan
        self.status = "queued"  # queued | running | ok | failed | cancelled
        self.job: WorkerJob | None = None
        self.outcome = None
        self.spec: dict[str, Any] | None = None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(2)
        top = QHBoxLayout()
        self.title = QLabel(f"<b>{os.path.basename(path)}</b>  <span>{plan}</span>")
        self.title.setToolTip(path)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setMaximumHeight(16)
        self.progress.setMaximumWidth(160)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.details_button = QToolButton()
        self.details_button.setText("Details…")
        self.details_button.hide()
        top.addWidget(self.title, 1)
        top.addWidget(self.progress)
        top.addWidget(self.cancel_button)
        top.addWidget(self.details_button)
        layout.addLayout(top)
        self.result_label = QLabel("queued")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.result_label)
        self.details_button.clicked.connect(lambda: self.sig_details.emit(self))

    def set_running(self, job: WorkerJob) -> None:
        self.job, self.status = job, "running"
        self.progress.setRange(0, 0)
        self.result_label.setText("starting a worker…")

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * float(event.get("frac") or 0.0)))
            if event.get("message"):
                self.result_label.setText(str(event["message"]))
        elif kind == "stage":
            self.result_label.setText(str(event.get("message") or event.get("stage")))

    def finish(self, outcome) -> None:
        self.outcome = outcome
        self.job = None
        self.cancel_button.hide()
        self.progress.setRange(0, 1000)
        if outcome.status == "ok":
            self.status = "ok"
            self.progress.setValue(1000)
            self.result_label.setText(result_line(self.path, outcome.result or {}))
            self.result_label.setToolTip((outcome.result or {}).get("output", ""))
        elif outcome.status == "cancelled":
            self.status = "cancelled"
            self.progress.hide()
            self.result_label.setText("cancelled")
        else:
            self.fail(outcome.error or "failed")

    def fail(self, message: str) -> None:
        self.status = "failed"
        self.cancel_button.hide()
        self.progress.hide()
        self.result_label.setText(f"⚠ {message}")
        self.details_button.show()


def result_line(source: str, result: dict[str, Any]) -> str:
    """'→ out.onnx · 1.2 MiB (0.26× the source) · cosine 0.99998'."""
    steps = [s for s in result.get("steps") or [] if s.get("pass") != "source"]
    last = steps[-1] if steps else {}
    out = result.get("output", "")
    parts = [f"→ {os.path.basename(out)}"]
    size = last.get("size_bytes")
    try:
        src_size = os.path.getsize(source)
    except OSError:
        src_size = None
    if size:
        ratio = f" ({size / src_size:.2f}× the source)" if src_size else ""
        parts.append(f"{human_bytes(size)}{ratio}")
    cos = (last.get("fidelity") or {}).get("cosine")
    if cos is not None:
        parts.append(f"cosine {cos:.5f}")
    acc = (last.get("accuracy") or {}).get("accuracy")
    if acc is not None:
        parts.append(f"accuracy {100 * acc:.2f}%")
    return " · ".join(parts)


class ConverterPanel(QWidget):
    """Accepts file drops; `spec_factory` turns a path into the worker's convert spec."""

    sig_details = Signal(object)  # QueueItem whose failure to explain
    sig_queue_idle = Signal()

    def __init__(self, spec_factory: SpecFactory, plan_text: Callable[[], str],
                 parent: QWidget | None = None, max_parallel: int = 1):
        super().__init__(parent)
        self.spec_factory = spec_factory
        self.plan_text = plan_text
        self.items: list[QueueItem] = []
        self.setAcceptDrops(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.hint = QLabel("Drop model files here to convert them with the checked passes and "
                           "the target format of the Passes panel.")
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)
        self.plan_label = QLabel("")
        self.plan_label.setWordWrap(True)
        layout.addWidget(self.plan_label)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.list_widget = QWidget()
        self.list_layout = QVBoxLayout(self.list_widget)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.addStretch(1)
        self.scroll.setWidget(self.list_widget)
        layout.addWidget(self.scroll, 1)
        bottom = QHBoxLayout()
        self.add_button = QPushButton("Add files…")
        self.clear_button = QPushButton("Clear finished")
        self.parallel = QSpinBox()
        self.parallel.setRange(1, 2)
        self.parallel.setValue(max_parallel)
        self.parallel.setPrefix("at once: ")
        self.parallel.setToolTip("Conversions running at the same time (each is a worker)")
        bottom.addWidget(self.add_button)
        bottom.addWidget(self.clear_button)
        bottom.addStretch(1)
        bottom.addWidget(self.parallel)
        layout.addLayout(bottom)
        self.add_button.clicked.connect(self._browse)
        self.clear_button.clicked.connect(self.clear_finished)
        self.parallel.valueChanged.connect(lambda _: self._schedule())
        self.refresh_plan()

    def refresh_plan(self) -> None:
        self.plan_label.setText(f"Pipeline for new files: {self.plan_text()}")

    # --- drops -----------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if local_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt override)
        files = local_files(event.mimeData())
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        for path in files:
            self.enqueue(path)

    def _browse(self) -> None:
        from app.gui.file_dialogs import model_filter, remember, start_dir

        paths, _ = QFileDialog.getOpenFileNames(self, "Models to convert", start_dir("models"),
                                                model_filter())
        if paths:
            remember("models", paths[0])
        for p in paths:
            self.enqueue(p)

    # --- queue -----------------------------------------------------------------------------
    def enqueue(self, path: str) -> QueueItem:
        item = QueueItem(path, self.plan_text())
        item.cancel_button.clicked.connect(lambda: self.cancel(item))
        item.sig_details.connect(self.sig_details)
        self.items.append(item)
        self.list_layout.insertWidget(self.list_layout.count() - 1, item)
        try:
            item.spec = self.spec_factory(path)  # the plan as of the drop, not of the start
        except Exception as e:
            item.fail(str(e))
        self._schedule()
        return item

    def running(self) -> list[QueueItem]:
        return [i for i in self.items if i.status == "running"]

    def _schedule(self) -> None:
        for item in self.items:
            if len(self.running()) >= self.parallel.value():
                return
            if item.status == "queued" and item.spec is not None:
                self._start(item)
        if not self.running():
            self.sig_queue_idle.emit()

    def _start(self, item: QueueItem) -> None:
        job = WorkerJob(item.spec or {}, parent=self)
        item.set_running(job)
        job.sig_event.connect(item.on_event)
        job.sig_finished.connect(lambda outcome, item=item: self._finished(item, outcome))
        job.start()

    def _finished(self, item: QueueItem, outcome) -> None:
        job = item.job
        item.finish(outcome)
        if job is not None:
            job.deleteLater()
        self._schedule()

    def cancel(self, item: QueueItem) -> None:
        if item.status == "queued":
            item.status = "cancelled"
            item.cancel_button.hide()
            item.progress.hide()
            item.result_label.setText("cancelled before it started")
            self._schedule()
        elif item.job is not None:
            item.job.cancel()
            item.cancel_button.setEnabled(False)
            item.result_label.setText("cancelling…")

    def cancel_all(self) -> None:
        for item in list(self.items):
            if item.status in ("queued", "running"):
                self.cancel(item)

    def clear_finished(self) -> None:
        for item in [i for i in self.items if i.status in ("ok", "failed", "cancelled")]:
            self.items.remove(item)
            item.setParent(None)
            item.deleteLater()

    def pending(self) -> int:
        return sum(1 for i in self.items if i.status in ("queued", "running"))
