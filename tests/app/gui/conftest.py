"""GUI fixtures: offscreen Qt, settings redirected to a temporary folder for every test (the
user's own ModelDeck settings are never read or written), and a shown main window."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    from PySide6.QtCore import QSettings

    folder = tmp_path / "qsettings"
    folder.mkdir()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield folder


@pytest.fixture
def window(qtbot, tmp_path):
    from app.gui.main_window import MainWindow

    w = MainWindow(work_dir=tmp_path / "variants")
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.sig_ready, timeout=60_000):
        w.show()
    yield w
    w.close()


@pytest.fixture
def opened(window, qtbot):
    """The window with the bundled digits sample open."""
    from tests.conftest import SAMPLE_ONNX

    with qtbot.waitSignal(window.sig_model_opened, timeout=60_000):
        window.open_model(str(SAMPLE_ONNX))
    return window
