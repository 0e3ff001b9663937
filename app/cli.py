"""`modeldeck` command line. Exit codes: 0 ok, 1 internal error, 2 bad input."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from app import cli_targets
from converters.errors import ConsentRequired, ModelDeckError
from converters.summary import inspect_summary  # noqa: F401  (kept importable from here)

log = logging.getLogger(__name__)

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_BUDGET = 0, 1, 2, 3


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def _shape_str(shape: list[Any] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _print_inspect(s: dict[str, Any]) -> None:
    p = print
    p(f"{s['path']}")
    p(f"  format      {s['format']}  ({s['producer'] or 'unknown producer'})")
    if s["opset"]:
        p("  opset       " + ", ".join(f"{k} {v}" for k, v in s["opset"].items()))
    p(f"  file        {_human(s['file_size'], 'B')}  sha256 {s['sha256'][:16]}…")
    p(f"  nodes       {s['nodes']}")
    p(f"  parameters  {s['params']:,}  ({_human(s['param_bytes'], 'B')} as consumed, "
      f"{_human(s['weight_bytes'], 'B')} stored)")
    p(f"  MACs        {_human(s['macs'])}   FLOPs {_human(s['flops'])}")
    p(f"  activations {_human(s['activation_bytes_peak'], 'B')} peak (estimate)")
    for kind in ("inputs", "outputs"):
        for t in s[kind]:
            p(f"  {kind[:-1]:<11s} {t['name']}: {t['dtype']} {_shape_str(t['shape'])}")
    p("  ops         " + ", ".join(f"{k}×{v}" for k, v in s["ops"].items()))
    for i in (s.get("workload") or {}).get("inputs", []):
        p(f"  counted at  {i['name']} {_shape_str(i['shape'])}  ({i['shape_source']}; values: "
          f"{i['values_text']})")
    if s["assumed_dims"]:
        p("  assumed     " + ", ".join(f"{k}={v}" for k, v in s["assumed_dims"].items())
          + " (symbolic dims taken as this for MACs)")
    for op, u in s["uncounted_ops"].items():
        p(f"  not counted {op}×{u['count']}: {u['reason']}")
    for note in s["notes"]:
        p(f"  note        {note}")
    if "layers" in s:
        p("")
        p(f"  {'op':<22s} {'name':<40s} {'output':<22s} {'params':>10s} {'MACs':>10s}")
        for r in s["layers"]:
            shape = _shape_str(r["output_shapes"][0]) if r["output_shapes"] else ""
            macs = "—" if r["macs"] is None else _human(r["macs"])
            indent = "  " * r["depth"]
            p(f"  {indent + r['op_type']:<22s} {r['name'][-40:]:<40s} {shape:<22s} "
              f"{r['params']:>10,} {macs:>10s}")


def cmd_inspect(args: argparse.Namespace) -> int:
    # Parsing an untrusted file happens in a worker: a native crash there is a clear exit 2.
    from converters.workload import parse_shape_args

    spec = {"job": "inspect", "model": args.model, "trust_code": args.trust,
            "layers": args.layers, "shapes": parse_shape_args(args.shape),
            "inputs": args.inputs}
    s = _job_or_raise(_run_job(spec, **_limits(args)), args.debug)
    if isinstance(s, int):
        return s
    if args.json:
        json.dump(s, sys.stdout, indent=None if args.layers else 2)
        sys.stdout.write("\n")
    else:
        _print_inspect(s)
    return EXIT_OK


class _LiveStatus:
    """One status line on stderr, redrawn from the worker's events (rolling p50/p99, RSS, power)."""

    def __init__(self, enabled: bool):
        import collections

        self.enabled = enabled
        self.lat: collections.deque[float] = collections.deque(maxlen=500)
        self.last: dict[str, float] = {}
        self.stage = ""
        self.n = 0
        self.power_source = ""

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "stage":
            self.stage = event["stage"]
        elif kind == "samples":
            for name, points in event["series"].items():
                if name == "latency_ms":
                    self.lat.extend(v for _, v in points)
                    self.n += len(points)
                elif points:
                    self.last[name] = points[-1][1]
        elif kind == "budget" and not event.get("ok"):
            self._print(f"budget broken: {event['budget']} (now {event['value']:.3g})\n")
        else:
            return
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        import numpy as np

        parts = [f"{self.stage:<8s}"]
        if self.lat:
            a = np.fromiter(self.lat, float)
            parts.append(f"{self.n:>7d} it  p50 {np.percentile(a, 50):8.3f} ms  "
                         f"p99 {np.percentile(a, 99):8.3f} ms")
        if "rss_mb" in self.last:
            parts.append(f"RSS {self.last['rss_mb']:7.1f} MB")
        if "power_w" in self.last:
            parts.append(f"{self.last['power_w']:5.1f} W")
        self._print("\r" + "  ".join(parts) + "\033[K")

    def _print(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(text)
            sys.stderr.flush()

    def done(self) -> None:
        self._print("\n")


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """--timeout / --memory-limit of a command (None: the job kind's defaults)."""
    return {"timeout_s": getattr(args, "timeout", None),
            "memory_mb": getattr(args, "memory_limit", None)}


def _run_job(spec: dict[str, Any], on_event=None, timeout_s: float | None = None,
             memory_mb: int | None = None, target: str | None = None):
    from app.targets.sweep import job_client  # target None: a local worker

    client = job_client(spec, target, on_event, timeout_s=timeout_s, memory_mb=memory_mb).start()
    try:
        return client.wait()
    except KeyboardInterrupt:
        client.cancel()
        return client.wait()


def cmd_profile(args: argparse.Namespace) -> int:
    from profilers.backends import BackendOptions
    from converters.workload import parse_shape_args
    from profilers.runner import RunConfig

    try:
        options = BackendOptions(threads=args.threads, inter_threads=args.inter_threads,
                                 graph_optimization=args.graph_opt,
                                 performance_hint=args.hint.upper(), streams=args.streams,
                                 precision=args.precision)
    except ValueError as e:
        raise ModelDeckError(str(e)) from None
    from profilers.compare import backend_for

    from app.outputs import check_outputs

    check_outputs([args.model, args.inputs], [args.json, args.html], [args.csv])
    backend = args.backend or backend_for(args.model)
    cfg = RunConfig(model=args.model, backend=backend, device=args.device, options=options,
                    iterations=args.iterations, duration_s=args.duration, warmup=args.warmup,
                    shapes=parse_shape_args(args.shape), inputs_npz=args.inputs,
                    layers=args.layers, budgets=tuple(args.budget or ()),
                    samplers=not args.no_samplers, trust_code=args.trust)
    status = _LiveStatus(enabled=sys.stderr.isatty() and not args.quiet)
    targets = cli_targets.targets_of(args)
    if len(targets) > 1:
        return cli_targets.profile_on_targets(cfg.to_dict(), targets, args, _limits(args))
    outcome = _run_job({"job": "profile", "config": cfg.to_dict()}, on_event=status,
                       **_limits(args), target=(targets or [None])[0])
    status.done()
    if outcome.status != "ok":
        _write_unfinished(outcome, cfg.to_dict(), args)
    report = _job_or_raise(outcome, args.debug)
    if isinstance(report, int):
        return report
    _write_outputs(report, args)
    if not args.quiet:  # the JSON owns stdout when it goes there
        _print_profile(report, sys.stderr if args.json == "-" else sys.stdout)
        cli_targets.print_target_line(report, sys.stderr if args.json == "-" else sys.stdout)
    broken = [b for b in report["budgets"] if b["ok"] is False]
    return EXIT_BUDGET if broken else EXIT_OK


def _write_unfinished(outcome, config: dict[str, Any], args: argparse.Namespace) -> None:
    """A run that did not finish still leaves its record: status, error, what arrived."""
    if not (args.json or args.html or getattr(args, "csv", None)):
        return
    from profilers.report.partial import partial_report

    report = partial_report(config, status=outcome.status, error=outcome.error,
                            error_kind=outcome.error_kind, samples=outcome.samples,
                            stages=outcome.stages, layers=outcome.layers)
    try:
        _write_outputs(report, args)
    except OSError as e:  # the run's own error matters more than this one
        print(f"modeldeck: warning: could not write the report of the failed run: {e}",
              file=sys.stderr)


def _write_outputs(report: dict[str, Any], args: argparse.Namespace) -> None:
    from profilers.report import write_csv, write_html, write_json

    if args.json == "-":
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    elif args.json:
        write_json(report, args.json)
    if args.html:
        write_html(report, args.html)
    if getattr(args, "csv", None):
        write_csv(report, args.csv)


def _print_profile(r: dict[str, Any], out) -> None:
    lat = r["latency_ms"]
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"{r['model']['path']}  [{r['backend']} / {r['device']}, threads {r['threads'] or 'default'}]")
    p(f"  load {r['load_ms']:.1f} ms   first inference {r['first_inference_ms']:.3f} ms   "
      f"{r['iterations']} iterations in {r['measure_s']:.2f} s")
    p(f"  latency ms  p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p95 {lat['p95']:.3f}  "
      f"p99 {lat['p99']:.3f}  p99.9 {lat['p999']:.3f}")
    p(f"              mean {lat['mean']:.3f} ± {lat['std']:.3f}  min {lat['min']:.3f}  "
      f"max {lat['max']:.3f}  CV {lat['cv']:.3f}  spikes {lat['spikes']}")
    from profilers.report.honest import text_lines

    for line in text_lines(r):  # intervals, the runtime's own latency, the stability verdict
        p(line)
    p(f"  throughput  {r['throughput_ips']:.1f} inferences/s")
    mem = r["memory"]
    p(f"  memory      RSS peak {mem['rss_peak_mb']:.1f} MB")
    pw = r["power"]
    if pw["mean_w"] is not None:
        p(f"  power       {pw['mean_w']:.2f} W, {pw['energy_per_inference_j'] * 1e3:.3f} mJ per "
          f"inference [{pw['source']}]")
        if pw["source"] == "estimate":
            p(f"              {pw['note']}")
    prec = r.get("runtime", {}).get("inference_precision")
    if prec:
        p(f"  precision   {prec}")
    for b in r["budgets"]:
        verdict = "ok" if b["ok"] else "BROKEN" if b["ok"] is False else "n/a"
        value = "—" if b["value"] is None else f"{b['value']:.3f} {b['unit']}"
        p(f"  budget      {b['budget']}: {value} → {verdict}")
    if r["layers"]:
        p("  slowest layers (separate profiling run):")
        for row in r["layers"][:10]:
            flag = "  CPU fallback" if row.get("fallback") else ""
            p(f"    {row['time_ms']:9.4f} ms  {row['op_type']:<18s} {row['name'][:50]:<50s} "
              f"{row.get('device', '')} {row.get('precision', '')}{flag}")


def cmd_devices(args: argparse.Namespace) -> int:
    from profilers.devices import list_devices

    targets = cli_targets.targets_of(args)
    rows = cli_targets.remote_devices(targets[0]) if targets else list_devices()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    for b in rows:
        state = b["version"] if b["available"] else f"not available: {b['version']}"
        print(f"{b['backend']}: {state}")
        for d in b["devices"]:
            mark = "" if d["available"] else f"  (unavailable: {d['reason']})"
            desc = f" — {d['description']}" if d["description"] else ""
            print(f"  {d['name']}{desc}{mark}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from profilers.report import load_report

    from app.outputs import check_outputs

    check_outputs([args.run], [args.html, args.json], [args.csv])
    report = load_report(args.run)
    if not (args.html or args.csv or args.json):
        raise ModelDeckError("nothing to write: give --html OUT.html, --csv DIR or --json OUT")
    _write_outputs(report, args)
    return EXIT_OK


def _fmt_opt(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _print_steps(result: dict[str, Any]) -> None:
    print(f"{result['source']} -> {result['output']}  ({result['seconds']:.1f} s; verified on "
          f"{result['verified_on']})")
    print(f"  {'step':<18s} {'format':<9s} {'size':>10s} {'params':>10s} {'sparsity':>8s} "
          f"{'cosine':>9s} {'top-1':>7s} {'accuracy':>8s} {'s':>6s}")
    for st in result["steps"]:
        fid = st.get("fidelity") or {}
        acc = (st.get("accuracy") or {}).get("accuracy")
        print(f"  {st['pass']:<18s} {st['format']:<9s} {_human(st['size_bytes'], 'B'):>10s} "
              f"{_human(st['params'] or 0):>10s} {_fmt_opt(st['sparsity'], '.1%'):>8s} "
              f"{_fmt_opt(fid.get('cosine'), '.6f'):>9s} "
              f"{_fmt_opt(fid.get('top1_agreement'), '.1%'):>7s} {_fmt_opt(acc, '.2%'):>8s} "
              f"{st['seconds']:>6.1f}")
        for m in st.get("messages", []):
            print(f"      note: {m}")
    b = result.get("first_broken")
    if b:
        where = f", first diverging node {b['node']['name']}" if b.get("node") else ""
        print(f"  fidelity broke at step {b['step']} ({b['pass']}, cosine {b['cosine']:.4f}"
              f"{where})")
    print(f"  lineage: {result['lineage']}")


# How to get past a limit from the command line (the engine's messages name no front end).
_CLI_WAY_OUT = {
    "memory": " (raise the limit with --memory-limit MB or MODELDECK_MEM_LIMIT_MB, or set "
              "smaller sizes with --shape)",
    "timeout": " (allow more time with --timeout S)",
    "host_key": " (after checking the fingerprint with the machine's owner, pin it with "
                "`modeldeck targets check TARGET --accept-new-host-key`)",
}


def _job_or_raise(outcome, debug: bool) -> dict[str, Any] | int:
    """The job's result, or an exit code after telling the user what went wrong."""
    if outcome.status == "cancelled":
        print("modeldeck: cancelled", file=sys.stderr)
        return 130
    if outcome.status != "ok":
        from app.jobs.client import NATIVE_CRASH_SIGNALS

        # What the file or its sizes caused is the input's fault (exit 2, one line): refused,
        # crashed a native reader, out of time, out of memory. --debug adds the worker's log.
        native_crash = outcome.error_kind == "crashed" and outcome.signal in NATIVE_CRASH_SIGNALS
        tail = outcome.stderr_tail.strip().splitlines()[-8:]
        if debug and tail:
            print("\n".join("  | " + line for line in tail), file=sys.stderr)
        if outcome.error_kind == "needs_consent":
            raise ConsentRequired(outcome.error or "the model runs code stored in the file")
        if outcome.error_kind in ("bad_input", "timeout", "memory", *cli_targets.ERROR_KINDS) \
                or native_crash:
            raise ModelDeckError((outcome.error or "bad input") + _CLI_WAY_OUT.get(
                outcome.error_kind or "", ""))
        print(f"modeldeck: error: {outcome.error}", file=sys.stderr)
        if tail and not debug and outcome.error_kind == "crashed":
            print("\n".join("  | " + line for line in tail), file=sys.stderr)
        return EXIT_INTERNAL
    return outcome.result


class _Progress:
    """Stage and progress of a conversion on one stderr line."""

    def __init__(self, enabled: bool):
        self.enabled, self.stage = enabled, ""

    def __call__(self, e: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if e.get("event") == "stage":
            self.stage = e.get("message") or e["stage"]
        elif e.get("event") != "progress":
            return
        frac = e.get("frac")
        pct = f"{frac:6.1%} " if isinstance(frac, (int, float)) else ""
        sys.stderr.write(f"\r{pct}{self.stage[:70]}\033[K")
        sys.stderr.flush()


def cmd_convert(args: argparse.Namespace) -> int:
    from converters.passes import parse_pass_arg
    from app.pipeline import ConvertSpec, StepSpec, spec_from_recipe

    if args.recipe:
        spec, warnings = spec_from_recipe(args.recipe, args.model, args.output)
        for w in warnings:
            print(f"modeldeck: warning: {w}", file=sys.stderr)
    else:
        passes = tuple(StepSpec(*parse_pass_arg(p)) for p in args.passes or ())
        spec = ConvertSpec(model=args.model, output=args.output, to=args.to, passes=passes,
                           calib=args.calib, eval=args.eval,
                           fidelity_threshold=args.fidelity_threshold)
    from converters.workload import parse_shape_args

    spec = dataclasses.replace(spec, trust_code=args.trust, inputs=args.inputs,
                               shapes=parse_shape_args(args.shape) or spec.shapes)
    if spec.calib == "random":
        print("modeldeck: warning: calibrating on random data: quantization ranges will not "
              "match real inputs; accuracy may suffer. Prefer --calib DATA.npz", file=sys.stderr)
    show = _Progress(sys.stderr.isatty() and not args.json)
    outcome = _run_job({"job": "convert", "convert": spec.to_dict()}, on_event=show,
                       **_limits(args))
    if show.enabled:
        sys.stderr.write("\n")
    result = _job_or_raise(outcome, args.debug)
    if isinstance(result, int):
        return result
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_steps(result)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from converters.workload import parse_shape_args
    from profilers.backends import BackendOptions
    from profilers.runner import RunConfig
    from app.outputs import check_outputs

    check_outputs([*args.models, args.eval, args.inputs], [args.html])
    cfg = RunConfig(model=args.models[0], backend=args.backend or "onnxruntime",
                    device=args.device, options=BackendOptions(threads=args.threads),
                    iterations=args.iterations, warmup=args.warmup, layers=args.layers,
                    rounds=args.rounds, trust_code=args.trust, shapes=parse_shape_args(args.shape),
                    inputs_npz=args.inputs)
    spec = {"job": "compare", "models": args.models, "config": cfg.to_dict(),
            "eval": args.eval, "backend_given": args.backend is not None}
    targets = cli_targets.targets_of(args)
    if len(targets) > 1:
        return cli_targets.compare_on_targets(spec, targets, args, _limits(args))
    outcome = _run_job(spec, on_event=_Progress(sys.stderr.isatty() and not args.json),
                       **_limits(args), target=(targets or [None])[0])
    result = _job_or_raise(outcome, args.debug)
    if isinstance(result, int):
        return result
    if args.html:
        from profilers.report.compare_html import write_compare_html

        write_compare_html(result, args.html)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"\n{'model':<34s} {'backend':<12s} {'size':>9s} {'params':>9s} {'p50 ms':>9s} "
          f"{'p99 ms':>9s} {'RSS MB':>8s} {'cosine':>9s} {'top-1':>7s} {'accuracy':>8s}")
    for r in result["rows"]:
        fid = r["fidelity"] or {}
        acc = (r["accuracy"] or {}).get("accuracy")
        print(f"{Path(r['model']).name[:34]:<34s} {r['backend']:<12s} "
              f"{_human(r['size_bytes'], 'B'):>9s} {_human(r['params']):>9s} "
              f"{r['latency_ms']['p50']:>9.4f} {r['latency_ms']['p99']:>9.4f} "
              f"{r['rss_peak_mb']:>8.1f} {_fmt_opt(fid.get('cosine'), '.6f'):>9s} "
              f"{_fmt_opt(fid.get('top1_agreement'), '.1%'):>7s} {_fmt_opt(acc, '.2%'):>8s}")
    from profilers.report.compare_honest import ratio_lines

    for line in ratio_lines(result):  # each p50 ratio with its interval, interleaved rounds
        print(line)
    for d in result["layer_deltas"][:10]:
        print(f"  layer {d['name']} ({d['op_type']}): {d['base_ms']:.4f} -> "
              f"{d['time_ms']:.4f} ms ({d['delta_ms']:+.4f})")
    return EXIT_OK


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="stop the job after this many seconds (default: generous, by command)")
    p.add_argument("--memory-limit", type=_positive_int, metavar="MB",
                   help="stop the job when its processes use more than this much memory "
                        "(default: $MODELDECK_MEM_LIMIT_MB, else 75%% of RAM, at most 8 GB)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


TRUST_HINT = "if the file comes from a source you trust, run again with --trust"


def _workload_args(p: argparse.ArgumentParser) -> None:
    """What the model is measured on; anything not given is resolved (see converters/workload)."""
    p.add_argument("--shape", action="append", metavar="NAME=DxDxD",
                   help="an input's size, e.g. input=1x3x224x224 (repeatable); sizes not given "
                        "come from --inputs, the model, or defaults by role (batch 1, sequence "
                        "128, image 224), shown in the output")
    p.add_argument("--inputs", metavar="X.npz", help="real inputs, arrays named like the model's "
                   "inputs; their shapes set the sizes")


def _trust_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust", action="store_true",
                   help="allow running code the model file carries (pickled PyTorch modules, "
                        "TorchScript, torch.export programs): only for files from a source you "
                        "trust; the worker then may write only to its own folders where the OS "
                        "allows (Linux Landlock)")
    p.add_argument("--trust-pickle", dest="trust", action="store_true", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeck", description="Inspect, profile and "
                                     "compress deep-learning models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="layer graph, parameters and MACs of a model")
    p.add_argument("model", help="ONNX, OpenVINO IR (.xml), TFLite, TorchScript or .pt2 file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--layers", action="store_true", help="add the per-layer table")
    _workload_args(p)
    _trust_args(p)
    _limit_args(p)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("profile", help="run a model on a backend and measure it")
    p.add_argument("model")
    p.add_argument("--backend", help="onnxruntime | openvino | torch (default: the model "
                   "format's: torch for TorchScript/.pt2, openvino for IR, else onnxruntime)")
    p.add_argument("--device", default="CPU", help="CPU, CUDA, GPU, NPU, AUTO, ... "
                   "(see `modeldeck devices`)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: the runtime's)")
    p.add_argument("--inter-threads", type=int)
    p.add_argument("--streams", type=int, help="OpenVINO streams")
    p.add_argument("--hint", default="latency", choices=["latency", "throughput"],
                   help="OpenVINO performance hint")
    p.add_argument("--precision", choices=["f32", "f16", "bf16"],
                   help="OpenVINO inference precision (default: the device's choice, recorded)")
    p.add_argument("--graph-opt", default="all", choices=["disable", "basic", "extended", "all"],
                   help="ONNX Runtime graph optimisation level")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--iterations", type=int, help="measured iterations (default 100)")
    group.add_argument("--duration", type=float, help="measure for this many seconds")
    p.add_argument("--warmup", type=int, default=10)
    _workload_args(p)
    p.add_argument("--layers", action="store_true",
                   help="add a per-layer profile (a separate run; clean latencies unaffected)")
    p.add_argument("--budget", action="append", metavar="METRIC=VALUE",
                   help="e.g. p99=20ms, rss=500MB, power=15W (repeatable); exit 3 if broken")
    p.add_argument("--no-samplers", action="store_true", help="no memory/CPU/power sampling")
    _trust_args(p)
    _limit_args(p)
    p.add_argument("--json", metavar="OUT", help="write the report as JSON ('-': stdout)")
    p.add_argument("--html", metavar="OUT", help="write a self-contained HTML report")
    p.add_argument("--csv", metavar="DIR", help="write per-iteration and per-layer CSV files")
    p.add_argument("--quiet", action="store_true", help="no live status line, no summary")
    cli_targets.add_target_arg(p)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("devices", help="list backends and the devices they can use here")
    p.add_argument("--json", action="store_true")
    cli_targets.add_target_arg(p, several=False)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("report", help="turn a run's JSON into HTML / CSV")
    p.add_argument("run", help="RUN.json written by `profile --json`")
    p.add_argument("--html", metavar="OUT")
    p.add_argument("--csv", metavar="DIR")
    p.add_argument("--json", metavar="OUT", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("convert", help="apply compression passes and/or convert the format")
    p.add_argument("model")
    p.add_argument("--to", choices=["onnx", "openvino"], help="target format")
    p.add_argument("--pass", dest="passes", action="append", metavar="NAME[:k=v,...]",
                   help="a pass with options (repeatable), e.g. "
                        "int8-static:method=entropy,exclude=/fc/Gemm. Passes run in the order "
                        "given; an order the rules refuse (e.g. int8 before simplify, distill "
                        "before prune-channels) exits 2 naming the rule and a valid order")
    p.add_argument("--calib", metavar="DATA", help="calibration data: .npz, image folder, "
                   "'sample' or 'random' (warned)")
    p.add_argument("--eval", metavar="DATA", help="labelled data (.npz with labels) for accuracy")
    p.add_argument("--recipe", metavar="LINEAGE.json", help="replay the steps of a lineage file")
    p.add_argument("--fidelity-threshold", type=float, default=0.99,
                   help="cosine below which a step is reported as where fidelity broke")
    p.add_argument("-o", "--output", required=True, help="output model file")
    p.add_argument("--json", action="store_true", help="print the steps as JSON")
    _workload_args(p)
    _trust_args(p)
    _limit_args(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("compare", help="profile variants side by side on the same inputs")
    p.add_argument("models", nargs="+")
    p.add_argument("--backend", help="the same backend for all (default: one per format)")
    p.add_argument("--device", default="CPU")
    p.add_argument("--threads", type=int)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--rounds", type=_positive_int, default=10,
                   help="interleaved timing rounds; the iterations are split across them")
    p.add_argument("--layers", action="store_true", help="per-layer time deltas")
    p.add_argument("--eval", metavar="DATA", help="labelled data for accuracy")
    p.add_argument("--json", action="store_true")
    p.add_argument("--html", metavar="OUT")
    _workload_args(p)
    _trust_args(p)
    _limit_args(p)
    cli_targets.add_target_arg(p)
    p.set_defaults(func=cmd_compare)
    cli_targets.add_targets_parser(sub)
    from app import graph_cli

    graph_cli.add_parsers(sub, _limit_args, _trust_args)
    from app.optimize import cli as optimize_cli

    optimize_cli.add_parser(sub, _limit_args, _trust_args)
    return parser


SUBCOMMANDS = ("inspect", "profile", "devices", "report", "convert", "compare", "targets",
               "graph", "diff", "optimize")


def _wants_gui(argv: list[str]) -> bool:
    """`modeldeck`, `modeldeck MODEL` and `modeldeck --measure-startup` open the window."""
    if not argv:
        return True
    first = argv[0]
    return first == "--measure-startup" or (first not in SUBCOMMANDS and not first.startswith("-"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # a frozen build starts its workers through itself
        from app.jobs.worker import main as worker_main

        return worker_main()
    if argv[:1] == ["--relay"]:  # a frozen build's stand-in worker for a remote target
        from app.targets.relay import main as relay_main

        return relay_main(argv[1:])
    if argv[:1] == ["--self-test"]:  # headless install check; the bundle's `make installer-test`
        from app.selftest import main as selftest_main

        return selftest_main(argv[1:])
    if _wants_gui(argv):
        from app.gui.app import run_gui

        return run_gui(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ModelDeckError as e:
        if args.debug:
            raise
        hint = f"; {TRUST_HINT}" if isinstance(e, ConsentRequired) else ""
        print(f"modeldeck: error: {e}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `modeldeck inspect ... | head`: the reader left, nothing is wrong
        sys.stdout = None  # type: ignore[assignment]  # keeps the interpreter from re-raising
        return EXIT_OK
    except Exception as e:  # an internal error: one line unless --debug
        if args.debug:
            raise
        print(f"modeldeck: internal error: {type(e).__name__}: {e} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
