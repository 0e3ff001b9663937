"""The graph view: folding, layout, selection, search, colours, export, subgraphs."""
from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPalette  # noqa: E402

from app.gui.graph.fold import FoldTree  # noqa: E402
from app.gui.graph.layout import CompoundLayout, layered_layout  # noqa: E402
from app.gui.graph.style import HOT_COLOUR  # noqa: E402
from app.gui.graph.view import GraphView  # noqa: E402
from converters.graph import Graph, ModelGraph, ModelMeta, Node, TensorInfo  # noqa: E402
from tests.conftest import REPO, SAMPLE_ONNX, light_model  # noqa: E402


@pytest.fixture(scope="module")
def squeezenet():
    from converters.formats import open_model

    return open_model(light_model("squeezenet"))


@pytest.fixture(scope="module")
def densenet():
    from converters.formats import open_model

    return open_model(light_model("densenet121"))


@pytest.fixture
def view(qtbot):
    v = GraphView()
    qtbot.addWidget(v)
    v.resize(1100, 800)
    v.show()
    qtbot.waitExposed(v)
    return v


def _edges(model: ModelGraph) -> list[tuple[str, str]]:
    producer = {o: n.id for it in model.walk() for n in [it.node] for o in n.outputs}
    return [(producer[i], it.node.id) for it in model.walk() for i in it.node.inputs
            if i in producer]


def synthetic(stages: int, blocks: int) -> ModelGraph:
    """A residual network: stages of blocks of conv/bn/relu/add, scoped like a torch export."""
    nodes, tensors = [], {"x": TensorInfo("x", "float32", [1, 8, 16, 16])}
    prev, k = "x", 0
    for i in range(stages):
        for j in range(blocks):
            scope, cur = f"/stage.{i}/block.{j}", prev
            for op in ("Conv", "BatchNormalization", "Relu"):
                out = f"{scope}/{op}_output_0"
                nodes.append(Node(f"n{k}", f"{scope}/{op}", op, inputs=[cur], outputs=[out],
                                  scope=scope))
                tensors[out] = TensorInfo(out, "float32", [1, 8, 16, 16])
                cur, k = out, k + 1
            out = f"{scope}/Add_output_0"
            nodes.append(Node(f"n{k}", f"{scope}/Add", "Add", inputs=[cur, prev], outputs=[out],
                              scope=scope))
            tensors[out] = TensorInfo(out, "float32", [1, 8, 16, 16])
            prev, k = out, k + 1
    return ModelGraph(Graph(nodes, tensors, ["x"], [prev]), ModelMeta("onnx"))


# --- Qt-free parts ----------------------------------------------------------------------------
def test_fold_and_layout_are_qt_free():
    import subprocess
    import sys

    code = ("import sys, app.gui.graph.fold, app.gui.graph.layout, app.gui.graph.structure,"
            " app.gui.graph.content, app.gui.graph.svg, app.gui.graph.diff_svg,"
            " converters.graph_diff;"
            "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_layered_layout_layers_follow_edges_and_boxes_do_not_overlap():
    sizes = [(100.0, 40.0)] * 6
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (0, 4), (5, 4)]
    r = layered_layout(sizes, edges)
    for u, v in edges:
        assert r.layer[u] < r.layer[v]
    assert r.layer[5] == r.layer[4] - 1  # a source with no producer sits above its user
    for a, b in itertools.combinations(range(6), 2):
        if r.layer[a] == r.layer[b]:
            assert abs(r.x[a] - r.x[b]) >= 100.0
    assert (0, 4) in r.routes and len(r.routes[(0, 4)]) == r.layer[4] - r.layer[0] - 1


def test_layered_layout_survives_cycles():
    r = layered_layout([(50.0, 20.0)] * 3, [(0, 1), (1, 2), (2, 0)])
    assert len(set(r.layer)) == 3


def test_fold_densenet_opens_under_budget_and_expands_to_every_node(densenet):
    tree = FoldTree(densenet)
    tree.auto_fold()
    assert 0 < tree.visible_node_count() < 300
    tree.expand_all()
    # every node is a box except the 836 ConstantOfShape weights, rows of their consumers
    assert len(tree.hidden) == 836
    assert tree.visible_node_count() + len(tree.hidden) == densenet.node_count() == 1746
    conv = next(it.node for it in densenet.walk() if it.node.op_type == "Conv")
    assert [name for name, _ in tree.weights(conv)][:1] == ["W"]


def test_fold_synthetic_10k_is_folded_and_lays_out():
    model = synthetic(20, 25)  # 2,000 nodes keeps the test quick; the bench does 10,000
    tree = FoldTree(model)
    tree.auto_fold()
    assert tree.visible_node_count() <= 300
    tree.expand_all()
    layout = CompoundLayout(tree).run()
    assert len([k for k in layout.boxes if not k.startswith(("in:", "out:"))]) == 2000


# --- the widget -------------------------------------------------------------------------------
def test_squeezenet_shows_every_node(view, squeezenet):
    view.set_model(squeezenet)
    view.expand_all()
    hidden = view.fold_tree().hidden
    assert view.visible_node_count() + len(hidden) == 105 == squeezenet.node_count()
    shown = set(view.visible_keys())
    assert {it.node.id for it in squeezenet.walk()} - set(hidden) <= shown


def test_densenet_opens_folded(view, densenet):
    view.set_model(densenet)
    assert view.visible_node_count() < 300
    view.expand_all()
    assert view.visible_node_count() == 1746 - len(view.fold_tree().hidden)
    view.collapse_all()
    assert view.visible_node_count() < 300


def test_squeezenet_boxes_do_not_overlap(view, squeezenet):
    view.set_model(squeezenet)
    view.expand_all()
    layout = view.scene_layout()
    rects = [view.item_scene_rect(k) for k in layout.boxes]
    for a, b in itertools.combinations(rects, 2):
        assert not a.intersects(b), (a, b)
    tree = view.fold_tree()
    for key in layout.boxes:  # every box inside the frame of its group
        parent = tree.items[key].parent
        if parent is not tree.root:
            assert view.item_scene_rect(parent.key).contains(view.item_scene_rect(key))


def test_squeezenet_edges_go_downward(view, squeezenet):
    view.set_model(squeezenet)
    view.expand_all()
    tree = view.fold_tree()
    layout = view.scene_layout()
    edges = [(p, c) for p, c in _edges(squeezenet) if p not in tree.hidden]
    assert len(edges) > 60
    for p, c in edges:
        assert view.item_scene_rect(p).bottom() < view.item_scene_rect(c).top(), (p, c)
        if tree.items[p].parent is tree.items[c].parent:  # same group: same layering
            assert layout.layer[p] < layout.layer[c]


def test_click_selects_node_and_emits_its_id(view, qtbot, squeezenet):
    view.set_model(squeezenet)
    view.expand_all()
    conv = next(it.node.id for it in squeezenet.walk() if it.node.op_type == "Conv")
    view.select_node(conv)  # scrolls it into view
    view.select_node(None)
    pos = view.map_to_viewport(conv)
    assert view.canvas.viewport().rect().contains(pos)
    with qtbot.waitSignal(view.sig_node_selected, timeout=2000) as sig:
        qtbot.mouseClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert sig.args == [conv]
    assert view.selected_node() == conv
    # a click on empty space clears the selection
    qtbot.mouseClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(3, 3))
    assert view.selected_node() is None


def test_search_finds_and_selects_conv_nodes(view, qtbot, densenet):
    view.set_model(densenet)
    with qtbot.waitSignal(view.sig_node_selected, timeout=2000) as sig:
        n = view.find("conv")
    matches = view.matches()
    tree = view.fold_tree()
    assert n == len(matches) == 121
    assert {tree.items[k].node.op_type for k in matches} == {"Conv"}
    assert sig.args == [matches[0]] and view.selected_node() == matches[0]
    assert view.fold_tree().is_visible(matches[0])  # its groups were opened
    view.find_next()
    assert view.selected_node() == matches[1]
    view.find_previous()
    view.find_previous()
    assert view.selected_node() == matches[-1]
    assert view.find("no such op") == 0


def test_colour_by_time_gives_the_hottest_node_the_hot_colour(view, squeezenet):
    view.set_model(squeezenet)
    view.expand_all()
    ids = [it.node.id for it in squeezenet.walk() if it.node.id in view.fold_tree().items]
    before = {k: view.node_colour(k).name() for k in ids}
    times = {k: 0.1 * (i + 1) for i, k in enumerate(ids)}
    hottest, coldest = ids[-1], ids[0]
    view.set_node_times(times)
    view.set_colour_mode("time")
    assert view.node_colour(hottest) == QColor(HOT_COLOUR)
    assert view.node_colour(coldest) != QColor(HOT_COLOUR)
    after = {k: view.node_colour(k).name() for k in ids}
    assert sum(before[k] != after[k] for k in ids) > len(ids) // 2
    assert view.legend.isVisible() and view.legend.gradient is not None
    view.set_colour_mode("op")
    assert view.node_colour(hottest).name() == before[hottest]


def test_colour_by_device_and_precision(view, squeezenet):
    view.set_model(squeezenet)
    view.expand_all()
    ids = [it.node.id for it in squeezenet.walk() if it.node.id in view.fold_tree().items]
    view.set_node_devices({k: "GPU" if i % 2 else "CPU" for i, k in enumerate(ids)})
    view.set_colour_mode("device")
    assert view.node_colour(ids[0]) != view.node_colour(ids[1])
    assert {label for _, label in view.legend.entries} == {"CPU", "GPU"}
    view.set_node_precisions({ids[0]: "INT8"})
    view.set_colour_mode("precision")
    assert view.node_colour(ids[0]) != view.node_colour(ids[1])
    with pytest.raises(ValueError):
        view.set_colour_mode("rainbow")


def test_export_png_and_svg(view, tmp_path):
    from converters.formats import open_model

    view.set_model(open_model(SAMPLE_ONNX))
    png = view.export_image(tmp_path / "g.png")
    img = QImage(str(png))
    assert png.stat().st_size > 1000 and img.width() > 0 and img.height() > 0
    svg = view.export_image(tmp_path / "g.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "Conv" in svg.read_text()


def test_if_subgraph_is_an_expandable_group_of_its_branch_nodes(view, qtbot, tmp_path):
    import onnx

    from converters.formats import open_model
    from tests.converters.onnx_builders import if_model

    path = tmp_path / "if.onnx"
    onnx.save(if_model(), str(path))
    model = open_model(path)
    if_id = next(it.node.id for it in model.walk() if it.node.op_type == "If")
    branch = [it.node.id for it in model.walk() if it.depth == 1]
    assert len(branch) == 4
    view.set_model(model)
    view.collapse_all()
    assert view.visible_node_count() == 1
    assert set(branch).isdisjoint(view.visible_keys())
    tree = view.fold_tree()
    assert tree.items[if_id].is_group and not view.is_expanded(if_id)
    pos = view.map_to_viewport(if_id)
    qtbot.mouseDClick(view.canvas.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert view.is_expanded(if_id)
    assert set(branch) <= set(view.visible_keys())
    assert {leaf.key for leaf in tree.leaf_nodes(tree.items[if_id])} == {if_id, *branch}
    assert view.visible_node_count() == 5
    # the outer input x feeds both branches through the If's frame
    assert tree.items[if_id].expanded and view.item_scene_rect(if_id) is not None


def test_double_click_opens_and_closes_a_scope_group(view, qtbot, densenet):
    view.set_model(densenet)
    tree = view.fold_tree()
    group = next(c for c in tree.visible() if c.is_group and c.node is None and not c.expanded)
    count = view.visible_node_count()
    view.select_node(None)
    view.canvas.centerOn(view.item_scene_rect(group.key).center())
    qtbot.mouseDClick(view.canvas.viewport(), Qt.MouseButton.LeftButton,
                      pos=view.map_to_viewport(group.key))
    assert view.is_expanded(group.key)
    assert view.visible_node_count() == count - 1 + len(group.children)
    assert view.collapse(group.key) and view.visible_node_count() == count


def test_zoom_fit_and_minimap(view, qtbot, densenet):
    view.set_model(densenet)
    z = view.zoom()
    view.zoom_in()
    assert view.zoom() > z
    qtbot.keyClick(view.canvas, Qt.Key.Key_F)
    scene = view.graph_rect()
    visible = view.canvas.mapToScene(view.canvas.viewport().rect()).boundingRect()
    # the whole graph, or as much as a legible zoom shows, centred
    assert visible.adjusted(-2, -2, 2, 2).contains(scene) or (
        view.zoom() == pytest.approx(0.6) and visible.contains(scene.center()))
    view.zoom_in()
    view.zoom_in()
    view.zoom_in()
    assert view.minimap.isVisible()
    before = view.canvas.mapToScene(view.canvas.viewport().rect().center())
    qtbot.mouseClick(view.minimap, Qt.MouseButton.LeftButton,
                     pos=QPoint(view.minimap.width() // 2, view.minimap.height() - 8))
    after = view.canvas.mapToScene(view.canvas.viewport().rect().center())
    assert after.y() > before.y()


def test_follows_a_dark_palette(view, squeezenet):
    view.set_model(squeezenet)
    dark = QPalette(view.palette())
    dark.setColor(QPalette.ColorRole.Base, QColor("#1e1e1e"))
    dark.setColor(QPalette.ColorRole.Text, QColor("#e0e0e0"))
    view.setPalette(dark)
    assert view.canvas.backgroundBrush().color() == QColor("#1e1e1e")
    img = view.canvas.viewport().grab().toImage()
    assert QColor(img.pixel(2, img.height() // 2)).lightness() < 80


def test_costs_and_empty_model(view, squeezenet):
    from converters.analysis import analyze

    a = analyze(squeezenet)
    view.set_model(squeezenet, {c.node_id: c for c in a.nodes})
    conv = next(c.node_id for c in a.nodes if c.op_type == "Conv")
    assert "macs" in view._tooltip(conv)
    view.set_model(None)
    assert view.visible_node_count() == 0 and view.visible_keys() == []


def test_qt_calls_do_not_leak_references_to_none(qapp):
    """PySide6 6.12.0 on Python 3.11 dropped a reference to None per void Qt call until the
    process aborted; the pinned version must not."""
    import sys

    from PySide6.QtGui import QImage, QPainter, QPen

    img = QImage(8, 8, QImage.Format.Format_ARGB32)
    painter = QPainter(img)
    before = sys.getrefcount(None)
    for _ in range(2000):
        painter.setPen(QPen())
        painter.drawRect(0, 0, 1, 1)
    after = sys.getrefcount(None)
    painter.end()
    assert after - before > -100
