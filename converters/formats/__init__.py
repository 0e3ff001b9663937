"""Model formats: a cheap sniff (no framework import) and a costly load (runs in a worker).

Add a format: one module here with a `@register_format` class, imported at the bottom of this
file, and one test. `open_model()` is the single entry point; it turns every kind of bad file
into a ModelLoadError with a message that says what is wrong and what to do.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from converters.errors import ModelLoadError
from converters.graph import ModelGraph

HEAD_BYTES = 4096


@dataclass(frozen=True)
class Trust:
    """What the user allowed when opening. Pickles can run arbitrary code when loaded."""

    allow_pickle: bool = False


class Format:
    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        """True when the content looks like this format. Cheap: no framework import."""
        raise NotImplementedError

    def load(self, path: Path, trust: Trust) -> ModelGraph:
        """Parse the model into a ModelGraph. Raises ModelLoadError on bad input."""
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


def detect_format(path: Path) -> type[Format]:
    """Pick the format by content first, then by suffix. Raises ModelLoadError."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder: choose the model file inside it")
    try:
        with open(path, "rb") as f:
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


def open_model(path: str | Path, trust: Trust = Trust()) -> ModelGraph:
    path = Path(path)
    fmt = detect_format(path)
    return fmt().load(path, trust)


# Registration happens on import; these modules import no framework at module level.
from converters.formats import onnx_format, openvino_format, tflite_format, torch_format  # noqa: E402,F401
