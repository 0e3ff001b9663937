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
