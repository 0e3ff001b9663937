"""ONNX: protobuf parse, shape inference, subgraphs, Constant weights, guarded external data."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters.errors import ModelLoadError
from converters.formats import Format, Trust, register_format, require_regular_file, sha256_of
from converters.graph import Dim, Graph, ModelGraph, ModelMeta, Node, TensorInfo, json_safe
from converters.limits import memory_note

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
                              is_weight=True, nbytes=_tensor_nbytes(a.t), value=_small_value(a.t))
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


def _fill_static_shapes(graph: Graph, path: Path, input_shapes: dict[str, list[int]]) -> None:
    """Complete the shapes ONNX's inference left symbolic or unknown at these input sizes,
    from OpenVINO's inference (main graph; values OpenVINO names like the ONNX tensors)."""
    missing = [t for t in graph.tensors.values() if not t.is_weight and (
        t.shape is None or not all(isinstance(d, int) for d in t.shape))]
    if not missing:
        return
    from converters.formats.openvino_format import static_shapes

    known = static_shapes(path, input_shapes)
    for t in missing:
        shape = known.get(t.name)
        if shape is not None and (t.shape is None or len(t.shape) == len(shape)):
            t.shape = shape


def _small_value(t: onnx.TensorProto) -> Any:
    """The values of a constant of a few elements (a sample rate, an axis), else None."""
    from onnx import numpy_helper

    n = 1
    for d in t.dims:
        n *= d
    if n > _MAX_ATTR_VALUES or t.data_location == t.EXTERNAL:
        return None
    try:
        return json_safe(numpy_helper.to_array(t).tolist())
    except Exception:  # exotic dtypes: no value, the shape is enough
        return None


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
                                        is_weight=True, nbytes=_tensor_nbytes(init),
                                        value=_small_value(init))
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


def _external_int(model_path: Path, t: onnx.TensorProto, key: str, raw: str | None,
                  default: int) -> int:
    """An offset/length entry as an int >= 0, or a clear error naming the tensor."""
    if raw is None or raw == "":
        return default
    try:
        v = int(raw.strip())
    except ValueError:
        v = -1
    if v < 0:
        raise ModelLoadError(
            f"{model_path.name}: tensor {t.name!r} has external data {key} {raw[:40]!r}, not a "
            "whole number >= 0: the model file is damaged or was edited by hand")
    return v


def check_external_data(model: onnx.ModelProto, model_path: Path) -> list[Path]:
    """Validate external-data references without reading them; return the files used.

    A location must stay inside the model's folder: an absolute path or one that climbs out
    with '..' (or a symlink pointing out) could make ModelDeck read any file on the machine.
    Each data file must be a regular file (not a FIFO or device), and every tensor's
    offset/length must be whole numbers that fit inside it.
    """
    base = model_path.parent.resolve()
    sizes: dict[Path, int] = {}
    for t in _iter_tensor_protos(model.graph):
        if t.data_location != t.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if not loc:
            raise ModelLoadError(f"{model_path.name}: tensor {t.name!r} has external data "
                                 "without a location")
        if "\0" in loc:
            raise ModelLoadError(f"{model_path.name}: tensor {t.name!r} has an external data "
                                 "location with a NUL character: the model file is damaged")
        target = (base / loc).resolve()
        if Path(loc).is_absolute() or not target.is_relative_to(base):
            raise ModelLoadError(
                f"{model_path.name}: tensor {t.name!r} points its external data at {loc!r}, "
                "outside the model's folder; refused for safety. Keep the data file beside the "
                "model and give a relative location")
        if not target.exists():
            raise ModelLoadError(
                f"{model_path.name}: external data file {loc!r} (for tensor {t.name!r}) is "
                f"missing: copy it into {base} next to the model")
        if target not in sizes:
            sizes[target] = require_regular_file(target, "external data file").st_size
        offset = _external_int(model_path, t, "offset", info.get("offset"), 0)
        declared = _tensor_nbytes(t)
        length = _external_int(model_path, t, "length", info.get("length"), declared)
        if "length" in info and declared and length != declared:
            raise ModelLoadError(
                f"{model_path.name}: tensor {t.name!r} declares {length} bytes of external data "
                f"but its shape and type need {declared}: the model file is damaged")
        if offset + length > sizes[target]:
            raise ModelLoadError(
                f"{model_path.name}: external data file {target.name} is truncated or the offset "
                f"is wrong ({sizes[target]} bytes, tensor {t.name!r} needs bytes {offset}.."
                f"{offset + length})")
    return sorted(sizes)


def check_text_fields(model: onnx.ModelProto, path: Path) -> None:
    """Names must be text: protobuf hands a string field that is not valid UTF-8 back as bytes,
    which every later step would trip over."""
    def bad(values) -> bool:
        return any(isinstance(v, bytes) for v in values)

    if bad([model.producer_name, model.producer_version, model.domain]) or bad(
            o.domain for o in model.opset_import):
        raise ModelLoadError(f"{path.name} is damaged: its header holds text that is not UTF-8")
    for g in _graphs_of(model.graph):
        fields = [g.name] + [vi.name for vi in (*g.input, *g.output, *g.value_info)]
        fields += [t.name for t in g.initializer]
        for n in g.node:
            fields += [n.name, n.op_type, n.domain, *n.input, *n.output]
            fields += [a.name for a in n.attribute]
        if bad(fields):
            raise ModelLoadError(f"{path.name} is damaged: a node or tensor name in it is not "
                                 "valid UTF-8 text")
    for t in _iter_tensor_protos(model.graph):
        if bad([t.name, *(x for e in t.external_data for x in (e.key, e.value))]):
            raise ModelLoadError(f"{path.name} is damaged: a tensor name or external data "
                                 "location in it is not valid UTF-8 text")


_MAX_NOTES_PER_KIND = 3  # a broken graph can have thousands of faults; name a few, count the rest


def _graphs_of(g: onnx.GraphProto):
    """The graph and every nested subgraph, parents first."""
    from onnx import AttributeProto

    yield g
    for n in g.node:
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                yield from _graphs_of(a.g)
            elif a.type == AttributeProto.GRAPHS:
                for sg in a.graphs:
                    yield from _graphs_of(sg)


def sanitize_dims(model: onnx.ModelProto) -> list[str]:
    """Make negative declared dims unknown, in place; return one note per tensor changed.

    onnx's C++ shape inference aborts the whole process (an assertion, exit 134) on a
    dim_value < 0 in a place it expects a size; an unknown dim means the same to every reader.
    """
    bad: list[str] = []
    for g in _graphs_of(model.graph):
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            if vi.type.WhichOneof("value") != "tensor_type":
                continue
            fixed = False
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_value") and d.dim_value < 0:
                    d.ClearField("dim_value")
                    fixed = True
            if fixed:
                bad.append(vi.name)
    if not bad:
        return []
    return [f"warning: negative dims in {_name_list(bad)} are invalid; taken as unknown"]


def _name_list(names: list[str]) -> str:
    shown = ", ".join(repr(n[:60]) for n in names[:_MAX_NOTES_PER_KIND])
    more = len(names) - _MAX_NOTES_PER_KIND
    return shown + (f" and {more} more" if more > 0 else "")


def structure_problems(g: onnx.GraphProto, outer: frozenset[str] = frozenset(),
                       where: str = "") -> list[str]:
    """What makes the graph invalid, one line per kind: duplicate names, dangling inputs, cycles.

    onnx.checker stops at the first fault; this lists each kind, in subgraphs too (`outer`
    holds the names an enclosing graph makes visible, as in ONNX scoping).
    """
    from onnx import AttributeProto

    problems: list[str] = []
    at = f" in {where}" if where else ""
    defined = {vi.name for vi in g.input} | {t.name for t in g.initializer} | {
        t.values.name for t in g.sparse_initializer}
    producer: dict[str, int] = {}
    dup_outputs: list[str] = []
    for i, n in enumerate(g.node):
        for o in n.output:
            if not o:
                continue
            if o in producer or o in defined:
                dup_outputs.append(o)
            producer.setdefault(o, i)
    if dup_outputs:
        problems.append(f"tensors produced more than once{at}: {_name_list(sorted(set(dup_outputs)))}")
    node_names = [n.name for n in g.node if n.name]
    dup_nodes = sorted({x for x in node_names if node_names.count(x) > 1}) if (
        len(set(node_names)) != len(node_names)) else []
    if dup_nodes:
        problems.append(f"duplicate node names{at}: {_name_list(dup_nodes)}")

    visible = outer | set(defined) | set(producer)
    dangling = sorted({i for n in g.node for i in n.input if i and i not in visible})
    if dangling:
        problems.append(f"inputs nothing produces{at}: {_name_list(dangling)}")
    missing_out = [vi.name for vi in g.output if vi.name not in visible]
    if missing_out:
        problems.append(f"graph outputs nothing produces{at}: {_name_list(missing_out)}")

    # Kahn's algorithm over producer -> consumer edges inside this graph.
    deps = [{producer[i] for i in n.input if i in producer and i not in defined} for n in g.node]
    users: dict[int, list[int]] = {}
    for j, ds in enumerate(deps):
        for d in ds:
            users.setdefault(d, []).append(j)
    waiting = [len(ds) for ds in deps]
    ready = [j for j, w in enumerate(waiting) if w == 0]
    done = 0
    out_of_order = False
    while ready:
        j = ready.pop()
        done += 1
        for u in users.get(j, ()):
            if u <= j:
                out_of_order = True
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    if done < len(g.node):
        stuck = [g.node[j].name or f"{g.node[j].op_type}_{j}"
                 for j, w in enumerate(waiting) if w > 0]
        problems.append(f"a cycle{at}: {len(stuck)} nodes depend on their own outputs "
                        f"({_name_list(stuck)}); no runtime can execute it")
    elif out_of_order or any(d >= j for j, ds in enumerate(deps) for d in ds):
        problems.append(f"nodes are not in topological order{at} (some runtimes refuse this)")

    for i, n in enumerate(g.node):
        for a in n.attribute:
            subs = [a.g] if a.type == AttributeProto.GRAPH else (
                list(a.graphs) if a.type == AttributeProto.GRAPHS else [])
            for sg in subs:
                name = n.name or f"{n.op_type}_{i}"
                problems += structure_problems(sg, frozenset(visible),
                                               f"{where + '/' if where else ''}{name}.{a.name}")
    return problems


def _attribute_problems(g: onnx.GraphProto) -> list[str]:
    """Attribute values no runtime accepts (kernel_shape [0], group 10^9) that inference misses."""
    bad: list[str] = []
    weights = {t.name: list(t.dims) for t in g.initializer}
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        for a in n.attribute:
            if a.name in ("kernel_shape", "strides", "dilations") and any(v < 1 for v in a.ints):
                bad.append(f"{name}: {a.name} {list(a.ints)[:8]} must be >= 1")
            elif a.name == "pads" and any(v < 0 for v in a.ints) and n.op_type != "Pad":
                bad.append(f"{name}: pads {list(a.ints)[:8]} must be >= 0")
            elif a.name == "group" and n.op_type in ("Conv", "ConvTranspose", "QLinearConv",
                                                      "ConvInteger"):
                w = weights.get(n.input[1 if n.op_type != "QLinearConv" else 3], [None]) if len(
                    n.input) > 1 else [None]
                out_ch = w[0] if n.op_type != "ConvTranspose" else None
                if a.i < 1 or (out_ch and out_ch % a.i):
                    bad.append(f"{name}: group {a.i} does not divide the weight's "
                               f"{out_ch if out_ch else '?'} output channels")
    if not bad:
        return []
    more = len(bad) - _MAX_NOTES_PER_KIND
    return ["invalid attributes: " + "; ".join(bad[:_MAX_NOTES_PER_KIND])
            + (f"; and {more} more" if more > 0 else "")]


def _opset_problems(model: onnx.ModelProto) -> list[str]:
    """Opsets newer than the installed onnx knows: nothing here can check or run those ops."""
    from onnx import defs

    latest = defs.onnx_opset_version()
    out = []
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and not 1 <= o.version <= latest:
            out.append(f"opset {o.version} of the default domain is outside 1..{latest}, the "
                       "versions the installed onnx knows: ops are checked against none")
    return out


def _checker_note(model: onnx.ModelProto) -> str | None:
    """onnx.checker's verdict, without the full check (no shape inference, no data read).

    The checker stops at its first complaint, and it complains about graph inputs/outputs
    declared without a shape, which exporters often write and every runtime accepts; so those
    get an empty shape for the check, removed again afterwards.
    """
    import onnx

    shapeless = [vi for g in _graphs_of(model.graph) for vi in list(g.input) + list(g.output)
                 if vi.type.WhichOneof("value") == "tensor_type"
                 and not vi.type.tensor_type.HasField("shape")]
    for vi in shapeless:
        vi.type.tensor_type.shape.SetInParent()
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        text = " ".join(lines)
        return "warning: onnx checker: " + (text[:300] if text else "model is invalid")
    except Exception as e:  # noqa: BLE001 - the checker is advisory; never fail the load on it
        log.info("onnx checker failed: %s", e)
        return f"warning: onnx checker could not run: {type(e).__name__}"
    finally:
        for vi in shapeless:
            vi.type.tensor_type.ClearField("shape")
    return None


def _infer_shapes(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    """Shapes for every tensor; an inconsistency is a warning, then a lenient pass fills in.

    Strict mode reports what is wrong (kernel_shape [0], mismatched dims); the lenient pass
    still infers the rest so the graph stays useful. Reads dims only, never weight bytes.
    """
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as e:  # a custom op or a fault: say it, then infer what can be
        msg = " ".join(str(e).split())
        msg = msg.replace("[ShapeInferenceError] Inference error(s): ", "")
        notes.append(f"warning: shape inference: {msg[:300] or type(e).__name__}")
        log.info("strict shape inference failed: %s", e)
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - the graph without inferred shapes is still useful
        log.info("shape inference failed: %s", e)
        return model


@register_format
class OnnxFormat(Format):
    name = "onnx"
    suffixes = (".onnx",)
    description = "ONNX model"
    max_file_bytes = 2**31 - 1  # protobuf's own limit: larger models keep weights external

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        # ModelProto starts with field 1 (ir_version, varint): tag byte 0x08, small version.
        return (len(head) > 2 and head[0] == 0x08 and 1 <= head[1] <= 32
                and path.suffix.lower() not in (".bin", ".tflite") and head[4:8] != b"TFL3")

    def load(self, path: Path, trust: Trust,
             input_shapes: dict[str, list[int]] | None = None) -> ModelGraph:
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
        check_text_fields(model, path)
        data_files = check_external_data(model, path)
        notes: list[str] = sanitize_dims(model)
        problems = structure_problems(model.graph)
        problems += [p for g in _graphs_of(model.graph) for p in _attribute_problems(g)]
        problems += _opset_problems(model)
        notes += [f"warning: invalid graph: {p}" for p in problems]
        checker = _checker_note(model)
        if checker:
            notes.append(checker)
        if input_shapes:
            from converters.workload import set_input_shapes

            set_input_shapes(model, input_shapes)
        model = _infer_shapes(model, notes)
        graph = _convert_graph(model.graph, "")
        if input_shapes:
            _fill_static_shapes(graph, path, input_shapes)
        files = [path, *data_files]
        meta = ModelMeta(
            format="onnx", path=str(path),
            producer=f"{model.producer_name} {model.producer_version}".strip(),
            opset={(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
            file_size=sum(f.stat().st_size for f in files), sha256=sha256_of(files), notes=notes)
        result = ModelGraph(graph=graph, meta=meta)
        memory = memory_note(result)
        if memory:
            notes.append("warning: " + memory)
        return result
