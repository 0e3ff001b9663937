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


HUB = "onnx"


def conversion_path(source: str, target: str) -> list[tuple[str, str]]:
    """Chain of registered conversions from source to target format.

    Routes go through ONNX when they can (torch -> onnx -> openvino rather than the direct
    OpenVINO PyTorch frontend): the ONNX step can be verified node by node and kept as a
    variant. Otherwise the shortest chain.
    """
    if source == target:
        return []
    if HUB not in (source, target):
        try:
            return _shortest(source, HUB) + _shortest(HUB, target)
        except PassError:
            pass
    return _shortest(source, target)


def _shortest(source: str, target: str) -> list[tuple[str, str]]:
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
