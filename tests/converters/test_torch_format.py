"""PyTorch loading: real files written by torch (torch.export, TorchScript scripted and traced,
state_dict, whole pickled modules, legacy pickles) plus damaged and malicious files.

Weight totals count parameters AND buffers (BatchNorm running_mean/var/num_batches_tracked):
both torch.export and TorchScript store buffers as data, so the loader lists them as weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from converters.analysis import analyze
from converters.errors import ConsentRequired, ModelLoadError
from converters.formats import Trust, detect_format, open_model
from converters.formats.torch_format import TorchFormat, load_torch_model
from converters.graph import ModelGraph, Node
from tests.conftest import SAMPLES

INPUT_SHAPE = [2, 3, 16, 16]
SPEC = json.dumps({"inputs": [{"name": "x", "shape": INPUT_SHAPE, "dtype": "float32"}]})
CONV_OPS = ("aten::conv2d", "aten::_convolution", "aten::convolution")
# Intermediate TorchScript shapes come from running the model: only with the user's consent.
TRUSTED = Trust(run_code=True)


class ConvNet(nn.Module):
    """Conv+BN+ReLU+pool, then a Linear; named submodules give readable scopes."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 8, kernel_size=3, padding=1)),
            ("bn1", nn.BatchNorm2d(8)),
            ("relu", nn.ReLU()),
            ("pool", nn.MaxPool2d(2)),
        ]))
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


class LstmNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.lstm = nn.LSTM(16, 32, num_layers=2, batch_first=True)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.proj(x))
        return self.head(y[:, -1])


class RunsCode:
    """Unpickling this runs a shell command: what a malicious .pt file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _stored_numel(model: nn.Module) -> int:
    return (sum(p.numel() for p in model.parameters())
            + sum(b.numel() for b in model.buffers()))


def _weight_numel(m: ModelGraph) -> int:
    return sum(t.numel for t in m.graph.tensors.values() if t.is_weight)


def _nodes(m: ModelGraph, op_types: tuple[str, ...] | str) -> list[Node]:
    op_types = (op_types,) if isinstance(op_types, str) else op_types
    return [item.node for item in m.walk() if item.node.op_type in op_types]


def _shape(m: ModelGraph, name: str) -> list | None:
    return m.graph.tensors[name].shape


def _assert_roundtrip(m: ModelGraph) -> None:
    assert ModelGraph.from_json(m.to_json()) == m


@pytest.fixture(scope="module")
def convnet() -> ConvNet:
    torch.manual_seed(0)
    return ConvNet().eval()


@pytest.fixture(scope="module")
def lstmnet() -> LstmNet:
    torch.manual_seed(0)
    return LstmNet().eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory, convnet, lstmnet) -> dict[str, Path]:
    """Every kind of file torch writes, made once for the module."""
    d = tmp_path_factory.mktemp("torch_files")
    x = torch.zeros(INPUT_SHAPE)
    seq = torch.zeros(2, 7, 8)
    paths = {name: d / name for name in (
        "conv.pt2", "conv_dynamic.pt2", "lstm.pt2", "conv_scripted_spec.pt", "conv_scripted.pt",
        "conv_traced.pt", "lstm_scripted_spec.pt", "lstm_traced.pt", "state_dict.pth",
        "legacy_state_dict.pt", "whole.pt")}
    torch.export.save(torch.export.export(convnet, (x,)), paths["conv.pt2"])
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(convnet, (x,), dynamic_shapes=({0: batch},)),
                      paths["conv_dynamic.pt2"])
    torch.export.save(torch.export.export(lstmnet, (seq,)), paths["lstm.pt2"])
    scripted = torch.jit.script(convnet)
    torch.jit.save(scripted, paths["conv_scripted_spec.pt"], _extra_files={"modeldeck.json": SPEC})
    torch.jit.save(scripted, paths["conv_scripted.pt"])
    torch.jit.save(torch.jit.trace(convnet, x), paths["conv_traced.pt"])
    lstm_spec = json.dumps({"inputs": [{"name": "x", "shape": [2, 7, 8], "dtype": "float32"}]})
    torch.jit.save(torch.jit.script(lstmnet), paths["lstm_scripted_spec.pt"],
                   _extra_files={"modeldeck.json": lstm_spec})
    torch.jit.save(torch.jit.trace(lstmnet, seq), paths["lstm_traced.pt"])
    torch.save(convnet.state_dict(), paths["state_dict.pth"])
    torch.save(convnet.state_dict(), paths["legacy_state_dict.pt"],
               _use_new_zipfile_serialization=False)
    torch.save(convnet, paths["whole.pt"])
    return paths


# --- sniffing ----------------------------------------------------------------------------

def test_every_kind_is_detected_by_content(files, tmp_path):
    for path in files.values():
        assert detect_format(path) is TorchFormat, path.name
    renamed = tmp_path / "model.bin"  # content wins over an unknown suffix
    renamed.write_bytes(files["conv_scripted.pt"].read_bytes())
    assert detect_format(renamed) is TorchFormat
    with open(files["legacy_state_dict.pt"], "rb") as f:
        assert f.read(1) == b"\x80"  # a legacy pickle, not a zip


def test_sniff_rejects_other_zips(tmp_path):
    other = tmp_path / "data.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert not TorchFormat.sniff(other, other.read_bytes()[:4096])


# --- torch.export --------------------------------------------------------------------------

def test_exported_program_graph(files, convnet):
    path = files["conv.pt2"]
    m = open_model(path)
    assert m.meta.format == "torch"
    assert m.meta.producer == f"torch {torch.__version__}"
    assert m.meta.opset.get("aten", 0) >= 1
    assert m.meta.file_size == path.stat().st_size
    assert m.meta.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [n.op_type for n in m.graph.nodes] == [
        "aten::conv2d", "aten::batch_norm", "aten::relu", "aten::max_pool2d", "aten::flatten",
        "aten::linear"]
    assert all(n.domain == "aten" for n in m.graph.nodes)
    assert m.graph.inputs == ["x"] and _shape(m, "x") == INPUT_SHAPE
    assert len(m.graph.outputs) == 1 and _shape(m, m.graph.outputs[0]) == [2, 10]

    conv = m.graph.nodes[0]
    assert conv.inputs == ["x", "features.conv1.weight", "features.conv1.bias"]
    assert _shape(m, conv.outputs[0]) == [2, 8, 16, 16]
    assert _shape(m, conv.inputs[1]) == [8, 3, 3, 3]
    assert conv.attributes["stride"] == [1, 1] and conv.attributes["padding"] == [1, 1]
    assert conv.attributes["groups"] == 1
    assert conv.scope == "/features/conv1"
    pool = m.graph.nodes[3]
    assert pool.attributes["kernel_size"] == [2, 2] and _shape(m, pool.outputs[0]) == [2, 8, 8, 8]
    linear = m.graph.nodes[-1]
    assert linear.inputs[1:] == ["fc.weight", "fc.bias"] and linear.scope == "/fc"

    weight = m.graph.tensors["features.conv1.weight"]
    assert weight.is_weight and weight.dtype == "float32" and weight.nbytes == 8 * 27 * 4
    assert "features.bn1.running_var" in m.graph.tensors  # buffers count as stored data
    assert _weight_numel(m) == _stored_numel(convnet)
    _assert_roundtrip(m)


def test_exported_program_macs_reach_the_analysis(files):
    macs = {c.op_type: c.macs for c in analyze(open_model(files["conv.pt2"])).nodes}
    assert macs["aten::conv2d"] == 2 * 8 * 16 * 16 * (3 * 3 * 3)  # out elements x Cin x k x k
    assert macs["aten::linear"] == 2 * 10 * 512


def test_exported_program_symbolic_batch(files):
    m = open_model(files["conv_dynamic.pt2"])
    batch = _shape(m, "x")[0]
    assert isinstance(batch, str) and _shape(m, "x")[1:] == INPUT_SHAPE[1:]
    conv = _nodes(m, "aten::conv2d")[0]
    assert _shape(m, conv.outputs[0]) == [batch, 8, 16, 16]
    _assert_roundtrip(m)


def test_exported_program_lstm(files, lstmnet):
    m = open_model(files["lstm.pt2"])
    (lstm,) = _nodes(m, "aten::lstm")
    assert lstm.scope == "/lstm"
    assert _shape(m, lstm.inputs[0]) == [2, 7, 16]  # the projected sequence comes first
    names = [n for n, _ in lstmnet.lstm.named_parameters()]
    assert [i for i in lstm.inputs if i.startswith("lstm.")] == [f"lstm.{n}" for n in names]
    assert [_shape(m, o) for o in lstm.outputs] == [[2, 7, 32], [2, 2, 32], [2, 2, 32]]
    assert lstm.attributes["batch_first"] is True and lstm.attributes["num_layers"] == 2
    assert not _nodes(m, "python::getitem")  # tuple items fold into the lstm's outputs
    assert _weight_numel(m) == _stored_numel(lstmnet)
    assert analyze(m).macs > 0
    _assert_roundtrip(m)


def test_exported_program_with_pickled_payload_is_refused(files, tmp_path):
    """torch.export.load falls back to full pickle for embedded .pt blobs: refuse those."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(files["conv.pt2"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("sample_inputs/model.pt"):
                buffer = bad.with_suffix(".tmp")
                torch.save(RunsCode(marker), buffer)
                data = buffer.read_bytes()
            dst.writestr(info.filename, data)
    with pytest.raises(ConsentRequired, match="run code") as err:
        open_model(bad)
    assert "--trust" not in str(err.value)  # each front end says how to consent
    assert not marker.exists()


def _poison_first_expression(program: dict, code: str) -> bool:
    for key, value in program.items() if isinstance(program, dict) else enumerate(program):
        if key == "expr_str":
            program[key] = f"{value} + 0*len({code}*[1])"
            return True
        if isinstance(value, (dict, list)) and _poison_first_expression(value, code):
            return True
    return False


def test_exported_program_with_code_in_a_shape_expression_is_refused(files, tmp_path):
    """torch.export.load parses symbolic sizes with sympy.sympify, which is eval."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(files["conv_dynamic.pt2"]) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if "/models/" in info.filename and info.filename.endswith(".json"):
                program = json.loads(data)
                assert _poison_first_expression(
                    program, f"__import__('os').system('touch {marker}')")
                data = json.dumps(program).encode()
            dst.writestr(info.filename, data)
    with pytest.raises(ModelLoadError, match="run code"):
        open_model(bad)
    assert not marker.exists()


# --- TorchScript ---------------------------------------------------------------------------

def test_torchscript_scripted_with_declared_input(files, convnet):
    m = open_model(files["conv_scripted_spec.pt"], TRUSTED)
    assert any("modeldeck.json" in note for note in m.meta.notes)
    assert not _nodes(m, ("prim::GetAttr", "prim::Constant"))  # folded, never nodes
    (conv,) = _nodes(m, CONV_OPS)
    assert conv.op_type == "aten::conv2d" and conv.domain == "aten"
    assert conv.inputs[1:] == ["features.conv1.weight", "features.conv1.bias"]
    assert _shape(m, conv.inputs[0]) == INPUT_SHAPE
    assert _shape(m, conv.outputs[0]) == [2, 8, 16, 16]
    assert conv.attributes["stride"] == [1, 1] and conv.attributes["groups"] == 1
    assert conv.scope == "/features/conv1"
    (bn,) = _nodes(m, "aten::batch_norm")
    assert bn.inputs[1:] == ["features.bn1.weight", "features.bn1.bias",
                             "features.bn1.running_mean", "features.bn1.running_var"]
    (pool,) = _nodes(m, "aten::max_pool2d")
    assert pool.attributes["kernel_size"] == [2, 2] and _shape(m, pool.outputs[0]) == [2, 8, 8, 8]
    (linear,) = _nodes(m, "aten::linear")
    assert linear.scope == "/fc" and _shape(m, linear.outputs[0]) == [2, 10]
    assert _weight_numel(m) == _stored_numel(convnet)
    macs = {c.op_type: c.macs for c in analyze(m).nodes}
    assert macs["aten::conv2d"] == 2 * 8 * 16 * 16 * 27 and macs["aten::linear"] == 2 * 10 * 512
    _assert_roundtrip(m)


@pytest.mark.parametrize("name", ["conv_scripted_spec.pt", "conv_traced.pt"])
def test_torchscript_is_not_run_without_consent(files, convnet, name):
    """The declared input shape labels the input; inner shapes would need a run: none."""
    m = open_model(files[name])
    (conv,) = _nodes(m, CONV_OPS)
    assert _shape(m, conv.outputs[0]) is None
    assert _shape(m, conv.inputs[1]) == [8, 3, 3, 3]  # weights always have shapes
    if name == "conv_scripted_spec.pt":  # declared in the archive: read, not run
        assert _shape(m, conv.inputs[0]) == INPUT_SHAPE
        assert any("runs code stored in the file" in note for note in m.meta.notes)
    assert _weight_numel(m) == _stored_numel(convnet)
    trusted = open_model(files[name], TRUSTED)
    (conv,) = _nodes(trusted, CONV_OPS)
    assert _shape(trusted, conv.outputs[0]) == [2, 8, 16, 16]


def test_torchscript_without_input_shape_says_so(files, convnet):
    m = open_model(files["conv_scripted.pt"])
    assert any("does not store input shapes" in note for note in m.meta.notes)
    (conv,) = _nodes(m, CONV_OPS)
    assert _shape(m, conv.outputs[0]) is None
    assert _shape(m, conv.inputs[1]) == [8, 3, 3, 3]  # weights always have shapes
    assert _weight_numel(m) == _stored_numel(convnet)
    _assert_roundtrip(m)


def test_torchscript_explicit_input_shapes_win(files):
    m = load_torch_model(files["conv_scripted_spec.pt"], TRUSTED, input_shapes=[[1, 3, 16, 16]])
    (conv,) = _nodes(m, CONV_OPS)
    assert _shape(m, conv.outputs[0]) == [1, 8, 16, 16]


def test_torchscript_wrong_input_shape_is_a_note_not_a_failure(files):
    m = load_torch_model(files["conv_scripted.pt"], TRUSTED,
                         input_shapes=[[1, 3, 32, 32]])  # fc wants 512
    assert any("failed" in note and "mat1 and mat2" in note for note in m.meta.notes)
    (conv,) = _nodes(m, CONV_OPS)
    assert _shape(m, conv.outputs[0]) is None


def test_torchscript_traced_uses_the_stored_example(files, convnet):
    m = open_model(files["conv_traced.pt"], TRUSTED)
    (conv,) = _nodes(m, CONV_OPS)
    assert conv.op_type == "aten::_convolution"
    assert conv.inputs == [m.graph.inputs[0], "features.conv1.weight", "features.conv1.bias"]
    assert conv.attributes["transposed"] is False
    assert _shape(m, conv.outputs[0]) == [2, 8, 16, 16]
    assert conv.scope == "/features/conv1"
    assert _weight_numel(m) == _stored_numel(convnet)
    _assert_roundtrip(m)


@pytest.mark.parametrize("name", ["lstm_scripted_spec.pt", "lstm_traced.pt"])
def test_torchscript_lstm(files, lstmnet, name):
    m = open_model(files[name], TRUSTED)
    (lstm,) = _nodes(m, "aten::lstm")
    names = [f"lstm.{n}" for n, _ in lstmnet.lstm.named_parameters()]
    assert [i for i in lstm.inputs if i.startswith("lstm.")] == names
    assert _shape(m, lstm.inputs[0]) == [2, 7, 16]
    assert _shape(m, lstm.outputs[0]) == [2, 7, 32]
    assert lstm.attributes["batch_first"] is True
    assert lstm.scope == "/lstm"
    assert _weight_numel(m) == _stored_numel(lstmnet)
    assert analyze(m).macs > 0
    _assert_roundtrip(m)


# --- torch.save files ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["state_dict.pth", "legacy_state_dict.pt"])
def test_state_dict_is_explained(files, convnet, name):
    with pytest.raises(ModelLoadError) as err:
        open_model(files[name])
    message = str(err.value)
    assert "only weights" in message
    assert f"{len(convnet.state_dict())} tensors" in message
    assert "features.conv1.weight" in message
    assert "torch.export" in message and "ONNX" in message


def test_whole_pickled_module_is_refused_without_trust(files):
    with pytest.raises(ConsentRequired) as err:
        open_model(files["whole.pt"])
    message = str(err.value)
    assert "run code" in message and "consent" in message
    assert "ConvNet" in message  # the class the pickle would import


def test_whole_pickled_module_loads_with_trust(files, convnet, tmp_path):
    path = tmp_path / "whole.pt"
    path.write_bytes(files["whole.pt"].read_bytes())
    with pytest.raises(ModelLoadError, match="input shape"):
        open_model(path, Trust(allow_pickle=True))
    path.with_suffix(".modeldeck.json").write_text(SPEC)
    m = open_model(path, Trust(allow_pickle=True))
    (conv,) = _nodes(m, CONV_OPS)
    assert _shape(m, conv.outputs[0]) == [2, 8, 16, 16]
    assert _weight_numel(m) == _stored_numel(convnet)
    assert any("pickle" in note for note in m.meta.notes)
    _assert_roundtrip(m)


@pytest.mark.parametrize("writer", ["torch.save", "torch.save legacy", "pickle.dump"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    payload = {"state": RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    elif writer == "torch.save legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    assert detect_format(path) is TorchFormat
    with pytest.raises(ModelLoadError, match="run code"):
        open_model(path)
    assert not marker.exists()


# --- damaged files -------------------------------------------------------------------------

def test_truncated_zip(files, tmp_path):
    data = files["conv_scripted.pt"].read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        open_model(path)


def test_truncated_legacy_pickle(files, tmp_path):
    data = files["legacy_state_dict.pt"].read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="damaged"):
        open_model(path)


def test_zip_that_is_not_torch(tmp_path):
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelLoadError, match="not a PyTorch file"):
        open_model(path)


def test_text_with_torch_suffix(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a model")
    with pytest.raises(ModelLoadError, match="not a PyTorch file"):
        open_model(path)


# --- the bundled sample ------------------------------------------------------------------------

def _sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{name} not generated yet (python -m resources.samples.train_digits_cnn)")
    return path


def _digits_stored_numel() -> int:
    from resources.samples.train_digits_cnn import DigitsCNN

    return _stored_numel(DigitsCNN())


def test_sample_torchscript():
    m = open_model(_sample("digits_cnn.ts.pt"), TRUSTED)
    convs = _nodes(m, CONV_OPS)
    assert [_shape(m, c.outputs[0]) for c in convs] == [[1, 32, 8, 8], [1, 64, 8, 8],
                                                      [1, 128, 4, 4]]
    assert [c.scope for c in convs] == ["/features/conv1", "/features/conv2", "/features/conv3"]
    linears = _nodes(m, "aten::linear")
    assert [_shape(m, n.outputs[0]) for n in linears] == [[1, 256], [1, 10]]
    assert _weight_numel(m) == _digits_stored_numel()
    assert analyze(m).macs > 0
    _assert_roundtrip(m)


def test_sample_exported_program():
    m = open_model(_sample("digits_cnn.pt2"))
    convs = _nodes(m, CONV_OPS)
    assert len(convs) == 3
    batch = _shape(m, m.graph.inputs[0])[0]
    assert isinstance(batch, str)  # exported with a dynamic batch
    assert _shape(m, convs[-1].outputs[0]) == [batch, 128, 4, 4]
    assert [c.scope for c in convs] == ["/features/conv1", "/features/conv2", "/features/conv3"]
    assert _shape(m, m.graph.outputs[0]) == [batch, 10]
    assert _weight_numel(m) == _digits_stored_numel()
    _assert_roundtrip(m)


class _Step(nn.Module):
    def forward(self, x):
        return torch.relu(x + 1.0)


def _chain() -> nn.Module:
    """Many cheap element-wise steps on a large activation: the sum of every intermediate is
    gigabytes, one inference needs tens of megabytes. Scripted (a Sequential unrolls), so
    making it runs nothing."""
    return torch.jit.script(nn.Sequential(*[_Step() for _ in range(150)]))


def test_shape_probe_needs_the_memory_of_one_inference(tmp_path):
    path = tmp_path / "chain.ts.pt"
    spec = {"inputs": [{"name": "x", "shape": [1, 64, 256, 256], "dtype": "float32"}]}  # 16.8 MB
    _chain().save(str(path), _extra_files={"modeldeck.json": json.dumps(spec)})
    code = ("import sys; sys.path.insert(0, sys.argv[2]);"
            "from converters.formats import Trust;"
            "from converters.formats.torch_format import load_torch_model;"
            "g = load_torch_model(sys.argv[1], Trust(run_code=True));"
            "print(sum(1 for n in g.graph.nodes if n.op_type == 'aten::relu'),"
            " sum(1 for t in g.graph.tensors.values() if t.shape == [1, 64, 256, 256]));"
            "print(open('/proc/self/status').read())")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, str(path), str(Path(__file__).parents[2])],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    relus, shaped = (int(x) for x in out.split("\n", 1)[0].split())
    peak_kb = int(next(line.split()[1] for line in out.splitlines()
                       if line.startswith("VmHWM:")))
    assert relus == 150 and shaped >= 300  # the probe ran and read every shape
    # Keeping every intermediate alive, as the probe once did, takes 300 x 16.8 MB = 5 GB.
    assert peak_kb < 1_500_000, f"the probe peaked at {peak_kb / 1e6:.1f} GB"


class _Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1)


def test_traced_example_is_a_default_not_a_fixed_size(tmp_path):
    """A model traced at batch 8 of 64x64 runs at other sizes: the user's size replaces the
    example, and the shapes inside come from running at the user's size."""
    from converters.workload import resolve_workload

    path = tmp_path / "pool.ts.pt"
    with torch.no_grad():
        torch.jit.trace(_Pool().eval(), torch.zeros(8, 3, 64, 64)).save(str(path))
    trusted = Trust(run_code=True)
    graph = open_model(path, trusted)
    assert graph.meta.example_inputs
    w = resolve_workload(graph)
    assert w.inputs[0].shape == (8, 3, 64, 64)
    assert "example" in w.inputs[0].shape_source
    w = resolve_workload(graph, user_shapes={"x": [1, 3, 32, 32]})
    assert w.inputs[0].shape == (1, 3, 32, 32)
    at_size = open_model(path, trusted, input_shapes={"x": [1, 3, 32, 32]})
    conv = next(n for n in at_size.graph.nodes if n.op_type == "aten::_convolution")
    assert at_size.graph.tensors[conv.outputs[0]].shape == [1, 4, 32, 32]
    assert not at_size.meta.example_inputs


def test_traced_size_runs_at_the_size_set(tmp_path):
    from profilers.runner import RunConfig, run_profile

    path = tmp_path / "pool.ts.pt"
    with torch.no_grad():
        torch.jit.trace(_Pool().eval(), torch.zeros(8, 3, 64, 64)).save(str(path))
    report = run_profile(RunConfig(model=str(path), backend="torch", iterations=5, warmup=1,
                                   samplers=False, shapes={"x": [2, 3, 16, 16]},
                                   trust_code=True), lambda e: None)
    assert report["inputs"]["x"]["shape"] == [2, 3, 16, 16]
