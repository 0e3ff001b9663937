"""The onnx package's node test corpus, run through ModelDeck's engine.

Wheels of onnx no longer ship backend/test/data/node/, but the cases are in the package:
`onnx.backend.test.case.node.collect_testcases()` builds every model with its inputs and
expected outputs (~1,900 models, seconds). They are written once per onnx version into the
git-ignored cache .cache/onnx-node-corpus/onnx-<version>/<case>/ as
  model.onnx, inputs.npz (by input name), expected.npz, case.json (dtypes, kinds).
Types an .npz cannot hold are stored as a person would save them: bfloat16 / float8 / float4
as float32 values, int4 / uint4 / int2 / uint2 as int8 / uint8, text as numpy strings; the
real dtype is in case.json.

Every case then goes through what the product does: `open_model`, and per backend
`load` -> `input_specs` -> `profilers.inputs.from_npz` -> `infer`, and the outputs are compared
with the expected ones. Native runtimes can crash (SIGSEGV, abort): the cases run in worker
subprocesses (`python tests/profilers/onnx_corpus.py worker ...`), a worker that dies or stalls
names the task it was in, that task is re-run alone to confirm it, and the rest go on in a
fresh worker. Run it by hand: `python tests/profilers/onnx_corpus.py run`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "onnx-node-corpus"
BACKENDS = ("onnxruntime", "openvino")
STAGES = ("open", *BACKENDS)
STALL_S = 60.0  # a worker with no result for this long is stuck in a native call: killed
CHUNK_CASES = 150
FORMAT = 2  # of the cached corpus files: bump when generate() writes something else

log = logging.getLogger(__name__)

# Outcomes. The first three are fine; the rest are failures of ModelDeck.
MATCH, REFUSED, CRASH = "match", "refused", "crash"  # crash: the product's worker isolates it
RUNTIME_DIFFERS = "runtime-differs"  # values differ, and the runtime alone says the same
FAILURES = ("error", "unclear", "wrong", "timeout")

# --- generating the corpus ---------------------------------------------------------------------

def corpus_dir() -> Path:
    import onnx

    return CACHE / f"onnx-{onnx.__version__}-v{FORMAT}"


def ensure_corpus() -> Path:
    """The corpus for the installed onnx, generated on first use (written aside, then moved
    into place, so an interrupted run never leaves half a corpus)."""
    dest = corpus_dir()
    if (dest / "complete").exists():
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=CACHE))
    try:
        count = generate(tmp)
        (tmp / "complete").write_text(f"{count}\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _storable(arr: np.ndarray) -> np.ndarray:
    """What np.savez can hold without pickles: types numpy lacks as float32 / int8 / uint8
    values, object arrays of text as numpy strings."""
    if arr.dtype == object:
        return np.asarray(arr.tolist() if arr.ndim else arr.item(), dtype=np.str_).reshape(
            arr.shape)
    from profilers.backends import EXTENDED_DTYPES

    name = arr.dtype.name
    if name in EXTENDED_DTYPES:  # ml_dtypes: np.savez would write records np.load cannot read
        if "float" in name:
            return arr.astype(np.float32)
        return arr.astype(np.int8 if name.startswith("int") else np.uint8)
    return arr


def _as_array(value: Any) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    return np.asarray(value)


def _dtype_name(arr: np.ndarray) -> str:
    return "string" if arr.dtype == object else arr.dtype.name


def _store(values: Sequence[Any], infos: Sequence[Any], arrays: dict[str, np.ndarray],
           outputs: bool) -> list[dict[str, Any]]:
    """Arrays of one side into `arrays`, their descriptions for case.json. A sequence output
    is kept element by element ("name/0", ...); a sequence input as the one stacked array a
    person would try to feed (ModelDeck feeds tensors only: it must refuse it clearly)."""
    meta = []
    for vi, value in zip(infos, values):
        kind = vi.type.WhichOneof("value")
        entry: dict[str, Any] = {"name": vi.name, "kind": kind}
        if kind == "optional_type":
            entry["none"] = value is None
        if isinstance(value, (list, tuple)):  # a sequence, or an optional holding one
            items = [_as_array(v) for v in value]
            entry["length"] = len(items)
            entry["dtypes"] = [_dtype_name(a) for a in items]
            if outputs:
                for i, a in enumerate(items):
                    arrays[f"{vi.name}/{i}"] = _storable(a)
            elif items and len({a.shape for a in items}) == 1:
                arrays[vi.name] = _storable(np.stack(items))
        elif value is not None:
            arr = _as_array(value)
            entry["dtype"] = _dtype_name(arr)
            arrays[vi.name] = _storable(arr)
        meta.append(entry)
    return meta


def generate(dest: Path) -> int:
    """Write every node test case under `dest`; returns how many."""
    import warnings

    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():  # the cases compute their expectations with overflows
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    count = 0
    for case in cases:
        if case.model is None or not case.data_sets:
            continue
        folder = dest / case.name
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        ins: dict[str, np.ndarray] = {}
        outs: dict[str, np.ndarray] = {}
        meta = {"inputs": _store(inputs, case.model.graph.input, ins, outputs=False),
                "outputs": _store(outputs, case.model.graph.output, outs, outputs=True),
                "rtol": case.rtol, "atol": case.atol}
        np.savez(folder / "inputs.npz", **ins)
        np.savez(folder / "expected.npz", **outs)
        (folder / "case.json").write_text(json.dumps(meta))
        count += 1
    return count


# --- one task, in a worker ---------------------------------------------------------------------

def unclear(message: str) -> str | None:
    """Why a refusal message is not one clear line a person can act on, or None when it is."""
    if not message.strip():
        return "empty message"
    if "\n" in message.strip():
        return "several lines"
    if "Traceback" in message:
        return "a traceback"
    if re.search(r"Check '|src/[\w/.-]+\.(?:cpp|hpp|h)\b|\.cpp:\d+", message):
        return "a location in the runtime's sources"
    if re.search(r"(?:Exception from|FrontEnd API failed with|OpConversionFailure)\s*:?\s*$",
                 message) or message.rstrip().endswith(":"):
        return "boilerplate without the reason"
    if len(message) > 400:
        return f"{len(message)} characters long"
    return None


def _open(case: Path) -> tuple[str, str]:
    from converters.errors import ModelLoadError
    from converters.formats import open_model

    try:
        open_model(case / "model.onnx")
    except ModelLoadError as e:
        why = unclear(str(e))
        return ("unclear", f"{why}: {e}") if why else (REFUSED, str(e))
    except Exception as e:  # noqa: BLE001 - exactly what this corpus looks for
        return "error", f"{type(e).__name__}: {e}"
    return MATCH, ""


def _run_backend(case: Path, backend: str, raw_check: bool = True) -> tuple[str, str]:
    from converters.errors import ModelDeckError
    from profilers.backends import get_backend
    from profilers.inputs import from_npz

    meta = json.loads((case / "case.json").read_text())
    with np.load(case / "inputs.npz", allow_pickle=False) as data:
        shapes = {k: list(data[k].shape) for k in data.files if "/" not in k}
    b = get_backend(backend)()
    stage = "load"
    try:
        b.load(case / "model.onnx", "onnx", "CPU", options(backend))
        stage = "inputs"
        specs = b.input_specs()
        feeds = from_npz(case / "inputs.npz", specs,
                         {s.name: shapes[s.name] for s in specs if s.name in shapes})
        stage = "infer"
        outs = b.infer(feeds)
    except ModelDeckError as e:
        why = unclear(str(e))
        return ("unclear", f"{stage}: {why}: {e}") if why else (REFUSED, f"{stage}: {e}")
    except Exception as e:  # noqa: BLE001
        return "error", f"{stage}: {type(e).__name__}: {e}"
    finally:
        b.close()
    problem = compare(outs, meta, case)
    if problem is None:
        return MATCH, ""
    kind, detail = problem
    if kind == "values" and raw_check:
        try:
            raw = _raw_runtime(case, backend, meta)
        except Exception as e:  # noqa: BLE001 - then the difference stays ours to explain
            return "wrong", f"{detail} (the runtime alone could not be asked: {e})"
        if compare(raw, meta, case) is not None:
            return RUNTIME_DIFFERS, detail
        return "wrong", f"{detail}, but the runtime alone gives the expected outputs"
    return "wrong", detail


# --- the runtime alone, without ModelDeck's input and output code --------------------------------
# Used only when ModelDeck's outputs differ from the reference: when the runtime, asked
# directly, differs as well, the difference is the runtime's (a kernel that rounds or pads
# otherwise, a random op, an uninitialised buffer). Arrays the runtimes' Python APIs cannot
# take or give (bfloat16, float8, int4) are converted with onnx's own TensorProto code.

def _raw_inputs(case: Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    out = {}
    with np.load(case / "inputs.npz", allow_pickle=False) as data:
        for m in meta["inputs"]:
            if m["name"] not in data.files or "dtype" not in m:
                raise ValueError(f"no tensor stored for input {m['name']!r}")
            arr = data[m["name"]]
            if m["dtype"] == "string":
                out[m["name"]] = arr.astype(object)
            else:
                out[m["name"]] = arr.astype(_ml_dtype(m["dtype"]))
    return out


def _ml_dtype(name: str) -> np.dtype:
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, name)) if hasattr(ml_dtypes, name) else np.dtype(name)


def _bytes_of(arr: np.ndarray) -> tuple[int, bytes]:
    """ONNX element type and raw bytes (packed for 4- and 2-bit types), by onnx's own code."""
    from onnx import numpy_helper

    t = numpy_helper.from_array(np.ascontiguousarray(arr))
    return t.data_type, t.raw_data


def _from_bytes(raw: bytes, elem_type: int, shape: Sequence[int]) -> np.ndarray:
    from onnx import helper, numpy_helper

    t = helper.make_tensor("x", elem_type, list(shape), raw, raw=True)
    return numpy_helper.to_array(t)


_PLAIN = frozenset("biufU")


def options(backend: str) -> Any:
    """One thread per runtime; OpenVINO told to compute in f32, as the reference does: on CPUs
    with bf16 units it picks bf16 by itself, and then differs from the reference everywhere."""
    from profilers.backends import BackendOptions

    return BackendOptions(threads=1, precision="f32" if backend == "openvino" else None)


def _raw_runtime(case: Path, backend: str, meta: dict[str, Any]) -> list[Any]:
    import ctypes

    feeds = _raw_inputs(case, meta)
    model = str(case / "model.onnx")
    if backend == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        if all(a.dtype.kind in _PLAIN or a.dtype == object for a in feeds.values()) and not any(
                re.search(r"bfloat|float8|float4|int4|int2", o.type) for o in sess.get_outputs()):
            return sess.run(None, feeds)  # sequences and optionals come back as lists / None
        values = {}
        for name, arr in feeds.items():
            if arr.dtype.kind in _PLAIN or arr.dtype == object:
                values[name] = ort.OrtValue.ortvalue_from_numpy(arr)
                continue
            elem, raw = _bytes_of(arr)
            v = ort.OrtValue.ortvalue_from_shape_and_type(list(arr.shape), elem)
            if raw:
                ctypes.memmove(v.data_ptr(), raw, len(raw))
            values[name] = v
        outs = []
        for v in sess.run_with_ort_values(None, values):
            elem = v.element_type() if v.is_tensor() else None
            try:
                arr = v.numpy()
            except Exception:  # noqa: BLE001 - bfloat16 and friends: read the bytes
                arr = None
            if elem in (16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26) or arr is None:
                size = v.tensor_size_in_bytes()
                arr = _from_bytes(ctypes.string_at(v.data_ptr(), size) if size else b"",
                                  elem, v.shape())
            outs.append(arr)
        return outs
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                      "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    tensors = {}
    for port in compiled.inputs:
        name = next(n for n in port.get_names() if n in feeds)
        arr = feeds[name]
        if arr.dtype.kind in _PLAIN or arr.dtype == object:
            tensors[name] = ov.Tensor(arr.astype(np.str_) if arr.dtype == object else arr)
            continue
        t = ov.Tensor(port.get_element_type(), ov.Shape(list(arr.shape)))
        raw = _bytes_of(arr)[1]
        if raw:
            t.data.view(np.uint8).reshape(-1)[:] = np.frombuffer(raw, np.uint8)
        tensors[name] = t
    request.infer(tensors)
    outs = []
    for i, port in enumerate(compiled.outputs):
        t = request.get_output_tensor(i)
        et = t.get_element_type()
        if et.get_type_name() == "string":
            outs.append(np.array(t.str_data).reshape(tuple(t.get_shape())))
            continue
        data = np.array(t.data, copy=True)
        elem = _OV_ELEMENT_TYPES.get(et.get_type_name())
        outs.append(data if elem is None else
                    _from_bytes(data.view(np.uint8).tobytes(), elem, tuple(t.get_shape())))
    return outs


# OpenVINO element types whose tensors hold raw storage (float16 for bf16, bytes for the rest)
# -> ONNX element types, to decode them with onnx's code.
_OV_ELEMENT_TYPES = {"bf16": 16, "f8e4m3": 17, "f8e5m2": 19, "f4e2m1": 23, "f8e8m0": 24,
                     "u4": 21, "i4": 22, "u2": 25}


def _float_tolerance(dtype_name: str, rtol: float, atol: float) -> tuple[float, float]:
    """Looser for types with few mantissa bits: the runtimes round differently there."""
    loose = {"float16": 1e-3, "bfloat16": 8e-3}
    if dtype_name in loose:
        return max(rtol, loose[dtype_name]), max(atol, loose[dtype_name])
    if "float8" in dtype_name or "float4" in dtype_name:
        return max(rtol, 0.13), max(atol, 0.13)  # one unit in the last place
    return max(rtol, 1e-3), max(atol, 1e-5)


def _same(got: Any, want: np.ndarray, dtype_name: str, rtol: float, atol: float
          ) -> str | None:
    """None when `got` is `want`; else what differs (shape, dtype, values)."""
    if not isinstance(got, np.ndarray):
        return f"values: a {type(got).__name__}, not an array"
    if got.shape != want.shape:
        return f"shape: {list(got.shape)}, expected {list(want.shape)}"
    if dtype_name == "string":
        if got.dtype.kind not in "UO":
            return f"dtype: {got.dtype.name}, expected strings"
        return None if np.array_equal(got.astype(np.str_), want) else "values: strings differ"
    if got.dtype.name != dtype_name:
        return f"dtype: {got.dtype.name}, expected {dtype_name}"
    if want.size == 0:
        return None
    g, w = got.astype(np.float64), want.astype(np.float64)
    if got.dtype.kind in "biu" or dtype_name in ("int4", "uint4", "int2", "uint2"):
        bad = g != w
    else:
        r, a = _float_tolerance(dtype_name, rtol, atol)
        bad = ~np.isclose(g, w, rtol=r, atol=a, equal_nan=True)
    if not bad.any():
        return None
    diff = np.abs(g - w)[bad & np.isfinite(g) & np.isfinite(w)]
    most = f", max abs diff {diff.max():.3g}" if diff.size else ""
    return f"values: {int(bad.sum())} of {g.size} differ{most}"


def compare(outs: Sequence[Any], meta: dict[str, Any], case: Path) -> tuple[str, str] | None:
    """None when the outputs are the expected ones; else (kind, detail) with kind "shape",
    "dtype", "count" or "values"."""
    metas = meta["outputs"]
    if len(outs) != len(metas):
        return "count", f"{len(outs)} outputs, expected {len(metas)}"
    with np.load(case / "expected.npz", allow_pickle=False) as data:
        expected = {k: data[k] for k in data.files}
    for i, (got, m) in enumerate(zip(outs, metas)):
        name = m["name"]
        if "length" in m:
            wants = [(expected[f"{name}/{j}"], m["dtypes"][j]) for j in range(m["length"])]
            if not isinstance(got, (list, tuple)) or len(got) != len(wants):
                return "count", f"output {name!r}: not a sequence of {len(wants)}"
            pairs = list(zip(got, wants))
        elif m["kind"] == "optional_type" and m.get("none"):
            if got is not None and not (isinstance(got, list) and not got):
                return "values", f"output {name!r}: a value where None was expected"
            continue
        else:
            want = expected[name]
            pairs = [(got, (want, m.get("dtype", want.dtype.name)))]
        for g, (w, dtype_name) in pairs:
            why = _same(g, w, dtype_name, meta["rtol"], meta["atol"])
            if why is not None:
                return why.split(":", 1)[0], f"output {name!r}: {why}"
    return None


def run_task(corpus: Path, case: str, stage: str) -> tuple[str, str]:
    if stage == "open":
        return _open(corpus / case)
    return _run_backend(corpus / case, stage)


def worker(corpus: Path, tasks_file: Path, results_file: Path) -> None:
    """Run the tasks in order, writing a "begin" line before each and its result after, both
    flushed: if a native runtime kills this process, the parent knows which task did it."""
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    tasks = json.loads(tasks_file.read_text())
    with open(results_file, "a", buffering=1, encoding="utf-8") as out:
        for case, stage in tasks:
            out.write(json.dumps({"begin": [case, stage]}) + "\n")
            out.flush()
            t0 = time.perf_counter()
            try:
                status, detail = run_task(corpus, case, stage)
            except Exception as e:  # noqa: BLE001 - a fault of this harness: reported, not fatal
                status, detail = "error", f"harness: {type(e).__name__}: {e}"
            out.write(json.dumps({"case": case, "stage": stage, "status": status,
                                  "detail": detail[:2000],
                                  "s": round(time.perf_counter() - t0, 3)}) + "\n")
            out.flush()


# --- running the corpus: the parent ------------------------------------------------------------

@dataclass
class Result:
    case: str
    stage: str
    status: str
    detail: str = ""


@dataclass
class Summary:
    results: list[Result] = field(default_factory=list)
    wall_s: float = 0.0

    def of(self, stage: str) -> list[Result]:
        return [r for r in self.results if r.stage == stage]

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status in FAILURES]

    def counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"models": len(self.of("open")), "wall_s": round(self.wall_s, 1)}
        opened = self.of("open")
        out["opened"] = sum(r.status == MATCH for r in opened)
        out["open_refused"] = sum(r.status == REFUSED for r in opened)
        for b in BACKENDS:
            rs = self.of(b)
            c = Counter(r.status for r in rs)
            out[b] = {"matched": c[MATCH], "refused": c[REFUSED],
                      "runtime_differs": c[RUNTIME_DIFFERS], "crashed": c[CRASH],
                      "failures": sum(c[f] for f in FAILURES),
                      "top_refusals": top_reasons(r.detail for r in rs if r.status == REFUSED),
                      "crashers": sorted(r.case for r in rs if r.status == CRASH)}
        out["failures"] = len(self.failures())
        return out

    def report(self) -> str:
        c = self.counts()
        lines = [f"onnx node corpus: {c['models']} models, {c['opened']} opened "
                 f"({c['open_refused']} refused clearly), {c['wall_s']} s"]
        for b in BACKENDS:
            s = c[b]
            lines.append(f"  {b}: {s['matched']} matched, {s['refused']} refused clearly, "
                         f"{s['runtime_differs']} where the runtime itself differs from the "
                         f"reference, {s['crashed']} crashed the worker, "
                         f"{s['failures']} failures")
            for reason, n in s["top_refusals"][:8]:
                lines.append(f"      {n:4d} x {reason}")
            if s["crashers"]:
                lines.append(f"      crashers: {', '.join(s['crashers'])}")
        for r in self.failures()[:40]:
            lines.append(f"  FAIL {r.stage} {r.case}: {r.status}: {r.detail[:300]}")
        return "\n".join(lines)


def top_reasons(details: Iterable[str], n: int = 12) -> list[tuple[str, int]]:
    """Refusal messages grouped by their shape: names, numbers and quoted parts blanked."""
    def shape(d: str) -> str:
        d = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", d)
        d = re.sub(r"\b[\w.-]+\.onnx\b", "MODEL", d)
        d = re.sub(r"\d+", "N", d)
        return d[:140]

    return Counter(shape(d) for d in details).most_common(n)


def _spawn(corpus: Path, tasks: list[tuple[str, str]], workdir: Path, tag: str
           ) -> tuple[list[dict[str, Any]], int | None, str]:
    """One worker on `tasks`: (result lines, exit code or None when killed stalled, stderr)."""
    tasks_file = workdir / f"{tag}.tasks.json"
    results_file = workdir / f"{tag}.results.jsonl"
    err_file = workdir / f"{tag}.stderr"
    tasks_file.write_text(json.dumps(tasks))
    results_file.write_text("")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "PYTHONFAULTHANDLER": "1"}
    with open(err_file, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "worker",
                                 str(corpus), str(tasks_file), str(results_file)],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=_no_core_dumps if os.name == "posix" else None)
        size, last_change = 0, time.monotonic()
        code: int | None = None
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            now_size = results_file.stat().st_size
            if now_size != size:
                size, last_change = now_size, time.monotonic()
            elif time.monotonic() - last_change > STALL_S:
                proc.kill()
                proc.wait()
                code = None
                break
    lines = [json.loads(x) for x in results_file.read_text().splitlines() if x.strip()]
    stderr = err_file.read_text(errors="replace")[-2000:]
    return lines, code, stderr


def _no_core_dumps() -> None:
    """A runtime that aborts should not spend seconds writing a core file."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_chunk(corpus: Path, tasks: list[tuple[str, str]], workdir: Path, tag: str
               ) -> list[Result]:
    """All tasks of a chunk; a crashed or stalled worker is replaced, its task confirmed alone."""
    results: list[Result] = []
    todo = list(tasks)
    round_ = 0
    while todo:
        round_ += 1
        lines, code, stderr = _spawn(corpus, todo, workdir, f"{tag}.{round_}")
        done = {(x["case"], x["stage"]) for x in lines if "status" in x}
        results += [Result(x["case"], x["stage"], x["status"], x["detail"])
                    for x in lines if "status" in x]
        begun = [tuple(x["begin"]) for x in lines if "begin" in x]
        inflight = [t for t in begun if t not in done]
        if not inflight:
            if code not in (0, None):  # died between tasks: nothing to blame, start afresh
                log.warning("worker %s exited %s between tasks", tag, code)
            todo = [t for t in todo if t not in done]
            if code == 0 or not todo:
                break
            continue
        bad = inflight[0]
        alone, alone_code, alone_err = _spawn(corpus, [bad], workdir, f"{tag}.{round_}.alone")
        finished = [x for x in alone if "status" in x]
        if finished:  # it passes alone: the crash came from what ran before it in the worker
            x = finished[0]
            results.append(Result(x["case"], x["stage"], x["status"], x["detail"]
                                  + f" (crashed only after other models, exit {code})"))
        elif alone_code is None:
            results.append(Result(bad[0], bad[1], "timeout",
                                  f"no result after {STALL_S:.0f} s: {alone_err[-300:]}"))
        else:
            results.append(Result(bad[0], bad[1], CRASH,
                                  f"worker exit {alone_code}: {_last_line(alone_err)}"))
        todo = [t for t in todo if t not in done and t != bad]
    return results


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    useful = [x for x in lines if not x.startswith(("  File", "Fatal Python", "Current thread",
                                                     "Thread 0x", "Extension modules"))]
    return (useful or lines or ["(no output)"])[0][:300]


def case_names(corpus: Path) -> list[str]:
    return sorted(p.name for p in corpus.iterdir() if (p / "case.json").exists())


def run_corpus(corpus: Path | None = None, cases: Sequence[str] | None = None,
               workers: int = 2, chunk: int = CHUNK_CASES) -> Summary:
    """Every case through open + both backends, in `workers` parallel worker processes."""
    corpus = corpus or ensure_corpus()
    names = list(cases) if cases is not None else case_names(corpus)
    chunks = [[(c, s) for c in names[i:i + chunk] for s in STAGES]
              for i in range(0, len(names), chunk)]
    summary = Summary()
    lock = threading.Lock()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modeldeck-corpus-") as tmp:
        def one(i: int) -> None:
            rs = _run_chunk(corpus, chunks[i], Path(tmp), f"c{i}")
            with lock:
                summary.results.extend(rs)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(len(chunks))))
    summary.wall_s = time.perf_counter() - t0
    summary.results.sort(key=lambda r: (r.case, STAGES.index(r.stage)))
    return summary


def main(argv: list[str]) -> int:
    if argv and argv[0] == "worker":
        worker(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        return 0
    if argv and argv[0] == "run":
        cases = argv[1:] or None
        summary = run_corpus(cases=cases)
        print(summary.report())
        out = CACHE / "last-run.json"
        out.write_text(json.dumps({"counts": summary.counts(),
                                   "results": [r.__dict__ for r in summary.results]}, indent=1))
        print(f"details: {out}")
        return 1 if summary.failures() else 0
    print("usage: onnx_corpus.py run [CASE...] | worker CORPUS TASKS RESULTS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    sys.exit(main(sys.argv[1:]))
