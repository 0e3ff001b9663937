"""`make run`'s pre-flight check of the libraries Qt's xcb plugin needs."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import qt_check

REPO = Path(__file__).resolve().parents[2]

# What `ldd libqxcb.so` printed on a fresh Debian 12 desktop (abridged).
LDD_DEBIAN = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f71)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f71)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f71)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
"""

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n'
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\n'
ROCKY = 'ID="rocky"\nID_LIKE="rhel centos fedora"\n'
ARCH = "ID=arch\n"
TUMBLEWEED = 'ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n'


def test_missing_libraries_are_read_from_ldd_once_each():
    assert qt_check.missing_libraries(LDD_DEBIAN) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert qt_check.missing_libraries("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []


@pytest.mark.parametrize("release, family, command", [
    (DEBIAN, "debian", "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1"),
    (UBUNTU, "debian", "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1"),
    (FEDORA, "fedora", "sudo dnf install -y xcb-util-wm xcb-util-keysyms"),
    (ROCKY, "fedora", "sudo dnf install -y xcb-util-wm xcb-util-keysyms"),
    (ARCH, "arch", "sudo pacman -S --needed xcb-util-wm xcb-util-keysyms"),
    (TUMBLEWEED, "suse", "sudo zypper install -y libxcb-icccm4 libxcb-keysyms1"),
])
def test_one_install_command_per_distribution(release, family, command):
    assert qt_check.distro_family(release) == family
    missing = qt_check.missing_libraries(LDD_DEBIAN)
    assert qt_check.install_command(missing, family) == command
    assert command in qt_check.message(missing, family)


def test_unknown_distribution_names_the_libraries_and_the_debian_packages():
    family = qt_check.distro_family("ID=gentoo\n")
    assert family is None
    text = qt_check.message(["libxcb-icccm.so.4"], family)
    assert "libxcb-icccm.so.4" in text and "libxcb-icccm4" in text
    # a library we have no package for: still named, no half-made command
    text = qt_check.message(["libweird.so.9"], "debian")
    assert "libweird.so.9" in text and "apt-get" not in text


def test_every_library_the_plugin_links_against_has_a_package():
    """The table covers what this PySide6's plugin really needs (found or not)."""
    plugin = qt_check.xcb_plugin()
    if plugin is None or shutil.which("ldd") is None:
        pytest.skip("no xcb plugin or ldd here")
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    system = {line.split("=>")[0].strip() for line in out.splitlines()
              if "=>" in line and "/PySide6/" not in line}
    basics = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0",
              "libdl.so.2", "librt.so.1", "libz.so.1", "libpcre2-8.so.0", "libXau.so.6",
              "libXdmcp.so.6", "libexpat.so.1", "libpng16.so.16", "libbrotlidec.so.1",
              "libbrotlicommon.so.1", "libsystemd.so.0", "libbsd.so.0", "libmd.so.0",
              "libffi.so.8", "libcap.so.2", "libgcrypt.so.20", "liblz4.so.1", "liblzma.so.5",
              "libzstd.so.1", "libgpg-error.so.0", "libbz2.so.1.0", "libselinux.so.1"}
    xcb_related = {s for s in system - basics if s.startswith(("libxcb", "libX", "libxkb",
                                                                 "libGL", "libEGL", "libOpenGL"))}
    assert xcb_related, out
    assert not xcb_related - set(qt_check.PACKAGES), "no package known for these"


def test_offscreen_skips_the_check():
    status, text = qt_check.check({"QT_QPA_PLATFORM": "offscreen"})
    assert status == 0 and "does not apply" in text


def test_the_real_check_agrees_with_ldd():
    """On this machine: exit 1 exactly when ldd reports a library missing, with the command."""
    plugin = qt_check.xcb_plugin()
    if plugin is None or shutil.which("ldd") is None:
        pytest.skip("no xcb plugin or ldd here")
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    missing = qt_check.missing_libraries(out)
    proc = subprocess.run([sys.executable, "-m", "app.qt_check"], cwd=REPO, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == (1 if missing else 0), proc.stdout + proc.stderr
    for so in missing:
        assert so in proc.stderr


def test_make_run_calls_the_check_before_the_window():
    make = (REPO / "Makefile").read_text()
    run = make.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert run.index("app.qt_check") < run.index("modeldeck $(SAMPLE)")


def test_a_wayland_session_is_told_but_not_stopped(monkeypatch):
    monkeypatch.setattr(qt_check, "xcb_plugin", lambda: Path("/fake/libqxcb.so"))
    monkeypatch.setattr(qt_check.shutil, "which", lambda name: "/usr/bin/ldd")

    class Done:
        stdout = LDD_DEBIAN

    monkeypatch.setattr(qt_check.subprocess, "run", lambda *a, **k: Done())
    monkeypatch.setattr(qt_check, "distro_family", lambda: "debian")
    status, text = qt_check.check({})
    assert status == 1 and "sudo apt-get install -y libxcb-icccm4 libxcb-keysyms1" in text
    status, text = qt_check.check({"WAYLAND_DISPLAY": "wayland-0"})
    assert status == 0 and text.startswith("note:") and "libxcb-icccm4" in text
    status, _ = qt_check.check({"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"})
    assert status == 1  # xcb asked for by name: it must load
