"""prune-channels: structured, dependency-aware channel pruning with torch-pruning.

Whole filters / neurons are removed, and with them the matching input channels of every layer
that reads them (torch-pruning's DependencyGraph keeps conv -> BN -> flatten -> linear in step),
so the tensors get smaller and dense kernels do less work: this is the pruning that is faster.

torch-pruning finds layers as nn.Conv2d / nn.Linear / nn.BatchNorm2d modules, but a .pt2's
`program.module()` calls functional ATen ops (aten.conv2d(x, self.features.conv1.weight, ...))
from plain containers, and cannot even switch to eval(). So we first *lift* those ops back into
real modules at the same names (features.conv1 becomes an nn.Conv2d holding the same tensors),
prune that GraphModule, and torch.export it again with the source's dynamic dimensions.
A parameter used by an op we cannot lift is refused by name: pruning around it would break it.
TorchScript input is converted to a torch.export program first (torch's TS2EPConverter).
"""
from __future__ import annotations

import copy
import logging
import operator
import warnings
from dataclasses import dataclass
from typing import Any, Literal, Optional

from converters.passes import (
    ModelFile, Pass, PassContext, PassError, PassResult, register_pass,
)
from converters.passes import _model_io as io
from converters.passes._common import error_line, output_stem

logger = logging.getLogger(__name__)

NAME = "prune-channels"
# ATen ops whose weights become module parameters, and the tensor arguments each one consumes.
_TENSOR_SLOTS = {
    "aten::conv1d": ("weight", "bias"), "aten::conv2d": ("weight", "bias"),
    "aten::conv3d": ("weight", "bias"), "aten::convolution": ("weight", "bias"),
    "aten::conv_transpose1d": ("weight", "bias"), "aten::conv_transpose2d": ("weight", "bias"),
    "aten::conv_transpose3d": ("weight", "bias"), "aten::linear": ("weight", "bias"),
    "aten::batch_norm": ("weight", "bias", "running_mean", "running_var"),
    "aten::_native_batch_norm_legit_no_training": ("weight", "bias", "running_mean",
                                                   "running_var"),
    "aten::layer_norm": ("weight", "bias"), "aten::group_norm": ("weight", "bias"),
    "aten::embedding": ("weight",),
}


@register_pass
class PruneChannels(Pass):
    name = NAME
    accepts = frozenset({"torch"})
    stage = "structure"  # see converters/passes/order.py
    description = ("Structured channel pruning (torch-pruning): removes whole filters, so the "
                   "model gets smaller and faster; fine-tune afterwards (distill)")

    @dataclass(frozen=True)
    class Options:
        ratio: float = 0.3  # fraction of channels removed from every prunable layer
        importance: Literal["l1", "l2"] = "l2"  # channel norm that ranks channels
        ignore: tuple[str, ...] = ()  # module names kept whole (the output layer always is)
        # Optional[...] rather than "int | None": make_options reads typing.Union for "none" values
        round_to: Optional[int] = None  # keep channel counts a multiple of this (e.g. 8 for SIMD)

        def __post_init__(self) -> None:
            if not 0.0 < self.ratio < 1.0:
                raise ValueError(f"ratio must be a fraction in (0, 1), got {self.ratio}")
            if self.importance not in ("l1", "l2"):
                raise ValueError(f"importance must be 'l1' or 'l2', got {self.importance!r}")
            if self.round_to is not None and self.round_to < 1:
                raise ValueError(f"round_to must be >= 1, got {self.round_to}")

    def run(self, model: ModelFile, opts: Options, ctx: PassContext) -> PassResult:
        import torch

        if model.format != "torch":
            raise PassError(f"{NAME} runs on PyTorch models (.pt2, TorchScript), "
                            f"not {model.format}")
        ctx.progress(0.0, "loading")
        loaded = io.load_torch(model, NAME)
        inputs = loaded.inputs()
        program = loaded.program if loaded.kind == "export" else _from_torchscript(loaded, inputs)
        ctx.check_cancelled()

        ctx.progress(0.1, "lifting ATen ops into modules")
        lifted, train_flags = lift_modules(program.module())
        example = io.example_tensors(inputs)
        _check_same_outputs(program.module(), lifted, example)
        ctx.check_cancelled()

        ctx.progress(0.2, "building the dependency graph")
        with torch.no_grad():
            before = _measure(lifted, inputs)
        pruner = _pruner(lifted, example, opts)
        ctx.check_cancelled()
        ctx.progress(0.4, "pruning channels")
        pruner.step()
        set_modes(lifted, train_flags)
        _check_runs(lifted, example)
        with torch.no_grad():
            after = _measure(lifted, inputs)
        ctx.check_cancelled()

        ctx.progress(0.6, "re-exporting with torch.export")
        set_modes(lifted, train_flags)
        new_program, messages = io.export_like(lifted, inputs, NAME)
        io.strip_stack_traces(new_program)
        ctx.check_cancelled()
        out = ctx.output_path(output_stem(model, NAME), ".pt2")
        io.write_atomically(out, lambda tmp: torch.export.save(new_program, str(tmp)))
        ctx.progress(1.0, "pruned")
        details = _details(before, after, opts, pruner)
        messages.insert(0, _summary(details))
        return PassResult(output=ModelFile(out, "torch"), changed=True, details=details,
                          messages=messages)


# --- TorchScript -> ExportedProgram ------------------------------------------------------------

def _from_torchscript(loaded: io.TorchModel, inputs: list[io.InputInfo]) -> Any:
    """torch's TorchScript converter (private API, so failures are explained, not raised raw)."""
    try:
        from torch._export.converter import TS2EPConverter

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "num_batches_tracked is never used": expected
            return TS2EPConverter(loaded.script, io.example_tensors(inputs)).convert()
    except Exception as e:
        logger.debug("TS2EPConverter failed", exc_info=True)
        raise PassError(f"{NAME}: could not convert the TorchScript model to a torch.export "
                        f"program ({error_line(e)}); export it with torch.export.save to "
                        ".pt2 in the project that defines it") from e


# --- lifting functional ATen ops into modules ---------------------------------------------------

def lift_modules(gm: Any) -> tuple[Any, dict[str, bool]]:
    """A copy of an exported GraphModule where conv / linear / norm / embedding ops with stored
    weights are nn.Module calls at the weights' module path. Returns it and, per lifted
    BatchNorm, whether the graph ran it in training mode. PassError for a parameter it cannot
    lift (that op would not follow the pruned channel counts)."""
    import torch.fx as fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pytree deprecations inside deepcopy
        graph = copy.deepcopy(gm.graph)
    lifted = fx.GraphModule(gm, graph)
    _drop_guards(lifted)
    consumers = _attr_consumers(graph)
    train_flags: dict[str, bool] = {}
    for node in list(graph.nodes):
        op = _op_name(node)
        if op not in _TENSOR_SLOTS:
            continue
        args = _bind(node)
        slots = {s: args.get(s) for s in _TENSOR_SLOTS[op] if args.get(s) is not None}
        if not slots or not all(getattr(v, "op", None) == "get_attr" for v in slots.values()):
            continue  # weights computed in the graph: nothing stored to prune here
        for value in slots.values():
            if len(consumers[value.target]) > 1:
                users = ", ".join(sorted(n.name for n in consumers[value.target]))
                raise PassError(f"{NAME}: '{value.target}' is shared by nodes {users}; tied "
                                "weights cannot be channel-pruned in step")
        tensors = {s: _fetch(lifted, v.target) for s, v in slots.items()}
        module, x = _build_module(op, node, args, tensors)
        name = _install(lifted, node, {s: v.target for s, v in slots.items()}, module)
        if op == "aten::batch_norm":
            train_flags[name] = bool(args["training"])
        _replace_with_call(graph, node, name, x)
        for value in slots.values():
            graph.erase_node(value)
    _refuse_loose_parameters(lifted)
    graph.lint()
    lifted.recompile()
    set_modes(lifted, train_flags)
    return lifted, train_flags


def set_modes(gm: Any, train_flags: dict[str, bool]) -> None:
    """Eval mode, except a BatchNorm the exported graph ran with batch statistics."""
    gm.eval()
    for name, training in train_flags.items():
        gm.get_submodule(name).train(training)


def _op_name(node: Any) -> str | None:
    schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
    return schema.name if schema is not None else None


def _bind(node: Any) -> dict[str, Any]:
    """Argument name -> value (defaults filled in) from the op's schema."""
    values = {}
    for i, arg in enumerate(node.target._schema.arguments):
        if i < len(node.args):
            values[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            values[arg.name] = node.kwargs[arg.name]
        else:
            values[arg.name] = arg.default_value if arg.has_default_value() else None
    return values


def _drop_guards(gm: Any) -> None:
    """The input-shape check torch.export adds; the re-export writes a new one."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            gm.graph.erase_node(node)
    if hasattr(gm, "_guards_fn"):
        delattr(gm, "_guards_fn")


def _attr_consumers(graph: Any) -> dict[str, set[Any]]:
    consumers: dict[str, set[Any]] = {}
    for node in graph.nodes:
        if node.op == "get_attr":
            consumers.setdefault(node.target, set()).update(node.users)
    return consumers


def _fetch(gm: Any, target: str) -> Any:
    owner, _, attr = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, attr)


def _param(tensor: Any) -> Any:
    import torch

    if isinstance(tensor, torch.nn.Parameter):
        return tensor
    return torch.nn.Parameter(tensor.detach(), requires_grad=tensor.is_floating_point())


def _build_module(op: str, node: Any, a: dict[str, Any], t: dict[str, Any]) -> tuple[Any, Any]:
    """(module computing the op from the stored tensors, its data input node)."""
    if op in ("aten::linear", "aten::embedding"):
        return _linear_or_embedding(op, a, t)
    if "conv" in op:
        return _conv(op, a, t), a["input"]
    if "batch_norm" in op:
        return _batch_norm(node, a, t), a["input"]
    return _norm(op, a, t), a["input"]


def _linear_or_embedding(op: str, a: dict[str, Any], t: dict[str, Any]) -> tuple[Any, Any]:
    from torch import nn

    w = t["weight"]
    if op == "aten::linear":
        if w.dim() != 2:
            raise PassError(f"{NAME}: linear weight with shape {list(w.shape)}")
        m = nn.utils.skip_init(nn.Linear, w.shape[1], w.shape[0], bias="bias" in t)
        m.weight = _param(w)
        if "bias" in t:
            m.bias = _param(t["bias"])
        return m, a["input"]
    pad = a["padding_idx"]
    m = nn.utils.skip_init(nn.Embedding, w.shape[0], w.shape[1],
                           padding_idx=None if pad is None or pad < 0 else pad,
                           scale_grad_by_freq=bool(a["scale_grad_by_freq"]),
                           sparse=bool(a["sparse"]))
    m.weight = _param(w)
    return m, a["indices"]


def _conv(op: str, a: dict[str, Any], t: dict[str, Any]) -> Any:
    from torch import nn

    w = t["weight"]
    nd = w.dim() - 2
    transposed = bool(a.get("transposed")) or "transpose" in op
    classes = {(1, False): nn.Conv1d, (2, False): nn.Conv2d, (3, False): nn.Conv3d,
               (1, True): nn.ConvTranspose1d, (2, True): nn.ConvTranspose2d,
               (3, True): nn.ConvTranspose3d}
    if (nd, transposed) not in classes:
        raise PassError(f"{NAME}: {op} with a {w.dim()}-d weight is not supported")
    groups = int(a["groups"])
    padding = a["padding"] if isinstance(a["padding"], str) else tuple(a["padding"])
    kwargs = dict(stride=tuple(a["stride"]), padding=padding, dilation=tuple(a["dilation"]),
                  groups=groups, bias="bias" in t)
    if transposed:
        kwargs["output_padding"] = tuple(a.get("output_padding") or [0] * nd)
        channels = (w.shape[0], w.shape[1] * groups)
    else:
        channels = (w.shape[1] * groups, w.shape[0])
    m = nn.utils.skip_init(classes[(nd, transposed)], *channels, tuple(w.shape[2:]), **kwargs)
    m.weight = _param(w)
    if "bias" in t:
        m.bias = _param(t["bias"])
    return m


def _batch_norm(node: Any, a: dict[str, Any], t: dict[str, Any]) -> Any:
    import torch
    from torch import nn

    val = a["input"].meta.get("val")
    rank = val.dim() if isinstance(val, torch.Tensor) else None
    cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}.get(rank)
    if cls is None:
        raise PassError(f"{NAME}: node '{node.name}' ({_op_name(node)}) has an input of unknown "
                        "rank; cannot tell which BatchNorm it is")
    ref = t.get("weight", t.get("running_mean"))
    m = nn.utils.skip_init(cls, ref.shape[0], eps=float(a["eps"]),
                           momentum=float(a["momentum"]), affine="weight" in t,
                           track_running_stats="running_mean" in t)
    for slot in ("weight", "bias"):
        if slot in t:
            setattr(m, slot, _param(t[slot]))
    if "running_mean" in t:
        m.running_mean, m.running_var = t["running_mean"], t["running_var"]
        m.num_batches_tracked = torch.zeros((), dtype=torch.long)
    return m


def _norm(op: str, a: dict[str, Any], t: dict[str, Any]) -> Any:
    from torch import nn

    affine = "weight" in t
    if op == "aten::layer_norm":
        m = nn.LayerNorm(tuple(a["normalized_shape"]), eps=float(a["eps"]),
                         elementwise_affine=affine, bias="bias" in t)
    else:
        if not affine:
            raise PassError(f"{NAME}: group_norm without a weight cannot tell its channels")
        m = nn.GroupNorm(int(a["num_groups"]), t["weight"].shape[0], eps=float(a["eps"]),
                         affine=True)
    for slot in ("weight", "bias"):
        if slot in t:
            setattr(m, slot, _param(t[slot]))
    return m


def _install(gm: Any, node: Any, targets: dict[str, str], module: Any) -> str:
    """Put the module where its tensors lived: replace a container that held only them
    (features.conv1 -> nn.Conv2d), else add it as a child named after the node."""
    owners = {target.rpartition(".")[0] for target in targets.values()}
    owner = owners.pop() if len(owners) == 1 else ""
    held = {target.rpartition(".")[2] for target in targets.values()} | {"num_batches_tracked"}
    if owner and not owners:
        container = gm.get_submodule(owner)
        own = set(container._parameters) | set(container._buffers)
        if own <= held and not container._modules:
            if "num_batches_tracked" in container._buffers and hasattr(module,
                                                                       "num_batches_tracked"):
                module.num_batches_tracked = container.num_batches_tracked
            gm.set_submodule(owner, module)
            return owner
    for target in targets.values():
        parent, _, attr = target.rpartition(".")
        holder = gm.get_submodule(parent) if parent else gm
        holder._parameters.pop(attr, None)
        holder._buffers.pop(attr, None)
    parent = gm.get_submodule(owner) if owner else gm
    parent.add_module(node.name, module)
    return f"{owner}.{node.name}" if owner else node.name


def _replace_with_call(graph: Any, node: Any, name: str, x: Any) -> None:
    with graph.inserting_before(node):
        call = graph.call_module(name, (x,))
    call.meta = dict(node.meta)
    if _op_name(node) == "aten::_native_batch_norm_legit_no_training":
        for user in list(node.users):
            if user.target is not operator.getitem or user.args[1] != 0:
                raise PassError(f"{NAME}: node '{user.name}' reads the batch statistics of "
                                f"'{node.name}'; only the normalised output can be lifted")
            user.replace_all_uses_with(call)
            graph.erase_node(user)
    else:
        node.replace_all_uses_with(call)
    graph.erase_node(node)


def _refuse_loose_parameters(gm: Any) -> None:
    """A parameter still read by a functional op would keep its old channel count."""
    import torch

    for node in gm.graph.nodes:
        if node.op != "get_attr" or not node.users:
            continue
        if isinstance(_fetch(gm, node.target), torch.nn.Parameter):
            user = next(iter(node.users))
            raise PassError(
                f"{NAME}: node '{user.name}' ({_op_name(user) or user.target}) uses the parameter "
                f"'{node.target}' directly; channel pruning can follow conv, linear, batch/layer/"
                "group norm and embedding weights only, so this model cannot be pruned safely")


def _check_same_outputs(original: Any, lifted: Any, example: tuple[Any, ...]) -> None:
    import torch

    with torch.no_grad():
        a, b = _first_tensor(original(*example)), _first_tensor(lifted(*example))
    if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        raise PassError(f"{NAME}: internal: the module rebuilt for torch-pruning does not "
                        "compute what the program does; the model was not pruned")


def _check_runs(gm: Any, example: tuple[Any, ...]) -> None:
    import torch

    try:
        with torch.no_grad():
            gm(*example)
    except Exception as e:
        raise PassError(f"{NAME}: the pruned model no longer runs ({error_line(e)}); an op "
                        "torch-pruning does not track sits between pruned layers") from e


def _first_tensor(out: Any) -> Any:
    import torch

    while not isinstance(out, torch.Tensor):
        out = out[0] if isinstance(out, (tuple, list)) else next(iter(out.values()))
    return out


# --- torch-pruning ------------------------------------------------------------------------

def _prunable(gm: Any) -> dict[str, Any]:
    import torch_pruning as tp
    from torch import nn

    kinds = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, nn.Embedding)
    return {n: m for n, m in gm.named_modules() if isinstance(m, kinds)}


def output_layers(gm: Any) -> list[str]:
    """Conv / linear / embedding modules whose channels are the model's outputs."""
    import torch.fx as fx
    from torch import nn

    prunable = _prunable(gm)
    output = next(n for n in gm.graph.nodes if n.op == "output")
    found: list[str] = []
    stack, seen = list(output.all_input_nodes), set()
    while stack:
        node: fx.Node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module" and node.target in prunable:
            found.append(node.target)
            continue
        if node.op == "call_module" and not isinstance(gm.get_submodule(node.target),
                                                       (nn.modules.batchnorm._BatchNorm,
                                                        nn.LayerNorm, nn.GroupNorm)):
            continue
        stack.extend(node.all_input_nodes)
    return sorted(found)


def _pruner(gm: Any, example: tuple[Any, ...], opts: PruneChannels.Options) -> Any:
    import torch_pruning as tp

    prunable = _prunable(gm)
    unknown = [n for n in opts.ignore if n not in dict(gm.named_modules())]
    if unknown:
        raise PassError(f"{NAME} option ignore: no module named {', '.join(map(repr, unknown))}; "
                        f"prunable modules: {', '.join(sorted(prunable)) or 'none'}")
    if not prunable:
        raise PassError(f"{NAME}: the model has no conv, linear or embedding layer to prune")
    keep = sorted(set(output_layers(gm)) | set(opts.ignore))
    importance = tp.importance.GroupMagnitudeImportance(p=1 if opts.importance == "l1" else 2)
    try:
        # BasePruner is torch-pruning's MetaPruner / MagnitudePruner (those names are aliases).
        return tp.pruner.BasePruner(
            gm, example, importance=importance, pruning_ratio=opts.ratio,
            ignored_layers=[gm.get_submodule(n) for n in keep], round_to=opts.round_to)
    except Exception as e:
        logger.debug("torch-pruning failed", exc_info=True)
        raise PassError(f"{NAME}: torch-pruning could not trace this module: "
                        f"{error_line(e)}") from e


def _measure(gm: Any, inputs: list[io.InputInfo]) -> dict[str, Any]:
    """Parameters, MACs for one sample (torch-pruning's counter) and channels per layer."""
    import torch_pruning as tp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pytree deprecations inside deepcopy
        macs, params = tp.utils.count_ops_and_params(gm, io.example_tensors(inputs, batch=1))
    return {"params": int(params), "macs": int(macs),
            "layers": {n: _channels(m) for n, m in _prunable(gm).items()}}


def _channels(m: Any) -> dict[str, int]:
    from torch import nn

    if isinstance(m, nn.Linear):
        return {"in": m.in_features, "out": m.out_features}
    if isinstance(m, nn.Embedding):
        return {"in": m.num_embeddings, "out": m.embedding_dim}
    return {"in": m.in_channels, "out": m.out_channels}


def _details(before: dict[str, Any], after: dict[str, Any], opts: PruneChannels.Options,
             pruner: Any) -> dict[str, Any]:
    layers = {n: {"in_before": c["in"], "in_after": after["layers"][n]["in"],
                  "out_before": c["out"], "out_after": after["layers"][n]["out"]}
              for n, c in before["layers"].items()}
    ignored = sorted(n for n, m in pruner.model.named_modules() if m in pruner.ignored_layers)
    return {"params_before": before["params"], "params_after": after["params"],
            "macs_before": before["macs"], "macs_after": after["macs"],
            "macs_note": "multiply-accumulates per sample, torch-pruning's counter",
            "layers": layers, "kept_whole": ignored, "ratio": opts.ratio,
            "importance": opts.importance}


def _summary(d: dict[str, Any]) -> str:
    def drop(a: int, b: int) -> str:
        return f"{1 - b / a:.0%} fewer" if a else "n/a"

    return (f"Removed whole channels: parameters {d['params_before']:,} -> {d['params_after']:,} "
            f"({drop(d['params_before'], d['params_after'])}), MACs per sample "
            f"{d['macs_before']:,} -> {d['macs_after']:,} "
            f"({drop(d['macs_before'], d['macs_after'])}). Unlike zeroed weights, smaller tensors do less work on dense kernels. Accuracy "
            "drops until the model is fine-tuned: follow with the distill pass. Kept whole: "
            f"{', '.join(d['kept_whole']) or 'none'}")
