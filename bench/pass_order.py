"""What the order of two passes does to a real model: runs A then B and B then A, step by step
(size, parameters, cosine against the source, seconds), and says which order the rules
(converters/passes/order.py) refuse. The refused order is run here anyway, with the rule
check switched off in this process only, to show what it would have produced.

    PYTHONPATH=. .venv/bin/python bench/pass_order.py MODEL.onnx [--pass simplify] \
        [--pass int8-dynamic] [--shape x=1x3x48x320] [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import converters.passes.order as order
from app.pipeline import ConvertSpec, StepSpec, run_pipeline
from converters.formats import detect_format
from converters.workload import parse_shape_args


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--pass", dest="passes", action="append")
    ap.add_argument("--shape", action="append")
    ap.add_argument("--out", help="folder for the results (default: a temporary one)")
    args = ap.parse_args()
    passes = args.passes or ["simplify", "int8-dynamic"]
    if len(passes) != 2:
        ap.error("give two passes")
    out = Path(args.out or tempfile.mkdtemp(prefix="pass_order_"))
    fmt = detect_format(Path(args.model)).name
    check = order.check_pipeline
    print(f"{Path(args.model).name} ({fmt}); results in {out}")
    for names in (passes, passes[::-1]):
        refused = [p.rule for p in check(fmt, names)]
        order.check_pipeline = lambda *a, **k: []  # measure the refused order too
        try:
            result = run_pipeline(ConvertSpec(
                model=args.model, output=str(out / f"{'+'.join(names)}{Path(args.model).suffix}"),
                shapes=parse_shape_args(args.shape), passes=tuple(StepSpec(n) for n in names)))
        finally:
            order.check_pipeline = check
        print(f"{' -> '.join(names)}: {'refused by ' + ', '.join(refused) if refused else 'valid'}")
        for s in result["steps"]:
            cos = (s.get("fidelity") or {}).get("cosine")
            notes = [m for m in s.get("messages", []) if "nothing" in m]
            print(f"  {s['pass']:<14} {s['size_bytes'] / 1e6:8.3f} MB  params {s['params']:>9}  "
                  f"cosine {'—' if cos is None else f'{cos:.6f}'}  {s.get('seconds', 0):5.1f} s"
                  + (f"  ({notes[0]})" if notes else ""))


if __name__ == "__main__":
    main()
