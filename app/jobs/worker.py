"""The worker process: runs one job and speaks the protocol in app/jobs/protocol.py.

Started as `python -m app.jobs.worker` (a frozen build will start itself with --worker).
Everything that imports a framework or parses an untrusted file happens here, so a crash or
a hang takes down this process only.
"""
from __future__ import annotations

import faulthandler
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO, Any

from app.jobs.protocol import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK
from converters.errors import Cancelled, ModelDeckError

log = logging.getLogger("modeldeck.worker")


class Events:
    """Thread-safe JSON Lines writer (the sampler thread and the main loop both emit)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), default=str)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


def _events_stream() -> IO[str]:
    """Keep the real stdout for events; point fd 1 at stderr so a native library that prints
    (runtimes do) cannot corrupt the event stream."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", buffering=1, encoding="utf-8")


def _listen_for_cancel(stdin: IO[str], flag: threading.Event) -> None:
    for line in stdin:
        try:
            if json.loads(line).get("cmd") == "cancel":
                flag.set()
                return
        except (ValueError, AttributeError):
            log.warning("ignored command line: %r", line[:200])
    # stdin closed: the client went away; stop as if cancelled
    flag.set()


def job_inspect(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from app.cli import inspect_summary
    from converters.formats import Trust, open_model

    emit({"event": "stage", "stage": "inspect", "message": spec["model"]})
    summary = inspect_summary(spec["model"], trust_pickle=spec.get("trust_pickle", False),
                              layers=spec.get("layers", False))
    if spec.get("graph"):
        summary["graph"] = open_model(spec["model"], Trust(spec.get("trust_pickle", False))
                                      ).to_dict()
    return summary


def job_profile(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from profilers.runner import RunConfig, run_profile

    return run_profile(RunConfig.from_dict(spec["config"]), emit, cancelled)


def job_devices(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from profilers.devices import list_devices

    return {"backends": list_devices()}


def job_convert(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from converters.pipeline import ConvertSpec, run_pipeline

    return run_pipeline(ConvertSpec.from_dict(spec["convert"]), emit, cancelled)


def job_compare(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from profilers.compare import run_compare
    from profilers.runner import RunConfig

    base = RunConfig.from_dict({**spec["config"], "model": spec["models"][0]})
    return run_compare(spec["models"], base, spec.get("eval"), emit, cancelled,
                       backend_given=spec.get("backend_given", True))


JOBS: dict[str, Callable[[dict[str, Any], Callable, Callable[[], bool]], dict]] = {
    "inspect": job_inspect, "profile": job_profile, "devices": job_devices,
    "convert": job_convert, "compare": job_compare,
}


def main() -> int:
    faulthandler.enable(sys.stderr)
    logging.basicConfig(level=os.environ.get("MODELDECK_LOG", "WARNING"), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    emit = Events(_events_stream())
    line = sys.stdin.readline()
    try:
        spec = json.loads(line)
        job = JOBS[spec["job"]]
    except (ValueError, KeyError, TypeError):
        emit({"event": "error", "kind": "internal",
              "message": f"bad job spec (known jobs: {', '.join(JOBS)}): {line[:200]!r}"})
        return EXIT_INTERNAL
    cancel = threading.Event()
    threading.Thread(target=_listen_for_cancel, args=(sys.stdin, cancel), daemon=True).start()

    try:
        result = job(spec, emit, cancel.is_set)
    except Cancelled:
        emit({"event": "cancelled"})
        return EXIT_CANCELLED
    except ModelDeckError as e:
        emit({"event": "error", "kind": "bad_input", "message": str(e)})
        return EXIT_BAD_INPUT
    except Exception as e:
        traceback.print_exc()
        emit({"event": "error", "kind": "internal", "message": f"{type(e).__name__}: {e}"})
        return EXIT_INTERNAL
    emit({"event": "result", "result": result})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
