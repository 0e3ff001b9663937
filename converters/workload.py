"""The workload: what a model is measured on. One object, resolved once, used by every flow.

For every input it holds a concrete shape, a dtype and where the values come from, and each
choice remembers its source so the CLI, the reports and the window can say why. Resolution, in
order (DESIGN §3b):

1. what the user set (``--shape NAME=1x3x224x224``, the window's Inputs table);
2. real data (an .npz given with ``--inputs``): shapes follow the data, except a dynamic batch,
   which stays 1 (the latency case) unless the user set it;
3. what the model declares (static dims, TorchScript / ExportedProgram example inputs);
4. symbolic dims resolved by name: one symbol has one value everywhere (``batch`` in ``input``
   and in ``h``), bound by what the user or the data fixed;
5. defaults by role: batch 1, a sequence / time / token axis 128 (capped by a position-embedding
   table), an image's H and W 224 — then a dry shape check (``dry_check``) grows the defaulted
   sizes until every pooling and stride in the graph accepts them.

Values follow what the graph does with each input: an integer input that indexes a table (the
indices of a Gather / embedding) stays inside the table; an attention mask is ones; a scalar
compared with constants (a sample rate) takes one of those constants; recurrent state starts at
zero; floats are uniform in [0, 1). Where no rule applies the note says so plainly.

Plain data and numpy only: frameworks are imported inside ``make_dry_check`` alone.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from converters.errors import ModelDeckError
from converters.graph import Dim, ModelGraph

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1
DEFAULT_SEQUENCE = 128
DEFAULT_IMAGE = 224
_MAX_GROWTH_STEPS = 5  # 128 -> 4096, 224 -> 7168
MAX_DEFAULT_ELEMENTS = 1 << 28  # a default that would allocate more than this is not a default


class WorkloadError(ModelDeckError):
    """The inputs cannot be decided: conflicting sizes, data of the wrong shape, unknown names."""


@dataclass(frozen=True)
class InputDecl:
    """What the model (or the runtime that loaded it) declares about one input."""

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None  # None: the format stores no shape (TorchScript)
    # The dims are an example stored with the model (torch.jit.trace's inputs), not fixed:
    # they are used when nothing else sets the size, and the user's sizes or data replace them.
    example: bool = False


@dataclass(frozen=True)
class Values:
    """Where an input's values come from. `kind` decides generation; `reason` is for people."""

    kind: str  # data | uniform | int_range | ones | zeros | constant | arange | bits | text
    low: float | None = None
    high: float | None = None  # exclusive for int_range
    value: float | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "data":
            return "real data"
        if self.kind == "uniform":
            return f"random uniform [{self.low:g}, {self.high:g})"
        if self.kind == "int_range":
            return f"random integers {int(self.low or 0)}..{int(self.high or 1) - 1}"
        if self.kind == "constant":
            return f"constant {self.value:g}"
        if self.kind == "arange":
            return "0, 1, 2, … along the last axis"
        return {"ones": "ones", "zeros": "zeros", "bits": "random true/false",
                "text": "short strings"}.get(self.kind, self.kind)


@dataclass(frozen=True)
class InputWorkload:
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_source: str  # "set by you", "from data", "declared by the model", "default: ..."
    values: Values
    declared: tuple[Dim, ...] | None = None
    batch_axis: int | None = None  # the axis that is a free batch (verification widens it)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["declared"] = None if self.declared is None else list(self.declared)
        d["values_text"] = self.values.describe()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InputWorkload:
        return cls(name=d["name"], dtype=d["dtype"], shape=tuple(int(x) for x in d["shape"]),
                   shape_source=d["shape_source"], values=Values(**d["values"]),
                   declared=None if d.get("declared") is None else tuple(d["declared"]),
                   batch_axis=d.get("batch_axis"))


@dataclass(frozen=True)
class Workload:
    inputs: tuple[InputWorkload, ...]
    dims: dict[str, int] = field(default_factory=dict)  # symbolic dim -> the value it took
    notes: tuple[str, ...] = ()

    def shapes(self) -> dict[str, list[int]]:
        return {i.name: list(i.shape) for i in self.inputs}

    def get(self, name: str) -> InputWorkload | None:
        return next((i for i in self.inputs if i.name == name), None)

    @property
    def assumed(self) -> bool:
        """True when some size was chosen by a default rather than the model, data or user."""
        return any(i.shape_source.startswith("default") for i in self.inputs)

    def with_batch(self, n: int) -> Workload:
        """The same workload with `n` samples on every free batch axis (verification)."""
        out = []
        for i in self.inputs:
            if i.batch_axis is None:
                out.append(i)
                continue
            shape = list(i.shape)
            shape[i.batch_axis] = n
            out.append(replace(i, shape=tuple(shape)))
        return replace(self, inputs=tuple(out))

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [i.to_dict() for i in self.inputs], "dims": dict(self.dims),
                "notes": list(self.notes), "assumed": self.assumed}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Workload:
        return cls(inputs=tuple(InputWorkload.from_dict(i) for i in d["inputs"]),
                   dims=dict(d.get("dims", {})), notes=tuple(d.get("notes", ())))

    def summary(self) -> str:
        """One line per input, for the CLI."""
        lines = []
        for i in self.inputs:
            lines.append(f"{i.name}: {i.dtype} [{', '.join(map(str, i.shape))}] "
                         f"({i.shape_source}; values: {i.values.describe()})")
        return "\n".join(lines)


# --- parsing what the user typed ---------------------------------------------------------------

def parse_shape_args(items: Sequence[str] | None) -> dict[str, list[int]]:
    """["input=1x3x224x224", "sr="] -> {"input": [1, 3, 224, 224], "sr": []} (rank 0)."""
    shapes: dict[str, list[int]] = {}
    for item in items or []:
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            text = dims.strip().lower().replace(",", "x").replace(" ", "")
            shapes[name] = [] if text in ("", "scalar", "[]") else [int(d) for d in text.split("x")]
            if any(d < 0 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise WorkloadError(f"bad input size {item!r}: expected NAME=DxDxD, e.g. "
                                "input=1x3x224x224 (NAME= for a scalar)") from None
    return shapes


# --- declarations ------------------------------------------------------------------------------

def declared_inputs(model: ModelGraph) -> list[InputDecl]:
    """The model's real inputs (weights excluded) as the reader saw them."""
    out = []
    for name in model.graph.inputs:
        t = model.graph.tensors.get(name)
        shape = None if t is None or t.shape is None else tuple(_clean_dim(d) for d in t.shape)
        out.append(InputDecl(name, (t.dtype if t and t.dtype else "float32"), shape,
                             example=model.meta.example_inputs))
    return out


def _clean_dim(d: Dim) -> Dim:
    """-1 and 0-less placeholders some exporters write are dynamic dims, not sizes."""
    if isinstance(d, int) and d < 0:
        return None
    if isinstance(d, str) and d.strip() in ("", "?", "-1"):
        return None
    return d


# --- roles -------------------------------------------------------------------------------------

_BATCH_WORDS = ("batch", "bs", "n", "b", "nbatch", "num_batch")
_SEQ_HINTS = ("seq", "len", "time", "token", "sample", "frame", "step", "past", "total", "text",
              "word", "char", "audio", "wave")
_IMAGE_HINTS = ("height", "width", "img_h", "img_w", "image")


def _role(decl: InputDecl, axis: int, symbol: str | None) -> str:
    """batch | sequence | image | other, from the symbol's name first, then the position."""
    if symbol:
        s = symbol.lower()
        if s in _BATCH_WORDS or "batch" in s:
            return "batch"
        if s in ("h", "w") or any(k in s for k in _IMAGE_HINTS):
            return "image"
        if any(k in s for k in _SEQ_HINTS) or s in ("t", "l", "s"):
            return "sequence"
    shape = decl.shape or ()
    rank = len(shape)
    floating = _is_float(decl.dtype)
    if rank >= 2 and axis == 0:
        return "batch"
    if rank == 4 and floating:
        c_first = isinstance(shape[1], int)
        c_last = isinstance(shape[3], int) and shape[3] <= 4
        if (c_first and axis in (2, 3)) or (c_last and not c_first and axis in (1, 2)):
            return "image"
        return "image" if axis in (2, 3) else "sequence"
    if rank == 5 and floating:
        return "image" if axis >= 3 else "sequence"
    if rank in (1, 2, 3):
        return "sequence"
    return "other"


def _is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


# --- graph facts used by the defaults and the value rules ---------------------------------------

_PASS_THROUGH = {"Cast", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Expand",
                 "Transpose", "Slice", "Convert", "Tile", "aten::to", "aten::unsqueeze",
                 "aten::view", "aten::reshape", "aten::flatten", "aten::expand", "aten::slice",
                 "to", "unsqueeze", "view", "reshape", "expand", "slice", "_to_copy", "clone",
                 "aten::contiguous", "contiguous"}


class _GraphFacts:
    """Consumers of every tensor and small constant values, over all (sub)graphs."""

    def __init__(self, model: ModelGraph | None):
        self.consumers: dict[str, list[tuple[Any, int]]] = {}
        self.producer: dict[str, Any] = {}
        self.tensors: dict[str, Any] = {}
        if model is None:
            return
        seen: set[int] = set()
        for item in model.walk():
            n = item.node
            for i, name in enumerate(n.inputs):
                if name:
                    self.consumers.setdefault(name, []).append((n, i))
            for o in n.outputs:
                self.producer[o] = n
            if id(item.graph) not in seen:  # each (sub)graph's tensors once
                seen.add(id(item.graph))
                for k, t in item.graph.tensors.items():
                    self.tensors.setdefault(k, t)
        for k, t in model.graph.tensors.items():  # a graph without nodes still has tensors
            self.tensors.setdefault(k, t)

    def reach(self, name: str, depth: int = 8) -> list[tuple[Any, int]]:
        """(node, port) pairs where `name`'s values arrive, through shape-only ops."""
        out, seen, frontier = [], set(), [name]
        for _ in range(depth):
            nxt = []
            for t in frontier:
                for node, port in self.consumers.get(t, []):
                    if node.id in seen:
                        continue
                    seen.add(node.id)
                    if node.op_type in _PASS_THROUGH and port == 0:
                        nxt.extend(node.outputs[:1])
                    else:
                        out.append((node, port))
            frontier = nxt
            if not frontier:
                break
        return out

    def dim_of(self, name: str, axis: int) -> int | None:
        t = self.tensors.get(name)
        if t is None or t.shape is None or not -len(t.shape) <= axis < len(t.shape):
            p = self.producer.get(name)
            if p is not None and p.op_type in ("Convert", "Cast", "DequantizeLinear",
                                               "Identity") and p.inputs:
                return self.dim_of(p.inputs[0], axis)
            return None
        d = t.shape[axis]
        return d if isinstance(d, int) and d > 0 else None

    def constant_values(self, name: str) -> list[float] | None:
        """Values of a small constant: an initializer or Constant node the reader kept."""
        t = self.tensors.get(name)
        value = getattr(t, "value", None) if t is not None else None
        if value is None:
            p = self.producer.get(name)
            if p is not None and p.op_type == "Constant":
                for key in ("value", "value_int", "value_float", "value_ints", "value_floats"):
                    a = p.attributes.get(key)
                    if isinstance(a, dict):
                        a = a.get("value")
                    if a is not None:
                        value = a
                        break
        if value is None:
            return None
        flat = np.asarray(value, dtype=object).ravel().tolist()
        try:
            return [float(v) for v in flat]
        except (TypeError, ValueError):
            return None

    def table_size(self, name: str) -> tuple[int, str] | None:
        """Rows of the table an integer input indexes, and the indexing node's name."""
        best = None
        for node, port in self.reach(name):
            op = node.op_type
            size = None
            if op in ("Gather", "GatherElements", "GatherND") and port == 1 and node.inputs:
                axis = int(node.attributes.get("axis", 0) or 0)
                if op == "Gather" and len(node.inputs) > 2:  # OpenVINO: axis is an input
                    vals = self.constant_values(node.inputs[2])
                    axis = int(vals[0]) if vals else axis
                size = self.dim_of(node.inputs[0], axis)
            elif "embedding" in op.lower() and port == 1 and node.inputs:
                size = self.dim_of(node.inputs[0], 0)
            if size is not None and (best is None or size < best[0]):
                best = (size, node.name)
        return best

    def compared_constants(self, name: str) -> list[float]:
        """Constants the input is compared with (Equal), e.g. the sample rates a model accepts."""
        found: list[float] = []
        for node, port in self.reach(name):
            if node.op_type in ("Equal", "aten::eq", "eq") and len(node.inputs) == 2:
                other = node.inputs[1 - port]
                found.extend(self.constant_values(other) or [])
        return found

    def position_table(self) -> int | None:
        """Rows of a position-embedding table, which caps the sequence length."""
        best = None
        for name, t in self.tensors.items():
            if (not getattr(t, "is_weight", False) or not t.shape or len(t.shape) != 2
                    or not _is_float(t.dtype or "")):
                continue  # a table of vectors, not the position ids buffer
            rows = t.shape[0]
            if (re.search(r"pos(ition)?", name, re.IGNORECASE) and isinstance(rows, int)
                    and rows >= 8):
                best = t.shape[0] if best is None else min(best, t.shape[0])
        return best


# --- resolution --------------------------------------------------------------------------------

DryCheck = Callable[[dict[str, list[int]]], "str | None"]


@dataclass
class _Slot:
    """One input axis during resolution."""

    input: int
    axis: int
    symbol: str | None
    role: str
    value: int | None = None
    source: str = ""


def resolve_workload(model: ModelGraph | None, decls: Sequence[InputDecl] | None = None,
                     user_shapes: Mapping[str, Sequence[int]] | None = None,
                     data: Mapping[str, np.ndarray] | None = None,
                     dry_check: DryCheck | None = None) -> Workload:
    """Decide every input's shape, dtype and values (see the module docstring for the order).

    `decls` defaults to the model's declared inputs; a runtime's own view (names, dtypes) can
    be given instead. Raises WorkloadError with a message a person can act on.
    """
    if decls is None:
        if model is None:
            raise ValueError("resolve_workload needs a model or input declarations")
        decls = declared_inputs(model)
    decls = [InputDecl(d.name, d.dtype, None if d.shape is None else
                       tuple(_clean_dim(x) for x in d.shape), d.example) for d in decls]
    user = {k: list(v) for k, v in (user_shapes or {}).items()}
    data = dict(data or {})
    names = [d.name for d in decls]
    unknown = sorted(set(user) - set(names))
    if unknown:
        raise WorkloadError(f"input sizes were given for {', '.join(unknown)}, which the model "
                            f"does not have (its inputs: {', '.join(names)})")
    facts = _GraphFacts(model)
    notes: list[str] = []
    dims: dict[str, int] = {}
    sources: dict[str, str] = {}
    fixed: dict[int, tuple[list[int], str]] = {}  # input index -> (shape, source)
    batch_axis: dict[int, int | None] = {}

    # 1-2: what the user set, then what the data says.
    for idx, d in enumerate(decls):
        if d.name in user:
            shape = user[d.name]
            _check_against_declared(d, shape, "the size you set")
            fixed[idx] = (shape, "set by you")
        elif d.name in data:
            shape = _shape_from_data(d, data[d.name], dims)
            fixed[idx] = (shape, "from data")
        if idx in fixed and d.shape is not None:
            for ax, sym in enumerate(d.shape):
                if isinstance(sym, str):
                    _bind(dims, sources, sym, fixed[idx][0][ax], f"{fixed[idx][1]} ({d.name})")

    # 3-5: declared dims, symbols, defaults by role.
    slots: list[_Slot] = []
    pos_cap = facts.position_table()
    for idx, d in enumerate(decls):
        ba = None
        if d.shape is not None and len(d.shape) >= 2 and not isinstance(d.shape[0], int):
            ba = 0
        batch_axis[idx] = ba
        if idx in fixed:
            continue
        if d.shape is None:
            raise WorkloadError(
                f"the model does not say what shape input {d.name!r} takes: set its size "
                f"(for example {d.name}=1x3x224x224), or give real inputs")
        for ax, sym in enumerate(d.shape):
            if isinstance(sym, int):
                continue
            symbol = sym if isinstance(sym, str) else None
            role = _role(d, ax, symbol)
            slot = _Slot(idx, ax, symbol, role)
            if symbol is not None and symbol in dims:
                slot.value, slot.source = dims[symbol], sources[symbol]
            slots.append(slot)
    _defaults(slots, decls, facts, pos_cap, dims, sources)

    def shapes_now() -> dict[int, tuple[list[int], str]]:
        out = dict(fixed)
        for idx, d in enumerate(decls):
            if idx in fixed:
                continue
            assert d.shape is not None
            shape = [x if isinstance(x, int) else 0 for x in d.shape]
            srcs = []
            for s in slots:
                if s.input == idx:
                    shape[s.axis] = int(s.value or 1)
                    srcs.append(s.source)
            src = ("; ".join(dict.fromkeys(srcs)) if srcs else
                   "the example input stored in the model file" if d.example else
                   "declared by the model")
            out[idx] = (shape, src)
        return out

    resolved = shapes_now()
    defaulted = [s for s in slots if s.source.startswith("default") and s.role != "batch"]
    if dry_check is not None and defaulted:  # sizes the model or the user fixed need no check
        reason = dry_check({decls[i].name: sh for i, (sh, _) in resolved.items()})
        grown = 0
        while reason and defaulted and grown < _MAX_GROWTH_STEPS:
            grown += 1
            for s in defaulted:
                s.value = int(s.value or 1) * 2
                s.source = f"default: {s.role} grown to {s.value}, the model rejected smaller"
                if s.symbol:
                    dims[s.symbol] = s.value
            resolved = shapes_now()
            reason = dry_check({decls[i].name: sh for i, (sh, _) in resolved.items()})
        if reason:
            notes.append(f"the model may not accept these input sizes ({reason}): set the "
                         "sizes of its inputs")
    inputs = []
    for idx, d in enumerate(decls):
        shape, src = resolved[idx]
        numel = math.prod(shape)  # Python ints: numpy's product overflows on hostile sizes
        if numel > MAX_DEFAULT_ELEMENTS and not src.startswith(("set by you", "from data")):
            raise WorkloadError(
                f"input {d.name!r} would hold {numel:,} elements at {shape} "
                f"({_gb(numel, d.dtype)}); set a smaller size for it")
        values = Values("data", reason="from data") if d.name in data else _values(
            d, shape, facts, notes)
        inputs.append(InputWorkload(d.name, d.dtype, tuple(shape), src, values, d.shape,
                                    batch_axis[idx]))
    return Workload(tuple(inputs), dims, tuple(notes))


def _itemsize(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return 4


def _gb(numel: int, dtype: str) -> str:
    size = numel * _itemsize(dtype)
    return "more than a petabyte" if size > 10**15 else f"~{size / 1e9:,.1f} GB"


def _memory_budget() -> int:
    """Half the machine's physical memory: no generated input may take more."""
    from converters.limits import physical_memory_bytes

    return physical_memory_bytes() // 2


def _bind(dims: dict[str, int], sources: dict[str, str], symbol: str, value: int,
          source: str) -> None:
    if symbol in dims and dims[symbol] != value:
        raise WorkloadError(f"dimension {symbol!r} is {dims[symbol]} ({sources[symbol]}) but "
                            f"{value} ({source}): the same named dimension must have one size")
    dims[symbol], sources[symbol] = value, source


def _check_against_declared(d: InputDecl, shape: list[int], what: str) -> None:
    if d.shape is None or (d.example and len(shape) == len(d.shape)):
        return
    if len(shape) != len(d.shape):
        raise WorkloadError(f"{d.name}: {what} has rank {len(shape)} {shape}, the model expects "
                            f"rank {len(d.shape)} {_fmt(d.shape)}")
    for i, (want, got) in enumerate(zip(d.shape, shape)):
        if isinstance(want, int) and want != got:
            raise WorkloadError(f"{d.name}: dim {i} is fixed to {want} in the model, {what} "
                                f"has {got}")


def _shape_from_data(d: InputDecl, arr: np.ndarray, dims: dict[str, int]) -> list[int]:
    """Data gives every size; the first axis is the sample axis: a free batch stays 1, a fixed
    batch takes the model's size (the data is cut to it later)."""
    shape = list(arr.shape)
    if d.shape is None or (d.example and len(shape) == len(d.shape)):
        return ([1] + shape[1:]) if len(shape) >= 2 else shape
    if len(shape) != len(d.shape):
        raise WorkloadError(f"the data for {d.name!r} has shape {shape}, the model expects rank "
                            f"{len(d.shape)} {_fmt(d.shape)}")
    if len(shape) >= 2:
        first = d.shape[0]
        if isinstance(first, int):
            if shape[0] < first:
                raise WorkloadError(f"the data for {d.name!r} has {shape[0]} samples, the model "
                                    f"takes a batch of {first}")
            shape[0] = first
        elif isinstance(first, str) and first in dims:
            shape[0] = min(shape[0], dims[first])
        else:
            shape[0] = DEFAULT_BATCH
    for i, (want, got) in enumerate(zip(d.shape, shape)):
        if i > 0 and isinstance(want, int) and want != got:
            raise WorkloadError(f"the data for {d.name!r} has shape {list(arr.shape)}, the model "
                                f"expects {_fmt(d.shape)} (dim {i} is fixed to {want})")
    return shape


def _defaults(slots: list[_Slot], decls: Sequence[InputDecl], facts: _GraphFacts,
              pos_cap: int | None, dims: dict[str, int], sources: dict[str, str]) -> None:
    """Role defaults for every slot still open; one value per symbol."""
    seq = DEFAULT_SEQUENCE
    seq_src = f"default: sequence length {seq}"
    if pos_cap is not None and pos_cap < seq:
        seq, seq_src = pos_cap, f"default: sequence length {pos_cap}, the position table's size"
    for s in slots:
        if s.value is not None:
            continue
        if s.symbol is not None and s.symbol in dims:
            s.value, s.source = dims[s.symbol], sources[s.symbol]
            continue
        if s.role == "batch":
            s.value, s.source = DEFAULT_BATCH, f"default: batch {DEFAULT_BATCH}"
        elif s.role == "image":
            s.value, s.source = DEFAULT_IMAGE, f"default: image size {DEFAULT_IMAGE}"
        elif s.role == "sequence":
            s.value, s.source = seq, seq_src
        else:
            s.value, s.source = 1, "default: 1 (no rule for this axis; set it if it matters)"
        if s.symbol is not None:
            dims[s.symbol], sources[s.symbol] = s.value, s.source


_MASK = re.compile(r"mask", re.IGNORECASE)
_STATE = re.compile(r"^(h|c|h0|c0|hx|cx|state|states|hidden|cell)$|_state$|state_|^past|cache",
                    re.IGNORECASE)
_POSITIONS = re.compile(r"position", re.IGNORECASE)


def _values(d: InputDecl, shape: list[int], facts: _GraphFacts, notes: list[str]) -> Values:
    """How to fill an input nobody gave data for, following what the graph does with it."""
    if d.dtype == "string":
        return Values("text", reason="short placeholder strings")
    if d.dtype == "bool":
        if _MASK.search(d.name):
            return Values("ones", reason="an attention mask: all positions kept")
        return Values("bits", reason="no rule for a boolean input")
    if _is_int(d.dtype):
        if _MASK.search(d.name):
            return Values("ones", reason="an attention mask: all positions kept")
        table = facts.table_size(d.name)
        if _POSITIONS.search(d.name) and shape:
            return Values("arange", reason="positions count up along the sequence")
        if table is not None:
            rows, node = table
            return Values("int_range", 0, rows, reason=f"indexes a table of {rows} rows "
                          f"({node}): kept inside it")
        choices = facts.compared_constants(d.name)
        if choices:
            return Values("constant", value=choices[0], reason="the model compares it with "
                          + ", ".join(f"{c:g}" for c in choices))
        notes.append(f"input {d.name!r}: integer values drawn from 0..9 (the model does not show "
                     "their range); give real data if it expects others")
        return Values("int_range", 0, 10, reason="no rule found: small integers")
    if _MASK.search(d.name):
        return Values("ones", reason="a mask: all positions kept")
    if _STATE.search(d.name):
        return Values("zeros", reason="recurrent state: starts at zero")
    return Values("uniform", 0.0, 1.0, reason="random, image-like range")


def _fmt(shape: Sequence[Dim] | None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# --- real data ---------------------------------------------------------------------------------

def npz_array(data: Any, name: str, single_input: bool) -> np.ndarray | None:
    """The array an .npz holds for input `name`: by name, or the one called "inputs" when the
    model has a single input (the sample's held-out file). None when there is neither."""
    if name in data.files:
        return data[name]
    if single_input and "inputs" in data.files:
        return data["inputs"]
    return None


def read_npz(path: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """One array per input from an .npz (no pickles). Raises WorkloadError naming what is
    missing."""
    from pathlib import Path

    from converters.formats import require_regular_file

    require_regular_file(Path(path), "data file")  # a FIFO would block the job forever
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise WorkloadError(f"cannot read inputs from {path}: {e}") from e
    if not hasattr(data, "files"):
        raise WorkloadError(f"{path} holds one bare array, not named arrays: save the inputs "
                            "with numpy.savez(path, NAME=array, ...)")
    out = {}
    for name in names:
        arr = npz_array(data, name, single_input=len(names) == 1)
        if arr is None:
            raise WorkloadError(f"{Path(path).name} has no array named {name!r} (it has "
                                f"{', '.join(data.files) or 'none'}); name arrays after the "
                                "model's inputs")
        out[name] = arr
    return out


# --- values ------------------------------------------------------------------------------------

def numpy_dtype(name: str) -> np.dtype:
    """numpy dtype for a model dtype name; ml_dtypes (an onnx dependency) for bf16/fp8/int4."""
    if name == "string":
        return np.dtype(object)
    try:
        return np.dtype(name)
    except TypeError:
        pass
    try:
        import ml_dtypes
    except ImportError as e:
        raise WorkloadError(f"inputs of type {name} need the ml_dtypes package") from e
    aliases = {"float8e4m3fn": "float8_e4m3fn", "float8e4m3fnuz": "float8_e4m3fnuz",
               "float8e5m2": "float8_e5m2", "float8e5m2fnuz": "float8_e5m2fnuz",
               "float4e2m1": "float4_e2m1fn"}
    attr = aliases.get(name, name)
    if hasattr(ml_dtypes, attr):
        return np.dtype(getattr(ml_dtypes, attr))
    raise WorkloadError(f"ModelDeck cannot make inputs of type {name}: give real data")


def generate(workload: Workload, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays for every input, made before any timed loop; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    budget = _memory_budget()
    for i in workload.inputs:
        need = math.prod(i.shape) * _itemsize(i.dtype)
        if need > budget:
            raise WorkloadError(f"input {i.name!r} at {list(i.shape)} would need "
                                f"{_gb(math.prod(i.shape), i.dtype)} of memory, more than half "
                                "of this machine's; set a smaller size for it")
        try:
            out[i.name] = _make(i, rng)
        except (ValueError, MemoryError) as e:  # sizes the user or data set, past the machine
            raise WorkloadError(f"input {i.name!r} at {list(i.shape)} would need "
                                f"{_gb(math.prod(i.shape), i.dtype)} of memory ({e}); set "
                                "a smaller size for it") from None
    return out


def _make(i: InputWorkload, rng: np.random.Generator) -> np.ndarray:
    """One input's array, filled as its Values say."""
    shape = tuple(i.shape)
    v = i.values
    if v.kind == "text":
        return np.full(shape, "modeldeck", dtype=object)
    dtype = numpy_dtype(i.dtype)
    if v.kind == "ones":
        a = np.ones(shape)
    elif v.kind == "zeros":
        a = np.zeros(shape)
    elif v.kind == "constant":
        a = np.full(shape, v.value)
    elif v.kind == "arange":
        a = np.broadcast_to(np.arange(shape[-1]), shape) if shape else np.zeros(())
    elif v.kind == "bits":
        a = rng.integers(0, 2, size=shape)
    elif v.kind == "int_range":
        a = rng.integers(int(v.low or 0), max(int(v.high or 1), int(v.low or 0) + 1),
                         size=shape)
    elif v.kind == "uniform":
        a = rng.random(size=shape, dtype=np.float32) * ((v.high or 1.0) - (v.low or 0.0)) \
            + (v.low or 0.0)
    else:  # "data": the caller fills it
        raise WorkloadError(f"input {i.name!r} takes real data, and none was given")
    return np.asarray(np.asarray(a).astype(dtype), order="C")


def fit_data(workload: Workload, data: Mapping[str, np.ndarray], rows: int | None = None
             ) -> dict[str, np.ndarray]:
    """Real data cut to the workload (the first `rows` samples, default the workload's batch)
    and cast to each input's dtype; inputs without data are generated."""
    wl = workload if rows is None else workload.with_batch(rows)
    generated = generate(replace(wl, inputs=tuple(
        i for i in wl.inputs if i.name not in data)))
    out = {}
    for i in wl.inputs:
        if i.name not in data:
            out[i.name] = generated[i.name]
            continue
        arr = np.asarray(data[i.name])
        if arr.ndim >= 2 and i.shape:
            arr = arr[: i.shape[0]]
        out[i.name] = np.asarray(arr.astype(numpy_dtype(i.dtype), copy=False), order="C")
    return out


# --- the dry shape check -----------------------------------------------------------------------

def make_dry_check(path: str, fmt: str) -> DryCheck | None:
    """A function telling whether the model accepts given input sizes, without running it:
    OpenVINO's shape inference (it checks every pooling window and broadcast), falling back to
    ONNX's for ONNX models OpenVINO cannot read. None for formats without a cheap check."""
    if fmt not in ("onnx", "openvino", "tflite"):
        return None

    def check(shapes: dict[str, list[int]]) -> str | None:
        reason = _ov_check(path, shapes, fmt)
        if reason == "unreadable" and fmt == "onnx":
            return _onnx_check(path, shapes)
        return None if reason == "unreadable" else reason

    return check


def _ov_check(path: str, shapes: dict[str, list[int]], fmt: str) -> str | None:
    try:
        import openvino as ov

        from converters.formats.openvino_format import read_with_frontend
    except ImportError:
        return "unreadable"
    try:  # the model's own frontend: read_model would try every frontend on a refusal
        model = (ov.Core().read_model(path) if fmt == "openvino"
                 else read_with_frontend(path, fmt))
    except Exception:  # a model OpenVINO refuses: the other check decides
        return "unreadable"
    names = {n for p in model.inputs for n in p.get_names()}
    wanted = {k: ov.PartialShape(v) for k, v in shapes.items() if k in names}
    if not wanted:
        return None
    try:
        model.reshape(wanted)
    except Exception as e:
        return _first_meaningful_line(str(e))
    return None


def _onnx_check(path: str, shapes: dict[str, list[int]]) -> str | None:
    import onnx

    try:
        m = onnx.load(path, load_external_data=False)
        set_input_shapes(m, shapes)
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    except Exception as e:
        return _first_meaningful_line(str(e))
    for vi in m.graph.value_info:
        tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if tt is not None and tt.HasField("shape") and any(
                d.HasField("dim_value") and d.dim_value < 0 for d in tt.shape.dim):
            return f"{vi.name} would have a negative size"
    return None


def set_input_shapes(model: Any, shapes: Mapping[str, Sequence[int]]) -> None:
    """Give an onnx ModelProto's inputs concrete sizes and drop the stale symbolic shapes the
    exporter stored for derived values, so shape inference recomputes them at these sizes."""
    for vi in model.graph.input:
        if vi.name not in shapes or not vi.type.HasField("tensor_type"):
            continue
        shape = vi.type.tensor_type.shape
        shape.ClearField("dim")
        for v in shapes[vi.name]:
            shape.dim.add().dim_value = int(v)
    keep = [vi for vi in model.graph.value_info
            if not (vi.type.HasField("tensor_type") and any(
                not d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim))]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    for o in model.graph.output:
        if o.type.HasField("tensor_type") and any(
                not d.HasField("dim_value") for d in o.type.tensor_type.shape.dim):
            o.type.tensor_type.ClearField("shape")


def _first_meaningful_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Check '"):
            return ln.split(" failed at ")[0]
    for ln in lines:
        if not ln.startswith(("Exception from", "Traceback")):
            return ln[:300]
    return lines[0][:300] if lines else "rejected"
