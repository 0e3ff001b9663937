"""A real OpenSSH server for the remote-target tests: 127.0.0.1, free ports, throwaway keys.

Runs as the current user with its own sshd_config (no PAM, keys only, internal SFTP); nothing
is installed or changed system-wide except /run/sshd, which sshd needs when run by root.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def sshd_missing() -> str | None:
    """Why the tests cannot start an sshd here (None: they can)."""
    if SSHD is None:
        return ("OpenSSH's sshd is not installed (Debian: apt-get install openssh-server; "
                ".ci/run installs it where it can)")
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed (Debian: apt-get install openssh-client)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@dataclass
class Sshd:
    root: Path
    ports: list[int]
    user_key: Path
    host_key: Path
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "sshd.log"

    @property
    def user(self) -> str:
        import getpass

        return getpass.getuser()

    def start(self) -> Sshd:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        auth = self.root / "authorized_keys"
        auth.write_text((self.user_key.with_suffix(".pub")).read_text())
        auth.chmod(0o600)
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            *(f"Port {p}" for p in self.ports),
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {auth}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
            "MaxSessions 50",
            "MaxStartups 50",
        ]) + "\n")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                for p in self.ports:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd did not listen: {self.log.read_text()[-2000:]}")

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children and grandchildren of the listener)."""
        import psutil

        assert self.proc is not None
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        out = []
        for k in kids:
            try:
                if "sshd" in k.name():
                    out.append(k.pid)
            except psutil.Error:
                pass
        return out

    def kill_connections(self) -> int:
        """Cut every open connection as a dead link would (the listener stays)."""
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.session_pids() if self.proc else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_sshd(root: Path, ports: int = 2) -> Sshd:
    root.mkdir(parents=True, exist_ok=True)
    user_key = keygen(root / "user_ed25519")
    host_key = keygen(root / "host_ed25519")
    return Sshd(root=root, ports=[free_port() for _ in range(ports)], user_key=user_key,
                host_key=host_key).start()


def target_for(server: Sshd, name: str, port_index: int = 0, **kw):
    """A Target on this sshd: this machine's Python, a cache folder of its own."""
    import sys

    from app.targets.config import Target

    base = dict(name=name, host="127.0.0.1", port=server.ports[port_index], user=server.user,
                identity=str(server.user_key), python=sys.executable,
                cache_dir=str(server.root.parent / f"cache-{name}"))
    return Target(**{**base, **kw})
