"""Format conversions: PyTorch -> ONNX, and ONNX / TFLite / PyTorch -> OpenVINO IR.

A conversion is a step like a pass (same PassContext / PassResult), looked up by
(source format, target format). The pipeline chains them: torch -> onnx -> openvino.
"""
from __future__ import annotations

from collections.abc import Callable

from converters.passes import ModelFile, PassContext, PassError, PassResult

Conversion = Callable[[ModelFile, PassContext], PassResult]
CONVERSIONS: dict[tuple[str, str], Conversion] = {}


def register_conversion(source: str, target: str):
    def deco(fn: Conversion) -> Conversion:
        CONVERSIONS[(source, target)] = fn
        return fn
    return deco


def conversion_path(source: str, target: str) -> list[tuple[str, str]]:
    """Shortest chain of registered conversions from source to target format."""
    if source == target:
        return []
    frontier: list[list[tuple[str, str]]] = [[]]
    seen = {source}
    while frontier:
        nxt = []
        for path in frontier:
            at = path[-1][1] if path else source
            for (s, t) in CONVERSIONS:
                if s == at and t not in seen:
                    if t == target:
                        return path + [(s, t)]
                    seen.add(t)
                    nxt.append(path + [(s, t)])
        frontier = nxt
    raise PassError(f"ModelDeck cannot convert {source} models to {target}")


from converters.export import to_onnx, to_openvino  # noqa: E402,F401
