"""Real model families through every CLI flow with no size flags, and with --inputs alone.

A new user's path: `inspect`, `profile` on ONNX Runtime and OpenVINO (torch for TorchScript),
`convert --to openvino`, `convert --pass int8-dynamic`, `compare`. Models: a BERT-style encoder
(transformers, random weights), an OCR-style CNN + BiLSTM with a free width (built here, random
weights), rapidocr 3.10.0's PP-OCRv6 detector (free H x W), openwakeword 0.5.1's silero VAD (free
time axis, scalar sample rate), and a traced TorchScript CNN that declares example inputs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.real_models import bert_onnx, torchscript_with_example, wheel_member

pytestmark = pytest.mark.slow
TIMEOUT = 600


def _crnn(out: Path) -> Path:
    """A CRNN text recogniser: conv stack, height averaged away, BiLSTM over the width."""
    import warnings

    import torch

    class CRNN(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = torch.nn
            self.cnn = c.Sequential(c.Conv2d(1, 16, 3, padding=1), c.ReLU(), c.MaxPool2d(2),
                                    c.Conv2d(16, 32, 3, padding=1), c.ReLU(), c.MaxPool2d((2, 1)),
                                    c.Conv2d(32, 64, 3, padding=1), c.ReLU())
            self.rnn = c.LSTM(64, 48, bidirectional=True, batch_first=True)
            self.fc = c.Linear(96, 37)

        def forward(self, x):
            y, _ = self.rnn(self.cnn(x).mean(2).permute(0, 2, 1))
            return self.fc(y)

    torch.manual_seed(0)
    path = out / "crnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(CRNN().eval(), (torch.randn(1, 1, 32, 128),), str(path), dynamo=False,
                          input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "batch", 3: "width"},
                                        "logits": {0: "batch", 1: "steps"}})
    return path


def _md(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True,
                          text=True, timeout=TIMEOUT)
    if ok:
        assert proc.returncode == 0, f"modeldeck {' '.join(args)}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
    return proc


FAMILIES = ["bert", "crnn", "detector", "vad"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("families")
    return {"bert": bert_onnx(d), "crnn": _crnn(d),
            "detector": wheel_member("rapidocr", "3.10.0",
                                     "rapidocr/models/PP-OCRv6_det_small.onnx"),
            "vad": wheel_member("openwakeword", "0.5.1",
                                "openwakeword/resources/models/silero_vad.onnx")}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_flow_runs_without_size_flags(family, models, tmp_path):
    path = str(models[family])
    s = json.loads(_md("inspect", path, "--json").stdout)
    assert s["workload"] and all(i["shape"] is not None for i in s["workload"]["inputs"])
    assert s["macs"] > 0
    reports = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / f"{backend}.json"
        _md("profile", path, "--backend", backend, "--iterations", "3", "--warmup", "1",
            "--threads", "1", "--no-samplers", "--quiet", "--json", str(out))
        reports[backend] = json.loads(out.read_text())
        assert reports[backend]["iterations"] == 3
    assert reports["onnxruntime"]["inputs"] == reports["openvino"]["inputs"]  # one workload
    ir = tmp_path / "m.xml"
    conv = json.loads(_md("convert", path, "--to", "openvino", "-o", str(ir), "--json").stdout)
    cos = conv["steps"][-1]["fidelity"]["cosine"]
    assert cos > 0.99, conv["steps"][-1]
    q = tmp_path / "q.onnx"
    conv = json.loads(_md("convert", path, "--pass", "int8-dynamic", "-o", str(q),
                          "--json").stdout)
    assert conv["steps"][-1]["fidelity"]["cosine"] > 0.9, conv["steps"][-1]
    cmp = json.loads(_md("compare", path, str(ir), str(q), "--iterations", "5", "--warmup", "1",
                         "--threads", "1", "--json").stdout)
    assert [r["backend"] for r in cmp["rows"]] == ["onnxruntime", "openvino", "onnxruntime"]
    assert [r["fidelity"]["cosine"] > 0.9 for r in cmp["rows"]] == [True] * 3


@pytest.mark.parametrize("family", ["bert", "crnn", "vad"])
def test_inputs_alone_set_the_sizes(family, models, tmp_path):
    """An .npz of real inputs (here: valid values at sizes of our choosing) is all it takes."""
    from converters.formats import open_model
    from converters.workload import generate, resolve_workload

    path = models[family]
    g = open_model(path)
    sizes = {"bert": {"input_ids": [1, 40], "attention_mask": [1, 40], "token_type_ids": [1, 40]},
             "crnn": {"image": [1, 1, 32, 96]}, "vad": {"input": [1, 512]}}[family]
    feeds = generate(resolve_workload(g, user_shapes=sizes))
    npz = tmp_path / "inputs.npz"
    np.savez(npz, **feeds)
    s = json.loads(_md("inspect", str(path), "--json", "--inputs", str(npz)).stdout)
    for name, shape in sizes.items():
        (row,) = [i for i in s["workload"]["inputs"] if i["name"] == name]
        assert row["shape"] == shape and row["shape_source"] == "from data"
    out = tmp_path / "run.json"
    _md("profile", str(path), "--inputs", str(npz), "--iterations", "2", "--warmup", "0",
        "--threads", "1", "--no-samplers", "--quiet", "--json", str(out))
    report = json.loads(out.read_text())
    assert {k: v["shape"] for k, v in report["inputs"].items() if k in sizes} == sizes
    conv = json.loads(_md("convert", str(path), "--to", "openvino", "--inputs", str(npz), "-o",
                          str(tmp_path / "m.xml"), "--json").stdout)
    assert conv["verified_on"].startswith("inputs ")
    assert conv["steps"][-1]["fidelity"]["cosine"] > 0.99


def test_torchscript_with_example_inputs(tmp_path):
    path = str(torchscript_with_example(tmp_path))
    s = json.loads(_md("inspect", path, "--json").stdout)  # no code runs: shapes declared
    assert s["workload"]["inputs"][0]["shape_source"] == "declared by the model"
    refused = _md("profile", path, "--backend", "torch", "--iterations", "2", ok=False)
    assert refused.returncode == 2 and "--trust" in refused.stderr
    out = tmp_path / "run.json"
    _md("profile", path, "--backend", "torch", "--trust", "--iterations", "3", "--warmup", "1",
        "--threads", "1", "--no-samplers", "--quiet", "--json", str(out))
    report = json.loads(out.read_text())
    assert list(report["inputs"].values())[0]["shape"] == s["workload"]["inputs"][0]["shape"]
    onnx_out = tmp_path / "m.onnx"
    conv = json.loads(_md("convert", path, "--to", "onnx", "--trust", "-o", str(onnx_out),
                          "--json").stdout)
    assert conv["steps"][-1]["fidelity"]["cosine"] > 0.999
    ir = tmp_path / "m.xml"  # torch -> ONNX -> IR, then an INT8 pass (torch -> ONNX -> int8)
    conv = json.loads(_md("convert", path, "--to", "openvino", "--trust", "-o", str(ir),
                          "--json").stdout)
    assert [s["format"] for s in conv["steps"]] == ["torch", "onnx", "openvino"]
    assert conv["steps"][-1]["fidelity"]["cosine"] > 0.999
    q = tmp_path / "q.onnx"
    conv = json.loads(_md("convert", path, "--pass", "int8-dynamic:op_types=Conv;MatMul;Gemm",
                          "--trust", "-o", str(q), "--json").stdout)
    assert conv["steps"][-1]["fidelity"]["cosine"] > 0.98
    cmp = json.loads(_md("compare", path, str(onnx_out), str(ir), "--trust", "--iterations", "5",
                         "--warmup", "1", "--threads", "1", "--json").stdout)
    assert [r["backend"] for r in cmp["rows"]] == ["torch", "onnxruntime", "openvino"]
    assert all(r["fidelity"]["cosine"] > 0.999 for r in cmp["rows"])
