"""One connection to a target: host key checks, the cache on the target, one worker job.

Over a single SSH connection (asyncssh): a helper command says where the cache is and what it
already holds, SFTP sends what is missing (engine, model, data; keyed by sha256, written under a
temporary name and renamed, so a run cut short never leaves a half file that looks complete),
then the worker runs as `python -m app.jobs.worker` in a job folder, speaking the same JSON Lines
protocol as a local one. Nothing listens on the target: it is a command of the ssh session.

Known pitfalls designed around (asyncssh's tracker): without a PTY a remote process can outlive
the connection, so the worker leads its own process group under a keeper (app.targets.shim)
that ends the group when the connection closes, when its ssh session goes, or when the relay's
heartbeats stop (a link that died silently: the target's sshd may not notice for hours); the
pids are in the job folder's worker.pid, and the group is killed over the connection when a job
ends without the worker exiting (a signal over the channel needs OpenSSH >= 7.9 on the target,
so a `kill` command does it instead); keepalives find a dead link on the desktop's side.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shlex
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.targets.config import Target, TargetError
from app.targets.engine import Engine, build_engine, sha256_file

log = logging.getLogger(__name__)

KEEPALIVE_S = 5.0  # a probe every 5 s; 3 unanswered ones and the link counts as dead
KEEPALIVE_MAX = 3
CONNECT_TIMEOUT_S = 20.0
HEARTBEAT_EVERY_S = 5.0  # to the worker's keeper on the target (app.targets.shim)
HEARTBEAT_TIMEOUT_S = 30.0  # the keeper ends the worker when heartbeats stop this long
Emit = Callable[[dict[str, Any]], None]

# Runs on the target with its own Python (nothing of ours needed): where the cache is, what it
# holds, the machine's memory; removes job folders whose worker is gone (a run cut off by a
# dropped link could not clean up after itself).
HELLO = r"""
import json, os, shutil, sys, signal, time
req = json.loads(sys.stdin.readline())
cache = os.path.abspath(os.path.expanduser(req["cache"]))
for sub in ("engine", "blobs", "jobs", "outputs"):
    os.makedirs(os.path.join(cache, sub), exist_ok=True)
have = [k for k in req["keys"] if os.path.exists(os.path.join(cache, k, ".complete"))]
stale = []
jobs = os.path.join(cache, "jobs")
for name in os.listdir(jobs):
    d = os.path.join(jobs, name)
    try:
        pid = int(open(os.path.join(d, "worker.pid")).read().split()[0])
        os.kill(pid, 0)
        try:  # a zombie nobody reaped yet has ended all the same
            zombie = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            zombie = False
        if not zombie:
            continue  # still running (another run of a sweep, say)
    except (OSError, ValueError, IndexError):
        pass
    shutil.rmtree(d, ignore_errors=True)
    stale.append(name)
# output folders a lost link left behind (a finished job's is fetched within seconds)
outs = os.path.join(cache, "outputs")
for name in os.listdir(outs):
    d = os.path.join(outs, name)
    try:
        old = time.time() - os.path.getmtime(d) > req.get("outputs_max_age_s", 3600)
    except OSError:
        continue
    if old and not os.path.isdir(os.path.join(jobs, name)):
        shutil.rmtree(d, ignore_errors=True)
# engine versions: keep the newest few (each is ~1 MB; every source change makes one)
eng = os.path.join(cache, "engine")
olds = sorted((d for d in os.listdir(eng) if os.path.isdir(os.path.join(eng, d))
               and "engine/" + d not in req["keys"]),
              key=lambda d: os.path.getmtime(os.path.join(eng, d)), reverse=True)
for d in olds[req.get("keep_engines", 4):]:
    if ".tmp-" not in d:
        shutil.rmtree(os.path.join(eng, d), ignore_errors=True)
try:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
except (ValueError, OSError, AttributeError):
    mem = 0
import importlib.util
missing = [m for m in req.get("modules", []) if importlib.util.find_spec(m) is None]
print(json.dumps({"cache": cache, "have": have, "stale": stale, "mem_bytes": mem,
                  "missing": missing, "version": list(sys.version_info[:2]),
                  "python": sys.version.split()[0], "executable": sys.executable}))
"""

# Unpacks the engine archive once into engine/<sha256>/ (a temporary name, then a rename).
UNPACK = r"""
import os, shutil, sys, zipfile
zpath, dest = sys.argv[1], sys.argv[2]
tmp = dest + ".tmp-" + str(os.getpid())
with zipfile.ZipFile(zpath) as z:
    z.extractall(tmp)
open(os.path.join(tmp, ".complete"), "w").close()
try:
    os.rename(tmp, dest)
except OSError:  # another run unpacked it first
    shutil.rmtree(tmp, ignore_errors=True)
os.unlink(zpath)
"""


@dataclass
class Blob:
    """Local files that travel together (a model and its weights file), keyed by their hashes."""

    files: list[Path]
    key: str  # blobs/<sha256 of names and contents>

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files)


@dataclass
class TransferStats:
    connect_s: float = 0.0
    check_s: float = 0.0
    transfer_s: float = 0.0
    sent_bytes: int = 0
    sent_files: int = 0
    stale_jobs_removed: int = 0
    fetch_s: float = 0.0  # an output folder brought back (optimize's winner)
    fetched_bytes: int = 0
    fetched_files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"connect_s": round(self.connect_s, 4), "check_s": round(self.check_s, 4),
                "transfer_s": round(self.transfer_s, 4), "sent_bytes": self.sent_bytes,
                "sent_files": self.sent_files, "stale_jobs_removed": self.stale_jobs_removed,
                **({"fetch_s": round(self.fetch_s, 4), "fetched_bytes": self.fetched_bytes,
                    "fetched_files": self.fetched_files} if self.fetched_files else {})}


def companions(path: Path) -> list[Path]:
    """A model file and what must sit beside it (IR weights, ONNX external data)."""
    out = [path]
    if path.suffix.lower() == ".xml":
        out.append(path.with_suffix(".bin"))
    else:
        data = path.with_name(path.name + ".data")
        if data.is_file():
            out.append(data)
    return [p for p in out if p.is_file()]


def make_blob(path: Path) -> Blob:
    files = companions(path)
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return Blob(files=files, key="blobs/" + h.hexdigest())


# --- paths in job specs ----------------------------------------------------------------------
# Which fields of a job spec name local files that must go to the target (a value that is not
# an existing file, such as 'sample' or 'random', stays as it is).
SPEC_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    "profile": (("config", "model"), ("config", "inputs_npz")),
    "inspect": (("model",), ("inputs",)),
    "compare": (("models",), ("config", "model"), ("config", "inputs_npz"), ("eval",)),
    "devices": (),
    "optimize": (("optimize", "model"), ("optimize", "eval"), ("optimize", "calib")),
}


MIN_PYTHON = (3, 10)
BACKEND_MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torch": "torch"}


def needed_modules(spec: dict[str, Any]) -> list[str]:
    """What the worker will import for this job: checked on the target before anything is
    sent, so a target that was never set up says so instead of failing inside the worker."""
    if spec.get("job") == "devices":
        return ["numpy"]
    mods = ["numpy", "onnx"]
    backend = (spec.get("config") or {}).get("backend")
    if spec.get("job") == "profile" and backend in BACKEND_MODULES:
        mods.append(BACKEND_MODULES[backend])
    if spec.get("job") == "optimize":  # the baseline is FP32 on ONNX Runtime
        mods.append("onnxruntime")
        mods += [BACKEND_MODULES[b] for b in (spec.get("optimize") or {}).get("backends") or ()
                 if b in BACKEND_MODULES and BACKEND_MODULES[b] not in mods]
    return mods


def spec_files(spec: dict[str, Any]) -> list[tuple[tuple[str, ...], int | None, Path]]:
    """(field path, list index or None, local file) for every local file a spec names."""
    kind = spec.get("job")
    extra = tuple(tuple(k) for k in spec.get("remote_files", ()))  # a caller's own file fields
    if kind not in SPEC_FILES and not extra:
        raise TargetError(f"a {kind!r} job runs on this computer only (remote targets run "
                          f"{', '.join(SPEC_FILES)})")
    out = []
    for keys in SPEC_FILES.get(kind, ()) + extra:
        node: Any = spec
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        values = node if isinstance(node, list) else [node]
        for i, v in enumerate(values):
            if isinstance(v, str) and v and Path(v).is_file():
                out.append((keys, i if isinstance(node, list) else None, Path(v)))
            elif isinstance(v, str) and v and Path(v).is_dir():
                raise TargetError(f"{v}: a folder is not sent to a target; give a file (for "
                                  "calibration or evaluation data, an .npz)")
            elif isinstance(v, str) and v and (v.endswith((".onnx", ".xml", ".npz", ".pt",
                                                          ".pt2", ".tflite"))):
                raise TargetError(f"{v}: no such file on this computer (it is sent to the "
                                  "target from here)")
    return out


def _set(spec: dict[str, Any], keys: tuple[str, ...], index: int | None, value: str) -> None:
    node = spec
    for k in keys[:-1]:
        node = node[k]
    if index is None:
        node[keys[-1]] = value
    else:
        node[keys[-1]][index] = value


def _copy(spec: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(spec))


# --- connecting ------------------------------------------------------------------------------

def known_hosts_path() -> Path:
    return Path(os.path.expanduser("~")) / ".ssh" / "known_hosts"


def host_pattern(host: str, port: int | None) -> str:
    return host if not port or port == 22 else f"[{host}]:{port}"


def _connect_kwargs(target: Target) -> dict[str, Any]:
    kw: dict[str, Any] = {"keepalive_interval": KEEPALIVE_S,
                          "keepalive_count_max": KEEPALIVE_MAX,
                          "connect_timeout": CONNECT_TIMEOUT_S}
    if target.port:
        kw["port"] = target.port
    if target.user:
        kw["username"] = target.user
    if target.identity:
        path = os.path.expanduser(target.identity)
        if not os.path.isfile(path):
            raise TargetError(f"target {target.name}: the identity file {target.identity} does "
                              "not exist")
        kw["client_keys"] = [path]
    return kw


async def server_key(target: Target):
    import asyncssh

    kw = {k: v for k, v in _connect_kwargs(target).items() if k in ("port",)}
    return await asyncssh.get_server_host_key(target.host, **kw)


def describe_key(key) -> str:
    return f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"


def resolved_host(target: Target) -> tuple[str, int]:
    """The host and port ssh would use after ~/.ssh/config (HostName, Port, HostKeyAlias):
    known_hosts entries are looked up and pinned under these, as OpenSSH does."""
    import asyncssh

    cfg = Path(os.path.expanduser("~")) / ".ssh" / "config"
    kw: dict[str, Any] = {"host": target.host}
    if target.port:
        kw["port"] = target.port
    try:
        o = asyncssh.SSHClientConnectionOptions(config=[str(cfg)] if cfg.is_file() else None,
                                                **kw)
        return str(o.host_key_alias or o.host), int(o.port or 22)
    except (asyncssh.Error, OSError, ValueError) as e:
        log.debug("could not resolve %s through ~/.ssh/config: %s", target.host, e)
        return target.host, target.port or 22


async def _host_key_problem(target: Target) -> tuple[str, Any]:
    """After asyncssh refused the host key: 'unknown' (nothing pinned) or 'changed'."""
    import asyncssh

    key = await server_key(target)
    host, port = resolved_host(target)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
        addr = infos[0][4][0]
    except OSError:
        addr = ""
    pinned: list = []
    path = known_hosts_path()
    if path.is_file():
        try:
            pinned = list(asyncssh.match_known_hosts(str(path), host, addr, port)[0])
        except (ValueError, OSError) as e:
            log.warning("could not read %s: %s", path, e)
    return ("changed" if pinned else "unknown"), key


def pin_host_key(target: Target, key) -> Path:
    """Append the key to ~/.ssh/known_hosts, as ssh does after 'yes'."""
    path = known_hosts_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = key.export_public_key("openssh").decode().split()
    host, port = resolved_host(target)
    with open(path, "a") as f:
        f.write(f"{host_pattern(host, port)} {line[0]} {line[1]}\n")
    return path


class HostKeyError(TargetError):
    def __init__(self, message: str, kind: str, fingerprint: str):
        super().__init__(message)
        self.kind, self.fingerprint = kind, fingerprint


async def connect(target: Target, accept_new: bool = False,
                  confirm: Callable[[str], bool] | None = None):
    """An authenticated connection, host key verified against ~/.ssh/known_hosts.

    An unknown host key is pinned when accept_new is set or confirm(fingerprint) says yes;
    a key different from the pinned one is always refused."""
    import asyncssh

    kw = _connect_kwargs(target)
    where = f"target {target.name} ({target.url})"
    for attempt in (1, 2):
        try:
            return await asyncssh.connect(target.host, **kw)
        except asyncssh.HostKeyNotVerifiable as e:
            if attempt == 2:
                raise TargetError(f"{where}: host key refused after pinning it: {e}") from None
            try:
                kind, key = await _host_key_problem(target)
            except (OSError, asyncssh.Error) as e2:
                raise TargetError(f"{where}: cannot read the host key: {e2}") from None
            fp = describe_key(key)
            if kind == "changed":
                raise HostKeyError(
                    f"{where}: the host key has CHANGED since it was pinned in "
                    f"{known_hosts_path()} (it now shows {fp}). Refused: someone may be "
                    "intercepting the connection. If the machine was reinstalled, remove the old "
                    f"key with: ssh-keygen -R '{host_pattern(*resolved_host(target))}'",
                    "changed", fp) from None
            if not (accept_new or (confirm is not None and confirm(fp))):
                raise HostKeyError(f"{where}: its host key is not known yet ({fp}); confirm "
                                   "it once before using this target", "unknown", fp) from None
            pin_host_key(target, key)
            log.info("pinned %s for %s", fp, where)
        except asyncssh.PermissionDenied:
            who = target.user or "your user name"
            raise TargetError(
                f"{where}: no key was accepted (agent, ~/.ssh/id_*, ~/.ssh/config"
                + (f", {target.identity}" if target.identity else "") + f"). Add your public "
                f"key to {who}'s ~/.ssh/authorized_keys on {target.host} (ssh-copy-id does "
                "that); passwords are never stored") from None
        except (asyncssh.Error, OSError, asyncio.TimeoutError) as e:
            reason = str(e) or type(e).__name__
            raise TargetError(f"cannot reach {where}: {reason}") from None
    raise AssertionError("unreachable")


# --- a session on the target -----------------------------------------------------------------

@dataclass
class RemoteJob:
    """What one remote job needs besides the spec; filled by Session.prepare."""

    spec: dict[str, Any]
    engine_dir: str
    job_dir: str
    local_of_remote: dict[str, str] = field(default_factory=dict)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (target's folder, local one)


class Session:
    """An open connection to one target and its cache."""

    def __init__(self, target: Target, conn, emit: Emit | None = None):
        self.target = target
        self.conn = conn
        self.emit = emit or (lambda e: None)
        self.stats = TransferStats()
        self.cache = ""
        self.mem_bytes = 0
        self.python_version = ""
        self.lost: BaseException | None = None
        self._beats: list[asyncio.Task] = []

    @classmethod
    async def open(cls, target: Target, emit: Emit | None = None, accept_new: bool = False
                   ) -> Session:
        t0 = time.perf_counter()
        conn = await connect(target, accept_new=accept_new)
        s = cls(target, conn, emit)
        s.stats.connect_s = time.perf_counter() - t0
        return s

    async def close(self) -> None:
        try:
            self.conn.close()
            await asyncio.wait_for(self.conn.wait_closed(), 5)
        except Exception:  # closing a dead link: nothing left to do
            pass

    async def py(self, code: str, *args: str, stdin: str | None = None, timeout: float = 120
                 ) -> str:
        """Run a snippet with the target's Python; its stdout, or a clear error."""
        cmd = " ".join(shlex.quote(a) for a in (self.target.python, "-c", code, *args))
        res = await asyncio.wait_for(self.conn.run(cmd, input=stdin, check=False), timeout)
        if res.exit_status != 0:
            err = (res.stderr or "").strip().splitlines()[-3:]
            if res.exit_status == 127:
                raise TargetError(f"target {self.target.name}: no Python at "
                                  f"{self.target.python!r} (exit 127: {' '.join(err)}); set one "
                                  "with the target's Python path, or set the target up")
            raise TargetError(f"target {self.target.name}: a helper failed (exit "
                              f"{res.exit_status}): {' / '.join(err) or 'no message'}")
        return str(res.stdout)

    async def hello(self, keys: list[str], modules: list[str] | None = None) -> set[str]:
        t0 = time.perf_counter()
        out = json.loads(await self.py(HELLO, stdin=json.dumps(
            {"cache": self.target.cache_dir, "keys": keys, "modules": modules or []}) + "\n"))
        where = f"target {self.target.name}"
        if tuple(out.get("version") or (3, 10)) < MIN_PYTHON:
            raise TargetError(f"{where}: Python {out.get('python')} at {self.target.python} is "
                              f"too old (the engine needs {'.'.join(map(str, MIN_PYTHON))} or "
                              "newer): give the target a newer Python")
        if out.get("missing"):
            raise TargetError(f"{where}: {', '.join(out['missing'])} not installed for "
                              f"{self.target.python}: set the target up with the backends it "
                              "should run")
        self.cache = out["cache"]
        self.mem_bytes = int(out.get("mem_bytes") or 0)
        self.python_version = out.get("python", "")
        self.stats.stale_jobs_removed = len(out.get("stale", []))
        self.stats.check_s += time.perf_counter() - t0
        return set(out["have"])

    async def prepare(self, spec: dict[str, Any], engine: Engine | None = None) -> RemoteJob:
        """Send what the target lacks; the spec with the target's paths."""
        engine = engine or build_engine()
        files = spec_files(spec)
        blobs = {p: make_blob(p) for _, _, p in files}
        engine_key = f"engine/{engine.sha256}"
        have = await self.hello([engine_key, *{b.key for b in blobs.values()}],
                                needed_modules(spec))
        missing_blobs = {b.key: b for b in blobs.values() if b.key not in have}
        todo = (0 if engine_key in have else len(engine.data)) + sum(
            b.size for b in missing_blobs.values())
        if todo:
            t0 = time.perf_counter()
            self.emit({"event": "stage", "stage": "transfer",
                       "message": f"sending {_mb(todo)} to {self.target.name}"})
            async with self.conn.start_sftp_client() as sftp:
                done = 0

                def progress(size: int) -> None:
                    self.emit({"event": "progress", "frac": min(1.0, (done + size) / todo),
                               "message": f"sending to {self.target.name}"})

                if engine_key not in have:
                    await self._send_engine(sftp, engine)
                    done += len(engine.data)
                    progress(0)
                for blob in missing_blobs.values():
                    await self._send_blob(sftp, blob, lambda s, d=done: progress(s))
                    done += blob.size
            self.stats.transfer_s += time.perf_counter() - t0
        job = RemoteJob(spec=_copy(spec), engine_dir=f"{self.cache}/{engine_key}",
                        job_dir=f"{self.cache}/jobs/{uuid.uuid4().hex}")
        for keys, index, path in files:
            remote = f"{self.cache}/{blobs[path].key}/{path.name}"
            _set(job.spec, keys, index, remote)
            job.local_of_remote[remote] = str(path)
        job_id = job.job_dir.rsplit("/", 1)[-1]
        for i, keys in enumerate(spec.get("remote_outputs") or ()):
            # a fresh folder outside the job folder (the keeper removes that one when the
            # worker exits, before the relay could fetch it); app.targets.fetch brings it home
            node: Any = spec
            for k in keys:
                node = node.get(k) if isinstance(node, dict) else None
            if not isinstance(node, str) or not node:
                continue
            remote = f"{self.cache}/outputs/{job_id}" + (f"-{i}" if i else "")
            _set(job.spec, tuple(keys), None, remote)
            job.outputs.append((remote, str(Path(node).expanduser().absolute())))
            job.local_of_remote[remote] = job.outputs[-1][1]
        if spec.get("job") == "optimize" and isinstance(job.spec.get("optimize"), dict):
            # builds and measurements are kept with the target's cache, keyed by its machine
            job.spec["optimize"]["cache_dir"] = f"{self.cache}/optimize"
        return job

    async def _send_engine(self, sftp, engine: Engine) -> None:
        tmp = f"{self.cache}/engine/{engine.sha256}.zip.{uuid.uuid4().hex[:8]}"
        async with sftp.open(tmp, "wb") as f:
            await f.write(engine.data)
        self.stats.sent_bytes += len(engine.data)
        self.stats.sent_files += 1
        await self.py(UNPACK, tmp, f"{self.cache}/engine/{engine.sha256}")

    async def _send_blob(self, sftp, blob: Blob, progress: Callable[[int], None]) -> None:
        dest = f"{self.cache}/{blob.key}"
        tmp = f"{dest}.tmp-{uuid.uuid4().hex[:8]}"
        await sftp.makedirs(tmp, exist_ok=True)
        sent = 0
        for p in blob.files:
            base = sent

            def handler(_src: bytes, _dst: bytes, copied: int, _total: int) -> None:
                progress(base + copied)

            await sftp.put(str(p), f"{tmp}/{p.name}", progress_handler=handler)
            sent += p.stat().st_size
            self.stats.sent_files += 1
        self.stats.sent_bytes += sent
        async with sftp.open(f"{tmp}/.complete", "wb"):
            pass
        try:
            await sftp.rename(tmp, dest)
        except Exception:  # another run sent it meanwhile: keep theirs
            await self.conn.run(f"rm -rf {shlex.quote(tmp)}", check=False)

    async def start_worker(self, job: RemoteJob):
        """The remote worker under its keeper (app.targets.shim), heartbeats going to it;
        stdin/stdout/stderr as text streams."""
        from app.targets.shim import HEARTBEAT, HEARTBEAT_ENV

        q = shlex.quote
        cmd = (f"mkdir -p {q(job.job_dir)} && cd {q(job.job_dir)} && "
               f"exec env PYTHONPATH={q(job.engine_dir)} PYTHONUNBUFFERED=1 "
               f"MODELDECK_LOG={q(os.environ.get('MODELDECK_LOG', 'WARNING'))} "
               f"{HEARTBEAT_ENV}={q(os.environ.get(HEARTBEAT_ENV, str(HEARTBEAT_TIMEOUT_S)))} "
               f"{q(self.target.python)} -m app.targets.shim")
        proc = await self.conn.create_process(cmd, encoding="utf-8", errors="replace")

        async def beat() -> None:
            line = HEARTBEAT.decode() + "\n"
            while not proc.stdin.is_closing():
                proc.stdin.write(line)
                await asyncio.sleep(HEARTBEAT_EVERY_S)

        self._beats.append(asyncio.create_task(beat()))
        return proc

    async def end_job(self, job: RemoteJob, exited: bool) -> None:
        """Kill the worker's group if it is still there; remove the job folder."""
        q = shlex.quote
        pidfile = q(f"{job.job_dir}/worker.pid")
        for t in self._beats:
            t.cancel()
        kill = "" if exited else (f"read w k < {pidfile} 2>/dev/null && "
                                  "{ kill -KILL -- -$w 2>/dev/null; kill -KILL $w $k "
                                  "2>/dev/null; }; ")
        try:
            await asyncio.wait_for(self.conn.run(f"{kill}rm -rf {q(job.job_dir)}", check=False),
                                   10)
        except Exception as e:  # the link is gone: the worker's own watchdog ends it
            log.debug("could not clean up %s: %s", job.job_dir, e)


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


def remap_paths(obj: Any, mapping: dict[str, str]) -> Any:
    """The target's cache paths in a result, back to this computer's names for them."""
    if not mapping:
        return obj
    text = json.dumps(obj)
    for remote, local in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(json.dumps(remote)[1:-1], json.dumps(local)[1:-1])
    return json.loads(text)
