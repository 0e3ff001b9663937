"""What the file dialogs start with: the model filter from the format registry, and the folder
an export starts in (the last one used for that kind of export, else the user's Documents —
never the folder the program happens to run in, which for `make run` is the project)."""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from app.gui import settings

# Suffixes found by content rather than by the registry's suffix lists (TorchScript files are
# zip archives whatever they are called); shown so that such files are not hidden.
EXTRA_MODEL_SUFFIXES = (".jit", ".ts", ".torchscript")


def model_suffixes() -> list[str]:
    """Every suffix the format registry knows, plus the common TorchScript names."""
    from converters.formats import FORMATS

    out: list[str] = []
    for fmt in FORMATS.values():
        for s in fmt.suffixes:
            if s != ".bin" and s not in out:  # an IR's .bin is opened through its .xml
                out.append(s)
    return out + [s for s in EXTRA_MODEL_SUFFIXES if s not in out]


def model_filter() -> str:
    pattern = " ".join(f"*{s}" for s in model_suffixes())
    return f"Models ({pattern});;All files (*)"


def _key(kind: str) -> str:
    return f"dialogs/last_dir/{kind}"


def documents_dir() -> str:
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return docs if docs and os.path.isdir(docs) else str(Path.home())


def start_dir(kind: str) -> str:
    """The folder an export of `kind` ("report", "graph", "variant") starts in."""
    last = settings.settings().value(_key(kind))
    if isinstance(last, str) and last and os.path.isdir(last):
        return last
    return documents_dir()


def start_path(kind: str, filename: str) -> str:
    return os.path.join(start_dir(kind), filename)


def remember(kind: str, path: str | os.PathLike[str]) -> None:
    """The folder of a chosen file (or the chosen folder) is where the next one starts."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    settings.settings().setValue(_key(kind), str(folder))
