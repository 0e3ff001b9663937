"""ONNX models whose weights live in external data survive being placed under another name:
the data is renamed with the graph and the graph's references rewritten (a pipeline step and
optimize's winner used to point at the old data name: 'External data path does not exist');
a reference outside the model's folder is refused, never read."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "resources" / "samples"


def _external(tmp: Path) -> Path:
    """The VGG sample saved with its weights in 'vggx.onnx.data'."""
    model = onnx.load(str(SAMPLES / "digits_vgg.onnx"))
    path = tmp / "src" / "vggx.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="vggx.onnx.data", size_threshold=0)
    return path


def _sha(paths) -> list[str]:
    return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def _runs(path: Path) -> np.ndarray:
    import onnxruntime as ort

    x = np.load(SAMPLES / "digits_vgg_test.npz")["inputs"][:4]
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]


def test_copy_renames_the_data_and_rewrites_the_references(tmp_path):
    from converters.passes import ModelFile
    from converters.passes._common import copy_model

    src = _external(tmp_path)
    before = _sha([src, src.with_name("vggx.onnx.data")])
    out = copy_model(ModelFile(src, "onnx"), tmp_path / "out" / "renamed.onnx")
    assert out.files() == [out.path, out.path.with_name("renamed.onnx.data")]
    np.testing.assert_allclose(_runs(out.path), _runs(src), rtol=0, atol=0)
    assert _sha([src, src.with_name("vggx.onnx.data")]) == before  # the source untouched
    assert not list((tmp_path / "out").glob(".*.partial"))


def test_a_reference_outside_the_folder_is_refused(tmp_path):
    from converters.passes import ModelFile, PassError
    from converters.passes._common import copy_model

    src = _external(tmp_path)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not model data")
    proto = onnx.load(str(src), load_external_data=False)
    for t in proto.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../secret.bin"
    onnx.save_model(proto, str(src))
    with pytest.raises(PassError, match="outside its folder"):
        copy_model(ModelFile(src, "onnx"), tmp_path / "out" / "x.onnx")
    assert not (tmp_path / "out" / "x.onnx.data").exists()


@pytest.mark.slow
def test_int8_passes_on_a_model_with_external_data(tmp_path):
    from app.pipeline import ConvertSpec, StepSpec, run_pipeline

    src = _external(tmp_path)
    for name, opts in (("int8-dynamic", {}), ("int8-static", {"samples": 32})):
        out = tmp_path / "out" / f"{name}.onnx"
        r = run_pipeline(ConvertSpec(model=str(src), output=str(out),
                                     passes=(StepSpec(name, opts),),
                                     calib=str(SAMPLES / "digits_vgg_calib.npz"),
                                     verify_samples=16), emit=lambda e: None)
        assert Path(r["output"]) == out
        assert _runs(out).shape == (4, 10)
        cos = r["steps"][-1]["fidelity"]["cosine"]
        assert cos > 0.99, (name, cos)
