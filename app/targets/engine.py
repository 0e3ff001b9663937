"""The engine a target runs: the worker and the engine packages in one archive, by sha256.

The archive holds app/ (without the window), converters/, profilers/ and the sample data: the
Python sources only, in a fixed order with fixed timestamps, so the same sources always give the
same bytes and the same hash. On the target it is unpacked once into engine/<sha256>/ (a real
folder, so Python caches bytecode there and later starts are fast); a second run finds it there
and sends nothing.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "converters", "profilers", "resources")
SKIP_DIRS = {"__pycache__", "gui"}  # the window never runs on a target
DATA_FILES = ("resources/samples/digits_test.npz",)  # 'sample' calibration / evaluation data
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Engine:
    data: bytes
    sha256: str
    files: int

    @property
    def short(self) -> str:
        return self.sha256[:12]


def _sources(root: Path) -> list[Path]:
    out: list[Path] = []
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(root / pkg):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    out.extend(root / f for f in DATA_FILES if (root / f).is_file())
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


_cache: dict[tuple, Engine] = {}


def build_engine(root: Path = REPO) -> Engine:
    """The engine archive of these sources (memoised while no source file changed)."""
    files = _sources(root)
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    if stamp in _cache:
        return _cache[stamp]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in files:
            info = zipfile.ZipInfo(p.relative_to(root).as_posix(), FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, p.read_bytes())
    data = buf.getvalue()
    engine = Engine(data=data, sha256=hashlib.sha256(data).hexdigest(), files=len(files))
    _cache.clear()
    _cache[stamp] = engine
    return engine


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
