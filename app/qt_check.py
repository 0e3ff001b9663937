"""Before the window opens: are the system libraries Qt's xcb platform plugin needs installed?

Without them Qt aborts with "Could not load the Qt platform plugin "xcb"" and a page of
hints; a fresh Debian desktop lacks libxcb-icccm4 and libxcb-keysyms1, which the PySide6 wheel
does not bundle. `make run` calls this first: it runs `ldd` on the plugin the venv's PySide6
ships, and when libraries are missing prints the one command that installs them on this
distribution (apt-get, dnf, pacman, zypper). No Qt import: a missing library must not abort it.

    python -m app.qt_check      # exit 0: fine (or not checkable here), 1: libraries missing
"""
from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

# Every library libqxcb.so (and libQt6XcbQpa it loads) links against outside the wheel, as
# `ldd` names it, with the package that ships it per distribution family.
PACKAGES: dict[str, dict[str, str]] = {
    # soname:                 debian,                  fedora,              arch,                 suse
    "libxcb-icccm.so.4": dict(debian="libxcb-icccm4", fedora="xcb-util-wm", arch="xcb-util-wm",
                              suse="libxcb-icccm4"),
    "libxcb-keysyms.so.1": dict(debian="libxcb-keysyms1", fedora="xcb-util-keysyms",
                                arch="xcb-util-keysyms", suse="libxcb-keysyms1"),
    "libxcb-cursor.so.0": dict(debian="libxcb-cursor0", fedora="xcb-util-cursor",
                               arch="xcb-util-cursor", suse="libxcb-cursor0"),
    "libxcb-util.so.1": dict(debian="libxcb-util1", fedora="xcb-util", arch="xcb-util",
                             suse="libxcb-util1"),
    "libxcb-image.so.0": dict(debian="libxcb-image0", fedora="xcb-util-image",
                              arch="xcb-util-image", suse="libxcb-image0"),
    "libxcb-render-util.so.0": dict(debian="libxcb-render-util0", fedora="xcb-util-renderutil",
                                    arch="xcb-util-renderutil", suse="libxcb-render-util0"),
    "libxcb-randr.so.0": dict(debian="libxcb-randr0", fedora="libxcb", arch="libxcb",
                              suse="libxcb-randr0"),
    "libxcb-shm.so.0": dict(debian="libxcb-shm0", fedora="libxcb", arch="libxcb",
                            suse="libxcb-shm0"),
    "libxcb-sync.so.1": dict(debian="libxcb-sync1", fedora="libxcb", arch="libxcb",
                             suse="libxcb-sync1"),
    "libxcb-xfixes.so.0": dict(debian="libxcb-xfixes0", fedora="libxcb", arch="libxcb",
                               suse="libxcb-xfixes0"),
    "libxcb-render.so.0": dict(debian="libxcb-render0", fedora="libxcb", arch="libxcb",
                               suse="libxcb-render0"),
    "libxcb-shape.so.0": dict(debian="libxcb-shape0", fedora="libxcb", arch="libxcb",
                              suse="libxcb-shape0"),
    "libxcb-xkb.so.1": dict(debian="libxcb-xkb1", fedora="libxcb", arch="libxcb",
                            suse="libxcb-xkb1"),
    "libxcb-xinput.so.0": dict(debian="libxcb-xinput0", fedora="libxcb", arch="libxcb",
                               suse="libxcb-xinput0"),
    "libxcb-glx.so.0": dict(debian="libxcb-glx0", fedora="libxcb", arch="libxcb",
                            suse="libxcb-glx0"),
    "libxcb.so.1": dict(debian="libxcb1", fedora="libxcb", arch="libxcb", suse="libxcb1"),
    "libX11-xcb.so.1": dict(debian="libx11-xcb1", fedora="libX11-xcb", arch="libx11",
                            suse="libX11-xcb1"),
    "libX11.so.6": dict(debian="libx11-6", fedora="libX11", arch="libx11", suse="libX11-6"),
    "libxkbcommon.so.0": dict(debian="libxkbcommon0", fedora="libxkbcommon", arch="libxkbcommon",
                              suse="libxkbcommon0"),
    "libxkbcommon-x11.so.0": dict(debian="libxkbcommon-x11-0", fedora="libxkbcommon-x11",
                                  arch="libxkbcommon-x11", suse="libxkbcommon-x11-0"),
    "libGL.so.1": dict(debian="libgl1", fedora="libglvnd-glx", arch="libglvnd",
                       suse="libGL1"),
    "libGLX.so.0": dict(debian="libglx0", fedora="libglvnd-glx", arch="libglvnd",
                        suse="libGLX0"),
    "libGLdispatch.so.0": dict(debian="libglvnd0", fedora="libglvnd", arch="libglvnd",
                               suse="libglvnd"),
    "libOpenGL.so.0": dict(debian="libopengl0", fedora="libglvnd-opengl", arch="libglvnd",
                           suse="libOpenGL0"),
    "libEGL.so.1": dict(debian="libegl1", fedora="libglvnd-egl", arch="libglvnd",
                        suse="libEGL1"),
    "libfontconfig.so.1": dict(debian="libfontconfig1", fedora="fontconfig", arch="fontconfig",
                               suse="libfontconfig1"),
    "libfreetype.so.6": dict(debian="libfreetype6", fedora="freetype", arch="freetype2",
                             suse="libfreetype6"),
    "libglib-2.0.so.0": dict(debian="libglib2.0-0", fedora="glib2", arch="glib2",
                             suse="libglib-2_0-0"),
    "libdbus-1.so.3": dict(debian="libdbus-1-3", fedora="dbus-libs", arch="dbus",
                           suse="libdbus-1-3"),
}

INSTALLERS = {"debian": "sudo apt-get install -y", "fedora": "sudo dnf install -y",
              "arch": "sudo pacman -S --needed", "suse": "sudo zypper install -y"}
FAMILY_IDS = {"debian": "debian", "ubuntu": "debian", "linuxmint": "debian", "pop": "debian",
              "raspbian": "debian", "fedora": "fedora", "rhel": "fedora", "centos": "fedora",
              "rocky": "fedora", "almalinux": "fedora", "arch": "arch", "manjaro": "arch",
              "endeavouros": "arch", "opensuse": "suse", "suse": "suse", "sles": "suse",
              "opensuse-leap": "suse", "opensuse-tumbleweed": "suse"}


def distro_family(os_release: str | None = None) -> str | None:
    """debian | fedora | arch | suse from /etc/os-release's ID and ID_LIKE, else None."""
    if os_release is None:
        try:
            os_release = Path("/etc/os-release").read_text(errors="replace")
        except OSError:
            return None
    fields = {}
    for line in os_release.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"').lower()
    for name in [fields.get("ID", "")] + fields.get("ID_LIKE", "").split():
        if name in FAMILY_IDS:
            return FAMILY_IDS[name]
    return None


def xcb_plugin() -> Path | None:
    """The xcb platform plugin of the PySide6 this interpreter imports (not imported)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        hits = glob.glob(os.path.join(root, "Qt", "plugins", "platforms", "libqxcb.so"))
        if hits:
            return Path(hits[0])
    return None


def missing_libraries(ldd_output: str) -> list[str]:
    """Sonames `ldd` reports as 'not found', each once, in its order."""
    out: list[str] = []
    for line in ldd_output.splitlines():
        name, sep, where = line.strip().partition("=>")
        if sep and where.strip().startswith("not found") and name.strip() not in out:
            out.append(name.strip())
    return out


def install_command(missing: list[str], family: str | None) -> str | None:
    """The one command installing every package that ships a missing library, or None when
    the distribution (or a library) is unknown."""
    if family not in INSTALLERS:
        return None
    pkgs: list[str] = []
    for so in missing:
        pkg = PACKAGES.get(so, {}).get(family)
        if pkg is None:
            return None
        if pkg not in pkgs:
            pkgs.append(pkg)
    return f"{INSTALLERS[family]} {' '.join(pkgs)}"


def message(missing: list[str], family: str | None) -> str:
    cmd = install_command(missing, family)
    lines = ["The window cannot open: Qt's xcb platform plugin needs system libraries that are "
             "not installed:", "  " + ", ".join(missing)]
    if cmd:
        lines += ["Install them with:", f"  {cmd}"]
    else:
        debian = install_command(missing, "debian")
        hint = f" (on Debian or Ubuntu: {debian})" if debian else ""
        lines.append(f"Install the packages of your distribution that provide them{hint}.")
    lines.append("Then run `make run` again. (QT_QPA_PLATFORM=offscreen skips this check and "
                 "opens no window.)")
    return "\n".join(lines)


def check(env: dict[str, str] | None = None) -> tuple[int, str]:
    """(exit status, text): 0 and a note when the window can start or the check does not
    apply; 1 and what to install when libraries are missing."""
    env = dict(os.environ if env is None else env)
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return 0, f"QT_QPA_PLATFORM={platform}: the xcb check does not apply"
    if not sys.platform.startswith("linux"):
        return 0, "not Linux: no xcb plugin to check"
    plugin = xcb_plugin()
    if plugin is None:
        return 0, "PySide6's xcb plugin not found: nothing to check"
    ldd = shutil.which("ldd")
    if ldd is None:
        return 0, "ldd not found: the xcb libraries were not checked"
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30,
                             errors="replace").stdout
    except (OSError, subprocess.SubprocessError) as e:
        return 0, f"ldd failed ({e}): the xcb libraries were not checked"
    missing = missing_libraries(out)
    if not missing:
        return 0, "Qt's xcb plugin finds every library it needs"
    if not platform and env.get("WAYLAND_DISPLAY"):
        # a Wayland session: Qt opens the window through its wayland plugin; xcb is only
        # the fallback, so say what is missing but do not stop
        return 0, "note: " + message(missing, distro_family())
    return 1, message(missing, distro_family())


def main() -> int:
    status, text = check()
    print(text, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
