"""The workload (converters/workload.py) on real models: every input gets a concrete size, a
dtype and values the model accepts, each with its source; user sizes and data come first.

Models: a BERT-style encoder built by transformers (random weights, tests/real_models.py), and
from PyPI wheels: rapidocr 3.10.0 (PP-OCRv6 recogniser and detector), openwakeword 0.5.1
(silero VAD with a scalar sample rate and LSTM state; the mel-spectrogram front end).
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.formats import open_model
from converters.workload import (
    Workload, WorkloadError, generate, make_dry_check, parse_shape_args, resolve_workload,
)
from tests.real_models import bert_onnx, wheel_member

REC = ("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_rec_small.onnx")
DET = ("rapidocr", "3.10.0", "rapidocr/models/PP-OCRv6_det_small.onnx")
VAD = ("openwakeword", "0.5.1", "openwakeword/resources/models/silero_vad.onnx")
MEL = ("openwakeword", "0.5.1", "openwakeword/resources/models/melspectrogram.onnx")


def _resolve(path, **kw) -> Workload:
    g = open_model(path)
    return resolve_workload(g, dry_check=make_dry_check(str(path), g.meta.format), **kw)


def _ort(path, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return bert_onnx(tmp_path_factory.mktemp("bert"))


def test_bert_tokens_stay_inside_their_tables_and_one_symbol_has_one_size(bert):
    wl = _resolve(bert)
    assert wl.shapes() == {n: [1, 128] for n in ("input_ids", "attention_mask", "token_type_ids")}
    assert wl.dims == {"batch": 1, "sequence": 128}
    ids, types, mask = (wl.get(n) for n in ("input_ids", "token_type_ids", "attention_mask"))
    assert ids.values.kind == "int_range" and ids.values.high == 1000  # the vocabulary
    assert types.values.kind == "int_range" and types.values.high == 2  # two token types
    assert mask.values.kind == "ones"
    assert all(i.shape_source.startswith("default") for i in wl.inputs) and wl.assumed
    feeds = generate(wl)
    assert feeds["token_type_ids"].max() <= 1 and feeds["input_ids"].max() < 1000
    hidden = _ort(bert, feeds)[0]  # the Gather bounds error of 0..255 token types is gone
    assert hidden.shape == (1, 128, 128) and np.isfinite(hidden).all()


def test_a_size_the_user_sets_binds_its_symbol_everywhere(bert):
    wl = _resolve(bert, user_shapes=parse_shape_args(["input_ids=2x64"]))
    assert wl.shapes()["token_type_ids"] == [2, 64] and wl.shapes()["attention_mask"] == [2, 64]
    assert wl.get("input_ids").shape_source == "set by you"
    assert "set by you (input_ids)" in wl.get("attention_mask").shape_source
    with pytest.raises(WorkloadError, match="'sequence' is 64 .* but 32"):
        _resolve(bert, user_shapes=parse_shape_args(["input_ids=1x64", "attention_mask=1x32"]))
    with pytest.raises(WorkloadError, match="does not have"):
        _resolve(bert, user_shapes=parse_shape_args(["tokens=1x8"]))
    with pytest.raises(WorkloadError, match="bad input size"):
        parse_shape_args(["input_ids=1xN"])


def test_real_data_sets_the_sizes(bert):
    ids = np.arange(37, dtype=np.int64)[None] % 1000
    wl = _resolve(bert, data={"input_ids": ids})
    assert wl.shapes()["token_type_ids"] == [1, 37]  # the data's sequence, bound by name
    assert wl.get("input_ids").shape_source == "from data"
    assert wl.get("input_ids").values.kind == "data"


def test_ocr_recogniser_gets_a_width_every_pooling_accepts():
    path = wheel_member(*REC)
    wl = _resolve(path)
    (x,) = wl.inputs
    assert x.shape == (1, 3, 48, 224) and x.values.kind == "uniform"
    out = _ort(path, generate(wl))[0]
    assert out.shape[0] == 1 and out.shape[2] == 18710
    # width 1 (the old "dynamic dims are 1") is what OpenVINO's shape check refuses
    assert "kernel" in make_dry_check(str(path), "onnx")({"x": [1, 3, 48, 1]})


def test_detector_with_free_height_and_width():
    path = wheel_member(*DET)
    wl = _resolve(path)
    assert wl.shapes() == {"x": [1, 3, 224, 224]}
    assert "image size 224" in wl.get("x").shape_source
    assert make_dry_check(str(path), "onnx")({"x": [1, 3, 100, 100]})  # not a multiple of 32
    assert _ort(path, generate(wl))[0].shape == (1, 1, 224, 224)


def test_vad_scalar_sample_rate_state_and_a_grown_window():
    path = wheel_member(*VAD)
    wl = _resolve(path)
    sr, h = wl.get("sr"), wl.get("h")
    assert sr.shape == () and sr.values.kind == "constant" and sr.values.value == 16000
    assert h.shape == (2, 1, 64) and h.values.kind == "zeros"  # 'batch' bound across inputs
    window = wl.get("input").shape[1]
    assert window > 128 and "grown" in wl.get("input").shape_source  # 128 is refused
    feeds = generate(wl)
    assert feeds["sr"].ndim == 0 and feeds["sr"].dtype == np.int64
    prob = _ort(path, feeds)[0]
    assert prob.shape == (1, 1) and 0 <= float(prob[0, 0]) <= 1


def test_mel_front_end_grows_its_free_sample_axis():
    path = wheel_member(*MEL)
    wl = _resolve(path)
    assert wl.get("input").shape[1] >= 400  # shorter than its STFT window is refused
    assert _ort(path, generate(wl))[0].shape[2] >= 1


def test_without_a_graph_the_roles_still_give_sizes():
    from converters.workload import InputDecl

    wl = resolve_workload(None, [InputDecl("img", "float32", ("N", 3, None, None)),
                                 InputDecl("len", "int64", (None,))])
    assert wl.shapes() == {"img": [1, 3, 224, 224], "len": [128]}
    assert wl.get("len").values.high == 10 and wl.notes  # says plainly it had no rule
    with pytest.raises(WorkloadError, match="does not say what shape"):
        resolve_workload(None, [InputDecl("x", "float32", None)])
    huge = [InputDecl("x", "float32", (1, 3, 2**20, 2**20))]
    with pytest.raises(WorkloadError, match="GB"):
        resolve_workload(None, huge)


def test_workload_round_trips_through_json(bert):
    import json

    wl = _resolve(bert)
    back = Workload.from_dict(json.loads(json.dumps(wl.to_dict())))
    assert back.shapes() == wl.shapes() and back.get("input_ids").values == wl.get(
        "input_ids").values
    assert back.with_batch(4).shapes()["attention_mask"] == [4, 128]
