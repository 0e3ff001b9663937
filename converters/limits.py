"""Declared sizes against a memory budget: refuse before allocating, say how much is needed.

A model file can declare an input of 2^31 elements or a ConstantOfShape of 10^12 floats in a
few bytes. Both `inspect` (a note) and the profiler (a refusal before the first allocation) ask
the same question: how many bytes do the tensors whose size the graph states add up to, for the
input sizes chosen? Plain arithmetic over a ModelGraph: no framework import.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence

from converters.graph import Dim, Graph, ModelGraph

log = logging.getLogger(__name__)

# Bits per element of the numpy-style dtype names ModelGraph uses; unknown -> 32.
_DTYPE_BITS: dict[str, int] = {
    "float64": 64, "float32": 32, "float16": 16, "bfloat16": 16, "int64": 64, "uint64": 64,
    "int32": 32, "uint32": 32, "int16": 16, "uint16": 16, "int8": 8, "uint8": 8, "bool": 8,
    "complex64": 64, "complex128": 128, "int4": 4, "uint4": 4, "float4e2m1": 4,
    "float4_e2m1fn": 4, "nf4": 4, "uint1": 1, "uint2": 2, "uint3": 3, "uint6": 6,
}

# Ops whose output is materialised whole from a small description (a shape, a value).
SIZED_OPS = frozenset({"Constant", "ConstantOfShape"})

DEFAULT_BUDGET_BYTES = 4 << 30  # what a worker may declare before inspect warns / profile refuses


def dtype_bits(dtype: str | None) -> int:
    """Bits per element; unknown or exotic types count as 32 (a float)."""
    if dtype is None:
        return 32
    if dtype.startswith("float8"):
        return 8
    return _DTYPE_BITS.get(dtype, 32)


def tensor_bytes(dtype: str | None, shape: Sequence[Dim] | None) -> int | None:
    """Bytes of a tensor whose dims are all known ints >= 0, else None."""
    if shape is None or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                for d in shape):
        return None
    return (math.prod(shape) * dtype_bits(dtype) + 7) // 8  # type: ignore[arg-type]


def _graphs(g: Graph):
    yield g
    for n in g.nodes:
        for sub in n.subgraphs.values():
            yield from _graphs(sub)


def declared_memory_bytes(graph: ModelGraph | Graph,
                          shapes: Mapping[str, Sequence[int]] | None = None) -> int:
    """Bytes of the inputs and of Constant/ConstantOfShape outputs whose sizes are known.

    `shapes` overrides the declared input shapes (the resolved workload); an input dim that is
    symbolic or unknown and not overridden counts as 1, so the figure is a lower bound of what
    a run needs. Subgraph constants count too (a Loop body runs them at least once).
    """
    g = graph.graph if isinstance(graph, ModelGraph) else graph
    shapes = shapes or {}
    total = 0
    for name in g.inputs:
        t = g.tensors.get(name)
        shape = shapes.get(name, t.shape if t else None)
        if shape is not None:
            shape = [d if isinstance(d, int) and d >= 0 else 1 for d in shape]
        nbytes = tensor_bytes(t.dtype if t else None, shape)
        total += nbytes or 0
    for sub in _graphs(g):
        for n in sub.nodes:
            if n.op_type not in SIZED_OPS or n.domain not in ("", "ai.onnx"):
                continue
            for o in n.outputs:
                t = sub.tensors.get(o) if o else None
                if t is not None:
                    total += tensor_bytes(t.dtype, t.shape) or 0
    return total


def human_bytes(n: int) -> str:
    for div, unit in ((1 << 40, "TB"), (1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "kB")):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def memory_note(graph: ModelGraph | Graph, shapes: Mapping[str, Sequence[int]] | None = None,
                budget: int | None = None) -> str | None:
    """One sentence when the declared sizes exceed the budget, else None."""
    budget = budget_bytes() if budget is None else budget
    need = declared_memory_bytes(graph, shapes)
    if need <= budget:
        return None
    return (f"this model would need ~{human_bytes(need)} for these input sizes (inputs and "
            f"constants it declares), more than the {human_bytes(budget)} budget; a run would "
            "be refused or run out of memory")


def budget_bytes() -> int:
    """The budget: MODELDECK_MEMORY_BUDGET (bytes) when set, else 4 GiB."""
    raw = os.environ.get("MODELDECK_MEMORY_BUDGET", "")
    try:
        return int(raw) if raw else DEFAULT_BUDGET_BYTES
    except ValueError:
        log.warning("MODELDECK_MEMORY_BUDGET=%r is not a number of bytes; using 4 GiB", raw)
        return DEFAULT_BUDGET_BYTES


def physical_memory_bytes() -> int:
    """This machine's physical memory (psutil where the OS has no sysconf)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        import psutil

        return int(psutil.virtual_memory().total)

