"""`modeldeck optimize --target NAME`: the whole search runs on the machine that will run the model.

The search measures every candidate, so it must measure where the model will run: the job goes
to the target as it is (model, --eval and --calib files sent once, cached by sha256), its events
stream back (the CLI's lines, the window's Pareto chart), and the target's OUTDIR comes home into
the local -o OUTDIR (app.targets.fetch: fetched aside, checked by sha256, then moved in; paths in
optimize.json rewritten to the local ones, a `target` entry naming the target and its transfer
figures). With several targets, one search per target at the same time (each target measures
one job at a time), each into OUTDIR/<target>/, and a table of the best per target.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def target_spec(opt: dict[str, Any], trust: bool, output_dir: str) -> dict[str, Any]:
    """The worker job for one target: the output folder is fetched home when it ends."""
    opt = {**opt, "output_dir": output_dir, "cache_dir": None}  # the target keeps its own cache
    return {"job": "optimize", "optimize": opt, "trust_code": trust,
            "remote_outputs": [["optimize", "output_dir"]]}


def folder_name(target: str) -> str:
    """OUTDIR/<this> for a target name or ssh:// address."""
    name = re.sub(r"^ssh://", "", target)
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name).strip("._") or "target"


class _Tagged:
    """The per-candidate lines of one target, tagged with its name when there are several;
    the remote stages (connect, transfer, fetch) as lines too."""

    def __init__(self, lines, target: str, tag: bool, enabled: bool):
        self.lines, self.target, self.tag, self.enabled = lines, target, tag, enabled
        self.lock = threading.Lock()

    def __call__(self, e: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.lock:
            if e.get("event") == "stage" and e.get("stage") in ("connect", "transfer", "fetch"):
                print(f"[{self.target}] {e.get('message', e.get('stage'))}", file=sys.stderr,
                      flush=True)
            elif e.get("event") in ("prediction", "candidate"):
                if self.tag:
                    print(f"[{self.target}]", end="", file=sys.stderr)
                self.lines(e)


def wait_all(clients: list) -> list:
    """Start the searches side by side (one per target) and wait for all; Ctrl-C stops every
    one of them, and each still brings its best so far home."""
    outcomes: list[Any] = [None] * len(clients)

    def wait(i: int) -> None:
        outcomes[i] = clients[i].wait()

    threads = [threading.Thread(target=wait, args=(i,), daemon=True)
               for i, _ in enumerate(clients)]
    for c in clients:
        c.start()
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            try:
                t.join(0.2)
            except KeyboardInterrupt:
                print("modeldeck: stopping the search on every target (their best so far is "
                      "kept)", file=sys.stderr)
                for c in clients:
                    c.cancel()
    return outcomes


def optimize_on_targets(opt: dict[str, Any], targets: list[str], args: argparse.Namespace,
                        limits: dict[str, Any], lines_cls) -> int:
    """Run the search on each target; print (or --json) the results; the exit code."""
    from app.cli import _job_or_raise
    from app.cli_targets import print_target_line
    from app.optimize.cli import print_result
    from app.targets.sweep import job_client, label_outcome
    from converters.errors import ModelDeckError

    several = len(targets) > 1
    out_root = Path(args.output)
    if several:
        names = [folder_name(t) for t in targets]
        if len(set(names)) != len(names):
            raise ModelDeckError("each --target is named once (their results go to "
                                 "OUTDIR/<target>/)")
    show = not args.quiet and not args.json
    clients = []
    for target in targets:
        dest = out_root / folder_name(target) if several else out_root
        spec = target_spec(opt, args.trust, str(dest))
        clients.append(job_client(spec, target, _Tagged(lines_cls(True), target, several, show),
                                  **limits))
    outcomes = wait_all(clients)
    for outcome, target in zip(outcomes, targets):
        label_outcome(outcome, target)
    results, failed = [], 0
    for target, outcome in zip(targets, outcomes):
        try:
            result = _job_or_raise(outcome, args.debug)
        except ModelDeckError as e:
            if not several:
                raise
            print(f"modeldeck: error on target {target}: {e}", file=sys.stderr)
            failed += 1
            continue
        if isinstance(result, int):
            if not several:
                return result
            failed += 1
            continue
        results.append(result)
    if args.json:
        json.dump(results if several else results[0], sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return EXIT_BAD_INPUT if failed else EXIT_OK
    for r in results:
        if several:
            print(f"== target {r['target']['name']}")
        print_result(r)
        print_target_line(r)
        t = r.get("target") or {}
        if t.get("fetched_files"):
            print(f"  fetched     {t['fetched_files']} files, "
                  f"{t['fetched_bytes'] / 2**20:.2f} MB in {t.get('fetch_s', 0):.2f} s")
    if several and results:
        print(f"\n{'target':<16s} {'best':<24s} {'backend':<12s} {'p50 ms':>9s} "
              f"{'speedup':>8s} {'drop':>7s}  folder")
        for r in results:
            b = r.get("best") or {}
            drop = (b.get("accuracy_drop") or {}).get("value")
            print(f"{r['target']['name']:<16s} {b.get('name', '(none)'):<24s} "
                  f"{b.get('backend', ''):<12s} "
                  f"{(b.get('latency_ms') or {}).get('p50', float('nan')):>9.3f} "
                  f"{(b.get('speedup') or {}).get('value', float('nan')):>7.2f}× "
                  f"{'' if drop is None else format(drop, '.2%'):>7s}  "
                  f"{(r.get('outputs') or {}).get('dir', '')}")
    return EXIT_BAD_INPUT if failed else EXIT_OK
