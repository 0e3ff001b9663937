"""Graph diff: a real model's FP32 and INT8 variants matched node by node (converters/
graph_diff.py, Qt-free), shown side by side (app/gui/graph/diff_view.py), reachable from the
Variants table and from `modeldeck diff`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from converters.graph_diff import GraphDiff, diff_graphs, family
from tests.real_models import wheel_member

# rapidocr 3.10.0's paddle2onnx text-direction classifier: every weight is a Constant node
CLS = ("rapidocr", "3.10.0", "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")


def _int8(src: Path, work: Path, quant_format: str) -> Path:
    """The project's own int8-static pass (ORT quant_pre_process folds BatchNorm into Conv,
    then QDQ or QOperator), calibrated on a few random images: matching needs no accuracy."""
    from converters.passes import CalibrationData, ModelFile, PassContext, get_pass, make_options

    cls = get_pass("int8-static")
    opts = make_options(cls, {"samples": "4", "quant_format": quant_format})
    rng = np.random.default_rng(0)
    calib = CalibrationData(arrays={"x": rng.random((4, 3, 48, 192), dtype=np.float32)},
                            source="random")
    work.mkdir(parents=True, exist_ok=True)
    r = cls().run(ModelFile(src, "onnx"), opts, PassContext(work_dir=work, calibration=calib))
    assert r.changed
    return r.output.path


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    src = wheel_member(*CLS)
    work = tmp_path_factory.mktemp("int8")
    return src, _int8(src, work / "qdq", "qdq"), _int8(src, work / "qop", "qoperator")


@pytest.fixture(scope="module")
def graphs(variants):
    from converters.formats import open_model

    return tuple(open_model(p) for p in variants)


# --- matching, Qt-free ------------------------------------------------------------------------
@pytest.mark.slow
def test_fp32_vs_int8_qdq_matches_every_conv_and_sees_through_qdq(graphs):
    fp32, qdq, _ = graphs
    d = diff_graphs(fp32, qdq)
    s = d.summary()
    convs_a = [k for k, f in d.base.items() if f.op == "Conv"]
    convs_b = [k for k, f in d.other.items() if f.op == "Conv"]
    assert len(convs_a) == len(convs_b) == 53
    pairs = d.match_of_base()
    assert all(k in pairs and pairs[k] in convs_b for k in convs_a)
    by = {m.base: m for m in d.matches}
    assert all(any(c.startswith("precision FP32 → INT8") for c in by[k].changes) for k in convs_a)
    # every one of the hundreds of Q/DQ nodes is seen through, none is "added"
    assert s["inserted"] > 250
    assert all(d.other[k].op not in ("QuantizeLinear", "DequantizeLinear") for k in d.only_other)
    # BatchNormalization was folded into the Conv before it: reported as such, not "removed"
    bns = [k for k, f in d.base.items() if f.op == "BatchNormalization"]
    assert bns and all(d.base_status[k] == "fused" for k in bns)
    assert all(d.other[d.fused[k]].op == "Conv" for k in bns)
    assert s["only_base"] <= 5 and s["only_other"] <= 5
    # the matched Conv's parameters include the bias BatchNorm folding added
    conv0 = by[convs_a[0]]
    assert any(c.startswith("params ") for c in conv0.changes)


@pytest.mark.slow
def test_matching_without_names_agrees_with_names(graphs):
    fp32, qdq, _ = graphs
    truth = {m.base: m.other for m in diff_graphs(fp32, qdq).matches if m.how == "name"}
    renamed = type(qdq).from_dict(qdq.to_dict())
    for it in renamed.walk():
        it.node.name = f"node_{it.node.id}"  # an exporter that names nothing
    d = diff_graphs(fp32, renamed)
    assert d.summary()["by_name"] == 0
    got = d.match_of_base()
    agree = sum(1 for k, v in truth.items() if got.get(k) == v)
    assert agree >= 0.95 * len(truth)


@pytest.mark.slow
def test_qoperator_int8_matches_conv_to_qlinearconv(graphs):
    fp32, _, qop = graphs
    d = diff_graphs(fp32, qop)
    ops = {(d.base[m.base].op, d.other[m.other].op) for m in d.matches}
    assert ("Conv", "QLinearConv") in ops
    assert family("QLinearConv") == family("Conv")
    qconv = [k for k, f in d.other.items() if f.op == "QLinearConv"]
    assert all(k in d.match_of_other() for k in qconv)
    wire = json.loads(json.dumps(d.to_wire()))
    assert GraphDiff.from_wire(wire).summary() == d.summary()


def test_same_model_is_all_unchanged():
    from converters.formats import open_model

    m = open_model(wheel_member(*CLS))
    d = diff_graphs(m, m)
    s = d.summary()
    assert s["matched"] == s["base_nodes"] == s["other_nodes"] and s["changed"] == 0
    assert s["inserted"] == s["fused"] == s["only_base"] == s["only_other"] == 0
    assert set(d.base_status.values()) == {"same"}


def test_times_become_deltas():
    from converters.formats import open_model

    m = open_model(wheel_member(*CLS))
    conv = next(n.id for n in m.graph.nodes if n.op_type == "Conv")
    d = diff_graphs(m, m, {conv: 1.0}, {conv: 0.25})
    match = next(x for x in d.matches if x.base == conv)
    assert match.time_delta_ms == pytest.approx(-0.75)
    assert d.base_status[conv] == "changed"


# --- the view ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_diff_view_colours_changes_and_follows_selection(qtbot, graphs):
    pytest.importorskip("pytestqt")
    from PySide6.QtGui import QColor

    from app.gui.graph.diff_view import STATUS_PALETTE, GraphDiffView

    fp32, qdq, _ = graphs
    d = diff_graphs(fp32, qdq)
    v = GraphDiffView()
    qtbot.addWidget(v)
    v.resize(1366, 768)
    v.show()
    v.set_diff(fp32, qdq, d, "FP32", "INT8")
    conv = next(k for k, f in d.base.items() if f.op == "Conv")
    other = d.match_of_base()[conv]
    with qtbot.waitSignal(v.sig_pair_selected, timeout=2000) as sig:
        v.base.select_node(conv)
        v.base.sig_node_selected.emit(conv)  # as a click does
    assert sig.args == [conv, other]
    assert v.other.selected_node() == other
    assert v.base.node_colour(conv) == QColor(STATUS_PALETTE["changed"][0])
    assert v.other.node_colour(other) == QColor(STATUS_PALETTE["changed"][0])
    assert v.table.rowCount() >= d.summary()["changed"]
    v.table.selectRow(1)
    assert v.base.selected_node() and v.other.selected_node()
    v.set_colour_mode("precision")
    assert v.other.node_colour(other) != v.base.node_colour(conv)  # INT8 vs FP32
    assert "matched" in v.summary.text()
    assert not v.mode_box.model().item(v.mode_box.findData("delta")).isEnabled()
    # per-layer times on both sides: the time change of each matched node, coloured
    from app.gui.graph.diff_view import DELTA_PALETTE

    slow = next(m for m in d.matches if m.base != conv and d.base[m.base].op == "Conv")
    v.set_diff(fp32, qdq, d, "FP32", "INT8", base_times={conv: 1.0, slow.base: 1.0},
               other_times={other: 0.5, slow.other: 1.5})
    assert v.mode_box.model().item(v.mode_box.findData("delta")).isEnabled()
    v.set_colour_mode("delta")
    assert v.base.node_colour(v.base.fold_tree().visible_owner(conv).key) == \
        QColor(DELTA_PALETTE["faster"][0])
    shown = v.other.fold_tree().visible_owner(slow.other).key  # it, or the group folding it
    assert v.other.node_colour(shown) == QColor(DELTA_PALETTE["slower"][0])
    v.set_colour_mode("status")
    assert v.base.node_colour(v.base.fold_tree().visible_owner(conv).key) == \
        QColor(STATUS_PALETTE["changed"][0])


@pytest.mark.slow
def test_diff_graphs_from_the_variants_table(window, qtbot, variants):
    src, qdq, _ = variants
    from app.gui.graph.diff_view import start_graph_diff

    assert not window.variants.diff_button.isEnabled()
    job = start_graph_diff(window, [str(src), str(qdq)])
    with qtbot.waitSignal(job.sig_finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: getattr(window, "graph_diff_window", None) is not None,
                    timeout=10_000)
    w = window.graph_diff_window
    assert w.isVisible() and "vs" in w.windowTitle()
    assert w.view.diff.summary()["matched"] > 100


def test_cli_diff_json(capsys):
    from app.cli import main

    src = wheel_member(*CLS)
    assert main(["diff", str(src), str(src), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["matched"] == out["summary"]["base_nodes"] > 200
    assert out["summary"]["changed"] == 0


@pytest.mark.slow
def test_cli_diff_draws_both_graphs(tmp_path, variants, capsys):
    import xml.etree.ElementTree as ET

    from app.cli import main

    src, qdq, _ = variants
    out = tmp_path / "d.svg"
    assert main(["diff", str(src), str(qdq), "-o", str(out)]) == 0
    assert "precision FP32 → INT8" in capsys.readouterr().out
    root = ET.parse(out).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    sides = [g for g in root.findall(f"{ns}g") if g.get("transform", "").startswith("translate")]
    assert len(sides) == 2
    fills = {r.get("fill") for r in root.iter(f"{ns}path")}
    assert "#e07b24" in fills  # changed nodes (folded groups take their most important status)
    assert main(["diff", str(src), str(qdq), "-o", str(tmp_path / "d.png")]) == 2
