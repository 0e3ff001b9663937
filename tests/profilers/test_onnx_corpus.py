"""The onnx node test corpus through open_model and both runtimes, and the input/output cases
it found: rank-0 and 0-length inputs, bfloat16 / float8 / int4 / uint4 / float4 / string
inputs and outputs, OpenVINO's packed low-bit outputs, outputs of a shape the model does not
declare, and runtime messages trimmed to their reason."""
from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

from profilers.backends import (BackendError, BackendOptions, InputSpec, check_output_shapes,
                                get_backend, pack_bits, unpack_bits)
from profilers.backends.onnxruntime_backend import ort_error_message
from profilers.inputs import InputError, cast_to_input, from_npz
from tests.profilers import onnx_corpus

BACKENDS = ("onnxruntime", "openvino")


def _model(tmp_path: Path, nodes, inputs, outputs, opset: int = 21, name: str = "m",
           initializers=()) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              ir_version=10)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _identity(tmp_path: Path, elem: int, shape, opset: int = 21, name: str = "ident") -> Path:
    return _model(tmp_path, [helper.make_node("Identity", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", elem, shape)],
                  [helper.make_tensor_value_info("y", elem, shape)], opset, name)


def _run(backend: str, path: Path, npz: Path, shapes=None) -> list[np.ndarray]:
    b = get_backend(backend)()
    b.load(path, "onnx", "CPU", BackendOptions(threads=1))
    try:
        return b.infer(from_npz(npz, b.input_specs(), shapes))
    finally:
        b.close()


# --- inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_rank0_input_and_0_length_dim(tmp_path, backend):
    """A scalar input (DFT's axis) and a static dim of 0 are real shapes, not missing ones."""
    path = _model(tmp_path, [helper.make_node("Add", ["x", "s"], ["y"])],
                  [helper.make_tensor_value_info("x", T.FLOAT, [0, 3]),
                   helper.make_tensor_value_info("s", T.FLOAT, [])],
                  [helper.make_tensor_value_info("y", T.FLOAT, [0, 3])], opset=14)
    b = get_backend(backend)()
    b.load(path, "onnx", "CPU", BackendOptions(threads=1))
    specs = {s.name: s.shape for s in b.input_specs()}
    assert specs == {"x": (0, 3), "s": ()}
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.zeros((0, 3), np.float32), s=np.float32(2.5))
    feeds = from_npz(npz, b.input_specs())
    assert feeds["s"].shape == () and feeds["x"].shape == (0, 3)
    (y,) = b.infer(feeds)
    assert y.shape == (0, 3) and y.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("elem,dtype,values", [
    (T.BFLOAT16, "bfloat16", [1.5, -2.0, 3e10]),  # 3e10 is beyond float16: no detour through it
    (T.FLOAT8E4M3FN, "float8_e4m3fn", [1.5, -2.0, 448.0]),
    (T.FLOAT8E5M2, "float8_e5m2", [1.5, -2.0, 57344.0]),
])
def test_types_numpy_lacks_round_trip(tmp_path, backend, elem, dtype, values):
    """Stored as float32 values (what an .npz can hold), fed as the model's type, returned in
    it: OpenVINO used to read float8 1.5 as the byte 1 and give bfloat16 back as float16."""
    path = _identity(tmp_path, elem, [3])
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.array(values, np.float32))
    (y,) = _run(backend, path, npz)
    target = np.dtype(getattr(ml_dtypes, dtype))
    assert y.dtype == target
    np.testing.assert_array_equal(y.astype(np.float32),
                                  np.array(values, np.float32).astype(target).astype(np.float32))


@pytest.mark.parametrize("dtype,values", [("int4", [-8, 7, -1, 0, 3]), ("uint4", [0, 15, 3]),
                                          ("float4_e2m1fn", [1.5, -6.0, 0.5])])
def test_openvino_low_bit_outputs_unpacked_to_their_shape(tmp_path, dtype, values):
    """OpenVINO holds int4/uint4/float4 packed two to a byte; it used to hand the packed bytes
    on as the output (shape (2,) for 3 values) and the run ended well."""
    elem = {"int4": T.INT4, "uint4": T.UINT4, "float4_e2m1fn": T.FLOAT4E2M1}[dtype]
    path = _identity(tmp_path, elem, [len(values)], opset=23)
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.array(values, np.float32 if "float" in dtype else np.int8))
    (y,) = _run("openvino", path, npz)
    assert y.shape == (len(values),) and y.dtype.name == dtype
    np.testing.assert_array_equal(y.astype(np.float32), np.array(values, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("elem,dtype", [(T.INT4, "int4"), (T.UINT4, "uint4")])
def test_int4_inputs_and_outputs_through_quantize_ops(tmp_path, backend, elem, dtype):
    """int4 in (DequantizeLinear) and out (QuantizeLinear), packed for the runtime and
    unpacked from it: 5 values in 3 bytes."""
    values = [-8, -1, 0, 3, 7] if dtype == "int4" else [0, 1, 3, 9, 15]
    inits = [helper.make_tensor("s", T.FLOAT, [], [2.0]), helper.make_tensor("z", elem, [], [0])]
    dq = _model(tmp_path, [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["f"])],
                [helper.make_tensor_value_info("q", elem, [5])],
                [helper.make_tensor_value_info("f", T.FLOAT, [5])], name="dq",
                initializers=inits)
    q = _model(tmp_path, [helper.make_node("QuantizeLinear", ["f", "s", "z"], ["q"])],
               [helper.make_tensor_value_info("f", T.FLOAT, [5])],
               [helper.make_tensor_value_info("q", elem, [5])], name="q", initializers=inits)
    np.savez(tmp_path / "q.npz", q=np.array(values, np.int8))
    np.savez(tmp_path / "f.npz", f=2.0 * np.array(values, np.float32))
    (f,) = _run(backend, dq, tmp_path / "q.npz")
    np.testing.assert_array_equal(f, 2.0 * np.array(values, np.float32))
    (out,) = _run(backend, q, tmp_path / "f.npz")
    assert out.dtype.name == dtype and out.shape == (5,)
    np.testing.assert_array_equal(out.astype(np.int16), np.array(values, np.int16))


@pytest.mark.parametrize("backend", BACKENDS)
def test_string_inputs_and_outputs(tmp_path, backend):
    path = _model(tmp_path, [helper.make_node("Equal", ["a", "b"], ["y"])],
                  [helper.make_tensor_value_info("a", T.STRING, [3]),
                   helper.make_tensor_value_info("b", T.STRING, [3])],
                  [helper.make_tensor_value_info("y", T.BOOL, [3])], opset=19)
    npz = tmp_path / "in.npz"
    np.savez(npz, a=np.array(["x", "é", "z"]), b=np.array([b"x", "é".encode(), b"q"]))
    try:
        (y,) = _run(backend, path, npz)
    except BackendError as e:
        assert "\n" not in str(e)
        pytest.skip(f"{backend} refuses string Equal: {e}")
    np.testing.assert_array_equal(y, [True, True, False])


def test_npz_raw_records_and_refusals(tmp_path):
    """np.savez writes a bfloat16 array as 2-byte records: taken bit for bit. What cannot be
    cast gives one InputError line, never a numpy ValueError."""
    bf = np.array([1.5, -3.0], ml_dtypes.bfloat16)
    got = cast_to_input(np.load(_saved(tmp_path, bf))["x"], InputSpec("x", "bfloat16", (2,)),
                        "raw.npz")
    assert got.dtype == bf.dtype and np.array_equal(got.astype(np.float32), [1.5, -3.0])
    text = cast_to_input(np.array([b"x", "é".encode()]), InputSpec("x", "string", (2,)), "t")
    assert text.tolist() == ["x", "é"]
    for arr, dtype in [(np.array([300]), "int8"), (np.array([np.nan]), "int32"),
                       (np.array(["a"]), "float32"), (np.array([1]), "string"),
                       (np.zeros(2), "seq(tensor(float))"), (np.zeros(2, "V3"), "bfloat16"),
                       (np.array([b"\xff"]), "string")]:
        with pytest.raises(InputError) as e:
            cast_to_input(arr, InputSpec("x", dtype, (None,)), "data.npz")
        assert onnx_corpus.unclear(str(e.value)) is None, str(e.value)


def _saved(tmp_path: Path, arr: np.ndarray) -> Path:
    path = tmp_path / "raw.npz"
    np.savez(path, x=arr)
    return path


def test_pack_bits_matches_onnx():
    from onnx import numpy_helper

    for dtype, values in [("int4", [-8, 7, -1, 0, 3]), ("uint4", [15, 0, 3]),
                          ("int2", [-2, 1, -1, 0, 1]), ("uint2", [3, 0, 1, 2, 3]),
                          ("float4_e2m1fn", [1.5, -6.0, 0.5])]:
        arr = np.array(values).astype(getattr(ml_dtypes, dtype))
        packed = pack_bits(arr)
        assert packed.tobytes() == numpy_helper.from_array(arr).raw_data, dtype
        assert np.array_equal(unpack_bits(packed, arr.shape, dtype).view(np.uint8),
                              arr.view(np.uint8)), dtype


# --- outputs and messages --------------------------------------------------------------------

def test_outputs_contradicting_declared_shape_are_refused():
    check_output_shapes("rt", ["y"], [(1, "n", 2)], [np.zeros((1, 5, 2))])  # dynamic dim: fine
    check_output_shapes("rt", ["y"], [None], [np.zeros((3,))])  # nothing declared
    check_output_shapes("rt", ["y"], [(-1, 2)], [np.zeros((4, 2))])  # Paddle's free dim: -1
    with pytest.raises(BackendError, match=r"output 'y' with shape \[1, 6, 10, 1, 2\] where "
                                           r"the model declares \[1, 6, 10, 2\]"):
        check_output_shapes("rt", ["y"], [(1, 6, 10, 2)], [np.zeros((1, 6, 10, 1, 2))])


def test_openvino_rfft_extra_axis_refused_not_returned(tmp_path):
    """OpenVINO's DFT with onesided=1 returns [1, 6, 10, 1, 2] for a declared [1, 6, 10, 2];
    that used to be handed on as the result. ONNX Runtime computes the declared shape."""
    path = _model(tmp_path, [helper.make_node("DFT", ["x", "", "axis"], ["y"], onesided=1)],
                  [helper.make_tensor_value_info("x", T.FLOAT, [1, 10, 10, 1]),
                   helper.make_tensor_value_info("axis", T.INT64, [])],
                  [helper.make_tensor_value_info("y", T.FLOAT, [1, 6, 10, 2])], opset=20)
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.random.default_rng(0).random((1, 10, 10, 1), np.float32),
             axis=np.int64(1))
    (y,) = _run("onnxruntime", path, npz)
    assert y.shape == (1, 6, 10, 2)
    try:
        (y,) = _run("openvino", path, npz)
    except BackendError as e:
        assert "declares [1, 6, 10, 2]" in str(e) and "\n" not in str(e)
    else:  # a fixed OpenVINO: then it must be right
        assert y.shape == (1, 6, 10, 2)


def test_onnxruntime_messages_lose_source_locations():
    raw = ("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running "
           "ConvInteger node. Name:'conv1' Status Message: /onnxruntime_src/onnxruntime/core/"
           "providers/cpu/quantization/conv_integer.cc:52 virtual onnxruntime::common::Status "
           "onnxruntime::ConvInteger::Compute(onnxruntime::OpKernelContext*) const "
           "IsScalarOr1ElementVector(W_Zero_Point) was false. Non per-tensor quantization is "
           "not supported now.")
    assert ort_error_message(RuntimeError(raw)) == (
        "ConvInteger node 'conv1': Non per-tensor quantization is not supported now.")
    multi = ("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x "
             "for the following indices\n index: 1 Got: 4 Expected: 3\n")
    assert ort_error_message(RuntimeError(multi)).endswith("index: 1 Got: 4 Expected: 3")


def test_openvino_unsupported_type_named_not_boilerplate(tmp_path):
    path = _model(tmp_path, [helper.make_node("Cast", ["x"], ["y"], to=T.INT2)],
                  [helper.make_tensor_value_info("x", T.FLOAT, [4])],
                  [helper.make_tensor_value_info("y", T.INT2, [4])], opset=25)
    b = get_backend("openvino")()
    try:
        b.load(path, "onnx", "CPU", BackendOptions(threads=1))
    except BackendError as e:
        msg = str(e)
        assert onnx_corpus.unclear(msg) is None, msg
        assert "element type" in msg and "Loading input model" not in msg
    else:  # an OpenVINO that reads 2-bit integers
        b.close()


# --- the corpus harness ----------------------------------------------------------------------

def test_refusal_messages_judged():
    assert onnx_corpus.unclear("OpenVINO cannot read m.onnx: Unsupported type") is None
    assert onnx_corpus.unclear("a\nb") == "several lines"
    assert onnx_corpus.unclear("Check 'x' failed at src/core/a.cpp:3") is not None
    assert onnx_corpus.unclear("OpenVINO cannot read m.onnx: Input descriptor changed:") \
        == "boilerplate without the reason"


def test_a_crashing_runtime_is_isolated_and_named(tmp_path):
    """OpenVINO aborts the process (free(): invalid pointer) when it frees a string Identity's
    request: the harness names that task a crash and carries on with the others."""
    corpus = tmp_path / "corpus"
    for name, elem, arr in [("a_strings", T.STRING, np.array(["a", "bb", "c"])),
                            ("b_floats", T.FLOAT, np.array([1.0, 2.0, 3.0], np.float32))]:
        case = corpus / name
        case.mkdir(parents=True)
        _identity(case, elem, [3], name="model")
        np.savez(case / "inputs.npz", x=arr)
        np.savez(case / "expected.npz", y=arr)
        dtype = "string" if elem == T.STRING else "float32"
        (case / "case.json").write_text(json.dumps({
            "inputs": [{"name": "x", "kind": "tensor_type", "dtype": dtype}],
            "outputs": [{"name": "y", "kind": "tensor_type", "dtype": dtype}],
            "rtol": 1e-3, "atol": 1e-7}))
    summary = onnx_corpus.run_corpus(corpus, workers=1)
    got = {(r.case, r.stage): r.status for r in summary.results}
    assert got[("b_floats", "onnxruntime")] == got[("b_floats", "openvino")] == "match"
    assert got[("a_strings", "onnxruntime")] == "match"
    assert got[("a_strings", "openvino")] in ("crash", "match")  # "match": OpenVINO fixed it
    crashed = [r for r in summary.results if r.status == "crash"]
    assert all(r.case == "a_strings" and "worker exit" in r.detail for r in crashed)
    assert summary.failures() == []


@pytest.mark.slow
def test_onnx_node_corpus():
    """Every model opens; stored inputs through both runtimes match the expected outputs or
    fail with one clear line; no raw Python error, no wrong shape, no hidden wrong values."""
    try:
        corpus = onnx_corpus.ensure_corpus()
    except ImportError as e:
        pytest.skip(f"this onnx has no node test cases to regenerate: {e}")
    summary = onnx_corpus.run_corpus(corpus)
    report = summary.report()
    print(report)
    counts = summary.counts()
    (onnx_corpus.CACHE / "last-run.json").write_text(json.dumps(
        {"counts": counts, "results": [r.__dict__ for r in summary.results]}, indent=1))
    assert not summary.failures(), report
    # Floors well under today's counts, so that a change refusing everything cannot pass.
    assert counts["models"] >= 1500 and counts["opened"] == counts["models"]
    assert counts["onnxruntime"]["matched"] >= 0.8 * counts["models"], report
    assert counts["openvino"]["matched"] >= 0.55 * counts["models"], report
