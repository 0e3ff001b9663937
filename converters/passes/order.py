"""Which passes apply to a model, and in which orders they may run: the rules, defined once.

The window (greys what cannot apply, refuses an invalid order before Apply), the pipeline
(`app.pipeline.plan`, hence the CLI's `convert --pass A --pass B` and recipe replay) all ask
here. An invalid order is refused with the rule's name and a valid order to use instead; it is
never reordered silently, because the order is part of what the user asked for and of the
lineage they will compare.

Each pass declares its `stage` (a class attribute):
- "graph":     rewrites the graph, keeps the weights' values (simplify);
- "structure": removes or zeroes weights (prune-magnitude, prune-channels, lowrank);
- "recovery":  trains the weights back toward a teacher (distill);
- "precision": rounds the weights to fewer bits (fp16, int8-dynamic, int8-static, weight-only).
The rules below are about stages, so a new pass that declares one is ordered correctly.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from converters.passes import PASSES, PassError

STAGES = ("graph", "structure", "recovery", "precision")
FORMAT_NAMES = {"onnx": "ONNX", "openvino": "OpenVINO IR", "torch": "PyTorch",
                "tflite": "TFLite"}


@dataclass(frozen=True)
class Rule:
    name: str  # short id, quoted in every refusal
    says: str  # the rule in a sentence
    why: str


RULES: dict[str, Rule] = {r.name: r for r in (
    Rule("precision-last",
         "fp16 / INT8 / weight-only come after every other pass that changes weights",
         "pruning, factorising or training after it would work on already-rounded weights, and "
         "none of those passes reads a quantized graph: round the final weights, once"),
    Rule("one-precision",
         "at most one of fp16, int8-dynamic, int8-static, weight-only",
         "each one sets the weights' precision; a second would round already-rounded weights"),
    Rule("simplify-before-precision",
         "simplify comes before fp16 / INT8 / weight-only",
         "simplify folds BatchNorm and constants into the float weights, which the precision "
         "pass then rounds once; after quantization it cannot fold through Quantize/Dequantize "
         "nodes (measured: nothing left to fold)"),
    Rule("distill-after-pruning",
         "distill comes after prune-channels",
         "distill recovers what pruning lost by learning from the model before pruning; run "
         "before pruning (or without it, with no teacher given) the student is the teacher, "
         "so nothing changes"),
    Rule("no-distill-after-zeroing",
         "distill does not follow prune-magnitude",
         "training moves every weight, so the zeros prune-magnitude set would be filled in "
         "again; prune-magnitude after distill keeps them"),
    Rule("format",
         "each pass runs on a format the model has, or can be converted to, at that point",
         "conversions go torch → ONNX → OpenVINO and never back"),
)}


@dataclass(frozen=True)
class OrderProblem:
    rule: str  # a key of RULES
    index: int  # position (0-based) of the offending pass in the order given
    message: str  # for the user: names both passes, the rule, why, and a valid order
    short: str = ""  # the same without the why (the window's label; the why in its tooltip)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Applicability:
    ok: bool
    via: tuple[str, ...] = ()  # formats the model is converted through first, e.g. ("onnx",)
    reason: str = ""  # why not (or how) — shown in the window before Apply


def stage_of(name: str) -> str:
    cls = PASSES.get(name)
    return getattr(cls, "stage", "graph") if cls is not None else "graph"


def format_name(fmt: str | None) -> str:
    return FORMAT_NAMES.get(fmt or "", fmt or "?")


def _a(fmt: str) -> str:
    """'an ONNX', 'a PyTorch'."""
    name = format_name(fmt)
    return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"


FORMAT_RANK = {"torch": 0, "tflite": 0, "onnx": 1, "openvino": 2}  # conversions go rightward


def canonical_order(names: Sequence[str]) -> list[str]:
    """A valid order for these passes (the window lists passes this way): precision passes
    last; before them, passes that can run on earlier formats first (torch before ONNX, since
    conversions never go back), then by stage; prune-magnitude after distill; otherwise as
    given."""
    def key(item: tuple[int, str]) -> tuple[int, int, int, int, int]:
        i, n = item
        stage = stage_of(n)
        accepts = getattr(PASSES.get(n), "accepts", ()) or ("onnx",)
        fmt_rank = min(FORMAT_RANK.get(f, 1) for f in accepts)
        rank = STAGES.index(stage) if stage in STAGES else 0
        later = 0
        if n == "prune-magnitude" and "distill" in names:
            rank, later = STAGES.index("recovery"), 1  # zeroes set after training stay zero
        return (int(stage == "precision"), fmt_rank, rank, later, i)
    return [n for _, n in sorted(enumerate(names), key=key)]


def _valid_hint(names: Sequence[str]) -> str:
    fixed = canonical_order(names)
    if list(fixed) == list(names) or check_rules(fixed):
        return ""
    return f"; a valid order: {' → '.join(fixed)}"


def check_rules(names: Sequence[str],
                options: Sequence[Mapping[str, Any]] | None = None) -> list[OrderProblem]:
    """The ordering rules (not formats) broken by `names` in this order; [] when valid."""
    options = list(options) if options is not None else [{} for _ in names]
    problems: list[tuple[str, int, str]] = []
    precision_seen: int | None = None
    for i, name in enumerate(names):
        stage = stage_of(name)
        if stage == "precision":
            if precision_seen is not None:
                problems.append(("one-precision", i, f"{name} after {names[precision_seen]}"))
            else:
                precision_seen = i
        elif precision_seen is not None and stage in ("structure", "recovery"):
            problems.append(("precision-last", i,
                             f"{name} after {names[precision_seen]}"))
        if name == "simplify" and precision_seen is not None:
            problems.append(("simplify-before-precision", i,
                             f"simplify after {names[precision_seen]}"))
        if name == "distill":
            before = list(names[:i])
            teacher = str((options[i] if i < len(options) else {}).get("teacher") or "")
            if "prune-magnitude" in before:
                problems.append(("no-distill-after-zeroing", i,
                                 "distill after prune-magnitude"))
            elif "prune-channels" not in before and not teacher:
                later = "prune-channels" in names[i + 1:]
                problems.append(("distill-after-pruning", i,
                                 "distill before prune-channels" if later else
                                 "distill with no prune-channels before it"))
    hint = _valid_hint(names)
    out = []
    for rule, i, what in problems:
        r = RULES[rule]
        out.append(OrderProblem(rule, i, f"{what}: {r.says} (rule {rule}: {r.why}){hint}",
                                f"{what}: {r.says} (rule {rule}){hint}"))
    return out


def applicability(source_format: str | None) -> dict[str, Applicability]:
    """For every registered pass: can it run on a model of this format (directly or after a
    conversion), and if not, why. None (no model open): every pass is offered."""
    from converters.export import conversion_path

    out: dict[str, Applicability] = {}
    for name, cls in PASSES.items():
        accepts = sorted(cls.accepts)
        runs_on = " or ".join(format_name(f) for f in accepts)
        if source_format is None or source_format in cls.accepts:
            out[name] = Applicability(True, (), f"runs on {runs_on} models")
            continue
        routes = []
        for target in ("onnx", "openvino", "torch", "tflite"):
            if target not in cls.accepts:
                continue
            try:
                routes.append(tuple(t for _, t in conversion_path(source_format, target)))
            except PassError:
                continue
        if routes:
            via = min(routes, key=len)
            out[name] = Applicability(True, via, (
                f"runs on {runs_on} models: this {format_name(source_format)} model is "
                f"converted to {format_name(via[-1])} first"))
        else:
            out[name] = Applicability(False, (), (
                f"runs on {runs_on} models only, and {_a(source_format)} model "
                f"cannot be converted to {'/'.join(format_name(f) for f in accepts)}"))
    return out


def check_pipeline(source_format: str | None, names: Sequence[str],
                   options: Sequence[Mapping[str, Any]] | None = None,
                   to: str | None = None) -> list[OrderProblem]:
    """Every problem with running `names` in this order on a `source_format` model: formats
    first (a pass the model cannot reach at its point), then the ordering rules."""
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise PassError(f"unknown pass {unknown[0]!r}; passes: {', '.join(sorted(PASSES))}")
    problems = _format_problems(source_format, names, to) if source_format else []
    return problems + check_rules(names, options)


def _format_problems(fmt: str, names: Sequence[str], to: str | None) -> list[OrderProblem]:
    from converters.export import conversion_path

    out = []
    changed_by: str | None = None  # the pass after which the model had its current format
    for i, name in enumerate(names):
        cls = PASSES[name]
        if fmt in cls.accepts:
            continue
        reachable = []
        for target in sorted(cls.accepts):
            try:
                conversion_path(fmt, target)
                reachable.append(target)
            except PassError:
                continue
        runs_on = " or ".join(format_name(f) for f in sorted(cls.accepts))
        if not reachable:
            if changed_by is None:
                short = (f"{name} runs on {runs_on} models only, and this "
                         f"{format_name(fmt)} model cannot be converted to "
                         f"{'/'.join(format_name(f) for f in sorted(cls.accepts))}")
                msg = short
            else:
                short = (f"{name} runs on {runs_on} models only; after {changed_by} the model "
                         f"is {format_name(fmt)}, which cannot be converted back: put {name} "
                         f"before {changed_by} (rule format)")
                msg = short[:-len(" (rule format)")] + f" (rule format: {RULES['format'].why})"
            out.append(OrderProblem("format", i, msg, short))
            continue
        # where the pipeline converts to (app.pipeline._reachable_target's preference)
        prefer = [to] + ["onnx", "openvino", "torch"]
        fmt = next((f for f in prefer if f in reachable), reachable[0])
        changed_by = name
    return out
