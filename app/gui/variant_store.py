"""Which variants were made from which model, kept in the data folder next to their files.

Opening another model used to forget the variants table (the files stayed on disk); this index
lets the table come back when the model is reopened, with the figures measured for each row
(size, parameters, sparsity, fidelity, accuracy, p50). One JSON file, written atomically; a
variant whose file has gone is dropped when read; a damaged index is set aside, never fatal.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = "modeldeck.variants/1"
INDEX = "variants.json"
FIELDS = ("name", "path", "format", "size_bytes", "params", "sparsity", "fidelity", "accuracy",
          "latency_p50", "message", "steps")


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


class VariantStore:
    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        self.path = self.folder / INDEX

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("variants index %s unreadable (%s): starting a new one", self.path, e)
            try:
                self.path.replace(self.path.with_suffix(".json.bad"))
            except OSError:
                pass
            return {}
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return {}
        models = data.get("models")
        return models if isinstance(models, dict) else {}

    def load(self, root: str | os.PathLike[str]) -> dict[str, Any]:
        """{"original": {...figures}, "variants": [{...}, ...]} for the model at `root`;
        variants whose file no longer exists are left out; variants made before the index
        existed are found by their lineage files (fewer figures: size and recipe)."""
        entry = self._read().get(_key(root)) or {}
        variants = [v for v in entry.get("variants") or []
                    if isinstance(v, dict) and v.get("path") and os.path.exists(v["path"])]
        known = {_key(v["path"]) for v in variants}
        variants += [v for v in self._from_lineage(root) if _key(v["path"]) not in known]
        original = entry.get("original") if isinstance(entry.get("original"), dict) else {}
        return {"original": original, "variants": variants}

    def _from_lineage(self, root: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Finished pipelines of `root` in the folder: each final output has a
        <output>.lineage.json naming its source and passes (app.pipeline writes it)."""
        out: list[dict[str, Any]] = []
        try:
            files = sorted(self.folder.glob("*.lineage.json"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return out
        for f in files:
            try:
                rec = json.loads(f.read_text())
                source = (rec.get("source") or {}).get("path")
                output = rec.get("output")
            except (OSError, ValueError, AttributeError):
                continue
            if not source or not output or _key(source) != _key(root):
                continue
            if not os.path.exists(output):
                continue
            passes = [str(p.get("name")) for p in rec.get("passes") or [] if isinstance(p, dict)]
            name = "+".join(passes) or f"→ {rec.get('to')}"
            if passes and rec.get("to"):
                name += f" → {rec['to']}"
            out.append({"name": name, "path": output, "format": FORMAT_OF.get(
                Path(output).suffix.lower(), ""), "size_bytes": _size(output),
                "message": "done (from its lineage file)", "steps": rec.get("steps") or []})
        return out

    def save(self, root: str | os.PathLike[str], original: dict[str, Any],
             variants: list[dict[str, Any]]) -> None:
        models = self._read()
        models[_key(root)] = {"original": original, "variants": variants}
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".variants-", suffix=".json", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"schema": SCHEMA, "models": models}, f, indent=1, default=str)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("could not save the variants index %s: %s", self.path, e)
            try:
                os.unlink(tmp)
            except OSError:
                pass


FORMAT_OF = {".onnx": "onnx", ".xml": "openvino", ".pt2": "torch", ".tflite": "tflite"}


def _size(path: str) -> int | None:
    try:
        p = Path(path)
        return p.stat().st_size + (p.with_suffix(".bin").stat().st_size
                                   if p.suffix.lower() == ".xml" and p.with_suffix(".bin").exists()
                                   else 0)
    except OSError:
        return None


def to_record(v: Any) -> dict[str, Any]:
    """The persisted fields of a Variant (steps without bulky per-step details)."""
    rec = {k: getattr(v, k) for k in FIELDS}
    rec["steps"] = [{k: val for k, val in s.items() if k not in ("details", "_outputs")}
                    for s in (v.steps or []) if isinstance(s, dict)]
    return rec
