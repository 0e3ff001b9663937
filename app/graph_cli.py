"""`modeldeck graph` (the graph drawn to SVG/PNG without a window) and `modeldeck diff` (two
variants' graphs matched node by node). The model is parsed in a worker, as for `inspect`;
drawing happens here."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from converters.errors import ModelDeckError


def _expand(text: str) -> str | int:
    if text == "all":
        return text
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--expand takes 'all' or a number of group levels to open, not {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"--expand levels must be 0 or more, not {n}")
    return n


def _scale(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x > 0):  # 0 or less drew a 1x1 pixel PNG
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return x


def add_parsers(sub, limit_args, trust_args) -> None:
    """Register `graph` and `diff` on the CLI's subparsers."""
    p = sub.add_parser("graph", help="draw a model's graph to SVG or PNG, without a window")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, metavar="OUT.svg|OUT.png")
    p.add_argument("--expand", type=_expand, metavar="all|N",
                   help="open every group ('all') or the first N levels of groups "
                        "(default: folded as the window opens it, a few hundred boxes)")
    p.add_argument("--scale", type=_scale, default=1.0,
                   help="PNG pixels per layout unit (default 1; capped at 16384 px a side)")
    trust_args(p)
    limit_args(p)
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("diff", help="match two variants' graphs node by node (FP32 vs INT8, "
                       "before/after pruning) and list what changed")
    p.add_argument("base")
    p.add_argument("other")
    p.add_argument("--json", action="store_true", help="print the matching as one JSON object")
    p.add_argument("-o", "--output", metavar="OUT.svg",
                   help="also draw both graphs side by side, changes coloured")
    trust_args(p)
    limit_args(p)
    p.set_defaults(func=cmd_diff)


def load_graph(path: str, args: argparse.Namespace):
    """Parse `path` in a worker (limits, trust) and return its ModelGraph."""
    from app.cli import _job_or_raise, _limits, _run_job
    from converters.graph import ModelGraph

    spec = {"job": "graph", "model": path, "trust_code": args.trust}
    s = _job_or_raise(_run_job(spec, **_limits(args)), args.debug)
    if isinstance(s, int):
        return s
    return ModelGraph.from_dict(s["graph"]), s


def cmd_graph(args: argparse.Namespace) -> int:
    from app.gui.graph.headless import FORMATS, render_graph

    out = Path(args.output)
    if out.suffix.lower() not in FORMATS:  # before the model is read, not after
        raise ModelDeckError(f"cannot draw a graph as {out.suffix or 'a file without suffix'!r}"
                             ": name the output .svg or .png")
    from app.outputs import check_outputs

    check_outputs([args.model], [args.output], parent_must_exist=True)
    t0 = time.perf_counter()
    loaded = load_graph(args.model, args)
    if isinstance(loaded, int):
        return loaded
    model, _ = loaded
    t1 = time.perf_counter()
    try:
        r = render_graph(model, args.output, args.expand, scale=args.scale)
    except ValueError as e:
        raise ModelDeckError(str(e)) from None
    except OSError as e:
        raise ModelDeckError(f"could not write {args.output}: {e.strerror or e}") from None
    t2 = time.perf_counter()
    extra = f", {r.hidden_weights} weight constants shown in their nodes" if r.hidden_weights \
        else ""
    print(f"wrote {r.path}: {r.boxes} boxes{extra}; parsed in {t1 - t0:.2f} s, "
          f"drawn in {t2 - t1:.2f} s", file=sys.stderr)
    if r.png_scale is not None and r.png_scale < 0.75 * args.scale:
        print(f"note: the PNG was shrunk to {r.png_scale:.0%} of its size to stay within "
              "16,384 pixels a side, so its labels are hard to read: an .svg keeps every label "
              "sharp at any size (or open fewer groups with --expand N)", file=sys.stderr)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from converters.graph_diff import diff_graphs

    if args.output and Path(args.output).suffix.lower() != ".svg":
        raise ModelDeckError(f"diff draws SVG only: name the output .svg, not {args.output!r}")
    from app.outputs import check_outputs

    check_outputs([args.base, args.other], [args.output], parent_must_exist=True)
    loaded = []
    for path in (args.base, args.other):
        g = load_graph(path, args)
        if isinstance(g, int):
            return g
        loaded.append(g[0])
    d = diff_graphs(loaded[0], loaded[1])
    if args.output:
        from app.gui.graph.diff_svg import write_diff_svg

        try:
            write_diff_svg(d, loaded[0], loaded[1], args.output)
        except OSError as e:
            raise ModelDeckError(f"could not write {args.output}: {e.strerror or e}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    if args.json:
        json.dump(d.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    _print_diff(d.to_dict())
    return 0


def _print_diff(d: dict[str, Any]) -> None:
    s = d["summary"]
    print(f"base:  {d['base']}\nother: {d['other']}")
    print(f"matched {s['matched']} nodes ({s['by_name']} by name, {s['by_structure']} by "
          f"structure); {s['changed']} changed; {s['only_base']} only in base, "
          f"{s['only_other']} only in other")
    for m in d["matches"]:
        if m["changes"]:
            print(f"  {m['base_name']} -> {m['other_name']}: {'; '.join(m['changes'])}")
    if d["only_other"]:
        ops: dict[str, int] = {}
        for n in d["only_other"]:
            ops[n["op_type"]] = ops.get(n["op_type"], 0) + 1
        print("  added: " + ", ".join(f"{op} ×{c}" for op, c in sorted(ops.items())))
    if d["only_base"]:
        ops = {}
        for n in d["only_base"]:
            ops[n["op_type"]] = ops.get(n["op_type"], 0) + 1
        print("  removed: " + ", ".join(f"{op} ×{c}" for op, c in sorted(ops.items())))
