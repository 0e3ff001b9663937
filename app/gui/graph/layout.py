"""Layered (Sugiyama-style) layout of the folded graph. Qt-free: testable and timeable alone.

Why our own engine — measured with bench/gui_graph_bench.py --libs on this machine (2-core VM,
Python 3.11), laying out the whole graph flat, without folding:

    graph                          grandalf 0.8    igraph 1.0 layout_sugiyama     this module
    DenseNet-121 (1,746 nodes)     41.4 s          9.6 s  (0.95 s given our       0.10 s
                                                   layering)
    generated ResNet, 10,000 nodes not run         0.04 s (0.13 s given our       0.59 s
                                   (> 10 min)      layering)

grandalf is far too slow. igraph is fast on a plain chain but its own layering puts every
constant on the top layer and drowns DenseNet in dummy nodes; it also knows no box widths
(one x unit per node) and no ports, and would add a compiled dependency. The view never lays
out a flat graph anyway: the graph is folded (fold.py) and each open group is laid out on its
own, from a few dozen to a couple of hundred boxes, where this pure-Python engine takes
milliseconds (opening all 2,551 groups of the 10,000-node graph lays out in about 1 s).

The engine: longest-path layering, with constants pulled down next to their first consumer
(the model's inputs stay on top); dummy nodes on long edges; barycentric ordering sweeps
keeping the order with the fewest crossings; x by weighted isotonic regression
(pool-adjacent-violators) toward the neighbours, in alternating sweeps: long edges pull hard
and stay straight, constants pull softly and step aside, open groups are pulled by their
ports rather than their centre.

Compound layout: an expanded group is laid out from its children (collapsed groups and
nodes are boxes; expanded sub-groups are boxes of the size of their own layout) plus an
in-port on top and an out-port at the bottom through which edges enter and leave it.
Routes are polylines through the dummy nodes; the view smooths them.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from app.gui.graph.fold import INPUT, FoldItem, FoldTree

log = logging.getLogger(__name__)

Point = tuple[float, float]
Rect = tuple[float, float, float, float]  # x, y, w, h (top-left corner)

H_GAP = 28.0  # between boxes of one layer
V_GAP = 44.0  # between layers
DUMMY_W = 8.0  # width a long edge takes where it crosses a layer
DUMMY_WEIGHT = 6.0  # long edges pull harder: they stay straight, boxes make way
CONST_WEIGHT = 0.25  # constants (no producer) pull softly: the data path stays straight
GROUP_PAD = 16.0  # frame padding around an expanded group's content
GROUP_TITLE = 26.0  # frame band holding the group's title
GROUP_BOTTOM = 14.0


@dataclass
class FlatLayout:
    """Result of `layered_layout`: centres, layers and routes (in node indices)."""

    x: list[float]
    y: list[float]
    layer: list[int]
    routes: dict[tuple[int, int], list[Point]]  # (u, v) -> bend points from u to v
    width: float
    height: float
    crossings: int = 0


def layered_layout(sizes: Sequence[tuple[float, float]], edges: Sequence[tuple[int, int]],
                   rank: Sequence[float] | None = None, top: int | None = None,
                   bottom: int | None = None, anchored: Iterable[int] = (),
                   ports: Sequence[tuple[float, float]] | None = None,
                   h_gap: float = H_GAP, v_gap: float = V_GAP) -> FlatLayout:
    """Lay out a directed graph top to bottom.

    `rank` is a total order (a topological position); an edge against it is treated as
    reversed, which breaks cycles. `top`/`bottom` are nodes pinned to the first/last layer
    (a group's ports). Sources without producers (constants) are placed just above their
    first consumer, except the `anchored` ones (the model's inputs), which stay on top.
    `ports`: per node, where edges enter and leave it along x, relative to its centre.
    """
    n = len(sizes)
    if n == 0:
        return FlatLayout([], [], [], {}, 0.0, 0.0)
    rank = list(rank) if rank is not None else _topological_rank(n, edges)
    if top is not None:
        rank[top] = float("-inf")
    if bottom is not None:
        rank[bottom] = float("inf")

    # --- acyclic, deduplicated edge set ------------------------------------------------------
    fwd: list[tuple[int, int]] = []  # edges in layout direction, each once
    seen: set[tuple[int, int]] = set()
    flipped: dict[tuple[int, int], tuple[int, int]] = {}  # layout edge -> original edge
    for u, v in edges:
        a, b = (u, v) if (rank[u], u) < (rank[v], v) else (v, u)
        if u == v or (a, b) in seen:
            continue  # a cycle's two directions share one line
        seen.add((a, b))
        if (a, b) != (u, v):
            flipped[(a, b)] = (u, v)
        fwd.append((a, b))
    order = sorted(range(n), key=lambda i: (rank[i], i))
    succ: list[list[int]] = [[] for _ in range(n)]
    pred: list[list[int]] = [[] for _ in range(n)]
    for a, b in fwd:
        succ[a].append(b)
        pred[b].append(a)

    layer, floating = _layers(order, succ, pred, top, bottom, set(anchored))

    # --- dummy nodes on long edges -----------------------------------------------------------
    n_layers = max(layer) + 1
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    layer_of = list(layer)
    up: list[list[int]] = [[] for _ in range(n)]  # neighbours one layer up / down (dummies too)
    down: list[list[int]] = [[] for _ in range(n)]
    chains: dict[tuple[int, int], list[int]] = {}
    for a, b in fwd:
        prev = a
        chain = []
        for lay in range(layer[a] + 1, layer[b]):
            d = len(layer_of)
            layer_of.append(lay)
            widths.append(DUMMY_W)
            heights.append(0.0)
            up.append([])
            down.append([])
            down[prev].append(d)
            up[d].append(prev)
            chain.append(d)
            prev = d
        down[prev].append(b)
        up[b].append(prev)
        chains[(a, b)] = chain
    total = len(layer_of)
    # constants pull their users aside little and give way; long edges hold their line
    weight = [CONST_WEIGHT if floating[v] else 1.0 for v in range(n)] + [DUMMY_WEIGHT] * (
        total - n)
    in_off = [p[0] for p in ports] if ports else [0.0] * n
    out_off = [p[1] for p in ports] if ports else [0.0] * n
    in_off += [0.0] * (total - n)
    out_off += [0.0] * (total - n)

    layers: list[list[int]] = [[] for _ in range(n_layers)]
    for v in order:
        layers[layer[v]].append(v)
    for a, b in fwd:  # dummies enter their layers in the order of their edge's source
        for d in chains[(a, b)]:
            layers[layer_of[d]].append(d)

    crossings = _order_layers(layers, up, down, total, top, bottom)
    xs = _x_coordinates(layers, up, down, widths, weight, h_gap, in_off, out_off)

    # --- y: layers stacked, boxes centred in their layer ----------------------------------------
    ys = [0.0] * total
    y = 0.0
    last = len(layers) - 1
    for li, lay in enumerate(layers):
        h = max((heights[v] for v in lay), default=0.0)
        for v in lay:
            ys[v] = y + h / 2
        port_gap = (li == 0 and top is not None) or (li == last - 1 and bottom is not None)
        y += h + (v_gap * 0.5 if port_gap else v_gap)  # ports sit on the frame: less air
    height = max(0.0, y - v_gap)
    left = min(xs[v] - widths[v] / 2 for v in range(total))
    right = max(xs[v] + widths[v] / 2 for v in range(total))
    xs = [x - left for x in xs]

    routes: dict[tuple[int, int], list[Point]] = {}
    for (a, b), chain in chains.items():
        pts = [(xs[d], ys[d]) for d in chain]
        if (a, b) in flipped:
            routes[flipped[(a, b)]] = pts[::-1]
        else:
            routes[(a, b)] = pts
    return FlatLayout(xs[:n], ys[:n], layer, routes, right - left, height, crossings)


def _topological_rank(n: int, edges: Sequence[tuple[int, int]]) -> list[float]:
    """A topological position per node (Kahn, ties by index; a cycle is cut at its lowest)."""
    import heapq

    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for u, v in edges:
        if u != v:
            succ[u].append(v)
            indeg[v] += 1
    heap = [v for v in range(n) if indeg[v] == 0]
    heapq.heapify(heap)
    rank = [-1.0] * n
    nxt = 0
    done = 0
    while done < n:
        if not heap:
            while rank[nxt] >= 0:
                nxt += 1
            heap.append(nxt)
        v = heapq.heappop(heap)
        if rank[v] >= 0:
            continue
        rank[v] = float(done)
        done += 1
        for w in succ[v]:
            indeg[w] -= 1
            if indeg[w] == 0 and rank[w] < 0:
                heapq.heappush(heap, w)
    return rank


def _layers(order: list[int], succ: list[list[int]], pred: list[list[int]],
            top: int | None, bottom: int | None,
            anchored: set[int]) -> tuple[list[int], list[bool]]:
    """Longest path from the sources; 'floating' nodes (no producer but constants) go late.

    A constant or a graph input placed on layer 0 would draw a long edge down to its first
    user; placing it right above that user keeps edges short and the picture readable.
    """
    n = len(order)
    layer = [0] * n
    for v in order:
        for p in pred[v]:
            if layer[p] + 1 > layer[v]:
                layer[v] = layer[p] + 1
    floating = [False] * n
    for v in order:
        if v != top and v not in anchored and all(floating[p] for p in pred[v]):
            floating[v] = True
    for v in reversed(order):
        if floating[v] and succ[v] and v != bottom:
            layer[v] = min(layer[s] for s in succ[v]) - 1
    low = min(layer[v] for v in range(n) if v != top) if n > (top is not None) else 0
    if top is not None:
        low -= 1  # keep layer 0 for the in-port alone
    layer = [lv - low for lv in layer]
    if top is not None:
        layer[top] = 0
    if bottom is not None:
        others = [layer[v] for v in range(n) if v != bottom]
        layer[bottom] = (max(others) if others else 0) + 1
    return layer, floating


def _order_layers(layers: list[list[int]], up: list[list[int]], down: list[list[int]],
                  total: int, top: int | None, bottom: int | None) -> int:
    """Barycentric sweeps; keeps the ordering with the fewest crossings. Returns that count."""
    pos = [0] * total
    for lay in layers:
        for i, v in enumerate(lay):
            pos[v] = i
    best = _crossings(layers, down, pos)
    best_layers = [list(lay) for lay in layers]
    sweeps = 8 if total < 4000 else 4
    for it in range(sweeps):
        if best == 0:
            break
        downward = it % 2 == 0
        rng = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        for li in rng:
            lay = layers[li]
            keyed = []
            for v in lay:
                nb = up[v] if downward else down[v]
                if nb:
                    keyed.append((sum(pos[u] for u in nb) / len(nb), pos[v], v))
                else:
                    keyed.append((float(pos[v]), pos[v], v))
            keyed.sort()
            lay[:] = [k[2] for k in keyed]
            for i, v in enumerate(lay):
                pos[v] = i
        c = _crossings(layers, down, pos)
        if c < best:
            best = c
            best_layers = [list(lay) for lay in layers]
    for li, lay in enumerate(best_layers):
        layers[li] = lay
    return best


def _crossings(layers: list[list[int]], down: list[list[int]], pos: list[int]) -> int:
    """Edge crossings between consecutive layers (inversion count with a Fenwick tree)."""
    total = 0
    for li in range(len(layers) - 1):
        nxt = len(layers[li + 1])
        if nxt < 2:
            continue
        targets = []
        for v in layers[li]:
            targets.extend(sorted(pos[w] for w in down[v]))
        if len(targets) < 2:
            continue
        tree = [0] * (nxt + 1)
        seen = 0
        for t in targets:
            # count earlier targets greater than t
            i, le = t + 1, 0
            while i > 0:
                le += tree[i]
                i -= i & -i
            total += seen - le
            i = t + 1
            while i <= nxt:
                tree[i] += 1
                i += i & -i
            seen += 1
    return total


def _x_coordinates(layers: list[list[int]], up: list[list[int]], down: list[list[int]],
                   widths: list[float], weight: list[float], gap: float,
                   in_off: list[float], out_off: list[float]) -> list[float]:
    """Alternating sweeps pulling each box toward its neighbours, boxes kept apart.

    An edge leaves a box at `out_off` from its centre and enters at `in_off` (the ports of an
    open group), so a box is pulled to line those points up, not its centre.
    """
    xs = [0.0] * len(widths)
    for lay in layers:
        x = 0.0
        for v in lay:
            xs[v] = x + widths[v] / 2
            x += widths[v] + gap
        shift = x / 2
        for v in lay:
            xs[v] -= shift
    if all(len(lay) <= 1 for lay in layers) and not any(in_off) and not any(out_off):
        return xs  # a chain: everything on one vertical line already
    seps_of = [[(widths[lay[i]] + widths[lay[i + 1]]) / 2 + gap for i in range(len(lay) - 1)]
               for lay in layers]
    forward = list(range(len(layers)))
    backward = forward[::-1]
    none: list[list[int]] = [[] for _ in widths]

    def pull(v: int, ups: list[int], downs: list[int]) -> float:
        """Where v's neighbours pull it: their mean, long-edge segments counting the most."""
        total = wsum = 0.0
        wv = weight[v]
        for u in ups:
            w = wv * weight[u]
            total += (xs[u] + out_off[u] - in_off[v]) * w
            wsum += w
        for u in downs:
            w = wv * weight[u]
            total += (xs[u] + in_off[u] - out_off[v]) * w
            wsum += w
        return total / wsum

    # down, up, down, up, then both sides to balance
    for ups, downs, rng in ((up, none, forward), (none, down, backward), (up, none, forward),
                            (none, down, backward), (up, down, forward)):
        for li in rng:
            lay = layers[li]
            if len(lay) == 1:
                v = lay[0]
                if ups[v] or downs[v]:
                    xs[v] = pull(v, ups[v], downs[v])
                continue
            targets = []
            wts = []
            for v in lay:
                k = len(ups[v]) + len(downs[v])
                if k:
                    targets.append(pull(v, ups[v], downs[v]))
                    wts.append(weight[v] * (1.0 + 0.25 * k))
                else:
                    targets.append(xs[v])
                    wts.append(0.05)
            for v, x in zip(lay, _isotonic(targets, wts, seps_of[li])):
                xs[v] = x
    return xs


def _isotonic(targets: list[float], weights: list[float], seps: list[float]) -> list[float]:
    """Minimise sum w (x - t)^2 subject to x[i+1] - x[i] >= seps[i] (pool adjacent violators)."""
    if len(targets) == 1:
        return targets
    if len(targets) == 2:
        if targets[1] - targets[0] >= seps[0]:
            return targets
        w0, w1 = weights
        mid = (w0 * targets[0] + w1 * (targets[1] - seps[0])) / (w0 + w1)
        return [mid, mid + seps[0]]
    offs = [0.0]
    for s in seps:
        offs.append(offs[-1] + s)
    # substitute y = x - offs: constraints become y non-decreasing
    blocks: list[list[float]] = []  # [weighted sum, weight, count]
    for t, w, o in zip(targets, weights, offs):
        blocks.append([(t - o) * w, w, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, ww, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += ww
            blocks[-1][2] += c
    out = []
    for s, w, c in blocks:
        out.extend([s / w] * int(c))
    return [y + o for y, o in zip(out, offs)]


# --- compound layout of a FoldTree ------------------------------------------------------------
@dataclass
class EdgeRoute:
    """One drawn line: from a box (or port) to a box (or port), in scene coordinates."""

    src: str  # item key, or "<group key>:in" for a group's in-port
    dst: str  # item key, or "<group key>:out"
    points: list[Point]  # first = start on the source's border, last = end on the target's
    arrow: bool  # False where the line goes on inside an expanded group


@dataclass
class SceneLayout:
    """Where everything goes. Rects are (x, y, w, h) with y growing downward."""

    boxes: dict[str, Rect] = field(default_factory=dict)  # collapsed groups, nodes, inputs...
    frames: dict[str, Rect] = field(default_factory=dict)  # expanded groups (root excluded)
    edges: list[EdgeRoute] = field(default_factory=list)
    layer: dict[str, int] = field(default_factory=dict)  # layer of an item within its group
    width: float = 0.0
    height: float = 0.0


@dataclass
class _Local:
    """A group's own layout, relative to its frame's top-left corner."""

    w: float
    h: float
    pos: dict[str, Point]  # child key -> top-left of its box or frame
    size: dict[str, tuple[float, float]]
    layer: dict[str, int]
    in_x: float | None  # port positions along the top / bottom border
    out_x: float | None
    routes: list[tuple[str, str, list[Point]]]  # bends between children / ports


SizeFn = Callable[[FoldItem], tuple[float, float]]


def estimate_size(item: FoldItem) -> tuple[float, float]:
    """Box size without a font (tests, benchmarks): about 7 px per character."""
    text = max(len(item.label), len(item.node.name) if item.node else 0)
    return (min(240.0, max(100.0, 7.0 * text + 20)), 56.0)


class CompoundLayout:
    """Lays out a FoldTree's visible part; caches each group's layout until it changes."""

    def __init__(self, tree: FoldTree, size_fn: SizeFn = estimate_size):
        self.tree = tree
        self.size_fn = size_fn
        self._cache: dict[str, tuple[tuple, _Local]] = {}  # group -> (children sizes, layout)
        self._sizes: dict[str, tuple[float, float]] = {}

    def invalidate(self, key: str | None = None) -> None:
        """Forget cached layouts: all of them, or the group `key` and its ancestors."""
        if key is None:
            self._cache.clear()
            return
        it = self.tree.items.get(key)
        if it is not None:
            for g in [it, *it.ancestors()]:
                self._cache.pop(g.key, None)

    def box_size(self, item: FoldItem) -> tuple[float, float]:
        s = self._sizes.get(item.key)
        if s is None:
            s = self._sizes[item.key] = self.size_fn(item)
        return s

    def clear_sizes(self) -> None:
        self._sizes.clear()
        self._cache.clear()

    def run(self) -> SceneLayout:
        root = self.tree.root
        local = self._local(root)
        out = SceneLayout(width=local.w, height=local.h)
        self._place(root, local, 0.0, 0.0, out)
        return out

    def _local(self, group: FoldItem) -> _Local:
        kids = group.children
        sizes: list[tuple[float, float]] = []
        ports: list[tuple[float, float]] = []
        for c in kids:
            if c.is_group and c.expanded:
                sub = self._local(c)
                sizes.append((sub.w, sub.h))
                ports.append((0.0 if sub.in_x is None else sub.in_x - sub.w / 2,
                              0.0 if sub.out_x is None else sub.out_x - sub.w / 2))
            else:
                sizes.append(self.box_size(c))
                ports.append((0.0, 0.0))
        sig = (tuple(sizes), tuple(ports))  # what the layout depends on
        hit = self._cache.get(group.key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        index = {c.key: i for i, c in enumerate(kids)}
        ge = self.tree.group_edges.get(group.key)
        edges: list[tuple[int, int]] = []
        top = bottom = None
        all_sizes = list(sizes)
        rank: list[float] = [float(c.order) for c in kids]
        if ge is not None:
            edges = [(index[a.key], index[b.key]) for a, b in ge.inner]
            edges.sort()
            is_root = group.parent is None
            if ge.from_in and not is_root:
                top = len(all_sizes)
                all_sizes.append((0.0, 0.0))
                ports.append((0.0, 0.0))
                rank.append(0.0)
                edges.extend(sorted((top, index[c.key]) for c in ge.from_in))
            if ge.to_out and not is_root:
                bottom = len(all_sizes)
                all_sizes.append((0.0, 0.0))
                ports.append((0.0, 0.0))
                rank.append(0.0)
                edges.extend(sorted((index[c.key], bottom) for c in ge.to_out))
        anchored = [i for i, c in enumerate(kids) if c.kind == INPUT]
        flat = layered_layout(all_sizes, edges, rank, top, bottom, anchored, ports)

        is_root = group.parent is None
        pad = 0.0 if is_root else GROUP_PAD
        head = 0.0 if is_root else GROUP_TITLE
        foot = 0.0 if is_root else GROUP_BOTTOM
        title_w = 0.0 if is_root else self.box_size(group)[0]
        content_w = flat.width
        w = max(content_w + 2 * pad, title_w)
        dx = pad + (w - 2 * pad - content_w) / 2
        h = head + flat.height + foot
        pos: dict[str, Point] = {}
        size: dict[str, tuple[float, float]] = {}
        layer: dict[str, int] = {}
        for i, c in enumerate(kids):
            cw, ch = sizes[i]
            pos[c.key] = (dx + flat.x[i] - cw / 2, head + flat.y[i] - ch / 2)
            size[c.key] = (cw, ch)
            layer[c.key] = flat.layer[i]
        in_x = dx + flat.x[top] if top is not None else None
        out_x = dx + flat.x[bottom] if bottom is not None else None
        keys = [c.key for c in kids] + (["<in>"] if top is not None else []) + (
            ["<out>"] if bottom is not None else [])
        routes = []
        for (u, v) in edges:
            pts = [(dx + x, head + y) for x, y in flat.routes.get((u, v), [])]
            routes.append((keys[u], keys[v], pts))
        local = _Local(w, h, pos, size, layer, in_x, out_x, routes)
        self._cache[group.key] = (sig, local)
        return local

    def _place(self, group: FoldItem, local: _Local, ox: float, oy: float,
               out: SceneLayout) -> None:
        """Absolute coordinates for a group's children and routes; recurses into frames."""
        ports_in: dict[str, Point] = {}
        ports_out: dict[str, Point] = {}
        for c in group.children:
            x, y = local.pos[c.key]
            w, h = local.size[c.key]
            x, y = x + ox, y + oy
            out.layer[c.key] = local.layer[c.key]
            if c.is_group and c.expanded:
                sub = self._local(c)
                out.frames[c.key] = (x, y, w, h)
                ports_in[c.key] = (x + (sub.in_x if sub.in_x is not None else w / 2), y)
                ports_out[c.key] = (x + (sub.out_x if sub.out_x is not None else w / 2), y + h)
                self._place(c, sub, x, y, out)
            else:
                out.boxes[c.key] = (x, y, w, h)
                ports_in[c.key] = (x + w / 2, y)
                ports_out[c.key] = (x + w / 2, y + h)
        if local.in_x is not None:
            ports_out["<in>"] = (ox + local.in_x, oy)
        if local.out_x is not None:
            ports_in["<out>"] = (ox + local.out_x, oy + local.h)
        for a, b, bends in local.routes:
            pa = ports_out[a]
            pb = ports_in[b]
            back = local.layer.get(a, -1) > local.layer.get(b, 1 << 30) if (
                a in local.layer and b in local.layer) else False
            if back:  # an edge against the flow: leave from the top, enter from the bottom
                pa = ports_in[a]
                pb = ports_out[b]
            pts = [pa] + [(x + ox, y + oy) for x, y in bends] + [pb]
            items = self.tree.items
            into_group = b in items and items[b].is_group and items[b].expanded
            out.edges.append(EdgeRoute(
                group.key + ":in" if a == "<in>" else a,
                group.key + ":out" if b == "<out>" else b,
                pts, arrow=b != "<out>" and not into_group))
