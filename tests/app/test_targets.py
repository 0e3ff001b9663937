"""Remote targets without a network: addresses, the targets file, the engine archive, specs."""
from __future__ import annotations

import io
import zipfile

import pytest

from app.targets.config import Target, TargetError, TargetStore, parse_url
from app.targets.engine import build_engine
from app.targets.remote import make_blob, remap_paths, spec_files
from tests.conftest import SAMPLE_NPZ, SAMPLE_ONNX


def test_parse_url_forms():
    t = parse_url("ssh://pi@edge-box:2222", name="edge")
    assert (t.name, t.user, t.host, t.port) == ("edge", "pi", "edge-box", 2222)
    assert t.url == "ssh://pi@edge-box:2222"
    t = parse_url("gpu.example.org")
    assert (t.user, t.host, t.port) == (None, "gpu.example.org", None)
    assert parse_url("ubuntu@10.0.0.5").user == "ubuntu"


@pytest.mark.parametrize("bad, words", [
    ("http://host", "only ssh://"),
    ("ssh://user:secret@host", "no password"),
    ("ssh://host/path", "no path"),
    ("ssh://host:notaport", "not an ssh://"),
    ("ssh://", "names no host"),
])
def test_parse_url_refuses_clearly(bad, words):
    with pytest.raises(TargetError, match=words):
        parse_url(bad)


def test_store_roundtrip_and_errors(tmp_path):
    store = TargetStore(tmp_path / "t.json")
    assert store.load() == {}
    store.add(parse_url("ssh://me@h:2200", name="box").with_(identity="~/.ssh/k",
                                                             backends=("onnxruntime",)))
    again = TargetStore(tmp_path / "t.json").get("box")
    assert again.port == 2200 and again.identity == "~/.ssh/k"
    assert again.backends == ("onnxruntime",)
    assert "password" not in (tmp_path / "t.json").read_text()
    with pytest.raises(TargetError, match="exists already"):
        store.add(parse_url("ssh://h", name="box"))
    with pytest.raises(TargetError, match="cannot name a target"):
        store.add(parse_url("ssh://h", name="local"))
    with pytest.raises(TargetError, match=r"no target named 'nope' \(known: box\)"):
        store.get("nope")
    direct = store.get("ssh://you@other:22")  # an address works without being added
    assert (direct.user, direct.host) == ("you", "other")
    store.remove("box")
    assert store.load() == {}
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(TargetError, match="could not read the targets file"):
        store.load()


def test_engine_is_deterministic_and_complete():
    a, b = build_engine(), build_engine()
    assert a.sha256 == b.sha256 and a.data == b.data
    names = zipfile.ZipFile(io.BytesIO(a.data)).namelist()
    assert "app/jobs/worker.py" in names and "profilers/runner.py" in names
    assert "converters/formats/onnx_format.py" in names
    assert not any(n.startswith("app/gui/") for n in names)  # the window never runs there
    assert not any("__pycache__" in n for n in names)


def test_spec_files_and_blob_keys(tmp_path):
    spec = {"job": "profile", "config": {"model": str(SAMPLE_ONNX),
                                         "inputs_npz": str(SAMPLE_NPZ)}}
    found = spec_files(spec)
    assert [f[2] for f in found] == [SAMPLE_ONNX, SAMPLE_NPZ]
    # a model and its external weights travel together, keyed by both contents
    m = tmp_path / "m.onnx"
    m.write_bytes(b"graph")
    key1 = make_blob(m).key
    (tmp_path / "m.onnx.data").write_bytes(b"weights")
    blob = make_blob(m)
    assert [p.name for p in blob.files] == ["m.onnx", "m.onnx.data"] and blob.key != key1
    (tmp_path / "m.onnx.data").write_bytes(b"other weights")
    assert make_blob(m).key != blob.key
    # sample data names stay as they are; a missing model file is said before connecting
    assert spec_files({"job": "compare", "models": [str(m)], "config": {"model": str(m)},
                       "eval": "sample"})[-1][2] == m
    with pytest.raises(TargetError, match="no such file on this computer"):
        spec_files({"job": "profile", "config": {"model": str(tmp_path / "gone.onnx")}})
    with pytest.raises(TargetError, match="runs on this computer only"):
        spec_files({"job": "convert"})


def test_remap_paths_back_to_local_names():
    res = {"model": {"path": "/c/blobs/ab/m.onnx"}, "note": "read /c/blobs/ab/m.onnx twice"}
    out = remap_paths(res, {"/c/blobs/ab/m.onnx": "/home/me/m.onnx"})
    assert out == {"model": {"path": "/home/me/m.onnx"}, "note": "read /home/me/m.onnx twice"}


def test_target_round_trips_through_dict():
    t = Target(name="x", host="h", port=22, backends=("openvino",), extra={"base_python": "p"})
    assert Target.from_dict(t.to_dict()) == t
