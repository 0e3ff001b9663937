"""Graphs of real exports whose weights are Constant nodes stay readable: weights are rows of
their consumers, scope-less levels fold by structure, Fit gives a legible overview, the wheel
zooms toward the cursor."""
from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402

from app.gui.graph.fold import FoldTree  # noqa: E402
from app.gui.graph.structure import ItemInfo, cut_points, structure  # noqa: E402
from app.gui.graph.view import FIT_MIN_SCALE, GraphView  # noqa: E402
from tests.real_models import wheel_member  # noqa: E402

# rapidocr 3.10.0 ships a paddle2onnx classifier whose 308 weights are all Constant nodes
CLS = ("rapidocr", "3.10.0", "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")
DET = ("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_det_small.onnx")


@pytest.fixture(scope="module")
def cls_model():
    from converters.formats import open_model

    return open_model(wheel_member(*CLS))


@pytest.fixture
def view(qtbot):
    v = GraphView()
    qtbot.addWidget(v)
    v.resize(1100, 800)
    v.show()
    qtbot.waitExposed(v)
    return v


# --- Qt-free ---------------------------------------------------------------------------------
def test_cut_points_split_a_residual_block_from_a_chain():
    # 0 -> 1 -> 2 -> 3 = add(1, 2) -> 4: the block {2, 3} reads 1; inside it 1 and 2 live
    edges = [(0, 1), (1, 2), (2, 3), (1, 3), (3, 4)]
    assert cut_points(5, edges, [False] * 5) == [True, True, False, True, True]
    # a floating item (computed constant) is never cut after and holds no value alive
    assert cut_points(3, [(0, 2), (1, 2)], [False, True, False]) == [True, False, True]


def test_structure_makes_stages_at_strides_and_gathers_repeats():
    infos, edges = [], []
    for stage in range(3):
        for block in range(4):  # conv(stride at the first block of a stage), relu, add
            i = len(infos)
            stride = 2 if block == 0 and stage else 1
            infos += [ItemInfo("Conv", stride), ItemInfo("Relu"), ItemInfo("Add")]
            if i:
                edges.append((i - 1, i))
                edges.append((i - 1, i + 2))  # the residual
            edges += [(i, i + 1), (i + 1, i + 2)]
    parts = structure(infos, edges)
    labels = [p.label for p in parts]
    assert labels == ["Stage 1", "Stage 2 · /2", "Stage 3 · /4"]
    assert sorted(i for p in parts for i in p.indices()) == list(range(len(infos)))


def test_constants_become_weight_rows_and_scopeless_model_folds_by_structure(cls_model):
    tree = FoldTree(cls_model)
    consts = [it.node for it in cls_model.walk() if it.node.op_type == "Constant"]
    assert len(consts) == 308
    assert all(c.id in tree.hidden and c.id not in tree.items for c in consts)
    conv = next(it.node for it in cls_model.walk() if it.node.op_type == "Conv")
    assert [name for name, _ in tree.weights(conv)] == ["W"]
    assert tree.box_for(consts[0].id) in tree.items  # selecting a weight selects its reader
    assert tree.search(consts[0].outputs[0]) == [tree.box_for(consts[0].id)]  # and search
    # top level: stages between down-samplings, not "Constant_172 … Constant_343" chunks
    groups = [c for c in tree.root.children if c.is_group]
    assert len(groups) >= 4
    assert all(g.label.startswith("Stage ") and not g.chunk for g in groups)
    assert "/16" in " ".join(g.label for g in groups)
    labels = {it.label.rsplit(" ", 1)[0] for it in tree.items.values() if it.is_group}
    assert {"Residual", "Conv"} <= labels
    # every model node except the hidden weights is under exactly one box
    tree.expand_all()
    assert tree.visible_node_count() + len(tree.hidden) == cls_model.node_count()


def test_fpn_detector_splits_into_backbone_stages_not_one_block():
    from converters.formats import open_model

    tree = FoldTree(open_model(wheel_member(*DET)))
    sizes = [sum(1 for _ in tree.leaf_nodes(c)) for c in tree.root.children if c.is_group]
    assert len(sizes) >= 6
    assert max(sizes) < 0.4 * sum(sizes)  # the neck's skips do not swallow the backbone


# --- the widget -----------------------------------------------------------------------------
def test_fit_shows_legible_labelled_boxes(view, cls_model):
    view.set_model(cls_model)
    view.expand_all()
    view.fit()
    assert view.zoom() >= FIT_MIN_SCALE  # titles readable, not a thin line
    visible = view.canvas.mapToScene(view.canvas.viewport().rect()).boundingRect()
    assert visible.adjusted(-2, -2, 2, 2).contains(view.graph_rect())
    boxes = [b for b in view._nodes.boxes if b.kind != "io"]
    assert 3 <= len(boxes) <= 40
    for b in boxes:  # every box labelled, its title at a legible size on screen
        assert b.title
        assert view._theme.title_fm.height() * view.zoom() >= 8.0
        assert b.rect.width() * view.zoom() >= 60


def test_wheel_zooms_toward_the_cursor(view, qtbot, cls_model):
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    view.set_model(cls_model)
    view.fit()  # the whole graph is smaller than the window: Qt's own anchor cannot work here
    vp = view.canvas.viewport()
    for at in (QPoint(200, 150), QPoint(vp.width() - 150, vp.height() - 120)):
        before = view.canvas.mapToScene(at)
        z = view.zoom()
        for delta in (120, 120, -120, 240):
            ev = QWheelEvent(QPointF(at), QPointF(vp.mapToGlobal(at)), QPoint(0, 0),
                             QPoint(0, delta), Qt.MouseButton.NoButton,
                             Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
            QApplication.sendEvent(vp, ev)
            after = view.canvas.mapToScene(at)
            assert abs(after.x() - before.x()) < 3 / view.zoom()
            assert abs(after.y() - before.y()) < 3 / view.zoom()
        assert view.zoom() != pytest.approx(z)
