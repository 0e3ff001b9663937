"""distill: a short teacher -> student recovery after pruning or factorising.

The student is the model handed to the pass (e.g. the output of prune-channels); the teacher is
`teacher`, a path to the original model (.pt2, TorchScript, or ONNX). In a pipeline the option
can stay empty: app/pipeline.py fills it with the model as it was before the run's first
pruning pass (the ordering rules, converters/passes/order.py, put distill after prune-channels). The student learns
to reproduce the teacher's outputs on the calibration inputs (no labels needed): KL divergence of
temperature-softened outputs (Hinton et al.), or MSE on the raw outputs.

Training runs on `program.module()`: its parameters take gradients like any module's. The
exported graph fixes eval-mode behaviour, so BatchNorm keeps its running statistics and dropout
stays off; only the weights move, which is what a short recovery wants. The program is saved
with the new weights and the same graph.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from converters.passes import (
    CalibrationData, ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes import _model_io as io
from converters.passes._common import error_line, output_stem

logger = logging.getLogger(__name__)

NAME = "distill"
SEED = 0  # batch order is fixed so a recipe replays the same way


@register_pass
class Distill(Pass):
    name = NAME
    accepts = frozenset({"torch"})
    stage = "recovery"  # see converters/passes/order.py
    description = ("Fine-tune a pruned model to match the original (teacher) on calibration "
                   "inputs: recovers accuracy lost to pruning")
    needs_calibration = True

    @dataclass(frozen=True)
    class Options:
        teacher: str = ""  # original model (.pt2 / TorchScript / ONNX); a pipeline fills it in
        loss: Literal["kl", "mse"] = "kl"
        temperature: float = 4.0  # softens both output distributions for "kl"
        epochs: int = 3
        lr: float = 1e-3  # Adam
        batch_size: int = 64

        def __post_init__(self) -> None:
            if self.loss not in ("kl", "mse"):
                raise ValueError(f"loss must be 'kl' or 'mse', got {self.loss!r}")
            if self.temperature <= 0:
                raise ValueError(f"temperature must be > 0, got {self.temperature}")
            if self.epochs < 1:
                raise ValueError(f"epochs must be >= 1, got {self.epochs}")
            if self.lr <= 0:
                raise ValueError(f"lr must be > 0, got {self.lr}")
            if self.batch_size < 1:
                raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        import torch

        if model.format != "torch":
            raise PassError(f"{NAME} trains PyTorch models (.pt2, TorchScript), not "
                            f"{model.format}")
        calibration = ctx.need_calibration(NAME)
        teacher_path = _teacher_path(opts)
        student = io.load_torch(model, NAME)
        module = student.module()
        names, dtypes = _input_names_and_types(student, calibration)
        feeds, note = _match_inputs(calibration, names)
        data = [torch.as_tensor(np.ascontiguousarray(a), dtype=d) for a, d in zip(feeds, dtypes)]
        ctx.check_cancelled()

        ctx.progress(0.0, "teacher outputs")
        targets = _teacher_outputs(teacher_path, data, opts.batch_size, ctx)
        params = _trainable(module)
        loss_fn = _loss_function(opts)
        before = _mean_loss(module, data, targets, loss_fn, opts.batch_size)
        steps = _train(module, params, data, targets, loss_fn, opts, ctx)
        after = _mean_loss(module, data, targets, loss_fn, opts.batch_size)
        ctx.check_cancelled()

        details = {"loss": opts.loss, "temperature": opts.temperature if opts.loss == "kl"
                   else None, "loss_before": round(before, 6), "loss_after": round(after, 6),
                   "epochs": opts.epochs, "samples": len(targets), "steps": steps,
                   "lr": opts.lr, "batch_size": opts.batch_size, "teacher": str(teacher_path),
                   "calibration": calibration.source,
                   "mode": "eval-mode graph: BatchNorm statistics frozen, dropout off"}
        messages = [m for m in (calibration.warning and f"{NAME}: {calibration.warning}", note)
                    if m]
        if not after < before:  # e.g. a student that already matches: Adam only adds noise
            messages.insert(0, f"{NAME}: training did not lower the {opts.loss} loss "
                               f"({before:.4g} -> {after:.4g}); the model is returned unchanged")
            return PassResult(output=model, changed=False, details=details, messages=messages)
        ctx.progress(0.97, "writing")
        suffix = ".pt2" if student.kind == "export" else ".pt"
        out = student.save(ctx.output_path(output_stem(model, NAME), suffix))
        messages.insert(0, f"Distilled from {teacher_path.name} on {len(targets)} calibration "
                           f"samples for {opts.epochs} epoch(s): {opts.loss} loss {before:.4g} "
                           f"-> {after:.4g}")
        return PassResult(output=out, changed=True, details=details, messages=messages)


# --- inputs and teacher ------------------------------------------------------------------

def _teacher_path(opts: Distill.Options) -> Path:
    if not opts.teacher:
        raise PassError(f"{NAME} needs option teacher=<path of the original model>; a "
                        "conversion pipeline fills it with its source model")
    path = Path(opts.teacher)
    if not path.is_file():
        raise PassError(f"{NAME}: teacher {path} does not exist")
    return path


def _input_names_and_types(student: io.TorchModel, calibration: CalibrationData
                           ) -> tuple[list[str], list[Any]]:
    """From the program; a TorchScript file without declared inputs takes the calibration
    arrays as they are, in their own dtypes (training needs no example shapes)."""
    try:
        infos = student.inputs()
    except PassError:
        if student.kind != "torchscript":
            raise
        return list(calibration.arrays), [None] * len(calibration.arrays)
    return [i.name for i in infos], [i.dtype for i in infos]


def _match_inputs(calibration: CalibrationData, names: list[str]
                  ) -> tuple[list[np.ndarray], str | None]:
    """Calibration arrays in the student's input order: by name, else by position."""
    arrays = calibration.arrays
    if all(n in arrays for n in names):
        return [arrays[n] for n in names], None
    if len(arrays) == len(names):
        return list(arrays.values()), (f"{NAME}: calibration arrays {list(arrays)} fed to the "
                                       f"model's inputs {names} by position")
    raise PassError(f"{NAME}: the model takes inputs {names} but the calibration data holds "
                    f"{list(arrays)}")


def _teacher_outputs(path: Path, data: list[Any], batch_size: int, ctx: PassContext) -> Any:
    """The teacher's first output on every sample, computed once (it does not change)."""
    import torch

    from converters.formats import detect_format

    fmt = detect_format(path).name
    run = _onnx_runner(path) if fmt == "onnx" else _torch_runner(path, fmt)
    outputs = []
    n = len(data[0])
    for start in range(0, n, batch_size):
        ctx.check_cancelled()
        batch = [t[start:start + batch_size] for t in data]
        try:
            outputs.append(run(batch))
        except Exception as e:
            raise PassError(f"{NAME}: the teacher {path.name} does not run on the calibration "
                            f"inputs {[list(t.shape) for t in batch]}: {error_line(e)}") from e
        ctx.progress(0.1 * min(start + batch_size, n) / n, "teacher outputs")
    return torch.cat(outputs)


def _torch_runner(path: Path, fmt: str) -> Any:
    import torch

    if fmt != "torch":
        raise PassError(f"{NAME}: the teacher must be a PyTorch (.pt2 / TorchScript) or ONNX "
                        f"model, not {fmt}")
    module = io.load_torch(ModelFile(path, "torch"), f"{NAME} teacher").module()

    def run(batch: list[Any]) -> Any:
        with torch.no_grad():
            return _first_tensor(module(*batch)).float()
    return run


def _onnx_runner(path: Path) -> Any:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(batch: list[Any]) -> Any:
        feeds = {n: t.numpy() for n, t in zip(names, batch)}
        return torch.from_numpy(np.asarray(session.run(None, feeds)[0])).float()
    return run


def _first_tensor(out: Any) -> Any:
    import torch

    while not isinstance(out, torch.Tensor):
        if isinstance(out, dict):
            out = next(iter(out.values()))
        else:
            out = out[0]
    return out


# --- training ------------------------------------------------------------------------------

def _trainable(module: Any) -> list[Any]:
    params = [p for p in module.parameters() if p.is_floating_point()]
    if not params:
        raise PassError(f"{NAME}: the model has no floating-point parameters to train (its "
                        "weights are constants or buffers)")
    for p in params:
        p.requires_grad_(True)
    return params


def _loss_function(opts: Distill.Options) -> Any:
    import torch.nn.functional as F

    t = opts.temperature

    def loss(student: Any, teacher: Any) -> Any:
        if student.shape != teacher.shape:
            raise PassError(f"{NAME}: the student's output {list(student.shape)} does not match "
                            f"the teacher's {list(teacher.shape)}")
        if opts.loss == "mse":
            return F.mse_loss(student, teacher)
        classes = student.shape[1] if student.dim() > 1 else student.shape[0]
        s = student.movedim(1, -1).reshape(-1, classes) if student.dim() > 1 else student[None]
        q = teacher.movedim(1, -1).reshape(-1, classes) if teacher.dim() > 1 else teacher[None]
        return F.kl_div(F.log_softmax(s / t, -1), F.log_softmax(q / t, -1), log_target=True,
                        reduction="batchmean") * (t * t)
    return loss


def _mean_loss(module: Any, data: list[Any], targets: Any, loss_fn: Any, batch_size: int
               ) -> float:
    import torch

    total, n = 0.0, len(targets)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            out = _student(module, [t[start:start + batch_size] for t in data])
            total += float(loss_fn(out, targets[start:start + batch_size])) * len(out)
    return total / n


def _student(module: Any, batch: list[Any]) -> Any:
    try:
        return _first_tensor(module(*batch)).float()
    except PassError:
        raise
    except Exception as e:
        raise PassError(f"{NAME}: the model does not run on the calibration inputs "
                        f"{[list(t.shape) for t in batch]}: {error_line(e)}") from e


def _train(module: Any, params: list[Any], data: list[Any], targets: Any, loss_fn: Any,
           opts: Distill.Options, ctx: PassContext) -> int:
    """Adam over shuffled batches; progress and cancellation checked every batch."""
    import torch

    optimizer = torch.optim.Adam(params, lr=opts.lr)
    generator = torch.Generator().manual_seed(SEED)
    n = len(targets)
    per_epoch = -(-n // opts.batch_size)
    total, step = opts.epochs * per_epoch, 0
    for epoch in range(opts.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, opts.batch_size):
            ctx.check_cancelled()
            idx = order[start:start + opts.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(_student(module, [t[idx] for t in data]), targets[idx])
            loss.backward()
            if step == 0:
                _check_gradients(params)
            optimizer.step()
            step += 1
            ctx.progress(0.1 + 0.85 * step / total,
                         f"epoch {epoch + 1}/{opts.epochs}, batch {step - epoch * per_epoch}/"
                         f"{per_epoch}, loss {loss.item():.4g}")
    return step


def _check_gradients(params: list[Any]) -> None:
    if all(p.grad is None for p in params):
        raise PassError(f"{NAME}: no gradient reaches the model's parameters (the program "
                        "treats them as constants), so it cannot be fine-tuned")
