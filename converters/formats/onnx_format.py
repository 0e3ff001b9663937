"""ONNX: protobuf parse, shape inference, subgraphs, Constant weights, guarded external data."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters.errors import ModelLoadError
from converters.formats import Format, Trust, register_format, sha256_of
from converters.graph import Dim, Graph, ModelGraph, ModelMeta, Node, TensorInfo

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

# TensorProto.DataType -> (numpy-style name, bits per element)
_DTYPES: dict[int, tuple[str, int]] = {
    1: ("float32", 32), 2: ("uint8", 8), 3: ("int8", 8), 4: ("uint16", 16), 5: ("int16", 16),
    6: ("int32", 32), 7: ("int64", 64), 8: ("string", 0), 9: ("bool", 8), 10: ("float16", 16),
    11: ("float64", 64), 12: ("uint32", 32), 13: ("uint64", 64), 14: ("complex64", 64),
    15: ("complex128", 128), 16: ("bfloat16", 16), 17: ("float8e4m3fn", 8),
    18: ("float8e4m3fnuz", 8), 19: ("float8e5m2", 8), 20: ("float8e5m2fnuz", 8),
    21: ("uint4", 4), 22: ("int4", 4), 23: ("float4e2m1", 4),
}
_MAX_ATTR_VALUES = 16  # tensor attributes longer than this are summarised, not copied


def dtype_name(elem_type: int) -> str | None:
    return _DTYPES.get(elem_type, (None, 0))[0] if elem_type else None


def _tensor_nbytes(t: onnx.TensorProto) -> int:
    """Bytes the tensor occupies once unpacked (what it costs on disk for raw/external data)."""
    n = 1
    for d in t.dims:
        n *= d
    bits = _DTYPES.get(t.data_type, (None, 0))[1]
    return (n * bits + 7) // 8


def _shape_of(type_proto: onnx.TypeProto) -> tuple[str | None, list[Dim] | None]:
    which = type_proto.WhichOneof("value")
    if which != "tensor_type":
        return (which, None)  # sequence / map / optional: keep the kind, no shape
    tt = type_proto.tensor_type
    if not tt.HasField("shape"):
        return dtype_name(tt.elem_type), None
    dims: list[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dtype_name(tt.elem_type), dims


def _attr_value(a: onnx.AttributeProto) -> Any:
    """Attribute as JSON-safe data. Graphs become subgraphs elsewhere; tensors are summarised."""
    from onnx import AttributeProto, numpy_helper

    t = a.type
    if t == AttributeProto.INT:
        return int(a.i)
    if t == AttributeProto.FLOAT:
        return float(a.f)
    if t == AttributeProto.STRING:
        return a.s.decode("utf-8", "replace")
    if t == AttributeProto.INTS:
        return [int(v) for v in a.ints]
    if t == AttributeProto.FLOATS:
        return [float(v) for v in a.floats]
    if t == AttributeProto.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if t == AttributeProto.TENSOR:
        out: dict[str, Any] = {"dtype": dtype_name(a.t.data_type), "shape": list(a.t.dims)}
        n = 1
        for d in a.t.dims:
            n *= d
        if n <= _MAX_ATTR_VALUES and a.t.data_location != a.t.EXTERNAL:
            try:
                out["value"] = numpy_helper.to_array(a.t).tolist()
            except Exception:  # exotic dtypes: the summary is enough
                pass
        return out
    if t in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
        return "<subgraph>"
    if t == AttributeProto.TYPE_PROTO:
        return str(a.tp)
    return None


def _constant_tensor(node: onnx.NodeProto) -> TensorInfo | None:
    """The weight a Constant node holds (value, value_float(s), value_int(s), sparse_value)."""
    for a in node.attribute:
        if a.name == "value":
            return TensorInfo(node.output[0], dtype_name(a.t.data_type), list(a.t.dims),
                              is_weight=True, nbytes=_tensor_nbytes(a.t))
        if a.name == "sparse_value":
            v = a.sparse_tensor.values
            return TensorInfo(node.output[0], dtype_name(v.data_type), list(a.sparse_tensor.dims),
                              is_weight=True, nbytes=_tensor_nbytes(v))
        if a.name in ("value_float", "value_int"):
            return TensorInfo(node.output[0], "float32" if a.name == "value_float" else "int64",
                              [], is_weight=True, nbytes=4 if a.name == "value_float" else 8)
        if a.name in ("value_floats", "value_ints"):
            n = len(a.floats) if a.name == "value_floats" else len(a.ints)
            fl = a.name == "value_floats"
            return TensorInfo(node.output[0], "float32" if fl else "int64", [n],
                              is_weight=True, nbytes=n * (4 if fl else 8))
    return None


def _scope_of(name: str) -> str:
    """'/features/conv1/Conv' -> '/features/conv1' (the exporters' module path)."""
    if "/" not in name:
        return ""
    return name.rsplit("/", 1)[0]


def _convert_graph(g: onnx.GraphProto, prefix: str) -> Graph:
    from onnx import AttributeProto

    tensors: dict[str, TensorInfo] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dt, shape = _shape_of(vi.type)
        tensors[vi.name] = TensorInfo(vi.name, dt, shape)
    init_names = set()
    for init in g.initializer:
        init_names.add(init.name)
        tensors[init.name] = TensorInfo(init.name, dtype_name(init.data_type), list(init.dims),
                                        is_weight=True, nbytes=_tensor_nbytes(init))
    for sp in g.sparse_initializer:
        init_names.add(sp.values.name)
        tensors[sp.values.name] = TensorInfo(sp.values.name, dtype_name(sp.values.data_type),
                                             list(sp.dims), is_weight=True,
                                             nbytes=_tensor_nbytes(sp.values))

    nodes: list[Node] = []
    for i, n in enumerate(g.node):
        node_id = f"{prefix}n{i}"
        subgraphs: dict[str, Graph] = {}
        attrs: dict[str, Any] = {}
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                subgraphs[a.name] = _convert_graph(a.g, f"{node_id}/{a.name}/")
            elif a.type == AttributeProto.GRAPHS:
                for j, sg in enumerate(a.graphs):
                    subgraphs[f"{a.name}[{j}]"] = _convert_graph(sg, f"{node_id}/{a.name}[{j}]/")
            attrs[a.name] = _attr_value(a)
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output:
            t = _constant_tensor(n)
            if t is not None:
                tensors[n.output[0]] = t
        for o in n.output:
            tensors.setdefault(o, TensorInfo(o))
        name = n.name or f"{n.op_type}_{i}"
        nodes.append(Node(id=node_id, name=name, op_type=n.op_type, domain=n.domain,
                          attributes=attrs, inputs=list(n.input), outputs=list(n.output),
                          scope=_scope_of(n.name), subgraphs=subgraphs))
    inputs = [vi.name for vi in g.input if vi.name not in init_names]
    return Graph(nodes=nodes, tensors=tensors, inputs=inputs, outputs=[vi.name for vi in g.output])


def _iter_tensor_protos(g: onnx.GraphProto):
    """Every TensorProto that may hold data, subgraphs and Constant attributes included."""
    from onnx import AttributeProto

    yield from g.initializer
    for sp in g.sparse_initializer:
        yield sp.values
        yield sp.indices
    for n in g.node:
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR:
                yield a.t
            elif a.type == AttributeProto.TENSORS:
                yield from a.tensors
            elif a.type == AttributeProto.GRAPH:
                yield from _iter_tensor_protos(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for sg in a.graphs:
                    yield from _iter_tensor_protos(sg)


def check_external_data(model: onnx.ModelProto, model_path: Path) -> list[Path]:
    """Validate external-data references without reading them; return the files used.

    A location must stay inside the model's folder: an absolute path or one that climbs out
    with '..' (or a symlink pointing out) could make ModelDeck read any file on the machine.
    """
    base = model_path.parent.resolve()
    files: dict[Path, int] = {}
    for t in _iter_tensor_protos(model.graph):
        if t.data_location != t.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if not loc:
            raise ModelLoadError(f"{model_path.name}: tensor {t.name!r} has external data "
                                 "without a location")
        target = (base / loc).resolve()
        if Path(loc).is_absolute() or not target.is_relative_to(base):
            raise ModelLoadError(
                f"{model_path.name}: tensor {t.name!r} points its external data at {loc!r}, "
                "outside the model's folder; refused for safety. Keep the data file beside the "
                "model and give a relative location")
        if not target.is_file():
            raise ModelLoadError(
                f"{model_path.name}: external data file {loc!r} (for tensor {t.name!r}) is "
                f"missing: copy it into {base} next to the model")
        end = int(info.get("offset", 0)) + int(info.get("length", _tensor_nbytes(t)))
        files[target] = max(files.get(target, 0), end)
    for f, end in files.items():
        if f.stat().st_size < end:
            raise ModelLoadError(f"{model_path.name}: external data file {f.name} is truncated "
                                 f"({f.stat().st_size} bytes, needs {end})")
    return sorted(files)


@register_format
class OnnxFormat(Format):
    name = "onnx"
    suffixes = (".onnx",)
    description = "ONNX model"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        # ModelProto starts with field 1 (ir_version, varint): tag byte 0x08, small version.
        return (len(head) > 2 and head[0] == 0x08 and 1 <= head[1] <= 32
                and path.suffix.lower() not in (".bin", ".tflite") and head[4:8] != b"TFL3")

    def load(self, path: Path, trust: Trust) -> ModelGraph:
        import onnx
        from google.protobuf.message import DecodeError

        try:
            model = onnx.load(str(path), load_external_data=False)
        except (DecodeError, RuntimeWarning, ValueError) as e:
            raise ModelLoadError(f"{path.name} is not a valid ONNX file (truncated or corrupt: "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from e
        if not model.graph.node and not model.graph.output:
            raise ModelLoadError(f"{path.name} parsed as ONNX but holds no graph: the file is "
                                 "probably truncated or not an ONNX model")
        data_files = check_external_data(model, path)
        notes: list[str] = []
        try:
            # Shape inference reads dims, not weight bytes, so external data need not be loaded.
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as e:  # a custom op can stop inference; the graph is still useful
            notes.append(f"shape inference stopped: {str(e).splitlines()[0]}")
            log.info("shape inference failed for %s: %s", path, e)
        graph = _convert_graph(model.graph, "")
        files = [path, *data_files]
        meta = ModelMeta(
            format="onnx", path=str(path),
            producer=f"{model.producer_name} {model.producer_version}".strip(),
            opset={(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
            file_size=sum(f.stat().st_size for f in files), sha256=sha256_of(files), notes=notes)
        return ModelGraph(graph=graph, meta=meta)
