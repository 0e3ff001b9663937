"""What a search already built and measured, so a second run on the same model is instant.

Builds are keyed by the source model's sha256, the calibration data's and the recipe (passes,
options, target format): a built model does not depend on the machine. Measurements are keyed
by that and by the run (backend, precision, threads), the evaluation data and the machine's
fingerprint (CPU, ISA, cores, runtime versions): a latency from another machine means nothing
here. One JSON file per entry, written atomically; a damaged entry is ignored and rebuilt. A
disabled cache reads nothing from earlier runs but still shares what this run built (two
candidates running one model on two runtimes build it once).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
CACHE_ENV = "MODELDECK_CACHE"
SCHEMA = 1


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    base = Path(root).expanduser()
    return base / "optimize" if os.environ.get(CACHE_ENV) else base / "modeldeck" / "optimize"


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()
                          ).hexdigest()[:24]


class Cache:
    """Builds under builds/<key>/, measurements under runs/<fingerprint>/<key>.json."""

    def __init__(self, root: str | Path | None, fingerprint: str, enabled: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.fingerprint = fingerprint
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._memory: dict[str, dict[str, Any]] = {}  # disabled: this run's entries only

    def build_dir(self, key: str) -> Path:
        return self.root / "builds" / key

    def get_build(self, key: str) -> dict[str, Any] | None:
        entry = self._read(self.build_dir(key) / "build.json")
        if entry and all(Path(p).exists() for p in entry.get("files", [])):
            return entry
        return None

    def put_build(self, key: str, entry: dict[str, Any]) -> None:
        self._write(self.build_dir(key) / "build.json", entry)

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._read(self.root / "runs" / self.fingerprint / f"{key}.json")
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self._write(self.root / "runs" / self.fingerprint / f"{key}.json", entry)

    def read_array(self, path: Path) -> Any:
        """A cached array (no pickles), or None when missing or damaged: computed again."""
        if not self.enabled:
            return None
        import numpy as np

        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as e:
            log.info("ignoring damaged cache entry %s: %s", path, e)
            return None

    def _read(self, path: Path) -> dict[str, Any] | None:
        if not self.enabled:  # nothing from earlier runs; what this run built is shared
            return self._memory.get(str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.info("ignoring damaged cache entry %s: %s", path, e)
            return None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            return None
        return data.get("value")

    def _write(self, path: Path, value: dict[str, Any]) -> None:
        if not self.enabled:
            self._memory[str(path)] = value
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
            tmp.write_text(json.dumps({"schema": SCHEMA, "value": value}, default=str),
                           encoding="utf-8")
            tmp.replace(path)
        except OSError as e:  # a cache that cannot be written only costs time
            log.warning("could not write cache entry %s: %s", path, e)
