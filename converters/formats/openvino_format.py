"""OpenVINO IR (.xml graph + .bin weights), and the ov.Model -> ModelGraph mapping.

The mapping is shared: every format OpenVINO can read (TFLite today) goes through
`graph_from_ov_model`, so what the user sees is the graph OpenVINO will actually run.
OpenVINO is imported inside functions only: sniffing must stay cheap.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from converters.errors import ModelLoadError
from converters.formats import (Format, Trust, check_file_size, register_format,
                                require_regular_file, sha256_of)
from converters.graph import Dim, Graph, ModelGraph, ModelMeta, Node, TensorInfo, json_safe

log = logging.getLogger(__name__)

MAX_XML_BYTES = 1 << 30  # the .xml is parsed whole in memory; real IRs stay far below this

# OpenVINO element type names -> the numpy-style names ModelGraph uses.
_DTYPES = {
    "f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
    "f8e4m3": "float8_e4m3fn", "f8e5m2": "float8_e5m2", "f8e8m0": "float8_e8m0fnu",
    "f4e2m1": "float4_e2m1fn", "nf4": "nf4",
    "i64": "int64", "i32": "int32", "i16": "int16", "i8": "int8", "i4": "int4",
    "u64": "uint64", "u32": "uint32", "u16": "uint16", "u8": "uint8", "u6": "uint6",
    "u4": "uint4", "u3": "uint3", "u2": "uint2", "u1": "uint1",
    "boolean": "bool", "string": "string",
}


def _looks_like_pytorch(head: bytes) -> bool:
    """pytorch_model.bin files are zip archives or raw pickles: leave them to the torch format."""
    is_zip = head.startswith(b"PK\x03\x04")
    is_pickle = len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5
    return is_zip or is_pickle


@register_format
class OpenVinoFormat(Format):
    name = "openvino"
    suffixes = (".xml", ".bin")
    description = "OpenVINO IR (.xml + .bin)"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        suffix = path.suffix.lower()
        if suffix == ".xml":
            return b"<net" in head
        # A .bin is claimed so that load() can point the user at the .xml it belongs to.
        return suffix == ".bin" and not _looks_like_pytorch(head)

    def load(self, path: Path, trust: Trust,
             input_shapes: dict[str, list[int]] | None = None) -> ModelGraph:
        path = Path(path)
        if path.suffix.lower() == ".bin":
            xml = path.with_suffix(".xml")
            if not xml.is_file():
                raise ModelLoadError(
                    f"{path.name} is the weights half of an OpenVINO IR: open the .xml file "
                    f"instead ({xml.name}), and keep {path.name} beside it")
            path = xml
        xml, bin_path = path, path.with_suffix(".bin")
        _check_is_ir(xml)
        model = _read_ir(xml, bin_path)
        files = [xml, bin_path] if bin_path.is_file() else [xml]
        meta = ModelMeta(
            format=self.name,
            path=str(xml),
            producer=_producer(model),
            file_size=sum(f.stat().st_size for f in files),
            sha256=sha256_of(files),
        )
        reshape_inputs(model, input_shapes, meta)
        return graph_from_ov_model(model, meta)


def _check_is_ir(xml: Path) -> None:
    """Refuse other XML early (OpenVINO would try every frontend on it), and text that is not
    UTF-8: OpenVINO hands such names to Python, which fails deep inside with UnicodeDecodeError."""
    size = require_regular_file(xml).st_size
    check_file_size(xml, size, MAX_XML_BYTES, "OpenVINO IR .xml")
    try:
        with open(xml, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelLoadError(f"cannot read {xml}: {e.strerror}") from e
    if b"<net" not in data[:4096]:
        raise ModelLoadError(
            f"{xml.name} is not an OpenVINO IR: no <net> element at its start "
            "(is it another kind of XML file, or a damaged copy?)")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ModelLoadError(
            f"{xml.name} is damaged: byte {e.start} (line {line}) is not valid UTF-8 text, "
            "and an OpenVINO IR is UTF-8 XML") from None


def _read_ir(xml: Path, bin_path: Path) -> Any:
    import openvino as ov

    core = ov.Core()
    if os.path.lexists(bin_path):
        require_regular_file(bin_path, "OpenVINO IR weights file")
    if not bin_path.is_file():
        try:
            return core.read_model(str(xml))  # an IR without constants needs no .bin
        except Exception as e:  # noqa: BLE001 - RuntimeError, OpValidationFailure, UnicodeDecodeError
            raise ModelLoadError(
                f"{bin_path.name} is missing: an OpenVINO IR is two files, {xml.name} (the graph) "
                f"and {bin_path.name} (the weights); put {bin_path.name} beside {xml.name} "
                f"({ov_error_summary(e)})") from e
    try:
        return core.read_model(str(xml), str(bin_path))
    except Exception as e:  # noqa: BLE001 - RuntimeError, OpValidationFailure, UnicodeDecodeError
        raise ModelLoadError(
            f"{xml.name} could not be read as an OpenVINO IR, it may be damaged or truncated, "
            f"or {bin_path.name} may belong to another model: {ov_error_summary(e)}") from e


def read_with_frontend(path: Path, framework: str) -> Any:
    """Read a model with one named OpenVINO frontend. Core.read_model tries every frontend in
    turn on a file the right one refuses; TensorFlow's then parses the binary as text and
    writes raw bytes to stderr. RuntimeError (from the frontend) when it cannot be read."""
    from openvino.frontend import FrontEndManager

    fe = FrontEndManager().load_by_framework(framework)
    if fe is None:
        raise RuntimeError(f"OpenVINO has no {framework} frontend installed")
    try:
        return fe.convert(fe.load(str(path)))
    except RuntimeError:
        raise
    except Exception as e:  # OpValidationFailure & co. do not derive from RuntimeError
        raise RuntimeError(f"{type(e).__name__}: {e}") from e


def ov_error_summary(err: Exception) -> str:
    """The line of an OpenVINO error that says what is wrong, without its source locations."""
    noise = ("Exception from ", "Check '", "FrontEnd API failed with")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if not line.startswith(noise):
            return line
    return lines[0] if lines else type(err).__name__


def _producer(model: Any) -> str:
    for key, label in (("Runtime_version", "OpenVINO"), ("MO_version", "Model Optimizer")):
        try:
            if model.has_rt_info(key):
                return f"{label} {model.get_rt_info(key).astype(str)}"
        except RuntimeError:
            log.debug("rt_info %s unreadable", key, exc_info=True)
    return ""


# --- ov.Model -> ModelGraph ------------------------------------------------------------------

def reshape_inputs(model: Any, input_shapes: dict[str, list[int]] | None, meta: ModelMeta
                   ) -> None:
    """Fix the inputs' sizes (a resolved workload) so every derived shape is concrete; a model
    that refuses them keeps its declared shapes, with a note saying why."""
    if not input_shapes:
        return
    import openvino as ov

    names = {n for port in model.inputs for n in port.get_names()}
    wanted = {k: ov.PartialShape(v) for k, v in input_shapes.items() if k in names}
    if not wanted:
        return
    try:
        model.reshape(wanted)
    except Exception as e:  # the workload's dry check normally catches this first
        meta.notes.append(f"shapes kept as declared: the model refused the input sizes "
                          f"({ov_error_summary(e)})")


def static_shapes(path: Path, input_shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Tensor name -> concrete shape of every value OpenVINO's shape inference can fix at these
    input sizes. ONNX's own inference gives up behind data-dependent Reshapes (attention,
    sequence models); OpenVINO propagates through them. {} when OpenVINO cannot read the model."""
    try:
        import openvino as ov

        model = read_with_frontend(path, "onnx")
        names = {n for port in model.inputs for n in port.get_names()}
        model.reshape({k: ov.PartialShape(v) for k, v in input_shapes.items() if k in names})
    except Exception as e:  # a model OpenVINO refuses keeps ONNX's shapes
        log.debug("OpenVINO shape propagation unavailable for %s: %s", path, e)
        return {}
    out: dict[str, list[int]] = {}
    for op in model.get_ordered_ops():
        for port in op.outputs():
            ps = port.get_partial_shape()
            if not ps.is_static:
                continue
            shape = [int(d) for d in ps.to_shape()]
            for name in port.get_names():
                out.setdefault(name, shape)
    return out


def graph_from_ov_model(model: Any, meta: ModelMeta) -> ModelGraph:
    """Map an ov.Model (from any OpenVINO frontend) to a ModelGraph.

    Constants become weight tensors, not nodes; Parameters and Results become the graph's
    inputs and outputs; If/Loop/TensorIterator bodies become Node.subgraphs.
    """
    builder = _GraphBuilder()
    try:
        graph = builder.build(model)
    except UnicodeDecodeError:
        raise ModelLoadError(
            f"{Path(meta.path).name} is damaged: a tensor or layer name in it is not valid "
            "UTF-8 text") from None
    if builder.decompressions:
        meta.notes.append(
            f"weights are stored compressed (e.g. float16 or int8): {builder.decompressions} "
            "Convert nodes widen them at load time; weight tensors show the stored type")
    if builder.flat_ops:
        meta.notes.append(
            f"bodies of {', '.join(sorted(builder.flat_ops))} could not be read; "
            "those ops are shown without their subgraphs")
    return ModelGraph(graph=graph, meta=meta)


class _GraphBuilder:
    """Walks ov.Models; tensor names and node ids are unique across the model and its bodies."""

    def __init__(self) -> None:
        self.names: dict[tuple[int, int], str] = {}  # (node instance id, output port) -> name
        self.used: set[str] = set()
        self.node_count = 0
        self.decompressions = 0
        self.flat_ops: set[str] = set()  # control-flow ops whose bodies the Python API hid

    def build(self, model: Any) -> Graph:
        graph = Graph()
        for op in model.get_ordered_ops():
            kind = op.get_type_name()
            if kind == "Constant":
                out = op.output(0)
                name = self._name_output(out)
                graph.tensors[name] = _tensor_info(name, out, weight_bytes=op.get_byte_size())
            elif kind == "Parameter":
                name = self._name_output(op.output(0))
                graph.tensors[name] = _tensor_info(name, op.output(0))
                graph.inputs.append(name)
            elif kind == "Result":
                graph.outputs.append(self._source_name(op.input(0)))
            else:
                graph.nodes.append(self._node(op, graph))
        return graph

    def _node(self, op: Any, graph: Graph) -> Node:
        friendly = op.get_friendly_name()
        node = Node(
            id=f"n{self.node_count}",
            name=friendly,
            op_type=op.get_type_name(),
            domain=op.get_type_info().version_id,
            attributes=_attributes(op),
            inputs=[self._source_name(i) for i in op.inputs()],
            scope=friendly.rsplit("/", 1)[0] if "/" in friendly else "",
        )
        self.node_count += 1
        for out in op.outputs():
            name = self._name_output(out)
            graph.tensors[name] = _tensor_info(name, out)
            node.outputs.append(name)
        try:
            bodies = _bodies(op)
        except (AttributeError, RuntimeError):
            log.debug("bodies of %s unreadable", friendly, exc_info=True)
            bodies = {}
            self.flat_ops.add(node.op_type)
        for key, body in bodies.items():
            node.subgraphs[key] = self.build(body)
        if node.op_type == "Convert" and any("decompression" in k for k in op.get_rt_info().keys()):
            self.decompressions += 1  # marked by OpenVINO's weight compression
        return node

    def _name_output(self, out: Any) -> str:
        """The tensor's own name when it has a unique one, else "friendly_name:port"."""
        node = out.get_node()
        name = out.get_any_name() if out.get_names() else ""
        if not name or name in self.used:
            name = f"{node.get_friendly_name()}:{out.get_index()}"
        base, k = name, 1
        while name in self.used:
            k += 1
            name = f"{base}#{k}"
        self.used.add(name)
        self.names[(node.get_instance_id(), out.get_index())] = name
        return name

    def _source_name(self, inp: Any) -> str:
        src = inp.get_source_output()
        return self.names.get((src.get_node().get_instance_id(), src.get_index()), "")


def _bodies(op: Any) -> dict[str, Any]:
    """The ov.Model bodies of a control-flow op, keyed by the name shown in Node.subgraphs."""
    kind = op.get_type_name()
    if kind == "If":
        return {"then_body": op.get_then_body(), "else_body": op.get_else_body()}
    if kind in ("Loop", "TensorIterator"):
        return {"body": op.get_function()}
    return {}


def _tensor_info(name: str, out: Any, weight_bytes: int | None = None) -> TensorInfo:
    return TensorInfo(
        name=name,
        dtype=_dtype(out.get_element_type()),
        shape=_shape(out.get_partial_shape()),
        is_weight=weight_bytes is not None,
        nbytes=weight_bytes,
    )


def _dtype(element_type: Any) -> str | None:
    ov_name = element_type.get_type_name()
    if ov_name in ("dynamic", "undefined"):
        return None
    return _DTYPES.get(ov_name, ov_name)


def _shape(pshape: Any) -> list[Dim] | None:
    """Static dims as ints, dynamic ones as None (OpenVINO keeps no symbolic dim names)."""
    if pshape.rank.is_dynamic:
        return None
    return [d.get_length() if d.is_static else None for d in pshape]


def _attributes(op: Any) -> dict[str, Any]:
    try:
        attrs = op.get_attributes()
    except RuntimeError:  # some ops cannot visit their attributes from Python
        log.debug("no attributes for %s", op.get_friendly_name(), exc_info=True)
        return {}
    return {str(k): json_safe(v) for k, v in attrs.items()}


