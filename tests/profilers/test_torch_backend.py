"""torch backend on small real modules saved as TorchScript and torch.export archives.

Running a program is running the file's code: every test here runs with the job's consent
(converters.formats.consent) except the one that checks the refusal without it."""
from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest

from converters.errors import ConsentRequired
from converters.formats import consent
from profilers.backends import BackendError, BackendOptions, get_backend
from tests.conftest import SAMPLES

torch = pytest.importorskip("torch")
nn = torch.nn


class TwoHeads(nn.Module):
    """Conv + linear, returning a tuple: checks output flattening and op aggregation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 14 * 14, 5)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.flatten(1)), h.mean()


def _module() -> nn.Module:
    torch.manual_seed(0)
    return TwoHeads().eval()


def _example(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _torchscript(path, spec: dict | None = None):
    model = _module()
    extra = {"modeldeck.json": json.dumps(spec)} if spec else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(model, _example()), str(path), _extra_files=extra)
    return model, path


def _exported(path):
    model = _module()
    program = torch.export.export(model, (_example(),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return model, path


def _eager(model: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        return [t.numpy() for t in model(torch.from_numpy(x))]


@pytest.fixture(autouse=True)
def consented():
    with consent(True):
        yield


@pytest.fixture
def backend():
    b = get_backend("torch")()
    yield b
    b.close()


@pytest.mark.parametrize("archive", ["torchscript", "export"])
def test_programs_are_not_run_without_consent(backend, tmp_path, archive):
    _, path = (_torchscript(tmp_path / "m.pt") if archive == "torchscript"
               else _exported(tmp_path / "m.pt2"))
    with consent(False), pytest.raises(ConsentRequired) as err:
        backend.load(path, "torch", "CPU", BackendOptions())
    assert "runs code stored in the file" in str(err.value)
    assert "--" not in str(err.value)  # no CLI flag: the window asks in its own words
    with pytest.raises(BackendError, match="no model loaded"):
        backend.input_specs()


def test_available_and_devices():
    cls = get_backend("torch")
    assert cls.available() == (True, torch.__version__)
    devices = {d.name: d for d in cls.devices()}
    assert devices["CPU"].available
    assert devices["CUDA"].available == torch.cuda.is_available()
    if not devices["CUDA"].available:
        assert devices["CUDA"].reason


def test_torchscript_with_spec_matches_eager(backend, tmp_path):
    spec = {"inputs": [{"name": "x", "shape": [2, 3, 16, 16], "dtype": "float32"}]}
    model, path = _torchscript(tmp_path / "m.pt", spec)
    info = backend.load(path, "torch", "CPU", BackendOptions(threads=2))
    assert info.load_ms > 0
    assert info.details["threads"] == 2 and info.details["kind"] == "torchscript"
    (s,) = backend.input_specs()
    assert (s.name, s.dtype, s.shape) == ("x", "float32", (2, 3, 16, 16))
    x = _example().numpy()
    out = backend.infer({"x": x})
    expected = _eager(model, x)
    assert [o.shape for o in out] == [(2, 5), ()]
    for got, want in zip(out, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_torchscript_without_spec_asks_for_shapes(backend, tmp_path):
    _, path = _torchscript(tmp_path / "m.pt")
    backend.load(path, "torch", "CPU", BackendOptions())
    (s,) = backend.input_specs()
    assert s.name == "x" and s.shape is None  # rank unknown
    from converters.errors import ModelDeckError
    from profilers.inputs import generate

    with pytest.raises(ModelDeckError, match="x="):  # asks for the size of x
        generate([s])
    assert generate([s], {"x": [2, 4]})["x"].shape == (2, 4)


def test_exported_program_specs_and_dynamic_batch(backend, tmp_path):
    model, path = _exported(tmp_path / "m.pt2")
    info = backend.load(path, "torch", "CPU", BackendOptions(threads=1))
    assert info.details["kind"] == "export" and info.details["threads"] == 1
    (s,) = backend.input_specs()
    assert s.dtype == "float32" and s.shape[1:] == (3, 16, 16)
    assert isinstance(s.shape[0], str)  # the symbolic batch
    x = _example(batch=5).numpy()
    out = backend.infer({s.name: x})
    assert out[0].shape == (5, 5)
    np.testing.assert_allclose(out[0], _eager(model, x)[0], rtol=1e-5, atol=1e-5)


def test_bundled_sample_archives_run(backend):
    for name in ("digits_cnn.ts.pt", "digits_cnn.pt2"):
        path = SAMPLES / name
        if not path.exists():
            pytest.skip(f"{name} not generated yet")
        backend.load(path, "torch", "CPU", BackendOptions())
        (s,) = backend.input_specs()
        shape = [d if isinstance(d, int) else 1 for d in s.shape]
        (logits,) = backend.infer({s.name: np.zeros(shape, np.float32)})
        assert logits.shape == (1, 10)


def test_layer_profile_per_op_type(tmp_path):
    _, path = _exported(tmp_path / "m.pt2")
    b = get_backend("torch")()
    try:
        b.load(path, "torch", "CPU", BackendOptions(profile_layers=True))
        x = _example().numpy()
        for _ in range(3):
            b.infer({"x": x})
        layers = b.layer_profile({"conv": "n0"})
    finally:
        b.close()
    ops = {lt.name: lt for lt in layers}
    assert {"aten::conv2d", "aten::linear", "aten::relu"} <= set(ops)
    assert "aten::mkldnn_convolution" not in ops  # counted inside aten::conv2d
    assert all(lt.node_id is None and lt.device == "CPU" and lt.op_type == lt.name
               for lt in layers)
    assert ops["aten::conv2d"].time_ms > 0
    assert [lt.time_ms for lt in layers] == sorted((lt.time_ms for lt in layers), reverse=True)


def test_layer_profile_torchscript_skips_input_copies(tmp_path):
    _, path = _torchscript(tmp_path / "m.pt")
    b = get_backend("torch")()
    try:
        b.load(path, "torch", "CPU", BackendOptions(profile_layers=True))
        b.infer({"x": _example().numpy()})
        layers = b.layer_profile({})
    finally:
        b.close()
    names = {lt.name for lt in layers}
    assert names and all(n.startswith("aten::") for n in names)
    assert not names & {"aten::to", "aten::_to_copy", "aten::from_numpy"}


def test_layer_profile_needs_profiling(backend, tmp_path):
    _, path = _exported(tmp_path / "m.pt2")
    backend.load(path, "torch", "CPU", BackendOptions())
    with pytest.raises(BackendError, match="profile_layers"):
        backend.layer_profile({})


@pytest.mark.parametrize("kind", ["torch.save zip", "bare pickle"])
def test_plain_pickles_are_refused(backend, tmp_path, kind):
    path = tmp_path / "model.pt"
    if kind == "torch.save zip":
        torch.save(_module(), str(path))
    else:
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(BackendError, match="plain pickle"):
        backend.load(path, "torch", "CPU", BackendOptions())


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_request_lists_available_devices(backend, tmp_path):
    _, path = _exported(tmp_path / "m.pt2")
    with pytest.raises(BackendError, match=r"'CUDA'.*available: CPU"):
        backend.load(path, "torch", "CUDA", BackendOptions())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("archive", ["torchscript", "export"])
def test_cuda_matches_eager_and_profiles(tmp_path, archive):
    if archive == "torchscript":
        model, path = _torchscript(tmp_path / "m.pt")
    else:
        model, path = _exported(tmp_path / "m.pt2")
    b = get_backend("torch")()
    try:
        info = b.load(path, "torch", "CUDA", BackendOptions(profile_layers=True))
        assert info.details["device"] == "cuda:0"
        x = _example().numpy()
        out = b.infer({"x": x})
        layers = b.layer_profile({})
    finally:
        b.close()
    np.testing.assert_allclose(out[0], _eager(model, x)[0], rtol=1e-3, atol=1e-3)
    conv = next(lt for lt in layers if "conv" in lt.name)
    assert conv.device == "CUDA" and conv.time_ms > 0
