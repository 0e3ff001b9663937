"""PyTorch files: torch.export archives (.pt2), TorchScript archives and torch.save files.

Each kind stores a different amount of model, so each has its own path to a ModelGraph:

- a torch.export archive holds an ATen graph with a shape on every value: we walk it as is;
- a TorchScript archive holds a graph without shapes: we walk its inlined graph and, when an
  example input shape is known and the user consented to running the file's code, run it once
  on zeros to read the shape of every value;
- a torch.save file holds a pickle. A state_dict has no architecture, so we say so; a whole
  pickled nn.Module needs arbitrary code to load, so we refuse unless the user trusts the file.

Running a TorchScript program (a probe, a re-trace, a __setstate__ method run on load) or a
pickle is running code the file brought: without Trust.run_code nothing of the file runs.
Every archive is size-checked (check_archive) before any member is read, by us or by torch.

torch is imported inside functions only, so that registering this format stays cheap.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from converters.errors import ConsentRequired, ModelLoadError
from converters.formats import Format, Trust, current_trust, register_format, sha256_of
from converters.graph import Dim, Graph, ModelGraph, ModelMeta, Node, TensorInfo, json_safe

logger = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pt", ".pth", ".pt2", ".ptl")
# torch.save's legacy (non-zip) format starts with this pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
# The archive extra file (and sidecar file) that declares example inputs.
INPUT_SPEC_NAME = "modeldeck.json"
INPUT_SPEC_EXAMPLE = '{"inputs": [{"name": "x", "shape": [1, 3, 224, 224], "dtype": "float32"}]}'
_EXPORT_HOWTO = ("export the model in the project that defines it: "
                 "torch.export.save(torch.export.export(model, (example_input,)), 'model.pt2'), "
                 "torch.jit.save(torch.jit.trace(model, example_input), 'model.pt'), "
                 "or torch.onnx.export to ONNX")
_PICKLE_HOWTO = "ModelDeck does this only with your consent"

# Archive limits, checked on the zip directory before any member is read. Real models store
# their members uncompressed (ratio 1:1) and keep metadata small; a member expanding past these
# is refused as a possible zip bomb.
MAX_METADATA_MEMBER = 256 * 1024 ** 2  # one JSON / pickle / code member, uncompressed
MAX_RATIO = 100  # uncompressed : compressed, for members over RATIO_FLOOR
RATIO_FLOOR = 1024 ** 2  # small members may compress as well as they like
MAX_TOTAL_RATIO = 100  # all members together vs the archive's size ...
TOTAL_FLOOR = 1024 ** 3  # ... once they pass 1 GiB
# Nesting depth (unpickler stack height) a pickle may reach; torch's unpicklers overflow the C
# stack on deep nesting. Real models stay far below (a few dozen).
MAX_PICKLE_DEPTH = 1000


# --- cheap content checks (no torch import) ------------------------------------------------

def _zip_names(path: Path) -> list[str]:
    """Member names of a zip archive. Raises zipfile.BadZipFile / OSError."""
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def _relative(name: str) -> str:
    """torch writes every member under one top folder named after the file: drop it."""
    return name.split("/", 1)[1] if "/" in name else name


def _size(n: float) -> str:
    for unit, div in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} bytes"


def _is_tensor_data(name: str) -> bool:
    """Members holding raw tensor bytes (read by size, never parsed): data/<n>, weights."""
    rel = _relative(name)
    return (rel.startswith("data/") or "/data/" in name) and not rel.endswith(
        (".json", ".pkl", ".py", ".debug_pkl"))


def check_archive(path: str | Path) -> None:
    """Refuse zip bombs and unpickler-crashing pickles before anything reads a member.

    Looks only at the zip directory (declared sizes: what zipfile and torch's reader allocate
    and stop at), then walks the opcodes of each pickle member without unpickling it.
    Raises ModelLoadError; returns quietly for an archive within limits.
    """
    path = Path(path)
    try:
        archive_size = path.stat().st_size
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            total = 0
            for info in infos:
                total += info.file_size
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
                    raise ModelLoadError(_bomb(path, info.filename, info.file_size,
                                               info.compress_size, f"ratio {ratio:,.0f}:1"))
                if info.file_size > MAX_METADATA_MEMBER and not _is_tensor_data(info.filename):
                    raise ModelLoadError(_bomb(
                        path, info.filename, info.file_size, info.compress_size,
                        f"a metadata member over {_size(MAX_METADATA_MEMBER)}"))
            if total > max(TOTAL_FLOOR, MAX_TOTAL_RATIO * archive_size):
                raise ModelLoadError(
                    f"{path.name}: its members would expand to {_size(total)} from "
                    f"{_size(archive_size)}: refused as a possible zip bomb")
            for info in infos:
                if info.filename.endswith(".pkl"):
                    with zf.open(info) as f:
                        _check_pickle_depth(f, f"{path.name} ({_relative(info.filename)})")
    except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
        raise ModelLoadError(
            f"{path.name} is a damaged or truncated zip archive ({e}): the download or copy "
            "did not finish, or the file was cut short; fetch or export it again") from e
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror or e}") from e


def _bomb(path: Path, member: str, size: int, packed: int, why: str) -> str:
    return (f"{path.name}: archive member {_relative(member)} would expand to {_size(size)} "
            f"from {_size(packed)} ({why}): refused as a possible zip bomb")


def _check_pickle_depth(stream: IO[bytes], what: str) -> None:
    """Refuse a pickle whose nesting would overflow an unpickler's stack (torch's is C++).

    Follows the stack effect of every opcode (pickletools), never building an object. A
    pickle that pickletools cannot walk is left for the real unpickler to reject.
    """
    heights = [0]  # items above each MARK; heights[0]: items below the first mark
    depth = 0
    try:
        for opcode, _, _ in pickletools.genops(stream):
            before, after = opcode.stack_before, opcode.stack_after
            if pickletools.markobject in before:
                depth -= heights.pop() + 1
                below = before.index(pickletools.markobject)
                if not heights:
                    return  # malformed: the unpickler will say so
                heights[-1] -= below
                depth -= below
            else:
                heights[-1] -= len(before)
                depth -= len(before)
            if pickletools.markobject in after:
                heights.append(0)
                depth += 1
            else:
                heights[-1] += len(after)
                depth += len(after)
            if depth > MAX_PICKLE_DEPTH:
                raise ModelLoadError(
                    f"{what} nests more than {MAX_PICKLE_DEPTH} levels deep; no model needs "
                    "that, and unpickling it would overflow the reader's stack: refused as "
                    "a damaged or hostile file")
    except ModelLoadError:
        raise
    except Exception as e:  # ValueError, EOF in the middle of an opcode, ...
        logger.debug("pickle walk of %s stopped: %s", what, e)


def archive_kind(names: Iterable[str]) -> str | None:
    """'export', 'torchscript' or 'torch_save' from a zip's member names; None: not torch."""
    rel = {_relative(n) for n in names} | set(names)
    if "archive_format" in rel or "serialized_exported_program.json" in rel or any(
            r.startswith("models/") and r.endswith(".json") for r in rel):
        return "export"
    has_code = any(r.startswith("code/") for r in rel)
    if "constants.pkl" in rel or "bytecode.pkl" in rel or (has_code and "data.pkl" in rel):
        return "torchscript"
    if "data.pkl" in rel:
        return "torch_save"
    return None


def _is_pickle(head: bytes) -> bool:
    return head[:1] == b"\x80"


@register_format
class TorchFormat(Format):
    name = "torch"
    suffixes = TORCH_SUFFIXES
    description = "PyTorch: torch.export (.pt2), TorchScript, torch.save"

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        if head.startswith(b"PK\x03\x04"):
            try:
                return archive_kind(_zip_names(path)) is not None
            except (zipfile.BadZipFile, OSError):
                return False  # a damaged archive: the suffix decides, the loader explains
        if head.startswith(_LEGACY_MAGIC):
            return True
        return _is_pickle(head) and path.suffix.lower() in TORCH_SUFFIXES

    def load(self, path: Path, trust: Trust,
             input_shapes: dict[str, list[int]] | None = None) -> ModelGraph:
        # Shapes come from the archive's example inputs, or from the sizes set for its inputs
        # (by forward's argument names); either way only a trusted file is run to get them.
        return load_torch_model(path, trust, input_shapes)


# --- entry point ---------------------------------------------------------------------------

def load_torch_model(path: str | Path, trust: Trust = Trust(),
                     input_shapes: Sequence[Sequence[int]] | Mapping[str, Sequence[int]]
                     | None = None) -> ModelGraph:
    """Load any PyTorch file. `input_shapes` (positional, or by forward's argument names)
    overrides declared example inputs.

    Raises ModelLoadError with a message for the user; never lets a torch traceback through.
    """
    path = Path(path)
    trust = _effective(trust)
    kind = _file_kind(path)
    try:
        with quiet_torch():
            if kind == "export":
                graph, meta = _load_exported_program(path, trust)
            elif kind == "torchscript":
                graph, meta = _load_torchscript(path, input_shapes, trust)
            else:
                graph, meta = _load_torch_save(path, trust, None if isinstance(
                    input_shapes, Mapping) else input_shapes)
    except ModelLoadError:
        raise
    except Exception as e:  # torch raises many types; the user needs one clear line
        logger.debug("loading %s failed", path, exc_info=True)
        raise ModelLoadError(f"{path.name}: PyTorch could not read this {_KIND_WORDS[kind]}: "
                             f"{_first_line(e)}") from e
    meta.path = str(path)
    meta.file_size = path.stat().st_size
    meta.sha256 = sha256_of([path])
    return ModelGraph(graph=graph, meta=meta)


def _effective(trust: Trust | None) -> Trust:
    """The consent given here, or to the whole job (converters.formats.consent)."""
    return Trust(run_code=bool(trust and trust.run_code) or current_trust().run_code)


class _ToDebug(logging.Handler):
    """Hands torch's own log records to our logger at DEBUG (seen with --debug only)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.debug("torch said: %s", record.getMessage())


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """Torch's warnings and its own loggers (which print tracebacks of errors we turn into
    one clear line) go to our debug log while a file is read."""
    # torch._logging gives several of its loggers (torch.export, ...) handlers of their own
    names = ["torch"] + [name for name, log in logging.root.manager.loggerDict.items()
                         if name.startswith("torch.") and isinstance(log, logging.Logger)
                         and log.handlers]
    saved = {}
    for name in names:
        log = logging.getLogger(name)
        saved[name] = (log.handlers[:], log.propagate)
        log.handlers[:] = [_ToDebug()]
        log.propagate = False

    def to_debug(message, category, filename, lineno, file=None, line=None) -> None:
        logger.debug("warning from %s:%s: %s", filename, lineno, message)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once
            warnings.showwarning = to_debug
            yield
    finally:
        for name, (handlers, propagate) in saved.items():
            log = logging.getLogger(name)
            log.handlers[:], log.propagate = handlers, propagate


_KIND_WORDS = {"export": "torch.export archive", "torchscript": "TorchScript archive",
               "torch_save": "torch.save file", "legacy_pickle": "torch.save (pickle) file"}


def _file_kind(path: Path) -> str:
    """Which of the loaders applies, judged on content. Raises ModelLoadError."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_LEGACY_MAGIC))
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror}") from e
    if head.startswith(b"PK"):
        try:
            names = _zip_names(path)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ModelLoadError(
                f"{path.name} is a damaged or truncated zip archive ({e}): the download or copy "
                "did not finish, or the file was cut short; fetch or export it again") from e
        kind = archive_kind(names)
        if kind is None:
            raise ModelLoadError(f"{path.name} is a zip archive but not a PyTorch file "
                                 "(no data.pkl, code/ or models/ inside)")
        check_archive(path)
        return kind
    if _is_pickle(head):
        with open(path, "rb") as f:
            _check_pickle_depth(f, path.name)
        return "legacy_pickle"
    raise ModelLoadError(f"{path.name} is not a PyTorch file: it is neither a zip archive "
                         "(torch.save, TorchScript, torch.export) nor a legacy torch.save pickle")


def _first_line(e: BaseException) -> str:
    """One line of a torch error; TorchScript puts its traceback first and the cause last."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()] or [type(e).__name__]
    line = lines[-1] if "TorchScript interpreter" in lines[0] else lines[0]
    return line.strip()[:300]


# --- small helpers shared by the walkers ---------------------------------------------------

class _UniqueNames:
    """Hands out names that were not handed out before ("relu", "relu_1", ...)."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def take(self, wanted: str) -> str:
        wanted = wanted or "v"
        name, i = wanted, 1
        while name in self._used:
            name, i = f"{wanted}_{i}", i + 1
        self._used.add(name)
        return name


def _dtype_name(dtype: Any) -> str:
    """torch.float32 -> "float32" (the numpy-style names ModelGraph uses)."""
    return str(dtype).removeprefix("torch.")


def _dims(shape: Iterable[Any]) -> list[Dim]:
    """Concrete sizes stay ints; a symbolic size (SymInt) becomes its name, e.g. "s0"."""
    return [d if isinstance(d, int) else str(d) for d in shape]


def _torch_value(value: Any) -> Any:
    """Readable forms of torch dtypes and tensors in attributes (None: not a torch value)."""
    import torch

    if isinstance(value, torch.dtype):
        return _dtype_name(value)
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)} {_dtype_name(value.dtype)}"
    return None  # device, layout, memory_format, SymInt, enums: str() in json_safe


def _json_safe(value: Any) -> Any:
    return json_safe(value, _torch_value)


def _weight_info(name: str, tensor: Any) -> TensorInfo:
    return TensorInfo(name=name, dtype=_dtype_name(tensor.dtype), shape=list(tensor.shape),
                      is_weight=True, nbytes=tensor.numel() * tensor.element_size())


def _is_tensor_arg(arg: Any) -> bool:
    """A schema argument that takes a tensor (Tensor, Tensor?, Tensor[]): goes to inputs."""
    return "Tensor" in str(arg.type)


# --- example inputs --------------------------------------------------------------------------

def _parse_input_spec(text: str | bytes, source: str) -> list[tuple[list[int], str]]:
    """{"inputs": [{"name", "shape", "dtype"}]} -> [(shape, dtype)]. Raises ModelLoadError."""
    try:
        spec = json.loads(text)
        entries = spec["inputs"]
        result = []
        for entry in entries:
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in entry["shape"]]
            result.append((shape, str(entry.get("dtype", "float32"))))
    except (ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{source} is not a valid input description ({e}); "
                             f"expected e.g. {INPUT_SPEC_EXAMPLE}") from e
    return result


def _sidecar_spec(path: Path) -> list[tuple[list[int], str]] | None:
    """Example inputs declared next to the model, in <model>.modeldeck.json."""
    sidecar = path.with_suffix("." + INPUT_SPEC_NAME)
    if not sidecar.is_file():
        return None
    with open(sidecar, "rb") as f:
        text = f.read(1024 ** 2 + 1)  # a few shapes: anything bigger is not one
    if len(text) > 1024 ** 2:
        raise ModelLoadError(f"{sidecar.name} is over 1 MiB: not an input description; "
                             f"expected e.g. {INPUT_SPEC_EXAMPLE}")
    return _parse_input_spec(text, sidecar.name)


MAX_EXAMPLE_BYTES = 2 * 1024 ** 3  # example inputs built from a declared shape, all together


def _zeros(spec: list[tuple[list[int], str]], meta: bool = False) -> tuple[Any, ...]:
    """Zeros of the declared shapes; `meta`: shape and dtype only, no memory (nothing runs)."""
    import torch

    tensors = []
    total = 0
    for shape, dtype in spec:
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ModelLoadError(f"unknown input dtype {dtype!r} in the input description")
        t = torch.empty(shape, dtype=torch_dtype, device="meta")
        total += t.numel() * t.element_size()
        if total > MAX_EXAMPLE_BYTES and not meta:
            raise ModelLoadError(
                f"the declared input shapes ({', '.join(str(s) for s, _ in spec)}) would need "
                f"~{total / 1e9:.1f} GB for one set of inputs; ModelDeck builds at most "
                f"{MAX_EXAMPLE_BYTES / 1e9:.1f} GB: declare smaller example inputs")
        tensors.append(t if meta else torch.zeros(shape, dtype=torch_dtype))
    return tuple(tensors)


def _explicit_spec(input_shapes: Sequence[Sequence[int]] | None) -> list | None:
    if input_shapes is None:
        return None
    return [([int(d) for d in shape], "float32") for shape in input_shapes]


def _describe_inputs(example: Sequence[Any]) -> str:
    return ", ".join(f"{list(t.shape)} {_dtype_name(t.dtype)}" for t in example)


# --- torch.export archives (.pt2) -----------------------------------------------------------

def load_exported_program(path: str | Path, trust: Trust = Trust()) -> Any:
    """torch.export.load behind the same safety checks as inspection (passes use this)."""
    path = Path(path)
    check_archive(path)
    producer_version, _ = _check_exported_program(path, _effective(trust))
    with quiet_torch():
        return _export_load(path, producer_version)


def load_weights_for_analysis(path: str | Path, trust: Trust = Trust()):
    """(name, numpy array) for every parameter and buffer of a .pt2 or TorchScript archive."""
    path = Path(path)
    kind = archive_kind(_zip_names(path)) if zipfile.is_zipfile(path) else None
    if kind == "export":
        state = load_exported_program(path, trust).state_dict
    elif kind == "torchscript":
        check_archive(path)
        with quiet_torch():
            module, _ = _jit_load(path, restore_shapes=False, trust=_effective(trust))
        state = module.state_dict()
    else:
        raise ModelLoadError(f"{path.name}: weights can be read from .pt2 and TorchScript "
                             "archives only")
    for name, tensor in state.items():
        yield name, tensor.detach().cpu().numpy()


def _check_exported_program(path: Path, trust: Trust) -> tuple[str, dict[str, int]]:
    """Refuse archives that would run code on load (unless trusted); (producer, opset)."""
    with zipfile.ZipFile(path) as zf:
        programs = _pt2_programs(zf)
        if not programs:
            raise ModelLoadError(f"{path.name} is a .pt2 package without an exported program "
                                 "(for example an AOTInductor-compiled package); ModelDeck reads "
                                 "archives written by torch.export.save")
        if not trust.run_code:
            _refuse_code_in_pt2(path, zf, programs)
    return _pt2_header(programs[0])


def _export_load(path: Path, producer_version: str = "") -> Any:
    import torch

    try:
        with open(path, "rb") as f:  # a file object: torch wants a ".pt2" name otherwise
            return torch.export.load(f)
    except Exception as e:
        logger.debug("torch.export.load failed", exc_info=True)
        raise ModelLoadError(
            f"{path.name}: torch {torch.__version__} cannot read this torch.export archive "
            f"(written by torch {producer_version or 'unknown'}): {_first_line(e)}. Export it "
            "again with this torch version, or to ONNX") from e


def _load_exported_program(path: Path, trust: Trust) -> tuple[Graph, ModelMeta]:
    import torch

    producer_version, opset = _check_exported_program(path, trust)
    ep = _export_load(path, producer_version)
    meta = ModelMeta(format="torch", producer=f"torch {producer_version or torch.__version__}",
                     opset=opset)
    return _ExportedProgramWalker(ep).convert(), meta


def _pt2_programs(zf: zipfile.ZipFile) -> list[dict[str, Any]]:
    """The serialized programs (models/<name>.json, or the pre-2.8 single JSON), parsed."""
    programs = []
    for name in zf.namelist():
        rel = _relative(name)
        if (rel.startswith("models/") and rel.endswith(".json")) or (
                name == "serialized_exported_program.json"):
            programs.append(json.loads(zf.read(name)))
    return programs


def _pt2_header(program: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """(torch version that exported it, opset) from a serialized program."""
    try:
        opset = {str(k): int(v) for k, v in program.get("opset_version", {}).items()}
        return str(program.get("torch_version", "")), opset
    except (TypeError, ValueError, AttributeError):
        return "", {}


def _refuse_code_in_pt2(path: Path, zf: zipfile.ZipFile, programs: list[dict[str, Any]]) -> None:
    """torch.export.load can run code from the file in two ways: pickles and sympy.sympify."""
    reasons = _pt2_pickled_parts(zf)
    if reasons:
        raise ConsentRequired(
            f"{path.name} stores {reasons[0]}{' and more' if len(reasons) > 1 else ''} "
            "as a Python pickle: loading it would run code stored in the file. " + _PICKLE_HOWTO)
    allowed = _sympy_names()
    for program in programs:
        for text in _expression_strings(program):
            if not _is_plain_sym_expr(text, allowed):
                raise ConsentRequired(
                    f"{path.name} holds a symbolic-shape expression that is not plain arithmetic "
                    f"({text[:80]!r}); torch.export.load evaluates these as Python, so loading "
                    "it would run code stored in the file. " + _PICKLE_HOWTO)


def _pt2_pickled_parts(zf: zipfile.ZipFile) -> list[str]:
    """What in a .pt2 archive torch.export.load would unpickle with full pickle.

    torch.export.load unpickles payloads flagged use_pickle, "opaque"/custom objects, and
    falls back to weights_only=False for embedded torch.save blobs (sample inputs, old
    formats) that the safe loader rejects. Any of these can run code.
    """
    import torch

    reasons = []
    for name in zf.namelist():
        rel = _relative(name)
        if rel.endswith(("_weights_config.json", "_constants_config.json")):
            config = json.loads(zf.read(name)).get("config", {})
            for fqn, entry in config.items():
                path_name = str(entry.get("path_name", ""))
                if entry.get("use_pickle") or path_name.startswith(("custom_obj_", "opaque_obj_")):
                    reasons.append(f"'{fqn}'")
        elif rel.endswith(".pt"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.load(io.BytesIO(zf.read(name)), map_location="cpu", weights_only=True)
            except Exception:
                reasons.append(f"'{rel}'")
    return reasons


def _expression_strings(data: Any) -> Iterable[str]:
    """Every "expr_str" in a serialized program: the strings torch hands to sympy.sympify."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "expr_str" and isinstance(value, str):
                yield value
            else:
                yield from _expression_strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _expression_strings(value)


_SYM_EXPR_CHARS = re.compile(r"[\w\s()+\-*/%,.'=<>!&|~]*")
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*")
_TORCH_SYMBOL = re.compile(r"[a-z]+\d+")  # s0, u3, zuf0: the names torch gives sizes
_ASSUMPTIONS = {"True", "False", "None", "algebraic", "commutative", "complex", "even",
                "extended_negative", "extended_nonnegative", "extended_nonpositive",
                "extended_nonzero", "extended_positive", "extended_real", "finite", "imaginary",
                "infinite", "integer", "irrational", "negative", "noninteger", "nonnegative",
                "nonpositive", "nonzero", "odd", "positive", "prime", "rational", "real", "zero"}


def _sympy_names() -> set[str]:
    """Names a shape expression may use: sympy/torch math classes and constants, assumptions."""
    import sympy
    import torch.utils._sympy.functions as torch_sympy

    names = set(_ASSUMPTIONS)
    for module in (sympy, torch_sympy):
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, sympy.Basic) or (isinstance(obj, type)
                                                and issubclass(obj, sympy.Basic)):
                names.add(name)
    return names


def _is_plain_sym_expr(text: str, allowed: set[str]) -> bool:
    """sympify is eval: accept only calls of math classes on numbers and size symbols.

    No dunders, no attribute access, no brackets, and every identifier must be a sympy/torch
    math name, an assumption keyword or a size symbol: nothing that reaches Python builtins.
    """
    if "__" in text or re.search(r"\.\s*[A-Za-z_]", text) or not _SYM_EXPR_CHARS.fullmatch(text):
        return False
    return all(name in allowed or _TORCH_SYMBOL.fullmatch(name)
               for name in _IDENTIFIER.findall(text))


def _fx_op_type(target: Any) -> tuple[str, str]:
    """(op_type, domain): aten.convolution.default -> ("aten::convolution", "aten")."""
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return schema.name, schema.name.partition("::")[0]
    namespace = getattr(target, "namespace", None)
    if namespace and callable(getattr(target, "name", None)):  # higher-order ops (cond, ...)
        return f"{namespace}::{target.name()}", namespace
    return f"python::{getattr(target, '__name__', str(target))}", "python"


def _fx_scope(node: Any) -> str:
    """"/features/conv1" from the innermost nn_module_stack entry."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    entry = list(stack.values())[-1]
    module_path = entry[0] if isinstance(entry, (tuple, list)) else str(entry)
    module_path = module_path.removeprefix("L['self']").strip(".")
    if module_path.startswith("_empty_nn_module_stack"):  # a placeholder torch adds: no module
        return ""
    return "/" + module_path.replace(".", "/") if module_path else ""


def _fx_value_info(name: str, val: Any) -> TensorInfo:
    if hasattr(val, "shape") and hasattr(val, "dtype"):
        return TensorInfo(name=name, dtype=_dtype_name(val.dtype), shape=_dims(val.shape))
    return TensorInfo(name=name)  # a SymInt, a scalar or nothing known


class _ExportedProgramWalker:
    """ExportedProgram -> Graph. Parameters/buffers are lifted placeholders: they become weights."""

    def __init__(self, ep: Any):
        self.ep = ep
        self.node_ids = _UniqueNames()
        self.tensor_names = _UniqueNames()
        self.refs: dict[Any, str | list[str]] = {}  # fx node -> tensor name(s)
        self.graph_modules: dict[Any, Any] = {}  # get_attr node -> sub GraphModule

    def convert(self) -> Graph:
        from torch.export.graph_signature import InputKind, OutputKind

        sig = self.ep.graph_signature
        data_kinds = (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR)
        weights = {s.arg.name: s.target for s in sig.input_specs if s.kind in data_kinds}
        user_inputs = {s.arg.name for s in sig.input_specs if s.kind == InputKind.USER_INPUT}
        keep_output = [s.kind == OutputKind.USER_OUTPUT for s in sig.output_specs]
        return self._graph(self.ep.graph_module, weights, user_inputs, keep_output)

    def _graph(self, gm: Any, weights: dict[str, str], user_inputs: set[str] | None,
               keep_output: list[bool] | None) -> Graph:
        """One FX graph; user_inputs None means a subgraph, whose placeholders are all inputs."""
        g = Graph()
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node, g, weights, user_inputs)
            elif node.op == "get_attr":
                self._get_attr(node, g, gm)
            elif node.op == "output":
                g.outputs = self._outputs(node, keep_output)
            elif not self._is_tuple_item(node):
                g.nodes.append(self._node(node, g))
        return g

    def _placeholder(self, node: Any, g: Graph, weights: dict[str, str],
                     user_inputs: set[str] | None) -> None:
        if node.name in weights:
            fqn = weights[node.name]
            tensor = self.ep.state_dict.get(fqn)
            if tensor is None:
                tensor = self.ep.constants.get(fqn)
            name = self.tensor_names.take(fqn)
            val = tensor if tensor is not None else node.meta.get("val")
            g.tensors[name] = _weight_info(name, val)
            self.refs[node] = name
            return
        if user_inputs is not None and node.name not in user_inputs:
            return  # effect tokens, script objects: not data
        name = self.tensor_names.take(node.name)
        g.tensors[name] = _fx_value_info(name, node.meta.get("val"))
        g.inputs.append(name)
        self.refs[node] = name

    def _get_attr(self, node: Any, g: Graph, gm: Any) -> None:
        import torch

        obj = gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        if isinstance(obj, torch.fx.GraphModule):
            self.graph_modules[node] = obj
        elif isinstance(obj, torch.Tensor):
            name = self.tensor_names.take(str(node.target))
            g.tensors[name] = _weight_info(name, obj)
            self.refs[node] = name

    def _is_tuple_item(self, node: Any) -> bool:
        """getitem on a multi-output op: folded away, its value is that op's i-th output."""
        import operator

        if node.target is not operator.getitem or not isinstance(node.args[1], int):
            return False
        source = node.args[0]
        return getattr(source, "op", None) == "call_function" and isinstance(
            source.meta.get("val"), (list, tuple))

    def _node(self, node: Any, g: Graph) -> Node:
        op_type, domain = _fx_op_type(node.target)
        inputs, attributes, subgraphs = self._arguments(node)
        node_id = self.node_ids.take(node.name)
        return Node(id=node_id, name=node.name, op_type=op_type, domain=domain,
                    attributes=attributes, inputs=inputs, outputs=self._node_outputs(node, g),
                    scope=_fx_scope(node), subgraphs=subgraphs)

    def _bound_arguments(self, node: Any) -> list[tuple[str, Any, bool]]:
        """(name, value, takes a tensor) for args and kwargs, with schema defaults filled in."""
        schema = getattr(node.target, "_schema", None)
        params = list(schema.arguments) if schema is not None else []
        bound = []
        for i, value in enumerate(node.args):
            param = params[i] if i < len(params) else None
            bound.append((param.name if param else f"arg{i}", value,
                          bool(param) and _is_tensor_arg(param)))
        by_name = {p.name: p for p in params}
        for key, value in node.kwargs.items():
            param = by_name.get(key)
            bound.append((key, value, bool(param) and _is_tensor_arg(param)))
        given = {name for name, _, _ in bound}
        for param in params:
            if (param.name not in given and not _is_tensor_arg(param)
                    and param.has_default_value() and param.default_value is not None):
                bound.append((param.name, param.default_value, False))
        return bound

    def _arguments(self, node: Any) -> tuple[list[str], dict[str, Any], dict[str, Graph]]:
        import torch

        inputs: list[str] = []
        attributes: dict[str, Any] = {}
        subgraphs: dict[str, Graph] = {}
        for name, value, takes_tensor in self._bound_arguments(node):
            if isinstance(value, torch.fx.Node) and value in self.graph_modules:
                body = self.graph_modules[value]
                subgraphs[str(value.target)] = self._graph(body, {}, None, None)
            elif isinstance(value, torch.fx.Node):
                inputs.extend(self._ref(value))
            elif isinstance(value, (list, tuple)) and any(
                    isinstance(v, torch.fx.Node) for v in value):
                only_values = all(isinstance(v, torch.fx.Node) for v in value)
                self._list_argument(name, value, takes_tensor or only_values, inputs, attributes)
            elif value is None and takes_tensor:
                inputs.append("")  # omitted optional tensor (e.g. conv bias): keep positions
            else:
                attributes[name] = _json_safe(value)
        return inputs, attributes, subgraphs

    def _list_argument(self, name: str, value: Sequence[Any], takes_tensor: bool,
                       inputs: list[str], attributes: dict[str, Any]) -> None:
        """Tensor lists (cat, lstm params) go to inputs; int lists with symbolic sizes keep the
        size's tensor name in the attribute and the size as an input (so the edge exists)."""
        import torch

        shown = []
        for v in value:
            if isinstance(v, torch.fx.Node):
                refs = self._ref(v)
                inputs.extend(refs)
                shown.append(refs[0] if len(refs) == 1 else refs)
            elif v is None and takes_tensor:
                inputs.append("")
            else:
                shown.append(_json_safe(v))
        if not takes_tensor:
            attributes[name] = shown

    def _ref(self, node: Any) -> list[str]:
        ref = self.refs.get(node)
        if ref is None:
            return []
        return ref if isinstance(ref, list) else [ref]

    def _node_outputs(self, node: Any, g: Graph) -> list[str]:
        val = node.meta.get("val")
        if isinstance(val, (list, tuple)):
            items = [u for u in node.users if self._is_tuple_item(u)]
            first_item = {u.args[1]: u for u in reversed(items)}  # name outputs after them
            names = []
            for i, item_val in enumerate(val):
                item = first_item.get(i)
                name = self.tensor_names.take(item.name if item else f"{node.name}_{i}")
                g.tensors[name] = _fx_value_info(name, item_val)
                names.append(name)
            for item in items:
                if 0 <= item.args[1] < len(names):
                    self.refs[item] = names[item.args[1]]
            self.refs[node] = names
            return names
        if val is None and not node.users:
            return []  # side effects only (asserts, prints)
        name = self.tensor_names.take(node.name)
        g.tensors[name] = _fx_value_info(name, val)
        self.refs[node] = name
        return [name]

    def _outputs(self, node: Any, keep_output: list[bool] | None) -> list[str]:
        values = node.args[0]
        values = values if isinstance(values, (list, tuple)) else [values]
        names = []
        for i, value in enumerate(values):
            if keep_output is not None and i < len(keep_output) and not keep_output[i]:
                continue  # buffer mutations and the like: not what the model returns
            names.extend(self._ref(value) if hasattr(value, "op") else [])
        return names


# --- TorchScript archives ------------------------------------------------------------------

def _load_torchscript(path: Path, input_shapes: Sequence[Sequence[int]] | Mapping[
                          str, Sequence[int]] | None,
                      trust: Trust = Trust()) -> tuple[Graph, ModelMeta]:
    """The inlined graph; intermediate shapes only when the user consented to running it."""
    import torch

    names = {_relative(n) for n in _zip_names(path)}
    if "data.pkl" not in names or not any(n.startswith("code/") for n in names):
        raise ModelLoadError(f"{path.name} is a TorchScript lite-interpreter (mobile) archive "
                             "without the full program; ModelDeck needs the archive written by "
                             "torch.jit.save")
    module, extra = _jit_load(path, restore_shapes="traced_inputs.pkl" in names, trust=trust)
    if isinstance(input_shapes, Mapping):
        input_shapes = _shapes_by_argument(module, input_shapes)
    example, source = _torchscript_example(path, module, extra, input_shapes,
                                           meta=not trust.run_code)
    meta = ModelMeta(format="torch", producer=f"torch {torch.__version__} (TorchScript)")
    # torch.jit.trace's inputs are one example, not a declaration: other sizes usually run.
    meta.example_inputs = source == TRACED_EXAMPLE
    shapes: dict[str, tuple[list[int], str]] = {}
    if example is not None and not trust.run_code:
        meta.notes.append(
            f"Input shapes {_describe_inputs(example)} ({source}); the shapes inside the graph "
            "are unknown: computing them means running the model, which runs code stored in "
            "the file, so ModelDeck does it only when you trust the file")
    elif example is not None:
        try:
            shapes = _probe_shapes(module, example)
            meta.notes.append(
                f"Shapes come from running the model once on zeros of shape "
                f"{_describe_inputs(example)} ({source}); values inside if/loop bodies have none")
        except Exception as e:
            logger.debug("TorchScript shape probe failed", exc_info=True)
            meta.notes.append(f"Shapes are unknown: running the model on zeros of shape "
                              f"{_describe_inputs(example)} ({source}) failed: {_first_line(e)}")
            example = None
    elif not trust.run_code and "traced_inputs.pkl" in names:
        meta.notes.append(
            "Shapes are unknown: this traced archive stores example inputs, but reading their "
            "shapes means re-tracing (running) the model, which runs code stored in the file, "
            "so ModelDeck does it only when you trust the file")
    else:
        meta.notes.append(
            "Shapes are unknown because TorchScript does not store input shapes: save the model "
            f"with _extra_files={{'{INPUT_SPEC_NAME}': '{INPUT_SPEC_EXAMPLE}'}}, or put that "
            f"JSON next to the model as {path.with_suffix('.' + INPUT_SPEC_NAME).name}")
    graph = _TorchScriptWalker(module, shapes, example).convert(module.inlined_graph)
    return graph, meta


def _jit_load(path: Path, restore_shapes: bool, trust: Trust | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """torch.jit.load on CPU, reading our modeldeck.json extra file when the archive has one.

    restore_shapes re-traces traced archives with the example inputs they store, which makes
    those inputs' shapes readable; if that fails we load without it. Re-tracing runs the
    model, and loading runs any __setstate__ method the archive defines: both only with
    consent (Trust.run_code, given here or to the job).
    """
    import torch

    trust = _effective(trust)
    check_archive(path)
    if not trust.run_code:
        restore_shapes = False
        runs_on_load = _code_run_on_load(path)
        if runs_on_load:
            raise ConsentRequired(
                f"{path.name} is a TorchScript archive whose {runs_on_load} runs code stored "
                f"in the file as soon as it is loaded. {_PICKLE_HOWTO}")
    extra: dict[str, Any] = {INPUT_SPEC_NAME: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load warns that TorchScript is deprecated
        if restore_shapes:
            try:
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra,
                                        _restore_shapes=True)
                return module, extra
            except Exception:
                logger.debug("reloading %s without _restore_shapes", path, exc_info=True)
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra), extra


_SETSTATE = re.compile(rb"^\s*def __setstate__\(", re.MULTILINE)
_CLASS = re.compile(rb"^class (\w+)", re.MULTILINE)


def _code_run_on_load(path: Path) -> str | None:
    """"class X's __setstate__" when the archive's TorchScript code defines one (torch.jit.load
    calls it while unpickling the module); None when loading runs none of the file's code."""
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            rel = _relative(name)
            if not (rel.startswith("code/") and rel.endswith(".py")):
                continue
            text = zf.read(name)  # size-checked by check_archive
            found = _SETSTATE.search(text)
            if found:
                classes = _CLASS.findall(text[:found.start()])
                owner = classes[-1].decode(errors="replace") if classes else rel
                return f"class {owner} has a __setstate__ method that"
    return None


def _torchscript_example(path: Path, module: Any, extra: dict[str, Any],
                         input_shapes: Sequence[Sequence[int]] | None, meta: bool = False
                         ) -> tuple[tuple[Any, ...] | None, str]:
    """Example inputs and where they came from, in order of precedence; (None, "") if unknown.
    `meta`: tensors with shape and dtype only, for a model that will not be run."""
    spec = _explicit_spec(input_shapes)
    if spec is not None:
        traced = _traced_input_spec(module)  # the example's dtypes (token ids stay integers)
        if traced is not None and len(traced) == len(spec):
            spec = [(shape, dtype) for (shape, _), (_, dtype) in zip(spec, traced)]
        return _zeros(spec, meta), "input shapes given when opening"
    if extra.get(INPUT_SPEC_NAME):
        return _zeros(_parse_input_spec(extra[INPUT_SPEC_NAME], f"the archive's {INPUT_SPEC_NAME}"),
                      meta), f"from the archive's {INPUT_SPEC_NAME}"
    spec = _sidecar_spec(path)
    if spec is not None:
        return _zeros(spec, meta), f"from {path.with_suffix('.' + INPUT_SPEC_NAME).name}"
    spec = _traced_input_spec(module)
    if spec is not None:
        return _zeros(spec, meta), TRACED_EXAMPLE
    return None, ""


TRACED_EXAMPLE = "the example inputs stored by torch.jit.trace"


def _shapes_by_argument(module: Any, shapes: Mapping[str, Sequence[int]]
                        ) -> list[Sequence[int]] | None:
    """Sizes named by forward's arguments, in argument order; None unless every one is set."""
    try:
        args = [a.name for a in module.forward.schema.arguments[1:]]  # drop self
    except Exception:
        return None
    if not args:
        return None
    if set(args) <= set(shapes):
        return [shapes[a] for a in args]
    if len(shapes) == len(args) and not set(shapes) & set(args):
        return list(shapes.values())  # named for another export of the model: by position
    return None


_SCALAR_TYPES = {"Float": "float32", "Double": "float64", "Half": "float16",
                 "BFloat16": "bfloat16", "Long": "int64", "Int": "int32", "Short": "int16",
                 "Char": "int8", "Byte": "uint8", "Bool": "bool"}


def _traced_input_spec(module: Any) -> list[tuple[list[int], str]] | None:
    """Input shapes on the forward graph, present when _restore_shapes re-traced the module."""
    spec = []
    for value in list(module.graph.inputs())[1:]:
        typ = value.type()
        sizes = typ.sizes() if hasattr(typ, "sizes") else None
        dtype = _SCALAR_TYPES.get(str(typ.scalarType())) if hasattr(typ, "scalarType") else None
        if not sizes or dtype is None:
            return None
        spec.append((list(sizes), dtype))
    return spec or None


def _probe_shapes(module: Any, example: tuple[Any, ...]) -> dict[str, tuple[list[int], str]]:
    """debugName -> (shape, dtype) of every top-level tensor, from one run on `example`.

    TorchScript graphs carry no intermediate shapes, its shape-analysis passes give up on
    module graphs, and torch.jit.trace returns a ScriptModule unchanged. So we run a copy of
    the inlined forward graph that also returns the size and dtype of every tensor it computes.
    Sizes and dtypes are read right after each tensor is made, so each tensor is freed when
    the model is done with it: the probe needs the memory of one inference, not the sum of
    every activation (which for a traced batch of images runs to gigabytes).
    """
    import torch

    graph = module.inlined_graph  # a fresh copy: changing it leaves the module alone
    tensor_type = torch._C.TensorType.get()
    probes = [out for node in graph.nodes()
              if node.kind() not in ("prim::Constant", "prim::GetAttr")
              for out in node.outputs() if out.type().isSubtypeOf(tensor_type)]
    facts = []
    for p in probes:
        size = graph.create("aten::size", [p], 1)
        size.output().setType(torch._C.ListType.ofInts())
        dtype = graph.create("prim::dtype", [p], 1)
        dtype.output().setType(torch._C.IntType.get())
        size.insertAfter(p.node())
        dtype.insertAfter(size)
        facts += [size.output(), dtype.output()]
    everything = graph.create("prim::TupleConstruct", facts, 1)
    everything.output().setType(torch._C.TupleType([f.type() for f in facts]))
    everything.insertBefore(graph.return_node())
    while len(list(graph.outputs())):
        graph.eraseOutput(0)
    graph.registerOutput(everything.output())
    probe = torch._C._create_function_from_graph("modeldeck_probe", graph)
    _large_blocks_from_mmap()
    with torch.no_grad():  # run in the train/eval mode it was saved in, as its graph says
        values = probe(module._c, *example)
    return {p.debugName(): (list(values[2 * i]), _SCALAR_TYPE_CODES.get(values[2 * i + 1],
                                                                       "unknown"))
            for i, p in enumerate(probes)}


def _large_blocks_from_mmap() -> None:
    """Let glibc give every block of 1 MiB or more back to the system when it is freed.

    Measured on a chain of 150 element-wise steps over a 16.8 MB activation: with glibc's
    default (a threshold that rises with the blocks freed) the probe peaked anywhere between
    0.4 and 5.1 GB from run to run, as freed activations stayed in the heap; with a fixed
    threshold it peaked at 0.3 GB every time. The setting lasts for the process: a job's own.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        pass


# c10::ScalarType codes, as prim::dtype returns them
_SCALAR_TYPE_CODES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16",
                      6: "float32", 7: "float64", 9: "complex64", 10: "complex128", 11: "bool",
                      12: "qint8", 13: "quint8", 14: "qint32", 15: "bfloat16"}


_MODULE_LEVEL = re.compile(r"([^.()]+)\(([^()]*)\)")


def _ts_scope(node: Any) -> str:
    """"features(Sequential).conv1(Conv2d).SELF(Conv2d)" -> "/features/conv1"."""
    try:
        hierarchy = node.getModuleHierarchy()
    except RuntimeError:
        return ""
    parts = [m.group(1) for m in _MODULE_LEVEL.finditer(hierarchy)
             if m.group(1) not in ("SELF", "UNKNOWN_INSTANCE")]
    return "/" + "/".join(parts) if parts else ""


def _ts_schema_arguments(node: Any) -> list[Any]:
    import torch

    text = node.schema()
    if not text or text == "(no schema)":
        return []
    try:
        return list(torch._C.parse_schema(text).arguments)
    except RuntimeError:
        return []


_BLOCK_NAMES = {"prim::If": ("then_branch", "else_branch"), "prim::Loop": ("body",)}
_UNPACKING = ("prim::TupleUnpack", "prim::ListUnpack", "prim::TupleIndex")
_PACKING = ("prim::ListConstruct", "prim::TupleConstruct")


class _TorchScriptWalker:
    """Inlined TorchScript graph -> Graph.

    Attribute fetches (prim::GetAttr) are not operations: a fetched parameter becomes a weight
    named by its module path; constants and lists of constants become attributes of the node
    that uses them; lists of tensors are spread into that node's inputs.
    """

    def __init__(self, module: Any, shapes: dict[str, tuple[list[int], str]],
                 example: tuple[Any, ...] | None):
        import torch

        self.module = module
        self.shapes = shapes
        self.example = example
        self.tensor_type = torch._C.TensorType.get()
        self.node_ids = _UniqueNames()
        self.tensor_names = _UniqueNames()
        self.root = Graph()
        self.refs: dict[int, str | list[str]] = {}  # Value.unique() -> tensor name(s)
        self.consts: dict[int, Any] = {}  # Value.unique() -> folded Python value
        self.objects: dict[int, tuple[str, Any]] = {}  # Value.unique() -> (path, module)
        self.weight_by_key: dict[tuple, str] = {}
        self.tensor_uids: set[int] = set()  # values known to hold a tensor

    # graph level
    def convert(self, ts_graph: Any) -> Graph:
        self._add_module_weights()
        inputs = list(ts_graph.inputs())
        if inputs and inputs[0].type().kind() == "ClassType":
            self.objects[inputs[0].unique()] = ("", self.module)
            inputs = inputs[1:]
        arg_names = self._forward_argument_names(len(inputs))
        for i, value in enumerate(inputs):
            name = self._define(value, self.root, arg_names[i])
            if self.example is not None and i < len(self.example):
                t = self.example[i]
                self.root.tensors[name].shape = list(t.shape)
                self.root.tensors[name].dtype = _dtype_name(t.dtype)
            self.root.inputs.append(name)
        self._nodes(ts_graph.nodes(), self.root)
        self.root.outputs = self._names_of(ts_graph.outputs(), self.root)
        return self.root

    def _add_module_weights(self) -> None:
        """Every parameter and buffer, so weights count fully even when the graph skips some."""
        named = list(self.module.named_parameters()) + list(self.module.named_buffers())
        for fqn, tensor in named:
            self._weight(fqn, tensor)

    def _weight(self, path: str, tensor: Any) -> str:
        """The weight's tensor name: its parameter/buffer name when known, else `path`."""
        key = self._tensor_key(tensor)
        if key is not None and key in self.weight_by_key:
            return self.weight_by_key[key]
        name = self.tensor_names.take(path)
        self.root.tensors[name] = _weight_info(name, tensor)
        if key is not None:
            self.weight_by_key[key] = name
        return name

    @staticmethod
    def _tensor_key(tensor: Any) -> tuple | None:
        """Identity of a tensor's data: GetAttr returns new Python objects for the same tensor."""
        if tensor.numel() == 0:
            return None
        return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
                tuple(tensor.shape), tuple(tensor.stride()), str(tensor.dtype))

    def _forward_argument_names(self, count: int) -> list[str | None]:
        """forward's argument names ("x", not the graph's "x.1"): what the torch runtime, and
        so a user's input sizes, call the inputs."""
        try:
            names = [a.name for a in self.module.forward.schema.arguments[1:]]
        except Exception:  # no scripted forward to read: the graph's own names
            names = []
        return (names + [None] * count)[:count] if len(names) == count else [None] * count

    def _define(self, value: Any, g: Graph, wanted: str | None = None) -> str:
        """Name a value produced here and record what we know about it in `g`."""
        name = self.tensor_names.take(wanted or value.debugName())
        info = TensorInfo(name=name)
        known = self.shapes.get(value.debugName())
        if known is not None:
            info.shape, info.dtype = list(known[0]), known[1]
        g.tensors[name] = info
        self.refs[value.unique()] = name
        if value.type().isSubtypeOf(self.tensor_type):
            self.tensor_uids.add(value.unique())
        return name

    def _names_of(self, values: Iterable[Any], g: Graph) -> list[str]:
        """Names for block/graph outputs; a folded constant gets a named, producer-less value."""
        names: list[str] = []
        for value in values:
            ref = self.refs.get(value.unique())
            if ref is None:
                ref = self._define(value, g)
            names.extend(ref if isinstance(ref, list) else [ref])
        return names

    # node level
    def _nodes(self, nodes: Iterable[Any], g: Graph) -> None:
        for node in nodes:
            kind = node.kind()
            if kind == "prim::Constant" and self._fold_constant(node):
                continue
            if kind == "prim::GetAttr" and self._fold_attribute(node):
                continue
            if kind in _PACKING and self._fold_packing(node):
                continue
            if kind in _UNPACKING and self._fold_unpacking(node):
                continue
            g.nodes.append(self._node(node, g))

    def _fold_constant(self, node: Any) -> bool:
        import torch

        value = node.output().toIValue()
        if isinstance(value, torch.Tensor):  # a tensor baked into the graph: stored data
            self.refs[node.output().unique()] = self._weight(
                f"constant.{node.output().debugName()}", value)
            self.tensor_uids.add(node.output().unique())
        else:
            self.consts[node.output().unique()] = value
        return True

    def _fold_attribute(self, node: Any) -> bool:
        import torch

        base = self.objects.get(node.input().unique())
        if base is None:
            return False  # an attribute of something built at run time: keep the node
        name = node.s("name")
        path = f"{base[0]}.{name}" if base[0] else name
        obj = getattr(base[1], name)
        uid = node.output().unique()
        if isinstance(obj, torch.Tensor):
            self.refs[uid] = self._weight(path, obj)
            self.tensor_uids.add(uid)
        elif isinstance(obj, (list, tuple)) and obj and all(
                isinstance(t, torch.Tensor) for t in obj):
            self.refs[uid] = [self._weight(f"{path}.{i}", t) for i, t in enumerate(obj)]
        elif isinstance(obj, torch.nn.Module):
            self.objects[uid] = (path, obj)
        elif obj is None or isinstance(obj, (bool, int, float, str, list, tuple)):
            self.consts[uid] = obj
        else:
            return False
        return True

    def _fold_packing(self, node: Any) -> bool:
        """A list/tuple of constants becomes one constant; of tensors, a list of names."""
        uids = [v.unique() for v in node.inputs()]
        if all(u in self.consts for u in uids):
            self.consts[node.output().unique()] = [self.consts[u] for u in uids]
            return True
        if uids and all(u in self.tensor_uids or isinstance(self.refs.get(u), list)
                        for u in uids):
            names: list[str] = []
            for u in uids:
                ref = self.refs[u]
                names.extend(ref if isinstance(ref, list) else [ref])
            self.refs[node.output().unique()] = names
            return True
        return False

    def _fold_unpacking(self, node: Any) -> bool:
        """Unpacking or indexing a tuple we spread into names just hands those names on."""
        inputs = list(node.inputs())
        ref = self.refs.get(inputs[0].unique())
        if not isinstance(ref, list):
            return False
        if node.kind() == "prim::TupleIndex":
            index = self.consts.get(inputs[1].unique())
            if not isinstance(index, int) or not -len(ref) <= index < len(ref):
                return False
            ref = [ref[index]]
        outputs = list(node.outputs())
        if len(ref) != len(outputs):
            return False
        for name, out in zip(ref, outputs):
            self.refs[out.unique()] = name
            self.tensor_uids.add(out.unique())
        return True

    def _node(self, node: Any, g: Graph) -> Node:
        kind = node.kind()
        inputs, attributes = self._arguments(node)
        attributes.update(self._node_attributes(node))
        outputs = [self._define(v, g) for v in node.outputs()]
        subgraphs = {}
        block_names = _BLOCK_NAMES.get(kind, ())
        for i, block in enumerate(node.blocks()):
            key = block_names[i] if i < len(block_names) else f"block{i}"
            subgraphs[key] = self._block(block)
        short = kind.split("::", 1)[-1]
        node_id = self.node_ids.take(short)
        return Node(id=node_id, name=node_id, op_type=kind, domain=kind.split("::", 1)[0],
                    attributes=attributes, inputs=inputs, outputs=outputs,
                    scope=_ts_scope(node), subgraphs=subgraphs)

    def _arguments(self, node: Any) -> tuple[list[str], dict[str, Any]]:
        params = _ts_schema_arguments(node)
        inputs: list[str] = []
        attributes: dict[str, Any] = {}
        for i, value in enumerate(node.inputs()):
            param = params[i] if i < len(params) else None
            arg_name = param.name if param is not None else f"arg{i}"
            uid = value.unique()
            if uid in self.consts:
                const = self.consts[uid]
                if const is None and param is not None and _is_tensor_arg(param):
                    inputs.append("")  # omitted optional tensor (e.g. bias): keep positions
                else:
                    attributes[arg_name] = _json_safe(const)
            elif uid in self.refs:
                ref = self.refs[uid]
                inputs.extend(ref if isinstance(ref, list) else [ref])
            elif uid in self.objects:
                attributes[arg_name] = f"module {self.objects[uid][0] or 'self'}"
            else:
                inputs.append(self._define(value, self.root))  # not seen before: name it
        return inputs, attributes

    @staticmethod
    def _node_attributes(node: Any) -> dict[str, Any]:
        """Attributes stored on the node itself (e.g. prim::GetAttr's name)."""
        readers = {"i": node.i, "f": node.f, "s": node.s, "is": node.is_, "fs": node.fs,
                   "ss": node.ss}
        found = {}
        for name in node.attributeNames():
            reader = readers.get(node.kindOf(name))
            if reader is not None:
                found[name] = _json_safe(reader(name))
        return found

    def _block(self, block: Any) -> Graph:
        sub = Graph()
        for value in block.inputs():
            sub.inputs.append(self._define(value, sub))
        self._nodes(block.nodes(), sub)
        sub.outputs = self._names_of(block.outputs(), sub)
        return sub


# --- torch.save files ----------------------------------------------------------------------

def _load_torch_save(path: Path, trust: Trust, input_shapes: Sequence[Sequence[int]] | None
                     ) -> tuple[Graph, ModelMeta]:
    """A state_dict or a pickled module. Only the weights-only unpickler runs without trust."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise here
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust.run_code:
            raise ConsentRequired(_pickle_refusal(path, e)) from e
        obj = _full_pickle_load(path)
    except Exception as e:
        raise ModelLoadError(f"{path.name} is a damaged torch.save file ({_first_line(e)}); "
                             "fetch or save it again") from e
    if isinstance(obj, torch.nn.Module):
        return _graph_of_module(path, obj, input_shapes)
    raise ModelLoadError(_not_a_model(path, obj))


def _pickle_refusal(path: Path, error: Exception) -> str:
    found = re.search(r"GLOBAL ([\w.]+)", str(error))
    needs = f" (it refers to {found.group(1)})" if found else ""
    return (f"{path.name} is a full Python pickle{needs}, e.g. a whole model saved with "
            "torch.save(model): loading it would run code stored in the file. " + _PICKLE_HOWTO
            + f"; or, better, {_EXPORT_HOWTO}")


def _full_pickle_load(path: Path) -> Any:
    """torch.load(weights_only=False): only reached when the user trusts the file."""
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise ModelLoadError(
            f"{path.name} needs Python code that is not available here ({_first_line(e)}): a "
            "pickled model can only be loaded next to the code that defines its classes; "
            + _EXPORT_HOWTO) from e


def _count_tensors(obj: Any, names: list[str], prefix: str = "") -> int:
    import torch

    if isinstance(obj, torch.Tensor):
        names.append(prefix or "tensor")
        return 1
    if isinstance(obj, dict):
        return sum(_count_tensors(v, names, f"{prefix}.{k}" if prefix else str(k))
                   for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sum(_count_tensors(v, names, f"{prefix}[{i}]") for i, v in enumerate(obj))
    return 0


def _not_a_model(path: Path, obj: Any) -> str:
    names: list[str] = []
    count = _count_tensors(obj, names)
    if count:
        examples = ", ".join(names[:3]) + (", ..." if count > 3 else "")
        return (f"{path.name} holds only weights ({count} tensors, e.g. {examples}), not the "
                f"model's architecture, so there is no graph to show; {_EXPORT_HOWTO}")
    return (f"{path.name} holds a {type(obj).__name__}, not a model; {_EXPORT_HOWTO}")


def _graph_of_module(path: Path, module: Any, input_shapes: Sequence[Sequence[int]] | None
                     ) -> tuple[Graph, ModelMeta]:
    """A trusted, unpickled nn.Module: capture it with torch.export on zeros."""
    import torch

    spec = _explicit_spec(input_shapes) or _sidecar_spec(path)
    if spec is None:
        sidecar = path.with_suffix("." + INPUT_SPEC_NAME).name
        raise ModelLoadError(
            f"{path.name} holds a whole pickled model ({type(module).__name__}); to build its "
            f"graph ModelDeck needs its input shape: put {sidecar} next to it containing "
            f"{INPUT_SPEC_EXAMPLE}, or {_EXPORT_HOWTO}")
    example = _zeros(spec)
    try:
        ep = torch.export.export(module.eval(), example)
    except Exception as e:
        logger.debug("torch.export.export failed", exc_info=True)
        raise ModelLoadError(f"{path.name}: torch.export could not capture "
                             f"{type(module).__name__} on inputs {_describe_inputs(example)}: "
                             f"{_first_line(e)}") from e
    meta = ModelMeta(format="torch", producer=f"torch {torch.__version__}")
    meta.notes.append(f"Loaded with full pickle (trusted) and captured with torch.export on "
                      f"zeros of shape {_describe_inputs(example)}")
    return _ExportedProgramWalker(ep).convert(), meta
