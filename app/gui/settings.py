"""Persistent user choices (layout, recent files, backend, pass options) through QSettings.

Always the INI format under the user scope, so tests can redirect every read and write with
QSettings.setPath(IniFormat, UserScope, tmp) and never touch the user's own settings.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from PySide6.QtCore import QSettings

log = logging.getLogger(__name__)

ORGANISATION = "ModelDeck"
APPLICATION = "ModelDeck"
MAX_RECENT = 10


def settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION,
                     APPLICATION)


def get_json(key: str, default: Any = None) -> Any:
    """JSON-encoded values survive the INI backend with their types (ints stay ints)."""
    raw = settings().value(key)
    if raw is None:
        return default
    try:
        return json.loads(str(raw))
    except ValueError:
        log.warning("ignored unreadable setting %s=%r", key, raw)
        return default


def set_json(key: str, value: Any) -> None:
    settings().setValue(key, json.dumps(value))


def recent_files() -> list[str]:
    value = get_json("recent_files", [])
    return [str(v) for v in value] if isinstance(value, list) else []


def add_recent_file(path: str) -> list[str]:
    files = [path] + [p for p in recent_files() if p != path]
    files = files[:MAX_RECENT]
    set_json("recent_files", files)
    return files


def clear_recent_files() -> None:
    set_json("recent_files", [])
