"""What a target has: Python, runtimes, devices, CPU and its instruction sets, memory, disk.

The facts come from a snippet run by the target's own Python (works before `setup`: nothing of
ours is needed, no runtime is imported, only package metadata read); the devices from the
engine's "devices" job when numpy is there to run it. Also `targets setup`: a venv on the
target with only what the chosen backends need.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.targets.config import Target, TargetError
from app.targets.remote import Session, connect

FACTS = r"""
import json, os, platform, shutil, sys
from importlib import metadata
out = {"python": sys.version.split()[0], "executable": sys.executable,
       "platform": platform.platform(), "machine": platform.machine(),
       "cpu_count": os.cpu_count()}
pkgs = {}
for name in ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "torch", "psutil",
             "nncf"):
    try:
        pkgs[name] = metadata.version(name)
    except Exception:
        pass
out["packages"] = pkgs
cpu, flags = "", set()
try:
    for line in open("/proc/cpuinfo"):
        k, _, v = line.partition(":")
        k = k.strip()
        if k in ("model name", "Hardware", "Model") and not cpu:
            cpu = v.strip()
        elif k in ("flags", "Features") and not flags:
            flags = set(v.split())
except OSError:
    pass
out["cpu_model"] = cpu or platform.processor()
want = ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
        "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "asimddp",
        "sve", "i8mm", "bf16"]
out["isa"] = [f for f in want if f in flags]
mem = {}
try:
    for line in open("/proc/meminfo"):
        k, _, v = line.partition(":")
        if k in ("MemTotal", "MemAvailable"):
            mem[k] = int(v.split()[0]) * 1024
except OSError:
    pass
out["mem_total_bytes"] = mem.get("MemTotal")
out["mem_available_bytes"] = mem.get("MemAvailable")
cache = os.path.abspath(os.path.expanduser(sys.argv[1]))
p = cache
while not os.path.exists(p):
    p = os.path.dirname(p)
du = shutil.disk_usage(p)
out["cache_dir"] = cache
out["disk_free_bytes"] = du.free
out["openssh"] = os.popen("ssh -V 2>&1").read().strip()
print(json.dumps(out))
"""

BASE_PACKAGES = ("numpy", "onnx", "psutil")  # the engine itself: graphs, workloads, samplers
BACKEND_PACKAGES = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",),
                    "torch": ("torch",)}
REPO = Path(__file__).resolve().parents[2]


async def _run_devices(session: Session) -> list[dict[str, Any]]:
    job = await session.prepare({"job": "devices"})
    proc = await session.start_worker(job)
    proc.stdin.write(json.dumps(job.spec) + "\n")
    result, error = None, None
    try:
        async for line in proc.stdout:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == "result":
                result = e["result"]
            elif e.get("event") == "error":
                error = e.get("message")
        await proc.wait_closed()
    finally:
        await session.end_job(job, proc.exit_status is not None)
    if result is None:
        raise TargetError(f"the devices probe failed on {session.target.name}: "
                          f"{error or 'no result'}")
    return result["backends"]


async def _check(target: Target, accept_new: bool, confirm) -> dict[str, Any]:
    t0 = time.perf_counter()
    conn = await connect(target, accept_new=accept_new, confirm=confirm)
    session = Session(target, conn)
    session.stats.connect_s = time.perf_counter() - t0
    try:
        facts = json.loads(await session.py(FACTS, target.cache_dir))
        facts["reachable"] = True
        facts["connect_s"] = round(session.stats.connect_s, 3)
        facts["target"] = target.to_dict()
        if "numpy" in facts["packages"] and "onnx" in facts["packages"]:
            facts["backends"] = await _run_devices(session)
        else:
            facts["backends"] = []
            facts["note"] = ("the engine cannot run yet: numpy and onnx are missing from "
                             f"{target.python}; set the target up to install them")
        return facts
    finally:
        await session.close()


def check_target(target: Target, accept_new: bool = False,
                 confirm: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Connect (pinning an unknown host key when accepted) and report what the target has."""
    return asyncio.run(_check(target, accept_new, confirm))


# --- setup -----------------------------------------------------------------------------------

def packages_for(backends: tuple[str, ...]) -> list[str]:
    unknown = [b for b in backends if b not in BACKEND_PACKAGES]
    if unknown:
        raise TargetError(f"unknown backend(s) {', '.join(unknown)}: choose from "
                          f"{', '.join(BACKEND_PACKAGES)}")
    out = list(BASE_PACKAGES)
    for b in backends:
        out.extend(BACKEND_PACKAGES[b])
    return out


async def _setup(target: Target, backends: tuple[str, ...], system_site_packages: bool,
                 pinned: bool, log: Callable[[str], None]) -> Target:
    pkgs = packages_for(backends)
    session = await Session.open(target)
    q = shlex.quote
    try:
        await session.hello([])
        venv = f"{session.cache}/venv"
        args = ["-m", "venv", *(["--system-site-packages"] if system_site_packages else []),
                venv]
        pip = [f"{venv}/bin/python", "-m", "pip", "install", "--disable-pip-version-check",
               "--progress-bar", "off"]
        if pinned:
            remote_c = f"{session.cache}/constraints.txt"
            async with session.conn.start_sftp_client() as sftp:
                await sftp.put(str(REPO / "constraints.txt"), remote_c)
            pip += ["-c", remote_c]
        base = str(target.extra.get("base_python") or target.python)
        cmd = (" ".join(q(a) for a in (base, *args)) + " && "
               + " ".join(q(a) for a in (*pip, *pkgs)) + " 2>&1")
        log(f"on {target.name}: {base} -m venv {venv}; pip install {' '.join(pkgs)}"
            + (" (versions pinned as on this computer)" if pinned else ""))
        proc = await session.conn.create_process(cmd, encoding="utf-8", errors="replace")
        tail: list[str] = []
        async for line in proc.stdout:
            line = line.rstrip()
            tail = (tail + [line])[-15:]
            if line.startswith(("Collecting", "Successfully", "ERROR", "Requirement already")):
                log("  " + line)
        await proc.wait_closed()
        if proc.exit_status != 0:
            hint = (" (a pinned version may have no build for this target: try again "
                    "unpinned)" if pinned else "")
            raise TargetError(f"setting up {target.name} failed (exit {proc.exit_status})"
                              f"{hint}:\n  " + "\n  ".join(tail))
        return target.with_(python=f"{venv}/bin/python", backends=tuple(dict.fromkeys(backends)),
                            extra={**target.extra, "base_python": base})
    finally:
        await session.close()


def setup_target(target: Target, backends: tuple[str, ...] = ("onnxruntime",),
                 system_site_packages: bool = False, pinned: bool = True,
                 log: Callable[[str], None] = print) -> Target:
    """A venv on the target with only the chosen backends' packages; the updated Target
    (its python is the venv's) for the caller to save."""
    return asyncio.run(_setup(target, tuple(backends), system_site_packages, pinned, log))
