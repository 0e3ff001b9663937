"""Seed models and their mutants: structure-aware edits and byte-level damage, deterministic.

A mutant is a small folder of files (the model, plus an IR's .bin or ONNX external data) that
`campaign.py` hands to `modeldeck inspect` / `profile`. Everything is derived from a seed
integer, so `Mutant.id` reproduces the same bytes on any machine (seeds are rebuilt the same
way: the bundled digits CNN, an IR saved from it, a TFLite from tflite_builder, onnx.helper
models with If/Loop bodies).
"""
from __future__ import annotations

import io
import logging
import os
import random
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"

INTERESTING_INTS = [0, -1, 1, 2, 3, 7, 255, 2**31 - 1, 2**31, 2**32, 2**62, 10**9, 10**12, -2**31]


@dataclass
class Seed:
    name: str
    fmt: str  # onnx | openvino | tflite | torch
    files: dict[str, bytes]  # file name -> content
    main: str  # the file given to the CLI


@dataclass
class Mutant:
    id: str  # "<seed>-<index>": the generator reproduces it from this
    seed: str
    fmt: str
    kind: str  # which mutator made it
    files: dict[str, bytes]
    main: str
    links: dict[str, str] = field(default_factory=dict)  # name -> symlink target

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)
        for name, target in self.links.items():
            if target == "<fifo>":
                os.mkfifo(folder / name)
            else:
                (folder / name).symlink_to(target)
        return folder / self.main


# --- seeds ------------------------------------------------------------------------------------

def _onnx_bytes(model) -> bytes:
    return model.SerializeToString()


def _loop_model():
    from onnx import TensorProto, helper

    from tests.converters import onnx_builders as B

    body = B.loop_body()
    import numpy as np
    from onnx import numpy_helper

    trip = helper.make_node("Constant", [], ["n"], name="trip",
                            value=numpy_helper.from_array(np.array(3, np.int64)))
    cond = helper.make_node("Constant", [], ["c"], name="cond",
                            value=numpy_helper.from_array(np.array(True)))
    loop = helper.make_node("Loop", ["n", "c", "x"], ["y"], body=body, name="loop")
    return B.make([trip, cond, loop], [B.tensor_in("x", [4])], [B.tensor_in("y", [4])])


def _external_seed() -> dict[str, bytes]:
    import tempfile

    import onnx

    from tests.converters import onnx_builders as B

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ext.onnx"
        B.save_with_external_data(B.conv_model(batch=1), p, location="ext.onnx.data")
        return {"ext.onnx": p.read_bytes(),
                "ext.onnx.data": (Path(d) / "ext.onnx.data").read_bytes()}
    del onnx


def _ir_seed() -> dict[str, bytes]:
    import tempfile

    import openvino as ov

    with tempfile.TemporaryDirectory() as d:
        xml = Path(d) / "digits.xml"
        ov.save_model(ov.Core().read_model(str(SAMPLES / "digits_cnn.onnx")), str(xml),
                      compress_to_fp16=False)
        return {"digits.xml": xml.read_bytes(), "digits.bin": xml.with_suffix(".bin").read_bytes()}


def build_seeds(formats: set[str] | None = None) -> list[Seed]:
    """The seed models, rebuilt deterministically (a second or two, OpenVINO's save included)."""
    from tests.converters import onnx_builders as B
    from tests.converters.tflite_builder import conv_fc_model

    want = formats or {"onnx", "openvino", "tflite", "torch"}
    seeds: list[Seed] = []
    if "onnx" in want:
        seeds += [
            Seed("digits_onnx", "onnx", {"digits.onnx": (SAMPLES / "digits_cnn.onnx").read_bytes()},
                 "digits.onnx"),
            Seed("if_onnx", "onnx", {"if.onnx": _onnx_bytes(B.if_model())}, "if.onnx"),
            Seed("loop_onnx", "onnx", {"loop.onnx": _onnx_bytes(_loop_model())}, "loop.onnx"),
            Seed("ext_onnx", "onnx", _external_seed(), "ext.onnx"),
        ]
    if "openvino" in want:
        seeds.append(Seed("digits_ir", "openvino", _ir_seed(), "digits.xml"))
    if "tflite" in want:
        seeds.append(Seed("convfc_tflite", "tflite", {"m.tflite": conv_fc_model()}, "m.tflite"))
    if "torch" in want:
        seeds += [
            Seed("digits_ts", "torch", {"digits.ts.pt": (SAMPLES / "digits_cnn.ts.pt").read_bytes()},
                 "digits.ts.pt"),
            Seed("digits_pt2", "torch", {"digits.pt2": (SAMPLES / "digits_cnn.pt2").read_bytes()},
                 "digits.pt2"),
        ]
    return seeds


# --- byte-level mutations (any format) --------------------------------------------------------

def bit_flips(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 8, 32])):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data))]


def insert(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.randbytes(rng.choice([1, 4, 16, 512])) + data[i:]


def zero_run(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    n = rng.choice([4, 64, 1024, len(data)])
    return data[:i] + b"\0" * min(n, len(data) - i) + data[i + n:]


def interesting_int(data: bytes, rng: random.Random) -> bytes:
    """Overwrite 4 or 8 bytes with a boundary value (offsets and lengths hide there)."""
    size = rng.choice([4, 8])
    i = rng.randrange(max(1, len(data) - size))
    v = rng.choice(INTERESTING_INTS) % (1 << (8 * size))
    return data[:i] + v.to_bytes(size, "little") + data[i + size:]


BYTE_MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bitflip": bit_flips, "truncate": truncate, "insert": insert, "zeros": zero_run,
    "int": interesting_int,
}


# --- ONNX: protobuf field edits ----------------------------------------------------------------

def _onnx_edit(model, rng: random.Random) -> str:
    """Apply one structure-aware edit in place; return its name."""
    import numpy as np

    from converters.formats.onnx_format import _graphs_of  # the reader's own subgraph walk
    from onnx import AttributeProto, TensorProto, helper, numpy_helper

    graphs = list(_graphs_of(model.graph))
    g = rng.choice(graphs)
    kinds = ["dim", "attr", "opset", "dangling", "dup_output", "cycle", "const_of_shape",
             "elem_type", "init_dims", "drop_init", "op_type", "ir_version", "loop_trip",
             "huge_input", "drop_output", "domain"]
    kind = rng.choice(kinds)
    nodes = list(g.node)
    if kind == "dim":
        vis = [vi for vi in list(g.input) + list(g.output) + list(g.value_info)
               if vi.type.HasField("tensor_type") and vi.type.tensor_type.shape.dim]
        if vis:
            d = rng.choice(list(rng.choice(vis).type.tensor_type.shape.dim))
            d.dim_value = rng.choice([-1, -7, 0, 2**31, 2**40, 10**6])
    elif kind == "huge_input":
        ins = [vi for vi in model.graph.input if vi.type.HasField("tensor_type")]
        if ins:
            shape = ins[0].type.tensor_type.shape
            for d in shape.dim:
                d.dim_value = rng.choice([2**31, 100000, 2**20])
    elif kind == "attr" and nodes:
        n = rng.choice(nodes)
        attrs = [a for a in n.attribute if a.type in (AttributeProto.INT, AttributeProto.INTS,
                                                      AttributeProto.FLOAT)]
        if attrs:
            a = rng.choice(attrs)
            if a.type == AttributeProto.INT:
                a.i = rng.choice([0, -1, 10**9, 2**62])
            elif a.type == AttributeProto.INTS:
                vals = [rng.choice([0, -1, 10**9, 2**31]) for _ in range(rng.choice(
                    [len(a.ints), 0, 1, 7]))]
                del a.ints[:]
                a.ints.extend(vals)
            else:
                a.f = rng.choice([float("nan"), float("inf"), -1e38, 0.0])
        else:
            n.attribute.append(helper.make_attribute(
                rng.choice(["kernel_shape", "group", "axis", "strides"]),
                rng.choice([[0, 0], 10**9, -5, [2**31, 1]])))
    elif kind == "opset":
        model.opset_import[0].version = rng.choice([0, 1, 6, 999, -3])
    elif kind == "ir_version":
        model.ir_version = rng.choice([0, 1, 99, 2**40])
    elif kind == "dangling" and nodes:
        n = rng.choice(nodes)
        if n.input:
            n.input[rng.randrange(len(n.input))] = "dangling_" + str(rng.randrange(100))
        else:
            n.input.append("dangling_in")
    elif kind == "dup_output" and len(nodes) > 1:
        a, b = rng.sample(nodes, 2)
        if a.output and b.output:
            a.output[0] = b.output[0]
    elif kind == "cycle" and nodes:
        i = rng.randrange(len(nodes))
        j = rng.randrange(i, len(nodes))
        if nodes[i].input and nodes[j].output:
            nodes[i].input[0] = nodes[j].output[0]
    elif kind == "const_of_shape":
        shape = rng.choice([[100000, 100000, 1000], [2**31], [10**12], [0], [-1, 4]])
        sname, oname = f"fz_shape{rng.randrange(1000)}", f"fz_fill{rng.randrange(1000)}"
        g.node.append(helper.make_node("Constant", [], [sname], value=numpy_helper.from_array(
            np.array(shape, np.int64), sname)))
        g.node.append(helper.make_node("ConstantOfShape", [sname], [oname]))
        g.output.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, None))
    elif kind == "elem_type":
        vis = [vi for vi in list(g.input) + list(g.output) if vi.type.HasField("tensor_type")]
        if vis:
            rng.choice(vis).type.tensor_type.elem_type = rng.choice([0, 8, 13, 23, 99])
    elif kind == "init_dims" and g.initializer:
        t = rng.choice(list(g.initializer))
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.choice([0, -1, 2**31, 10**9])
        else:
            t.dims.append(10**9)
    elif kind == "drop_init" and g.initializer:
        del g.initializer[rng.randrange(len(g.initializer))]
    elif kind == "op_type" and nodes:
        rng.choice(nodes).op_type = rng.choice(["Conv", "NoSuchOp", "Loop", "If", "", "Reshape"])
    elif kind == "domain" and nodes:
        rng.choice(nodes).domain = rng.choice(["com.microsoft", "org.evil", "ai.onnx.ml"])
    elif kind == "loop_trip":
        for n in (n for gg in graphs for n in gg.node if n.op_type == "Constant"):
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.INT64 and not a.t.dims:
                    a.t.CopyFrom(numpy_helper.from_array(np.array(
                        rng.choice([10**12, 2**62, -1]), np.int64), a.t.name))
    elif kind == "drop_output" and len(g.output):
        del g.output[rng.randrange(len(g.output))]
    return kind


def _external_edit(model, rng: random.Random) -> str:
    kind = rng.choice(["offset", "length", "location"])
    ext = [t for t in model.graph.initializer if t.external_data]
    if not ext:
        return "external:none"
    t = rng.choice(ext)
    entries = {e.key: e for e in t.external_data}
    value = {
        "offset": rng.choice(["abc", "-5", "99999999999", "1e3", "", " 4", "0x10"]),
        "length": rng.choice(["-1", "0", "zz", "18446744073709551615", "4"]),
        "location": rng.choice(["../../etc/passwd", "/etc/passwd", "missing.data", "",
                                "ext.onnx", "sub/../ext.onnx.data", "pipe.data"]),
    }[kind]
    if kind in entries:
        entries[kind].value = value
    else:
        e = t.external_data.add()
        e.key, e.value = kind, value
    return "external:" + kind


def mutate_onnx(seed: Seed, rng: random.Random) -> tuple[str, dict[str, bytes]]:
    import onnx

    files = dict(seed.files)
    model = onnx.load_from_string(files[seed.main])
    if seed.name == "ext_onnx" and rng.random() < 0.6:
        kind = _external_edit(model, rng)
    else:
        kind = "+".join(_onnx_edit(model, rng) for _ in range(rng.choice([1, 1, 1, 2, 3])))
    files[seed.main] = model.SerializeToString()
    return "onnx:" + kind, files


# --- OpenVINO IR: XML edits and .bin damage ----------------------------------------------------

_ATTR = re.compile(rb'(\b[a-z_]+)="([^"]*)"')


def mutate_ir(seed: Seed, rng: random.Random) -> tuple[str, dict[str, bytes]]:
    files = dict(seed.files)
    xml_name = seed.main
    bin_name = xml_name[:-4] + ".bin"
    xml = files[xml_name]
    kind = rng.choice(["attr", "dim", "offset", "size", "utf8", "drop_line", "truncate_bin",
                       "truncate_xml", "element_type", "edge", "version"])
    if kind in ("attr", "offset", "size", "element_type", "version"):
        wanted = {"offset": b"offset", "size": b"size", "element_type": b"element_type",
                  "version": b"version"}.get(kind)
        hits = [m for m in _ATTR.finditer(xml) if wanted is None or m.group(1) == wanted]
        if hits:
            m = rng.choice(hits)
            new = rng.choice([b"-1", b"0", b"999999999999", b"abc", b"", b"1,2", b"f99",
                              b"18446744073709551615", b"opset999", b"4294967296"])
            xml = xml[:m.start(2)] + new + xml[m.end(2):]
    elif kind == "dim":
        dims = list(re.finditer(rb"<dim>([^<]*)</dim>", xml))
        if dims:
            m = rng.choice(dims)
            new = rng.choice([b"-1", b"0", b"2147483648", b"-7", b"x", b"99999999999"])
            xml = xml[:m.start(1)] + new + xml[m.end(1):]
    elif kind == "edge":
        edges = list(re.finditer(rb'(from|to)-(layer|port)="(\d+)"', xml))
        if edges:
            m = rng.choice(edges)
            xml = xml[:m.start(3)] + str(rng.choice([0, 1, 999, 2])).encode() + xml[m.end(3):]
    elif kind == "utf8":
        i = rng.randrange(len(xml))
        xml = xml[:i] + rng.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + xml[i:]
    elif kind == "drop_line":
        lines = xml.split(b"\n")
        del lines[rng.randrange(len(lines))]
        xml = b"\n".join(lines)
    elif kind == "truncate_xml":
        xml = truncate(xml, rng)
    elif kind == "truncate_bin":
        files[bin_name] = truncate(files[bin_name], rng)
    files[xml_name] = xml
    return "ir:" + kind, files


# --- TFLite: flatbuffer builder-level edits ---------------------------------------------------

def mutate_tflite(seed: Seed, rng: random.Random) -> tuple[str, dict[str, bytes]]:
    """Edit the model through tflite_builder (indices, shapes, buffers, op codes), or overwrite
    a field the verifier walks (offsets, vector lengths)."""
    from converters.formats.tflite_format import _Verifier

    files = dict(seed.files)
    data = bytearray(files[seed.main])
    v = _Verifier(bytes(data))
    model = v.table(v._u32(0), "Model")
    sg = model[2][0]
    kind = rng.choice(["op_index", "vec_len", "tensor_field", "buffer_len", "opcode",
                       "root", "shape_dim"])
    if kind in ("op_index", "vec_len"):
        op = rng.choice(sg[3])
        start, length = op[rng.choice([1, 2])]
        if kind == "op_index" and length:
            pos = start + 4 * rng.randrange(length)
            data[pos:pos + 4] = (rng.choice([-2, 9, 100, 2**31 - 1, 3, 0]) % 2**32).to_bytes(4, "little")
        else:
            data[start - 4:start] = rng.choice([0, 5, 2**20, 2**31]).to_bytes(4, "little")
    elif kind in ("tensor_field", "shape_dim"):
        t = rng.choice(sg[0])
        if kind == "shape_dim" and 0 in t:
            start, length = t[0]
            if length:
                pos = start + 4 * rng.randrange(length)
                data[pos:pos + 4] = (rng.choice([-1, -5, 0, 2**31 - 1, 100000]) % 2**32).to_bytes(4, "little")
        else:
            fid = rng.choice([1, 2])
            pos = v.field_position(t[-1], fid)
            if pos is not None:
                size = 1 if fid == 1 else 4
                data[pos:pos + size] = (rng.choice([0, 1, 17, 99, 2**31]) % (1 << 8 * size)).to_bytes(size, "little")
    elif kind == "buffer_len":
        bufs = [b for b in model[4] if 0 in b]
        if bufs:
            start, _ = rng.choice(bufs)[0]
            data[start - 4:start] = rng.choice([0, 1, 2**31, 12]).to_bytes(4, "little")
    elif kind == "opcode":
        op = rng.choice(sg[3])
        pos = v.field_position(op[-1], 0)
        if pos is not None:
            data[pos:pos + 4] = rng.choice([3, 200, 2**31]).to_bytes(4, "little")
    else:
        data[0:4] = rng.choice([0, 4, len(data), 2**31]).to_bytes(4, "little")
    files[seed.main] = bytes(data)
    return "tflite:" + kind, files


# --- torch archives: zip members --------------------------------------------------------------

def mutate_torch(seed: Seed, rng: random.Random) -> tuple[str, dict[str, bytes]]:
    files = dict(seed.files)
    src = zipfile.ZipFile(io.BytesIO(files[seed.main]))
    infos = src.infolist()
    kind = rng.choice(["drop", "rename", "truncate_member", "pickle", "huge_member", "dup"])
    victim = rng.choice(infos)
    if kind == "pickle":
        pk = [i for i in infos if i.filename.endswith(".pkl") or i.filename.endswith(".json")]
        victim = rng.choice(pk) if pk else victim
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info in infos:
            data = src.read(info)
            name = info.filename
            if info is victim:
                if kind == "drop":
                    continue
                if kind == "rename":
                    name = name + rng.choice([".bak", "x", "/../../evil"])
                elif kind == "truncate_member":
                    data = truncate(data, rng) if data else data
                elif kind == "pickle":
                    data = rng.choice([bit_flips, interesting_int, insert])(data, rng) if data else data
                elif kind == "dup":
                    z.writestr(name, data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a duplicate member name is the point of "dup"
                z.writestr(name, data)
    blob = out.getvalue()
    if kind == "huge_member":  # declare a 6 GiB member in the central directory, keep the bytes
        cd = blob.rfind(b"PK\x01\x02")
        if cd >= 0:
            b = bytearray(blob)
            b[cd + 24:cd + 28] = (0xFFFFFFF0).to_bytes(4, "little")  # uncompressed size
            blob = bytes(b)
    files[seed.main] = blob
    return "torch:" + kind, files


STRUCTURED: dict[str, Callable[[Seed, random.Random], tuple[str, dict[str, bytes]]]] = {
    "onnx": mutate_onnx, "openvino": mutate_ir, "tflite": mutate_tflite, "torch": mutate_torch,
}


def make_mutant(seed: Seed, index: int, base_seed: int = 0) -> Mutant:
    """The index-th mutant of a seed: half structure-aware, half byte-level damage."""
    rng = random.Random(f"{base_seed}:{seed.name}:{index}")
    links: dict[str, str] = {}
    if rng.random() < 0.5:
        try:
            kind, files = STRUCTURED[seed.fmt](seed, rng)
        except Exception as e:  # noqa: BLE001 - a mutator that cannot apply falls back to bytes
            log.debug("structured mutation of %s failed: %s", seed.name, e)
            kind, files = "", {}
        if not kind:
            kind, files = "bytes:bitflip", {**seed.files, seed.main: bit_flips(
                seed.files[seed.main], rng)}
    else:
        name = rng.choice(list(BYTE_MUTATORS))
        target = seed.main if rng.random() < 0.8 else rng.choice(list(seed.files))
        files = dict(seed.files)
        files[target] = BYTE_MUTATORS[name](files[target], rng)
        kind = f"bytes:{name}" + ("" if target == seed.main else "@companion")
    if index % 97 == 5:  # a few special files: the model or a companion is no regular file
        victim = rng.choice(list(seed.files))
        files = {k: v for k, v in files.items() if k != victim}
        links[victim] = rng.choice(["/dev/zero", "/dev/null", "nonexistent", "<fifo>"])
        kind = "special:" + links[victim]
    return Mutant(f"{seed.name}-{index}", seed.name, seed.fmt, kind, files, seed.main, links)


def plan(seeds: list[Seed], count: int, base_seed: int = 0,
         weights: dict[str, float] | None = None) -> list[tuple[Seed, int]]:
    """Which (seed, index) pairs make up a run of `count` mutants (per-format weights)."""
    weights = weights or {}
    w = [weights.get(s.fmt, 1.0) for s in seeds]
    rng = random.Random(base_seed)
    counters: dict[str, int] = {}
    out = []
    for _ in range(count):
        seed = rng.choices(seeds, w)[0]
        i = counters.get(seed.name, 0)
        counters[seed.name] = i + 1
        out.append((seed, i))
    return out


def mutants(seeds: list[Seed], count: int, base_seed: int = 0,
            weights: dict[str, float] | None = None) -> Iterator[Mutant]:
    """`count` mutants spread over the seeds, made one at a time (they can be megabytes each)."""
    for seed, i in plan(seeds, count, base_seed, weights):
        yield make_mutant(seed, i, base_seed)
