"""The configured targets: a small JSON file, names and addresses only, never a password.

Authentication is whatever ssh users already have (agent, keys in ~/.ssh, an --identity file,
~/.ssh/config); host keys live in ~/.ssh/known_hosts like ssh's own.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from converters.errors import ModelDeckError

TARGETS_ENV = "MODELDECK_TARGETS_FILE"
LOCAL = "local"  # the name of this computer in pickers and result labels
DEFAULT_CACHE = "~/.cache/modeldeck"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class TargetError(ModelDeckError):
    """A target cannot be used: unknown name, unreachable, refused key, missing Python."""


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    user: str | None = None  # None: ~/.ssh/config's User, else the local user name
    port: int | None = None  # None: ~/.ssh/config's Port, else 22
    identity: str | None = None  # a private key file; None: agent and ~/.ssh/id_*
    python: str = "python3"  # the interpreter on the target (after `setup`: the venv's)
    cache_dir: str = DEFAULT_CACHE  # engine, models, data and job folders on the target
    backends: tuple[str, ...] = ()  # what `targets setup` installed
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{user}{host}{port}"

    @property
    def label(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["backends"] = list(self.backends)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["backends"] = tuple(known.get("backends") or ())
        known["extra"] = dict(known.get("extra") or {})
        if known.get("port") is not None:
            known["port"] = int(known["port"])
        return cls(**known)

    def with_(self, **changes: Any) -> Target:
        return replace(self, **changes)


def parse_url(url: str, name: str | None = None) -> Target:
    """ssh://[USER@]HOST[:PORT] (or USER@HOST, as ssh takes it) -> a Target."""
    text = url.strip()
    if not text.startswith("ssh://"):
        if "://" in text:
            raise TargetError(f"{url!r}: only ssh:// targets are supported")
        text = "ssh://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise TargetError(f"{url!r} is not an ssh://USER@HOST[:PORT] address: {e}") from None
    if not parts.hostname:
        raise TargetError(f"{url!r} names no host: write ssh://USER@HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.password:
        raise TargetError(f"{url!r}: write ssh://USER@HOST[:PORT] (no path, no password: keys "
                          "and the ssh agent authenticate)")
    return Target(name=name or parts.hostname, host=parts.hostname, user=parts.username,
                  port=port)


def targets_file() -> Path:
    env = os.environ.get(TARGETS_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "modeldeck" / "targets.json"


class TargetStore:
    """Load, change and save the targets file (written atomically)."""

    def __init__(self, path: Path | None = None):
        self.path = path or targets_file()

    def load(self) -> dict[str, Target]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise TargetError(f"could not read the targets file {self.path}: {e}") from None
        out = {}
        for d in raw.get("targets", []):
            try:
                t = Target.from_dict(d)
            except (TypeError, ValueError) as e:
                raise TargetError(f"{self.path}: a target entry is damaged ({e}): {d!r}") from None
            out[t.name] = t
        return out

    def save(self, targets: dict[str, Target]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "targets": [t.to_dict() for t in
                                                             targets.values()]}, indent=2))
        os.replace(tmp, self.path)

    def add(self, target: Target, replace_existing: bool = False) -> None:
        if not NAME_RE.match(target.name) or target.name == LOCAL:
            raise TargetError(f"{target.name!r} cannot name a target: use letters, digits, '.', "
                              f"'_' or '-' (and not {LOCAL!r}, which is this computer)")
        targets = self.load()
        if target.name in targets and not replace_existing:
            raise TargetError(f"a target named {target.name!r} exists already "
                              f"({targets[target.name].url}); remove it first")
        targets[target.name] = target
        self.save(targets)

    def update(self, target: Target) -> None:
        targets = self.load()
        targets[target.name] = target
        self.save(targets)

    def remove(self, name: str) -> Target:
        targets = self.load()
        if name not in targets:
            raise TargetError(self._unknown(name, targets))
        gone = targets.pop(name)
        self.save(targets)
        return gone

    def get(self, name_or_url: str) -> Target:
        """A configured target by name, or an ssh:// address used directly."""
        targets = self.load()
        if name_or_url in targets:
            return targets[name_or_url]
        if name_or_url.startswith("ssh://") or "@" in name_or_url:
            t = parse_url(name_or_url)
            return t.with_(name=f"{t.user + '@' if t.user else ''}{t.host}"
                                + (f":{t.port}" if t.port else ""))
        raise TargetError(self._unknown(name_or_url, targets))

    @staticmethod
    def _unknown(name: str, targets: dict[str, Target]) -> str:
        known = ", ".join(sorted(targets)) or "none configured yet"
        return f"no target named {name!r} (known: {known})"
