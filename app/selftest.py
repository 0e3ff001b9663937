"""`modeldeck --self-test OUT_DIR`: prove an install (frozen bundle or source checkout) works.

Opens the bundled digits sample, profiles it for a moment on ONNX Runtime and on OpenVINO,
applies one compression pass, writes a report, and opens the window offscreen - every job
through the worker protocol, so a frozen bundle exercises `modeldeck --worker` exactly as the
GUI does. One line per check on stdout; exit 0 only if every check passed.

    modeldeck --self-test OUT_DIR [--seconds S] [--no-gui]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLE_NAME = "digits_cnn.onnx"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def resource_root() -> Path:
    """The folder that holds the `resources` package: sys._MEIPASS in a PyInstaller bundle,
    the repository (or site-packages) otherwise."""
    if is_frozen() and hasattr(sys, "_MEIPASS"):
        return Path(sys._MEIPASS)  # type: ignore[attr-defined]
    spec = importlib.util.find_spec("resources")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent.parent
    return Path(__file__).resolve().parent.parent


def sample_dir() -> Path:
    return resource_root() / "resources" / "samples"


def self_command() -> list[str]:
    """How to start this app again (the GUI check): the frozen exe, or this interpreter."""
    if is_frozen():
        return [sys.executable]
    return [sys.executable, "-m", "app.cli"]


class Checks:
    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def run(self, name: str, fn: Callable[[], str]) -> Any:
        t0 = time.perf_counter()
        try:
            detail = fn()
        except Exception as e:  # one line per check; the traceback goes to stderr
            self.failed += 1
            traceback.print_exc(file=sys.stderr)
            print(f"FAIL {name}: {type(e).__name__}: {e} ({time.perf_counter() - t0:.1f} s)",
                  flush=True)
            return None
        self.passed += 1
        print(f"ok   {name}: {detail} ({time.perf_counter() - t0:.1f} s)", flush=True)
        return detail


def _job(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    from app.jobs.client import JobClient

    outcome = JobClient(spec, timeout_s=timeout_s).run()
    if outcome.status != "ok" or outcome.result is None:
        tail = outcome.stderr_tail.strip().splitlines()[-3:]
        raise RuntimeError(f"{outcome.status} ({outcome.error_kind}): {outcome.error}"
                           + (f" | stderr: {' / '.join(tail)}" if tail else ""))
    return outcome.result


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="modeldeck --self-test",
                                description="check that this install works (headless)")
    p.add_argument("out_dir", help="folder for the converted model and the report")
    p.add_argument("--seconds", type=float, default=2.0, help="profile time per backend")
    p.add_argument("--no-gui", action="store_true", help="skip opening the window offscreen")
    p.add_argument("--timeout", type=float, default=300.0, help="limit per job, seconds")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    checks = Checks()
    print(f"modeldeck self-test ({'frozen bundle' if is_frozen() else 'source'}; "
          f"{sys.executable}) -> {out}", flush=True)
    sample = sample_dir() / SAMPLE_NAME
    reports: dict[str, dict[str, Any]] = {}

    def check_sample() -> str:
        missing = [n for n in (SAMPLE_NAME, "digits_test.npz", "digits_cnn.json",
                               "digits_cnn.pt2") if not (sample_dir() / n).is_file()]
        if missing:
            raise FileNotFoundError(f"missing in {sample_dir()}: {', '.join(missing)}")
        return f"{sample} ({sample.stat().st_size} bytes)"

    def check_inspect() -> str:
        r = _job({"job": "inspect", "model": str(sample)}, args.timeout)
        return f"{r['format']}, {r['nodes']} nodes, {r['params']} params"

    def profile(backend: str) -> Callable[[], str]:
        def check() -> str:
            from profilers.runner import RunConfig

            cfg = RunConfig(model=str(sample), backend=backend, duration_s=args.seconds,
                            warmup=2)
            r = _job({"job": "profile", "config": cfg.to_dict()}, args.timeout)
            if not r.get("iterations"):
                raise RuntimeError(f"no iterations measured: {sorted(r)}")
            reports[backend] = r
            lat = r.get("latency_ms") or {}
            p50 = lat.get("p50") if isinstance(lat, dict) else None
            return (f"{r['iterations']} iterations" + (f", p50 {p50:.3f} ms" if p50 else ""))
        return check

    def check_convert() -> str:
        from app.pipeline import ConvertSpec, StepSpec

        target = out / "digits_cnn_int8.onnx"
        spec = ConvertSpec(model=str(sample), output=str(target),
                           passes=(StepSpec("int8-dynamic"),))
        _job({"job": "convert", "convert": spec.to_dict()}, args.timeout)
        if not target.is_file():
            raise FileNotFoundError(f"the pass reported success but {target} is missing")
        return f"int8-dynamic -> {target.name} ({target.stat().st_size} bytes)"

    def check_report() -> str:
        from profilers.report import load_report, write_html, write_json

        report = reports.get("onnxruntime") or reports.get("openvino")
        if report is None:
            raise RuntimeError("no profile to report (the profile checks failed)")
        j = write_json(report, out / "report.json")
        h = write_html(report, out / "report.html")
        load_report(j)  # reads back with the schema check
        return f"{j.name} ({j.stat().st_size} bytes), {h.name} ({h.stat().st_size} bytes)"

    def check_gui() -> str:
        env = dict(os.environ)
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
        proc = subprocess.run(self_command() + ["--measure-startup", str(sample)], env=env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = " / ".join(proc.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"exit {proc.returncode}: {tail}")
        first = (proc.stdout.strip().splitlines() or ["?"])[0]
        return f"window painted offscreen, first paint {first} ms after start"

    checks.run("sample", check_sample)
    checks.run("inspect (worker)", check_inspect)
    checks.run("profile onnxruntime (worker)", profile("onnxruntime"))
    checks.run("profile openvino (worker)", profile("openvino"))
    checks.run("convert int8-dynamic (worker)", check_convert)
    checks.run("report json+html", check_report)
    if not args.no_gui:
        checks.run("gui offscreen", check_gui)
    print(f"{'PASS' if not checks.failed else 'FAIL'}: {checks.passed} passed, "
          f"{checks.failed} failed", flush=True)
    return 0 if not checks.failed else 1
