"""Run mutants through the CLI with time and memory limits, classify each run, keep failures.

    python -m tests.fuzz.campaign --count 2000 --out build/fuzz [--jobs 2] [--seed 0]

Every mutant goes through `modeldeck inspect FILE`; those inspect accepts, and a sample of the
rest, also through `modeldeck profile FILE --iterations 3 --warmup 1`. A run is
  ok        exit 0
  clear     exit 2, stderr is "modeldeck: error: ..." on one line (plus "warning:" lines)
and a failure otherwise:
  crash     killed by a signal, or an exit code other than 0/1/2/3
  hang      past the wall timeout (the whole process group is killed)
  memory    peak RSS (CLI and its waited-for workers, from wait4) past the limit, or the
            address-space limit hit (MemoryError / std::bad_alloc)
  traceback stderr holds "Traceback"
  internal  exit 1 or "internal error"
  unclear   exit 2 without exactly one clear line
summary.json holds counts per class, per format, per command and per mutator; each failure
keeps its files, command, stderr and class under failures/<id>/ for reproduction.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.fuzz.mutate import ROOT, Mutant, Seed, build_seeds, make_mutant, plan

log = logging.getLogger(__name__)

FAILURES = ("crash", "hang", "memory", "traceback", "internal", "unclear")
WALL_TIMEOUT_S = 120.0
RSS_LIMIT_MB = 3072  # what a run may peak at (the CLI plus its worker)
# The CLI's own limits, set below the harness's so that they are what stops a runaway model
# (its clear message is the behaviour under test), and the shared machine stays usable.
CLI_LIMITS = ["--timeout", "60", "--memory-limit", "2048"]
ADDRESS_LIMIT_MB = 16384  # RLIMIT_AS per process: OpenVINO and torch reserve much more than RSS


@dataclass
class Run:
    id: str
    fmt: str
    kind: str
    command: str  # inspect | profile
    cls: str
    rc: int | None
    wall_s: float
    max_rss_mb: float
    stderr_tail: str


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("modeldeck")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "app.cli"]


def _limits() -> None:
    """In the child, before exec: no core files, a cap on address space (workers inherit it)."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cap = ADDRESS_LIMIT_MB << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def classify(rc: int | None, stderr: str, timed_out: bool, max_rss_mb: float) -> str:
    if timed_out:
        return "hang"
    if max_rss_mb > RSS_LIMIT_MB or "MemoryError" in stderr or "std::bad_alloc" in stderr:
        return "memory"
    if "Traceback" in stderr:
        return "traceback"
    if rc is not None and rc < 0:
        return "crash"
    if rc == 0:
        return "ok"
    if rc == 1 or "internal error" in stderr:
        return "internal"
    if rc in (2, 3):
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("modeldeck: error:")]
        others = [ln for ln in lines if not ln.startswith(("modeldeck: error:", "warning:",
                                                           "modeldeck: warning:"))]
        return "clear" if len(errors) == 1 and not others else "unclear"
    return "crash"


def run_cli(args: list[str], cwd: Path, timeout_s: float = WALL_TIMEOUT_S,
            program: list[str] | None = None) -> tuple[int | None, str, bool, float, float]:
    """(returncode, stderr, timed_out, max_rss_mb, wall_s) of one CLI run in its own session.

    `program` replaces the CLI (the runner's own tests start a crashing or sleeping Python)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONFAULTHANDLER="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen((program or _cli()) + args, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, env=env,
                                preexec_fn=_limits, start_new_session=True)
        timed_out = False
        timer = threading.Timer(timeout_s, lambda: _kill_group(proc.pid))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timed_out = not timer.is_alive() and time.monotonic() - t0 >= timeout_s
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        _kill_group(proc.pid)  # nothing the CLI started may outlive it
        err.seek(0)
        stderr = err.read()[-20000:].decode("utf-8", "replace")
    return proc.returncode, stderr, timed_out, usage.ru_maxrss / 1024, time.monotonic() - t0


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_mutant(m: Mutant, work: Path, profile: bool | None = None) -> list[Run]:
    """inspect, then profile when inspect accepted the file (or when `profile` is True)."""
    folder = work / m.id
    path = m.write(folder)
    runs: list[Run] = []
    commands = [["inspect", path.name, *CLI_LIMITS]]
    try:
        for cmd in commands:
            rc, stderr, timed_out, rss, wall = run_cli(cmd, folder)
            cls = classify(rc, stderr, timed_out, rss)
            runs.append(Run(m.id, m.fmt, m.kind, cmd[0], cls, rc, round(wall, 2), round(rss, 1),
                            stderr[-2000:]))
            if cmd[0] == "inspect" and (profile or (profile is None and cls == "ok")):
                commands.append(["profile", path.name, "--iterations", "3", "--warmup", "1",
                                 "--no-samplers", *CLI_LIMITS])
    finally:
        if not any(r.cls in FAILURES for r in runs):
            shutil.rmtree(folder, ignore_errors=True)
    return runs


def _keep_failure(m: Mutant, runs: list[Run], work: Path, out: Path) -> None:
    dest = out / "failures" / m.id
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(work / m.id, dest, symlinks=True)
    (dest / "runs.json").write_text(json.dumps([asdict(r) for r in runs], indent=1))
    (dest / "repro.txt").write_text(
        "\n".join(f"cd {dest} && modeldeck {r.command} {m.main}" for r in runs) + "\n")


def campaign(count: int, out: Path | None, jobs: int = 2, base_seed: int = 0,
             formats: set[str] | None = None, weights: dict[str, float] | None = None,
             profile_sample: float = 0.1, progress: bool = False) -> dict:
    """Generate `count` mutants, run them on `jobs` threads, return (and write) the summary."""
    import random

    t0 = time.monotonic()
    seeds = build_seeds(formats)
    items = plan(seeds, count, base_seed, weights)
    pick = random.Random(base_seed)
    extra_profile = {f"{s.name}-{i}" for s, i in items if pick.random() < profile_sample}
    work = Path(tempfile.mkdtemp(prefix="modeldeck-fuzz-"))
    runs: list[Run] = []
    lock = threading.Lock()
    done = [0]

    def one(item: tuple[Seed, int]) -> list[Run]:
        m = make_mutant(item[0], item[1], base_seed)
        rs = run_mutant(m, work, profile=True if m.id in extra_profile else None)
        with lock:
            runs.extend(rs)
            if out is not None and any(r.cls in FAILURES for r in rs):
                _keep_failure(m, rs, work, out)
            done[0] += 1
            if progress and done[0] % 50 == 0:
                print(f"  {done[0]}/{count} files, {len(runs)} runs, "
                      f"{sum(r.cls in FAILURES for r in runs)} failing, "
                      f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        return rs

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, items))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(runs, count, time.monotonic() - t0, jobs, base_seed)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        (out / "runs.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in runs))
    return summary


def summarize(runs: list[Run], files: int, wall_s: float, jobs: int, base_seed: int) -> dict:
    def table(key) -> dict:
        t: dict[str, Counter] = {}
        for r in runs:
            t.setdefault(key(r), Counter())[r.cls] += 1
        return {k: dict(v) for k, v in sorted(t.items())}

    fails = [{"id": r.id, "command": r.command, "class": r.cls, "kind": r.kind,
              "stderr": r.stderr_tail[-600:]} for r in runs if r.cls in FAILURES]
    return {
        "files": files, "runs": len(runs), "wall_s": round(wall_s, 1), "jobs": jobs,
        "seed": base_seed, "classes": dict(Counter(r.cls for r in runs)),
        "failures": len(fails), "by_format": table(lambda r: r.fmt),
        "by_command": table(lambda r: r.command),
        "by_mutator": table(lambda r: r.kind.split("+")[0]),
        "max_rss_mb": max((r.max_rss_mb for r in runs), default=0.0),
        "slowest_s": max((r.wall_s for r in runs), default=0.0),
        "failed_runs": fails,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--out", type=Path, default=Path("build/fuzz"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--formats", default="onnx,openvino,tflite,torch")
    p.add_argument("--torch-weight", type=float, default=0.25,
                   help="relative share of torch seeds (each torch run costs ~10 s of imports)")
    p.add_argument("--profile-sample", type=float, default=0.1,
                   help="share of refused files also run through profile")
    a = p.parse_args(argv)
    s = campaign(a.count, a.out, a.jobs, a.seed, set(a.formats.split(",")),
                 {"torch": a.torch_weight}, a.profile_sample, progress=True)
    print(json.dumps({k: v for k, v in s.items() if k != "failed_runs"}, indent=1))
    print(f"{s['failures']} failing runs; kept under {a.out / 'failures'}")
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
