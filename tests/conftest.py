"""Shared fixtures: the onnx package's Model Zoo graphs, the bundled sample, model builders."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "samples"
SAMPLE_ONNX = SAMPLES / "digits_cnn.onnx"
SAMPLE_NPZ = SAMPLES / "digits_test.npz"


def light_model(name: str) -> Path:
    """Path of one of the onnx package's light Model Zoo graphs (e.g. "resnet50")."""
    import onnx

    path = Path(onnx.__file__).parent / "backend/test/data/light" / f"light_{name}.onnx"
    if not path.exists():
        pytest.fail(f"{path} missing: the onnx package should ship it")
    return path


@pytest.fixture
def light():
    return light_model


# --- no worker outlives the test session -------------------------------------------------------
# A worker (or a child a runtime forked in it) left behind holds its client's pipe and memory;
# every job kills its whole process group when it ends, and a worker whose client died ends
# itself. Checked once the session is over: orphaned workers started during it fail the run.
_SESSION_START = __import__("time").time()


def orphaned_workers(since: float) -> list:
    """`python -m app.jobs.worker` processes started after `since` whose parent is gone."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "ppid", "cmdline", "create_time", "status"]):
        info = p.info
        cmd = " ".join(info.get("cmdline") or ())
        if "app.jobs.worker" not in cmd or (info.get("create_time") or 0) < since - 1:
            continue
        if info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if info.get("ppid") in (0, 1) or not psutil.pid_exists(info.get("ppid") or 0):
            found.append(p)
    return found


def pytest_sessionfinish(session, exitstatus):
    import time

    deadline = time.monotonic() + 5  # a worker notices its client's death within ~0.5 s
    left = orphaned_workers(_SESSION_START)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = orphaned_workers(_SESSION_START)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = (f"{len(left)} worker process(es) outlived their jobs: "
                + ", ".join(str(p.pid) for p in left))
        if reporter is not None:
            reporter.write_line(text, red=True)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
