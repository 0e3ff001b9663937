"""`modeldeck optimize`: the search from the command line, run in a worker like every job."""
from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from converters.errors import ModelDeckError


def parse_drop(text: str) -> float:
    """'1%' -> 0.01, '0.5 %' -> 0.005, '0.01' -> 0.01 (a bare number above 1 is read as %)."""
    t = text.strip()
    try:
        if t.endswith("%"):
            value = float(t[:-1]) / 100
        else:
            value = float(t)
            value = value / 100 if value >= 1 else value
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an accuracy drop: {text!r} (e.g. 1% or 0.01)")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"an accuracy drop lies in [0, 100%): {text!r}")
    return value


def parse_duration(text: str) -> float:
    """'15m' -> 900, '90s' -> 90, '1h' -> 3600, '120' -> 120 seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(h|m|min|s)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 15m, 90s)")
    value = float(m.group(1)) * {"h": 3600, "m": 60, "min": 60, "s": 1, None: 1}[m.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the time budget must be positive: {text!r}")
    return value


def _count(least: int):
    """An argparse type: an integer of at least `least`, with a message that says so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}: {text!r}")
        return value
    return parse


def add_parser(sub: Any, limit_args, trust_args) -> None:
    p = sub.add_parser("optimize", help="search for the fastest variant that keeps accuracy, "
                       "measured on this machine")
    p.add_argument("model")
    p.add_argument("--eval", metavar="LABELLED.npz", help="labelled data (inputs + labels): "
                   "the accuracy drop is the constraint")
    p.add_argument("--calib", metavar="DATA", help="calibration inputs for static INT8 (.npz, "
                   "image folder, 'sample')")
    p.add_argument("--max-drop", type=parse_drop, default=0.01, metavar="PCT",
                   help="accuracy the variant may lose, e.g. 1%% (default); it must hold for "
                        "the whole 95%% interval")
    p.add_argument("--min-cosine", type=float, help="fidelity floor against the FP32 outputs "
                   "(default 0.99 without labels)")
    p.add_argument("--objective", default="latency",
                   choices=["latency", "throughput", "size", "energy"],
                   help="what the winner minimises or maximises (default latency); throughput: "
                        "samples/s with 1 or as many requests in flight as cores, at batch 1 "
                        "and 8 where the model's batch is free, against FP32 served the same")
    p.add_argument("--backends", help="comma-separated: onnxruntime,openvino (default: all "
                   "available)")
    p.add_argument("--threads", type=_count(0), default=1, help="reference threads: 1 (default) also "
                   "tries the usable cores, each against FP32 at the same threads; N > 1 pins "
                   "every run to N; 0: the runtime's default")
    p.add_argument("--time-budget", type=parse_duration, default=900.0, metavar="DURATION",
                   help="stop with the best so far after this long (default 15m)")
    p.add_argument("--subset", type=_count(1), default=128, help="samples for the screening stage")
    p.add_argument("--only", help="comma-separated candidate names to try")
    p.add_argument("--exhaustive", action="store_true",
                   help="measure every candidate fully (a reference sweep; slow)")
    p.add_argument("--cache-dir", metavar="DIR", help="where builds and measurements are kept "
                   "(default ~/.cache/modeldeck/optimize)")
    p.add_argument("--no-cache", action="store_true", help="build and measure everything again")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for the winner, its recipe, optimize.json and optimize.html")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no per-candidate lines")
    from app.cli_targets import add_target_arg

    add_target_arg(p)  # the search measures on the target; OUTDIR/<target>/ with several
    trust_args(p)
    limit_args(p)
    p.set_defaults(func=cmd_optimize)


class _Lines:
    """One line per candidate verdict on stderr, the prediction first."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, e: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = e.get("event")
        if kind == "prediction":
            print(f"prediction: {e['prediction']['text']}", file=sys.stderr, flush=True)
        elif kind == "candidate":
            p = e["point"]
            lat = p.get("latency_ms")
            sp = p.get("speedup")
            acc = p.get("accuracy")
            print(f"  {p['name']:<24s} {p['stage']:<6s} {p['status']:<8s} "
                  f"{'' if not lat else format(lat['p50'], '8.3f') + ' ms'} "
                  f"{'' if not sp else format(sp['value'], '5.2f') + '×'} "
                  f"{'' if acc is None else format(acc, '.2%')}  {p.get('reason', '')}",
                  file=sys.stderr, flush=True)


def cmd_optimize(args: argparse.Namespace) -> int:
    from app.cli import _job_or_raise, _limits, _run_job
    from app.optimize.search import OptimizeSpec

    backends = tuple(b.strip() for b in (args.backends or "").split(",") if b.strip())
    spec = OptimizeSpec(
        model=args.model, output_dir=args.output, eval=args.eval, calib=args.calib,
        max_drop=args.max_drop, min_cosine=args.min_cosine, objective=args.objective,
        backends=backends, threads=args.threads or None, time_budget_s=args.time_budget,
        subset=args.subset, only=tuple(o.strip() for o in (args.only or "").split(",")
                                       if o.strip()),
        exhaustive=args.exhaustive, cache_dir=args.cache_dir, use_cache=not args.no_cache,
        trust_code=args.trust)
    limits = _limits(args)
    if limits["timeout_s"] is None:  # the search stops itself; the worker gets a margin
        limits["timeout_s"] = spec.time_budget_s * 2 + 600
    from app.cli_targets import targets_of

    if not targets_of(args):  # a bad model path or -o fails now, not after the worker starts
        from app.optimize.guard import check_model, check_output

        check_model(args.model)
        check_output(args.model, args.output)
    if targets_of(args):  # the whole search on the target(s), OUTDIR fetched home
        from app.targets.optimize_cli import optimize_on_targets

        return optimize_on_targets(spec.to_dict(), targets_of(args), args, limits, _Lines)
    outcome = _run_job({"job": "optimize", "optimize": spec.to_dict(),
                        "trust_code": args.trust},
                       on_event=_Lines(not args.quiet and not args.json), **limits)
    result = _job_or_raise(outcome, args.debug)
    if isinstance(result, int):
        return result
    if args.json:
        json.dump(result, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    print_result(result)
    return 0


def print_result(r: dict[str, Any]) -> None:
    base = r["baseline"]
    budget = r["budget"]
    constraint = (f"accuracy drop ≤ {budget['max_drop']:.2%}" if budget.get("labels")
                  else f"cosine ≥ {budget.get('min_cosine')} (no labels)")
    print(f"{r['model']}: {r['objective']} with {constraint} "
          f"(threads {r.get('threads') or 'default'}), {r['seconds']:.0f} s"
          + (f", stopped: {r['stopped']}" if r.get("stopped") else ""))
    print(f"  prediction  {r['prediction']['text']}")
    print(f"  measured    {r['prediction_check']['text']}")
    print(f"  baseline    FP32 {(base.get('candidate') or {}).get('backend', 'onnxruntime')} "
          f"p50 {base['latency_ms']['p50']:.3f} ms"
          + ("" if base.get("accuracy") is None else f", accuracy {base['accuracy']:.2%}"))
    b = r.get("best")
    if not b:
        print(f"  no winner   {r.get('why_no_winner', '')}")
        if r.get("stopped") == "time budget reached" and not any(
                t.get("latency_ms") for t in r.get("tried", [])):
            print(f"  what to do  the time budget ran out ({r['seconds']:.0f} s in all) before "
                  "any variant was timed: give a longer --time-budget, or fewer candidates "
                  "with --only / --backends")
    else:
        sp, lat, drop = b["speedup"], b["latency_ms"], b.get("accuracy_drop")
        print(f"  best        {b['name']} on {b['backend']}: p50 {lat['p50']:.3f} ms "
              f"[{lat['low']:.3f}, {lat['high']:.3f}], {sp['value']:.2f}× "
              f"[{sp['low']:.2f}, {sp['high']:.2f}] (interleaved with the baseline)")
        if drop:
            print(f"              accuracy {b['accuracy']:.2%}, drop {drop['value']:.2%} "
                  f"[{drop['low']:.2%}, {drop['high']:.2%}], cosine {b['cosine']:.5f}")
        tp = b.get("throughput")
        if tp:  # objective throughput: samples/s at its serving (app/optimize/throughput)
            vs = tp["vs_baseline"]
            print(f"  served      {tp['value']:,.0f} samples/s [{tp['low']:,.0f}, "
                  f"{tp['high']:,.0f}] at batch {tp['batch']}, {tp['streams']} request(s) in "
                  f"flight, {tp['threads'] or 'default'} thread(s): {vs['value']:.2f}× "
                  f"[{vs['low']:.2f}, {vs['high']:.2f}] "
                  f"{tp.get('baseline_config', 'FP32 ONNX Runtime served the same')}")
        for c in b.get("commands", []):
            print(f"  rebuild     {c}")
    from app.optimize.energy import cli_line

    if cli_line(r):  # objective energy: mJ per inference with its source
        print(f"  energy      {cli_line(r)}")
    print(f"  pareto      {', '.join(r['pareto'])}")
    out = r.get("outputs", {})
    print(f"  written     {out.get('dir')} (optimize.json, optimize.html"
          + (", " + out['model'].rsplit('/', 1)[-1] if out.get("model") else "") + ")")
    for n in r.get("notes", []):
        print(f"  note        {n}")


def spec_from_args_dict(d: dict[str, Any]):  # the worker's side
    from app.optimize.search import OptimizeSpec

    try:
        return OptimizeSpec.from_dict(d)
    except TypeError as e:
        raise ModelDeckError(f"bad optimize spec: {e}") from None
