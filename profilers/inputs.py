"""Inputs for a run: the resolved workload (converters/workload.py) turned into arrays.

A runtime's own view of the inputs (names, dtypes, dims, from `Backend.input_specs()`) is the
declaration; the model graph tells what each input is used for (token ids stay inside their
table, masks are ones); user sizes and real data (.npz) come first. Arrays are made before any
timed loop.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from converters.workload import (
    InputDecl, Workload, WorkloadError, fit_data, npz_array, parse_shape_args, resolve_workload,
)
from converters.workload import read_npz as _read_npz
from converters.workload import generate as generate_workload
from profilers.backends import InputSpec

InputError = WorkloadError  # kept for callers that catch it by this name

__all__ = ["InputError", "parse_shape_args", "prepare", "generate", "from_npz", "npz_array",
           "read_npz"]


def decls_of(specs: Sequence[InputSpec], graph: Any = None) -> list[InputDecl]:
    """The runtime's inputs, with the model file's dim names where the runtime dropped them
    (OpenVINO reports [?, ?]; the file says [batch, sequence]: one name, one size)."""
    tensors = graph.graph.tensors if graph is not None else {}
    example = graph is not None and graph.meta.example_inputs
    out = []
    for s in specs:
        shape = None if s.shape is None else tuple(s.shape)
        t = tensors.get(s.name)
        from_file = shape is None
        if t is not None and t.shape is not None and (shape is None or len(shape) == len(t.shape)):
            shape = tuple(d if isinstance(d, int) or not isinstance(f, str) else f
                          for d, f in zip(shape or t.shape, t.shape))
        out.append(InputDecl(s.name, s.dtype, shape, example=example and from_file))
    return out


def prepare(specs: Sequence[InputSpec], graph: Any = None,
            shapes: Mapping[str, Sequence[int]] | None = None, npz: str | Path | None = None,
            seed: int = 0, dry_check: Callable | None = None
            ) -> tuple[Workload, dict[str, np.ndarray]]:
    """Resolve the workload for these inputs and make its arrays (real data where given).

    Sizes named for another export of the same model ("input" in ONNX, "x" in torch) apply by
    position when none of their names is this runtime's and count and ranks agree in order."""
    names = [s.name for s in specs]
    if (shapes and not set(shapes) & set(names) and len(shapes) == len(names)
            and all(s.shape is None or len(s.shape) == len(v)
                    for s, v in zip(specs, shapes.values()))):
        shapes = dict(zip(names, shapes.values()))
    data = None
    if npz:  # each array checked and cast to its input's type before anything else
        data = {s.name: cast_to_input(arr, s, Path(npz).name)
                for s, arr in zip(specs, read_npz(npz, specs).values())}
    wl = resolve_workload(graph, decls_of(specs, graph), shapes, data, dry_check=dry_check)
    feeds = fit_data(wl, data) if data else generate_workload(wl, seed)
    return wl, feeds


def generate(specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]] | None = None,
             seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays for inputs known only by their specs (no graph: integers stay in 0..9)."""
    return prepare(specs, None, shapes, seed=seed)[1]


def from_npz(path: str | Path, specs: Sequence[InputSpec],
             shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """Real inputs: shapes follow the data; a free batch is cut to the size asked (default 1).
    Each array is first cast to its input's dtype by `cast_to_input`, which refuses what
    cannot be cast without a raw numpy error (text for numbers, sequences, values an integer
    type cannot hold)."""
    raw = read_npz(path, specs)
    data = {spec.name: cast_to_input(raw[spec.name], spec, Path(path).name) for spec in specs}
    return fit_data(resolve_workload(None, decls_of(specs), shapes, data), data)


def read_npz(path: str | Path, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    return _read_npz(path, [s.name for s in specs])


def cast_to_input(arr: np.ndarray, spec: InputSpec, source: str) -> np.ndarray:
    """`arr` as the input's dtype, or an InputError saying why it cannot be: text for numbers,
    object arrays, values an integer type cannot hold. Rank and sizes are the workload's job."""
    from converters.workload import numpy_dtype

    if spec.dtype.startswith(("seq(", "map(", "optional(")):
        raise InputError(f"input {spec.name!r} takes a {spec.dtype}, which ModelDeck cannot feed")
    want = numpy_dtype(spec.dtype)
    arr = np.asarray(arr)
    if want == np.dtype(object):  # text inputs
        if arr.dtype.kind not in "USO":
            raise InputError(f"{source}: input {spec.name!r} takes text, the array holds "
                             f"{arr.dtype}")
        if arr.dtype.kind == "S":  # bytes would reach the runtime as bytes, never equal to text
            try:
                arr = np.char.decode(arr, "utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{source}: the bytes for input {spec.name!r} are not UTF-8 "
                                 f"text ({e.reason})") from None
        return arr.astype(object)
    if arr.dtype.kind in "USO":
        raise InputError(f"{source}: input {spec.name!r} takes {spec.dtype} numbers, the array "
                         f"holds {arr.dtype} text/objects")
    if np.issubdtype(want, np.integer) and arr.size:
        info = np.iinfo(want)
        lo, hi = arr.min(), arr.max()
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise InputError(f"{source}: input {spec.name!r} takes {spec.dtype}; the array "
                             "holds NaN or infinite values")
        if lo < info.min or hi > info.max:
            raise InputError(f"{source}: input {spec.name!r} takes {spec.dtype} "
                             f"({info.min}..{info.max}); the array holds {lo}..{hi}")
    if arr.dtype.type is np.void and want.kind == "V" and arr.dtype.itemsize == want.itemsize:
        return arr.view(want)  # what numpy.savez makes of a bfloat16 / float8 array: its bits
    try:
        return arr.astype(want, copy=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"{source}: the array for {spec.name!r} cannot become {spec.dtype}: "
                         f"{e}") from None
