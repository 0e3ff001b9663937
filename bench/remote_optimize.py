"""What `optimize --target` costs over a local optimize: sending, start-up, fetching the winner.

A real sshd on 127.0.0.1 (tests/app/sshd.py) stands for the target: the same CPU, so the two
searches should agree on the winner and its speedup, and the difference in wall time is the
remote machinery's (connect, cache check, transfer, fetch). Rounds are interleaved (local,
remote); every search builds and measures afresh (no optimize cache) so the work is the same.
The first remote run fills the target's cache (engine, model, data); the rounds after it send
nothing, which the 'sent' column shows.

    .venv/bin/python bench/remote_optimize.py [--rounds 2] [--sample vgg|cnn] [--only ort-int8]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"


def _spec(model: Path, eval_npz: Path, calib: Path, only: tuple[str, ...], out: Path) -> dict:
    from app.optimize.search import OptimizeSpec

    return OptimizeSpec(model=str(model), output_dir=str(out), eval=str(eval_npz),
                        calib=str(calib), only=only, threads=1, use_cache=False,
                        subset=128, screen_rounds=2, full_rounds=4, final_rounds=6,
                        time_budget_s=300).to_dict()


def _run(opt: dict, target: str | None, out: Path) -> dict:
    from app.targets.optimize_cli import target_spec
    from app.targets.sweep import run_on_target

    t0 = time.perf_counter()
    if target:
        spec = target_spec(opt, False, str(out))
    else:
        spec = {"job": "optimize", "optimize": {**opt, "output_dir": str(out)}}
    o = run_on_target(spec, target)
    wall = time.perf_counter() - t0
    if o.status != "ok":
        raise SystemExit(f"optimize on {target or 'local'} failed: {o.error}\n{o.stderr_tail}")
    r = o.result
    b = r.get("best") or {}
    return {"wall": wall, "search_s": r["seconds"], "best": b.get("name"),
            "speedup": (b.get("speedup") or {}).get("value", float("nan")),
            "target": r.get("target") or {}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sample", choices=["vgg", "cnn"], default="vgg")
    ap.add_argument("--only", default="ort-int8")
    args = ap.parse_args()
    from tests.app.sshd import sshd_missing, start_sshd, target_for

    if sshd_missing():
        print(f"skipped: {sshd_missing()}")
        return 0
    if args.sample == "vgg":
        model, ev, calib = (SAMPLES / "digits_vgg.onnx", SAMPLES / "digits_vgg_test.npz",
                            SAMPLES / "digits_vgg_calib.npz")
    else:
        model, ev, calib = (SAMPLES / "digits_cnn.onnx", SAMPLES / "digits_test.npz",
                            SAMPLES / "digits_test.npz")
    root = Path(tempfile.mkdtemp(prefix="modeldeck-remote-opt-"))
    (root / "home").mkdir()
    os.environ["HOME"] = str(root / "home")
    os.environ["MODELDECK_TARGETS_FILE"] = str(root / "targets.json")
    server = start_sshd(root / "sshd", ports=1)
    try:
        from app.targets.config import TargetStore
        from app.targets.probe import check_target

        store = TargetStore()
        store.add(target_for(server, "t"))
        check_target(store.get("t"), accept_new=True)
        opt = _spec(model, ev, calib, tuple(args.only.split(",")), root / "unused")
        rows: dict[str, list[dict]] = {"local": [], "remote": []}
        for i in range(args.rounds):
            rows["local"].append(_run(opt, None, root / f"local-{i}"))
            rows["remote"].append(_run(opt, "t", root / f"remote-{i}"))
        print(f"optimize {model.name} --only {args.only} (no cache, 1 thread), "
              f"{args.rounds} interleaved rounds")
        print(f"{'round':<8s} {'where':<7s} {'wall s':>8s} {'search s':>9s} {'best':<18s} "
              f"{'speedup':>8s} {'sent MB':>8s} {'fetched MB':>10s} {'fetch s':>8s}")
        for i in range(args.rounds):
            for k in ("local", "remote"):
                x = rows[k][i]
                t = x["target"]
                print(f"{i:<8d} {k:<7s} {x['wall']:>8.2f} {x['search_s']:>9.2f} "
                      f"{str(x['best']):<18s} {x['speedup']:>7.2f}x "
                      f"{t.get('sent_bytes', 0) / 2**20:>8.2f} "
                      f"{t.get('fetched_bytes', 0) / 2**20:>10.2f} {t.get('fetch_s', 0):>8.3f}")
        lw = statistics.median(x["wall"] for x in rows["local"])
        rw = statistics.median(x["wall"] for x in rows["remote"])
        later = rows["remote"][1:] or rows["remote"]
        over = statistics.median(x["wall"] - x["search_s"] for x in later)
        lover = statistics.median(x["wall"] - x["search_s"] for x in rows["local"])
        print(f"median wall: local {lw:.2f} s, remote {rw:.2f} s ({rw / lw:.2f}x); outside the "
              f"search: local {lover:.2f} s, remote (cache warm) {over:.2f} s")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
