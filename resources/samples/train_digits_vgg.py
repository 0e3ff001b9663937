"""Train and export ModelDeck's second sample: a VGG-style CNN on scikit-learn's digits at 32×32.

The first sample (digits_cnn) runs in ~0.1 ms: too small for compute to dominate, so the speed
of INT8, of a runtime or of pruning cannot show on it. This one does the same real task on the
same real data (``sklearn.datasets.load_digits``, shipped inside scikit-learn, no download),
with each 8×8 digit upsampled bilinearly to 32×32 and a network whose convolutions run at full
32×32 and 16×16 resolution, so one FP32 inference costs ~0.45 GMAC (several ms on a laptop
core). Every source of randomness is fixed; ``make sample-vgg`` regenerates:

    digits_vgg.onnx        ONNX, dynamic batch ("batch"), input "input" [N,1,32,32], output "logits"
    digits_vgg.pt2         torch.export ExportedProgram (torch passes: pruning, distillation)
    digits_vgg_test.npz    held-out split ("inputs" float32 Nx1x32x32, "labels" int64): the same
                           450 digits as digits_test.npz, upsampled
    digits_vgg_calib.npz   256 training digits ("inputs") for INT8 calibration (never test data)
    digits_vgg.json        metadata: test accuracy, parameters, MACs, seed, torch version

Run from the repository root with ``python -m resources.samples.train_digits_vgg``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from resources.samples.train_digits_cnn import CLASS_NAMES, load_split, seed_everything

logger = logging.getLogger(__name__)

SEED = 0
EPOCHS = 6
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
SIZE = 32
CALIB_SAMPLES = 256
ONNX_OPSET = 18
MAX_ABS_DIFF = 1e-3  # logits are ~10: the exported twins must agree to 1e-4 relative

ONNX_NAME = "digits_vgg.onnx"
EXPORTED_PROGRAM_NAME = "digits_vgg.pt2"
TEST_DATA_NAME = "digits_vgg_test.npz"
CALIB_NAME = "digits_vgg_calib.npz"
METADATA_NAME = "digits_vgg.json"

# (out channels, then "M" for a 2×2 max-pool): most of the work sits at 32×32 and 16×16.
LAYOUT = (32, 64, 128, 128, 128, "M", 96, 96, "M", 96)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]


class DigitsVGG(nn.Module):
    """Conv-BN-ReLU stacks and global average pooling, ~0.67 M parameters, ~0.45 GMAC at 32×32.

    Few parameters for its cost (a few MB on disk) but many MACs: the regime where INT8 kernels,
    runtimes and channel pruning make a measurable difference. Named modules give the exported
    graph a readable scope (/features/conv3/Conv).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        cin, n_conv, n_pool = 1, 0, 0
        for item in LAYOUT:
            if item == "M":
                n_pool += 1
                layers.append((f"pool{n_pool}", nn.MaxPool2d(2)))
                continue
            n_conv += 1
            conv, bn, relu = _block(cin, int(item))
            layers += [(f"conv{n_conv}", conv), (f"bn{n_conv}", bn), (f"relu{n_conv}", relu)]
            cin = int(item)
        self.features = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
            ("fc", nn.Linear(cin, num_classes))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def upsample(images: np.ndarray) -> np.ndarray:
    """8×8 digits -> SIZE×SIZE, bilinear (torch's, so the ONNX twin sees what training saw)."""
    with torch.no_grad():
        out = nn.functional.interpolate(torch.from_numpy(images), size=(SIZE, SIZE),
                                        mode="bilinear", align_corners=False)
    return np.ascontiguousarray(out.numpy().astype(np.float32))


def macs(model: nn.Module) -> int:
    """Multiply-accumulates of one batch-1 inference (convolutions and the linear layer)."""
    total = 0
    hooks = []

    def conv_hook(mod, _inp, out):
        nonlocal total
        total += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]

    def fc_hook(mod, _inp, out):
        nonlocal total
        total += mod.in_features * mod.out_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(fc_hook))
    with torch.no_grad():
        model(torch.zeros(1, 1, SIZE, SIZE))
    for h in hooks:
        h.remove()
    return total


def train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, epochs: int) -> None:
    """Adam with a one-cycle schedule over seeded shuffles; small random shifts for robustness."""
    inputs = torch.from_numpy(x_train)
    targets = torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps = epochs * ((len(inputs) + BATCH_SIZE - 1) // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LEARNING_RATE,
                                                   total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            x = inputs[batch]
            dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=generator))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            optimizer.zero_grad()
            loss = loss_fn(model(x), targets[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        logger.info("epoch %d/%d loss %.4f", epoch + 1, epochs, total / len(order))
    model.eval()


def export_onnx(model: nn.Module, path: Path) -> None:
    """TorchScript-based exporter, as for digits_cnn (scope names, one self-contained file)."""
    import onnx

    torch.onnx.export(model, (torch.zeros(1, 1, SIZE, SIZE),), str(path),
                      input_names=["input"], output_names=["logits"], opset_version=ONNX_OPSET,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=False, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def export_program(model: nn.Module, path: Path) -> None:
    """torch.export with a dynamic batch (example batch 2: sizes 0 and 1 are specialised)."""
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (torch.zeros(2, 1, SIZE, SIZE),),
                                  dynamic_shapes=({0: batch},))
    for node in program.graph.nodes:  # absolute paths of this machine: not in the archive
        node.meta.pop("stack_trace", None)
    torch.export.save(program, str(path))


def check_twins(model: nn.Module, out_dir: Path, inputs: np.ndarray) -> np.ndarray:
    """Fail loudly if an exported file disagrees with the eager model; return ONNX logits."""
    import onnxruntime as ort

    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
        program = torch.export.load(str(out_dir / EXPORTED_PROGRAM_NAME))
        from_program = program.module()(torch.from_numpy(inputs)).numpy()
    session = ort.InferenceSession(str(out_dir / ONNX_NAME), providers=["CPUExecutionProvider"])
    from_onnx = session.run(["logits"], {"input": inputs})[0]
    for name, actual in (("onnx", from_onnx), ("pt2", from_program)):
        diff = float(np.max(np.abs(actual - expected)))
        logger.info("%s vs eager: max abs diff %.2e", name, diff)
        if diff >= MAX_ABS_DIFF:
            raise RuntimeError(f"{name} export disagrees with the eager model (max abs diff {diff})")
    return from_onnx


def train_and_export(out_dir: Path, epochs: int = EPOCHS, threads: int = 2) -> dict:
    """Train, write every sample file into out_dir, return the metadata."""
    out_dir.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = load_split()
    x_train, x_test = upsample(x_train), upsample(x_test)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seed_everything(SEED)
        model = DigitsVGG(num_classes=len(CLASS_NAMES))
        started = time.perf_counter()
        train(model, x_train, y_train, epochs)
        train_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    logger.info("trained %d epochs in %.1f s", epochs, train_seconds)

    export_onnx(model, out_dir / ONNX_NAME)
    export_program(model, out_dir / EXPORTED_PROGRAM_NAME)
    np.savez_compressed(out_dir / TEST_DATA_NAME, inputs=x_test, labels=y_test)
    calib = np.random.default_rng(SEED).choice(len(x_train), CALIB_SAMPLES, replace=False)
    np.savez_compressed(out_dir / CALIB_NAME, inputs=x_train[np.sort(calib)])

    logits = check_twins(model, out_dir, x_test)
    accuracy = float(np.mean(logits.argmax(axis=1) == y_test))
    logger.info("ONNX test accuracy: %.4f on %d samples", accuracy, len(y_test))
    metadata = {
        "model": ONNX_NAME,
        "origin": "scikit-learn load_digits (UCI optdigits test set, 1,797 8x8 images), "
                  "upsampled bilinearly to 32x32; split as digits_cnn (stratified 25 %, seed 0)",
        "test_accuracy": accuracy,
        "num_test_samples": int(len(y_test)),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "macs": macs(model),
        "input_shape": [1, 1, SIZE, SIZE],
        "seed": SEED,
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "class_names": CLASS_NAMES,
    }
    (out_dir / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    args = parser.parse_args()
    metadata = train_and_export(args.out_dir, epochs=args.epochs, threads=args.threads)
    print(f"test accuracy: {metadata['test_accuracy']:.4f} ({metadata['num_test_samples']} "
          f"samples), {metadata['macs'] / 1e6:.0f} MMAC, trained in {metadata['train_seconds']} s")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
