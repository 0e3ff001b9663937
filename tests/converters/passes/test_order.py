"""The ordering rules and which passes apply to which format (converters/passes/order.py)."""
from __future__ import annotations

import itertools

import pytest

from converters.passes import PASSES
from converters.passes.order import (
    RULES, STAGES, applicability, canonical_order, check_pipeline, check_rules,
)


def test_every_pass_declares_a_known_stage():
    for name, cls in PASSES.items():
        assert cls.stage in STAGES, name


def test_every_pair_has_a_valid_order_unless_a_rule_forbids_the_pair():
    """canonical_order (the window's list order) is valid for every pair the rules allow."""
    precision = {n for n, c in PASSES.items() if c.stage == "precision"}
    for a, b in itertools.permutations(PASSES, 2):
        if {a, b} <= precision or "distill" in (a, b) and "prune-channels" not in (a, b):
            continue  # one-precision; distill with nothing to recover from
        assert check_rules(canonical_order([a, b])) == [], (a, b)


def test_refusals_name_the_rule_and_a_valid_order():
    (p,) = check_rules(["int8-static", "simplify"])
    assert p.rule == "simplify-before-precision" and p.index == 1
    assert "rule simplify-before-precision" in p.message
    assert p.message.endswith("a valid order: simplify → int8-static")
    (p,) = check_rules(["distill", "prune-channels"])
    assert p.rule == "distill-after-pruning" and "prune-channels → distill" in p.message
    assert canonical_order(["prune-magnitude", "distill", "prune-channels"]) == \
        ["prune-channels", "distill", "prune-magnitude"]
    assert set(RULES) >= {p.rule for p in check_pipeline("torch", ["fp16", "prune-channels"])}


@pytest.mark.parametrize("fmt, ok, not_ok", [
    ("onnx", {"simplify", "fp16", "int8-dynamic", "prune-magnitude", "lowrank"},
     {"distill", "prune-channels"}),
    ("torch", {"distill", "prune-channels", "simplify", "int8-dynamic", "fp16"}, set()),
    ("openvino", {"fp16", "int8-static", "weight-only"},
     {"simplify", "int8-dynamic", "distill", "prune-channels", "lowrank"}),
])
def test_applicability_by_format(fmt, ok, not_ok):
    table = applicability(fmt)
    assert {n for n in ok if table[n].ok} == ok
    assert {n for n in not_ok if not table[n].ok} == not_ok
    for n in not_ok:
        assert "cannot be converted" in table[n].reason
    if fmt == "torch":
        assert table["int8-dynamic"].via == ("onnx",)
        assert "converted to ONNX first" in table["int8-dynamic"].reason
    assert all(a.ok for a in applicability(None).values())  # no model open: all offered


def test_format_refusal_names_the_pass_that_changed_the_format():
    (p,) = check_pipeline("torch", ["int8-dynamic", "distill"])[:1]
    assert p.rule == "format"
    assert "after int8-dynamic the model is ONNX" in p.message
    assert "put distill before int8-dynamic" in p.message


@pytest.mark.parametrize("precision", ["fp16", "int8-dynamic", "int8-static", "weight-only"])
def test_the_windows_list_order_runs_everything_it_can_on_a_torch_model(precision):
    """Every non-precision pass plus one precision pass, in the list's default order: valid on
    a PyTorch model (torch passes first, then the conversion, then the ONNX ones)."""
    names = [n for n, c in PASSES.items() if c.stage != "precision"] + [precision]
    assert check_pipeline("torch", canonical_order(names)) == []
    assert check_pipeline("torch", names[::-1])  # and the reverse is refused
