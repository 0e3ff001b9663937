"""Read a model's weight values (not only their shapes): sparsity after pruning, for example."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from converters.passes import ModelFile


def weight_arrays(model: ModelFile) -> Iterator[tuple[str, np.ndarray]]:
    """(name, values) of every stored weight tensor. Frameworks imported lazily."""
    if model.format == "onnx":
        yield from _onnx_weights(model)
    elif model.format in ("openvino", "tflite"):
        yield from _openvino_weights(model)
    elif model.format == "torch":
        yield from _torch_weights(model)
    else:
        raise ValueError(f"cannot read weights of {model.format} models")


def _onnx_weights(model: ModelFile):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model.path))  # external data is read from the model's folder

    def graph_weights(g):
        for t in g.initializer:
            yield t.name, numpy_helper.to_array(t)
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and n.op_type == "Constant":
                    yield n.output[0], numpy_helper.to_array(a.t)
                elif a.type == onnx.AttributeProto.GRAPH:
                    yield from graph_weights(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        yield from graph_weights(sg)

    yield from graph_weights(proto.graph)


def _openvino_weights(model: ModelFile):
    import openvino as ov

    m = ov.Core().read_model(str(model.path))
    for op in m.get_ops():
        if op.get_type_name() == "Constant":
            yield op.get_friendly_name(), np.asarray(op.get_data())


def _torch_weights(model: ModelFile):
    from converters.formats import Trust
    from converters.formats.torch_format import load_weights_for_analysis

    yield from load_weights_for_analysis(model.path, Trust())


def weight_sparsity(model: ModelFile) -> float:
    """Exact zeros over all elements of the weight matrices and kernels (>= 2 dims).

    Biases, norms and scalars are left out: pruning does not target them, and counting them
    would dilute the figure.
    """
    zeros = total = 0
    for _, a in weight_arrays(model):
        if a.ndim < 2 or not np.issubdtype(a.dtype, np.number):
            continue
        zeros += int(a.size - np.count_nonzero(a))
        total += int(a.size)
    return zeros / total if total else 0.0
