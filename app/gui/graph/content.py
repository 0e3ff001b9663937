"""What a box says (title and body lines), Qt-free: the window and the headless SVG writer
draw the same text, each measuring it with its own fonts."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.gui.graph.fold import GROUP, INPUT, OUTPUT, FoldItem, FoldTree, shape_text
from app.gui.graph.palette import category

NORMAL, MUTED = 0, 1

Summary = Callable[[FoldItem], tuple[int, dict[str, int]]]


def box_content(tree: FoldTree, it: FoldItem,
                summary: Summary) -> tuple[str, list[tuple[str, int]]]:
    """(title, [(line, NORMAL|MUTED)]): a node's op, short name, weight rows and output shape;
    a group's node count and main ops; an input's dtype and shape."""
    lines: list[tuple[str, int]] = []
    if it.kind in (INPUT, OUTPUT):
        title = it.label
        tinfo = it.tensor
        desc = " ".join(x for x in (tinfo.dtype if tinfo else "", shape_text(tinfo)) if x)
        lines.append((desc or ("input" if it.kind == INPUT else "output"), MUTED))
        return title, lines
    if it.kind == GROUP and it.node is None:
        title = it.label
        count, hist = summary(it)
        work = [(op, n) for op, n in hist.items() if category(op) != "constant"] or list(
            hist.items())
        ops = "  ".join(f"{op}×{n}" if n > 1 else op for op, n in work[:4])
        lines.append((f"{count} nodes", MUTED))
        if ops:
            lines.append((ops, NORMAL))
    else:
        n = it.node
        title = n.op_type
        short = short_name(n.name, n.op_type)
        if short:
            lines.append((short, MUTED))
        if category(n.op_type) != "constant":  # a constant's shape says it all
            # the largest first: a quantized op's scales and zero points come before its W
            weights = sorted(tree.weights(n), key=lambda nw: -(nw[1].numel or 0))
            for name, w in weights[:2]:
                lines.append((weight_text(name, w), NORMAL))
            if len(weights) > 2:
                lines.append(("+ " + ", ".join(name for name, _ in weights[2:]), MUTED))
        if it.is_group:
            count, _ = summary(it)
            lines.append((f"{len(it.children)} bodies · {count - 1} nodes", MUTED))
    shape = shape_text(tree.output_tensor(it))
    if shape:
        lines.append((shape, NORMAL))
    return title, lines


def weight_text(name: str, t: Any) -> str:
    """A weight row as Netron writes it: 'W ⟨16×3×3×3⟩', a small one's values 'B = 3'."""
    v = t.value
    if isinstance(v, bool) or v is None:
        dtype = f" {t.dtype}" if t.dtype and t.dtype != "float32" else ""
        return f"{name} ⟨{shape_text(t) or '?'}⟩{dtype}"
    if isinstance(v, (int, float)):
        return f"{name} = {v:g}" if isinstance(v, float) else f"{name} = {v}"
    if isinstance(v, list) and 0 < len(v) <= 4 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return f"{name} = [{', '.join(f'{x:g}' if isinstance(x, float) else str(x) for x in v)}]"
    dtype = f" {t.dtype}" if t.dtype and t.dtype != "float32" else ""  # int8 after quantizing
    return f"{name} ⟨{shape_text(t) or '?'}⟩{dtype}"


def short_name(name: str, op_type: str) -> str:
    """What a box says besides its op: '/features/conv1/Conv' -> 'conv1' (frames say the rest)."""
    parts = [p for p in name.split("/") if p]
    if not parts:
        return ""
    if parts[-1] == op_type or parts[-1].startswith(op_type + "_"):
        return parts[-2] if len(parts) > 1 else ""
    return parts[-1]
