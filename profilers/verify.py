"""Does a converted or compressed model still compute what the original did?

- `run_model` runs any model format on a whole data set (batched) through profilers.backends;
- `fidelity` compares two outputs (cosine, errors, SQNR, top-1 agreement);
- `classification_metrics` scores logits against labels (numpy only: scikit-learn is a dev
  dependency, used by the tests to check these numbers);
- `first_divergent_node` finds where two ONNX models start to disagree;
- `load_eval_data` / `load_calibration` turn what the user gives (an .npz, "sample", a folder
  of images, "random") into model inputs.

Every number returned is a plain float / int / None, so results go to JSON as they are.
Frameworks (onnxruntime, Pillow) are imported inside functions only.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from converters.errors import ModelDeckError
from converters.passes import CalibrationData, ModelFile

logger = logging.getLogger(__name__)

SAMPLE_NPZ = Path(__file__).resolve().parents[1] / "resources" / "samples" / "digits_test.npz"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
BACKEND_FOR_FORMAT = {"onnx": "onnxruntime", "openvino": "openvino", "torch": "torch",
                      "tflite": "openvino"}
RANDOM_WARNING = ("Calibration used random inputs: the value ranges it measured mean nothing "
                  "for real data, so expect poor accuracy; calibrate with real samples (an .npz "
                  "or a folder of images) instead.")


class VerifyError(ModelDeckError):
    """Data or models cannot be compared: the message says what does not fit."""


class InputLike(Protocol):
    """What is needed of a model input (profilers.backends.InputSpec fits)."""

    name: str
    shape: Sequence[int | str | None] | None
    dtype: str


# --- running a model on a data set -----------------------------------------------------------

def run_model(model: ModelFile, feeds: dict[str, np.ndarray], batch_size: int = 64,
              backend: str | None = None) -> list[np.ndarray]:
    """All samples through the model, in batches; outputs concatenated along axis 0.

    A model with a fixed batch size (1 in most exports) runs in batches of exactly that size.
    """
    from profilers.backends import BackendOptions, get_backend

    name = backend or BACKEND_FOR_FORMAT.get(model.format)
    if name is None:
        raise VerifyError(f"no backend runs {model.format} models")
    runner = get_backend(name)()
    # Fidelity measures the conversion, not the runtime's own precision choice: OpenVINO picks
    # bf16 by itself on CPUs with bf16 units, which alone costs ~1e-3 of cosine.
    options = BackendOptions(precision="f32") if name == "openvino" else BackendOptions()
    runner.load(Path(model.path), model.format, "CPU", options)
    try:
        specs = runner.input_specs()
        feeds = _match_feeds(feeds, specs)
        if not _common_sample_axis(feeds):  # a scalar, or state whose batch is not axis 0
            return [np.asarray(o) for o in runner.infer(feeds)]
        count = _sample_count(feeds)
        fixed = _fixed_batch(specs)
        step = fixed or max(1, batch_size)
        chunks: list[list[np.ndarray]] = []
        for start in range(0, count, step):
            batch = {k: v[start:start + step] for k, v in feeds.items()}
            real = len(next(iter(batch.values())))
            if fixed and real < fixed:  # a fixed batch: pad the last one, drop the padding
                batch = {k: _pad(v, fixed) for k, v in batch.items()}
            chunks.append([o[:real] if fixed and np.ndim(o) else o for o in runner.infer(batch)])
    finally:
        runner.close()
    return [_concat([c[i] for c in chunks]) for i in range(len(chunks[0]))] if chunks else []


def _match_feeds(feeds: dict[str, np.ndarray], specs: list[Any]) -> dict[str, np.ndarray]:
    """Feeds keyed by the model's input names. Names that differ between formats ("input" in
    ONNX, "x" in torch) are matched by position when the counts agree."""
    names = [s.name for s in specs]
    if not feeds:
        raise VerifyError("no inputs given")
    if set(feeds) == set(names) or not names:
        ordered = feeds if not names else {n: feeds[n] for n in names}
    elif len(feeds) == len(names):
        logger.debug("feeding %s to inputs %s by position", list(feeds), names)
        ordered = dict(zip(names, feeds.values()))
    else:
        raise VerifyError(f"the model takes inputs {names}, the data has {list(feeds)}")
    dtypes = {s.name: s.dtype for s in specs}
    return {k: np.asarray(v.astype(dtypes.get(k, v.dtype), copy=False), order="C")
            for k, v in ordered.items()}


def _common_sample_axis(feeds: dict[str, np.ndarray]) -> bool:
    """True when every input has a leading sample axis of one length (batches can be cut)."""
    if any(np.ndim(v) == 0 for v in feeds.values()):
        return False
    return len({len(v) for v in feeds.values()}) == 1


def _sample_count(feeds: dict[str, np.ndarray]) -> int:
    counts = {len(v) for v in feeds.values()}
    if len(counts) != 1:
        raise VerifyError(f"inputs hold different numbers of samples: "
                          f"{ {k: len(v) for k, v in feeds.items()} }")
    return counts.pop()


def _fixed_batch(specs: list[Any]) -> int | None:
    """The batch size the model insists on, or None when its batch dim is dynamic/unknown."""
    sizes = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)}
    return sizes.pop() if len(sizes) == 1 else None


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    reps = np.repeat(array[-1:], size - len(array), axis=0)
    return np.concatenate([array, reps], axis=0)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    if all(np.ndim(p) for p in parts):
        return np.concatenate(parts, axis=0)
    return np.stack(parts)  # scalars per batch


# --- comparing outputs -----------------------------------------------------------------------

def _num(value: float) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two flat vectors; 1 for two zero vectors, 0 when only one is zero."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def fidelity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | None]:
    """How close candidate is to reference.

    cosine: of the flattened arrays; cosine_mean: per sample (axis 0), averaged;
    max_abs_err; max_rel_err: max |ref - cand| / max |ref|;
    sqnr_db: 10 log10(sum ref^2 / sum (ref - cand)^2), None when they are equal (infinite);
    top1_agreement: share of samples with the same argmax over the last axis, for [N, C]
    outputs only (None otherwise). None also stands for NaN / inf results.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise VerifyError(f"outputs differ in shape: {list(ref.shape)} vs {list(cand.shape)}")
    diff = ref - cand
    rows_ref = ref.reshape(len(ref), -1) if ref.ndim else ref.reshape(1, 1)
    rows_cand = cand.reshape(rows_ref.shape)
    per_sample = [_cosine(r, c) for r, c in zip(rows_ref, rows_cand)]
    max_ref = float(np.max(np.abs(ref))) if ref.size else 0.0
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    noise = float(np.sum(diff ** 2))
    signal = float(np.sum(ref ** 2))
    return {
        "cosine": _num(_cosine(ref.ravel(), cand.ravel())),
        "cosine_mean": _num(np.mean(per_sample)) if per_sample else None,
        "max_abs_err": _num(max_abs),
        "max_rel_err": _num(max_abs / max_ref) if max_ref else (0.0 if max_abs == 0 else None),
        "sqnr_db": _num(10 * math.log10(signal / noise)) if noise and signal else None,
        "top1_agreement": _top1(ref, cand),
    }


def _top1(ref: np.ndarray, cand: np.ndarray) -> float | None:
    if ref.ndim != 2 or ref.shape[1] < 2 or not len(ref):
        return None
    return float(np.mean(ref.argmax(axis=-1) == cand.argmax(axis=-1)))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro / weighted precision, recall and F1, and the confusion matrix.

    Same definitions as scikit-learn: a class with no prediction has precision 0 (no
    division warning here), averages run over the classes present in labels or predictions,
    weighted averages weigh by each class's true count. The confusion matrix covers classes
    0..C-1 (rows: true class, columns: predicted class).
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels).astype(np.int64).ravel()
    preds = logits.argmax(axis=-1).ravel() if logits.ndim > 1 else logits.astype(np.int64)
    if len(preds) != len(labels):
        raise VerifyError(f"{len(preds)} predictions for {len(labels)} labels")
    if len(labels) == 0:
        raise VerifyError("no samples to score")
    if labels.min() < 0:
        raise VerifyError("labels must be class indices (0, 1, ...)")
    n_classes = int(max(logits.shape[-1] if logits.ndim > 1 else 0,
                        labels.max() + 1, preds.max() + 1))
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    support = confusion.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    weights = support / support.sum()
    return {
        "accuracy": float(tp.sum() / len(labels)),
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "precision_weighted": float(np.sum(precision * weights)),
        "recall_weighted": float(np.sum(recall * weights)),
        "f1_weighted": float(np.sum(f1 * weights)),
        "confusion_matrix": confusion.tolist(),
        "num_samples": int(len(labels)),
        "num_classes": n_classes,
    }


# --- where do two ONNX models part? ----------------------------------------------------------

def first_divergent_node(reference: ModelFile, candidate: ModelFile,
                         feeds: dict[str, np.ndarray], threshold: float = 0.99,
                         samples: int = 8) -> dict[str, Any] | None:
    """The first tensor, in the reference's node order, whose cosine drops below threshold.

    Only tensors computed in both graphs under the same name and shape are compared (a pass
    that keeps names keeps most of them). Returns None when there are none, or none diverges.
    """
    import onnx

    for m in (reference, candidate):
        if m.format != "onnx":
            raise VerifyError(f"first_divergent_node compares ONNX models, not {m.format}")
    ref_model = onnx.load(str(reference.path))
    cand_model = onnx.load(str(candidate.path))
    ref_types, cand_types = _tensor_types(ref_model), _tensor_types(cand_model)
    ref_producers, cand_producers = _producers(ref_model), _producers(cand_model)
    common = [name for name in ref_producers
              if name in cand_producers and name in ref_types and name in cand_types
              and _is_float(ref_types[name]) and _same_shape(ref_types[name], cand_types[name])]
    if not common:
        return None
    few = {k: v[:samples] for k, v in feeds.items()}
    ref_values = _run_with_outputs(ref_model, ref_types, common, few)
    cand_values = _run_with_outputs(cand_model, cand_types, common, few)
    for name in common:
        a, b = ref_values[name], cand_values[name]
        if a.shape != b.shape:
            continue
        cos = _cosine(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())
        if not cos >= threshold:  # NaN counts as divergent
            ref_node, cand_node = ref_producers[name], cand_producers[name]
            return {"tensor": name, "cosine": _num(cos), "threshold": threshold,
                    "reference_node": {"name": ref_node.name, "op_type": ref_node.op_type},
                    "candidate_node": {"name": cand_node.name, "op_type": cand_node.op_type},
                    "compared": common.index(name) + 1, "common_tensors": len(common)}
    return None


def _producers(model: Any) -> dict[str, Any]:
    """tensor name -> producing node, in the graph's (topological) node order."""
    return {out: node for node in model.graph.node for out in node.output if out}


def _tensor_types(model: Any) -> dict[str, Any]:
    """tensor name -> TypeProto, after shape inference (inputs, intermediates, outputs)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a custom op stops inference: use what the file declares
        logger.debug("shape inference failed", exc_info=True)
        inferred = model
    g = inferred.graph
    return {v.name: v.type for v in [*g.input, *g.value_info, *g.output]
            if v.type.HasField("tensor_type")}


def _is_float(typ: Any) -> bool:
    """Float tensors carry the model's values; integer ones mostly shapes and indices."""
    import onnx

    p = onnx.TensorProto
    return typ.tensor_type.elem_type in (p.FLOAT, p.FLOAT16, p.DOUBLE, p.BFLOAT16)


def _dims(typ: Any) -> tuple[Any, ...] | None:
    if not typ.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else "?" for d in typ.tensor_type.shape.dim)


def _same_shape(a: Any, b: Any) -> bool:
    da, db = _dims(a), _dims(b)
    return da is not None and da == db


def _run_with_outputs(model: Any, types: dict[str, Any], names: list[str],
                      feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a copy of the model that also returns `names` (added as graph outputs)."""
    import onnx
    import onnxruntime as ort

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_value_info(name, types[name]))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(copy.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    feeds = _match_feeds(feeds, [_OrtInput(i.name, _ort_dtype(i.type)) for i in inputs.values()])
    values = session.run(names, feeds)
    return dict(zip(names, values))


@dataclass
class _OrtInput:
    name: str
    dtype: str
    shape: tuple[Any, ...] | None = None


def _ort_dtype(ort_type: str) -> str:
    from profilers.backends.onnxruntime_backend import numpy_dtype

    return numpy_dtype(ort_type)


# --- evaluation data -------------------------------------------------------------------------

@dataclass
class EvalData:
    """Model inputs (name -> array, leading sample axis) and, when known, integer labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    @property
    def count(self) -> int:
        return min((len(a) for a in self.inputs.values()), default=0)


def load_eval_data(spec: str, model_inputs: Sequence[InputLike]) -> EvalData:
    """An .npz (arrays by input name, or "inputs" for a single-input model; "labels" optional)
    or "sample" (the bundled digits test set)."""
    path, is_sample = _npz_path(spec, "evaluation data")
    data = _read_npz(path)
    inputs = _npz_inputs(data, path, model_inputs, is_sample)
    labels = None
    if "labels" in data.files:
        labels = np.asarray(data["labels"]).astype(np.int64).ravel()
        count = min(len(a) for a in inputs.values())
        if len(labels) != count:
            raise VerifyError(f"{path.name}: {len(labels)} labels for {count} samples")
    return EvalData(inputs=inputs, labels=labels)


def _npz_path(spec: str, what: str) -> tuple[Path, bool]:
    if spec == "sample":
        return SAMPLE_NPZ, True
    path = Path(spec).expanduser()
    if not path.exists():
        raise VerifyError(f"{what} {spec!r}: no such file; give an .npz of model inputs "
                          "or 'sample' for the bundled digits")
    return path, False


def _read_npz(path: Path) -> Any:
    from converters.formats import require_regular_file

    require_regular_file(path, "data file")  # a FIFO would block the job forever
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise VerifyError(f"cannot read {path.name} as an .npz of arrays: {e}") from e


def _npz_inputs(data: Any, path: Path, model_inputs: Sequence[InputLike], is_sample: bool
                ) -> dict[str, np.ndarray]:
    """One array per model input, shape-checked against the model (batch dim free)."""
    if not model_inputs:
        raise VerifyError("the model declares no inputs")
    out = {}
    from converters.workload import npz_array

    for spec in model_inputs:
        array = npz_array(data, spec.name, single_input=len(model_inputs) == 1)
        if array is None:
            raise VerifyError(f"{path.name} has no array named {spec.name!r} (it has "
                              f"{', '.join(data.files)}); name arrays after the model inputs, "
                              "or 'inputs' for a single-input model")
        if is_sample:
            array = _sample_layout(array, spec)
        try:
            _check_shape(array, spec, path.name)
        except VerifyError as e:
            hint = " (the bundled sample fits only the digits sample model)" if is_sample else ""
            raise VerifyError(f"{e}{hint}") from None
        out[spec.name] = np.ascontiguousarray(array.astype(_dtype(spec), copy=False))
    counts = {len(a) for a in out.values()}
    if len(counts) > 1:
        raise VerifyError(f"{path.name}: inputs hold different numbers of samples "
                          f"({ {k: len(v) for k, v in out.items()} })")
    return out


def _dtype(spec: InputLike) -> str:
    return getattr(spec, "dtype", None) or "float32"


def _sample_layout(array: np.ndarray, spec: InputLike) -> np.ndarray:
    """The sample digits are NCHW; an NHWC model (TFLite) gets them transposed."""
    shape = spec.shape
    if shape is None or len(shape) != 4 or array.ndim != 4 or _fits(array.shape, shape):
        return array
    nhwc = array.transpose(0, 2, 3, 1)
    return nhwc if _fits(nhwc.shape, shape) else array


def _fits(actual: Sequence[int], wanted: Sequence[Any]) -> bool:
    """Same rank, and every fixed dim after the batch equal."""
    if len(actual) != len(wanted):
        return False
    return all(not isinstance(w, int) or w <= 0 or a == w
               for a, w in zip(list(actual)[1:], list(wanted)[1:]))


def _check_shape(array: np.ndarray, spec: InputLike, source: str) -> None:
    if array.ndim == 0 or len(array) == 0:
        raise VerifyError(f"{source}: the array for {spec.name!r} holds no samples")
    if spec.shape is not None and not _fits(array.shape, spec.shape):
        wanted = ["N" if i == 0 else (d if isinstance(d, int) and d > 0 else "?")
                  for i, d in enumerate(spec.shape)]
        raise VerifyError(f"{source}: the array for {spec.name!r} has shape "
                          f"{list(array.shape)}, the model expects {wanted} (N samples)")


# --- calibration data ------------------------------------------------------------------------

def load_calibration(spec: str, model_inputs: Sequence[InputLike], limit: int = 300,
                     seed: int = 0, workload: Any = None) -> CalibrationData:
    """Calibration inputs from an .npz, "sample", a folder of images, or "random".

    At most `limit` samples, picked at random (seeded) when there are more: data sets are
    often sorted by class, and the first N would then miss whole classes. "random" with the
    model's resolved workload follows the graph (token ids inside their table, masks ones).
    """
    if limit < 1:
        raise VerifyError("the calibration sample limit must be at least 1")
    if spec == "random":
        if workload is not None:
            return _workload_calibration(workload, min(limit, 64), seed + 1)
        return _random_calibration(model_inputs, limit, seed)
    if spec != "sample" and Path(spec).expanduser().is_dir():
        arrays = _image_folder(Path(spec).expanduser(), model_inputs, limit, seed)
        return CalibrationData(arrays=arrays, source=str(spec))
    if spec != "sample" and not Path(spec).expanduser().exists():
        raise VerifyError(f"calibration data {spec!r}: no such file or folder; give an .npz of "
                          "model inputs, a folder of images, 'sample' for the bundled digits, "
                          "or 'random'")
    path, is_sample = _npz_path(spec, "calibration data")
    arrays = _npz_inputs(_read_npz(path), path, model_inputs, is_sample)
    keep = _subset(min(len(a) for a in arrays.values()), limit, seed)
    return CalibrationData(arrays={k: v[keep] for k, v in arrays.items()},
                           source="sample" if is_sample else str(path))


def _subset(count: int, limit: int, seed: int) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def _random_calibration(model_inputs: Sequence[InputLike], limit: int, seed: int
                        ) -> CalibrationData:
    """Uniform [0, 1) floats (integers in [0, 10)) shaped like the inputs, one per sample."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in model_inputs:
        shape = _fixed_sample_shape(spec)
        dtype = np.dtype(_dtype(spec))
        if np.issubdtype(dtype, np.integer):
            arrays[spec.name] = rng.integers(0, 10, size=(limit, *shape)).astype(dtype)
        elif dtype == np.bool_:
            arrays[spec.name] = rng.integers(0, 2, size=(limit, *shape)).astype(bool)
        else:
            arrays[spec.name] = rng.random(size=(limit, *shape), dtype=np.float32).astype(dtype)
    logger.warning(RANDOM_WARNING)
    return CalibrationData(arrays=arrays, source="random", warning=RANDOM_WARNING)


def _workload_calibration(workload: Any, count: int, seed: int) -> CalibrationData:
    """Random values drawn the way the workload draws them: meaningless activation ranges,
    but a model that runs (a free batch axis carries the samples)."""
    from converters.workload import generate

    free = all(i.batch_axis is not None for i in workload.inputs)
    arrays = generate(workload.with_batch(count) if free else workload, seed=seed)
    logger.warning(RANDOM_WARNING)
    return CalibrationData(arrays=arrays, source="random", warning=RANDOM_WARNING)


def _fixed_sample_shape(spec: InputLike) -> list[int]:
    """The shape of one sample (batch dim dropped); every other dim must be known."""
    if spec.shape is None or not spec.shape:
        raise VerifyError(f"input {spec.name!r} has no known shape, so random data cannot be "
                          "made for it: give an .npz of real inputs")
    rest = list(spec.shape)[1:]
    if not all(isinstance(d, int) and d > 0 for d in rest):
        raise VerifyError(f"input {spec.name!r} has dynamic dims {list(spec.shape)}: random data "
                          "needs fixed sizes; give an .npz of real inputs")
    return rest


def _image_folder(folder: Path, model_inputs: Sequence[InputLike], limit: int, seed: int
                  ) -> dict[str, np.ndarray]:
    """Images resized to the model's H x W, gray or RGB by its channel count, scaled to [0, 1].

    No mean/std normalisation is applied: a model that expects normalised inputs needs an
    .npz of already-preprocessed inputs instead.
    """
    if len(model_inputs) != 1:
        raise VerifyError(f"a folder of images feeds a model with one image input; this model "
                          f"has {len(model_inputs)} inputs: give an .npz instead")
    spec = model_inputs[0]
    layout, channels, height, width = _image_layout(spec)
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VerifyError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): put "
                          "calibration images there, or give an .npz")
    chosen = [files[i] for i in _subset(len(files), limit, seed)]
    images = np.stack([_read_image(p, channels, height, width) for p in chosen])  # N,H,W,C
    if layout == "NCHW":
        images = images.transpose(0, 3, 1, 2)
    return {spec.name: np.ascontiguousarray(images.astype(_dtype(spec)))}


def _image_layout(spec: InputLike) -> tuple[str, int, int, int]:
    """(layout, channels, height, width) from a 4-D input shape with 1 or 3 channels."""
    shape = list(spec.shape) if spec.shape is not None else []
    if len(shape) == 4:
        known = [d if isinstance(d, int) and d > 0 else None for d in shape]
        if known[1] in (1, 3) and known[2] and known[3]:
            return "NCHW", known[1], known[2], known[3]
        if known[3] in (1, 3) and known[1] and known[2]:
            return "NHWC", known[3], known[1], known[2]
    raise VerifyError(f"input {spec.name!r} with shape {shape or 'unknown'} is not an image "
                      "input ModelDeck can fill from files (it needs [N, 1 or 3, H, W] or "
                      "[N, H, W, 1 or 3] with fixed H and W): give an .npz instead")


def _read_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """One image as H x W x C float32 in [0, 1]."""
    try:
        from PIL import Image
    except ImportError as e:
        raise VerifyError("reading a folder of images needs Pillow (pip install Pillow); or "
                          "give an .npz of inputs") from e
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            img = img.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.float32) / 255.0
    except OSError as e:
        raise VerifyError(f"cannot read image {path.name}: {e}") from e
    return array[..., None] if array.ndim == 2 else array


# --- what every step / variant is checked on ----------------------------------------------

def source_workload(source: ModelFile, shapes: dict[str, list[int]] | None = None,
                    inputs: str | None = None) -> tuple[Any, dict | None]:
    """The source's workload (user sizes, then real inputs, then the model, then defaults) and
    the real inputs, if given. Every step is verified on this one workload."""
    from converters.workload import make_dry_check, read_npz, resolve_workload

    from converters.formats import open_model

    graph = open_model(source.path)
    data = read_npz(inputs, graph.graph.inputs) if inputs else None
    workload = resolve_workload(graph, None, shapes, data,
                                dry_check=make_dry_check(str(source.path), source.format))
    return workload, data


def _input_specs(workload: Any) -> list[Any]:
    """Per-input (name, dtype, shape) at the workload's sizes; a free batch stays free."""
    from converters.workload import InputDecl

    return [InputDecl(i.name, i.dtype, tuple(
        "N" if ax == i.batch_axis else d for ax, d in enumerate(i.shape)))
        for i in workload.inputs]


# Generated inputs: as many samples as fit in this many elements (a 640x640 detector gets a
# few, a digits CNN the full count), so verifying every step stays quick.
_GENERATED_ELEMENTS = 1 << 22


def verification_inputs(source: ModelFile, *, shapes: dict[str, list[int]] | None = None,
                        inputs: str | None = None, eval: str | None = None,
                        calib: str | None = None, samples: int = 256, workload: Any = None,
                        data: dict | None = None):
    """Inputs every step is checked on: labelled eval data, else real inputs, else calibration,
    else generated from the workload. Returns (feeds, labels, specs, source text, workload)."""
    from converters.workload import fit_data, generate

    if workload is None:
        workload, data = source_workload(source, shapes, inputs)
    specs = _input_specs(workload)
    n = samples
    free_batch = all(i.batch_axis is not None for i in workload.inputs)
    if eval:
        ev = load_eval_data(eval, specs)  # accuracy is measured on the whole labelled set
        feeds, labels = dict(ev.inputs), ev.labels
        return feeds, labels, specs, f"eval data {eval}", workload
    if data:
        rows = min(n, *(len(a) for a in data.values() if np.ndim(a) >= 1)) if free_batch else None
        return (fit_data(workload, data, rows), None, specs, f"inputs {inputs}", workload)
    if calib and calib != "random":
        cal = load_calibration(calib, specs, limit=n)
        return dict(cal.arrays), None, specs, f"calibration data {calib}", workload
    if free_batch:
        per_sample = max(1, max(int(np.prod(i.shape)) for i in workload.inputs))
        n = max(1, min(n, _GENERATED_ELEMENTS // per_sample))
        wl = workload.with_batch(n)
    else:
        wl = workload
    sizes = ", ".join(f"{i.name} [{', '.join(map(str, i.shape))}]" for i in workload.inputs)
    return generate(wl), None, specs, f"generated inputs ({sizes}; no labels)", workload
