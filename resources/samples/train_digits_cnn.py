"""Train and export ModelDeck's bundled sample model: a small CNN on scikit-learn's digits.

The sample has to be reproducible from the repository alone, so the data comes from
``sklearn.datasets.load_digits`` (shipped inside scikit-learn, no download) and every
source of randomness is fixed. Re-running this script with the same torch version on a
CPU with the same SIMD capability regenerates the same files:

    digits_cnn.onnx    ONNX model, dynamic batch ("batch"), input "input", output "logits"
    digits_cnn.ts.pt   TorchScript twin, with an example input shape in "modeldeck.json"
    digits_cnn.pt2     torch.export ExportedProgram
    digits_test.npz    held-out split ("inputs" float32 Nx1x8x8, "labels" int64)
    digits_cnn.json    metadata: ONNX test accuracy, sample count, parameter count, ...

Run from the repository root with ``python -m resources.samples.train_digits_cnn`` or as a
file; ``--out-dir`` writes somewhere other than next to this script.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

logger = logging.getLogger(__name__)

SEED = 0
EPOCHS = 20
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
ONNX_OPSET = 18
CLASS_NAMES = [str(digit) for digit in range(10)]
# Tolerance for "the exported twins compute the same thing as the eager model".
MAX_ABS_DIFF = 1e-4

ONNX_NAME = "digits_cnn.onnx"
TORCHSCRIPT_NAME = "digits_cnn.ts.pt"
EXPORTED_PROGRAM_NAME = "digits_cnn.pt2"
TEST_DATA_NAME = "digits_test.npz"
METADATA_NAME = "digits_cnn.json"


class DigitsCNN(nn.Module):
    """Conv+BN feature extractor and an MLP head, ~0.6 M parameters.

    Deliberately larger than the task needs: the sample exists to show pruning and INT8
    quantisation, which only matter when there are weights to remove. Named submodules
    (features.conv1, classifier.fc1, ...) give exported graphs a readable module scope.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(1, 32, kernel_size=3, padding=1)),
                    ("bn1", nn.BatchNorm2d(32)),
                    ("relu1", nn.ReLU()),
                    ("conv2", nn.Conv2d(32, 64, kernel_size=3, padding=1)),
                    ("bn2", nn.BatchNorm2d(64)),
                    ("relu2", nn.ReLU()),
                    ("pool", nn.MaxPool2d(2)),
                    ("conv3", nn.Conv2d(64, 128, kernel_size=3, padding=1)),
                    ("bn3", nn.BatchNorm2d(128)),
                    ("relu3", nn.ReLU()),
                ]
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("flatten", nn.Flatten()),
                    ("fc1", nn.Linear(128 * 4 * 4, 256)),
                    ("relu", nn.ReLU()),
                    ("dropout", nn.Dropout(0.3)),
                    ("fc2", nn.Linear(256, num_classes)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (x_train, x_test, y_train, y_test): NCHW float32 in [0, 1], int64 labels.

    The split is fixed (stratified, random_state=0) so the shipped test set never changes.
    """
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.25, random_state=0, stratify=labels
    )
    return x_train, x_test, y_train, y_test


def seed_everything(seed: int) -> None:
    """Fix every RNG the training touches so the weights are bit-for-bit repeatable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, epochs: int) -> None:
    """Plain Adam + cross-entropy over seeded shuffles; no DataLoader so no worker RNG."""
    inputs = torch.from_numpy(x_train)
    targets = torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()

    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total_loss = 0.0
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
        logger.debug("epoch %d/%d loss %.4f", epoch + 1, epochs, total_loss / len(order))
    model.eval()


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export with a dynamic batch dimension and all weights inside the one .onnx file.

    Uses the TorchScript-based exporter (dynamo=False) although torch marks it deprecated:
    it names nodes by module scope (/features/conv1/Conv) and initializers by state_dict
    key, and its output does not depend on where the script lives. The dynamo exporter
    names nodes node_Conv_25, writes a .data sidecar by default and embeds stack traces
    with absolute paths. Constant folding is off so BatchNorm stays a node of its own
    (folding would merge it into the conv and rename the weights onnx::Conv_41).
    """
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        opset_version=ONNX_OPSET,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        do_constant_folding=False,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace the eval-mode model; the extra file tells a loader what input to feed."""
    traced = torch.jit.trace(model, example)
    spec = {"inputs": [{"name": "input", "shape": list(example.shape), "dtype": "float32"}]}
    torch.jit.save(traced, str(path), _extra_files={"modeldeck.json": json.dumps(spec)})


def export_program(model: nn.Module, path: Path) -> None:
    """torch.export with a dynamic batch dimension, saved as a .pt2 archive.

    The example has batch 2 on purpose: torch.export specialises sizes 0 and 1, so a
    batch-1 example would pin the batch dimension to 1.
    """
    example = torch.zeros(2, 1, 8, 8)
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    # Stack traces hold absolute paths of the machine that ran this script; drop them so
    # the committed archive does not change with where the repository is checked out.
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
    torch.export.save(program, str(path))


def onnx_logits(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run the ONNX file with onnxruntime on CPU, the way ModelDeck would."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": inputs})[0]


def check_twins(model: nn.Module, out_dir: Path, inputs: np.ndarray) -> np.ndarray:
    """Fail loudly if any exported file disagrees with the eager model; return ONNX logits."""
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
        scripted = torch.jit.load(str(out_dir / TORCHSCRIPT_NAME))
        from_script = scripted(torch.from_numpy(inputs)).numpy()
        program = torch.export.load(str(out_dir / EXPORTED_PROGRAM_NAME))
        from_program = program.module()(torch.from_numpy(inputs)).numpy()
    from_onnx = onnx_logits(out_dir / ONNX_NAME, inputs)

    for name, actual in [("onnx", from_onnx), ("torchscript", from_script), ("pt2", from_program)]:
        diff = float(np.max(np.abs(actual - expected)))
        logger.info("%s vs eager: max abs diff %.2e", name, diff)
        if diff >= MAX_ABS_DIFF:
            raise RuntimeError(f"{name} export disagrees with the eager model (max abs diff {diff})")
    return from_onnx


def train_and_export(out_dir: Path, epochs: int = EPOCHS) -> dict:
    """Train the sample model, write all sample files into out_dir, return the metadata."""
    out_dir.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = load_split()

    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        seed_everything(SEED)
        model = DigitsCNN(num_classes=len(CLASS_NAMES))
        started = time.perf_counter()
        train(model, x_train, y_train, epochs)
        train_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic)
    logger.info("trained %d epochs in %.1f s", epochs, train_seconds)

    example = torch.zeros(1, 1, 8, 8)
    export_onnx(model, example, out_dir / ONNX_NAME)
    export_torchscript(model, example, out_dir / TORCHSCRIPT_NAME)
    export_program(model, out_dir / EXPORTED_PROGRAM_NAME)
    np.savez_compressed(out_dir / TEST_DATA_NAME, inputs=x_test, labels=y_test)

    with np.load(out_dir / TEST_DATA_NAME) as shipped:
        test_inputs, test_labels = shipped["inputs"], shipped["labels"]
    logits = check_twins(model, out_dir, test_inputs)
    accuracy = float(np.mean(logits.argmax(axis=1) == test_labels))
    logger.info("ONNX test accuracy: %.4f on %d samples", accuracy, len(y_test))

    metadata = {
        "model": ONNX_NAME,
        "test_accuracy": accuracy,
        "num_test_samples": int(len(y_test)),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "seed": SEED,
        "epochs": epochs,
        "torch_version": torch.__version__,
        # Float rounding in training depends on the SIMD kernels in use, so the weights
        # are only bit-reproducible with the same torch version on the same capability.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "class_names": CLASS_NAMES,
    }
    (out_dir / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    metadata = train_and_export(args.out_dir, epochs=args.epochs)
    print(f"test accuracy: {metadata['test_accuracy']:.4f} ({metadata['num_test_samples']} samples)")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
