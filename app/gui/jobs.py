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
import time
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from app.jobs.client import (
    CANCEL_GRACE_S, STDERR_TAIL_LINES, JobOutcome, cleanup_after, collect_event, finish_outcome,
    kill_group, worker_command,
)
from app.jobs.limits import (
    default_limits, group_rss_mb, idle_message, is_progress, memory_message, timeout_message,
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
                 cancel_grace_s: float = CANCEL_GRACE_S, memory_mb: int | None = None,
                 command: list[str] | None = None):
        super().__init__(parent)
        self.command = command  # None: a local worker; a relay's for a remote target
        # The worker makes itself a session leader (QProcess cannot ask for it), so its pid is
        # its process group: ending the job kills the group, leftovers of runtimes included.
        self.limits = default_limits(spec, timeout_s=timeout_s, memory_mb=memory_mb)
        timeout_s = self.limits.timeout_s
        self.spec = {**spec, "limits": self.limits.to_dict()}
        self._pid: int | None = None
        self._last_progress = 0.0
        self._killed_for: str | None = None
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
        self._watch_timer = QTimer(self, interval=200)  # memory cap and no-progress limit
        self._watch_timer.timeout.connect(self._watch)

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
        cmd = self.command or worker_command()
        self.proc.start(cmd[0], cmd[1:])
        # Written before the process runs: QProcess buffers it until the pipe is open.
        self.proc.write((json.dumps(self.spec) + "\n").encode())
        self._pid = int(self.proc.processId()) or None
        self._last_progress = time.monotonic()
        if self._timeout_timer is not None:
            self._timeout_timer.start()
        self._watch_timer.start()
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
        """Kill the worker and everything it started."""
        if self.is_running():
            self.proc.kill()
        self._kill_group()

    def _kill_group(self) -> None:
        # Only once the worker has led its own session: never our own group.
        if self._pid is not None and self._pid != os.getpgid(0):
            try:
                if os.getpgid(self._pid) != self._pid:
                    return
            except OSError:
                pass  # gone: its group may still hold leftovers
            kill_group(self._pid)

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
        if is_progress(event):
            self._last_progress = time.monotonic()
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

    def _watch(self) -> None:
        """Memory cap on the worker's processes, and the no-progress limit."""
        if not self.is_running() or self._pid is None or self._killed_for is not None:
            return
        lim = self.limits
        if lim.memory_mb:
            rss = group_rss_mb(self._pid)
            if rss > lim.memory_mb:
                self._killed_for = "memory"
                self.outcome.error_kind = "memory"
                self.outcome.error = memory_message(lim.memory_mb, rss)
        if (self._killed_for is None and lim.idle_s is not None
                and time.monotonic() - self._last_progress > lim.idle_s):
            self._killed_for = "timeout"
            self.outcome.error_kind = "timeout"
            self.outcome.error = idle_message(lim.idle_s, self.stage)
        if self._killed_for is not None:
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
        self._kill_group()  # anything the worker forked goes with it
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        returncode = exit_code
        if crashed:  # Qt reports the signal number as the exit code: make it -N like Popen
            returncode = -int(exit_code) if exit_code else None
        self._finish(returncode)

    def _finish(self, returncode: int | None) -> None:
        if self._done:
            return
        self._done = True
        self._kill_timer.stop()
        self._watch_timer.stop()
        if self._timeout_timer is not None:
            self._timeout_timer.stop()
        out = self.outcome
        out.returncode = returncode
        out.stderr_tail = self.stderr_tail()
        if self._timed_out and out.status != "ok":
            out.error_kind = "timeout"
            out.error = timeout_message(self.limits.timeout_s)
        elif self._killed_for is not None and out.status != "ok":
            out.status = "failed"
            out.error_kind = self._killed_for
        if returncode is None and out.status == "failed" and out.error is None:
            out.error_kind = "crashed"
            out.error = "the worker process ended without a result (it crashed or was killed)"
        finish_outcome(out, returncode, self._cancelled, self.kind)
        cleanup_after(self.spec, out)
        log.debug("%s job finished: %s %s", self.kind, out.status, out.error or "")
        self.sig_finished.emit(out)
