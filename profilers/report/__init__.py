"""Profile reports on disk: JSON (the record), a self-contained HTML page, CSV for spreadsheets.

Independent of profilers.backends and of any framework, so a saved report can be read and
re-rendered on a machine that has none of them installed.
"""
from __future__ import annotations

import json
import logging
import math
import os
import stat
from pathlib import Path
from typing import Any

from converters.errors import ModelDeckError
from profilers.report._io import atomic_write
from profilers.report.csv_out import write_csv
from profilers.report.html import write_html

log = logging.getLogger(__name__)

SCHEMA_PREFIX = "modeldeck.report/"
SCHEMA = "modeldeck.report/2"  # 2: intervals, stability verdict, device-side latency
MAX_REPORT_BYTES = 4 * 2**30  # a 2-hour run of sub-millisecond iterations writes ~0.3 GiB

__all__ = ["SCHEMA", "SCHEMA_PREFIX", "load_report", "write_csv", "write_html", "write_json"]


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report saved by write_json; a clear ModelDeckError for anything else."""
    path = Path(path)
    try:  # a FIFO would block forever and a link to /dev/zero fill the memory
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
            raise ModelDeckError(f"{path} is not a regular file: a report is a JSON file that "
                                 "`modeldeck profile --json` wrote")
        if st.st_size > MAX_REPORT_BYTES:
            raise ModelDeckError(f"{path} is {st.st_size / 2**30:.1f} GiB: no report is that "
                                 f"large (at most {MAX_REPORT_BYTES // 2**30} GiB read)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelDeckError(f"report {path} does not exist") from None
    except IsADirectoryError:
        raise ModelDeckError(f"{path} is a folder, not a report file") from None
    except UnicodeDecodeError:
        raise ModelDeckError(f"{path} is not a ModelDeck report: it is not a text (JSON) "
                             "file") from None
    except OSError as e:
        raise ModelDeckError(f"cannot read report {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelDeckError(f"{path} is not a ModelDeck report: invalid JSON ({e.msg} at line "
                             f"{e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise ModelDeckError(f"{path} is not a ModelDeck report: its JSON is nested too deeply "
                             "to read") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_PREFIX):
        found = f"schema {schema!r}" if schema is not None else "no 'schema' field"
        raise ModelDeckError(f"{path} is not a ModelDeck report ({found}; expected "
                             f"'{SCHEMA}'): `modeldeck profile MODEL --json OUT.json` writes one")
    if schema != SCHEMA:
        log.warning("%s has schema %s; this version writes %s, some fields may be missing",
                    path, schema, SCHEMA)
    return data


def write_json(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the report as JSON, atomically. NaN/inf become null so any JSON reader accepts it."""
    clean = _jsonable(report)
    return atomic_write(path, lambda f: json.dump(clean, f, indent=1, allow_nan=False))


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays, tuples, paths converted; NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # numpy scalar or array, without importing numpy here
        return _jsonable(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)
