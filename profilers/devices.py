"""What can run here: every registered backend, its version and devices. Never raises."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any


def list_devices() -> list[dict[str, Any]]:
    from profilers.backends import BACKENDS

    out = []
    for name, cls in BACKENDS.items():
        try:
            ok, version = cls.available()
            devices = [asdict(d) for d in cls.devices()] if ok else []
        except Exception as e:  # a broken install is reported, not fatal
            ok, version, devices = False, f"{type(e).__name__}: {e}", []
        out.append({"backend": name, "available": ok, "version": version,
                    "formats": sorted(cls.formats), "devices": devices})
    from profilers.samplers.nvml import nvml_status

    ok, what = nvml_status()
    out.append({"backend": "nvml (GPU power/memory)", "available": ok, "version": what,
                "formats": [], "devices": []})
    return out
