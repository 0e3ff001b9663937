"""Compression passes: one module each, registered by name, typed options.

Add a pass: a module here with a `@register_pass` class and a frozen `Options` dataclass
(validated in __post_init__), imported at the bottom of this file, and one test. A pass reads
`model`, writes a NEW file under `ctx.work_dir` (never touching its source) and returns it.
The pipeline (converters/pipeline.py) measures size, parameters, sparsity and fidelity around
every pass, so a pass only reports what is specific to it in `PassResult.details`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converters.errors import Cancelled, ModelDeckError  # noqa: F401  (passes import it here)


class PassError(ModelDeckError):
    """A pass cannot run on this model; the message names the node / op / option at fault."""


@dataclass(frozen=True)
class ModelFile:
    """A model on disk. For OpenVINO IR `path` is the .xml (its .bin lies beside it)."""

    path: Path
    format: str  # "onnx" | "openvino" | "torch" | "tflite"

    def files(self) -> list[Path]:
        if self.format == "openvino":
            return [self.path, self.path.with_suffix(".bin")]
        if self.format == "onnx":
            data = self.path.with_name(self.path.name + ".data")
            return [self.path, data] if data.exists() else [self.path]
        return [self.path]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files() if p.exists())


@dataclass
class CalibrationData:
    """Model inputs for calibration / distillation: name -> array with a leading sample axis."""

    arrays: dict[str, np.ndarray]
    source: str  # "sample", a path, or "random"
    warning: str | None = None  # set for random data: shown to the user, never hidden

    @property
    def count(self) -> int:
        return min(len(a) for a in self.arrays.values()) if self.arrays else 0

    def batches(self, batch_size: int = 1, limit: int | None = None):
        """Yields {name: array[batch]} feeds."""
        n = self.count if limit is None else min(self.count, limit)
        for i in range(0, n, batch_size):
            yield {k: v[i:i + batch_size] for k, v in self.arrays.items()}


@dataclass
class PassContext:
    work_dir: Path
    progress: Callable[[float, str], None] = lambda frac, msg: None
    cancelled: Callable[[], bool] = lambda: False
    calibration: CalibrationData | None = None

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled")

    def output_path(self, stem: str, suffix: str) -> Path:
        """A fresh file name in the work folder (never the source's)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"{stem}{suffix}"
        i = 1
        while path.exists() or path.with_suffix(".bin").exists() and suffix == ".xml":
            path = self.work_dir / f"{stem}.{i}{suffix}"
            i += 1
        return path

    def need_calibration(self, pass_name: str) -> CalibrationData:
        if self.calibration is None or not self.calibration.count:
            raise PassError(f"{pass_name} needs calibration data: choose an .npz of model "
                            "inputs, a folder of images, 'sample' for the bundled digits, or "
                            "'random' (a visible warning; accuracy will suffer)")
        return self.calibration


@dataclass
class PassResult:
    output: ModelFile
    changed: bool
    details: dict[str, Any] = field(default_factory=dict)  # what this pass did, JSON-safe
    messages: list[str] = field(default_factory=list)  # things the user must read


class Pass:
    name: ClassVar[str]
    accepts: ClassVar[frozenset[str]]  # input formats
    description: ClassVar[str] = ""
    needs_calibration: ClassVar[bool] = False
    # what it does to the weights, for the ordering rules (converters/passes/order.py):
    # "graph" | "structure" | "recovery" | "precision"
    stage: ClassVar[str] = "graph"

    @dataclass(frozen=True)
    class Options:
        pass

    def run(self, model: ModelFile, opts: Any, ctx: PassContext) -> PassResult:
        raise NotImplementedError


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    if cls.name in PASSES:
        raise ValueError(f"pass {cls.name!r} registered twice")
    PASSES[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    try:
        return PASSES[name]
    except KeyError:
        raise PassError(f"unknown pass {name!r}; passes: {', '.join(sorted(PASSES))}") from None


def _coerce(value: str, annotation: Any, where: str) -> Any:
    """'0.5' -> 0.5 for a float field, 'a;b' -> ('a', 'b') for a tuple[str, ...] field, ..."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        if value.lower() in ("none", "null", ""):
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    if origin is typing.Literal:
        for choice in args:  # Literal[4, 8] takes "4"
            if str(choice) == value:
                return choice
        raise PassError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
    if origin in (tuple, list):
        items = [v for v in value.split(";") if v]
        return tuple(_coerce(v, args[0] if args else str, where) for v in items)
    if annotation is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise PassError(f"{where}: {value!r} is not true/false")
    try:
        return annotation(value) if annotation in (int, float, str) else value
    except ValueError:
        raise PassError(f"{where}: {value!r} is not a valid {annotation.__name__}") from None


def make_options(pass_cls: type[Pass], values: dict[str, Any]) -> Any:
    """Typed Options from strings (CLI) or JSON values (recipes, GUI). Unknown keys refused."""
    opts_cls = pass_cls.Options
    hints = typing.get_type_hints(opts_cls)
    names = {f.name for f in dataclasses.fields(opts_cls)}
    unknown = set(values) - names
    if unknown:
        raise PassError(f"pass {pass_cls.name}: unknown option(s) {sorted(unknown)}; options: "
                        f"{', '.join(sorted(names)) or 'none'}")
    kwargs = {}
    for k, v in values.items():
        where = f"pass {pass_cls.name} option {k}"
        if isinstance(v, str):
            v = _coerce(v, hints[k], where)
        elif isinstance(v, list):
            v = tuple(v)
        kwargs[k] = v
    try:
        return opts_cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise PassError(f"pass {pass_cls.name}: {e}") from None


def parse_pass_arg(text: str) -> tuple[str, dict[str, str]]:
    """'int8-static:method=entropy,per_channel=true' -> ('int8-static', {...})."""
    name, _, rest = text.partition(":")
    values: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        k, sep, v = item.partition("=")
        if not sep:
            raise PassError(f"bad --pass {text!r}: options are key=value separated by commas "
                            "(lists use ';'), e.g. int8-static:method=entropy,exclude=a;b")
        values[k.strip()] = v.strip()
    return name.strip(), values


def options_dict(opts: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(opts).items()}


from converters.passes import (  # noqa: E402,F401
    distill, fp16, int8_dynamic, int8_static, lowrank, prune_channels, prune_magnitude,
    simplify, weight_only,
)
