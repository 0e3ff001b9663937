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
    InputDecl, Workload, WorkloadError, fit_data, parse_shape_args, resolve_workload,
)
from converters.workload import generate as generate_workload
from profilers.backends import InputSpec

InputError = WorkloadError  # kept for callers that catch it by this name

__all__ = ["InputError", "parse_shape_args", "prepare", "generate", "from_npz", "npz_array",
           "read_npz"]


def decls_of(specs: Sequence[InputSpec]) -> list[InputDecl]:
    return [InputDecl(s.name, s.dtype, None if s.shape is None else tuple(s.shape))
            for s in specs]


def prepare(specs: Sequence[InputSpec], graph: Any = None,
            shapes: Mapping[str, Sequence[int]] | None = None, npz: str | Path | None = None,
            seed: int = 0, dry_check: Callable | None = None
            ) -> tuple[Workload, dict[str, np.ndarray]]:
    """Resolve the workload for these inputs and make its arrays (real data where given)."""
    data = read_npz(npz, specs) if npz else None
    wl = resolve_workload(graph, decls_of(specs), shapes, data, dry_check=dry_check)
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
    data = {spec.name: cast_to_input(arr, spec, Path(path).name)
            for spec, arr in zip(specs, read_npz(path, specs).values())}
    wl = resolve_workload(None, decls_of(specs), shapes, data)
    # fit_data's np.ascontiguousarray turns a rank-0 array into rank 1: give it its shape back
    return {name: arr.reshape(wl.get(name).shape) if arr.ndim != len(wl.get(name).shape)
            else arr for name, arr in fit_data(wl, data).items()}


def npz_array(data, name: str, single_input: bool) -> np.ndarray | None:
    """The array an .npz holds for input `name`: by name, or the one called "inputs" when the
    model has a single input (the sample's held-out file). None when there is neither."""
    if name in data.files:
        return data[name]
    if single_input and "inputs" in data.files:
        return data["inputs"]
    return None


def read_npz(path: str | Path, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """One array per input from an .npz (no pickles). Raises InputError naming what is missing."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read inputs from {path}: {e}") from e
    if not hasattr(data, "files"):
        raise InputError(f"{path} holds one bare array, not named arrays: save the inputs with "
                         "numpy.savez(path, NAME=array, ...)")
    out = {}
    for spec in specs:
        arr = npz_array(data, spec.name, single_input=len(specs) == 1)
        if arr is None:
            raise InputError(f"{Path(path).name} has no array named {spec.name!r} (it has "
                             f"{', '.join(data.files) or 'none'}); name arrays after the model's "
                             "inputs")
        out[spec.name] = arr
    return out


# --- dtypes ------------------------------------------------------------------------------------

def cast_to_input(arr: np.ndarray, spec: InputSpec, source: str = "the data") -> np.ndarray:
    """`arr` in the dtype input `spec` takes, or InputError saying why it cannot be.

    Types numpy lacks (bfloat16, float8, int4: ml_dtypes) are taken from float or integer
    values, or bit for bit from the raw void arrays numpy.savez writes for them. Strings are
    taken only from text; integers and bools only when every value survives the cast (a float
    or out-of-range value would otherwise turn silently into another number).
    """
    from profilers.backends import EXTENDED_DTYPES, PACKED_BITS, dtype_of

    target = dtype_of(spec.dtype)
    if target is None:
        raise InputError(f"input {spec.name!r} takes {spec.dtype}, which ModelDeck cannot feed "
                         "from arrays (it feeds tensors of numbers, bools or strings)")
    arr = np.asarray(arr)
    if target.kind == "U":
        if arr.dtype.kind == "S":
            try:
                return np.char.decode(arr, "utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{source}: the bytes for input {spec.name!r} are not UTF-8 "
                                 f"text ({e.reason})") from None
        if arr.dtype.kind not in "UO":
            raise InputError(f"input {spec.name!r} takes strings; {source} holds "
                             f"{arr.dtype.name} numbers for it")
        return arr.astype(np.str_)
    if arr.dtype.kind in "USO":
        raise InputError(f"input {spec.name!r} takes {spec.dtype}; {source} holds "
                         f"{'text' if arr.dtype.kind in 'US' else 'Python objects'} for it")
    if arr.dtype.type is np.void:  # what numpy.savez makes of a bfloat16 / float8 / int4 array
        if spec.dtype in EXTENDED_DTYPES and arr.dtype.itemsize == target.itemsize:
            return arr.view(target)
        raise InputError(f"input {spec.name!r} takes {spec.dtype}; {source} holds raw "
                         f"{arr.dtype.itemsize}-byte records for it: save numbers instead")
    if arr.dtype == target:
        return arr
    with np.errstate(all="ignore"):
        out = arr.astype(target)
        if target.kind in "biu" or spec.dtype in PACKED_BITS and "float" not in spec.dtype:
            back = out.astype(arr.dtype)
            lost = ~((back == arr) | (np.isnan(arr) & np.isnan(back))
                     if arr.dtype.kind == "f" else back == arr)
            if lost.any():
                bad = arr[lost].reshape(-1)[0]
                raise InputError(f"input {spec.name!r} takes {spec.dtype}; {source} holds "
                                 f"{arr.dtype.name} values it cannot hold exactly (e.g. {bad})")
    return out
