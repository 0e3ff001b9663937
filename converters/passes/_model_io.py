"""File handling shared by the weight-editing passes (prune-magnitude, prune-channels, lowrank,
distill): safe loading, atomic saving, example inputs and re-export of torch.export programs.

Why one place: every pass must load a .pt2 only behind the same safety checks as inspection,
write its output under the final name only when complete, and re-export a torch program with
the source's dynamic dimensions. Frameworks are imported inside functions only.
"""
from __future__ import annotations

import logging
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.errors import ModelLoadError
from converters.passes import ModelFile, PassError
from converters.passes._common import error_line

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
# Above this a protobuf cannot hold the weights: they go to a "<name>.onnx.data" file.
_ONNX_INLINE_LIMIT = 1_800_000_000


# --- names, sizes, atomic writes -----------------------------------------------------------

def gzip_size(paths: Path | list[Path]) -> int:
    """Bytes after DEFLATE (level 6, what gzip and zip use), measured by compressing the files."""
    total = 0
    for path in [paths] if isinstance(paths, Path) else paths:
        comp = zlib.compressobj(6)
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                total += len(comp.compress(chunk))
        total += len(comp.flush())
    return total


def write_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Run write(tmp) on a temporary name beside `final`, then rename: a killed or failed pass
    never leaves a file under the final name. The temporary keeps the suffix (torch wants it)."""
    tmp = final.with_name(f".{final.stem}.partial{final.suffix}")
    try:
        write(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


# --- ONNX ----------------------------------------------------------------------------------

def save_onnx(proto: Any, final: Path) -> ModelFile:
    """Write atomically; weights beyond protobuf's 2 GB limit go to '<name>.data' beside it."""
    import onnx

    data = final.with_name(final.name + ".data")
    external = proto.ByteSize() > _ONNX_INLINE_LIMIT

    def write(tmp: Path) -> None:
        if external:
            onnx.save_model(proto, str(tmp), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=data.name)
        else:
            onnx.save_model(proto, str(tmp))

    try:
        write_atomically(final, write)
    except BaseException:
        if external:
            data.unlink(missing_ok=True)
        raise
    return ModelFile(final, "onnx")


# --- PyTorch ----------------------------------------------------------------------------------

@dataclass
class InputInfo:
    """One user input of a torch program: its dims (an int, or the name of a symbolic size)."""

    name: str
    dtype: Any  # torch.dtype
    dims: list[int | str]
    example: list[int]  # concrete sizes used for tracing
    ranges: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)


@dataclass
class TorchModel:
    """A loaded .pt2 (ExportedProgram) or TorchScript archive, and how to save it again."""

    path: Path
    kind: str  # "export" | "torchscript"
    program: Any = None  # ExportedProgram
    script: Any = None  # torch.jit.ScriptModule
    extra_files: dict[str, Any] = field(default_factory=dict)
    _module: Any = None

    def module(self) -> Any:
        """A callable nn.Module whose parameters are the ones `save` writes."""
        if self._module is None:
            self._module = self.program.module() if self.kind == "export" else self.script
        return self._module

    def inputs(self) -> list[InputInfo]:
        if self.kind == "export":
            return program_inputs(self.program)
        return torchscript_inputs(self)

    def save(self, final: Path) -> ModelFile:
        """Write the program with the module's current weights (same graph), atomically."""
        import torch

        if self.kind == "export":
            _copy_weights_into_program(self.module(), self.program)
            write_atomically(final, lambda tmp: torch.export.save(self.program, str(tmp)))
        else:
            write_atomically(final, lambda tmp: torch.jit.save(
                self.script, str(tmp), _extra_files=self.extra_files))
        return ModelFile(final, "torch")


def load_torch(model: ModelFile, pass_name: str) -> TorchModel:
    """Load a .pt2 behind torch_format's safety checks, or a TorchScript archive. PassError else."""
    from converters.formats.torch_format import archive_kind, load_exported_program

    path = model.path
    try:
        kind = archive_kind(_zip_names(path)) if zipfile.is_zipfile(path) else None
    except (zipfile.BadZipFile, OSError) as e:
        raise PassError(f"{pass_name}: cannot read {path.name}: {e}") from e
    if kind == "export":
        try:
            return TorchModel(path, "export", program=load_exported_program(path))
        except ModelLoadError as e:
            raise PassError(f"{pass_name}: {e}") from e
    if kind == "torchscript":
        return _load_torchscript(path, pass_name)
    raise PassError(f"{pass_name}: {path.name} is not a torch.export archive (.pt2) or a "
                    "TorchScript archive; a torch.save file holds no graph to rewrite. Export "
                    "the model with torch.export.save(torch.export.export(model, (x,)), 'm.pt2')")


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def _load_torchscript(path: Path, pass_name: str) -> TorchModel:
    import torch

    extra = {n.split("/extra/", 1)[1]: "" for n in _zip_names(path) if "/extra/" in n}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TorchScript is deprecated: torch says so on load
            script = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:
        raise PassError(f"{pass_name}: torch.jit.load could not read {path.name}: "
                        f"{error_line(e)}") from e
    return TorchModel(path, "torchscript", script=script, extra_files=extra)


def _copy_weights_into_program(module: Any, program: Any) -> None:
    """ep.module() shares tensors with ep.state_dict today; copy anyway if a version does not."""
    import torch

    state = program.state_dict
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            target = state.get(name)
            if target is not None and target is not tensor:
                if target.shape != tensor.shape:
                    raise PassError(f"internal: {name} changed shape from {list(target.shape)} "
                                    f"to {list(tensor.shape)}; re-export instead")
                target.copy_(tensor)


def program_inputs(program: Any) -> list[InputInfo]:
    """User inputs of an ExportedProgram with their symbolic dims and the ranges torch recorded."""
    import torch
    from torch.export.graph_signature import InputKind

    user = [s.arg.name for s in program.graph_signature.input_specs
            if s.kind == InputKind.USER_INPUT]
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    chosen: dict[Any, int] = {}
    infos = []
    for name in user:
        val = nodes[name].meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise PassError(f"input '{name}' is not a tensor ({type(val).__name__}); the pass "
                            "re-exports programs whose inputs are all tensors")
        dims: list[int | str] = []
        example: list[int] = []
        ranges: dict[int, tuple[int | None, int | None]] = {}
        for axis, d in enumerate(val.shape):
            if isinstance(d, int):
                dims.append(d)
                example.append(d)
                continue
            expr = d.node.expr
            lo, hi = _range(program.range_constraints.get(expr))
            dims.append(str(expr))
            example.append(_example_size(expr, lo, hi, program.range_constraints, chosen))
            ranges[axis] = (lo, hi)
        infos.append(InputInfo(name, val.dtype, dims, example, ranges))
    return infos


def _range(vr: Any) -> tuple[int | None, int | None]:
    if vr is None:
        return None, None
    lo, hi = vr.lower, vr.upper
    lo = int(lo) if getattr(lo, "is_finite", True) and lo is not None else None
    try:
        hi = int(hi) if hi is not None and hi.is_finite else None
    except (AttributeError, TypeError):
        hi = None
    return lo, hi


def _example_size(expr: Any, lo: int | None, hi: int | None, constraints: dict,
                  chosen: dict[Any, int]) -> int:
    """2 where allowed (torch specialises 0 and 1), else the nearest bound; derived dims
    (2*s0) are evaluated from the sizes chosen for their symbols."""
    if expr in constraints or not getattr(expr, "free_symbols", None):
        value = 2
        if lo is not None and value < lo:
            value = lo
        if hi is not None and value > hi:
            value = hi
        chosen[expr] = value
        return value
    subs = {}
    for sym in expr.free_symbols:
        if sym not in chosen:
            chosen[sym] = _example_size(sym, *_range(constraints.get(sym)), constraints, chosen)
        subs[sym] = chosen[sym]
    return int(expr.subs(subs))


def torchscript_inputs(model: TorchModel) -> list[InputInfo]:
    """TorchScript stores no dynamic dims: we take the example shape it declares and treat
    dim 0 as the batch (dynamic), the convention of every exporter ModelDeck knows."""
    from converters.formats.torch_format import INPUT_SPEC_NAME, _parse_input_spec, _sidecar_spec
    import torch

    text = model.extra_files.get(INPUT_SPEC_NAME)
    spec = _parse_input_spec(text, INPUT_SPEC_NAME) if text else _sidecar_spec(model.path)
    if spec is None:
        raise PassError(f"{model.path.name}: TorchScript does not store input shapes; save it "
                        f"with _extra_files={{'{INPUT_SPEC_NAME}': '{{\"inputs\": [{{\"name\": "
                        "\"x\", \"shape\": [1, 3, 224, 224]}]}'}, or export it to .pt2")
    names = [v.debugName().split(".")[0] for v in list(model.script.graph.inputs())[1:]]
    infos = []
    for i, (shape, dtype) in enumerate(spec):
        dims: list[int | str] = list(shape)
        example = list(shape)
        ranges = {}
        if dims:
            dims[0], example[0], ranges[0] = "batch", 2, (None, None)
        name = names[i] if i < len(names) else f"input{i}"
        infos.append(InputInfo(name, getattr(torch, dtype), dims, example, ranges))
    return infos


def example_tensors(inputs: list[InputInfo], batch: int | None = None) -> tuple[Any, ...]:
    """Zeros of the example shapes; `batch` replaces a dynamic dim 0 (for per-sample counts)."""
    import torch

    tensors = []
    for info in inputs:
        shape = list(info.example)
        if batch is not None and shape and 0 in info.ranges:
            shape[0] = batch
        tensors.append(torch.zeros(shape, dtype=info.dtype))
    return tuple(tensors)


def export_like(module: Any, inputs: list[InputInfo], pass_name: str) -> tuple[Any, list[str]]:
    """torch.export the rewritten module with the source's dynamic dims (Dim.AUTO within the
    recorded ranges). Returns the program and messages about dims torch had to fix."""
    import torch
    from torch.export import Dim

    example = example_tensors(inputs)
    dynamic = []
    for info in inputs:
        spec = {}
        for axis, (lo, hi) in info.ranges.items():
            spec[axis] = Dim.AUTO(min=lo if lo is not None and lo > 2 else None, max=hi)
        dynamic.append(spec or None)
    try:
        program = torch.export.export(module, example, dynamic_shapes=tuple(dynamic))
    except Exception as e:
        logger.debug("re-export failed", exc_info=True)
        raise PassError(f"{pass_name}: torch.export could not re-export the rewritten model on "
                        f"inputs {[list(t.shape) for t in example]}: {error_line(e)}") from e
    messages = []
    for info, new in zip(inputs, program_inputs(program)):
        for axis in info.ranges:
            if isinstance(new.dims[axis], int):
                messages.append(f"input {info.name} dim {axis} was dynamic in the source; the "
                                f"rewritten model fixes it at {new.dims[axis]}")
    return program, messages


def strip_stack_traces(program: Any) -> None:
    """Stack traces hold this machine's paths: keep them out of saved archives."""
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
