"""On the target: the worker's keeper, `python -m app.targets.shim` in the job folder.

A link can die without either end being told (a cable pulled, a laptop lid shut, a NAT that
forgot the flow): the desktop notices through keepalives, but the target's sshd may not for
hours, and the worker would go on measuring for nobody. So the relay sends a heartbeat line
every few seconds and this keeper ends the worker's whole process group when heartbeats stop,
when the connection closes, or when its own parent (the ssh session) goes. Commands other than
heartbeats go on to the worker's stdin; its stdout and stderr are the session's, untouched.
The keeper also holds the job to its memory cap (the worker's group RSS, polled from /proc), as
the desktop's client does for a local worker: the desktop cannot see a remote process's memory.

worker.pid in the job folder holds "<worker pid> <keeper pid>": the worker leads its own
process group, so one `kill -- -<worker pid>` ends it and anything a runtime forked.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from app.jobs.limits import group_rss_mb, memory_message
from app.jobs.protocol import EXIT_BAD_INPUT

HEARTBEAT = b'{"cmd":"heartbeat"}'
HEARTBEAT_ENV = "MODELDECK_HEARTBEAT_S"
DEFAULT_TIMEOUT_S = 30.0  # no heartbeat for this long: the desktop is gone
STDIN_CLOSED_GRACE_S = 6.0  # the worker stops itself within 5 s when its stdin closes


def _kill_group(pid: int, leader_too: bool = True) -> None:
    """SIGKILL the worker's group (and the worker, while it is not reaped yet)."""
    for target in (-pid, pid) if leader_too else (-pid,):
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _memory_cap(spec_line: bytes) -> int | None:
    try:
        mb = (json.loads(spec_line).get("limits") or {}).get("memory_mb")
        return int(mb) if mb else None
    except (ValueError, TypeError, AttributeError):
        return None  # the worker says what is wrong with the spec


def main() -> int:
    try:
        timeout = float(os.environ.get(HEARTBEAT_ENV) or DEFAULT_TIMEOUT_S)
    except ValueError:
        timeout = DEFAULT_TIMEOUT_S
    parent = os.getppid()
    first = sys.stdin.buffer.readline()  # the job spec: its memory cap is watched from here
    memory_mb = _memory_cap(first)
    worker = subprocess.Popen([sys.executable, "-m", "app.jobs.worker"], stdin=subprocess.PIPE,
                              start_new_session=True)
    with open("worker.pid.tmp", "w") as f:
        f.write(f"{worker.pid} {os.getpid()}\n")
    os.replace("worker.pid.tmp", "worker.pid")
    last = [time.monotonic()]
    closed_at: list[float] = []
    assert worker.stdin is not None
    try:
        worker.stdin.write(first)
        worker.stdin.flush()
    except OSError:
        pass

    def pump() -> None:
        assert worker.stdin is not None
        for line in sys.stdin.buffer:
            last[0] = time.monotonic()
            if line.strip() == HEARTBEAT:
                continue
            try:
                worker.stdin.write(line)
                worker.stdin.flush()
            except OSError:
                break
        closed_at.append(time.monotonic())
        try:
            worker.stdin.close()
        except OSError:
            pass

    threading.Thread(target=pump, daemon=True).start()
    over_memory = False
    while worker.poll() is None:
        time.sleep(0.2)
        if memory_mb:
            rss = group_rss_mb(worker.pid)
            if rss > memory_mb:  # as the desktop's client does for a local worker
                _kill_group(worker.pid)
                worker.wait()
                sys.stdout.write(json.dumps({"event": "error", "kind": "memory",
                                             "message": memory_message(memory_mb, rss)}) + "\n")
                sys.stdout.flush()
                over_memory = True
                break
        now = time.monotonic()
        gone = (now - last[0] > timeout or os.getppid() != parent
                or (closed_at and now - closed_at[0] > STDIN_CLOSED_GRACE_S))
        if gone:
            _kill_group(worker.pid)
            worker.wait()
            break
    _kill_group(worker.pid, leader_too=False)  # what a runtime forked and left behind
    here = os.getcwd()
    if os.path.basename(os.path.dirname(here)) == "jobs":  # the job folder: done with it
        shutil.rmtree(here, ignore_errors=True)
    code = worker.returncode
    if over_memory:
        return EXIT_BAD_INPUT
    return 128 - code if code is not None and code < 0 else int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
