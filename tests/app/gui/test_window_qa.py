"""The window driven as a user would on real models: open, Fit, fold/unfold, Diff graphs, a
profile run to its end; nothing may reach the log as an error or escape as an exception."""
from __future__ import annotations

import logging
import sys

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from tests.real_models import wheel_member  # noqa: E402

VAD = ("openwakeword", "0.5.1", "openwakeword/resources/models/silero_vad.onnx")
CLS = ("rapidocr", "3.10.0", "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")
DET = ("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_det_small.onnx")


@pytest.fixture
def errors(monkeypatch, caplog):
    """Exceptions raised in Qt slots (sys.excepthook) and error log records, collected."""
    seen: list[str] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: seen.append(f"{t.__name__}: {e}"))
    caplog.set_level(logging.WARNING)
    yield seen
    seen += [f"log {r.name}: {r.getMessage()}" for r in caplog.records
             if r.levelno >= logging.ERROR]


def _open(window, qtbot, path: str) -> None:
    failed: list = []
    window.sig_error.connect(lambda *a: failed.append(a))
    with qtbot.waitSignal(window.sig_model_opened, timeout=120_000):
        window.open_model(path)
    assert not failed, failed


@pytest.mark.slow
@pytest.mark.parametrize("member", [VAD, CLS, DET], ids=["silero-vad", "ocr-cls", "ocr-det"])
def test_open_fit_fold_unfold_real_models(window, qtbot, errors, member):
    _open(window, qtbot, str(wheel_member(*member)))
    view = window.graph_view
    view.fit()
    view.expand_all()
    view.collapse_all()
    view.fit()
    qtbot.wait(50)
    assert view._nodes.boxes
    assert not errors, errors


@pytest.mark.slow
def test_diff_graphs_of_a_model_with_if_subgraphs(window, qtbot, errors, tmp_path):
    """silero VAD (the network inside an If's two branches) against its int8-dynamic form, which
    ONNX Runtime's quantizer also folds (250 -> 206 nodes)."""
    from app.gui.graph.diff_view import start_graph_diff
    from converters.passes import ModelFile, PassContext, get_pass, make_options

    src = wheel_member(*VAD)
    cls = get_pass("int8-dynamic")
    r = cls().run(ModelFile(src, "onnx"), make_options(cls, {}), PassContext(work_dir=tmp_path))
    job = start_graph_diff(window, [str(src), str(r.output.path)])
    with qtbot.waitSignal(job.sig_finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: getattr(window, "graph_diff_window", None) is not None,
                    timeout=10_000)
    w = window.graph_diff_window
    assert w.isVisible()
    assert w.view.diff.summary()["matched"] > 150
    assert not errors, errors


@pytest.mark.slow
def test_profile_of_a_constant_weight_model_finishes_with_its_verdict(window, qtbot, errors):
    _open(window, qtbot, str(wheel_member(*CLS)))
    b = window.backend
    b.length_mode.setCurrentText("iterations")
    b.iterations.setValue(100)
    b.layers.setChecked(True)
    with qtbot.waitSignal(window.sig_profile_finished, timeout=180_000) as blocker:
        assert window.run_profile() is not None
    outcome = blocker.args[0]
    assert outcome.status == "ok", outcome.error
    report = outcome.result
    assert report["stability"]["verdict"] in ("stable", "noisy")
    lo, hi = report["latency_ms"]["p50_ci"]
    assert lo <= report["latency_ms"]["p50"] <= hi
    assert not errors, errors


@pytest.mark.slow
def test_hostile_files_get_a_message_and_the_window_keeps_its_model(window, qtbot, tmp_path,
                                                                    monkeypatch):
    """A FIFO, a link to /dev/zero, a truncated model, a zip bomb and a folder: each one error
    in the window's words, nothing hangs, and the model shown before stays."""
    import os
    import zipfile

    from app.gui.graph.diff_view import start_graph_diff
    from tests.conftest import SAMPLE_ONNX

    _open(window, qtbot, str(SAMPLE_ONNX))
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.onnx"
    zero.symlink_to("/dev/zero")
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(SAMPLE_ONNX.read_bytes()[:5000])
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", b"\0" * (64 * 2**20))
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    monkeypatch.setattr(window, "_ask_consent", lambda paths, verb, retry: True)
    for bad in (fifo, zero, trunc, bomb, folder):
        with qtbot.waitSignal(window.sig_error, timeout=60_000) as blocker:
            window.open_model(str(bad))
        title, message = blocker.args
        assert bad.name in message and "--" not in message, message
        with qtbot.waitSignal(window.sig_error, timeout=60_000) as blocker:
            start_graph_diff(window, [str(SAMPLE_ONNX), str(bad)])
        assert bad.name in blocker.args[1] and "--" not in blocker.args[1], blocker.args
    assert window.model_path == str(SAMPLE_ONNX)
