"""ModelGraph: the one in-memory picture of a model, whatever format it came from.

Every format loader produces a ModelGraph; analysis, the CLI and (later) the GUI read only this.
It is plain data (no framework objects) so a worker process can send it to the GUI as JSON.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Union

Dim = Union[int, str, None]  # int: known; str: symbolic name ("batch"); None: unknown

SCHEMA_VERSION = 1


def json_safe(value: Any, special: Callable[[Any], Any] | None = None) -> Any:
    """An attribute value as JSON-native data, so a ModelGraph survives its JSON round trip.

    Numbers, strings, lists and dicts stay; numpy values become Python ones; non-finite floats
    and anything else become strings. `special` may turn a framework type into something
    readable first (returning None to decline).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [json_safe(v, special) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v, special) for k, v in value.items()}
    if special is not None:
        converted = special(value)
        if converted is not None:
            return converted
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return json_safe(value.tolist(), special)
    return str(value)


@dataclass
class TensorInfo:
    """A value flowing along an edge, or a weight."""

    name: str
    dtype: str | None = None  # numpy-style name: "float32", "int64", "int4", ...
    shape: list[Dim] | None = None  # None: rank unknown
    is_weight: bool = False
    nbytes: int | None = None  # bytes the weight occupies on disk / in memory
    value: Any = None  # the values of a small constant (a few elements), as JSON data

    @property
    def numel(self) -> int | None:
        """Element count when every dim is known, else None."""
        if self.shape is None:
            return None
        n = 1
        for d in self.shape:
            if not isinstance(d, int):
                return None
            n *= d
        return n


@dataclass
class Node:
    """One operation. `id` is unique across the whole model, subgraphs included."""

    id: str
    name: str
    op_type: str
    domain: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # tensor names ("" = omitted optional input)
    outputs: list[str] = field(default_factory=list)
    scope: str = ""  # "/encoder/layer.0" — used to fold the graph view
    subgraphs: dict[str, Graph] = field(default_factory=dict)  # attribute name -> body


@dataclass
class Graph:
    """A (sub)graph. Tensors of enclosing graphs are visible inside a subgraph, as in ONNX."""

    nodes: list[Node] = field(default_factory=list)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # real inputs only, weights excluded
    outputs: list[str] = field(default_factory=list)


@dataclass
class ModelMeta:
    format: str
    path: str = ""
    producer: str = ""
    opset: dict[str, int] = field(default_factory=dict)  # domain -> version
    file_size: int = 0  # bytes, external data / .bin included
    sha256: str = ""
    notes: list[str] = field(default_factory=list)  # things the loader wants the user to know
    # The input shapes are one example the file stores (torch.jit.trace's inputs), not sizes
    # the model is fixed to: sizes the user sets replace them.
    example_inputs: bool = False


@dataclass
class WalkItem:
    node: Node
    depth: int  # 0 for the main graph
    graph: Graph
    scopes: tuple[Graph, ...]  # enclosing graphs, innermost last (graph included)

    def tensor(self, name: str) -> TensorInfo | None:
        """Resolve a tensor name the way ONNX does: innermost graph first."""
        for g in reversed(self.scopes):
            t = g.tensors.get(name)
            if t is not None:
                return t
        return None


@dataclass
class ModelGraph:
    graph: Graph
    meta: ModelMeta

    def walk(self) -> Iterator[WalkItem]:
        """Every node, subgraph nodes included (depth-first, parent before its bodies)."""

        def rec(g: Graph, depth: int, scopes: tuple[Graph, ...]) -> Iterator[WalkItem]:
            scopes = scopes + (g,)
            for n in g.nodes:
                yield WalkItem(n, depth, g, scopes)
                for sub in n.subgraphs.values():
                    yield from rec(sub, depth + 1, scopes)

        yield from rec(self.graph, 0, ())

    def node_count(self) -> int:
        return sum(1 for _ in self.walk())

    def find(self, node_id: str) -> Node | None:
        for item in self.walk():
            if item.node.id == node_id:
                return item.node
        return None

    # --- JSON round trip -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "meta": asdict(self.meta), "graph": asdict(self.graph)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelGraph:
        if d.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"unsupported ModelGraph schema {d.get('schema')!r}")
        return cls(graph=_graph_from_dict(d["graph"]), meta=ModelMeta(**d["meta"]))

    @classmethod
    def from_json(cls, s: str) -> ModelGraph:
        return cls.from_dict(json.loads(s))


def _graph_from_dict(d: dict[str, Any]) -> Graph:
    nodes = []
    for nd in d["nodes"]:
        nd = dict(nd)
        nd["subgraphs"] = {k: _graph_from_dict(v) for k, v in nd["subgraphs"].items()}
        nodes.append(Node(**nd))
    tensors = {k: TensorInfo(**v) for k, v in d["tensors"].items()}
    return Graph(nodes=nodes, tensors=tensors, inputs=list(d["inputs"]), outputs=list(d["outputs"]))
