"""Model formats: a cheap sniff (no framework import) and a costly load (runs in a worker).

Add a format: one module here with a `@register_format` class, imported at the bottom of this
file, and one test. `open_model()` is the single entry point; it turns every kind of bad file
into a ModelLoadError with a message that says what is wrong and what to do.
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from converters.errors import ModelLoadError
from converters.graph import ModelGraph

HEAD_BYTES = 4096


@dataclass(frozen=True)
class Trust:
    """What the user allowed. Pickles, TorchScript and torch.export programs carry code:
    loading, probing or running them runs that code, so only with `run_code` (the user's
    consent). `allow_pickle` is the older name of the same consent."""

    run_code: bool = False
    allow_pickle: bool = False

    def __post_init__(self) -> None:
        both = self.run_code or self.allow_pickle
        object.__setattr__(self, "run_code", both)
        object.__setattr__(self, "allow_pickle", both)


_CONSENT: ContextVar[Trust] = ContextVar("modeldeck_consent", default=Trust())


def current_trust() -> Trust:
    """The consent the running job was given (a worker runs one job for one consent)."""
    return _CONSENT.get()


@contextmanager
def consent(run_code: bool) -> Iterator[None]:
    """Run a job's body with (or without) consent to run model code; readers and backends
    deep inside (verification, passes) ask current_trust() instead of taking a parameter."""
    token = _CONSENT.set(Trust(run_code=bool(run_code)))
    try:
        yield
    finally:
        _CONSENT.reset(token)


class Format:
    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""
    # The reader loads the whole file into memory: bigger files are refused before reading.
    max_file_bytes: ClassVar[int | None] = None

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        """True when the content looks like this format. Cheap: no framework import."""
        raise NotImplementedError

    def load(self, path: Path, trust: Trust,
             input_shapes: dict[str, list[int]] | None = None) -> ModelGraph:
        """Parse the model into a ModelGraph. Raises ModelLoadError on bad input.

        `input_shapes` (a resolved workload's sizes) fixes the inputs' dims so that every
        derived shape, and so every MAC count, is computed at those sizes."""
        raise NotImplementedError


FORMATS: dict[str, type[Format]] = {}


def register_format(cls: type[Format]) -> type[Format]:
    if cls.name in FORMATS:
        raise ValueError(f"format {cls.name!r} registered twice")
    FORMATS[cls.name] = cls
    return cls


def sha256_of(paths: Iterable[Path]) -> str:
    """One digest over the model file and its companions (weights .bin, external data)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _junk_reason(path: Path, head: bytes) -> str | None:
    """Files that are no model at all, whatever their suffix claims."""
    if not head:
        return f"{path.name} is empty (0 bytes): the download or copy did not finish"
    if head.startswith(b"version https://git-lfs.github.com/spec"):
        return (f"{path.name} is a Git LFS pointer, not the model itself: "
                "run `git lfs pull` in its repository to fetch the real file")
    text = head[:512].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text[:200]:
        return (f"{path.name} is an HTML page, not a model: the link probably led to a web page "
                "(login, redirect or error page); download the raw file instead")
    return None


def _kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def require_regular_file(path: Path, role: str = "model") -> os.stat_result:
    """Stat `path` (symlinks followed) and refuse anything but a regular file, before opening it.

    Opening a FIFO blocks forever and a link to /dev/zero never ends; only regular files are
    models (or companions: IR weights, ONNX external data). `role` names the file in the message.
    """
    path = Path(path)
    try:
        st = os.stat(path)  # follows symlinks: the target is what would be read
    except FileNotFoundError:
        if os.path.islink(path):
            raise ModelLoadError(f"{path}: the {role} is a symbolic link to a missing file "
                                 f"({os.readlink(path)})") from None
        raise ModelLoadError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror}") from e
    if stat.S_ISDIR(st.st_mode):
        raise ModelLoadError(f"{path} is a folder: choose the model file inside it")
    if not stat.S_ISREG(st.st_mode):
        via = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        raise ModelLoadError(f"{path.name}{via} is {_kind_of(st.st_mode)}, not a regular file: "
                             f"only regular files are read as a {role}")
    return st


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def check_file_size(path: Path, size: int, limit: int | None, what: str) -> None:
    """Refuse a file too large for a reader that holds it whole in memory."""
    if limit is not None and size > limit:
        raise ModelLoadError(
            f"{Path(path).name}: file is {_gb(size)}; {what} files are read whole into memory and "
            f"ModelDeck refuses more than {_gb(limit)} (a damaged file, or a model that should "
            "keep its weights in a separate file)")


def detect_format(path: Path) -> type[Format]:
    """Pick the format by content first, then by suffix. Raises ModelLoadError."""
    path = Path(path)
    require_regular_file(path)
    try:
        # O_NONBLOCK: should the path turn into a FIFO after the check, this still returns.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ModelLoadError(f"{path.name} is not a regular file: only regular files "
                                     "are read as a model")
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror}") from e
    reason = _junk_reason(path, head)
    if reason:
        raise ModelLoadError(reason)
    for fmt in FORMATS.values():
        if fmt.sniff(path, head):
            return fmt
    suffix = path.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt  # its loader explains what is wrong with the content
    known = ", ".join(s for f in FORMATS.values() for s in f.suffixes)
    raise ModelLoadError(f"{path.name}: not a model format ModelDeck reads (supported: {known})")


def open_model(path: str | Path, trust: Trust = Trust(),
               input_shapes: dict[str, list[int]] | None = None) -> ModelGraph:
    path = Path(path)
    fmt = detect_format(path)
    check_file_size(path, require_regular_file(path).st_size, fmt.max_file_bytes,
                    fmt.description or fmt.name)
    return fmt().load(path, trust, input_shapes)


# Registration happens on import; these modules import no framework at module level.
from converters.formats import onnx_format, openvino_format, tflite_format, torch_format  # noqa: E402,F401
