"""Write sandbox for a worker that runs code a model file brought (TorchScript, .pt2, pickles).

Consent lets the file's code run; it does not have to let it write anywhere. On Linux the worker
restricts itself with Landlock before the job starts: reads stay allowed everywhere, writes
(create, overwrite, truncate, delete, rename, link) only inside the job's folders: a private
scratch folder (TMPDIR for everything the job writes on the side), the folder a conversion
writes its output to, /dev/null and the accelerators' device files (CUDA, NVML and OpenVINO's
GPU/NPU open them read-write to reach their drivers). The rule holds for the process and every
thread or child it starts afterwards, and cannot be lifted.

Landlock needs Linux 5.13+ with Landlock enabled (`lsm=...,landlock`); elsewhere the job runs
without a write sandbox and the report says so. Either way the report records which protection
was in force (`describe()`), so a figure never hides how it was obtained.

Only syscalls through ctypes: no dependency, nothing to install.
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import logging
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Syscall numbers: the same on every architecture Landlock supports (unified numbering).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem access rights (include/uapi/linux/landlock.h).
WRITE_FILE = 1 << 1
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link/rename across folders
TRUNCATE = 1 << 14  # ABI 3
# Every right that changes the file system. Read, list and execute stay unhandled: allowed.
_WRITES_V1 = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG
              | MAKE_SOCK | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM)
_FILE_RIGHTS = WRITE_FILE | TRUNCATE  # the write rights that apply to a file (not a folder)
# Device files a job may write to whatever it runs: /dev/null (a write there lands nowhere)
# and the accelerators' device nodes, which a runtime opens read-write to talk to its driver
# (NVIDIA: CUDA and NVML; AMD ROCm; Intel GPU and NPU for OpenVINO). A write to them reaches
# the driver, never a file, so they open no way around the rule.
_DEVICE_PATTERNS = ("null", "nvidia*", "nvidia-caps/*", "dri/*", "accel/*", "kfd")


def device_files(dev: Path = Path("/dev")) -> list[Path]:
    """The device files present on this machine that a job may write to."""
    return sorted({p for pattern in _DEVICE_PATTERNS for p in dev.glob(pattern)
                   if not p.is_dir()})


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]  # the ABI 1 size: later fields unused


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass(frozen=True)
class SandboxStatus:
    """What protected the job: recorded in its report."""

    mechanism: str  # "landlock" | "none"
    abi: int  # Landlock ABI version in force; 0: none
    writable: tuple[str, ...]  # folders (and device files) the job may write to
    reason: str = ""  # why there is no sandbox

    @property
    def active(self) -> bool:
        return self.mechanism != "none"

    def describe(self) -> str:
        if self.active:
            return f"{self.mechanism} v{self.abi}: writes limited to {', '.join(self.writable)}"
        return f"none: {self.reason}"


NOT_NEEDED = SandboxStatus("none", 0, (), "not needed: the job runs no code from the model file")


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.restype = ctypes.c_int
    return libc


def landlock_abi() -> tuple[int, str]:
    """(ABI version, "") when the kernel enforces Landlock; (0, why not) otherwise."""
    if sys.platform != "linux":
        return 0, f"no write sandbox on {platform.system()} (Landlock is Linux-only)"
    try:
        libc = _libc()
    except OSError as e:
        return 0, f"cannot reach the C library for Landlock: {e}"
    abi = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if abi >= 1:
        return int(abi), ""
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, (f"this kernel ({platform.release()}) has no Landlock (Linux 5.13+ built "
                   "with CONFIG_SECURITY_LANDLOCK)")
    if err == errno.EOPNOTSUPP:
        return 0, (f"Landlock is disabled on this kernel ({platform.release()}): add "
                   "'landlock' to the lsm= boot parameter")
    return 0, f"Landlock is not usable here: {os.strerror(err)}"


def _handled(abi: int) -> int:
    rights = _WRITES_V1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


def restrict_writes(writable: list[Path]) -> SandboxStatus:
    """Allow writes only beneath `writable` (and to /dev/null and accelerator device files),
    for this process from now on.

    Call it before starting threads: Landlock binds the calling thread and what it starts
    later. Returns the status to record; never raises for a kernel without Landlock.
    """
    abi, why = landlock_abi()
    if not abi:
        log.warning("no write sandbox: %s", why)
        return SandboxStatus("none", 0, (), why)
    libc = _libc()
    handled = _handled(abi)
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr),
                           ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return SandboxStatus("none", 0, (), _failed("create a Landlock ruleset"))
    allowed: list[str] = []
    try:
        targets = [(Path(p), handled) for p in writable]
        targets += [(p, handled & _FILE_RIGHTS) for p in device_files()]
        for path, rights in targets:
            if _add_rule(libc, ruleset, path, rights):
                allowed.append(str(path))
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return SandboxStatus("none", 0, (), _failed("set no_new_privs"))
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_long(ruleset),
                        ctypes.c_uint32(0)) != 0:
            return SandboxStatus("none", 0, (), _failed("restrict the worker with Landlock"))
    finally:
        os.close(ruleset)
    log.info("landlock v%d: writes limited to %s", abi, ", ".join(allowed))
    return SandboxStatus("landlock", abi, tuple(allowed))


def _add_rule(libc: Any, ruleset: int, path: Path, rights: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        log.warning("sandbox: cannot open %s for a rule: %s", path, e.strerror)
        return False
    try:
        rule = _PathBeneathAttr(rights, fd)
        if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_long(ruleset),
                        ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                        ctypes.c_uint32(0)) != 0:
            log.warning("sandbox: no rule for %s: %s", path, os.strerror(ctypes.get_errno()))
            return False
        return True
    finally:
        os.close(fd)


def _failed(what: str) -> str:
    return f"could not {what}: {os.strerror(ctypes.get_errno())}"


# --- the worker's side ------------------------------------------------------------------------

def runs_model_code(spec: dict[str, Any]) -> bool:
    """Whether the job was given consent to run code its model files carry."""
    for part in (spec, spec.get("config") or {}, spec.get("convert") or {}):
        if isinstance(part, dict) and (part.get("trust_code") or part.get("trust_pickle")):
            return True
    return False


def job_folders(spec: dict[str, Any]) -> list[Path]:
    """Folders the job itself writes to (besides its scratch folder): a conversion's output."""
    convert = spec.get("convert") or {}
    if spec.get("job") == "convert" and convert.get("output"):
        return [Path(convert["output"]).resolve().parent]
    if spec.get("job") == "optimize":  # its output folder and its build cache
        from app.optimize.cache import default_cache_dir

        opt = spec.get("optimize") or {}
        return [Path(opt.get("output_dir") or ".").resolve(),
                Path(opt.get("cache_dir") or default_cache_dir()).resolve()]
    return []


def _scratch_folder() -> Path:
    """A private temp folder for the job, used as TMPDIR by everything in the worker."""
    scratch = Path(tempfile.mkdtemp(prefix="modeldeck-job-"))
    os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = str(scratch)
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


# Devices whose runtimes talk to a driver through files besides the device nodes.
_ACCELERATORS = ("CUDA", "GPU", "TENSORRT", "NPU", "AUTO", "HETERO", "MULTI")


def on_accelerator(spec: dict[str, Any]) -> bool:
    """Whether the job runs on a GPU or NPU (by the device it names)."""
    devices = [spec.get("device"), (spec.get("config") or {}).get("device")]
    return any(str(d).upper().startswith(_ACCELERATORS) for d in devices if d)


def apply_for_job(spec: dict[str, Any]) -> SandboxStatus:
    """Sandbox the worker when its job may run model code; the status for the report.

    A job on an accelerator may also write to its own /proc/PID: the CUDA driver writes there
    when it starts, and without it cuInit fails under Landlock ('Error 304: OS call failed',
    seen on an NVIDIA H200; /dev, /sys, /run, /var, /tmp and the home folder did not matter).
    Files there change only this process."""
    if not runs_model_code(spec):
        return NOT_NEEDED
    folders = [_scratch_folder(), *job_folders(spec)]
    own_proc = Path(f"/proc/{os.getpid()}")
    if on_accelerator(spec) and own_proc.is_dir():
        folders.append(own_proc)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return restrict_writes(folders)


def record(result: Any, status: SandboxStatus, job: str) -> None:
    """Put the protection in force into the job's result (a profile's report: environment)."""
    if not isinstance(result, dict):
        return
    if job == "profile" and isinstance(result.get("environment"), dict):
        result["environment"]["sandbox"] = status.describe()
    else:
        result["sandbox"] = status.describe()
