"""Qt-free client for one worker job: start, stream events, cancel, time out, collect.

A worker that crashes, is killed or hangs past the timeout ends as a failed job carrying the
tail of its stderr; the samples received before that are kept in the outcome.

Each worker runs in its own session (process group). When a job ends, however it ends, the whole
group is killed: a runtime that forked a helper (OpenVINO's telemetry did, from a thread, leaving
a child stuck on a futex holding the event pipe) cannot outlive the job or keep the client
waiting for an end of file that never comes.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.jobs.limits import (
    Limits, default_limits, group_rss_mb, idle_message, is_progress, memory_message,
    timeout_message,
)
from app.jobs.protocol import CANCEL

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 40
CANCEL_GRACE_S = 5.0
EXIT_GRACE_S = 5.0  # after its result, how long a worker may take to exit before it is killed
DRAIN_S = 2.0  # after the worker exited, how long to read what is left in the pipe
MEMORY_POLL_S = 0.1
NATIVE_CRASH_SIGNALS = ("SIGSEGV", "SIGABRT", "SIGBUS", "SIGFPE", "SIGILL")


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
    error_kind: str | None = None  # bad_input | internal | crashed | timeout | memory
    returncode: int | None = None
    stderr_tail: str = ""
    samples: dict[str, list[list[float]]] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)  # stage events, in order
    layers: list[dict[str, Any]] = field(default_factory=list)  # per-layer rows received
    signal: str | None = None  # e.g. "SIGSEGV" when the worker was killed by a signal
    last_stage: str | None = None


def kill_group(pid: int | None) -> None:
    """SIGKILL a worker's process group (the worker and anything it forked). Never raises."""
    if pid is None or os.name != "posix":
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    except OSError as e:
        log.debug("killpg(%s): %s", pid, e)


def finish_outcome(outcome: JobOutcome, returncode: int | None, cancelled: bool,
                   kind: str = "") -> None:
    """Fill in why a job failed when the worker did not say (shared with the GUI's client)."""
    if returncode is not None and returncode < 0:
        outcome.signal = _signal_only(-returncode)
    if outcome.status == "failed" and outcome.error is None:
        outcome.error_kind = "crashed"
        if outcome.signal in NATIVE_CRASH_SIGNALS and kind == "inspect":
            outcome.error = (f"ModelDeck's reader crashed on this file ({outcome.signal} in the "
                             "native parser): the file is damaged or hostile")
        elif outcome.signal in NATIVE_CRASH_SIGNALS:
            where = f" during {outcome.last_stage}" if outcome.last_stage else ""
            outcome.error = (f"ModelDeck's reader or runtime crashed on this model "
                             f"({outcome.signal} in native code{where}): the file is damaged or "
                             "hostile, or the runtime has a bug")
        else:
            outcome.error = (f"the worker process ended without a result (exit code "
                             f"{returncode}){_signal_name(returncode)}")
    if cancelled and outcome.status != "ok":
        outcome.status = "cancelled"


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
    elif kind == "layer":
        outcome.layers.append({k: v for k, v in event.items() if k != "event"})
    elif kind == "stage":
        outcome.stages.append({k: v for k, v in event.items() if k != "event"})
        outcome.last_stage = str(event.get("stage") or "") or outcome.last_stage


TERMINAL_EVENTS = ("result", "error", "cancelled")


def cleanup_after(spec: dict[str, Any], outcome: JobOutcome) -> None:
    """A conversion whose worker was killed could not clean up: remove its work folder and
    half-written files here (the worker does it itself when it fails on its own)."""
    if spec.get("job") != "convert" or outcome.status == "ok":
        return
    if outcome.error_kind not in ("crashed", "timeout", "memory") and outcome.status != "cancelled":
        return
    conv = spec.get("convert") or {}
    if not conv.get("output"):
        return
    from app.pipeline import cleanup_unfinished

    try:
        cleanup_unfinished(conv["output"], keep=conv.get("model"))
    except OSError as e:
        log.warning("could not remove what the conversion left: %s", e)


class JobClient:
    """Run one job spec in a worker process.

    timeout_s: the whole job (None: the default of its kind, app.jobs.limits); limits: all of
    them at once (wins over timeout_s/memory_mb); command: what to start instead of a local
    worker (app.targets.relay's, which runs the job on a remote target).
    """

    def __init__(self, spec: dict[str, Any], on_event: Callable[[dict], None] | None = None,
                 timeout_s: float | None = None, env: dict[str, str] | None = None,
                 memory_mb: int | None = None, limits: Limits | None = None,
                 command: list[str] | None = None):
        self.limits = limits or default_limits(spec, timeout_s=timeout_s, memory_mb=memory_mb)
        self.command = command  # None: a local worker; a relay's for a remote target
        self.spec = {**spec, "limits": self.limits.to_dict()}
        self.on_event = on_event
        self.timeout_s = self.limits.timeout_s
        self.env = env
        self.proc: subprocess.Popen | None = None
        self._events: queue.Queue[dict | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._cancel_at: float | None = None
        self._readers: list[threading.Thread] = []

    def start(self) -> JobClient:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(self.command or worker_command(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     encoding="utf-8", errors="replace",  # runtimes log bytes
                                     bufsize=1, env=env, start_new_session=os.name == "posix")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(self.spec) + "\n")
            self.proc.stdin.flush()
        except OSError:  # it died at once; wait() reports how
            pass
        for target in (self._read_stdout, self._read_stderr):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._readers.append(t)
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
        """Kill the worker and everything it started."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        kill_group(self.proc.pid)

    def wait(self) -> JobOutcome:
        assert self.proc is not None, "start() first"
        lim = self.limits
        started = last_progress = last_poll = time.monotonic()
        outcome = JobOutcome(status="failed")
        ended_at: float | None = None  # when the worker's exit or last event was seen
        killed_for: str | None = None
        peak_mb = 0.0
        while True:
            try:
                event = self._events.get(timeout=0.05)
            except queue.Empty:
                event = ...
            now = time.monotonic()
            if event is None:  # end of the event stream
                break
            if event is not ...:
                self._collect(event, outcome)
                if is_progress(event):
                    last_progress = now
                if self.on_event is not None:
                    self.on_event(event)
                if event.get("event") in TERMINAL_EVENTS and ended_at is None:
                    ended_at = now
                continue
            exited = self.proc.poll() is not None
            if exited and ended_at is None:
                ended_at = now
            if ended_at is not None:
                # The result is in or the worker is gone: do not wait for an end of file
                # that a leftover child holding the pipe would withhold.
                if exited:
                    kill_group(self.proc.pid)
                    if now - ended_at > DRAIN_S:
                        break
                elif now - ended_at > EXIT_GRACE_S:
                    self.kill()
                continue
            if killed_for is None:
                if lim.memory_mb and now - last_poll >= MEMORY_POLL_S:
                    last_poll = now
                    rss = group_rss_mb(self.proc.pid)
                    peak_mb = max(peak_mb, rss)
                    if rss > lim.memory_mb:
                        killed_for = "memory"
                        outcome.error_kind = "memory"
                        outcome.error = memory_message(lim.memory_mb, rss)
                if lim.timeout_s is not None and now - started > lim.timeout_s:
                    killed_for = "timeout"
                    outcome.error_kind = "timeout"
                    outcome.error = timeout_message(lim.timeout_s)
                elif lim.idle_s is not None and now - last_progress > lim.idle_s:
                    killed_for = "timeout"
                    outcome.error_kind = "timeout"
                    outcome.error = idle_message(lim.idle_s, outcome.last_stage)
                if killed_for is not None:
                    log.info("stopping worker %s: %s", self.proc.pid, outcome.error)
                    self.kill()
            if self._cancel_at is not None and now - self._cancel_at > CANCEL_GRACE_S:
                self.kill()
        outcome.returncode = self._reap()
        for t in self._readers:
            t.join(timeout=0.5)
        self._close_pipes()
        outcome.stderr_tail = "\n".join(self._stderr)
        if killed_for is not None and outcome.status != "ok":
            outcome.status = "failed"
            if outcome.error_kind != killed_for:  # a late error event from the dying worker
                outcome.error_kind = killed_for
        finish_outcome(outcome, outcome.returncode, self._cancel_at is not None,
                       str(self.spec.get("job", "")))
        cleanup_after(self.spec, outcome)
        return outcome

    def _reap(self) -> int | None:
        """Wait for the worker briefly, then make sure its whole group is gone."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        kill_group(self.proc.pid)
        return code

    def _close_pipes(self) -> None:
        """Close our ends of the pipes whose reader finished (one still blocked on a pipe that
        an escaped process holds is left to the garbage collector)."""
        assert self.proc is not None
        done = [not t.is_alive() for t in self._readers]
        for stream, ok in ((self.proc.stdin, True), (self.proc.stdout, done[0]),
                           (self.proc.stderr, done[1])):
            if stream is not None and ok:
                try:
                    stream.close()
                except OSError:
                    pass

    def _collect(self, event: dict[str, Any], outcome: JobOutcome) -> None:
        collect_event(outcome, event)

    def run(self) -> JobOutcome:
        return self.start().wait()


def _signal_only(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _signal_name(returncode: int | None) -> str:
    if returncode is None or returncode >= 0:
        return ""
    return f", killed by {_signal_only(-returncode)}"
