"""A conversion pipeline: passes in order, format conversions inserted where needed, every step
measured (size, parameters, sparsity, fidelity against the source, accuracy with labels).

Planning rule: a pass runs on the current format when it accepts it; otherwise the model is first
converted along torch -> onnx -> openvino (toward `to` when given). After the passes, the model is
converted to `to`. Each step's output is kept in `<output stem>.steps/` with a lineage JSON; the
final file appears under its name only when complete (temp file + rename), and the source is never
written (its sha256 is checked before and after).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ConsentRequired, ModelDeckError
from converters.formats import detect_format, open_model, sha256_of
from converters.passes import (
    Cancelled, ModelFile, PassContext, PassError, PassResult, get_pass, make_options,
    options_dict,
)

log = logging.getLogger(__name__)
LINEAGE_SCHEMA = "modeldeck.lineage/1"
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "torch": ".pt2", "tflite": ".tflite"}
Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class StepSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConvertSpec:
    model: str
    output: str
    to: str | None = None
    passes: tuple[StepSpec, ...] = ()
    calib: str | None = None
    eval: str | None = None
    fidelity_threshold: float = 0.99  # cosine; below it the step is named as where it broke
    verify_samples: int = 256
    shapes: dict[str, list[int]] = field(default_factory=dict)  # input sizes the user set
    inputs: str | None = None  # real inputs (.npz) to verify on; their shapes set the sizes
    trust_code: bool = False  # the user's consent to run code the model file carries (torch)
    # False: no per-step parameter count, sparsity and fidelity run (a caller that measures the
    # result itself, as optimize does, saves two model runs and a graph analysis per build)
    measure: bool = True

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConvertSpec:
        d = dict(d)
        d["passes"] = tuple(StepSpec(p["name"], dict(p.get("options", {})))
                            for p in d.get("passes", ()))
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "output": self.output, "to": self.to,
                "passes": [{"name": p.name, "options": p.options} for p in self.passes],
                "calib": self.calib, "eval": self.eval,
                "fidelity_threshold": self.fidelity_threshold,
                "verify_samples": self.verify_samples, "shapes": dict(self.shapes),
                "inputs": self.inputs, "trust_code": self.trust_code, "measure": self.measure}


@dataclass
class _Planned:
    kind: str  # "pass" | "convert"
    name: str  # pass name or "export-<target>"
    options: Any = None
    target: str | None = None  # for conversions


def plan(source_format: str, spec: ConvertSpec) -> list[_Planned]:
    """The steps the pipeline will run, conversions included (no work done). An order the
    rules refuse (converters/passes/order.py) raises PassError naming the rule and a valid
    order: passes run in the order given, never reordered behind the user's back."""
    from converters.export import conversion_path
    from converters.passes.order import check_pipeline

    steps: list[_Planned] = []
    fmt = source_format
    options = []
    for p in spec.passes:
        options.append(make_options(get_pass(p.name), p.options))  # validates before any work
    problems = check_pipeline(source_format, [p.name for p in spec.passes],
                              [options_dict(o) for o in options], to=spec.to)
    if problems:
        raise PassError("; ".join(dict.fromkeys(str(p) for p in problems)))
    for p, opts in zip(spec.passes, options):
        cls = get_pass(p.name)
        if fmt not in cls.accepts:
            target = _reachable_target(fmt, cls.accepts, spec.to, p.name)
            for _, t in conversion_path(fmt, target):
                steps.append(_Planned("convert", f"export-{t}", target=t))
            fmt = target
        steps.append(_Planned("pass", p.name, opts))
    if spec.to and spec.to != fmt:
        for _, t in conversion_path(fmt, spec.to):
            steps.append(_Planned("convert", f"export-{t}", target=t))
    return steps


def _reachable_target(fmt: str, accepts: frozenset[str], to: str | None, name: str) -> str:
    from converters.export import conversion_path

    order = [to] if to in accepts else []
    order += [f for f in ("onnx", "openvino", "torch") if f in accepts and f not in order]
    for target in order:
        try:
            conversion_path(fmt, target)
            return target
        except PassError:
            continue
    raise PassError(f"pass {name} runs on {', '.join(sorted(accepts))} models; a {fmt} model "
                    "cannot be converted to any of them")


def work_paths(output: str | Path) -> tuple[Path, Path]:
    """The folders a conversion to `output` writes besides it: (steps, hidden work folder)."""
    output = Path(output).resolve()
    return output.with_name(output.stem + ".steps"), output.with_name(f".{output.stem}.work")


def _check_output(source: ModelFile, output: Path, final_format: str) -> None:
    """Refuse, before anything is written, every output that could touch the source."""
    want = SUFFIX[final_format]
    if output.suffix.lower() != want:
        raise ModelDeckError(f"the result is a {final_format} model: name the output "
                             f"*{want} (got {output.name})")
    src = {p.resolve() for p in source.files()}
    if output.resolve() in src or output.with_suffix(".bin").resolve() in src:
        raise ModelDeckError(f"{output} is the source model: choose another output name "
                             "(a conversion never overwrites its source)")
    steps_dir, work_dir = work_paths(output)
    for f in sorted(src):
        for folder, what in ((steps_dir, "its steps"), (work_dir, "its temporary files")):
            if f == folder or folder in f.parents:
                raise ModelDeckError(
                    f"the source {f} is inside {folder}, where a conversion to {output.name} "
                    f"writes {what}: copy the source elsewhere or choose another output name "
                    "(a conversion never overwrites its source)")
        if output.resolve() in f.parents:
            raise ModelDeckError(f"the output {output} would replace a folder holding the source "
                                 f"{f}: choose another output name")


def _weight_sparsity(model: ModelFile) -> float | None:
    from converters.weights import weight_sparsity

    try:
        return weight_sparsity(model)
    except Exception as e:  # a figure we could not read is shown as unknown, not 0
        log.info("sparsity of %s unknown: %s", model.path, e)
        return None


def _measure(model: ModelFile, feeds, labels, reference, threshold) -> dict[str, Any]:
    from converters.analysis import analyze
    from profilers.verify import classification_metrics, fidelity, run_model

    out: dict[str, Any] = {"size_bytes": model.size_bytes()}
    try:
        out["params"] = analyze(open_model(model.path)).params
    except ModelDeckError as e:
        out["params"] = None
        out.setdefault("messages", []).append(f"could not count parameters: {e}")
    out["sparsity"] = _weight_sparsity(model)
    outputs = run_model(model, feeds)
    out["fidelity"] = fidelity(reference, outputs[0]) if reference is not None else None
    out["accuracy"] = (classification_metrics(outputs[0], labels)
                       if labels is not None else None)
    out["_outputs"] = outputs[0]
    return out


def _lineage(parent_sha: str, step: dict[str, Any], output: ModelFile) -> dict[str, Any]:
    from profilers.environment import library_versions

    return {"schema": LINEAGE_SCHEMA, "parent_sha256": parent_sha, "pass": step["pass"],
            "options": step.get("options", {}), "changed": step.get("changed"),
            "output": str(output.path),
            "output_sha256": sha256_of(output.files()), "libraries": library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _place(result_model: ModelFile, dest: Path) -> ModelFile:
    """Copy a finished model to `dest` atomically, with its weights (IR: .bin before .xml;
    ONNX external data renamed with it and the graph's references rewritten)."""
    from converters.passes._common import copy_model

    return copy_model(result_model, dest)


def cleanup_unfinished(output: str | Path, remove_steps: bool = False,
                       keep: str | Path | None = None) -> list[Path]:
    """Remove what an unfinished conversion to `output` left: its hidden work folder and
    half-written files (and, when asked, its steps folder). Safe to call when nothing is left;
    the job client calls it when a conversion's worker died. Nothing that is or holds `keep`
    (the source) is ever removed."""
    output = Path(output).resolve()
    kept = Path(keep).resolve() if keep is not None else None
    steps_dir, work_dir = work_paths(output)
    removed: list[Path] = []
    candidates = [work_dir] + ([steps_dir] if remove_steps else [])
    for name in (output.name, output.with_suffix(".bin").name, output.name + ".data"):
        candidates.append(output.with_name(f".{name}.partial"))
    if steps_dir.is_dir() and not remove_steps:
        candidates += sorted(steps_dir.glob(".*.partial"))
    for path in candidates:
        if kept is not None and (path == kept or path in kept.parents):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            try:
                path.unlink()
            except OSError:
                continue
        else:
            continue
        removed.append(path)
    if removed:
        log.info("removed what an unfinished conversion left: %s",
                 ", ".join(str(p) for p in removed))
    return removed


def _disk_full(e: BaseException | None) -> bool:
    import errno

    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _device_of(folder: Path) -> str:
    """The mount point (and device) a folder lives on, for the message."""
    try:
        import psutil

        best = None
        for part in psutil.disk_partitions(all=True):
            mp = Path(part.mountpoint)
            if (mp == folder or mp in folder.parents) and (
                    best is None or len(str(mp)) > len(str(best.mountpoint))):
                best = part
        if best is not None:
            return f"{best.mountpoint} ({best.device})"
    except Exception as e:  # the message still names the folder
        log.debug("mount point of %s: %s", folder, e)
    return str(folder)


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _space_needed(spec: ConvertSpec) -> int:
    """Roughly what a conversion writes: one model per step and the result, each about the
    size of the source."""
    try:
        src = Path(spec.model)
        size = sum(f.stat().st_size for f in
                   ModelFile(src, detect_format(src).name).files() if f.exists())
    except Exception:
        return 0
    return size * (len(spec.passes) + 2)


def _looks_disk_full(e: BaseException, output: Path, spec: ConvertSpec) -> bool:
    """OpenVINO's writer says only `basic_ios::clear: iostream error`: call it a full disk when
    the output's file system has less room left than the conversion needs."""
    if "iostream error" not in str(e):
        return False
    try:
        free = shutil.disk_usage(_existing(output.parent)).free
    except OSError:
        return False
    return free < max(_space_needed(spec), 1 << 20)


def run_pipeline(spec: ConvertSpec, emit: Emit = lambda e: None,
                 cancelled: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Run the conversion. A failure leaves no work folder or half-written file behind; a full
    disk leaves nothing of this run at all and says so."""
    import dataclasses

    from converters.formats import consent, current_trust

    if current_trust().run_code:  # a caller's consent counts too
        spec = dataclasses.replace(spec, trust_code=True)
    output = Path(spec.output).resolve()
    steps_dir, _ = work_paths(output)
    steps_existed = steps_dir.exists()
    try:
        with consent(spec.trust_code):  # readers, passes and backends ask for it
            return _run_pipeline(spec, emit, cancelled)
    except ModelDeckError as e:
        if not _disk_full(e):
            raise  # refused before writing, or a step's own message: finished steps stay
        error: BaseException = e
    except (Cancelled, Exception) as e:
        cleanup_unfinished(output, keep=spec.model)
        if not (_disk_full(e) or _looks_disk_full(e, output, spec)):
            raise
        error = e
    cleanup_unfinished(output, remove_steps=not steps_existed, keep=spec.model)
    folder = _existing(output.parent)
    raise ModelDeckError(f"no space left on {_device_of(folder)} (needed ~"
                         f"{max(_space_needed(spec) / 1e6, 0.1):.1f} MB, "
                         f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free): free some space "
                         "or write the output elsewhere") from error


def _run_pipeline(spec: ConvertSpec, emit: Emit, cancelled: Callable[[], bool]
                  ) -> dict[str, Any]:
    from profilers.verify import first_divergent_node, load_calibration, verification_inputs

    t_start = time.perf_counter()
    src_path = Path(spec.model).resolve()  # passes may change directory (ORT quantization)
    source = ModelFile(src_path, detect_format(src_path).name)
    steps_plan = plan(source.format, spec)  # an order the rules refuse: before anything else
    if source.format == "torch" and not spec.trust_code:
        raise ConsentRequired(
            f"{src_path.name} is a PyTorch model: converting it loads and runs the program "
            "stored in the file, which runs that file's code with your permissions. ModelDeck "
            "does this only with your consent")
    source_files = source.files()
    source_sha = sha256_of(source_files)
    if not steps_plan:
        raise ModelDeckError("nothing to do: give --to FORMAT and/or --pass NAME")
    final_format = _format_after(steps_plan, source.format)
    output = Path(spec.output).resolve()
    _check_output(source, output, final_format)
    steps_dir, work_dir = work_paths(output)
    shutil.rmtree(work_dir, ignore_errors=True)  # what a killed run left

    def progress(frac: float, msg: str, index: int) -> None:
        total = len(steps_plan)
        emit({"event": "progress", "frac": round((index + frac) / total, 4), "message": msg})

    emit({"event": "stage", "stage": "prepare", "message": "reference outputs"})
    feeds, labels, specs, feeds_source, workload = verification_inputs(
        source, shapes=spec.shapes, inputs=spec.inputs, eval=spec.eval, calib=spec.calib,
        samples=spec.verify_samples)
    base = (_measure(source, feeds, labels, None, spec.fidelity_threshold) if spec.measure
            else {"size_bytes": source.size_bytes(), "_outputs": None})
    reference = base.pop("_outputs")
    calibration = None
    if any(s.kind == "pass" and get_pass(s.name).needs_calibration or s.name == "distill"
           for s in steps_plan) or spec.calib:
        if spec.calib:
            calibration = load_calibration(spec.calib, specs, workload=workload)
    results: list[dict[str, Any]] = [{"pass": "source", "output": str(source.path),
                                       "format": source.format, **base, "seconds": 0.0,
                                       "messages": []}]
    emit({"event": "step", "step": results[0]})
    current, parent_sha = source, source_sha
    pre_pruning: ModelFile | None = None  # distill's teacher: the model before pruning
    broken: dict[str, Any] | None = None
    try:
        for i, step in enumerate(steps_plan):
            if cancelled():
                raise Cancelled("cancelled")
            emit({"event": "stage", "stage": step.name, "message": f"step {i + 1} of "
                  f"{len(steps_plan)}: {step.name}"})
            ctx = PassContext(work_dir=work_dir / f"{i + 1:02d}", cancelled=cancelled,
                              calibration=calibration,
                              progress=lambda f, m, i=i: progress(f, m, i))
            if (step.kind == "pass" and pre_pruning is None
                    and getattr(get_pass(step.name), "stage", "") == "structure"):
                pre_pruning = current
            step = _with_teacher(step, pre_pruning or source)
            t0 = time.perf_counter()
            result = _run_step(step, current, ctx)
            seconds = time.perf_counter() - t0
            placed = _place(result.output, steps_dir / f"{i + 1:02d}-{step.name}"
                            f"{SUFFIX[result.output.format]}")
            row = {"pass": step.name, "output": str(placed.path), "format": placed.format,
                   "options": options_dict(step.options) if step.options is not None else {},
                   "changed": result.changed, "details": result.details,
                   "messages": list(result.messages)}
            m = (_measure(placed, feeds, labels, reference, spec.fidelity_threshold)
                 if spec.measure else {"size_bytes": placed.size_bytes(), "_outputs": None})
            m.pop("_outputs")
            row["messages"] += m.pop("messages", [])
            row.update(m)
            row["seconds"] = round(seconds, 3)
            cos = (row.get("fidelity") or {}).get("cosine")
            if broken is None and cos is not None and cos < spec.fidelity_threshold:
                broken = {"step": i + 1, "pass": step.name, "cosine": cos}
                if current.format == "onnx" and placed.format == "onnx":
                    try:
                        found = first_divergent_node(current, placed, feeds,
                                                     spec.fidelity_threshold)
                        # the node as the user knows it (source graph's name and op type) on
                        # top, the comparison's detail beside it: front ends read node["name"]
                        broken["node"] = {**found["reference_node"], **found} if found else None
                    except Exception as e:
                        log.info("could not locate the divergent node: %s", e)
                row["messages"].append(f"fidelity fell below {spec.fidelity_threshold} here "
                                       f"(cosine {cos:.4f})")
            lineage = _lineage(parent_sha, row, placed)
            (placed.path.parent / (placed.path.name + ".lineage.json")).write_text(
                json.dumps(lineage, indent=2))
            row["sha256"] = lineage["output_sha256"]
            results.append(row)
            emit({"event": "step", "step": row})
            current, parent_sha = placed, lineage["output_sha256"]
        if cancelled():
            raise Cancelled("cancelled")
        final = _place(current, output)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
        if sha256_of(source_files) != source_sha:  # must never happen: fail loudly if it does
            raise RuntimeError(f"the source {src_path} changed during conversion")
    recipe = {"schema": LINEAGE_SCHEMA, "source": {"path": str(src_path), "sha256": source_sha},
              "parent_sha256": source_sha, "to": spec.to,
              "passes": [{"name": p.name, "options": p.options} for p in spec.passes],
              "calib": spec.calib, "steps": [_strip(r) for r in results[1:]],
              "output": str(final.path), "output_sha256": sha256_of(final.files())}
    from profilers.environment import library_versions

    recipe["libraries"] = library_versions()
    lineage_path = final.path.with_name(final.path.name + ".lineage.json")
    lineage_path.write_text(json.dumps(recipe, indent=2))
    return {"source": str(src_path), "output": str(final.path), "format": final.format,
            "lineage": str(lineage_path), "steps": results, "verified_on": feeds_source,
            "fidelity_threshold": spec.fidelity_threshold, "first_broken": broken,
            "seconds": round(time.perf_counter() - t_start, 3)}


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("pass", "options", "changed", "output", "sha256") if k in row}


def _format_after(steps_plan: list[_Planned], fmt: str) -> str:
    for s in steps_plan:
        if s.kind == "convert":
            fmt = s.target or fmt
    return fmt


def _with_teacher(step: _Planned, teacher: ModelFile) -> _Planned:
    """Distillation with no teacher given learns from `teacher`: the model as it was before
    the first pruning pass of this run (the source when nothing ran before it). The filled-in
    path is what the step's lineage records."""
    import dataclasses

    opts = step.options
    if step.kind != "pass" or not hasattr(opts, "teacher") or opts.teacher:
        return step
    return dataclasses.replace(step, options=dataclasses.replace(opts, teacher=str(teacher.path)))


def _run_step(step: _Planned, model: ModelFile, ctx: PassContext) -> PassResult:
    from converters.export import CONVERSIONS

    if step.kind == "convert":
        return CONVERSIONS[(model.format, step.target)](model, ctx)
    return get_pass(step.name)().run(model, step.options, ctx)


def _check_recipe(rec: dict[str, Any], recipe_path: str | Path) -> None:
    """The fields a replay reads, with the types a lineage writes (a hand-edited or hostile
    recipe gets one line naming the field, not a TypeError from deep inside)."""
    def bad(what: str) -> ModelDeckError:
        return ModelDeckError(f"recipe {recipe_path}: {what}; a lineage file as convert writes "
                              "it has passes [{\"name\": PASS, \"options\": {...}}, ...]")

    passes = rec.get("passes")
    if not isinstance(passes, list):
        raise bad("'passes' is not a list")
    for i, p in enumerate(passes, 1):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise bad(f"pass {i} has no name")
        if not isinstance(p.get("options", {}), dict):
            raise bad(f"pass {i} ({p['name']}): 'options' is not an object")
    for key in ("to", "calib"):
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise bad(f"'{key}' is not a text")


def spec_from_recipe(recipe_path: str | Path, model: str, output: str) -> tuple[ConvertSpec,
                                                                                 list[str]]:
    """Replay a lineage: same passes, options, target and calibration on `model`."""
    from converters.formats import require_regular_file

    warnings: list[str] = []
    require_regular_file(Path(recipe_path), "recipe")  # a FIFO would block forever
    try:
        rec = json.loads(Path(recipe_path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelDeckError(f"cannot read recipe {recipe_path}: {e.strerror}") from e
    except (ValueError, RecursionError):  # not UTF-8 text, not JSON, nested too deeply
        rec = {}
    if not isinstance(rec, dict) or rec.get("schema") != LINEAGE_SCHEMA or "passes" not in rec:
        raise ModelDeckError(f"{recipe_path} is not a ModelDeck lineage file (schema "
                             f"{LINEAGE_SCHEMA} with the pipeline's passes)")
    _check_recipe(rec, recipe_path)
    src_sha = sha256_of(ModelFile(Path(model), detect_format(Path(model)).name).files())
    if src_sha != rec.get("source", {}).get("sha256"):
        warnings.append("the model differs from the one the recipe was made from "
                        "(sha256 mismatch): replaying the same steps anyway")
    spec = ConvertSpec(model=model, output=output, to=rec.get("to"),
                       passes=tuple(StepSpec(p["name"], p.get("options", {}))
                                    for p in rec["passes"]),
                       calib=rec.get("calib"))
    return spec, warnings
