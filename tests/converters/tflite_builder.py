"""Write small .tflite files with the plain `flatbuffers` package, so tests need no TensorFlow.

Only the part of the TFLite schema (tensorflow/lite/schema/schema.fbs) that a test model needs
is written here: float32/int32 tensors, constant buffers and the CONV_2D, FULLY_CONNECTED and
ADD builtin ops. Field slots below are the field ids of that schema, in declaration order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np

# enum TensorType
_TENSOR_TYPES = {"float32": 0, "int32": 2}

# enum BuiltinOperator
CONV_2D = 3
FULLY_CONNECTED = 9
ADD = 0

# union BuiltinOptions: the member index of each options table
_OPTIONS_TYPE = {CONV_2D: 1, FULLY_CONNECTED: 8, ADD: 11}

# enum ActivationFunctionType / Padding
RELU = 1
SAME = 0


@dataclass
class _Tensor:
    name: str
    shape: list[int]
    dtype: str
    buffer: int  # index into Model.buffers; 0 is the empty buffer (no constant data)


@dataclass
class _Op:
    code: int
    inputs: list[int]
    outputs: list[int]
    options: dict[str, int]


@dataclass
class TfliteModelBuilder:
    """Collect tensors and ops, then `to_bytes()` writes one subgraph as a TFLite flatbuffer.

    As flatc does, a field equal to its schema default is left out (FLOAT32, ADD, SAME are 0).
    """

    tensors: list[_Tensor] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])  # buffer 0 is empty by convention
    ops: list[_Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def tensor(self, name: str, shape: list[int], data: np.ndarray | None = None,
               dtype: str = "float32") -> int:
        """Add a tensor; with `data` it is a constant (a weight). Returns its index."""
        buffer = 0
        if data is not None:
            data = np.ascontiguousarray(data, dtype=dtype)
            assert list(data.shape) == list(shape), (name, data.shape, shape)
            self.buffers.append(data.tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(_Tensor(name, list(shape), dtype, buffer))
        return len(self.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], **options: int) -> None:
        self.ops.append(_Op(code, inputs, outputs, options))

    # --- serialisation -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        b = flatbuffers.Builder(1024)
        buffers = [self._buffer(b, data) for data in self.buffers]
        tensors = [self._tensor(b, t) for t in self.tensors]
        codes = sorted({o.code for o in self.ops})
        op_codes = [self._operator_code(b, c) for c in codes]
        ops = [self._operator(b, o, codes.index(o.code)) for o in self.ops]

        tensors_vec = _table_vector(b, tensors)
        inputs_vec = _int_vector(b, self.inputs)
        outputs_vec = _int_vector(b, self.outputs)
        ops_vec = _table_vector(b, ops)
        name = b.CreateString("main")
        b.StartObject(5)  # table SubGraph
        b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)
        b.PrependUOffsetTRelativeSlot(1, inputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, outputs_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, ops_vec, 0)
        b.PrependUOffsetTRelativeSlot(4, name, 0)
        subgraph = b.EndObject()

        codes_vec = _table_vector(b, op_codes)
        subgraphs_vec = _table_vector(b, [subgraph])
        description = b.CreateString("ModelDeck test model")
        buffers_vec = _table_vector(b, buffers)
        b.StartObject(5)  # table Model
        b.PrependUint32Slot(0, 3, 0)  # schema version 3
        b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
        b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)
        b.PrependUOffsetTRelativeSlot(3, description, 0)
        b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)
        model = b.EndObject()
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _buffer(b: flatbuffers.Builder, data: bytes) -> int:
        vec = None
        if data:
            b.StartVector(1, len(data), 16)  # schema: data:[ubyte] (force_align: 16)
            b.head -= len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            vec = b.EndVector()
        b.StartObject(1)  # table Buffer
        if vec is not None:
            b.PrependUOffsetTRelativeSlot(0, vec, 0)
        return b.EndObject()

    @staticmethod
    def _tensor(b: flatbuffers.Builder, t: _Tensor) -> int:
        shape = _int_vector(b, t.shape)
        name = b.CreateString(t.name)
        b.StartObject(4)  # table Tensor: shape, type, buffer, name
        b.PrependUOffsetTRelativeSlot(0, shape, 0)
        b.PrependInt8Slot(1, _TENSOR_TYPES[t.dtype], 0)
        b.PrependUint32Slot(2, t.buffer, 0)
        b.PrependUOffsetTRelativeSlot(3, name, 0)
        return b.EndObject()

    @staticmethod
    def _operator_code(b: flatbuffers.Builder, code: int) -> int:
        b.StartObject(4)  # table OperatorCode
        b.PrependInt8Slot(0, code, 0)  # deprecated_builtin_code, still read by old readers
        b.PrependInt32Slot(2, 1, 0)  # version
        b.PrependInt32Slot(3, code, 0)  # builtin_code
        return b.EndObject()

    @staticmethod
    def _operator(b: flatbuffers.Builder, op: _Op, opcode_index: int) -> int:
        options = _options(b, op)
        inputs = _int_vector(b, op.inputs)
        outputs = _int_vector(b, op.outputs)
        b.StartObject(5)  # table Operator; the union takes two slots (type 3, value 4)
        b.PrependUint32Slot(0, opcode_index, 0)
        b.PrependUOffsetTRelativeSlot(1, inputs, 0)
        b.PrependUOffsetTRelativeSlot(2, outputs, 0)
        b.PrependUint8Slot(3, _OPTIONS_TYPE[op.code], 0)
        b.PrependUOffsetTRelativeSlot(4, options, 0)
        return b.EndObject()


def _options(b: flatbuffers.Builder, op: _Op) -> int:
    """The builtin options table of one op; unset fields keep the schema defaults."""
    o = op.options
    if op.code == CONV_2D:
        b.StartObject(6)  # padding, stride_w, stride_h, fused_activation, dilation_w, dilation_h
        b.PrependInt8Slot(0, o.get("padding", SAME), 0)
        b.PrependInt32Slot(1, o.get("stride_w", 1), 0)
        b.PrependInt32Slot(2, o.get("stride_h", 1), 0)
        b.PrependInt8Slot(3, o.get("activation", 0), 0)
        b.PrependInt32Slot(4, 1, 0)
        b.PrependInt32Slot(5, 1, 0)
    elif op.code == FULLY_CONNECTED:
        b.StartObject(3)  # fused_activation, weights_format (default), keep_num_dims
        b.PrependInt8Slot(0, o.get("activation", 0), 0)
        b.PrependBoolSlot(2, bool(o.get("keep_num_dims", 0)), False)
    elif op.code == ADD:
        b.StartObject(1)  # fused_activation
        b.PrependInt8Slot(0, o.get("activation", 0), 0)
    else:
        raise ValueError(f"no options writer for builtin op {op.code}")
    return b.EndObject()


def _int_vector(b: flatbuffers.Builder, values: list[int]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(v)
    return b.EndVector()


def _table_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def conv_fc_model(seed: int = 0) -> bytes:
    """input [1,8,8,3] -> CONV_2D 3x3, 4 filters, SAME, fused RELU -> [1,8,8,4]
    -> FULLY_CONNECTED 256 -> 10 -> ADD a constant -> output [1,10].

    Weights: conv 4*3*3*3 + 4 bias = 112; fc 10*256 + 10 bias = 2570; add constant 10.
    """
    rng = np.random.default_rng(seed)
    m = TfliteModelBuilder()
    x = m.tensor("input", [1, 8, 8, 3])
    conv_w = m.tensor("conv/weights", [4, 3, 3, 3], rng.standard_normal((4, 3, 3, 3)))  # OHWI
    conv_b = m.tensor("conv/bias", [4], rng.standard_normal(4))
    conv_y = m.tensor("conv/Relu", [1, 8, 8, 4])
    fc_w = m.tensor("fc/weights", [10, 256], rng.standard_normal((10, 256)))
    fc_b = m.tensor("fc/bias", [10], rng.standard_normal(10))
    fc_y = m.tensor("fc/MatMul", [1, 10])
    shift = m.tensor("shift", [1, 10], rng.standard_normal((1, 10)))
    out = m.tensor("output", [1, 10])
    m.op(CONV_2D, [x, conv_w, conv_b], [conv_y], padding=SAME, activation=RELU)
    m.op(FULLY_CONNECTED, [conv_y, fc_w, fc_b], [fc_y])
    m.op(ADD, [fc_y, shift], [out])
    m.inputs, m.outputs = [x], [out]
    return m.to_bytes()
