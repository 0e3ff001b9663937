"""One worker job driven from the Qt event loop: QProcess, JSON Lines in, signals out.

The same protocol and failure rules as the Qt-free app.jobs.client (the CLI's), so both front
ends agree on what a crashed, killed, cancelled or refused job looks like. Nothing here blocks:
stdout/stderr arrive through readyRead, the cancel grace period is a QTimer.
"""
from __future__ import annotations

import collections
import json
import logging
import os
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from app.jobs.client import (
    CANCEL_GRACE_S, STDERR_TAIL_LINES, JobOutcome, collect_event, worker_command,
)

log = logging.getLogger(__name__)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class WorkerJob(QObject):
    """A worker process running one job spec.

    sig_event(dict): every protocol event, in order (samples, stage, progress, step, ...).
    sig_finished(JobOutcome): exactly once, after the process ended (or failed to start).
    Both are declared Signal(object): Signal(dict) makes PySide convert the dict to a
    QVariantMap and back for every slot, ~0.5 ms for one batch of 400 samples.
    """

    sig_event = Signal(object)  # dict
    sig_finished = Signal(object)

    def __init__(self, spec: dict[str, Any], parent: QObject | None = None,
                 keep_samples: bool = False, timeout_s: float | None = None,
                 cancel_grace_s: float = CANCEL_GRACE_S):
        super().__init__(parent)
        self.spec = spec
        self.keep_samples = keep_samples
        self.outcome = JobOutcome(status="failed")
        self.stage = ""
        self.progress = 0.0
        self._stdout_buf = b""
        self._stderr_buf = b""
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._cancelled = False
        self._timed_out = False
        self._done = False
        self.proc = QProcess(self)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self._kill_timer = QTimer(self, singleShot=True, interval=int(cancel_grace_s * 1000))
        self._kill_timer.timeout.connect(self.kill)
        self._timeout_timer: QTimer | None = None
        if timeout_s is not None:
            self._timeout_timer = QTimer(self, singleShot=True, interval=int(timeout_s * 1000))
            self._timeout_timer.timeout.connect(self._on_timeout)

    # --- control ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return str(self.spec.get("job", ""))

    def is_running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def is_done(self) -> bool:
        return self._done

    def start(self) -> WorkerJob:
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONPATH", REPO_ROOT + os.pathsep + env.value("PYTHONPATH", ""))
        self.proc.setProcessEnvironment(env)
        cmd = worker_command()
        self.proc.start(cmd[0], cmd[1:])
        # Written before the process runs: QProcess buffers it until the pipe is open.
        self.proc.write((json.dumps(self.spec) + "\n").encode())
        if self._timeout_timer is not None:
            self._timeout_timer.start()
        log.debug("started %s job: %s", self.kind, self.spec)
        return self

    def cancel(self) -> None:
        """Ask the worker to stop between iterations / passes; kill it after the grace period."""
        if self._done or self._cancelled:
            return
        self._cancelled = True
        if self.is_running():
            self.proc.write((json.dumps({"cmd": "cancel"}) + "\n").encode())
            self._kill_timer.start()

    def kill(self) -> None:
        if self.is_running():
            self.proc.kill()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    # --- process I/O -----------------------------------------------------------------------
    def _read_stdout(self) -> None:
        self._stdout_buf += bytes(self.proc.readAllStandardOutput().data())
        *lines, self._stdout_buf = self._stdout_buf.split(b"\n")
        for raw in lines:
            self._handle_line(raw)

    def _handle_line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            event = json.loads(raw)
        except ValueError:
            self._stderr.append("stdout: " + raw.decode("utf-8", "replace").rstrip())
            return
        if not isinstance(event, dict):
            return
        self._collect(event)
        self.sig_event.emit(event)

    def _collect(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "stage":
            self.stage = str(event.get("stage", ""))
        elif kind == "progress":
            self.progress = float(event.get("frac") or 0.0)
        else:
            collect_event(self.outcome, event, self.keep_samples)

    def _read_stderr(self) -> None:
        self._stderr_buf += bytes(self.proc.readAllStandardError().data())
        *lines, self._stderr_buf = self._stderr_buf.split(b"\n")
        for raw in lines:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    # --- endings ---------------------------------------------------------------------------
    def _on_timeout(self) -> None:
        if self.is_running():
            self._timed_out = True
            self.kill()

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.outcome.error_kind = "crashed"
            self.outcome.error = (f"the worker process could not be started "
                                  f"({' '.join(worker_command())}): {self.proc.errorString()}")
            self._finish(None)

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._read_stdout()
        if self._stdout_buf:
            self._handle_line(self._stdout_buf)
            self._stdout_buf = b""
        self._read_stderr()
        if self._stderr_buf:
            self._stderr.append(self._stderr_buf.decode("utf-8", "replace").rstrip())
            self._stderr_buf = b""
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._finish(None if crashed else exit_code)

    def _finish(self, returncode: int | None) -> None:
        if self._done:
            return
        self._done = True
        self._kill_timer.stop()
        if self._timeout_timer is not None:
            self._timeout_timer.stop()
        out = self.outcome
        out.returncode = returncode
        out.stderr_tail = self.stderr_tail()
        if self._timed_out and out.status != "ok":
            out.error_kind = "timeout"
            out.error = "the worker did not finish in time: stopped"
        if out.status == "failed" and out.error is None:
            out.error_kind = "crashed"
            how = ("it crashed or was killed" if returncode is None
                   else f"exit code {returncode}")
            out.error = f"the worker process ended without a result ({how})"
        if self._cancelled and out.status != "ok":
            out.status = "cancelled"
        log.debug("%s job finished: %s %s", self.kind, out.status, out.error or "")
        self.sig_finished.emit(out)
