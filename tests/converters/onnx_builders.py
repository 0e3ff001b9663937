"""Small ONNX models built with onnx.helper for the edge cases real models have."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make(nodes, inputs, outputs, initializers=(), opset=17, extra_opsets=(), value_info=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers),
                              value_info=list(value_info))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="modeldeck-tests")
    model.ir_version = 8
    return model


def tensor_in(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def weight(name, shape, seed=0, dtype=np.float32):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(dtype),
                                   name)


def conv_model(groups=1, dilation=1, cin=8, cout=16, k=3, hw=32, batch="batch"):
    w = weight("W", [cout, cin // groups, k, k])
    b = weight("B", [cout])
    conv = helper.make_node("Conv", ["x", "W", "B"], ["y"], name="/block/conv/Conv",
                            group=groups, dilations=[dilation, dilation], pads=[0, 0, 0, 0])
    return make([conv], [tensor_in("x", [batch, cin, hw, hw])], [tensor_in("y", None)], [w, b])


def constant_weight_model():
    """Weights held in Constant nodes instead of initializers (common in exported models)."""
    w = helper.make_node("Constant", [], ["W"], value=weight("Wc", [64, 32]), name="const_w")
    b = helper.make_node("Constant", [], ["B"], value=weight("Bc", [32], seed=1), name="const_b")
    mm = helper.make_node("MatMul", ["x", "W"], ["h"], name="/fc/MatMul")
    add = helper.make_node("Add", ["h", "B"], ["y"], name="/fc/Add")
    return make([w, b, mm, add], [tensor_in("x", [4, 64])], [tensor_in("y", None)])


def if_model():
    """Most of the work inside If branches, each with its own weight."""
    def branch(tag, seed):
        w = weight(f"W_{tag}", [16, 16], seed=seed)
        mm = helper.make_node("MatMul", ["x", f"W_{tag}"], [f"y_{tag}"], name=f"{tag}/MatMul")
        relu = helper.make_node("Relu", [f"y_{tag}"], [f"out_{tag}"], name=f"{tag}/Relu")
        return helper.make_graph([mm, relu], tag, [], [tensor_in(f"out_{tag}", [2, 16])],
                                 initializer=[w])

    node = helper.make_node("If", ["cond"], ["y"], name="if0",
                            then_branch=branch("then", 1), else_branch=branch("else", 2))
    return make([node], [tensor_in("x", [2, 16]), tensor_in("cond", [], TensorProto.BOOL)],
                [tensor_in("y", [2, 16])])


def lstm_model(seq=10, batch=3, inp=20, hidden=32, directions=1):
    w = weight("W", [directions, 4 * hidden, inp])
    r = weight("R", [directions, 4 * hidden, hidden], seed=1)
    node = helper.make_node("LSTM", ["x", "W", "R"], ["Y", "Y_h"], hidden_size=hidden,
                            direction="bidirectional" if directions == 2 else "forward")
    return make([node], [tensor_in("x", [seq, batch, inp])],
                [tensor_in("Y", None), tensor_in("Y_h", None)], [w, r])


def int_input_model():
    """Token ids in, embeddings out: an int64 input feeding Gather."""
    table = weight("emb", [1000, 64])
    gather = helper.make_node("Gather", ["emb", "ids"], ["e"], name="/embed/Gather")
    mean = helper.make_node("ReduceMean", ["e"], ["y"], keepdims=0, axes=[1])
    return make([gather, mean], [tensor_in("ids", ["batch", "seq"], TensorProto.INT64)],
                [tensor_in("y", None)], [table], opset=13)


def custom_domain_model():
    """A com.microsoft op and an op of an unknown domain: read, listed as not counted."""
    gelu = helper.make_node("FastGelu", ["x"], ["g"], domain="com.microsoft", name="gelu")
    mine = helper.make_node("MySecretOp", ["g"], ["y"], domain="org.example", name="secret")
    return make([gelu, mine], [tensor_in("x", [2, 8])], [tensor_in("y", [2, 8])],
                extra_opsets=[("com.microsoft", 1), ("org.example", 1)])


def save_with_external_data(model: onnx.ModelProto, path, location="model.onnx.data"):
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)


def loop_body():
    """A Loop body that adds ones to a [4] accumulator each iteration (carries cond through)."""
    return helper.make_graph(
        [helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [tensor_in("i", [], TensorProto.INT64), tensor_in("cond_in", [], TensorProto.BOOL),
         tensor_in("acc_in", [4])],
        [tensor_in("cond_out", [], TensorProto.BOOL), tensor_in("acc_out", [4])],
        initializer=[weight("one", [4])])

