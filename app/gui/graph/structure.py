"""Folding by structure, for graph levels without scope names (paddle2onnx, tf2onnx, Caffe2).

Qt-free. Given the items of one level in topological order and the edges between them, finds:

- blocks: the stretches between *cut points* — places in the order that every path from the
  input to the output crosses through one tensor. A residual block, a squeeze-excitation gate,
  an inception or dense block each lies between two cuts; a plain chain has a cut after every
  node, and is grouped into units that start at a compute op (Conv, MatMul, LSTM…) and take
  the cheap ops that follow it (BatchNorm, activation);
- stages: runs of blocks between down-samplings (a Conv or pool with a stride above 1) or
  up-samplings (Resize), labelled with the accumulated stride and the tensor size when known;
- repeats: consecutive blocks with the same op sequence, gathered as "N × Residual".

The result is a nesting of `Part`s over item indices; fold.py turns it into groups.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

STRUCT_MIN = 24  # a scope-less level with at least this many boxes is folded by structure
STAGE_MIN_UNITS = 6  # fewer units than this: no stages (they would say nothing)
REPEAT_MIN = 3  # consecutive identical blocks gathered into one "N ×" group
UNITS_PER_LEVEL = 12  # a stage with more children than this gathers its repeats
BIG_BLOCK = 40  # a block with more items is split again, ignoring long skip connections
SPANS = (64, 32, 16)  # the longest edges kept at each try (in items)
MIN_SPAN = SPANS[-1]

COMPUTE_OPS = frozenset({
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "Gemm", "MatMul", "MatMulInteger",
    "QLinearMatMul", "MatMulNBits", "FusedMatMul", "Einsum", "LSTM", "GRU", "RNN", "Attention",
    "MultiHeadAttention", "MaxPool", "AveragePool", "Convolution", "GroupConvolution",
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})
_UPSAMPLE_OPS = frozenset({"Resize", "Upsample"})
_PASS_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast", "Identity"})
_MERGE_KIND = {"Add": "Residual", "Sum": "Residual", "Concat": "Concat", "Mul": "Gate"}


@dataclass
class ItemInfo:
    """What the structure needs to know about one item of the level."""

    op: str  # op type; "" for a group
    stride: int = 1  # the largest spatial stride of the op (Conv, pools), 1 when none
    floating: bool = False  # no data input (a computed constant): goes with its consumer
    spatial: str = ""  # the output's spatial size ("24×96"), "" when unknown


@dataclass
class Part:
    """A group to make: its label and its children (item indices or nested parts)."""

    label: str
    kind: str  # "stage" | "repeat" | "block"
    children: list[int | Part] = field(default_factory=list)

    def indices(self) -> list[int]:
        out: list[int] = []
        for c in self.children:
            out.extend(c.indices() if isinstance(c, Part) else [c])
        return out


def cut_points(n: int, edges: Sequence[tuple[int, int]], floating: Sequence[bool]) -> list[bool]:
    """cut[i]: at most one value produced at or before i is still needed after i.

    Floating items (constants computed in the graph) are not counted as live values and are
    never cut after: they belong with the item that reads them.
    """
    last: dict[int, int] = {}
    for a, b in edges:
        if a < b and not floating[a]:
            last[a] = max(last.get(a, -1), b)
    delta = [0] * (n + 1)
    for a, b in last.items():
        delta[a] += 1
        delta[b] -= 1
    cut = [False] * n
    live = 0
    for i in range(n):
        live += delta[i]
        cut[i] = live <= 1 and not floating[i]
    return cut


def _segments(items: list[int], edges: Sequence[tuple[int, int]], floating: Sequence[bool],
              span: int | None) -> list[list[int]]:
    """Split consecutive items at cut points; a segment still too big to read is split again
    ignoring ever shorter long-range edges (FPN laterals, U-Net skips), which would otherwise
    keep the whole neck of a detector in one block."""
    lo, n = items[0], len(items)
    local = [(a - lo, b - lo) for a, b in edges
             if lo <= a < b < lo + n and (span is None or b - a <= span)]
    cut = cut_points(n, local, [floating[i] for i in items])
    out: list[list[int]] = []
    cur: list[int] = []
    for k, i in enumerate(items):
        cur.append(i)
        if cut[k]:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    if span is not None and span <= MIN_SPAN:
        return out
    final: list[list[int]] = []
    for seg in out:
        if sum(not floating[i] for i in seg) <= BIG_BLOCK:
            final.append(seg)
            continue
        parts = [seg]
        for t in SPANS:
            if span is not None and t >= span:
                continue
            parts = _segments(seg, edges, floating, t)
            if len(parts) >= 3:
                break
        final.extend(parts if len(parts) >= 3 else [seg])
    return final


def _units(infos: Sequence[ItemInfo], edges: Sequence[tuple[int, int]]) -> list[Part | int]:
    """Blocks between cut points; chains grouped into compute-op units."""
    n = len(infos)
    floating = [i.floating for i in infos]
    segments = _segments(list(range(n)), edges, floating, None)
    units: list[Part | int] = []
    chain: list[int] = []
    chain_kind = ""

    def flush() -> None:
        nonlocal chain, chain_kind
        if len(chain) > 1:
            units.append(Part(chain_kind or "Block", "block", chain))
        elif chain:
            units.append(chain[0])
        chain, chain_kind = [], ""

    for seg in segments:
        solid = [i for i in seg if not floating[i]]
        if len(solid) >= 2:  # a branching block: what merges it names it
            if chain and not any(infos[i].op in COMPUTE_OPS or not infos[i].op for i in solid):
                chain.extend(seg)  # hard-swish, a gate without weights: part of the unit
                continue
            flush()
            kind = _MERGE_KIND.get(infos[solid[-1]].op, "Block")
            units.append(Part(kind, "block", seg))
            continue
        op = infos[solid[0]].op if solid else ""
        if solid and not op:  # a group (a scope, an If): a unit of its own already
            flush()
            if len(seg) == 1:
                units.append(seg[0])
            else:
                units.append(Part("Block", "block", seg))
            continue
        if op in _PASS_OPS:  # Q/DQ and casts go with the unit they feed
            chain.extend(seg)
            continue
        if op in COMPUTE_OPS or not chain_kind:
            if chain_kind:
                flush()
            chain_kind = op or "Block"
        chain.extend(seg)
    flush()
    return units


def _signature(u: Part | int, infos: Sequence[ItemInfo]) -> tuple[str, ...]:
    idx = u.indices() if isinstance(u, Part) else [u]
    return tuple(infos[i].op for i in idx if not infos[i].floating)


def _stride(u: Part | int, infos: Sequence[ItemInfo]) -> tuple[int, bool]:
    """(product of strides, up-sampling) of one unit."""
    s, up = 1, False
    for i in (u.indices() if isinstance(u, Part) else [u]):
        s *= max(1, infos[i].stride)
        up = up or infos[i].op in _UPSAMPLE_OPS
    return s, up


def _gather_repeats(units: list[Part | int], infos: Sequence[ItemInfo]) -> list[Part | int]:
    out: list[Part | int] = []
    i = 0
    while i < len(units):
        sig = _signature(units[i], infos)
        j = i + 1
        while j < len(units) and isinstance(units[i], Part) and \
                _signature(units[j], infos) == sig:
            j += 1
        run = units[i:j]
        if len(run) >= REPEAT_MIN:
            kind = run[0].label if isinstance(run[0], Part) else infos[run[0]].op
            out.append(Part(f"{len(run)} × {kind}", "repeat", list(run)))
        else:
            out.extend(run)
        i = j
    return out


def structure(infos: Sequence[ItemInfo], edges: Sequence[tuple[int, int]]) -> list[Part | int]:
    """The children of a level, regrouped: stages of (repeated) blocks of items.

    `infos` are in topological order; `edges` are (producer, consumer) index pairs.
    Returns the new top-level children; an item not in any part stays at its index.
    """
    units = _units(infos, edges)
    # stages: a unit that changes resolution starts the next one
    stages: list[list[Part | int]] = [[]]
    factors: list[tuple[int, bool]] = [(1, False)]
    factor = 1
    for u in units:
        s, up = _stride(u, infos)
        if (s > 1 or up) and stages[-1]:
            factor = factor * s if not up else max(1, factor // 2)
            stages.append([])
            factors.append((factor, up))
        elif s > 1 or up:
            factor = factor * s if not up else max(1, factor // 2)
            factors[-1] = (factor, up)
        stages[-1].append(u)
    if len(stages) < 2 or len(units) < STAGE_MIN_UNITS:
        return _gather_repeats(units, infos) if len(units) > UNITS_PER_LEVEL else units
    out: list[Part | int] = []
    k = 0
    for members, (f, up) in zip(stages, factors):
        last = members[-1]
        idx = last.indices() if isinstance(last, Part) else [last]
        size = next((infos[i].spatial for i in reversed(idx) if infos[i].spatial), "")
        if len(members) > 1:
            k += 1
        label = f"Stage {k}"
        if f > 1:
            label += f" · /{f}"
        if up:
            label += " ↑"
        if size:
            label += f" · {size}"
        if len(members) > UNITS_PER_LEVEL:
            members = _gather_repeats(members, infos)
        if len(members) == 1:
            out.append(members[0])
        else:
            out.append(Part(label, "stage", members))
    return out


def number_blocks(parts: list[Part | int]) -> None:
    """Blocks get a running number per kind ("Residual 3"), so boxes can be told apart."""
    seen: dict[str, int] = {}

    def rec(ps: list[Part | int]) -> None:
        for p in ps:
            if isinstance(p, Part):
                if p.kind == "block":
                    seen[p.label] = seen.get(p.label, 0) + 1
                    p.label = f"{p.label} {seen[p.label]}"
                rec(p.children)

    rec(parts)
