"""Where a command may write, checked before any work: an output path that names one of the
command's own inputs (`graph model.svg -o model.svg`, `profile m.onnx --json m.onnx`, `report
run.json --html run.json`) would replace the source with a drawing or a report, so it is refused
with one line; so is a file output that is an existing folder, or the reverse for a folder."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from converters.errors import ModelDeckError


def _companions(src: Path) -> list[Path]:
    """A source and the files read with it (an OpenVINO IR's weights beside its .xml)."""
    return [src, src.with_suffix(".bin")] if src.suffix.lower() == ".xml" else [src]


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # hard links, symlinks, ./x vs x
    except OSError:
        return a.resolve() == b.resolve()


def check_outputs(sources: Iterable[str | os.PathLike[str] | None],
                  files: Iterable[str | os.PathLike[str] | None] = (),
                  folders: Iterable[str | os.PathLike[str] | None] = (), *,
                  parent_must_exist: bool = False) -> None:
    """Raise ModelDeckError when an output would overwrite a source or cannot be written.

    `files` are single-file outputs, `folders` output folders (CSV); None and "-" (stdout) are
    skipped. With `parent_must_exist` a file's folder has to exist already (no silent mkdir)."""
    srcs = [c for s in sources if s and s != "-" for c in _companions(Path(s))
            if c.exists()]
    for out in files:
        if not out or out == "-":
            continue
        p = Path(out)
        for s in srcs:
            if _same(p, s):
                raise ModelDeckError(f"{out} is an input of this command: writing there would "
                                     "replace it; name another output file")
        if p.is_dir():
            raise ModelDeckError(f"{out} is a folder: name the output file inside it")
        if parent_must_exist and not p.parent.is_dir():
            raise ModelDeckError(f"folder {p.parent} does not exist: create it or name "
                                 "another output file")
    for out in folders:
        if not out:
            continue
        p = Path(out)
        if p.exists() and not p.is_dir():
            what = "an input of this command" if any(_same(p, s) for s in srcs) else "a file"
            raise ModelDeckError(f"{out} is {what}, not a folder: name a folder for the CSV "
                                 "files")
