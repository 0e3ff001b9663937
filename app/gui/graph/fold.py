"""The folded picture of a ModelGraph: which boxes the graph view shows, and their edges.

Qt-free so it can be tested and timed alone. Nodes are grouped by their scope path
("/encoder/layer.0/attn") into a tree of groups; a collapsed group is drawn as one box.

Where a node has no scope (old Caffe2-converted zoo models name nodes "n12"), the scope is
inferred so that big scope-less models still fold: from the "/" path of a constant input
("conv4_8/x1/bn_scale_0" -> "conv4_8/x1") or of an output, else the common scope of the nodes
that feed it, else (constants) of the nodes it feeds. A group that holds one item is replaced
by that item, and a group with too many children is split into chunks of consecutive nodes, so
every level stays small enough to lay out quickly.

Nodes with subgraphs (If/Loop/Scan) are groups too: the group is the node itself, its children
are one group per body ("then_branch", "else_branch") holding the body's nodes.

Weights are not boxes: they are listed as attributes of the node that uses them, as Netron
does. That holds for initializers and for weights stored in Constant nodes (paddle2onnx and
tf2onnx exports keep every weight in one): such a Constant (or a ConstantOfShape of a stored
shape) is no box of its own but a weight row in each node that reads it. Edges come from tensor
producer -> consumer relations; a body's outputs feed the node that owns the body.

Where a level of the graph has no scope names at all, it is folded by structure
(structure.py: blocks between the points every path crosses, stages between down-samplings,
repeated blocks) rather than by count.
"""
from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.gui.graph.structure import (COMPUTE_OPS, STRUCT_MIN, ItemInfo, Part, number_blocks,
                                     structure)
from converters.graph import Graph, ModelGraph, Node, TensorInfo

log = logging.getLogger(__name__)

FOLD_BUDGET = 300  # a model opens folded so that at most about this many boxes show
STAGE_LEVEL = 40  # a top level with more boxes than this (scoped or not) is cut into stages
MAX_CHILDREN = 200  # a group with more children is split into chunks of consecutive nodes

NODE, GROUP, INPUT, OUTPUT = "node", "group", "input", "output"
_CONST_OPS = {"Constant", "ConstantOfShape"}
# ops that, fed by stored weights alone, still hold a weight: shown as a row of their consumer
_WEIGHT_OPS = _CONST_OPS | {"DequantizeLinear", "Cast", "Identity"}


@dataclass(eq=False, slots=True)
class FoldItem:
    """One box or group of the view. `key` is the node id for nodes (and for If/Loop groups)."""

    key: str
    kind: str  # NODE | GROUP | INPUT | OUTPUT
    label: str
    parent: FoldItem | None = None
    children: list[FoldItem] = field(default_factory=list)
    node: Node | None = None  # the model node (NODE, and GROUP owning subgraphs)
    tensor: TensorInfo | None = None  # INPUT / OUTPUT
    path: str = ""  # the full scope path of a scope group ("/conv4_8/x1")
    expanded: bool = False
    body: bool = False  # a subgraph body inside an If/Loop group
    chunk: bool = False  # a slice of a group too wide to show at once
    order: int = 0  # topological position of its first node: orders children, breaks cycles
    lo: int = 0  # leaf range [lo, hi) in depth-first order: membership tests, sums
    hi: int = 0

    @property
    def is_group(self) -> bool:
        return self.kind == GROUP

    @property
    def is_model_node(self) -> bool:
        """True for boxes that stand for a model node (leaf nodes and If/Loop groups)."""
        return self.node is not None

    def ancestors(self) -> Iterator[FoldItem]:
        p = self.parent
        while p is not None:
            yield p
            p = p.parent

    def __repr__(self) -> str:  # keeps debugger output short
        return f"FoldItem({self.kind} {self.key!r})"


@dataclass
class GroupEdges:
    """The edges a group's own layout needs, between its children and its two ports."""

    inner: set[tuple[FoldItem, FoldItem]] = field(default_factory=set)
    from_in: set[FoldItem] = field(default_factory=set)  # in-port -> child
    to_out: set[FoldItem] = field(default_factory=set)  # child -> out-port


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    first = paths[0]
    n = len(first)
    for p in paths[1:]:
        n = min(n, len(p))
        for i in range(n):
            if p[i] != first[i]:
                n = i
                break
    return first[:n]


def shape_text(t: TensorInfo | None) -> str:
    """'1×64×56×56'; '?' for an unknown dim; '' when the rank is unknown."""
    if t is None or t.shape is None:
        return ""
    if not t.shape:
        return "scalar"
    # exporters' made-up names for unknown dims ("unk__12") say no more than '?'
    return "×".join("?" if d is None or (isinstance(d, str) and d.startswith("unk__")) else str(d)
                    for d in t.shape)


class FoldTree:
    """Groups, leaves and edges of one model, with each group's expanded state."""

    def __init__(self, model: ModelGraph, max_children: int = MAX_CHILDREN):
        self.model = model
        self.max_children = max_children
        self.items: dict[str, FoldItem] = {}
        self.tensors: dict[str, TensorInfo] = {}  # every tensor, subgraphs included
        self.producer: dict[str, str] = {}  # tensor -> key of the item producing it
        self.consumers: dict[str, list[str]] = {}
        self.edges: list[tuple[str, str, str]] = []  # (producer key, consumer key, tensor)
        # Constant nodes shown as weight rows in their consumers: node id -> first consumer id
        self.hidden: dict[str, str] = {}
        self.hidden_nodes: dict[str, Node] = {}
        self.weight_like: set[str] = set()  # the tensors those Constants produce
        self.weight_source: dict[str, str] = {}  # a dequantized weight -> its stored tensor
        self.root = FoldItem("", GROUP, model.meta.path or "model", expanded=True)
        self._build()

    # --- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        model = self.model
        self._collect_tensors(model.graph)
        self._find_weight_constants()
        g = model.graph
        for name in g.inputs:
            it = FoldItem(f"in:{name}", INPUT, name, tensor=g.tensors.get(name) or TensorInfo(name))
            self._add(self.root, it)
            self.producer[name] = it.key
        for item in model.walk():
            for o in item.node.outputs:
                if o:
                    self.producer[o] = item.node.id
        self._build_graph(self.root, g)
        for name in g.outputs:
            it = FoldItem(f"out:{name}", OUTPUT, name,
                          tensor=g.tensors.get(name) or TensorInfo(name))
            self._add(self.root, it)
        self._collect_edges()
        self._topo_order()
        self._finish(self.root)
        self._index(self.root, 0)
        self._chains = {k: self._chain(it) for k, it in self.items.items()}
        self.group_edges = self._group_edges()

    def _find_weight_constants(self) -> None:
        """Constants that only hold weights: shown inside their consumers, not as boxes.

        A Constant (or a ConstantOfShape of a stored shape) qualifies when it reads nothing
        computed and its outputs are no graph output; its first consumer stands for it when
        something asks to select it.
        """
        outputs: set[str] = set()

        def rec(g: Graph) -> None:
            outputs.update(g.outputs)
            for n in g.nodes:
                for sub in n.subgraphs.values():
                    rec(sub)

        rec(self.model.graph)
        stored = {k for k, t in self.tensors.items() if t.is_weight}
        candidates: dict[str, Node] = {}
        for item in self.model.walk():  # file order is topological: chains resolve in one pass
            n = item.node
            ins = [i for i in n.inputs if i]
            if (n.op_type in _WEIGHT_OPS and not n.subgraphs and n.outputs
                    and all(o and o not in outputs for o in n.outputs)
                    and all(i in stored for i in ins)
                    and (ins or n.op_type in _CONST_OPS)):
                candidates[n.id] = n
                stored.update(n.outputs)
                if ins and n.op_type not in _CONST_OPS:  # a quantized (or cast) weight
                    src = self.weight_source.get(ins[0], ins[0])
                    for o in n.outputs:
                        self.weight_source[o] = src
        if not candidates:
            return
        produced = {o: nid for nid, n in candidates.items() for o in n.outputs}
        feeds: dict[str, str] = {}  # candidate -> the first candidate reading it
        for item in self.model.walk():
            n = item.node
            for i in n.inputs:
                nid = produced.get(i)
                if nid is None:
                    continue
                if n.id in candidates:
                    feeds.setdefault(nid, n.id)
                elif nid not in self.hidden:
                    self.hidden[nid] = n.id
        # a Constant feeding a DequantizeLinear is hidden with it, under the same consumer;
        # one nothing reads stays a box: hiding it would hide it for good
        for nid in candidates:
            hop, seen = nid, 0
            while hop not in self.hidden and hop in feeds and seen < 16:
                hop, seen = feeds[hop], seen + 1
            if hop in self.hidden:
                self.hidden.setdefault(nid, self.hidden[hop])
        for nid in self.hidden:
            self.weight_like.update(candidates[nid].outputs)
            self.hidden_nodes[nid] = candidates[nid]

    def _collect_tensors(self, g: Graph) -> None:
        self.tensors.update(g.tensors)
        for n in g.nodes:
            for sub in n.subgraphs.values():
                self._collect_tensors(sub)

    def _add(self, parent: FoldItem, item: FoldItem) -> FoldItem:
        item.parent = parent
        parent.children.append(item)
        self.items[item.key] = item
        return item

    def _build_graph(self, container: FoldItem, g: Graph) -> None:
        """Put the nodes of one (sub)graph under `container`, in groups by scope."""
        scopes = self._scopes(g)
        # nodes under each scope path: a scope holding a single node gets no group at all
        under: dict[tuple[str, ...], int] = {}
        for sc in scopes.values():
            for i in range(1, len(sc) + 1):
                under[sc[:i]] = under.get(sc[:i], 0) + 1
        groups: dict[tuple[str, ...], FoldItem] = {(): container}
        prefix = container.key
        for n in g.nodes:
            sc = scopes[n.id]
            parent = container
            for i in range(len(sc)):
                sub = sc[: i + 1]
                if under[sub] < 2:
                    break
                grp = groups.get(sub)
                if grp is None:
                    path = "/" + "/".join(sub)
                    grp = self._add(parent, FoldItem(f"{prefix}#{path}", GROUP, sc[i], path=path))
                    groups[sub] = grp
                parent = grp
            if n.subgraphs:
                owner = self._add(parent, FoldItem(n.id, GROUP, n.op_type, node=n))
                for attr, body in n.subgraphs.items():
                    b = self._add(owner, FoldItem(f"{n.id}::{attr}", GROUP, attr, body=True,
                                                  expanded=True))
                    self._build_graph(b, body)
            elif n.id not in self.hidden:
                self._add(parent, FoldItem(n.id, NODE, n.op_type, node=n))

    def _scopes(self, g: Graph) -> dict[str, tuple[str, ...]]:
        """Scope path of every node of one graph, inferred where the model has none."""
        out: dict[str, tuple[str, ...] | None] = {}
        local_producer: dict[str, Node] = {}
        const: set[str] = set()  # tensors whose value does not depend on the model's inputs
        for n in g.nodes:
            for o in n.outputs:
                local_producer[o] = n

        def stored(name: str) -> bool:
            """A weight, or a tensor nothing computes (an initializer the file lists oddly)."""
            t = self.tensors.get(name)
            return (t is not None and t.is_weight) or name not in self.producer

        def is_const(name: str) -> bool:
            return name in const or stored(name)

        named: set[str] = set()  # weights in disguise (light zoo models): names worth reading

        for n in g.nodes:
            data_inputs = [i for i in n.inputs if i and not is_const(i)]
            if not data_inputs and not n.subgraphs:
                const.update(o for o in n.outputs if o)
                if n.op_type in _CONST_OPS and all(stored(i) for i in n.inputs if i):
                    named.update(o for o in n.outputs if o)
            if n.scope:
                out[n.id] = _parts(n.scope)
                continue
            if "/" in n.name:  # the exporter's module path; "/Add" says: top level
                out[n.id] = _parts(n.name)[:-1]
                continue
            # Caffe2-style names: a layer's constants are "<layer path>/<param>" ("conv10_w_0"
            # says top level); a computed output may carry the path too.
            sc = None
            const_inputs = [i for i in n.inputs if i and (i in named or stored(i))]
            named_outputs = [o for o in n.outputs if "/" in o]
            names = (named_outputs + const_inputs) if not data_inputs else (
                const_inputs + named_outputs)
            if names:
                sc = _parts(names[0])[:-1]
            if sc is None:
                prods = [out.get(local_producer[i].id) for i in n.inputs if i in local_producer]
                prods = [p for p in prods if p is not None]
                if prods:
                    sc = _common_prefix(prods)
            out[n.id] = sc
        # Nodes still unplaced (constants, chains fed by constants): where their consumers are.
        consumers: dict[str, list[Node]] = {}
        for n in g.nodes:
            for i in n.inputs:
                if i in local_producer:
                    consumers.setdefault(local_producer[i].id, []).append(n)
        for n in reversed(g.nodes):
            if out[n.id] is None:
                cs = [out[c.id] for c in consumers.get(n.id, []) if out[c.id] is not None]
                out[n.id] = _common_prefix(cs) if cs else ()
        return out  # type: ignore[return-value]

    def _collect_edges(self) -> None:
        edges: list[tuple[str, str, str]] = []
        seen: set[tuple[str, str, str]] = set()

        def add(p: str, c: str, t: str) -> None:
            if p != c and (p, c, t) not in seen:
                seen.add((p, c, t))
                edges.append((p, c, t))
                self.consumers.setdefault(t, []).append(c)

        def rec(g: Graph, owner: Node | None) -> None:
            for n in g.nodes:
                for i in n.inputs:
                    if not i:
                        continue
                    t = self.tensors.get(i)
                    if (t is not None and t.is_weight) or i in self.weight_like:
                        continue
                    p = self.producer.get(i)
                    if p is not None:
                        add(p, n.id, i)
                for sub in n.subgraphs.values():
                    rec(sub, n)
            if owner is not None:
                for o in g.outputs:
                    p = self.producer.get(o)
                    if p is not None:
                        add(p, owner.id, o)

        rec(self.model.graph, None)
        for name in self.model.graph.outputs:
            p = self.producer.get(name)
            if p is not None:
                add(p, f"out:{name}", name)
        self.edges = edges

    def _topo_order(self) -> None:
        """Topological position of every leaf, constants just before their first consumer.

        Kahn's algorithm, ties broken by file order; a source (constant, graph input) waits
        until its first consumer is due, so groups and chunks follow the data flow. Cycles
        (not valid ONNX, but tolerated) are cut at the earliest remaining item.
        """
        keys = [k for k, it in self.items.items() if not it.is_group or it.node is not None]
        pos = {k: i for i, k in enumerate(keys)}
        succ: dict[str, list[str]] = {k: [] for k in keys}
        npred = dict.fromkeys(keys, 0)
        for p, c, _ in self.edges:
            if p in pos and c in pos:
                succ[p].append(c)
                npred[c] += 1

        def kahn(prio: dict[str, float]) -> list[str]:
            indeg = dict(npred)
            heap = [(prio[k], k) for k in keys if indeg[k] == 0]
            heapq.heapify(heap)
            seq: list[str] = []
            done: set[str] = set()
            rest = iter(keys)
            while len(seq) < len(keys):
                if not heap:  # a cycle
                    k = next(k for k in rest if k not in done)
                    heap.append((prio[k], k))
                _, k = heapq.heappop(heap)
                if k in done:
                    continue
                done.add(k)
                seq.append(k)
                for c in succ[k]:
                    indeg[c] -= 1
                    if indeg[c] == 0:
                        heapq.heappush(heap, (prio[c], c))
            return seq

        first = kahn({k: float(i) for k, i in pos.items()})
        prio: dict[str, float] = {}
        # floating: no producer, or only floating ones; such items go just before their users
        floating = {k for k in first if npred[k] == 0 and self.items[k].kind != INPUT}
        preds: dict[str, list[str]] = {k: [] for k in keys}
        for p, cs in succ.items():
            for c in cs:
                preds[c].append(p)
        for k in first:
            if npred[k] and all(p in floating for p in preds[k]):
                floating.add(k)
        for k in reversed(first):
            if k in floating and succ[k]:
                prio[k] = min(prio[c] for c in succ[k]) - 1e-3
            else:
                prio[k] = float(pos[k])
        for i, k in enumerate(kahn(prio)):
            self.items[k].order = i

    def _finish(self, group: FoldItem) -> None:
        """Bottom-up: order children, drop one-child scope groups, chunk wide groups."""
        for c in group.children:
            if c.is_group:
                self._finish(c)
        kids = []
        for c in group.children:
            if c.is_group and c.node is None and not c.body and len(c.children) == 1:
                only = c.children[0]  # a scope group holding one item is just that item
                if only.is_group and only.node is None and not only.body:
                    only.label = f"{c.label}/{only.label}"
                del self.items[c.key]
                c = only
            c.parent = group
            kids.append(c)
        if group.node is None:  # an If keeps its bodies in attribute order (then, else)
            kids.sort(key=lambda c: c.order)
        if group.parent is None or group.body:
            # One scope holding (nearly) the whole graph ("gpu_0/...") says nothing: hoist it.
            inner = [c for c in kids if c.is_group and c.node is None]
            others = [c for c in kids if c.kind == NODE or c.is_group]
            if len(inner) == 1 and len(others) <= 4:
                only = inner[0]
                del self.items[only.key]
                i = kids.index(only)
                kids[i:i + 1] = only.children
                for c in only.children:
                    c.parent = group
        group.children = kids
        if kids:  # an If/Loop group keeps its own position too
            own = [group.order] if group.node is not None else []
            group.order = min(own + [c.order for c in kids])
        flat = [c for c in kids if c.kind == NODE or c.node is not None]
        scoped = [c for c in kids if c.is_group and c.node is None]
        top = group.parent is None or group.body
        if (len(flat) >= STRUCT_MIN and len(scoped) * 10 <= len(flat)) or \
                len(kids) > self.max_children or (top and len(kids) > STAGE_LEVEL):
            self._structure(group)
        if len(group.children) > self.max_children:
            self._chunk(group)

    def _structure(self, group: FoldItem) -> bool:
        """Regroup a level by its structure (structure.py): stages, repeats, blocks."""
        kids = [c for c in group.children if c.kind not in (INPUT, OUTPUT)]
        if len(kids) < STRUCT_MIN:
            return False
        index: dict[str, int] = {}
        for i, c in enumerate(kids):
            stack = [c]
            while stack:
                it = stack.pop()
                index[it.key] = i
                stack.extend(it.children)
        edges: set[tuple[int, int]] = set()
        fed = [False] * len(kids)
        for p, c, _ in self.edges:
            b = index.get(c)
            if b is None:
                continue
            a = index.get(p)
            if a != b:
                fed[b] = True
            if a is not None and a != b:
                edges.add((a, b))
        infos = [self._struct_info(c, not fed[i]) for i, c in enumerate(kids)]
        parts = structure(infos, sorted(edges))
        if not any(isinstance(p, Part) for p in parts):
            return False
        number_blocks(parts)

        def make(part: Part, parent: FoldItem) -> FoldItem:
            key = f"{group.key}#{part.kind}{len(self.items)}"
            it = FoldItem(key, GROUP, part.label, parent=parent, path=group.path)
            self.items[key] = it
            it.children = [make(c, it) if isinstance(c, Part) else kids[c]
                           for c in part.children]
            for c in it.children:
                c.parent = it
            it.order = min(c.order for c in it.children)
            if len(it.children) > self.max_children:
                self._chunk(it)
            return it

        head = [c for c in group.children if c.kind == INPUT]
        tail = [c for c in group.children if c.kind == OUTPUT]
        body = [make(p, group) if isinstance(p, Part) else kids[p] for p in parts]
        group.children = head + body + tail
        return True

    def _struct_info(self, item: FoldItem, floating: bool) -> ItemInfo:
        n = item.node
        if n is None or item.is_group:  # a scope group: it down-samples if a node in it does
            stride = 1
            for leaf in self.leaf_nodes(item):
                if leaf is not item:  # an If/Loop group is its own leaf: no recursing into it
                    stride = max(stride, self._struct_info(leaf, False).stride)
            return ItemInfo("", stride=stride, floating=floating)
        stride = 1
        if n.op_type in COMPUTE_OPS:
            st = n.attributes.get("strides")
            if isinstance(st, list) and st and all(isinstance(x, int) for x in st):
                stride = max(st)
        out = self.tensors.get(n.outputs[0]) if n.outputs else None
        spatial = ""
        if out is not None and out.shape is not None and len(out.shape) == 4:
            spatial = "×".join("?" if not isinstance(d, int) else str(d) for d in out.shape[2:])
            if spatial == "?×?":
                spatial = ""
        return ItemInfo(n.op_type, stride, floating, spatial)

    def _chunk(self, group: FoldItem) -> None:
        """Split a wide group into chunks of consecutive children (recursively if needed).

        Inputs and outputs of the model stay where they are, outside the chunks.
        """
        head = [c for c in group.children if c.kind == INPUT]
        tail = [c for c in group.children if c.kind == OUTPUT]
        kids = [c for c in group.children if c.kind not in (INPUT, OUTPUT)]
        while len(kids) > self.max_children:
            n_chunks = -(-len(kids) // self.max_children)
            size = -(-len(kids) // n_chunks)
            chunks = []
            for start in range(0, len(kids), size):
                part = kids[start: start + size]
                key = f"{group.key}#chunk{len(self.items)}"
                label = f"{_item_name(part[0], True)} … {_item_name(part[-1], False)}"
                ch = FoldItem(key, GROUP, label, parent=group, children=part, path=group.path,
                              order=part[0].order, chunk=True)
                for c in part:
                    c.parent = ch
                self.items[key] = ch
                chunks.append(ch)
            kids = chunks
        group.children = head + kids + tail

    def _index(self, item: FoldItem, i: int) -> int:
        item.lo = i
        if item.node is not None or item.kind != GROUP:
            i += 1
        for c in item.children:
            i = self._index(c, i)
        item.hi = i
        return i

    @staticmethod
    def _chain(item: FoldItem) -> tuple[FoldItem, ...]:
        return tuple(reversed([item, *item.ancestors()]))

    def _group_edges(self) -> dict[str, GroupEdges]:
        """For every group, the edges between its children and through its ports.

        An edge u -> v is drawn in the layout of the deepest group holding both; every group
        holding only u sends it to its out-port, every group holding only v takes it from its
        in-port. This does not depend on what is expanded, so it is computed once.
        """
        out: dict[str, GroupEdges] = {}

        def ge(g: FoldItem) -> GroupEdges:
            e = out.get(g.key)
            if e is None:
                e = out[g.key] = GroupEdges()
            return e

        for p, c, _ in self.edges:
            a, b = self._chains.get(p), self._chains.get(c)
            if a is None or b is None:
                continue
            k = 0
            n = min(len(a), len(b))
            while k < n and a[k] is b[k]:
                k += 1
            if k == len(a) and k == len(b):
                continue  # same item
            # a[k-1] is the deepest common group. When one chain ends there, the edge runs
            # between an If/Loop group and its own body: through that group's ports.
            lca = a[k - 1]
            if k < len(a) and k < len(b):
                ge(lca).inner.add((a[k], b[k]))
            elif k < len(a):  # v is the group itself: the body's output leaves through out-port
                ge(lca).to_out.add(a[k])
            else:
                ge(lca).from_in.add(b[k])
            for i in range(k + 1, len(a)):
                ge(a[i - 1]).to_out.add(a[i])
            for i in range(k + 1, len(b)):
                ge(b[i - 1]).from_in.add(b[i])
        return out

    # --- state -----------------------------------------------------------------------------
    def groups(self) -> Iterator[FoldItem]:
        return (it for it in self.items.values() if it.is_group)

    def visible(self) -> Iterator[FoldItem]:
        """Every item drawn: boxes and the frames of expanded groups (root excluded)."""
        stack = list(reversed(self.root.children))
        while stack:
            it = stack.pop()
            yield it
            if it.is_group and it.expanded:
                stack.extend(reversed(it.children))

    def is_visible(self, key: str) -> bool:
        it = self.items.get(key)
        return it is not None and all(a.expanded for a in it.ancestors())

    def visible_node_count(self) -> int:
        """Boxes that stand for model nodes or collapsed groups (inputs/outputs not counted)."""
        n = 0
        for it in self.visible():
            if it.is_model_node or (it.is_group and not it.expanded):
                n += 1
        return n

    def set_expanded(self, key: str, expanded: bool) -> bool:
        """Returns True when something changed."""
        it = self.items.get(key)
        if it is None or not it.is_group or it is self.root or it.expanded == expanded:
            return False
        it.expanded = expanded
        return True

    def expand_all(self) -> None:
        for g in self.groups():
            g.expanded = True

    def collapse_all(self) -> None:
        """Every group closed except the root and bodies (they open with their owner)."""
        for g in self.groups():
            if g is not self.root and not g.body:
                g.expanded = False

    def reveal(self, key: str) -> bool:
        """Expand the groups holding `key`. Returns True when something changed."""
        it = self.items.get(key)
        changed = False
        for a in (it.ancestors() if it else ()):
            if not a.expanded:
                a.expanded = changed = True
        return changed

    def auto_fold(self, budget: int = FOLD_BUDGET) -> None:
        """Open level by level while the visible box count stays within `budget`."""
        self.collapse_all()
        level = [c for c in self.root.children if c.is_group]
        while level:
            for g in level:
                g.expanded = True
            if self.visible_node_count() > budget:
                for g in level:
                    g.expanded = False
                # Chunks are no structure of the model: open as many as fit, first ones first.
                for g in level:
                    if not g.chunk:
                        continue
                    g.expanded = True
                    if self.visible_node_count() > budget:
                        g.expanded = False
                        break
                break
            nxt = []
            for g in level:
                for c in g.children:
                    if c.is_group:
                        nxt.extend([c] if not c.body else [x for x in c.children if x.is_group])
            level = nxt

    # --- queries ---------------------------------------------------------------------------
    def visible_owner(self, key: str) -> FoldItem | None:
        """The box that shows `key`: itself, or the outermost collapsed group holding it."""
        for it in self._chains.get(key, ())[1:]:
            if it.is_group and not it.expanded:
                return it
        return self.items.get(key)

    def model_nodes(self) -> Iterator[FoldItem]:
        return (it for it in self.items.values() if it.node is not None)

    def search(self, text: str) -> list[str]:
        """Keys of model nodes whose name, op type or id contains `text`, in graph order."""
        q = text.strip().lower()
        if not q:
            return []
        hits = [it for it in self.model_nodes()
                if q in it.node.name.lower() or q in it.node.op_type.lower()  # type: ignore
                or q == it.key.lower()]
        # a weight Constant is found by its whole name (or its output's): its reader shows.
        # Whole names only: "conv" must not find every BatchNorm reading a "conv2_1/..." weight
        seen = {it.key for it in hits}
        for nid, n in self.hidden_nodes.items():
            if q in (n.name.lower(), nid.lower(), *(o.lower() for o in n.outputs)):
                reader = self.items.get(self.hidden[nid])
                if reader is not None and reader.key not in seen:
                    seen.add(reader.key)
                    hits.append(reader)
        hits.sort(key=lambda it: it.order)
        return [it.key for it in hits]

    def leaf_nodes(self, group: FoldItem) -> Iterator[FoldItem]:
        """Model nodes under a group (the group's own node included)."""
        stack = [group]
        while stack:
            it = stack.pop()
            if it.node is not None:
                yield it
            stack.extend(it.children)

    def contains(self, group: FoldItem, key: str) -> bool:
        it = self.items.get(key)
        return it is not None and group.lo <= it.lo < group.hi and it is not group

    def output_tensor(self, item: FoldItem) -> TensorInfo | None:
        """The tensor a box sends on: a node's first output, a group's first leaving tensor."""
        if item.kind == INPUT or item.kind == OUTPUT:
            return item.tensor
        if item.node is not None and item.node.outputs:
            return self.tensors.get(item.node.outputs[0])
        outputs = set(self.model.graph.outputs)
        for leaf in self.leaf_nodes(item):
            for o in leaf.node.outputs:  # type: ignore[union-attr]
                if not o:
                    continue
                leaving = o in outputs or any(
                    not self.contains(item, c) for c in self.consumers.get(o, ()))
                if leaving:
                    return self.tensors.get(o)
        return None

    def weights(self, node: Node) -> list[tuple[str, TensorInfo]]:
        """The weights a node reads, named by the op's input ('W', 'B', 'scale'...) as Netron."""
        out = []
        for i, name in enumerate(node.inputs):
            src = self.weight_source.get(name) if name else None
            t = self.tensors.get(src or name) if name else None  # int8 behind a DQ
            if name in self.weight_like and t is None:
                t = TensorInfo(name, is_weight=True)
            if t is not None and (t.is_weight or name in self.weight_like):
                out.append((_input_name(node.op_type, name, i), t))
        return out

    def box_for(self, node_id: str) -> str | None:
        """The item key that shows a model node: itself, or the consumer a weight lives in."""
        if node_id in self.items:
            return node_id
        return self.hidden.get(node_id)

    def op_histogram(self, group: FoldItem) -> dict[str, int]:
        h: dict[str, int] = {}
        for leaf in self.leaf_nodes(group):
            op = leaf.node.op_type  # type: ignore[union-attr]
            h[op] = h.get(op, 0) + 1
        return dict(sorted(h.items(), key=lambda kv: -kv[1]))

    def info(self, key: str) -> dict[str, Any]:
        """What a tooltip or a properties panel shows about one item."""
        it = self.items[key]
        d: dict[str, Any] = {"key": key, "kind": it.kind, "label": it.label}
        if it.node is not None:
            n = it.node
            d.update(id=n.id, name=n.name, op_type=n.op_type, domain=n.domain,
                     inputs=list(n.inputs), outputs=list(n.outputs), scope=n.scope,
                     attributes=n.attributes,
                     weights={name: shape_text(t) for name, t in self.weights(n)})
        if it.is_group:
            d.update(path=it.path, nodes=sum(1 for _ in self.leaf_nodes(it)),
                     ops=self.op_histogram(it))
        return d


# the ONNX schema's input names of common ops: what a weight is for
_INPUT_NAMES: dict[str, tuple[str, ...]] = {
    "Conv": ("X", "W", "B"), "ConvTranspose": ("X", "W", "B"),
    "Gemm": ("A", "B", "C"), "MatMul": ("A", "B"), "MatMulInteger": ("A", "B"),
    "BatchNormalization": ("X", "scale", "B", "mean", "var"),
    "LayerNormalization": ("X", "scale", "B"), "InstanceNormalization": ("X", "scale", "B"),
    "GroupNormalization": ("X", "scale", "bias"), "PRelu": ("X", "slope"),
    "LSTM": ("X", "W", "R", "B", "seq_lens", "h0", "c0", "P"), "GRU": ("X", "W", "R", "B"),
    "RNN": ("X", "W", "R", "B"), "Gather": ("data", "indices"), "Reshape": ("data", "shape"),
    "Resize": ("X", "roi", "scales", "sizes"), "Pad": ("data", "pads", "value"),
    "Slice": ("data", "starts", "ends", "axes", "steps"), "Clip": ("input", "min", "max"),
    "QLinearConv": ("x", "x_scale", "x_zero_point", "W", "w_scale", "w_zero_point", "y_scale",
                    "y_zero_point", "B"),
    "QLinearMatMul": ("a", "a_scale", "a_zero_point", "B", "b_scale", "b_zero_point",
                      "y_scale", "y_zero_point"),
    "ConvInteger": ("x", "W", "x_zero_point", "w_zero_point"),
    "QuantizeLinear": ("x", "scale", "zero_point"),
    "DequantizeLinear": ("x", "scale", "zero_point"),
    "MatMulNBits": ("A", "B", "scales", "zero_points", "g_idx", "bias"),
    "Add": ("A", "B"), "Sub": ("A", "B"), "Mul": ("A", "B"), "Div": ("A", "B"),
    "Pow": ("X", "Y"), "Expand": ("input", "shape"), "Tile": ("input", "repeats"),
    "Unsqueeze": ("data", "axes"), "Squeeze": ("data", "axes"), "Split": ("input", "split"),
    "ReduceMean": ("data", "axes"), "ReduceSum": ("data", "axes"), "Where": ("cond", "X", "Y"),
}


def _input_name(op_type: str, name: str, index: int) -> str:
    names = _INPUT_NAMES.get(op_type)
    if names is not None and index < len(names):
        return names[index]
    tail = name.replace("/", ".").rsplit(".", 1)[-1]  # torch: "features.conv1.weight"
    return {"weight": "W", "bias": "B"}.get(tail, tail if len(tail) <= 12 else f"in{index}")


def _item_name(it: FoldItem, first: bool) -> str:
    """A chunk's label end: the name of its first/last node, else the group's label."""
    while it.is_group and it.node is None and it.children:
        it = it.children[0] if first else it.children[-1]
    return it.node.name if it.node is not None else it.label
