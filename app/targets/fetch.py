"""Bringing a remote job's output folder home: `optimize --target` writes its winner on the target.

A job spec names its output folders in "remote_outputs" (key paths, like "remote_files" for
inputs). Session.prepare gives each one a fresh folder in the target's cache (outputs/<job id>),
outside the job folder the keeper removes when the worker exits. When the result arrives, the
relay lists the folder on the target with sha256s, fetches its files by SFTP into a temporary
folder beside the local one, checks every hash, rewrites the target's paths in the JSON files to
the local ones, writes the final result file, and only then moves the files into place: a link
lost halfway leaves nothing half-copied in the user's folder. The target's folder is removed
after; one left by a lost link is removed by a later connection (HELLO, after an hour). A
relay killed mid-fetch (a timeout, a cancel past its grace) leaves .NAME.part-<pid>-* beside the
folder: the next fetch into it removes those whose relay is gone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.targets.config import TargetError

log = logging.getLogger(__name__)

# Runs on the target: the folder's top-level regular files (subfolders such as .builds stay),
# each with its size and sha256.
LIST = r"""
import hashlib, json, os, sys
d = sys.argv[1]
out = []
for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
    p = os.path.join(d, name)
    if not os.path.isfile(p) or os.path.islink(p) or name.startswith("."):
        continue
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    out.append({"name": name, "size": os.path.getsize(p), "sha256": h.hexdigest()})
print(json.dumps(out))
"""

# What a job kind's result file is called in its output folder (rewritten with the final result,
# which names the target), and how its page is drawn again with the local paths.
RESULT_FILES = {"optimize": "optimize.json"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _redraw(kind: str, result: dict[str, Any], folder: Path) -> None:
    """The job's HTML page, drawn again from the final result (the target's one names the
    target's paths)."""
    if kind == "optimize" and (folder / "optimize.html").exists():
        try:
            from app.optimize.report import write_html

            write_html(result, folder / "optimize.html")
        except Exception as e:  # the JSON is the record; the page is a view of it
            log.warning("could not draw optimize.html again: %s", e)


def clear_stale_parts(dest: Path) -> None:
    """Folders a killed relay left beside dest (.NAME.part-<pid>-*: that pid is gone)."""
    for d in dest.parent.glob(f".{dest.name}.part-*"):
        try:
            pid = int(d.name.rsplit(".part-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
            continue  # a fetch under way
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def place(tmp: Path, dest: Path) -> None:
    """Move a fully fetched folder's files into dest (created if missing); each file is one
    rename, so dest never holds a partial file."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(tmp.iterdir()):
        os.replace(f, dest / f.name)
    tmp.rmdir()


async def fetch_outputs(session, job, result: dict[str, Any], remap: Callable[[Any], Any],
                        emit: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Fetch each of the job's output folders (job.outputs: (remote, local) pairs) into place;
    the files fetched (name, size, sha256 the target computed, local path).

    Raises what the link raises (OSError, asyncssh.Error) with nothing placed."""
    import shlex

    kind = str(job.spec.get("job"))
    fetched: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for remote, local in job.outputs:
        listing = json.loads(await session.py(LIST, remote))
        total = sum(int(f["size"]) for f in listing) or 1
        dest = Path(local).expanduser()
        dest.parent.mkdir(parents=True, exist_ok=True)
        clear_stale_parts(dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-{os.getpid()}-", dir=dest.parent))
        emit({"event": "stage", "stage": "fetch",
              "message": f"fetching {len(listing)} files from {session.target.name}"})
        try:
            done = 0
            async with session.conn.start_sftp_client() as sftp:
                for f in listing:
                    base = done

                    def handler(_s: bytes, _d: bytes, copied: int, _t: int, b: int = base) -> None:
                        emit({"event": "progress", "frac": min(1.0, (b + copied) / total),
                              "message": f"fetching from {session.target.name}"})

                    await sftp.get(f"{remote}/{f['name']}", str(tmp / f["name"]),
                                   progress_handler=handler)
                    done += int(f["size"])
            for f in listing:
                got = _sha256(tmp / f["name"])
                if got != f["sha256"]:
                    raise TargetError(f"{f['name']} arrived damaged (sha256 {got[:12]}, the target "
                                  f"has {f['sha256'][:12]})")
                if f["name"].endswith(".json") and f["name"] != RESULT_FILES.get(kind):
                    p = tmp / f["name"]  # recipes name the target's paths: the local ones
                    try:
                        p.write_text(json.dumps(remap(json.loads(p.read_text("utf-8"))),
                                                indent=2), encoding="utf-8")
                    except ValueError:
                        pass
                fetched.append({**f, "path": str(dest / f["name"])})
            session.stats.fetched_bytes += sum(int(f["size"]) for f in listing)
            session.stats.fetched_files += len(listing)
            session.stats.fetch_s = time.perf_counter() - t0
            where = result.get("target") if isinstance(result, dict) else None
            if isinstance(where, dict):  # the result file records what came back, with hashes
                where.update(session.stats.to_dict())
                where["fetched"] = [{k: f[k] for k in ("name", "size", "sha256")}
                                    for f in fetched]  # as the target had them
                where["cache_dir"] = session.cache  # paths under it name files there
            name = RESULT_FILES.get(kind)
            if name and (tmp / name).exists():
                (tmp / name).write_text(json.dumps(result, indent=2, default=str),
                                        encoding="utf-8")
                _redraw(kind, result, tmp)
            place(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        try:  # the target's copy is no longer needed
            await session.conn.run(f"rm -rf {shlex.quote(remote)}", check=False)
        except Exception as e:  # a later connection removes it (HELLO)
            log.debug("could not remove %s: %s", remote, e)
    session.stats.fetch_s = time.perf_counter() - t0
    return fetched
