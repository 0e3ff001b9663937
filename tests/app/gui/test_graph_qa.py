"""Graph folding and drawing on real models found broken by trying them as a user would."""
from __future__ import annotations

import pytest

from tests.real_models import wheel_member

# openwakeword 0.5.1 ships silero VAD: an If whose branches hold the whole network (a group
# that is also a model node)
VAD = ("openwakeword", "0.5.1", "openwakeword/resources/models/silero_vad.onnx")


def test_if_group_at_a_structured_level_folds_without_recursing():
    from app.gui.graph.fold import FoldTree
    from converters.formats import open_model

    model = open_model(wheel_member(*VAD))
    tree = FoldTree(model)  # used to recurse into the If group's own node until RecursionError
    ifs = [it for it in tree.items.values() if it.is_group and it.node is not None]
    assert ifs and all(it.node.op_type == "If" for it in ifs)
    tree.expand_all()
    assert tree.visible_node_count() + len(tree.hidden) == model.node_count()


@pytest.mark.slow
def test_diff_matches_a_model_across_formats(tmp_path):
    """A TorchScript model against its ONNX export, and ONNX against the OpenVINO IR convert
    makes of it: the same layers under each format's op names (aten::_convolution, Conv,
    Convolution) are matched, not listed as all removed and all added."""
    import subprocess
    import sys

    from converters.formats import open_model
    from converters.graph_diff import diff_graphs
    from tests.conftest import REPO

    samples = REPO / "resources" / "samples"
    ts, onnx_ = open_model(samples / "digits_cnn.ts.pt"), open_model(samples / "digits_cnn.onnx")
    d = diff_graphs(ts, onnx_)
    ops = sorted(d.other[m.other].op for m in d.matches)
    assert ops.count("Conv") == 3 and ops.count("Gemm") == 2, ops  # was: 0 matched
    assert not any(c.startswith("op ") for m in d.matches for c in m.changes)  # same ops
    ir = tmp_path / "digits_cnn.xml"
    r = subprocess.run([sys.executable, "-m", "app.cli", "convert", str(samples / "digits_cnn.onnx"),
                        "--to", "openvino", "-o", str(ir)], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = diff_graphs(onnx_, open_model(ir))
    convs = [m for m in d.matches if d.base[m.base].op == "Conv"]
    assert len(convs) == 3 and all(d.other[m.other].op == "Convolution" for m in convs)
