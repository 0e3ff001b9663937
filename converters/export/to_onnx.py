"""PyTorch (.pt2 torch.export archives, TorchScript archives) -> ONNX.

Two exporters exist in torch.onnx.export. The dynamo exporter (dynamo=True) takes an
ExportedProgram as is, so a .pt2 goes through it. It refuses TorchScript modules ("Exporting a
ScriptModule is not supported"), so a TorchScript archive goes through the older
TorchScript-based exporter (dynamo=False), which traces the module on example inputs. When the
dynamo exporter fails on a .pt2, the TorchScript exporter traces `program.module()` instead.
`details["exporter"]` says which one wrote the file, and `messages` says why when it fell back.

Weights stay inside the .onnx file (one file to copy) unless they reach the 2 GB protobuf
limit; then they go to `<name>.onnx.data` beside it. The file appears under its final name in
one step: everything is written in a private folder of the work dir, then moved into place.

torch and onnx are imported inside functions only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.errors import ModelLoadError
from converters.export import register_conversion
from converters.passes import ModelFile, PassContext, PassError, PassResult

logger = logging.getLogger(__name__)

# The protobuf limit of one .onnx file: weights at or above it go to an external data file.
EXTERNAL_DATA_THRESHOLD = 2 * 1024 ** 3
BATCH_DIM = "batch"
# Logs "torchvision is not installed. Skipping torchvision::nms" on every dynamo export.
_TORCHVISION_NOTICE_LOGGER = "torch.onnx._internal.exporter._registration"
_SOURCE_SUFFIXES = (".pt2", ".pt", ".pth", ".ptl", ".ts", ".onnx", ".tflite", ".xml")


# --- the PyTorch source ---------------------------------------------------------------------

@dataclass
class TorchSource:
    """A loaded PyTorch model and what an exporter needs to know about its inputs."""

    kind: str  # "export" (ExportedProgram) | "torchscript" (ScriptModule)
    model: Any  # torch.export.ExportedProgram | torch.jit.ScriptModule
    input_names: list[str]
    example: tuple[Any, ...] | None  # example tensors (TorchScript; .pt2 fallback)
    dynamic_batch: bool  # the source itself accepts any batch size (a .pt2 with a Dim)
    notes: list[str] = field(default_factory=list)


def load_torch_source(path: Path) -> TorchSource:
    """Load a .pt2 or TorchScript archive with the same safety checks as opening it.

    A plain torch.save pickle is refused: it has no graph to export and loading a whole
    pickled module would run code stored in the file.
    """
    from converters.formats import torch_format as tf

    try:
        kind = tf._file_kind(path)
        if kind == "export":
            return _load_program(path)
        if kind == "torchscript":
            return _load_script(path)
    except ModelLoadError as e:
        raise PassError(str(e)) from e
    raise PassError(f"{path.name} is a torch.save pickle, not a model ModelDeck can convert: it "
                    f"holds no graph. {tf._EXPORT_HOWTO}")


def _load_program(path: Path) -> TorchSource:
    import torch

    from converters.formats import torch_format as tf

    with zipfile.ZipFile(path) as zf:
        programs = tf._pt2_programs(zf)
        if not programs:
            raise PassError(f"{path.name} is a .pt2 package without an exported program; "
                            "ModelDeck converts archives written by torch.export.save")
        tf._refuse_code_in_pt2(path, zf, programs)  # pickles / non-arithmetic sympy strings
    try:
        with warnings.catch_warnings(), open(path, "rb") as f:
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            program = torch.export.load(f)
    except Exception as e:
        raise PassError(f"{path.name}: torch {torch.__version__} cannot load this torch.export "
                        f"archive: {tf._first_line(e)}") from e
    names, dynamic = _program_inputs(program)
    return TorchSource("export", program, names, None, dynamic)


def _program_inputs(program: Any) -> tuple[list[str], bool]:
    """User input names, and whether every input's first dim is symbolic (a dynamic batch)."""
    user = set(program.graph_signature.user_inputs)
    names, dynamic = [], True
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            names.append(node.name)
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            dynamic = dynamic and bool(shape) and not isinstance(shape[0], int)
    return names, dynamic and bool(names)


def _program_example(program: Any) -> tuple[Any, ...]:
    """Zeros shaped like the program's example inputs (symbolic sizes take their hint)."""
    import torch

    user = set(program.graph_signature.user_inputs)
    example = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta["val"]
            shape = [d if isinstance(d, int) else _size_hint(d) for d in val.shape]
            example.append(torch.zeros(shape, dtype=val.dtype))
    return tuple(example)


def _size_hint(dim: Any) -> int:
    hint = getattr(getattr(dim, "node", None), "hint", None)
    return int(hint) if isinstance(hint, int) and hint > 1 else 2


def _load_script(path: Path) -> TorchSource:
    from converters.formats import torch_format as tf

    names = {tf._relative(n) for n in tf._zip_names(path)}
    module, extra = tf._jit_load(path, restore_shapes="traced_inputs.pkl" in names)
    module.eval()
    example, source = tf._torchscript_example(path, module, extra, None)
    if example is None:
        sidecar = path.with_suffix("." + tf.INPUT_SPEC_NAME).name
        raise PassError(
            f"{path.name} is a TorchScript archive without input shapes, and the TorchScript "
            "exporter needs example inputs: save it with torch.jit.save(..., _extra_files="
            f"{{'{tf.INPUT_SPEC_NAME}': '{tf.INPUT_SPEC_EXAMPLE}'}}), or put that JSON next to "
            f"it as {sidecar}")
    notes = [f"Example inputs {tf._describe_inputs(example)} ({source})"]
    return TorchSource("torchscript", module, _script_input_names(module, len(example)),
                       example, False, notes)


def _script_input_names(module: Any, count: int) -> list[str]:
    """forward's argument names (what torch calls the inputs); input_<i> if unreadable."""
    try:
        names = [a.name for a in module.forward.schema.arguments[1:]]  # drop self
    except Exception:  # a module without a scripted forward
        names = []
    return names if len(names) == count else [f"input_{i}" for i in range(count)]


def count_outputs(source: TorchSource) -> int:
    """How many tensors the model returns (TorchScript: by running it once on the example)."""
    import torch

    if source.kind == "export":
        return len(source.model.graph_signature.user_outputs)
    with torch.no_grad():
        out = source.model(*source.example)
    return len(_flatten(out))


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return [out] if hasattr(out, "shape") else []


def output_names(count: int) -> list[str]:
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


# --- staging: write privately, then move into place ------------------------------------------

def stem_of(path: Path) -> str:
    """"digits_cnn.ts.pt" -> "digits_cnn": the name an output is built from."""
    name = path.name
    changed = True
    while changed:
        changed = False
        for suffix in _SOURCE_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    return name


@contextlib.contextmanager
def staging_dir(work_dir: Path) -> Iterator[Path]:
    """A private folder in the work dir, removed afterwards whatever happened.

    Same file system as the final name, so os.replace is a rename; files written here keep
    the final file names, so references between them (external data) stay valid.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=work_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_into_place(staged: list[Path], final_dir: Path) -> None:
    """os.replace each staged file into final_dir, in order (companions first, main file last:
    a reader that sees the main file also finds its companions)."""
    for path in staged:
        if path.exists():
            os.replace(path, final_dir / path.name)


# --- the conversion -------------------------------------------------------------------------

@register_conversion("torch", "onnx")
def torch_to_onnx(model: ModelFile, ctx: PassContext, opset: int = 18, dynamic_batch: bool = True,
                  external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> PassResult:
    """Export a .pt2 or TorchScript archive to ONNX (weights inside the file below 2 GB)."""
    ctx.check_cancelled()
    ctx.progress(0.0, f"loading {model.path.name}")
    source = load_torch_source(Path(model.path))
    ctx.check_cancelled()
    messages: list[str] = []
    if dynamic_batch and source.kind == "export" and not source.dynamic_batch:
        messages.append(f"{model.path.name} was exported with a fixed batch size, so the ONNX "
                        "model keeps it: export the program with dynamic_shapes for a dynamic "
                        "batch")
    if not dynamic_batch and source.kind == "export" and source.dynamic_batch:
        messages.append(f"{model.path.name} was exported with a dynamic batch; the dynamo "
                        "exporter keeps the program's shapes, so the ONNX batch stays dynamic")
    try:
        names = output_names(count_outputs(source))
    except Exception as e:
        raise PassError(f"{model.path.name} fails on its example inputs "
                        f"({'; '.join(source.notes)}): {_reason(e)}") from e
    proto, exporter = _export(source, names, opset, dynamic_batch, ctx, messages)
    ctx.check_cancelled()
    ctx.progress(0.8, "saving")
    _name_batch_dim(proto)
    final = ctx.output_path(stem_of(Path(model.path)), ".onnx")
    external = _tensor_bytes(proto) >= external_data_threshold
    with staging_dir(ctx.work_dir) as tmp:
        staged = _save(proto, tmp / final.name, external)
        ctx.check_cancelled()
        move_into_place(staged, final.parent)
    ctx.progress(1.0, f"wrote {final.name}")
    result = ModelFile(final, "onnx")
    details = {"exporter": exporter, "opset": opset, "source_kind": source.kind,
               "inputs": [i.name for i in proto.graph.input],
               "outputs": [o.name for o in proto.graph.output],
               "dynamic_batch": _has_batch_dim(proto), "external_data": external,
               "notes": source.notes}
    logger.info("exported %s to %s with the %s exporter", model.path.name, final.name, exporter)
    return PassResult(output=result, changed=True, details=details, messages=messages)


def _export(source: TorchSource, outputs: list[str], opset: int, dynamic_batch: bool,
            ctx: PassContext, messages: list[str]) -> tuple[Any, str]:
    """(ModelProto, exporter name): dynamo where it applies, else / on failure TorchScript."""
    dynamo_error = ""
    if source.kind == "export":
        ctx.progress(0.2, "exporting with the dynamo exporter")
        try:
            return _export_dynamo(source, outputs, opset), "dynamo"
        except Exception as e:  # torch raises many types; the fallback may still succeed
            logger.debug("dynamo export failed", exc_info=True)
            dynamo_error = _reason(e)
            messages.append(f"The dynamo ONNX exporter failed ({dynamo_error}); the "
                            "TorchScript-based exporter traced the program instead")
            source = _as_traceable(source)
    else:
        messages.append("TorchScript archive: exported with the TorchScript-based ONNX exporter "
                        "(the dynamo exporter does not accept TorchScript modules)")
    ctx.check_cancelled()
    ctx.progress(0.4, "exporting with the TorchScript-based exporter")
    # A .pt2 with a fixed batch was traced on it: marking the batch dynamic would be a lie.
    dynamic = dynamic_batch and (source.kind == "torchscript" or source.dynamic_batch)
    try:
        return _export_torchscript(source, outputs, opset, dynamic), "torchscript"
    except Exception as e:
        logger.debug("TorchScript-based export failed", exc_info=True)
        if dynamo_error:
            raise PassError(f"both ONNX exporters failed at opset {opset}: dynamo: "
                            f"{dynamo_error}; TorchScript-based: {_reason(e)}") from e
        raise PassError(f"the TorchScript-based ONNX exporter failed at opset {opset}: "
                        f"{_reason(e)}") from e


def _reason(e: BaseException, limit: int = 200) -> str:
    """One short line of a torch error."""
    from converters.formats.torch_format import _first_line

    text = _first_line(e)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _export_dynamo(source: TorchSource, outputs: list[str], opset: int) -> Any:
    """The dynamo exporter on the ExportedProgram as is (its own dynamic shapes included)."""
    import torch

    with warnings.catch_warnings(), _quiet(_TORCHVISION_NOTICE_LOGGER):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(source.model, (), dynamo=True, opset_version=opset,
                                    output_names=outputs, verbose=False, optimize=True)
    return program.model_proto


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence one library logger below ERROR for the duration (restored afterwards)."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _as_traceable(source: TorchSource) -> TorchSource:
    """A .pt2 made ready for the TorchScript exporter: its module and example inputs."""
    return TorchSource("export", _traceable(source.model.module()), source.input_names,
                       _program_example(source.model), source.dynamic_batch, source.notes)


def _traceable(inner: Any) -> Any:
    """A module calling `inner` that ignores .train(): the TorchScript exporter calls
    .train(False) on what it exports, which an exported program's module refuses (it is
    already in the mode it was exported in)."""
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def train(self, mode: bool = True) -> Wrapper:
            return self

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

    return Wrapper()


def _export_torchscript(source: TorchSource, outputs: list[str], opset: int,
                        dynamic_batch: bool) -> Any:
    """The TorchScript-based exporter, written to a scratch folder then read back."""
    import onnx
    import torch

    axes = None
    if dynamic_batch:
        axes = {n: {0: BATCH_DIM} for n in [*source.input_names, *outputs]}
    with tempfile.TemporaryDirectory(prefix="modeldeck-ts-export-") as scratch:
        path = Path(scratch) / "model.onnx"  # > 2 GB: torch writes external data beside it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "legacy TorchScript-based ONNX export" notices
            torch.onnx.export(source.model, source.example, str(path), dynamo=False,
                              opset_version=opset, input_names=source.input_names,
                              output_names=outputs, dynamic_axes=axes)
        return onnx.load(str(path))  # loads any external data into memory


# --- the ONNX file ----------------------------------------------------------------------------

def _name_batch_dim(proto: Any) -> None:
    """The dynamo exporter names the batch "s77": call it "batch" everywhere it appears."""
    graph = proto.graph
    symbols = {i.type.tensor_type.shape.dim[0].dim_param for i in graph.input
               if i.type.tensor_type.shape.dim and i.type.tensor_type.shape.dim[0].dim_param}
    if len(symbols) != 1 or BATCH_DIM in symbols:
        return
    (old,) = symbols
    for info in [*graph.input, *graph.output, *graph.value_info]:
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param == old:
                dim.dim_param = BATCH_DIM


def _has_batch_dim(proto: Any) -> bool:
    dims = [i.type.tensor_type.shape.dim for i in proto.graph.input]
    return bool(dims) and all(d and d[0].dim_param for d in dims)


def _tensor_bytes(proto: Any) -> int:
    """Bytes of stored tensors: initializers and Constant nodes' values."""
    total = sum(t.ByteSize() for t in proto.graph.initializer)
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                total += attr.t.ByteSize()
    return total


def _save(proto: Any, path: Path, external: bool) -> list[Path]:
    """Write the model; returns the written files, companions first."""
    import onnx

    if not external:
        onnx.save_model(proto, str(path))
        return [path]
    data = path.with_name(path.name + ".data")
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return [data, path]
