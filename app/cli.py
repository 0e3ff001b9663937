"""`modeldeck` command line. Exit codes: 0 ok, 1 internal error, 2 bad input."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from converters.errors import ModelDeckError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


def _human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()


def _shape_str(shape: list[Any] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def inspect_summary(path: str, trust_pickle: bool = False, layers: bool = False) -> dict[str, Any]:
    """The `inspect --json` object. Also what the worker will send the GUI."""
    from converters.analysis import analyze
    from converters.formats import Trust, open_model

    model = open_model(path, Trust(allow_pickle=trust_pickle))
    a = analyze(model, keep_nodes=layers)
    g = model.graph

    def io(names: list[str]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            t = g.tensors.get(name)
            out.append({"name": name, "dtype": t.dtype if t else None,
                        "shape": t.shape if t else None})
        return out

    summary: dict[str, Any] = {
        "path": model.meta.path, "format": model.meta.format, "producer": model.meta.producer,
        "opset": model.meta.opset, "file_size": model.meta.file_size, "sha256": model.meta.sha256,
        "nodes": a.node_count, "params": a.params, "param_bytes": a.param_bytes,
        "weight_bytes": a.weight_bytes, "macs": a.macs, "flops": a.flops,
        "activation_bytes_peak": a.activation_bytes_peak,
        "inputs": io(g.inputs), "outputs": io(g.outputs), "ops": a.ops,
        "uncounted_ops": a.uncounted, "assumed_dims": a.assumed_dims, "notes": model.meta.notes,
    }
    if layers:
        by_id = {item.node.id: item for item in model.walk()}
        rows = []
        for c in a.nodes:
            item = by_id[c.node_id]
            n = item.node
            outs = [item.tensor(o) for o in n.outputs]
            rows.append({"id": n.id, "name": n.name, "op_type": n.op_type, "domain": n.domain,
                         "scope": n.scope, "depth": item.depth, "params": c.params,
                         "macs": c.macs, "flops": c.flops, "note": c.note,
                         "output_shapes": [t.shape if t else None for t in outs]})
        summary["layers"] = rows
    return summary


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
    s = inspect_summary(args.model, trust_pickle=args.trust_pickle, layers=args.layers)
    if args.json:
        json.dump(s, sys.stdout, indent=None if args.layers else 2)
        sys.stdout.write("\n")
    else:
        _print_inspect(s)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeck", description="Inspect, profile and "
                                     "compress deep-learning models.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="layer graph, parameters and MACs of a model")
    p.add_argument("model", help="ONNX, OpenVINO IR (.xml), TFLite, TorchScript or .pt2 file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--layers", action="store_true", help="add the per-layer table")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickled PyTorch module (runs code from the file: "
                        "only for files from a source you trust)")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ModelDeckError as e:
        if args.debug:
            raise
        print(f"modeldeck: error: {e}", file=sys.stderr)
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
