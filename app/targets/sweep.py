"""Jobs on targets: one job anywhere (run_on_target), or many spread over several (run_sweep).

A measurement needs a quiet machine, so a target runs one job at a time; different targets run
in parallel. Each outcome is labelled with the target that produced it. `optimize` (and anything
else that measures candidates) calls these with ordinary worker job specs.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.jobs.client import JobClient, JobOutcome
from app.targets.config import LOCAL

log = logging.getLogger(__name__)


def job_client(spec: dict[str, Any], target: str | None = None,
               on_event: Callable[[dict], None] | None = None, timeout_s: float | None = None,
               memory_mb: int | None = None) -> JobClient:
    """A JobClient for a spec on a target (None or 'local': this computer), not started yet."""
    if not target or target == LOCAL:
        return JobClient(spec, on_event=on_event, timeout_s=timeout_s, memory_mb=memory_mb)
    from dataclasses import replace

    from app.targets.relay import relay_command

    client = JobClient(spec, on_event=on_event, timeout_s=timeout_s, memory_mb=memory_mb,
                       command=relay_command(target))
    # The memory cap travels in the spec and is held on the target (app.targets.shim); here it
    # would only measure the relay. Time limits stay here: they end the relay, then the link.
    client.limits = replace(client.limits, memory_mb=None)
    return client


def run_on_target(spec: dict[str, Any], target: str | None = None,
                  on_event: Callable[[dict], None] | None = None,
                  timeout_s: float | None = None, memory_mb: int | None = None) -> JobOutcome:
    """Run one worker job spec on a target and wait; Ctrl-C cancels it like a local job.

    The outcome's result carries result["target"] (name, address, transfer and start-up
    figures) for a remote target; a lost link is an outcome with error_kind "link"."""
    client = job_client(spec, target, on_event, timeout_s, memory_mb).start()
    try:
        outcome = client.wait()
    except KeyboardInterrupt:
        client.cancel()
        outcome = client.wait()
    label_outcome(outcome, target)
    return outcome


def label_outcome(outcome: JobOutcome, target: str | None) -> None:
    if isinstance(outcome.result, dict):
        outcome.result.setdefault("target", {"name": LOCAL})


@dataclass
class SweepItem:
    index: int  # position in the specs given
    target: str
    spec: dict[str, Any]
    outcome: JobOutcome


def run_sweep(specs: Sequence[dict[str, Any]], targets: Sequence[str],
              on_event: Callable[[str, int, dict], None] | None = None,
              timeout_s: float | None = None, cancelled: Callable[[], bool] | None = None
              ) -> list[SweepItem]:
    """Spread jobs over targets, one job per target at a time; results in the specs' order.

    on_event(target, index, event) sees every event of every job (from several threads)."""
    if not targets:
        raise ValueError("a sweep needs at least one target")
    todo: queue.Queue[int] = queue.Queue()
    for i in range(len(specs)):
        todo.put(i)
    done: dict[int, SweepItem] = {}
    lock = threading.Lock()

    def worker(target: str) -> None:
        while not (cancelled and cancelled()):
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            cb = (lambda e, t=target, i=i: on_event(t, i, e)) if on_event else None
            outcome = run_on_target(specs[i], target, cb, timeout_s=timeout_s)
            with lock:
                done[i] = SweepItem(i, target, specs[i], outcome)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True,
                                name=f"sweep-{t}") for t in dict.fromkeys(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [done[i] for i in sorted(done)]


def run_each(spec: dict[str, Any], targets: Sequence[str],
             on_event: Callable[[str, int, dict], None] | None = None,
             timeout_s: float | None = None, memory_mb: int | None = None) -> list[SweepItem]:
    """The same job on every target at once (one each), labelled by target, in targets' order."""
    items: list[SweepItem | None] = [None] * len(targets)

    def one(i: int, target: str) -> None:
        cb = (lambda e: on_event(target, i, e)) if on_event else None
        items[i] = SweepItem(i, target, spec, run_on_target(spec, target, cb, timeout_s,
                                                            memory_mb))

    threads = [threading.Thread(target=one, args=(i, t), daemon=True)
               for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [it for it in items if it is not None]
