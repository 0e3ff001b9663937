"""The passes panel as an ordered pipeline: checked passes run in the order shown (the lineage
of the resulting variant says so), an order the rules refuse is refused before Apply with the
rule named, passes that cannot apply to the open model are greyed with their reason before
Apply, distill after prune-channels learns from the unpruned model, and the wheel over the list
scrolls it without touching the option fields."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from tests.conftest import SAMPLES

JOB_TIMEOUT_MS = 240_000


def _lineage_passes(path: str) -> list[str]:
    return [s["pass"] for s in json.loads(open(path + ".lineage.json").read())["steps"]]


def _apply(w, qtbot):
    variant = w.apply_passes()
    assert variant is not None, w.errors[-1:] if w.errors else "nothing started"
    qtbot.waitUntil(lambda: variant.status != "running", timeout=JOB_TIMEOUT_MS)
    assert variant.status == "ok", (variant.message, variant.details)
    return variant


@pytest.fixture
def panel(qtbot):
    from app.gui.panels.passes_panel import PassesPanel

    p = PassesPanel()
    qtbot.addWidget(p)
    p.resize(380, 700)
    p.show()
    p.ensure_loaded()
    return p


@pytest.mark.slow
def test_reordered_pipeline_runs_in_the_order_shown(opened, qtbot):
    w = opened
    p = w.passes
    assert p.model_format() == "onnx"  # the window told the panel what is open
    p.set_target_format(None)
    p.set_eval("sample")
    p.set_checked("prune-magnitude")
    p.set_checked("simplify")
    first = p.checked_passes()
    assert first == ["prune-magnitude", "simplify"]  # the list's own order, top to bottom
    a = _apply(w, qtbot)
    assert _lineage_passes(a.path) == first

    # move simplify up with the arrow button, as a user would
    p.pass_list.setCurrentItem(p.boxes["simplify"].item)
    qtbot.mouseClick(p.up_button, Qt.MouseButton.LeftButton)
    assert p.checked_passes() == ["simplify", "prune-magnitude"]
    assert p.order().index("simplify") < p.order().index("prune-magnitude")
    b = _apply(w, qtbot)
    assert _lineage_passes(b.path) == ["simplify", "prune-magnitude"]
    assert b.name.startswith("simplify+prune-magnitude")


def test_invalid_order_is_refused_before_apply(opened, qtbot):
    w = opened
    p = w.passes
    p.set_checked("simplify")
    p.set_checked("int8-dynamic")
    assert p.apply_button.isEnabled() and not p.order_problems()
    p.set_order(["int8-dynamic", "simplify"])
    assert p.checked_passes() == ["int8-dynamic", "simplify"]
    assert not p.apply_button.isEnabled()
    assert not p.order_problem.isHidden()
    text = p.order_problem.text()
    assert "rule simplify-before-precision" in text and "simplify → int8-dynamic" in text
    assert "BatchNorm" in p.order_problem.toolTip()  # the rule's reason
    assert p.boxes["simplify"].item.text().startswith("⚠")
    count = len(w.variants.variants)
    assert w.apply_passes() is None  # the menu's Apply is refused too, with the same words
    assert len(w.variants.variants) == count
    assert "rule simplify-before-precision" in w.errors[-1]["message"]
    assert "--" not in w.errors[-1]["message"]  # no command-line flag in the window
    p.move_pass("simplify", -1)  # fixing the order enables Apply again
    assert p.apply_button.isEnabled() and p.order_problem.isHidden()
    assert not p.boxes["simplify"].item.text().startswith("⚠")


def test_inapplicable_passes_are_marked_before_apply_with_their_reason(panel):
    p = panel
    p.set_model_format("onnx")
    for name in ("distill", "prune-channels"):
        item = p.boxes[name].item
        assert not item.flags() & Qt.ItemFlag.ItemIsUserCheckable  # cannot be checked
        assert "not for ONNX" in item.text()
        assert "PyTorch models only" in item.toolTip()
        assert "cannot be converted" in p.boxes[name].applies.text()
    assert "distill" in p.applies_note.text() and not p.applies_note.isHidden()
    assert p.boxes["int8-dynamic"].item.flags() & Qt.ItemFlag.ItemIsUserCheckable

    p.set_model_format("torch")
    p.set_checked("prune-channels")
    p.set_checked("distill")
    assert p.checked_passes() == ["prune-channels", "distill"] and not p.order_problems()
    assert "via ONNX" in p.boxes["int8-dynamic"].item.text()
    assert "converted to ONNX first" in p.boxes["int8-dynamic"].item.toolTip()
    assert p.applies_note.isHidden()
    p.set_checked("int8-dynamic")  # the summary shows the conversion Apply will insert
    assert p.summary.text().endswith("prune-channels → distill → [to ONNX] → int8-dynamic")
    p.set_checked("int8-dynamic", False)

    p.set_model_format("onnx")  # opening an ONNX model: they cannot run, so they are not run
    assert p.checked_passes() == []
    p.set_model_format("torch")  # ...and are checked again for the next PyTorch model
    assert p.checked_passes() == ["prune-channels", "distill"]


def test_order_is_saved_and_restored(qtbot, panel):
    from app.gui.panels.passes_panel import PassesPanel

    panel.set_checked("fp16")
    panel.set_checked("simplify")
    panel.set_order(["fp16", "simplify"])  # invalid, but it is what the user left
    order = panel.order()
    again = PassesPanel()
    qtbot.addWidget(again)
    again.ensure_loaded()
    assert again.order() == order
    assert again.checked_passes() == ["fp16", "simplify"]
    assert not again.apply_button.isEnabled()


def test_wheel_over_the_list_scrolls_it_and_never_changes_an_option(panel, qtbot):
    from app.gui.panels.passes_panel import MIN_ROWS

    p = panel
    lst = p.pass_list
    rows = lst.count()
    row_h = lst.sizeHintForRow(0)
    assert lst.minimumSizeHint().height() >= MIN_ROWS * row_h
    assert lst.viewport().height() >= MIN_ROWS * row_h  # more than ~4 rows shown
    p.resize(380, 360)  # a short dock: the list keeps MIN_ROWS rows and scrolls
    QApplication.processEvents()
    assert rows > MIN_ROWS
    bar = lst.verticalScrollBar()
    assert bar.maximum() > 0, "the list should need scrolling at this height"
    before = bar.value()
    _wheel(lst.viewport(), lst.viewport().rect().center(), -120)
    assert bar.value() > before

    # the selected pass's option fields do not take the wheel unless focused
    p.pass_list.setCurrentItem(p.boxes["distill"].item)
    spin = next(e.widget for e in p.boxes["distill"].editors if e.name == "batch_size")
    assert spin.focusPolicy() == Qt.FocusPolicy.StrongFocus
    value = spin.value()
    _wheel(spin, spin.rect().center(), 120)  # an unguarded spin box would step to 65
    assert spin.value() == value == 64


def _wheel(widget, pos, dy: int) -> None:
    global_pos = widget.mapToGlobal(pos)
    event = QWheelEvent(QPointF(pos), QPointF(global_pos), QPoint(0, 0), QPoint(0, dy),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


@pytest.mark.slow
def test_prune_then_distill_in_the_window_learns_from_the_unpruned_model(window, qtbot,
                                                                          tmp_path):
    w = window
    src = tmp_path / "src" / "digits_cnn.pt2"
    src.parent.mkdir()
    shutil.copy(SAMPLES / "digits_cnn.pt2", src)
    w.trusted_files.add(os.path.abspath(src))
    with qtbot.waitSignal(w.sig_model_opened, timeout=60_000):
        w.open_model(str(src), trust_pickle=True)
    p = w.passes
    assert p.model_format() == "torch"
    p.set_target_format(None)
    p.set_calibration("sample")
    p.set_eval("sample")
    p.set_checked("distill")
    p.set_checked("prune-channels")
    p.set_option("prune-channels", "ratio", 0.5)
    assert p.checked_passes() == ["prune-channels", "distill"]
    v = _apply(w, qtbot)
    lineage = json.loads(open(v.path + ".lineage.json").read())
    pruned, distilled = lineage["steps"]
    assert [pruned["pass"], distilled["pass"]] == ["prune-channels", "distill"]
    assert distilled["changed"] is True and distilled["sha256"] != pruned["sha256"]
    assert distilled["options"]["teacher"] == str(src)  # the model before pruning
    assert v.accuracy["accuracy"] > 0.9  # measured on the held-out digits


@pytest.mark.slow
def test_real_model_in_the_window_both_orders(window, qtbot):
    """rapidocr 3.10.0's paddle2onnx classifier (Constant-node weights): simplify then
    int8-dynamic runs in that order; the reverse is refused before Apply; the torch-only
    passes are greyed for it."""
    from tests.real_models import wheel_member

    model = wheel_member("rapidocr", "3.10.0",
                         "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")
    w = window
    with qtbot.waitSignal(w.sig_model_opened, timeout=60_000):
        w.open_model(str(model))
    p = w.passes
    assert not p.boxes["prune-channels"].item.flags() & Qt.ItemFlag.ItemIsUserCheckable
    p.set_target_format(None)
    p.set_eval(None)
    p.set_checked("int8-dynamic")
    p.set_checked("simplify")
    p.set_order(["int8-dynamic", "simplify"])
    assert not p.apply_button.isEnabled()
    assert "rule simplify-before-precision" in p.order_problem.text()
    assert w.apply_passes() is None
    p.set_order(["simplify", "int8-dynamic"])
    v = _apply(w, qtbot)
    assert _lineage_passes(v.path) == ["simplify", "int8-dynamic"]
    assert v.fidelity["cosine"] > 0.99


def test_rows_moved_in_the_model_reorder_the_pipeline(panel, qtbot):
    """What a drag and drop does: the list's model moves a row; the order, the check and the
    summary follow."""
    from PySide6.QtCore import QModelIndex

    p = panel
    p.set_model_format("onnx")
    p.set_checked("simplify")
    p.set_checked("fp16")
    model = p.pass_list.model()
    src, dst = p.order().index("fp16"), p.order().index("simplify")
    with qtbot.waitSignal(p.sig_selection_changed, timeout=5_000):
        assert model.moveRow(QModelIndex(), src, QModelIndex(), dst)
    assert p.checked_passes() == ["fp16", "simplify"]
    assert "rule simplify-before-precision" in p.order_problem.text()
    assert "fp16 → simplify" in p.summary.text()
