"""PyTorch: TorchScript archives and torch.export programs (.pt2), eager on CPU or CUDA.

Only the two self-describing archive kinds are run. A plain `torch.save` pickle needs its
Python classes and can run arbitrary code when loaded, so it is refused here. Running a
TorchScript or torch.export program is running code the file brought: `load` refuses unless
the job was given consent (converters.formats.consent), and size-checks the archive first.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
import zipfile
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from converters.errors import ConsentRequired
from profilers.backends import (
    Backend,
    BackendError,
    BackendOptions,
    Device,
    InputSpec,
    LayerTime,
    LoadInfo,
    register_backend,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SPEC_FILE = "modeldeck.json"  # TorchScript extra file: {"inputs": [{"name", "shape", "dtype"}]}
_SCOPE = "modeldeck.forward"  # record_function label around the model call (no "::": not an op)


def _torch() -> Any:
    import torch

    return torch


def archive_kind(path: Path) -> str:
    """'torchscript', 'export', or 'pickle' (plain torch.save / pickle), from the zip listing."""
    if not zipfile.is_zipfile(path):
        return "pickle"  # legacy torch.save or a bare pickle
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any(n.endswith(("/archive_format", "serialized_exported_program.json")) for n in names):
        return "export"
    if any("/code/" in n for n in names) and any(n.endswith("/constants.pkl") for n in names):
        return "torchscript"
    return "pickle"


@register_backend
class TorchBackend(Backend):
    """Eager PyTorch. Layer times are per op type (aten::conv2d, ...), not per graph node."""

    name = "torch"
    formats = frozenset({"torch"})
    description = "PyTorch eager (TorchScript, torch.export .pt2) on CPU or CUDA"

    def __init__(self) -> None:
        self._module: Any = None
        self._device: torch.device | None = None
        self._specs: list[InputSpec] = []
        self._profiler: Any = None
        self._layers: list[LayerTime] | None = None
        self._events: tuple[Any, Any] | None = None  # CUDA start/end events of the last call

    # --- discovery ---------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            return True, _torch().__version__
        except Exception as e:  # ImportError, or a broken install failing on import
            return False, f"torch is not importable: {e}"

    @classmethod
    def devices(cls) -> list[Device]:
        ok, _ = cls.available()
        if not ok:
            return []
        out = [Device(cls.name, "CPU", "PyTorch CPU")]
        try:
            out.append(_cuda_device(cls.name))
        except Exception as e:  # a broken driver can raise from the CUDA queries
            out.append(Device(cls.name, "CUDA", "PyTorch CUDA", available=False,
                              reason=f"CUDA check failed: {e}"))
        return out

    # --- load --------------------------------------------------------------------------
    def _resolve_device(self, device: str) -> str:
        usable = [d.name for d in self.devices() if d.available]
        for name in usable:
            if name.lower() == device.lower():
                return name
        known = {d.name.lower(): d for d in self.devices()}
        why = f" ({known[device.lower()].reason})" if device.lower() in known else ""
        raise BackendError(f"torch cannot use device {device!r}{why}; "
                           f"available: {', '.join(usable) or 'none'}")

    def load(self, model: Path, fmt: str, device: str, options: BackendOptions) -> LoadInfo:
        if fmt not in self.formats:
            raise BackendError(f"the torch backend runs TorchScript and .pt2 models, not {fmt!r}")
        dev_name = self._resolve_device(device)
        torch = _torch()
        self.close()
        model = Path(model)
        if not model.is_file():
            raise BackendError(f"{model}: no such file")
        kind = archive_kind(model)
        if kind == "pickle":
            raise BackendError(
                f"{model.name} is a plain pickle (torch.save), not a TorchScript or torch.export "
                "archive: running it would need its Python code and can execute arbitrary code. "
                "Re-export it with torch.jit.save(torch.jit.trace(...)) or torch.export.save")
        _require_consent(model, kind)
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        if options.inter_threads is not None:
            _set_interop_threads(options.inter_threads)
        dev = torch.device("cuda:0" if dev_name == "CUDA" else "cpu")
        from converters.formats.torch_format import check_archive, quiet_torch

        check_archive(model)  # zip bombs, unpickler-crashing pickles: before torch reads it
        t0 = time.perf_counter_ns()
        try:
            with quiet_torch():
                if kind == "torchscript":
                    module, specs = _load_torchscript(model, dev)
                else:
                    module, specs = _load_exported(model, dev)
        except BackendError:
            raise
        except Exception as e:
            first = _first_line(e)
            raise BackendError(f"torch cannot load {model.name}: {first}") from e
        load_ms = (time.perf_counter_ns() - t0) / 1e6
        self._module, self._device, self._specs = module, dev, specs
        self._layers = None
        if options.profile_layers:
            self._start_profiler(dev)
        details = {"kind": kind, "device": str(dev), "threads": torch.get_num_threads(),
                   "interop_threads": torch.get_num_interop_threads(), "torch": torch.__version__}
        if dev.type == "cuda":
            details["gpu"] = torch.cuda.get_device_name(dev)
            # CUDA events around the call time the GPU's own work, as Nsight reads it
            self._events = (torch.cuda.Event(enable_timing=True),
                            torch.cuda.Event(enable_timing=True))
            self.measures_device_latency = True
            self.device_latency_source = "CUDA events recorded around the call (GPU time)"
        return LoadInfo(load_ms=load_ms, details=details)

    def input_specs(self) -> list[InputSpec]:
        self._require_model()
        return list(self._specs)

    # --- run ---------------------------------------------------------------------------
    def infer(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self._call(self._tensors(inputs))
        return [t.detach().cpu().numpy() for t in _flatten(out)]

    def _tensors(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        torch = _torch()
        return [torch.from_numpy(np.require(a, requirements=("C", "W"))).to(self._device)
                for a in self._ordered(inputs)]

    def _call(self, args: list[Any]) -> Any:
        """The module call; returns when the device is done (CUDA kernels are only queued)."""
        torch = _torch()
        module = self._require_model()
        # The label lets layer_profile() keep the model's ops apart from the input copies.
        scope = torch.profiler.record_function(_SCOPE) if self._profiler else nullcontext()
        events = self._events
        try:
            with torch.inference_mode(), scope:
                if events is not None:
                    events[0].record()
                out = module(*args)
                if events is not None:
                    events[1].record()
            if self._device is not None and self._device.type == "cuda":
                torch.cuda.synchronize(self._device)
        except Exception as e:
            first = _first_line(e)
            raise BackendError(f"torch inference failed: {first}") from e
        return out

    def device_latency_ms(self) -> float | None:
        """The GPU time between the events recorded around the last call (CUDA only)."""
        if self._events is None:
            return None
        return float(self._events[0].elapsed_time(self._events[1]))

    def prepare(self, inputs: dict[str, np.ndarray]) -> None:
        """Tensors on the device once, so the timed call is the module call (plus the sync)."""
        self._prepared_args = self._tensors(inputs)

    def run_prepared(self) -> None:
        self._call(self._prepared_args)

    def _ordered(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Inputs in the module's argument order: by name when they match, else as given."""
        names = [s.name for s in self._specs]
        if set(inputs) == set(names):
            return [inputs[n] for n in names]
        if len(inputs) == len(names) or not names:
            return list(inputs.values())
        raise BackendError(f"the model takes {len(names)} inputs ({', '.join(names)}), "
                           f"got {len(inputs)}: {', '.join(inputs)}")

    def _require_model(self) -> Any:
        if self._module is None:
            raise BackendError("no model loaded: call load() first")
        return self._module

    # --- profile -----------------------------------------------------------------------
    def _start_profiler(self, dev: torch.device) -> None:
        torch = _torch()
        acts = [torch.profiler.ProfilerActivity.CPU]
        if dev.type == "cuda":
            acts.append(torch.profiler.ProfilerActivity.CUDA)
        self._profiler = torch.profiler.profile(activities=acts)
        self._profiler.start()

    def layer_profile(self, node_ids_by_name: dict[str, str]) -> list[LayerTime]:
        """Time per inference of each top-level aten op, summed over its calls, slowest first.

        Eager PyTorch has no graph nodes at run time: rows are op types (every aten::conv2d
        together), not individual layers, so node_id stays None. A top-level op's time
        includes the ops it calls (aten::conv2d includes aten::mkldnn_convolution), and only
        ops run inside the model call count (not the input/output copies). The first
        inference is left out as a warm-up when more were run. On CUDA the time is the GPU
        kernel time of the op and its children.
        """
        if self._layers is not None:
            return self._layers
        if self._profiler is None:
            raise BackendError("per-layer times need the model loaded with profile_layers")
        self._profiler.stop()
        prof, self._profiler = self._profiler, None
        cuda = self._device is not None and self._device.type == "cuda"
        self._layers = _op_times(prof.events(), cuda)
        return self._layers

    def close(self) -> None:
        if self._profiler is not None:
            try:
                self._profiler.stop()
            except Exception as e:
                log.debug("profiler stop on close: %s", e)
            self._profiler = None
        self._module = None
        if self._device is not None and self._device.type == "cuda":
            _torch().cuda.empty_cache()
        self._device = None


_PROGRAM = {"torchscript": "TorchScript program", "export": "torch.export program"}


def _require_consent(model: Path, kind: str) -> None:
    """Loading and running the program runs the file's code: only with the job's consent."""
    from converters.formats import current_trust

    if not current_trust().run_code:
        raise ConsentRequired(
            f"{model.name} is a {_PROGRAM.get(kind, 'PyTorch program')}: running it runs code "
            "stored in the file, with your permissions. ModelDeck does this only with your "
            "consent")


def _first_line(e: BaseException) -> str:
    """One line of a torch error (TorchScript puts the cause last, after its traceback)."""
    from converters.formats.torch_format import _first_line as first_line

    return first_line(e)


def _cuda_device(backend: str) -> Device:
    torch = _torch()
    if torch.cuda.is_available():
        return Device(backend, "CUDA", f"PyTorch CUDA: {torch.cuda.get_device_name(0)}")
    if torch.version.cuda is None:
        reason = "this torch build has no CUDA support (CPU wheel); install a CUDA build of torch"
    else:
        reason = f"no CUDA GPU visible to torch (built for CUDA {torch.version.cuda})"
    return Device(backend, "CUDA", "PyTorch CUDA", available=False, reason=reason)


def _set_interop_threads(n: int) -> None:
    """torch allows this once per process, before any inter-op work; later calls raise."""
    torch = _torch()
    if torch.get_num_interop_threads() == n:
        return
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError as e:
        log.warning("cannot set torch inter-op threads to %d now: %s", n, e)


def _load_torchscript(path: Path, dev: torch.device) -> tuple[Any, list[InputSpec]]:
    torch = _torch()
    extra = {SPEC_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, not gone
        module = torch.jit.load(str(path), map_location=dev, _extra_files=extra)
    module.eval()
    return module, _torchscript_specs(module, extra[SPEC_FILE])


def _torchscript_specs(module: Any, spec_json: bytes | str) -> list[InputSpec]:
    """Shapes from the archive's modeldeck.json; else the argument names with unknown shapes."""
    if spec_json:
        try:
            spec = json.loads(spec_json)
            return [InputSpec(str(i["name"]), str(i.get("dtype", "float32")),
                              tuple(d if isinstance(d, (int, str)) else None
                                    for d in i["shape"]))
                    for i in spec["inputs"]]
        except (ValueError, KeyError, TypeError) as e:
            log.warning("ignoring malformed %s in the TorchScript archive: %s", SPEC_FILE, e)
    try:
        args = module.forward.schema.arguments[1:]  # drop self
    except Exception:  # no scripted forward to read
        return []
    # TorchScript keeps no shapes, not even the rank: shape None tells the caller to ask
    # for the shape (--shape).
    return [InputSpec(a.name, "float32", None) for a in args]


def _load_exported(path: Path, dev: torch.device) -> tuple[Any, list[InputSpec]]:
    torch = _torch()
    program = torch.export.load(str(path))
    specs = _exported_specs(program)
    if any(t.device != dev for t in program.state_dict.values()):
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, dev)
    # An exported program is already in the mode it was exported in; .eval() is unsupported.
    return program.module(), specs


def _exported_specs(program: Any) -> list[InputSpec]:
    """User inputs from the placeholders' fake tensors; symbolic sizes become their names."""
    user = set(program.graph_signature.user_inputs)
    specs = []
    for node in program.graph.nodes:
        if node.op != "placeholder" or node.name not in user:
            continue
        val = node.meta.get("val")
        if val is None or not hasattr(val, "shape"):
            specs.append(InputSpec(node.name, "float32", None))
            continue
        shape = tuple(d if isinstance(d, int) else str(d) for d in val.shape)
        specs.append(InputSpec(node.name, str(val.dtype).removeprefix("torch."), shape))
    return specs


def _flatten(out: Any) -> list[Any]:
    """Tensors of a (nested) tuple / list / dict output, in order."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return [out] if hasattr(out, "detach") else []


def _is_op(name: str) -> bool:
    return "::" in name  # aten::conv2d, quantized::linear, ...; not "forward" or CUDA API calls


def _scope_of(ev: Any) -> Any:
    """The infer() scope event of an op called by the model itself (not by another op)."""
    if not _is_op(ev.name):
        return None
    parent = ev.cpu_parent
    while parent is not None:
        if _is_op(parent.name):
            return None
        if parent.name == _SCOPE:
            return parent
        parent = parent.cpu_parent
    return None


def _op_times(events: Any, cuda: bool) -> list[LayerTime]:
    """Top-level op times per inference; the first inference is a warm-up, left out when
    there are others (TorchScript optimises during its first runs, caches fill)."""
    scopes = sorted((ev for ev in events if ev.name == _SCOPE), key=lambda ev: ev.time_range.start)
    skip = {scopes[0].id} if len(scopes) > 1 else set()
    runs = max(len(scopes) - len(skip), 1)
    total_us: dict[str, float] = defaultdict(float)
    for ev in events:
        scope = _scope_of(ev)
        if scope is not None and scope.id not in skip:
            total_us[ev.name] += ev.device_time_total if cuda else ev.cpu_time_total
    device = "CUDA" if cuda else "CPU"
    out = [LayerTime(name=op, op_type=op, time_ms=us / runs / 1e3, device=device)
           for op, us in total_us.items()]
    out.sort(key=lambda lt: lt.time_ms, reverse=True)
    return out
