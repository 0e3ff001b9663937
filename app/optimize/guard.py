"""Checks before a search spends minutes: the model, the output folder, the data files, the spec.

Real users bring labels as floats, one-hot rows or class names, data with NaN in it, a pickle,
a half-copied archive, an output path that names the model itself. Each gets one message that
says what to do, before any pass runs, instead of a traceback, a hang or a silent wrong figure.
Messages name no CLI flag: the window shows them too (the CLI adds its flags).

Runs in the worker (it parses untrusted files); `check_output` is cheap and also runs in the CLI
so a bad -o fails at once.
"""
from __future__ import annotations

import math
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import ModelDeckError

# the arrays of one data file held in memory at once (the worker's default limit is 8 GB, and
# a search holds the data, the baseline's outputs and a candidate's at the same time)
MAX_DATA_BYTES = 2 << 30
# samples evaluated per variant: enough for a 1-point accuracy interval, and a 50,000-sample
# test set would otherwise take the whole time budget on the baseline alone
MAX_EVAL_SAMPLES = 5000
# the first output of every sample evaluated, held for the baseline and for a variant at once
# (and briefly twice while batches are joined): an OCR recogniser's 512 text lines are 1.5 GB
# of [40, 18710] scores each, and the worker peaked at 8.4 GB
MAX_OUTPUT_BYTES = 512 << 20
# threads beyond this many per usable core only make runs wait on each other (and 100,000
# makes a runtime try to start 100,000 threads)
MAX_THREADS_PER_CORE = 4
# the runtimes the search builds candidates for (a torch model is searched through its export)
SEARCHED_BACKENDS = ("onnxruntime", "openvino")
# names optimize writes in its output folder (besides <model>-optimized.<ext>)
WRITTEN = ("optimize.json", "optimize.html", "recipe.lineage.json")
MODEL_SUFFIXES = (".onnx", ".xml", ".bin", ".pt2", ".onnx.data")


class DataError(ModelDeckError):
    """A data file that cannot feed the search; the message says how to fix it."""


def _gib(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n:.0f} bytes"


# --- the spec ------------------------------------------------------------------------------

def check_spec(spec: Any, cores: int | None = None) -> None:
    """Values the dataclass cannot judge alone: backends of this machine, threads for its cores,
    a finite budget."""
    if not math.isfinite(spec.time_budget_s):
        raise ModelDeckError("the time budget must be a finite duration, e.g. 15 minutes")
    if spec.subset < 1:
        raise ModelDeckError(f"the screening subset must hold at least 1 sample (got "
                             f"{spec.subset})")
    if cores is None:
        from app.optimize.search import usable_cores

        cores = usable_cores()
    cap = MAX_THREADS_PER_CORE * cores
    asked = [t for t in ((spec.threads,) + tuple(spec.thread_choices or ())) if t]
    if any(t > cap for t in asked):
        raise ModelDeckError(f"{max(asked)} threads on a machine with {cores} usable core(s): "
                             f"choose at most {cap} (more only makes the runs wait on each "
                             "other)")
    if spec.backends:
        from profilers.backends import BACKENDS

        unknown = [b for b in spec.backends if b not in SEARCHED_BACKENDS]
        if unknown:
            raise ModelDeckError(f"unknown backend(s) {', '.join(map(repr, unknown))}: the "
                                 f"search runs on {', '.join(SEARCHED_BACKENDS)}")
        usable = []
        for b in spec.backends:
            ok, why = BACKENDS[b].available()
            if ok:
                usable.append(b)
            elif len(spec.backends) == 1:
                raise ModelDeckError(f"backend {b} is not usable here: {why}")
        if not usable:
            raise ModelDeckError(f"none of the chosen backends is usable here "
                                 f"({', '.join(spec.backends)})")


# --- the model -----------------------------------------------------------------------------

def check_model(model: str) -> Path:
    """The source as a regular, non-empty file (a folder, a FIFO or a device is refused by
    name, not as 'no such file')."""
    from converters.formats import require_regular_file

    path = Path(model).expanduser()
    st = require_regular_file(path, "model")
    if st.st_size == 0:
        raise ModelDeckError(f"{path.name} is empty (0 bytes): the download or copy did not "
                             "finish")
    return path.resolve()


def _source_files(model: Path) -> set[Path]:
    files = {model.resolve()}
    for companion in (model.with_suffix(".bin"), model.with_name(model.name + ".data")):
        if companion.exists():
            files.add(companion.resolve())
    return files


# --- the output folder ---------------------------------------------------------------------

def check_output(model: str, output_dir: str) -> Path:
    """Create the output folder, and refuse one that is the source, that is a file, that cannot
    be written, or where a name optimize writes would land on the source (a link planted
    there: copying the winner would then overwrite the model it came from)."""
    out = Path(output_dir).expanduser()
    src = Path(model).expanduser()
    sources = _source_files(src) if src.exists() else set()
    if out.exists() and not out.is_dir():
        if out.resolve() in sources:
            raise ModelDeckError(f"the output {out} is the source model: the output is a folder "
                                 "for the winner and its report; choose a new folder (optimize "
                                 "never overwrites its source)")
        raise ModelDeckError(f"the output {out} is a file, not a folder: choose a folder (it is "
                             "created when missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelDeckError(f"cannot create the output folder {out}: "
                             f"{e.strerror or e}; choose a folder you can write to") from None
    try:
        with tempfile.NamedTemporaryFile(dir=out, prefix=".modeldeck-write-check-"):
            pass
    except OSError as e:
        raise ModelDeckError(f"cannot write in the output folder {out}: {e.strerror or e}; "
                             "choose a folder you can write to") from None
    stem = src.stem
    names = list(WRITTEN) + [f"{stem}-optimized{s}" for s in MODEL_SUFFIXES]
    for name in names:
        target = out / name
        if (target.exists() or target.is_symlink()) and target.resolve() in sources:
            raise ModelDeckError(f"{target} leads to the source model {src.name}: writing the "
                                 "winner there would overwrite it; choose another output "
                                 "folder")
    return out


# --- data files ----------------------------------------------------------------------------

def check_data_file(spec: str | None, what: str, *, labelled: bool) -> None:
    """An .npz (or, for calibration, a folder of images) that np.load can read safely: a zip
    of plain numeric .npy arrays within the memory cap, labels one integer class per sample.

    Reads the archive's directory and each array's header, not the arrays (labels excepted).
    """
    if not spec or spec in ("sample", "random"):
        return
    from converters.formats import require_regular_file

    path = Path(spec).expanduser()
    if path.is_dir():
        if labelled:
            raise DataError(f"the {what} {path} is a folder: give one .npz file holding the "
                            "inputs (named after the model's inputs) and 'labels'")
        return  # a folder of calibration images: read by load_calibration
    if not path.exists() and not path.is_symlink():
        raise DataError(f"the {what} {spec!r}: no such file")
    try:
        st = require_regular_file(path, f"{what} file")
    except ModelDeckError as e:
        raise DataError(str(e)) from None
    name = path.name
    if st.st_size == 0:
        raise DataError(f"the {what} {name} is empty (0 bytes): the copy did not finish")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"the {what} {name} is a single .npy array, not an .npz: save the "
                        "inputs (and labels) with numpy.savez(file, <input name>=array, "
                        "labels=...)")
    if not head.startswith(b"PK"):
        raise DataError(f"the {what} {name} is not an .npz archive (a zip of .npy arrays, as "
                        "numpy.savez writes): it may be truncated or another kind of file")
    try:
        with zipfile.ZipFile(path) as zf:
            _check_members(zf, path, what, labelled)
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError) as e:
        raise DataError(f"the {what} {name} is truncated or corrupt ({_first_line(e)}): "
                        "write it again with numpy.savez") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _check_members(zf: zipfile.ZipFile, path: Path, what: str, labelled: bool) -> None:
    name = path.name
    arrays = [i for i in zf.infolist() if i.filename.endswith(".npy")]
    if not arrays:
        raise DataError(f"the {what} {name} holds no .npy arrays: save the inputs with "
                        "numpy.savez(file, <input name>=array)")
    total = 0
    for info in arrays:
        key = info.filename[:-4]
        with zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read(f, max_header_size=10000)
            except (ValueError, EOFError, SyntaxError, zipfile.BadZipFile) as e:
                raise DataError(f"the {what} {name}: array {key!r} is truncated or corrupt "
                                f"({_first_line(e)}): write the file again with "
                                "numpy.savez") from None
        if dtype.hasobject:
            raise DataError(f"the {what} {name}: array {key!r} holds Python objects (a pickle), "
                            "which ModelDeck never loads from a data file (it can run code): "
                            "save plain numeric arrays, e.g. numpy.asarray(x, dtype=float32)")
        if dtype.kind in "cUSV" and key != "labels":
            kind = {"c": "complex numbers", "U": "text", "S": "bytes", "V": "raw records"}
            raise DataError(f"the {what} {name}: array {key!r} holds {kind[dtype.kind]}, not "
                            "numbers a model takes: save the model's inputs as int or float "
                            "arrays")
        nbytes = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
        total += nbytes
        if total > MAX_DATA_BYTES:
            raise DataError(f"the {what} {name} declares {_gib(total)} of arrays ({key!r} "
                            f"{list(shape)} {dtype}) where optimize reads at most "
                            f"{_gib(MAX_DATA_BYTES)}: give fewer samples (a few thousand are "
                            "enough for an accuracy interval under a point)")
        if nbytes > 4096 and info.file_size < nbytes:
            raise DataError(f"the {what} {name}: array {key!r} declares {list(shape)} "
                            f"{dtype} ({_gib(nbytes)}) but the archive holds "
                            f"{_gib(info.file_size)} of it: the file is truncated or corrupt")
        if key == "labels":
            if not labelled:
                continue
            _check_labels(_read_member(zf, info, what, name), what, name)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str, name: str
                 ) -> np.ndarray:
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"the {what} {name}: its labels are truncated or corrupt "
                        f"({_first_line(e)})") from None


def _check_labels(raw: np.ndarray, what: str, name: str) -> None:
    """One integer class index per sample: what accuracy is scored against."""
    where = f"the {what} {name}"
    if raw.ndim > 1 and any(d != 1 for d in raw.shape[1:]):
        raise DataError(f"{where}: labels have shape {list(raw.shape)}, not one class index "
                        "per sample; for one-hot rows store labels.argmax(axis=1)")
    flat = raw.ravel()
    if flat.size == 0:
        return  # an empty set is refused with the inputs, by name
    if raw.dtype.kind in "USO":
        raise DataError(f"{where}: labels are text ({flat[:3].tolist()}…), not class indices: "
                        "map each class to its output index (0, 1, 2, …) and store integers")
    if raw.dtype.kind == "c":
        raise DataError(f"{where}: labels are complex numbers, not class indices")
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(flat)
        if bad.any():
            raise DataError(f"{where}: {int(bad.sum())} label(s) are NaN or infinite (first at "
                            f"sample {int(np.argmax(bad))}): every sample needs a class index")
        frac = flat != np.round(flat)
        if frac.any():
            i = int(np.argmax(frac))
            raise DataError(f"{where}: labels are fractions ({flat[i].item()!r} at sample {i}), not "
                            "class indices: store the index of each sample's class (0, 1, "
                            "2, …); probabilities or regression targets cannot be scored as "
                            "accuracy")
    if raw.dtype.kind in "iuf" and flat.min() < 0:
        i = int(np.argmin(flat))
        raise DataError(f"{where}: label {flat[i]:g} at sample {i} is negative: class indices "
                        "start at 0 (an 'ignore' label such as -1 or -100 has no class to "
                        "score; drop those samples)")


# --- loaded data ---------------------------------------------------------------------------

def check_arrays(feeds: dict[str, np.ndarray], source: str) -> None:
    """Inputs a model can be judged on: finite numbers (NaN in, NaN out: every variant would
    'match' or 'miss' the baseline for no reason)."""
    for key, a in feeds.items():
        if a.dtype.kind != "f":
            continue
        bad = ~np.isfinite(a.reshape(len(a), -1) if a.ndim else a.reshape(1, -1))
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise DataError(f"the {source}: input {key!r} holds {int(bad.sum())} NaN or "
                            f"infinite value(s) in {len(rows)} sample(s) (first: sample "
                            f"{int(rows[0])}): clean those values or drop those samples")


def limit_samples(feeds: dict[str, np.ndarray], labels: np.ndarray | None, source: str,
                  cap: int = MAX_EVAL_SAMPLES, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], np.ndarray | None, str | None]:
    """At most `cap` samples (seeded, order kept: data sets are often sorted by class, so the
    first `cap` would miss whole classes). Returns the note that says so."""
    n = len(next(iter(feeds.values())))
    if n <= cap:
        return feeds, labels, None
    keep = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
    feeds = {k: np.ascontiguousarray(v[keep]) for k, v in feeds.items()}
    labels = None if labels is None else labels[keep]
    return feeds, labels, (f"the {source} holds {n:,} samples: every variant is evaluated on "
                           f"{cap:,} of them, drawn at random (seeded), so the search fits its "
                           "time budget (a longer budget evaluates more, up to "
                           f"{MAX_EVAL_SAMPLES:,})")


def eval_cap(time_budget_s: float) -> int:
    """Samples a search of this budget evaluates each variant on: 8 per second of budget,
    at least 500, at most MAX_EVAL_SAMPLES (a 20 s search on 40,000 samples would spend
    minutes on the baseline alone)."""
    return int(min(MAX_EVAL_SAMPLES, max(500, time_budget_s * 8)))


def output_bytes_per_sample(source: Any, feeds: dict[str, np.ndarray]) -> int | None:
    """The first output's size for one sample, from one run of the FP32 model (None for a
    torch program, or when that run fails: the search then says why)."""
    backend = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "openvino"}.get(
        source.format)
    if backend is None:
        return None
    from app.optimize.search import measure_job

    one = {k: v[:1] for k, v in feeds.items()}
    try:
        run = measure_job(Path(source.path), source.format, backend, None, 1, one)
    except Exception:  # noqa: BLE001 - the baseline names the problem
        return None
    try:
        out = np.asarray(run.backend.infer(run.feeds1)[0])
    except Exception:  # noqa: BLE001
        return None
    finally:
        run.close()
    rows = len(out) if out.ndim else 1
    return int(out.nbytes // max(rows, 1))


def limit_by_output_size(source: Any, feeds: dict[str, np.ndarray], labels: np.ndarray | None,
                         text: str, seed: int = 0, budget: int = MAX_OUTPUT_BYTES
                         ) -> tuple[dict[str, np.ndarray], np.ndarray | None, str | None]:
    """Fewer samples when the model's outputs are large, so the search's memory stays bounded
    (one extra load and run of the model; only when there are many samples)."""
    n = len(next(iter(feeds.values())))
    if n <= 64:
        return feeds, labels, None
    per = output_bytes_per_sample(source, feeds)
    if not per or n * per <= budget:
        return feeds, labels, None
    cap = max(32, int(budget // per))
    if cap >= n:
        return feeds, labels, None
    feeds, labels, _ = limit_samples(feeds, labels, text, cap, seed)
    return feeds, labels, (f"the model's first output holds {_gib(per)} per sample, and the "
                           f"search keeps the original's and a variant's at once: it evaluates "
                           f"{cap:,} of the {n:,} samples of the {text}, drawn at random (seeded)")


def check_labels_fit(labels: np.ndarray | None, outputs: np.ndarray, source: str) -> None:
    """Labels the model's first output can be scored against: one score per class, and every
    label one of those classes (else accuracy is silently 0 % or silently not checked)."""
    if labels is None:
        return
    if outputs.ndim != 2:
        raise DataError(f"the {source} has labels, but the model's first output has shape "
                        f"{['N', *outputs.shape[1:]]}, not one score per class [N, classes], "
                        "so accuracy cannot be scored: remove 'labels' from the file to judge "
                        "variants by fidelity to the original's outputs (cosine) instead")
    classes = outputs.shape[1]
    if classes == 1:
        raise DataError(f"the {source} has labels, but the model's first output holds one "
                        "score per sample (a binary logit or probability?), so a class cannot "
                        "be read from it as the highest score: remove 'labels' from the file "
                        "to judge variants by fidelity to the original's outputs (cosine)")
    top = int(labels.max()) if labels.size else 0
    if top >= classes:
        count = int(np.sum(labels >= classes))
        raise DataError(f"the {source}: {count} label(s) reach class {top}, but the model "
                        f"scores {classes} classes (0–{classes - 1}): labels must be the "
                        "index of the model's output for that class")


def load_data(source: Any, spec: Any, samples: int = 512
              ) -> tuple[dict[str, np.ndarray], np.ndarray | None, Any, str, list[str],
                         dict[str, list[int]]]:
    """verification_inputs with the checks above: the files first (cheap, before anything
    large is read), the arrays after. Returns feeds, labels, input specs, source text, notes,
    and the input sizes the data set for free dims ({} when none: builds then resolve the
    same sizes themselves; else they must be given these, or calibration is checked against
    default sizes the data does not have)."""
    from profilers.verify import verification_inputs

    check_data_file(spec.eval, "evaluation data", labelled=True)
    check_data_file(spec.calib, "calibration data", labelled=False)
    given = spec.eval or (spec.calib if spec.calib not in ("random",) else None)
    workload = _workload_from_data(source, given) if given else None
    try:
        feeds, labels, specs, text, wl = verification_inputs(
            source, eval=spec.eval, calib=spec.calib if not spec.eval else None,
            samples=samples, workload=workload)
    except DataError:
        raise
    except ModelDeckError as e:
        if spec.eval or spec.calib or "size" not in str(e):
            raise
        # the workload's advice ("set a smaller size") names an option optimize does not have
        raise DataError(f"{e}. Optimize takes free input sizes from its data: give inputs at "
                        "the sizes you run the model (an .npz named after its inputs) as "
                        "calibration or evaluation data; a size the model itself declares "
                        "cannot be changed here") from None
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        which = "evaluation" if spec.eval else "calibration"
        raise DataError(f"the {which} data could not be read ({_first_line(e)}): write it "
                        "again with numpy.savez") from None
    except MemoryError:
        raise DataError("the data does not fit in memory: give fewer samples") from None
    for name in _integer_inputs(specs):
        for data_spec in (spec.eval, spec.calib):
            _check_whole_numbers(data_spec, name, len(specs) == 1)
    notes = []
    if not feeds or not all(len(a) for a in feeds.values() if a.ndim):
        raise DataError(f"the {text} holds no samples")
    if not spec.eval and not spec.calib:
        _need_a_sample_axis(source, wl, feeds)
    check_arrays(feeds, text)
    if spec.eval:
        feeds, labels, note = limit_samples(feeds, labels, text, eval_cap(spec.time_budget_s),
                                            seed=spec.seed)
        if note:
            notes.append(note)
    feeds, labels, note = limit_by_output_size(source, feeds, labels, text, spec.seed)
    if note:
        notes.append(note)
    if spec.calib and spec.eval and spec.calib not in ("random",):
        from profilers.verify import load_calibration

        cal = load_calibration(spec.calib, specs, limit=300)  # what the INT8 builds read
        check_arrays(dict(cal.arrays), f"calibration data {spec.calib}")
    shapes = {} if workload is None else {i.name: [int(d) for d in i.shape]
                                          for i in workload.inputs}
    return feeds, labels, specs, text, notes, shapes


def _integer_inputs(specs: Any) -> list[str]:
    out = []
    for sp in specs or []:
        try:
            if np.issubdtype(np.dtype(getattr(sp, "dtype", None) or "float32"), np.integer):
                out.append(sp.name)
        except TypeError:
            pass
    return out


def _check_whole_numbers(data_spec: str | None, name: str, single: bool) -> None:
    """Float data for an integer input (token ids, indices) is cast by truncation: 0.5
    becomes 0 without a word. Refuse fractions and non-finite values there."""
    if not data_spec or data_spec in ("sample", "random"):
        return
    path = Path(data_spec).expanduser()
    if not path.is_file():
        return
    from converters.workload import npz_array

    with np.load(path, allow_pickle=False) as npz:
        a = npz_array(npz, name, single_input=single)
        if a is None or a.dtype.kind != "f":
            return
        flat = a.reshape(-1)
        bad = ~np.isfinite(flat) | (flat != np.round(flat))
    if bad.any():
        i = int(np.argmax(bad))
        row = i // max(1, flat.size // max(1, len(a)))
        raise DataError(f"{path.name}: the model takes whole numbers for {name!r} (ids or "
                        f"indices), but the file holds {flat[i].item()!r} (sample {row}): "
                        "store the integer values (e.g. astype(int64)) of the original ids")


def baseline_failure(error: BaseException, source: str) -> DataError:
    """The reference model failing on the data means the data does not fit the model: say so,
    with the runtime's words, and where to look."""
    text = _first_line(error)
    hints = []
    if "out of data bounds" in text or "indices" in text.lower():
        hints.append("ids or indices beyond the table they index (token ids must be below "
                     "the vocabulary size)")
    if "broadcast" in text or "dimension" in text.lower() or "shape" in text.lower():
        hints.append("sizes the model cannot take (a sequence longer than its position "
                     "table, an image size its layers do not divide)")
    what = "; ".join(hints) or "values or sizes the model cannot take"
    return DataError(f"the original model itself fails on the {source} ({text}): the data "
                     f"does not fit this model. Look for {what}")


def _need_a_sample_axis(source: Any, workload: Any, feeds: dict[str, np.ndarray]) -> None:
    """Generated inputs hold one sample when the inputs share no sample axis (silero VAD: a
    scalar rate, states with the batch on axis 1). The search needs several to judge a
    variant, and an .npz cannot carry a scalar per sample: say so instead of 'give more'."""
    if min((len(a) for a in feeds.values() if np.ndim(a)), default=0) >= 2:
        return
    odd = [i for i in getattr(workload, "inputs", []) if i.batch_axis != 0]
    if not odd:
        return
    what = "; ".join(f"{i.name} {list(i.shape)}: " + ("a scalar" if not len(i.shape) else
                     "no batch axis" if i.batch_axis is None else
                     f"its batch on axis {i.batch_axis}") for i in odd)
    raise DataError(f"{Path(str(source.path)).name}: the search judges each variant on several "
                    f"samples stacked on the first axis, and this model's inputs have no such "
                    f"common axis ({what}), so no samples can be drawn for it. Optimize cannot "
                    "search this model yet; convert it with the passes you want and compare "
                    "the variants instead")


def _workload_from_data(source: Any, data_spec: str) -> Any:
    """The model's workload with the sizes its free dims take in the data (an OCR recogniser
    [N, 3, 48, ?] fed 48x320 text lines is checked against width 320, not a default 224).
    None (the usual resolution) when the data is not an .npz or does not settle the sizes."""
    path = Path(data_spec).expanduser()
    if data_spec == "sample" or not path.is_file():
        return None
    from converters.formats import open_model
    from converters.workload import declared_inputs, make_dry_check, npz_array, resolve_workload

    try:
        graph = open_model(source.path)
        decls = declared_inputs(graph)
        if all(d.shape is not None and all(isinstance(x, int) for x in d.shape[1:])
               for d in decls):
            return None  # nothing free after the batch: the usual resolution is the data's
        with np.load(path, allow_pickle=False) as npz:
            first = {}
            for d in decls:
                a = npz_array(npz, d.name, single_input=len(decls) == 1)
                if a is not None and a.ndim >= 1 and len(a):
                    first[d.name] = np.asarray(a[:1])
        if len(first) != len(decls):
            missing = [d.name for d in decls if d.name not in first]
            with np.load(path, allow_pickle=False) as npz:
                has = list(npz.files)
            raise DataError(f"{path.name} has no array for {', '.join(map(repr, missing))} "
                            f"(it has {', '.join(has) or 'none'}): name one array after each "
                            f"model input ({', '.join(d.name for d in decls)})")
        return resolve_workload(graph, None, None, first,
                                dry_check=make_dry_check(str(source.path), source.format))
    except DataError:
        raise
    except (ModelDeckError, ValueError, OSError, zipfile.BadZipFile, EOFError):
        return None  # the loader then says what does not fit


def check_cache(spec: Any) -> None:
    """A cache folder the search can write (builds and baseline outputs go there)."""
    if not spec.use_cache:
        return
    from app.optimize.cache import CACHE_ENV, default_cache_dir

    root = Path(spec.cache_dir).expanduser() if spec.cache_dir else default_cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".modeldeck-write-check-"):
            pass
    except OSError as e:
        where = "the cache folder you chose" if spec.cache_dir else (
            f"the default cache folder (set {CACHE_ENV} to move it)")
        raise ModelDeckError(f"cannot write in {where}, {root}: {e.strerror or e}; choose a "
                             "folder you can write to, or search without the cache") from None


def preflight(spec: Any) -> None:
    """What the worker checks before the search reads anything large: spec, model, data files,
    output folder (created last, so a refused search leaves no empty folder)."""
    check_spec(spec)
    path = check_model(spec.model)
    if spec.backends and "openvino" not in spec.backends:
        from converters.formats import detect_format

        fmt = detect_format(path).name
        if fmt not in ("onnx", "torch"):  # an IR or TFLite: ORT cannot run it
            raise ModelDeckError(f"{path.name} is a {fmt} model, which ONNX Runtime cannot run "
                                 "and nothing here converts to ONNX: search it on OpenVINO, "
                                 "or give the ONNX model it came from")
    check_data_file(spec.eval, "evaluation data", labelled=True)
    check_data_file(spec.calib, "calibration data", labelled=False)
    check_cache(spec)
    check_output(spec.model, spec.output_dir)

