"""What running on a remote target costs over running here: start-up and transfer.

A real sshd on 127.0.0.1 (tests/app/sshd.py) stands for the target, so the figures are the
protocol's and the tools' costs without a network's latency or bandwidth (add those for a real
link: one round trip per connection step, the bytes sent once per engine version and model).
Rounds are interleaved (local, remote warm, remote cold) and medians printed, with ratios.

    .venv/bin/python bench/remote_overhead.py [--rounds 3] [--big-mb 64]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _profile_spec(model: str) -> dict:
    from profilers.backends import BackendOptions
    from profilers.runner import RunConfig

    cfg = RunConfig(model=model, options=BackendOptions(threads=1), iterations=100,
                    samplers=False)
    return {"job": "profile", "config": cfg.to_dict()}


def _timed(spec: dict, target: str | None) -> dict:
    from app.targets.sweep import job_client

    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_event(e: dict) -> None:
        now = time.perf_counter() - t0
        marks.setdefault("first_event", now)
        if e.get("event") == "stage":
            marks.setdefault(f"stage_{e.get('stage')}", now)

    out = job_client(spec, target, on_event).start().wait()
    wall = time.perf_counter() - t0
    if out.status != "ok":
        raise SystemExit(f"run on {target or 'local'} failed: {out.error}\n{out.stderr_tail}")
    r = out.result
    return {"wall": wall, "to_load": marks.get("stage_load", float("nan")),
            "to_measure": marks.get("stage_measure", float("nan")),
            "p50": r["latency_ms"]["p50"], "target": r.get("target") or {}}


def _big_model(path: Path, mb: int) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = int((mb * 2**20 / 4) ** 0.5)
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((n, n),
                                                                          dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])], [w])
    onnx.save(helper.make_model(g), str(path))
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--big-mb", type=int, default=64)
    args = ap.parse_args()
    from tests.app.sshd import sshd_missing, start_sshd, target_for

    if sshd_missing():
        print(f"skipped: {sshd_missing()}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="modeldeck-remote-bench-"))
    (root / "home").mkdir()
    os.environ["HOME"] = str(root / "home")
    os.environ["MODELDECK_TARGETS_FILE"] = str(root / "targets.json")
    server = start_sshd(root / "sshd", ports=1)
    try:
        from app.targets.config import TargetStore
        from app.targets.probe import check_target
        from tests.conftest import SAMPLE_ONNX

        store = TargetStore()
        store.add(target_for(server, "warm"))
        check_target(store.get("warm"), accept_new=True)
        spec = _profile_spec(str(SAMPLE_ONNX))
        _timed(spec, "warm")  # fills the warm cache
        rows: dict[str, list[dict]] = {"local": [], "remote warm": [], "remote cold": []}
        for r in range(args.rounds):
            rows["local"].append(_timed(spec, None))
            rows["remote warm"].append(_timed(spec, "warm"))
            store.add(target_for(server, f"cold{r}", cache_dir=str(root / f"cold{r}")))
            rows["remote cold"].append(_timed(spec, f"cold{r}"))
        med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "to_load",
                                                                   "to_measure", "p50")}
               for k, v in rows.items()}
        print(f"profile of {SAMPLE_ONNX.name} ({SAMPLE_ONNX.stat().st_size / 2**20:.1f} MB), "
              f"100 iterations, 1 thread; medians of {args.rounds} interleaved rounds")
        print(f"{'':<12s} {'job wall s':>10s} {'to load s':>10s} {'to measure s':>12s} "
              f"{'p50 ms':>8s}")
        for k, m in med.items():
            print(f"{k:<12s} {m['wall']:>10.3f} {m['to_load']:>10.3f} {m['to_measure']:>12.3f} "
                  f"{m['p50']:>8.4f}")
        loc = med["local"]
        for k in ("remote warm", "remote cold"):
            print(f"{k}: +{med[k]['wall'] - loc['wall']:.3f} s per job "
                  f"({med[k]['wall'] / loc['wall']:.2f}x local), start-up to load "
                  f"+{med[k]['to_load'] - loc['to_load']:.3f} s, p50 ratio "
                  f"{med[k]['p50'] / loc['p50']:.2f}")
        for k in ("remote warm", "remote cold"):
            t = [x["target"] for x in rows[k]]
            parts = {f: statistics.median(x[f] for x in t) for f in
                     ("connect_s", "check_s", "transfer_s", "worker_started_s", "first_event_s")}
            sent = statistics.median(x["sent_bytes"] for x in t)
            print(f"{k} breakdown (inside the relay): connect {parts['connect_s']:.3f} s, cache "
                  f"check {parts['check_s']:.3f} s, transfer {parts['transfer_s']:.3f} s "
                  f"({sent / 2**20:.2f} MB), worker started at {parts['worker_started_s']:.3f} s, "
                  f"first event at {parts['first_event_s']:.3f} s")
        # bulk transfer rate through SFTP (loopback: the tools' own ceiling)
        big = _big_model(root / "big.onnx", args.big_mb)
        store.add(target_for(server, "bulk", cache_dir=str(root / "bulk")))

        async def send() -> tuple[float, int]:
            from app.targets.remote import Session

            s = await Session.open(store.get("bulk"))
            try:
                await s.prepare(_profile_spec(str(big)))  # engine + the big model
                return s.stats.transfer_s, s.stats.sent_bytes
            finally:
                await s.close()

        secs, sent = asyncio.run(send())
        print(f"bulk: {sent / 2**20:.1f} MB sent in {secs:.2f} s = {sent / 2**20 / secs:.0f} MB/s "
              "(SFTP over loopback, sha256 of the model not included)")
        t0 = time.perf_counter()
        from app.targets.remote import make_blob

        make_blob(big)
        print(f"hashing it (sha256, done on every run to find it in the cache): "
              f"{time.perf_counter() - t0:.2f} s")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
