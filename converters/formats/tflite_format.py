"""TensorFlow Lite flatbuffers, read through OpenVINO's TFLite frontend (no TensorFlow needed).

The graph shown is OpenVINO's conversion of the model: NHWC layouts appear as Transpose nodes
around convolutions, and fused activations as separate nodes.
"""
from __future__ import annotations

import logging
import mmap
import struct
from pathlib import Path
from typing import Any

from converters.errors import ModelLoadError
from converters.formats import Format, Trust, register_format, sha256_of
from converters.formats.openvino_format import (graph_from_ov_model, ov_error_summary,
                                                read_with_frontend, reshape_inputs)
from converters.graph import ModelGraph, ModelMeta

log = logging.getLogger(__name__)

_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8

# --- a flatbuffer verifier for the part of the TFLite schema OpenVINO reads -----------------
# OpenVINO's TFLite frontend trusts the file: one flipped bit in an offset or an index makes it
# read outside the buffer (SIGSEGV). Checking every offset, vector length and index first is
# cheap (a linear walk over tables, never over weight bytes) and turns those into a message.
# Field ids follow tensorflow/lite/schema/schema.fbs, in declaration order.

_S = ("scalar",)
_SCHEMA: dict[str, dict[int, tuple]] = {
    "Model": {0: (*_S, 4), 1: ("tables", "OperatorCode"), 2: ("tables", "SubGraph"),
              3: ("str",), 4: ("tables", "Buffer"), 5: ("vec", 4), 6: ("tables", "Metadata"),
              7: ("tables", "SignatureDef")},
    "OperatorCode": {0: (*_S, 1), 1: ("str",), 2: (*_S, 4), 3: (*_S, 4)},
    "SubGraph": {0: ("tables", "Tensor"), 1: ("vec", 4), 2: ("vec", 4),
                 3: ("tables", "Operator"), 4: ("str",)},
    "Tensor": {0: ("vec", 4), 1: (*_S, 1), 2: (*_S, 4), 3: ("str",),
               4: ("table", "Quantization"), 5: (*_S, 1), 6: ("table", "Sparsity"),
               7: ("vec", 4), 8: (*_S, 1), 9: ("tables", "Any")},
    "Quantization": {0: ("vec", 4), 1: ("vec", 4), 2: ("vec", 4), 3: ("vec", 8), 4: (*_S, 1),
                     5: ("table", "Any"), 6: (*_S, 4)},
    "Sparsity": {0: ("vec", 4), 1: ("vec", 4), 2: ("tables", "DimensionMetadata")},
    "DimensionMetadata": {0: (*_S, 1), 1: (*_S, 4), 2: (*_S, 1), 3: ("table", "IndexVector"),
                          4: (*_S, 1), 5: ("table", "IndexVector")},
    "IndexVector": {0: ("vec", 1)},  # Int32/Uint16/Uint8Vector: length checked per byte
    "Operator": {0: (*_S, 4), 1: ("vec", 4), 2: ("vec", 4), 3: (*_S, 1), 4: ("table", "Any"),
                 5: ("vec", 1), 6: (*_S, 1), 7: ("vec", 1), 8: ("vec", 4), 9: (*_S, 8),
                 10: (*_S, 8), 11: (*_S, 2), 12: ("table", "Any")},
    "Buffer": {0: ("vec", 1), 1: (*_S, 8), 2: (*_S, 8)},
    "Metadata": {0: ("str",), 1: (*_S, 4)},
    "SignatureDef": {0: ("tables", "TensorMap"), 1: ("tables", "TensorMap"), 2: ("str",),
                     4: (*_S, 4)},
    "TensorMap": {0: ("str",), 1: (*_S, 4)},
    "Any": {},  # union members and unknown tables: the table itself is bounds-checked
}
# TensorType -> bits per element (STRING, RESOURCE, VARIANT have no fixed size)
_TENSOR_BITS = {0: 32, 1: 16, 2: 32, 3: 8, 4: 64, 6: 8, 7: 16, 8: 64, 9: 8, 10: 64, 11: 128,
                12: 64, 15: 32, 16: 16, 17: 4, 18: 16}
_MAX_TENSOR_TYPE = 31
_MAX_TABLES = 5_000_000


class _Damaged(Exception):
    """Where the flatbuffer breaks; turned into a ModelLoadError naming the file."""


class _Verifier:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.n = len(buf)
        self.tables = 0

    def _u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > self.n:
            raise _Damaged(f"offset {pos} points outside the file")
        return struct.unpack_from("<I", self.buf, pos)[0]

    def _scalar(self, pos: int, size: int) -> int:
        fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[size]
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def _vector(self, pos: int, elem: int, what: str) -> tuple[int, int]:
        """(start of elements, length) of the vector at pos, bounds-checked."""
        length = self._u32(pos)
        start = pos + 4
        if start + length * elem > self.n:
            raise _Damaged(f"{what} claims {length} elements, past the end of the file")
        return start, length

    def table(self, pos: int, kind: str, depth: int = 0) -> dict[int, Any]:
        """Check one table and the fields the schema names; return their decoded values
        (scalars as ints, vectors of scalars as (start, length), tables as dicts)."""
        self.tables += 1
        if self.tables > _MAX_TABLES or depth > 64:
            raise _Damaged("too many or too deeply nested tables")
        vt = pos - struct.unpack("<i", struct.pack("<I", self._u32(pos)))[0]
        if vt < 0 or vt + 4 > self.n:
            raise _Damaged(f"a {kind} table's vtable lies outside the file")
        vt_size, obj_size = struct.unpack_from("<HH", self.buf, vt)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.n or pos + obj_size > self.n:
            raise _Damaged(f"a {kind} table has an impossible layout")
        out: dict[int, Any] = {-1: pos}  # -1: where the table starts (for tests and messages)
        for fid, spec in _SCHEMA[kind].items():
            slot = 4 + 2 * fid
            if slot + 2 > vt_size:
                continue
            off = struct.unpack_from("<H", self.buf, vt + slot)[0]
            if not off:
                continue
            size = spec[1] if spec[0] == "scalar" else 4
            if off + size > obj_size:
                raise _Damaged(f"field {fid} of a {kind} table lies outside the table")
            field_pos = pos + off
            if spec[0] == "scalar":
                out[fid] = self._scalar(field_pos, size)
                continue
            target = field_pos + self._u32(field_pos)
            if target + 4 > self.n:
                raise _Damaged(f"field {fid} of a {kind} table points outside the file")
            if spec[0] == "str":
                start, length = self._vector(target, 1, f"a string in a {kind} table")
                if start + length >= self.n or self.buf[start + length] != 0:
                    raise _Damaged(f"a string in a {kind} table is not terminated")
                out[fid] = (start, length)
            elif spec[0] == "vec":
                out[fid] = self._vector(target, spec[1], f"a vector in a {kind} table")
            elif spec[0] == "table":
                out[fid] = self.table(target, spec[1], depth + 1)
            else:  # vector of tables
                start, length = self._vector(target, 4, f"a table list in a {kind} table")
                out[fid] = [self.table(start + 4 * i + self._u32(start + 4 * i), spec[1],
                                       depth + 1) for i in range(length)]
        return out

    def field_position(self, table_pos: int, fid: int) -> int | None:
        """Byte position of a present field of the table at table_pos."""
        vt = table_pos - struct.unpack("<i", struct.pack("<I", self._u32(table_pos)))[0]
        vt_size = struct.unpack_from("<H", self.buf, vt)[0]
        if 4 + 2 * fid + 2 > vt_size:
            return None
        off = struct.unpack_from("<H", self.buf, vt + 4 + 2 * fid)[0]
        return table_pos + off if off else None

    def ints(self, vec: tuple[int, int] | None) -> list[int]:
        if vec is None:
            return []
        start, length = vec
        return list(struct.unpack_from(f"<{length}i", self.buf, start))


def verify_tflite(buf: bytes) -> None:
    """Raise _Damaged when the flatbuffer's offsets, lengths or indices are not consistent."""
    if len(buf) < 8:
        raise _Damaged("the file is shorter than a flatbuffer header")
    v = _Verifier(buf)
    model = v.table(v._u32(0), "Model")
    codes = model.get(1, [])
    buffers = model.get(4, [])
    subgraphs = model.get(2, [])
    if not subgraphs:
        raise _Damaged("the model has no subgraph")
    for b in buffers:
        off, size = b.get(1, 0), b.get(2, 0)
        if off > 1 and off + size > len(buf):
            raise _Damaged(f"a weight buffer at byte {off} ({size} bytes) is past the end of "
                           "the file")
    for si, sg in enumerate(subgraphs):
        tensors = sg.get(0, [])
        nt = len(tensors)
        for ti, t in enumerate(tensors):
            dims = v.ints(t.get(0))
            ttype = t.get(1, 0)
            if ttype > _MAX_TENSOR_TYPE:
                raise _Damaged(f"tensor {ti} of subgraph {si} has an unknown type {ttype}")
            if any(d < -1 for d in dims) or any(d < -1 for d in v.ints(t.get(7))):
                raise _Damaged(f"tensor {ti} of subgraph {si} has a negative dimension")
            bi = t.get(2, 0)
            if bi >= max(len(buffers), 1):
                raise _Damaged(f"tensor {ti} of subgraph {si} uses buffer {bi} of "
                               f"{len(buffers)}")
            data = buffers[bi].get(0) if buffers else None
            bits = _TENSOR_BITS.get(ttype)
            stored = data[1] if data else buffers[bi].get(2, 0) if buffers else 0
            if stored and bits and 6 not in t and all(d >= 0 for d in dims):
                need = 1
                for d in dims:
                    need *= d
                need = (need * bits + 7) // 8
                if need != stored:
                    raise _Damaged(f"tensor {ti} of subgraph {si} has shape {dims[:8]} "
                                   f"({need} bytes) but its buffer holds {stored} bytes")
        for name, vec in (("inputs", sg.get(1)), ("outputs", sg.get(2))):
            bad = [i for i in v.ints(vec) if not 0 <= i < nt]
            if bad:
                raise _Damaged(f"subgraph {si} {name} name tensor {bad[0]} of {nt}")
        # Values a graph starts with: its inputs, constants, variables. Every other tensor is
        # written by exactly one operator before it is read (TFLite stores ops in run order).
        ready = set(v.ints(sg.get(1)))
        for ti, t in enumerate(tensors):
            bi = t.get(2, 0)
            data = buffers[bi].get(0) if buffers else None
            if (data and data[1]) or (buffers and buffers[bi].get(2, 0)) or t.get(5, 0):
                ready.add(ti)
        for oi, op in enumerate(sg.get(3, [])):
            if op.get(0, 0) >= len(codes):
                raise _Damaged(f"operator {oi} of subgraph {si} uses op code {op.get(0, 0)} "
                               f"of {len(codes)}")
            for field in (1, 2, 8):
                bad = [i for i in v.ints(op.get(field)) if not -1 <= i < nt]
                if bad:
                    raise _Damaged(f"operator {oi} of subgraph {si} names tensor {bad[0]} "
                                   f"of {nt}")
            missing = [i for i in v.ints(op.get(1)) if i >= 0 and i not in ready]
            if missing:
                raise _Damaged(f"operator {oi} of subgraph {si} reads tensor {missing[0]} before "
                               "anything writes it")
            for i in v.ints(op.get(2)):
                if i >= 0 and i in ready:
                    raise _Damaged(f"operator {oi} of subgraph {si} writes tensor {i}, which "
                                   "is an input, a constant or written by another operator")
                ready.add(i)
    for sig in model.get(7, []):
        si = sig.get(4, 0)
        if si >= len(subgraphs):
            raise _Damaged(f"a signature names subgraph {si} of {len(subgraphs)}")
        nt = len(subgraphs[si].get(0, []))
        for tm in sig.get(0, []) + sig.get(1, []):
            if tm.get(1, 0) >= nt:
                raise _Damaged(f"a signature names tensor {tm.get(1, 0)} of {nt}")


@register_format
class TfliteFormat(Format):
    name = "tflite"
    suffixes = (".tflite",)
    description = "TensorFlow Lite (.tflite)"
    max_file_bytes = 2**31 - 1  # flatbuffers address 32-bit offsets: nothing valid is larger

    @classmethod
    def sniff(cls, path: Path, head: bytes) -> bool:
        return head[4:8] == _IDENTIFIER

    def load(self, path: Path, trust: Trust,
             input_shapes: dict[str, list[int]] | None = None) -> ModelGraph:
        path = Path(path)
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as e:
            raise ModelLoadError(f"cannot read {path}: {e.strerror}") from e
        if head[4:8] != _IDENTIFIER:
            # Checked here because OpenVINO would otherwise try every other frontend on it.
            raise ModelLoadError(
                f"{path.name} is not a TensorFlow Lite model: the 'TFL3' identifier is missing "
                "at byte 4 (the file is damaged, or another format with a .tflite name)")

        try:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                verify_tflite(mm)  # type: ignore[arg-type]  # read in place, weights untouched
        except _Damaged as e:
            raise ModelLoadError(f"{path.name} is a damaged TensorFlow Lite file: {e}") from None
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read {path}: {e}") from e

        try:
            model = read_with_frontend(path, "tflite")
        except RuntimeError as e:
            raise ModelLoadError(
                f"{path.name} could not be read as a TensorFlow Lite model (truncated or damaged "
                f"file, or an op OpenVINO does not support): {ov_error_summary(e)}") from e
        meta = ModelMeta(
            format=self.name,
            path=str(path),
            file_size=path.stat().st_size,
            sha256=sha256_of([path]),
        )
        reshape_inputs(model, input_shapes, meta)
        return graph_from_ov_model(model, meta)
