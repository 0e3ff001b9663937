"""A local stand-in for the worker that runs the job on a target: `python -m app.targets.relay NAME`.

It speaks the worker protocol on its own stdin/stdout (spec line in, commands in, JSON Lines
events out), so the CLI's JobClient and the window's WorkerJob drive a remote job exactly as a
local one: same events, same cancel, same limits. Inside, one SSH connection: send what the
target lacks, run the worker there, pass events back and cancel forward.

When the relay dies (killed by its client after a cancel grace period, say), its connection
drops and the remote worker ends itself (parent gone, stdin closed). When the link drops, the
relay says so plainly as an error of kind "link" and exits.
"""
from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from app.jobs.protocol import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL
from app.targets.config import TargetError, TargetStore

log = logging.getLogger("modeldeck.relay")
EXIT_LINK = 3  # the connection to the target was lost
ACCEPT_NEW = "--accept-new-host-key"


def relay_command(target: str, accept_new_host_key: bool = False) -> list[str]:
    """How to start a relay for a target name or ssh:// address (accept_new_host_key: the
    user confirmed the fingerprint they were shown; a changed key is refused all the same)."""
    extra = [ACCEPT_NEW] if accept_new_host_key else []
    if getattr(sys, "frozen", False):
        return [sys.executable, "--relay", target, *extra]
    return [sys.executable, "-m", "app.targets.relay", target, *extra]


class _Out:
    def __init__(self) -> None:
        sys.stdout.flush()
        fd = os.dup(1)
        os.dup2(2, 1)  # a library that prints cannot corrupt the event stream
        sys.stdout = sys.stderr
        self.stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), default=str)
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


async def run_remote(target_name: str, spec: dict[str, Any], emit, commands: asyncio.Queue,
                     accept_new: bool = False) -> int:
    """The whole remote job; returns the relay's exit code."""
    from app.targets.remote import Session, remap_paths

    try:
        target = TargetStore().get(target_name)
    except TargetError as e:
        emit({"event": "error", "kind": "bad_input", "message": str(e)})
        return EXIT_BAD_INPUT
    where = f"target {target.name} ({target.url})"
    emit({"event": "stage", "stage": "connect", "message": f"connecting to {where}"})
    t_start = time.perf_counter()
    try:
        session = await Session.open(target, emit, accept_new=accept_new)
    except TargetError as e:
        kind = getattr(e, "kind", None)
        emit({"event": "error", "kind": "host_key" if kind else "target", "message": str(e),
              **({"host_key": kind, "fingerprint": e.fingerprint} if kind else {})})
        return EXIT_BAD_INPUT
    stage = "connect"
    job = None
    exited = False
    try:
        try:
            job = await session.prepare(spec)
        except TargetError as e:
            emit({"event": "error", "kind": "target", "message": str(e)})
            return EXIT_BAD_INPUT
        _cap_memory(job.spec, session.mem_bytes)
        stage = "start"
        proc = await session.start_worker(job)
        proc.stdin.write(json.dumps(job.spec) + "\n")
        started_s = time.perf_counter() - t_start
        first_event_s: float | None = None

        async def pump_commands() -> None:
            while True:
                line = await commands.get()
                if line is None:  # our client went away: drop the job with the link
                    session.conn.abort()
                    return
                proc.stdin.write(line)

        async def pump_stderr() -> None:
            async for line in proc.stderr:
                sys.stderr.write(line)
                sys.stderr.flush()

        tasks = [asyncio.create_task(pump_commands()), asyncio.create_task(pump_stderr())]
        terminal = False
        async for line in proc.stdout:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                sys.stderr.write("stdout: " + line)
                continue
            if first_event_s is None:
                first_event_s = time.perf_counter() - t_start
            kind = event.get("event")
            if kind == "stage":
                stage = str(event.get("stage") or stage)
            if kind == "result":
                result = remap_paths(event.get("result"), job.local_of_remote)
                if isinstance(result, dict):
                    result["target"] = {
                        "name": target.name, "url": target.url,
                        "python": session.python_version, "engine": job.engine_dir.rsplit(
                            "/", 1)[-1][:12],
                        **session.stats.to_dict(), "worker_started_s": round(started_s, 4),
                        "first_event_s": round(first_event_s, 4)}
                if job.outputs and isinstance(result, dict):
                    # the job wrote its files on the target: home before the result is told
                    from app.targets.fetch import fetch_outputs

                    stage = "fetch"
                    try:
                        await fetch_outputs(session, job, result,
                                            lambda o: remap_paths(o, job.local_of_remote), emit)
                    except TargetError as e:
                        emit({"event": "error", "kind": "target", "message": str(e)})
                        return EXIT_BAD_INPUT
                event = {**event, "result": result}
            elif kind != "samples":  # messages name the model as the user knows it
                event = remap_paths(event, job.local_of_remote)
            emit(event)
            if kind in ("result", "error", "cancelled"):
                terminal = True
                if kind != "result" and job.outputs:  # nothing to fetch: the target's copy goes
                    import shlex

                    await session.conn.run("rm -rf " + " ".join(
                        shlex.quote(r) for r, _ in job.outputs), check=False)
                break  # the job is over: what is left of it ends at once, as a local one's
        try:
            await asyncio.wait_for(proc.wait_closed(), 0.2 if terminal else None)
        except asyncio.TimeoutError:
            pass
        for t in tasks:
            t.cancel()
        code = proc.exit_status
        if terminal and code is None:
            # Closing the connection is enough: the keeper ends what is left of the worker and
            # removes the job folder (a cleanup command would cost a round trip per job).
            job = None
            return {"result": 0, "cancelled": EXIT_CANCELLED}.get(kind, EXIT_BAD_INPUT)
        exited = code is not None
        if not exited and not terminal:
            reason = proc.exit_signal[0] if proc.exit_signal else "the connection closed"
            emit({"event": "error", "kind": "link",
                  "message": f"the connection to {where} was lost during '{stage}' ({reason}); "
                             "the job on the target was stopped (its worker ends itself when "
                             "its connection goes)"})
            return EXIT_LINK
        return int(code) if code is not None else EXIT_INTERNAL
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
        emit({"event": "error", "kind": "link",
              "message": f"the connection to {where} was lost during '{stage}': "
                         f"{e or type(e).__name__}"})
        return EXIT_LINK
    except Exception as e:
        import asyncssh

        if isinstance(e, asyncssh.Error):
            emit({"event": "error", "kind": "link",
                  "message": f"the connection to {where} was lost during '{stage}': {e}"})
            return EXIT_LINK
        raise
    finally:
        if job is not None:
            await session.end_job(job, exited)
        await session.close()


def _cap_memory(spec: dict[str, Any], mem_bytes: int) -> None:
    """The desktop chose the memory limit from its own RAM: never more than the target's."""
    limits = spec.get("limits")
    if not isinstance(limits, dict) or not mem_bytes:
        return
    cap = max(256, int(mem_bytes / 2**20 * 0.75))
    if not limits.get("memory_mb") or limits["memory_mb"] > cap:
        limits["memory_mb"] = cap


def _read_commands(loop: asyncio.AbstractEventLoop, q: asyncio.Queue) -> None:
    for line in sys.stdin:
        loop.call_soon_threadsafe(q.put_nowait, line)
    loop.call_soon_threadsafe(q.put_nowait, None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if os.name == "posix" and os.getsid(0) != os.getpid():
        try:  # lead a session, as a worker does, so the window's client can end our group
            os.setsid()
        except OSError:
            pass
    faulthandler.enable(sys.stderr)
    logging.basicConfig(level=os.environ.get("MODELDECK_LOG", "WARNING"), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    emit = _Out()
    accept_new = ACCEPT_NEW in argv
    argv = [a for a in argv if a != ACCEPT_NEW]
    if len(argv) != 1:
        emit({"event": "error", "kind": "internal",
              "message": f"usage: relay TARGET [{ACCEPT_NEW}]"})
        return EXIT_INTERNAL
    try:
        spec = json.loads(sys.stdin.readline())
        assert isinstance(spec, dict)
    except (ValueError, AssertionError):
        emit({"event": "error", "kind": "internal", "message": "bad job spec"})
        return EXIT_INTERNAL

    async def go() -> int:
        q: asyncio.Queue = asyncio.Queue()
        threading.Thread(target=_read_commands, args=(asyncio.get_running_loop(), q),
                         daemon=True).start()
        return await run_remote(argv[0], spec, emit, q, accept_new)

    try:
        return asyncio.run(go())
    except Exception as e:
        import traceback

        traceback.print_exc()
        emit({"event": "error", "kind": "internal", "message": f"{type(e).__name__}: {e}"})
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
