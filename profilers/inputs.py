"""Inputs for a run: generated from the model's input specs, or real ones from an .npz.

Generated data is prepared before the timed loop. Floats are uniform in [0, 1) (image-like);
integers in [0, 10) so token ids and indices stay in range for typical vocabularies/tables.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.errors import ModelDeckError
from profilers.backends import InputSpec


class InputError(ModelDeckError):
    """Inputs cannot be built: missing dims, wrong shapes, unreadable .npz."""


def parse_shape_args(items: list[str] | None) -> dict[str, list[int]]:
    """["input=1x3x224x224", ...] -> {"input": [1, 3, 224, 224]}."""
    shapes: dict[str, list[int]] = {}
    for item in items or []:
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.lower().replace(",", "x").split("x")]
            if any(d < 1 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise InputError(f"bad --shape {item!r}: expected NAME=DxDxD, e.g. input=1x3x224x224"
                             ) from None
    return shapes


def resolve_shape(spec: InputSpec, override: list[int] | None) -> list[int]:
    if spec.shape is None:  # the format stores no shape at all (TorchScript)
        if override is None:
            raise InputError(f"the model does not say what shape input {spec.name!r} takes: "
                             f"give it with --shape {spec.name}=DxDxD")
        return list(override)
    if override is not None:
        if len(override) != len(spec.shape):
            raise InputError(f"--shape {spec.name}: rank {len(override)} given, the model "
                             f"expects rank {len(spec.shape)} {_fmt(spec.shape)}")
        for i, (want, got) in enumerate(zip(spec.shape, override)):
            if isinstance(want, int) and want != got:
                raise InputError(f"--shape {spec.name}: dim {i} is fixed to {want} in the model, "
                                 f"{got} given")
        return list(override)
    shape = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif i == 0:
            shape.append(1)  # a dynamic batch: one sample, the latency case
        else:
            raise InputError(f"input {spec.name!r} has dynamic dims {_fmt(spec.shape)}: give them "
                             f"with --shape {spec.name}=" + "x".join(
                                 str(x) if isinstance(x, int) and x > 0 else "N" for x in
                                 [1, *spec.shape[1:]]))
    return shape


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def generate(specs: list[InputSpec], shapes: dict[str, list[int]] | None = None,
             seed: int = 0) -> dict[str, np.ndarray]:
    shapes = shapes or {}
    unknown = set(shapes) - {s.name for s in specs}
    if unknown:
        raise InputError(f"--shape names {sorted(unknown)} are not inputs of the model "
                         f"(inputs: {[s.name for s in specs]})")
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        shape = resolve_shape(spec, shapes.get(spec.name))
        dtype = np.dtype(spec.dtype)
        if dtype == np.bool_:
            out[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        elif np.issubdtype(dtype, np.integer):
            out[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            out[spec.name] = rng.random(size=shape, dtype=np.float32).astype(dtype)
    return out


def npz_array(data, name: str, single_input: bool) -> np.ndarray | None:
    """The array an .npz holds for input `name`: by name, or the one called "inputs" when the
    model has a single input (the sample's held-out file). None when there is neither."""
    if name in data.files:
        return data[name]
    if single_input and "inputs" in data.files:
        return data["inputs"]
    return None


def from_npz(path: str | Path, specs: list[InputSpec],
             shapes: dict[str, list[int]] | None = None) -> dict[str, np.ndarray]:
    """Real inputs. Arrays are matched by input name; a single-input model also takes an array
    named "inputs" (the sample's held-out file). The batch is cut to the requested size."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read inputs from {path}: {e}") from e
    shapes = shapes or {}
    out = {}
    for spec in specs:
        arr = npz_array(data, spec.name, single_input=len(specs) == 1)
        if arr is None:
            raise InputError(f"{path} has no array named {spec.name!r} (it has {data.files})")
        want = resolve_shape(spec, shapes.get(spec.name))
        if arr.ndim != len(want) or list(arr.shape[1:]) != want[1:]:
            raise InputError(f"{path}: array for {spec.name!r} has shape {list(arr.shape)}, the "
                             f"model expects {want} (batch dim may differ)")
        if arr.shape[0] < want[0]:
            raise InputError(f"{path}: {arr.shape[0]} samples for {spec.name!r}, batch "
                             f"{want[0]} asked")
        out[spec.name] = np.ascontiguousarray(arr[: want[0]].astype(spec.dtype, copy=False))
    return out
