"""Qt-free client for one worker job: start, stream events, cancel, time out, collect.

A worker that crashes, is killed or hangs past the timeout ends as a failed job carrying the
tail of its stderr; the samples received before that are kept in the outcome.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.jobs.protocol import CANCEL

STDERR_TAIL_LINES = 40
CANCEL_GRACE_S = 5.0


def worker_command() -> list[str]:
    """How to start a worker: the same interpreter, or the frozen app with --worker."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--worker"]
    return [sys.executable, "-m", "app.jobs.worker"]


@dataclass
class JobOutcome:
    status: str  # ok | failed | cancelled
    result: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None  # bad_input | internal | crashed | timeout
    returncode: int | None = None
    stderr_tail: str = ""
    samples: dict[str, list[list[float]]] = field(default_factory=dict)


def collect_event(outcome: JobOutcome, event: dict[str, Any], keep_samples: bool = True
                  ) -> None:
    """Fold one protocol event into the outcome (shared by this client and the GUI's)."""
    kind = event.get("event")
    if kind == "samples":
        if keep_samples:
            for name, points in event.get("series", {}).items():
                outcome.samples.setdefault(name, []).extend(points)
    elif kind == "result":
        outcome.status, outcome.result = "ok", event.get("result")
    elif kind == "error":
        outcome.error, outcome.error_kind = event.get("message"), event.get("kind")
    elif kind == "cancelled":
        outcome.status = "cancelled"


class JobClient:
    def __init__(self, spec: dict[str, Any], on_event: Callable[[dict], None] | None = None,
                 timeout_s: float | None = None, env: dict[str, str] | None = None):
        self.spec = spec
        self.on_event = on_event
        self.timeout_s = timeout_s
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._events: queue.Queue[dict | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._cancel_at: float | None = None

    def start(self) -> JobClient:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(worker_command(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1, env=env)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(self.spec) + "\n")
        self.proc.stdin.flush()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                self._stderr.append("stdout: " + line.rstrip())
                continue
            self._events.put(event)
        self._events.put(None)  # end of stream

    def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def cancel(self) -> None:
        """Ask the worker to stop between iterations; it is killed after a grace period."""
        if self.proc and self.proc.poll() is None and self._cancel_at is None:
            self._cancel_at = time.monotonic()
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps(CANCEL) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def wait(self) -> JobOutcome:
        assert self.proc is not None, "start() first"
        started = time.monotonic()
        outcome = JobOutcome(status="failed")
        ended = False
        while not ended:
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                event = ...
            now = time.monotonic()
            if self.timeout_s is not None and now - started > self.timeout_s:
                self.kill()
                outcome.error_kind = "timeout"
                outcome.error = f"the worker did not finish within {self.timeout_s:g} s: stopped"
            if self._cancel_at is not None and now - self._cancel_at > CANCEL_GRACE_S:
                self.kill()
            if event is ...:
                continue
            if event is None:
                ended = True
                continue
            self._collect(event, outcome)
            if self.on_event is not None:
                self.on_event(event)
        outcome.returncode = self.proc.wait()
        time.sleep(0.05)  # let the stderr reader drain
        outcome.stderr_tail = "\n".join(self._stderr)
        if outcome.status == "failed" and outcome.error is None:
            outcome.error_kind = "crashed"
            outcome.error = (f"the worker process ended without a result (exit code "
                             f"{outcome.returncode}){_signal_name(outcome.returncode)}")
        if self._cancel_at is not None and outcome.status != "ok":
            outcome.status = "cancelled"
        return outcome

    def _collect(self, event: dict[str, Any], outcome: JobOutcome) -> None:
        collect_event(outcome, event)

    def run(self) -> JobOutcome:
        return self.start().wait()


def _signal_name(returncode: int | None) -> str:
    if returncode is None or returncode >= 0:
        return ""
    import signal

    try:
        return f", killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f", killed by signal {-returncode}"
