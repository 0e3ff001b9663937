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
from app.jobs import sandbox
from converters.errors import Cancelled, ConsentRequired, ModelDeckError

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
    # stdin closed: the client went away; stop as if cancelled, and die if that is not enough
    flag.set()
    _end_group_after(PARENT_GONE_GRACE_S, "the client closed the command pipe")


PARENT_POLL_S = 0.5
PARENT_GONE_GRACE_S = 5.0


def _own_group() -> None:
    """Lead a session of our own (the CLI's client already asks for one; the GUI's QProcess
    cannot), so the client can end this worker and everything it forks with one killpg."""
    if os.name != "posix":
        return
    try:
        if os.getsid(0) != os.getpid():
            os.setsid()
    except OSError as e:
        log.debug("setsid: %s", e)


def _kill_own_group() -> None:
    if os.name == "posix" and os.getpgid(0) == os.getpid():
        os.killpg(0, 9)  # SIGKILL: us and anything a runtime forked
    os._exit(EXIT_CANCELLED)


def _end_group_after(delay_s: float, why: str) -> None:
    def later() -> None:
        log.warning("%s: stopping this worker", why)
        _kill_own_group()

    t = threading.Timer(delay_s, later)
    t.daemon = True
    t.start()


def _watch_parent(parent: int) -> None:
    """Nothing outlives its client: when the parent dies, end this worker's whole group."""
    import time

    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            log.warning("the client (pid %s) is gone: stopping this worker", parent)
            _kill_own_group()


def _block_telemetry() -> None:
    """OpenVINO's converter sends telemetry by forking a process from a thread; in a
    multi-threaded worker that child can hang on a lock forever, holding our event pipe.
    Making the package unimportable selects OpenVINO's own no-op stub (and sends nothing)."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]


def _limit_memory(limits: dict[str, Any] | None) -> None:
    """A kernel backstop under the client's RSS watchdog: a single allocation far past the cap
    fails at once (MemoryError) instead of being filled before the next RSS poll.

    RLIMIT_DATA counts private writable mappings; runtimes reserve some address space they never
    touch, so the backstop sits at twice the RSS cap (and at least 4 GB)."""
    mb = (limits or {}).get("memory_mb")
    if not mb or os.name != "posix":
        return
    import resource

    cap = max(int(mb) * 2, 4096) * 2**20
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))
    except (ValueError, OSError) as e:
        log.debug("RLIMIT_DATA: %s", e)


def job_inspect(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from converters.summary import inspect_summary

    emit({"event": "stage", "stage": "inspect", "message": spec["model"]})
    return inspect_summary(spec["model"],
                           trust_pickle=bool(spec.get("trust_code") or spec.get("trust_pickle")),
                           layers=spec.get("layers", False), graph=spec.get("graph", False),
                           shapes=spec.get("shapes") or None, inputs=spec.get("inputs"))


def job_graph(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    """The ModelGraph alone, as declared (no counting): what `modeldeck graph` and `diff` draw."""
    from converters.formats import Trust, open_model

    emit({"event": "stage", "stage": "graph", "message": spec["model"]})
    trust = Trust(allow_pickle=bool(spec.get("trust_code")))
    return {"graph": open_model(spec["model"], trust).to_dict()}


def job_graph_diff(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    """Two variants' graphs and their node matching (converters/graph_diff.py)."""
    from converters.formats import Trust, open_model
    from converters.graph_diff import diff_graphs

    trust = Trust(allow_pickle=bool(spec.get("trust_code")))
    graphs = []
    for i, path in enumerate((spec["base"], spec["other"])):
        emit({"event": "progress", "frac": i / 3, "message": f"reading {path}"})
        graphs.append(open_model(path, trust))
    emit({"event": "progress", "frac": 2 / 3, "message": "matching nodes"})
    d = diff_graphs(graphs[0], graphs[1], spec.get("base_times"), spec.get("other_times"))
    return {"base": graphs[0].to_dict(), "other": graphs[1].to_dict(), "diff": d.to_wire()}


def job_profile(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from profilers.runner import RunConfig, run_profile

    return run_profile(RunConfig.from_dict(spec["config"]), emit, cancelled)


def job_devices(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from profilers.devices import list_devices

    return {"backends": list_devices()}


def job_convert(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from app.pipeline import ConvertSpec, run_pipeline

    return run_pipeline(ConvertSpec.from_dict(spec["convert"]), emit, cancelled)


def job_compare(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from profilers.compare import run_compare
    from profilers.runner import RunConfig

    from converters.formats import consent

    base = RunConfig.from_dict({**spec["config"], "model": spec["models"][0]})
    with consent(base.trust_code):  # fidelity runs outside the profiles need it too
        return run_compare(spec["models"], base, spec.get("eval"), emit, cancelled,
                           backend_given=spec.get("backend_given", True))


def job_optimize(spec: dict[str, Any], emit: Callable, cancelled: Callable[[], bool]) -> dict:
    from app.optimize.search import OptimizeSpec, run_optimize

    return run_optimize(OptimizeSpec.from_dict(spec["optimize"]), emit, cancelled)


JOBS: dict[str, Callable[[dict[str, Any], Callable, Callable[[], bool]], dict]] = {
    "inspect": job_inspect, "profile": job_profile, "devices": job_devices,
    "convert": job_convert, "compare": job_compare, "graph": job_graph,
    "graph_diff": job_graph_diff,
    "optimize": job_optimize,
}


def main() -> int:
    _own_group()
    parent = os.getppid()
    _block_telemetry()
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
    _limit_memory(spec.get("limits") if isinstance(spec, dict) else None)
    # Before any thread starts: Landlock binds the calling thread and those it starts later.
    sandbox_status = sandbox.apply_for_job(spec)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    cancel = threading.Event()
    threading.Thread(target=_listen_for_cancel, args=(sys.stdin, cancel), daemon=True).start()

    try:
        result = job(spec, emit, cancel.is_set)
    except Cancelled:
        emit({"event": "cancelled"})
        return EXIT_CANCELLED
    except ConsentRequired as e:  # each front end asks in its own way (--trust, a dialog)
        emit({"event": "error", "kind": "needs_consent", "message": str(e)})
        return EXIT_BAD_INPUT
    except ModelDeckError as e:
        emit({"event": "error", "kind": "bad_input", "message": str(e)})
        return EXIT_BAD_INPUT
    except MemoryError as e:  # the RLIMIT_DATA backstop refused an allocation
        mb = (spec.get("limits") or {}).get("memory_mb")
        emit({"event": "error", "kind": "memory",
              "message": "the job needed more memory than its limit"
                         + (f" ({mb} MB)" if mb else "") + " and was stopped: the model needs "
                         f"more memory than the limit at these input sizes{_why(e)}"})
        return EXIT_BAD_INPUT
    except Exception as e:
        traceback.print_exc()
        emit({"event": "error", "kind": "internal", "message": f"{type(e).__name__}: {e}"})
        return EXIT_INTERNAL
    sandbox.record(result, sandbox_status, spec["job"])
    emit({"event": "result", "result": result})
    return EXIT_OK


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f" [{text}]" if text else ""


if __name__ == "__main__":
    sys.exit(main())
