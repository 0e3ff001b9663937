"""Helpers the ONNX / OpenVINO passes share: load, save, count ops, clean up, name errors.

Frameworks are imported inside functions so that importing the pass registry stays cheap.
"""
from __future__ import annotations

import contextlib
import os

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from converters.passes import ModelFile, PassContext, PassError

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

# protobuf refuses to serialise a message over 2 GiB; stay well below that
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def output_stem(model: ModelFile, pass_name: str) -> str:
    """'digits_cnn' + 'fp16' -> 'digits_cnn-fp16': readable names in the work folder."""
    return f"{model.path.stem}-{pass_name}"


def error_line(err: BaseException) -> str:
    """The first meaningful line of a framework error, without its stack of locations."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    noise = ("Exception from ", "Check '", "Traceback")
    for line in lines:
        if not line.startswith(noise):
            return line
    return lines[0] if lines else type(err).__name__


_ORT_NOISE = re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : |Load model from \S+ failed:\s*"
                        r"|Fatal error: ")


def ort_error(err: BaseException, model_path: Path | None = None) -> str:
    """ORT's error without its prefix, plus the model's nodes whose op type it names."""
    text = _ORT_NOISE.sub("", error_line(err)).strip()
    if model_path is None:
        return text
    try:
        model = load_onnx(model_path, with_weights=False)
    except PassError:
        return text
    named = sorted({f"{n.name or '(unnamed)'} ({n.op_type})" for n in iter_nodes(model.graph)
                    if re.search(rf"\b{re.escape(n.op_type)}\b", text)})
    if named and len(named) <= 5:
        text += f" [node{'s' if len(named) > 1 else ''}: {', '.join(named)}]"
    return text


def remove_files(paths: Iterable[Path]) -> None:
    """Remove partial or intermediate outputs this pass created (never the source)."""
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError:
            log.warning("could not remove %s", p, exc_info=True)


def onnx_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + ".data")]


def openvino_files(path: Path) -> list[Path]:
    return [path, path.with_suffix(".bin")]


# --- ONNX ------------------------------------------------------------------------------------

def load_onnx(path: Path, *, with_weights: bool = True) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=with_weights)
    except Exception as e:  # protobuf DecodeError, missing external data, ...
        raise PassError(f"{path.name} could not be read as ONNX: {error_line(e)}") from e


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    """Save, moving weights to '<name>.data' beside it when the model is too big for protobuf."""
    import onnx

    large = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    onnx.save_model(model, str(path), save_as_external_data=large,
                    all_tensors_to_one_file=True, location=path.name + ".data")


def copy_model(src: ModelFile, dest: Path) -> ModelFile:
    """Copy a model to `dest` with the weights it points at, each file written under a
    temporary name and renamed, weights first, so a model file never points at a missing or
    half-written weights file. IR: the .bin beside the .xml. ONNX with external data: the data
    goes to '<dest name>.data' (one file per location the source names) and the copy's
    references are rewritten to it (a renamed graph otherwise pointed at its old data name:
    'External data path does not exist'). A location outside the model's folder is refused,
    never read."""
    import shutil

    def put(a: Path, b: Path) -> None:
        tmp = b.with_name(f".{b.name}.partial")
        shutil.copyfile(a, tmp)
        tmp.replace(b)

    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.format == "openvino":
        put(src.path.with_suffix(".bin"), dest.with_suffix(".bin"))
    elif src.format == "onnx":
        proto = load_onnx(src.path, with_weights=False)
        tensors = _external_tensors(proto)
        if tensors:
            home = src.path.parent.resolve()
            locations = sorted({_location(t) for t in tensors})
            names = {loc: dest.name + ".data" if len(locations) == 1
                     else f"{dest.name}.{i + 1}.data" for i, loc in enumerate(locations)}
            for loc, name in names.items():
                path = (home / loc).resolve()
                if home not in path.parents or not path.is_file():
                    raise PassError(f"{src.path.name} points at external data {loc!r} outside "
                                    "its folder or missing: not copied")
                put(path, dest.with_name(name))
            for t in tensors:
                for entry in t.external_data:
                    if entry.key == "location":
                        entry.value = names[entry.value]
            import onnx

            tmp = dest.with_name(f".{dest.name}.partial")
            onnx.save_model(proto, str(tmp))
            tmp.replace(dest)
            return ModelFile(dest, src.format)
    put(src.path, dest)
    return ModelFile(dest, src.format)


def _external_tensors(proto: onnx.ModelProto) -> list[Any]:
    """Every tensor of the model (initializers, attributes, subgraphs) stored outside it."""
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    return [t for t in _get_all_tensors(proto) if t.data_location == TensorProto.EXTERNAL]


def _location(tensor: Any) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def is_large_onnx(path: Path) -> bool:
    """True when the model keeps its weights in external data, or is too big not to: what a
    tool writing it again must be told (save_as_external_data / use_external_data_format)."""
    from onnx import TensorProto

    if ModelFile(path, "onnx").size_bytes() > EXTERNAL_DATA_THRESHOLD:
        return True
    proto = load_onnx(path, with_weights=False)
    return any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, subgraphs (If / Loop / Scan bodies) included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g.node:
                yield from iter_nodes(attr.g)
            for g in attr.graphs:
                yield from iter_nodes(g)


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type if not n.domain or n.domain == "ai.onnx" else f"{n.domain}.{n.op_type}"
                   for n in iter_nodes(model.graph))


def op_count_changes(before: Counter[str], after: Counter[str]) -> dict[str, list[int]]:
    """{op: [count before, count after]} for the ops whose count changed."""
    return {op: [before.get(op, 0), after.get(op, 0)]
            for op in sorted(set(before) | set(after)) if before.get(op, 0) != after.get(op, 0)}


def node_names(model: onnx.ModelProto) -> set[str]:
    return {n.name for n in iter_nodes(model.graph) if n.name}


def check_node_names(names: Iterable[str], known: set[str], option: str, hint: str = "") -> None:
    """Unknown node names are an error: a typo would otherwise silently change nothing."""
    missing = [n for n in names if n not in known]
    if missing:
        sample = ", ".join(sorted(known)[:8])
        raise PassError(f"option {option}: no node named {', '.join(map(repr, missing))} in the "
                        f"model{hint}; node names look like: {sample}")


def initializer_dtypes(model: onnx.ModelProto) -> dict[str, int]:
    """{dtype name: number of initializers} — what a conversion did to the weights."""
    from onnx import helper

    return dict(Counter(helper.tensor_dtype_to_np_dtype(t.data_type).name
                        if t.data_type in helper.get_all_tensor_dtypes() else str(t.data_type)
                        for t in model.graph.initializer))


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: old models list their initializers as graph inputs too."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


# --- OpenVINO --------------------------------------------------------------------------------

def read_openvino(path: Path) -> Any:
    import openvino as ov

    bin_path = path.with_suffix(".bin")
    try:
        if bin_path.exists():
            return ov.Core().read_model(str(path), str(bin_path))
        return ov.Core().read_model(str(path))
    except RuntimeError as e:
        raise PassError(f"{path.name} could not be read as an OpenVINO IR: {error_line(e)}") from e


def save_openvino(model: Any, ctx: PassContext, stem: str, *, compress_to_fp16: bool) -> Path:
    """Write the IR (.xml + .bin) into the work folder; returns the .xml path."""
    import openvino as ov

    path = ctx.output_path(stem, ".xml")
    try:
        ov.save_model(model, str(path), compress_to_fp16=compress_to_fp16)
    except Exception as e:
        remove_files(openvino_files(path))
        raise PassError(f"saving {path.name} failed: {error_line(e)}") from e
    return path


def openvino_weight_types(model: Any) -> dict[str, int]:
    """{element type: number of weight constants} (constants with more than one element)."""
    counts: Counter[str] = Counter()
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_output_partial_shape(0).is_static:
            if shape_size(op.get_output_shape(0)) > 1:
                counts[op.get_output_element_type(0).get_type_name()] += 1
    return dict(counts)


def shape_size(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def openvino_op_counts(model: Any) -> Counter[str]:
    return Counter(op.get_type_name() for op in model.get_ops())


def check_onnx_runs(path: Path, source: Path, pass_name: str) -> list[str]:
    """Open the result in ONNX Runtime: an op it cannot run is reported now, naming the node.

    When the source itself does not open (custom ops ORT lacks), the result is not held to more:
    a message says it was not checked. Returns the messages for the user.
    """
    err = _ort_open_error(path)
    if err is None:
        return []
    if _ort_open_error(source) is not None:
        return [f"{pass_name}: ONNX Runtime cannot open the source model either, so the result "
                f"was not checked ({ort_error(err)})"]
    raise PassError(f"{pass_name}: ONNX Runtime cannot run the result: "
                    f"{ort_error(err, path)}") from err


def _ort_open_error(path: Path) -> Exception | None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        return e
    return None


def onnx_input_dtypes(model: onnx.ModelProto) -> dict[str, Any]:
    """{input name: numpy dtype} of the real inputs."""
    from onnx import helper

    return {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            for i in graph_inputs(model) if i.type.tensor_type.elem_type}


class Prepared(NamedTuple):
    path: Path  # the model to quantize: the source, or a copy the caller removes
    messages: list[str]
    preprocessed: bool


def quant_prepare(model: ModelFile, ctx: PassContext, pass_name: str, *, preprocess: bool = True,
                  min_opset: int = 0) -> Prepared:
    """The model ORT's quantizers should see, in the work folder: weights no longer listed as
    inputs, the opset raised to `min_opset`, then (when `preprocess`) ORT's quant_pre_process
    (symbolic shape inference + graph optimisation such as Conv+BN folding), as ORT advises.

    A step that fails is skipped with a message, and the model is quantized as it is.
    """
    messages: list[str] = []
    fixed = _fixed_copy(model, ctx, pass_name, min_opset, messages)
    if not preprocess:
        return Prepared(fixed, messages, False)
    out = _pre_process(fixed, model, ctx, pass_name, messages)
    if fixed not in (model.path, out):
        remove_files(onnx_files(fixed))
    return Prepared(out, messages, out != fixed)


def _pre_process(src: Path, model: ModelFile, ctx: PassContext, pass_name: str,
                 messages: list[str]) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = ctx.output_path(output_stem(model, f"{pass_name}-preprocessed"), ".onnx")
    extra = dict(save_as_external_data=True, all_tensors_to_one_file=True,
                 external_data_location=out.name + ".data") if is_large_onnx(src) else {}
    last: Exception | None = None
    for skip_symbolic in (False, True):  # symbolic inference fails on some exotic graphs
        try:
            with in_directory(out.parent):
                quant_pre_process(str(Path(src).resolve()), str(out.resolve()),
                                  skip_symbolic_shape=skip_symbolic, **extra)
            return out
        except Exception as e:  # noqa: PERF203 - two tries at most
            log.info("quant_pre_process (skip_symbolic_shape=%s) failed: %s", skip_symbolic, e)
            last = e
            remove_files(onnx_files(out))
    messages.append(f"{pass_name}: pre-processing (shape inference, Conv+BN folding) failed, so "
                    f"the model is quantized without it: {error_line(last)}")
    return src


def _fixed_copy(model: ModelFile, ctx: PassContext, pass_name: str, min_opset: int,
                messages: list[str]) -> Path:
    """A copy without the two things ORT's quantizers trip on, or the source when it has neither.

    Old (IR < 4) models list their weights as graph inputs too, which makes them overridable:
    ORT then neither folds them nor keeps them, and calibration asks for them as inputs.
    Per-channel QDQ needs DequantizeLinear's `axis`, which exists from opset 13.
    """
    proto = load_onnx(model.path, with_weights=False)
    inits = {t.name for t in proto.graph.initializer}
    listed = any(i.name in inits for i in proto.graph.input)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not listed and opset >= min_opset:
        return model.path
    proto = load_onnx(model.path)
    if listed:
        kept = [i for i in proto.graph.input if i.name not in inits]
        del proto.graph.input[:]
        proto.graph.input.extend(kept)
        proto.ir_version = max(proto.ir_version, 4)  # IR 3 required weights listed as inputs
    if opset < min_opset:
        proto = _upgraded(proto, opset, min_opset, pass_name, messages)
    out = ctx.output_path(output_stem(model, f"{pass_name}-fixed"), ".onnx")
    save_onnx(proto, out)
    return out


def _upgraded(proto: onnx.ModelProto, opset: int, target: int, pass_name: str,
              messages: list[str]) -> onnx.ModelProto:
    from onnx import version_converter

    try:
        upgraded = version_converter.convert_version(proto, target)
    except Exception as e:  # the converter lacks adapters for some old ops
        messages.append(f"{pass_name}: could not raise the opset from {opset} to {target} "
                        f"({error_line(e)}); quantization may fail or fall back")
        return proto
    messages.append(f"{pass_name}: opset raised from {opset} to {target} for quantization")
    return upgraded


OV_COMPUTE_OPS = frozenset({"Convolution", "GroupConvolution", "ConvolutionBackpropData",
                            "GroupConvolutionBackpropData", "MatMul", "Gather"})
OV_INT_TYPES = frozenset({"i8", "u8", "i4", "u4", "nf4", "f4e2m1"})
_OV_DECOMPRESSION = frozenset({"Convert", "Subtract", "Multiply", "Reshape", "Transpose",
                               "Unsqueeze"})


def openvino_weight_source(port: Any) -> Any | None:
    """The Constant a weight input comes from, through its decompression ops; None if none."""
    node = port.get_source_output().get_node()
    for _ in range(8):
        if node.get_type_name() == "Constant":
            return node
        if node.get_type_name() not in _OV_DECOMPRESSION:
            return None
        node = node.input(0).get_source_output().get_node()
    return None


def openvino_int_weight_layers(model: Any) -> int:
    """Compute ops (Convolution, MatMul, Gather) whose weights are stored as 8/4-bit integers."""
    count = 0
    for op in model.get_ops():
        if op.get_type_name() not in OV_COMPUTE_OPS:
            continue
        for port in op.inputs():
            const = openvino_weight_source(port)
            if const is not None and _ov_type(const) in OV_INT_TYPES:
                count += 1
                break
    return count


def _ov_type(node: Any) -> str:
    return node.get_output_element_type(0).get_type_name()


# --- what kind of model: transformers need their own INT8 recipe ---------------------------

_ONNX_ATTENTION_OPS = frozenset({"Attention", "MultiHeadAttention", "GroupQueryAttention"})


def onnx_is_transformer(model: onnx.ModelProto) -> bool:
    """Attention inside (a fused attention op, or a Softmax plus a MatMul of two computed
    tensors: scores = Q.K^T, context = P.V) and more dense layers than convolutions (a ViT's
    patch embedding is one Conv; a CNN with an attention neck, like an OCR recogniser, has
    dozens). Transformers' activations carry outlier features that per-tensor activation
    scales cannot hold, so INT8 passes treat them apart."""
    nodes = list(iter_nodes(model.graph))
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in nodes if n.op_type == "Constant" for o in n.output}
    dense = sum(1 for n in nodes if n.op_type in ("MatMul", "Gemm") and set(n.input) & consts)
    if sum(1 for n in nodes if n.op_type in ("Conv", "ConvTranspose")) >= max(1, dense):
        return False
    if any(n.op_type in _ONNX_ATTENTION_OPS for n in nodes):
        return True
    if not any(n.op_type == "Softmax" for n in nodes):
        return False
    return any(n.op_type == "MatMul" and len(n.input) == 2 and not (set(n.input) & consts)
               for n in nodes)


def openvino_is_transformer(model: Any) -> bool:
    """onnx_is_transformer for an OpenVINO model: ScaledDotProductAttention, or Softmax plus a
    MatMul whose inputs both come from computation rather than weight constants; and more
    weight MatMuls than convolutions."""
    ops = list(model.get_ops())
    kinds = {op.get_type_name() for op in ops}
    dense = sum(1 for op in ops if op.get_type_name() == "MatMul"
                and any(openvino_weight_source(port) is not None for port in op.inputs()))
    convs = sum(1 for op in ops if "Convolution" in op.get_type_name())
    if convs >= max(1, dense):
        return False
    if "ScaledDotProductAttention" in kinds:
        return True
    if "Softmax" not in kinds:
        return False
    return any(op.get_type_name() == "MatMul"
               and all(openvino_weight_source(port) is None for port in op.inputs())
               for op in ops)


# --- INT8 on x86 CPUs without VNNI ---------------------------------------------------------

REDUCE_RANGE_CHOICES = ("auto", "true", "false")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_saturates_int8() -> bool:
    """True on x86 CPUs without VNNI: their u8 x s8 dot product (VPMADDUBSW) sums pairs into
    int16 and saturates, which costs accuracy unless weights use 7 bits (ORT's reduce_range).
    Unknown x86 CPUs count as saturating (the safe side); ARM and others do not saturate."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return True
    return not any(flag in flags.split() for flag in _VNNI_FLAGS)


def resolve_reduce_range(choice: str | bool) -> tuple[bool, str]:
    """('auto' | 'true' | 'false') -> (reduce_range, why), the why for the pass details."""
    if choice in (True, "true"):
        return True, "asked for"
    if choice in (False, "false"):
        return False, "asked for"
    if cpu_saturates_int8():
        return True, ("auto: this CPU has no VNNI, so 7-bit weights avoid int16 saturation in "
                      "ORT's u8 x s8 kernels; pass reduce_range=false for VNNI / ARM / GPU targets")
    return False, "auto: this CPU has VNNI (or is not x86): full 8-bit weights"


def normalise_reduce_range(opts: Any) -> None:
    """For Options.__post_init__: JSON recipes may give a bool; keep the string form."""
    value = opts.reduce_range
    if isinstance(value, bool):
        object.__setattr__(opts, "reduce_range", "true" if value else "false")
    elif value not in REDUCE_RANGE_CHOICES:
        raise ValueError(f"reduce_range must be one of {', '.join(REDUCE_RANGE_CHOICES)}")


@contextlib.contextmanager
def in_directory(path: Path):
    """Run ORT's quantization tools inside the work folder: on some graphs they drop temp files
    (sym_shape_infer_temp.onnx, <uuid>.data) into the current directory, which would otherwise
    be the user's. Paths handed to them must be absolute (callers resolve them)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)
