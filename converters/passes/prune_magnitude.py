"""prune-magnitude: unstructured magnitude pruning (set the smallest-|w| weights to zero).

Zeros keep every tensor's shape, so dense kernels (onnxruntime, OpenVINO, torch on CPU or GPU)
do exactly the same work: the model is no faster. What shrinks is the *compressed* file (zip,
gzip, a download), and a sparse runtime can skip the zeros. The pass measures and says this.

ONNX: weight initializers feeding Conv / Gemm / MatMul, numpy. PyTorch (.pt2 / TorchScript):
torch.nn.utils.prune (global_unstructured / l1_unstructured, then prune.remove) on the
weight tensors of 2+ dims, written back into the same program (graph unchanged).
"""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from converters.passes import (
    ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes import _model_io as io
from converters.passes._common import load_onnx, output_stem

logger = logging.getLogger(__name__)

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def excluded(names: list[str], patterns: tuple[str, ...]) -> bool:
    """A pattern matches a tensor / node / module name exactly, as a glob, or as a prefix
    ending at a '.' or '/' boundary ('classifier.fc2' excludes 'classifier.fc2.weight')."""
    for name in names:
        for p in patterns:
            if name == p or fnmatch.fnmatchcase(name, p) or name.startswith((p + ".", p + "/")):
                return True
    return False


@register_pass
class PruneMagnitude(Pass):
    name = "prune-magnitude"
    accepts = frozenset({"onnx", "torch"})
    stage = "structure"  # see converters/passes/order.py
    description = ("Unstructured magnitude pruning: zero the smallest weights. Smaller when "
                   "compressed; not faster on dense kernels")

    @dataclass(frozen=True)
    class Options:
        amount: float = 0.5  # fraction of eligible weights set to zero
        scope: Literal["global", "layer"] = "global"  # one threshold for all, or per tensor
        min_params: int = 1000  # smaller tensors (biases, norms) are left alone
        exclude: tuple[str, ...] = ()  # tensor / node / module names or globs

        def __post_init__(self) -> None:
            if not 0.0 <= self.amount < 1.0:
                raise ValueError(f"amount must be a fraction in [0, 1), got {self.amount}")
            if self.scope not in ("global", "layer"):
                raise ValueError(f"scope must be 'global' or 'layer', got {self.scope!r}")
            if self.min_params < 1:
                raise ValueError(f"min_params must be >= 1, got {self.min_params}")

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        if model.format == "onnx":
            return _run_onnx(model, opts, ctx)
        if model.format == "torch":
            return _run_torch(model, opts, ctx)
        raise PassError(f"{self.name} runs on ONNX and PyTorch models, not {model.format}")


# --- shared arithmetic ---------------------------------------------------------------------

def zero_mask(weights: dict[str, np.ndarray], amount: float, scope: str) -> dict[str, np.ndarray]:
    """Boolean masks (True = set to zero) of exactly round(amount * n) smallest-|w| entries,
    over all tensors together (global) or per tensor (layer). Ties broken by position."""
    if scope == "layer":
        return {k: _smallest(np.abs(w).ravel(), amount).reshape(w.shape)
                for k, w in weights.items()}
    flat = np.concatenate([np.abs(w).ravel().astype(np.float64) for w in weights.values()])
    mask = _smallest(flat, amount)
    out, start = {}, 0
    for k, w in weights.items():
        out[k] = mask[start:start + w.size].reshape(w.shape)
        start += w.size
    return out


def _smallest(values: np.ndarray, amount: float) -> np.ndarray:
    k = int(round(amount * values.size))
    mask = np.zeros(values.size, dtype=bool)
    if k > 0:
        mask[np.argpartition(values, k - 1)[:k]] = True
    return mask


def _sparsity_details(after: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """{layer: {params, zeros, sparsity}} and the totals over the eligible tensors."""
    layers = {k: {"params": n, "zeros": z, "sparsity": round(z / n, 6)}
              for k, (z, n) in after.items()}
    zeros = sum(z for z, _ in after.values())
    total = sum(n for _, n in after.values())
    return {"layers": layers, "zero_count": zeros, "eligible_params": total,
            "eligible_sparsity": round(zeros / total, 6) if total else 0.0}


def _size_message(before: int, after: int, sparsity: float, kind: str) -> str:
    saved = 1 - after / before if before else 0.0
    return (f"{sparsity:.1%} of the eligible weights are now zero. Zeros do not make dense "
            f"kernels faster: {kind} still multiplies every weight, so latency is unchanged "
            "unless you run the model with a sparse runtime or sparse kernels. The gain is in "
            f"compressed size: gzip/zip of the file went from {before:,} to {after:,} bytes "
            f"({saved:.1%} smaller, measured); the uncompressed file is the same size")


def _unchanged(model: ModelFile, reason: str) -> PassResult:
    return PassResult(output=model, changed=False, details={"eligible_params": 0},
                      messages=[f"prune-magnitude: nothing to prune: {reason}"])


# --- ONNX ----------------------------------------------------------------------------------

def _onnx_eligible(graph: Any, opts: PruneMagnitude.Options) -> dict[str, str]:
    """initializer name -> consuming node name, for float weights of Conv/Gemm/MatMul."""
    inits = {t.name: t for t in graph.initializer}
    found: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or node.domain not in ("", "ai.onnx"):
            continue
        slots = (1,) if node.op_type == "Conv" else (0, 1)
        for i in slots:
            name = node.input[i] if i < len(node.input) else ""
            t = inits.get(name)
            if t is None or name in found:
                continue
            size = int(np.prod(t.dims)) if t.dims else 1
            if len(t.dims) < 2 or size < opts.min_params or not _is_float_onnx(t.data_type):
                continue
            if excluded([name, node.name], opts.exclude):
                continue
            found[name] = node.name
    return found


def _is_float_onnx(data_type: int) -> bool:
    import onnx

    return data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                         onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


def _run_onnx(model: ModelFile, opts: PruneMagnitude.Options, ctx: PassContext) -> PassResult:
    from onnx import numpy_helper

    proto = load_onnx(model.path)
    eligible = _onnx_eligible(proto.graph, opts)
    if not eligible:
        return _unchanged(model, f"no float weight of {'/'.join(WEIGHT_OPS)} with at least "
                                 f"{opts.min_params} elements (after exclude)")
    ctx.progress(0.1, f"ranking {len(eligible)} weight tensors")
    inits = {t.name: t for t in proto.graph.initializer}
    weights = {k: numpy_helper.to_array(inits[k]) for k in eligible}
    ctx.check_cancelled()
    masks = zero_mask(weights, opts.amount, opts.scope)
    counts = {}
    for k, w in weights.items():
        pruned = np.where(masks[k], np.zeros((), w.dtype), w)
        inits[k].CopyFrom(numpy_helper.from_array(pruned, k))
        counts[k] = (int(pruned.size - np.count_nonzero(pruned)), int(pruned.size))
    ctx.check_cancelled()
    ctx.progress(0.7, "writing")
    out = io.save_onnx(proto, ctx.output_path(output_stem(model, "prune-magnitude"), ".onnx"))
    return _result(model, out, counts, opts, "onnxruntime / OpenVINO")


def _result(model: ModelFile, out: ModelFile, counts: dict[str, tuple[int, int]],
            opts: PruneMagnitude.Options, kind: str) -> PassResult:
    details = _sparsity_details(counts)
    before, after = io.gzip_size(model.files()), io.gzip_size(out.files())
    details.update({"scope": opts.scope, "amount": opts.amount,
                    "compressed_bytes_before": before, "compressed_bytes_after": after,
                    "compression": "DEFLATE level 6 (gzip/zip), measured"})
    msg = _size_message(before, after, details["eligible_sparsity"], kind)
    logger.info("prune-magnitude: %s", msg)
    return PassResult(output=out, changed=True, details=details, messages=[msg])


# --- PyTorch -------------------------------------------------------------------------------

def _run_torch(model: ModelFile, opts: PruneMagnitude.Options, ctx: PassContext) -> PassResult:
    import torch
    from torch.nn.utils import prune

    loaded = io.load_torch(model, "prune-magnitude")
    module = loaded.module()
    params = {name: p for name, p in module.named_parameters()
              if p.dim() >= 2 and p.numel() >= opts.min_params and p.is_floating_point()
              and not excluded([name], opts.exclude)}
    if not params:
        return _unchanged(model, f"no weight tensor of 2+ dims with at least {opts.min_params} "
                                 "elements (after exclude)")
    ctx.progress(0.1, f"ranking {len(params)} weight tensors")
    # torch.nn.utils.prune works on modules; holders keep it off the program's own modules
    # (TorchScript modules cannot take its re-parametrisation) and we copy the result back.
    holders = {name: _holder(p) for name, p in params.items()}
    if opts.scope == "global":
        prune.global_unstructured([(h, "weight") for h in holders.values()],
                                  pruning_method=prune.L1Unstructured, amount=opts.amount)
    else:
        for h in holders.values():
            prune.l1_unstructured(h, "weight", amount=opts.amount)
    ctx.check_cancelled()
    counts = {}
    with torch.no_grad():
        for name, h in holders.items():
            prune.remove(h, "weight")
            params[name].copy_(h.weight)
            zeros = int((params[name] == 0).sum())
            counts[name] = (zeros, params[name].numel())
    ctx.progress(0.7, "writing")
    suffix = ".pt2" if loaded.kind == "export" else ".pt"
    out = loaded.save(ctx.output_path(output_stem(model, "prune-magnitude"), suffix))
    return _result(model, out, counts, opts, "torch")


def _holder(tensor: Any) -> Any:
    """A bare nn.Module owning a copy of one tensor as its `weight`."""
    import torch

    holder = torch.nn.Module()
    holder.weight = torch.nn.Parameter(tensor.detach().clone(), requires_grad=False)
    return holder
