"""Remote targets against a real OpenSSH server started here (127.0.0.1, throwaway keys).

The target is this same machine reached over SSH: two ports of one sshd stand for two targets,
each with its own cache folder. HOME points at a temporary folder, so ~/.ssh/known_hosts and
the targets file are the test's own.
"""
from __future__ import annotations

import glob
import os
import statistics
import sys
import time
from pathlib import Path

import pytest

from app.targets.config import Target, TargetStore
from tests.app.sshd import sshd_missing, start_sshd
from tests.conftest import SAMPLE_ONNX

pytestmark = [pytest.mark.skipif(sshd_missing() is not None, reason=sshd_missing() or ""),
              pytest.mark.slow]  # a real sshd and remote workers: seconds each


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sshd")
    home = root / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("MODELDECK_TARGETS_FILE", str(root / "targets.json"))
        server = start_sshd(root / "server")
        try:
            yield server
        finally:
            server.stop()


def _target(sshd, name: str, port_index: int = 0, **kw) -> Target:
    base = dict(name=name, host="127.0.0.1", port=sshd.ports[port_index], user=sshd.user,
                identity=str(sshd.user_key), python=sys.executable,
                cache_dir=str(sshd.root.parent / f"cache-{name}"))
    return Target(**{**base, **kw})


@pytest.fixture(scope="module")
def targets(sshd):
    """Targets a and b (the two ports), host key pinned through `targets check`."""
    from app.cli import main

    store = TargetStore()
    for name, i in (("a", 0), ("b", 1)):
        store.add(_target(sshd, name, i), replace_existing=True)
        assert main(["targets", "check", name, "--accept-new-host-key", "--json"]) == 0
    return store


def _profile_spec(**config) -> dict:
    from profilers.backends import BackendOptions
    from profilers.runner import RunConfig

    cfg = RunConfig(model=str(SAMPLE_ONNX), options=BackendOptions(threads=1),
                    **{"iterations": 200, **config})
    return {"job": "profile", "config": cfg.to_dict()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its reaper is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _job_pids(cache: Path) -> list[int]:
    """The pids in the target's worker.pid files: the worker and its keeper."""
    return [int(n) for p in glob.glob(str(cache / "jobs" / "*" / "worker.pid"))
            for n in Path(p).read_text().split()]


def _wait_no_jobs(cache: Path, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while glob.glob(str(cache / "jobs" / "*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not glob.glob(str(cache / "jobs" / "*"))


def _wait_gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


# --- host keys ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_unknown_host_key_is_shown_refused_then_pinned(sshd, capsys):
    from app.cli import main

    TargetStore().add(_target(sshd, "fresh"), replace_existing=True)
    known = Path(os.environ["HOME"]) / ".ssh" / "known_hosts"
    before = known.read_text() if known.exists() else ""
    pattern = f"[127.0.0.1]:{sshd.ports[0]}"
    if pattern in before:  # pinned by another test: start from an empty known_hosts
        known.write_text("")
    assert main(["targets", "check", "fresh"]) == 2  # no tty to ask: refused, not pinned
    err = capsys.readouterr().err
    assert "host key is not known yet" in err and "SHA256:" in err
    assert "--accept-new-host-key" in err
    assert pattern not in (known.read_text() if known.exists() else "")
    assert main(["targets", "check", "fresh", "--accept-new-host-key"]) == 0
    out = capsys.readouterr().out
    assert "reachable" in out and "python" in out and "onnxruntime" in out
    assert "isa" in out and "memory" in out and "disk" in out
    assert pattern in known.read_text()  # pinned: the next connection needs no confirmation
    assert main(["targets", "check", "fresh", "--json"]) == 0
    if before and pattern in before:
        known.write_text(before)


def test_changed_host_key_is_refused(sshd, tmp_path, monkeypatch, capsys):
    from app.cli import main
    from tests.app.sshd import keygen

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    other = keygen(tmp_path / "impostor").with_suffix(".pub").read_text().split()
    known = home / ".ssh" / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.ports[0]} {other[0]} {other[1]}\n")
    monkeypatch.setenv("HOME", str(home))
    TargetStore().add(_target(sshd, "pinned-other"), replace_existing=True)
    for extra in ([], ["--accept-new-host-key"]):  # accepting new keys never accepts a change
        assert main(["targets", "check", "pinned-other", *extra]) == 2
        err = capsys.readouterr().err
        assert "host key has CHANGED" in err and "Refused" in err and "ssh-keygen -R" in err
    assert known.read_text().count("\n") == 1  # nothing pinned over the old key
    from app.targets.sweep import run_on_target  # a job is refused the same way

    out = run_on_target(_profile_spec(), "pinned-other")
    assert out.status == "failed" and out.error_kind == "host_key"
    assert "CHANGED" in out.error


def test_unreachable_and_refused_keys_are_clear(sshd, tmp_path):
    from app.targets.sweep import run_on_target
    from tests.app.sshd import free_port, keygen

    TargetStore().add(_target(sshd, "nobody-home", port=free_port()), replace_existing=True)
    out = run_on_target({"job": "devices"}, "nobody-home")
    assert out.status == "failed" and out.error_kind == "target"
    assert "cannot reach target nobody-home" in out.error
    stranger = keygen(tmp_path / "stranger")
    TargetStore().add(_target(sshd, "wrong-key", identity=str(stranger)), replace_existing=True)
    out = run_on_target({"job": "devices"}, "wrong-key")
    assert out.status == "failed" and "authorized_keys" in out.error, out.error


# --- runs ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_profile_on_target_agrees_with_local_and_second_run_sends_nothing(sshd, targets):
    from app.targets.sweep import run_on_target

    TargetStore().add(_target(sshd, "c", cache_dir=str(sshd.root.parent / "cache-c-fresh")),
                      replace_existing=True)
    spec = _profile_spec(iterations=400)
    local_p50, remote_p50, remote = [], [], []
    for _ in range(3):  # interleaved rounds: the machine's load changes between runs
        lo = run_on_target(spec, None)
        ro = run_on_target(spec, "c")
        assert lo.status == "ok", lo.error
        assert ro.status == "ok", (ro.error, ro.stderr_tail[-2000:])
        local_p50.append(lo.result["latency_ms"]["p50"])
        remote_p50.append(ro.result["latency_ms"]["p50"])
        remote.append(ro.result)
    first, second = remote[0]["target"], remote[1]["target"]
    assert first["name"] == "c" and first["url"].startswith("ssh://")
    assert first["sent_bytes"] >= SAMPLE_ONNX.stat().st_size and first["sent_files"] >= 2
    # all cached by sha256 (unless the sources changed between the runs: a new engine then)
    assert (second["sent_bytes"], second["sent_files"]) == (0, 0) or (
        second["engine"] != first["engine"] and second["sent_files"] == 1), (first, second)
    # the report names the model as the user knows it, and the target's environment
    r = remote[1]
    assert r["model"]["path"] == str(SAMPLE_ONNX)
    assert lo.result["model"]["sha256"] == r["model"]["sha256"]
    assert "cache-c-fresh" not in str(r["model"]) and r["iterations"] == 400
    ratio = statistics.median(remote_p50) / statistics.median(local_p50)
    assert 1 / 1.6 < ratio < 1.6, (local_p50, remote_p50)


@pytest.mark.slow
def test_link_killed_mid_run_is_clear_and_leaves_no_remote_process(sshd, targets):
    from app.targets.sweep import job_client

    killed: list[int] = []
    cache = Path(TargetStore().get("a").cache_dir)
    pids: list[int] = []

    def on_event(e):
        if (not killed and e.get("event") == "samples"
                and "latency_ms" in (e.get("series") or {})):
            pids.extend(_job_pids(cache))
            killed.append(sshd.kill_connections())

    client = job_client(_profile_spec(iterations=None, duration_s=120), "a", on_event)
    outcome = client.start().wait()
    assert killed and killed[0] >= 1
    assert outcome.status == "failed" and outcome.error_kind == "link", outcome.error
    assert "connection to target a" in outcome.error and "lost" in outcome.error
    assert "measure" in outcome.error  # says where it was
    assert len(pids) == 2  # the worker and its keeper
    for pid in pids:
        assert _wait_gone(pid), f"remote process {pid} outlived its connection"
    from app.targets.sweep import run_on_target  # the target is usable again at once

    out = run_on_target({"job": "devices"}, "a")
    assert out.status == "ok", out.error
    _wait_no_jobs(cache)


def test_job_folders_of_dead_workers_are_cleared_on_connect(sshd, targets):
    """What a keeper killed with SIGKILL could not remove, the next connection does."""
    from app.targets.sweep import run_on_target

    cache = Path(TargetStore().get("a").cache_dir)
    dead = cache / "jobs" / "cut-off-run"
    dead.mkdir(parents=True)
    (dead / "worker.pid").write_text("999999999 999999998\n")  # no such processes
    out = run_on_target({"job": "devices"}, "a")
    assert out.status == "ok", out.error
    assert out.result["target"]["stale_jobs_removed"] >= 1 and not dead.exists()


@pytest.mark.slow
def test_cancel_reaches_the_remote_worker(sshd, targets):
    from app.targets.sweep import job_client

    pids: list[int] = []
    client = job_client(_profile_spec(iterations=None, duration_s=120), "a")

    def on_event(e):
        if e.get("event") == "stage" and e.get("stage") == "measure" and not pids:
            pids.extend(_job_pids(Path(TargetStore().get("a").cache_dir)))
            client.cancel()

    client.on_event = on_event
    outcome = client.start().wait()
    assert outcome.status == "cancelled", (outcome.status, outcome.error)
    assert len(pids) == 2  # the worker and its keeper
    for pid in pids:
        assert _wait_gone(pid)


@pytest.mark.slow
def test_sweep_over_two_targets_uses_both(sshd, targets):
    from app.targets.sweep import run_sweep

    specs = [_profile_spec(iterations=50) for _ in range(4)]
    seen: dict[str, set] = {}
    items = run_sweep(specs, ["a", "b"],
                      on_event=lambda t, i, e: seen.setdefault(t, set()).add(i))
    assert [it.index for it in items] == [0, 1, 2, 3]
    assert {it.target for it in items} == {"a", "b"}
    for it in items:
        assert it.outcome.status == "ok", it.outcome.error
        assert it.outcome.result["target"]["name"] == it.target  # labelled by target
        assert it.index in seen[it.target]


@pytest.mark.slow
def test_cli_profile_and_devices_on_targets(sshd, targets, capsys, tmp_path):
    from app.cli import main

    assert main(["devices", "--target", "a"]) == 0
    assert "onnxruntime" in capsys.readouterr().out
    out_json = tmp_path / "runs.json"
    assert main(["profile", str(SAMPLE_ONNX), "--target", "a", "--target", "b", "--threads",
                 "1", "--iterations", "50", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "== target a" in text and "== target b" in text
    import json

    runs = json.loads(out_json.read_text())
    assert sorted(r["target"]["name"] for r in runs) == ["a", "b"]
    assert main(["compare", str(SAMPLE_ONNX), str(SAMPLE_ONNX), "--target", "a",
                 "--iterations", "30"]) == 0


@pytest.mark.slow
def test_setup_makes_a_venv_with_only_the_chosen_backend(sshd, targets, capsys):
    """A Python with none of our packages becomes a target that runs a profile."""
    from app.cli import main

    base = getattr(sys, "_base_executable", None) or sys.executable
    TargetStore().add(_target(sshd, "bare", python=base,
                              cache_dir=str(sshd.root.parent / "cache-bare")),
                      replace_existing=True)
    assert main(["targets", "check", "bare"]) == 0
    assert "the engine cannot run yet" in capsys.readouterr().out
    assert main(["targets", "setup", "bare", "--backends", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "set up with onnxruntime" in out and "ONNX Runtime CPU" in out
    t = TargetStore().get("bare")
    assert t.python.endswith("/venv/bin/python") and t.backends == ("onnxruntime",)
    from app.targets.probe import check_target

    pkgs = check_target(t)["packages"]
    assert {"numpy", "onnx", "onnxruntime"} <= set(pkgs)
    assert not {"torch", "openvino", "nncf"} & set(pkgs)  # only what was asked for
    from app.targets.sweep import run_on_target

    outcome = run_on_target(_profile_spec(iterations=50), "bare")
    assert outcome.status == "ok", (outcome.error, outcome.stderr_tail[-2000:])
    libs = outcome.result["environment"]["libraries"]  # the target's, not this computer's
    assert libs.get("onnxruntime") and not libs.get("torch") and not libs.get("openvino")


@pytest.mark.slow
def test_models_with_companion_files_run_remotely(sshd, targets, tmp_path):
    """OpenVINO IR (.xml + .bin) and ONNX with external weights (.onnx.data) travel whole."""
    import onnx
    import openvino as ov

    from app.targets.sweep import run_on_target
    from tests.conftest import light_model

    xml = tmp_path / "squeezenet.xml"
    ov.save_model(ov.convert_model(str(light_model("squeezenet"))), str(xml),
                  compress_to_fp16=False)
    ext = tmp_path / "digits_ext.onnx"
    onnx.save(onnx.load(str(SAMPLE_ONNX)), str(ext), save_as_external_data=True,
              all_tensors_to_one_file=True, location="digits_ext.onnx.data", size_threshold=0)
    assert ext.stat().st_size < 100_000  # the weights are in the .data file
    for model, backend, companion in ((xml, "openvino", ".bin"), (ext, "onnxruntime", ".data")):
        spec = _profile_spec(iterations=20)
        spec["config"].update(model=str(model), backend=backend)
        if backend == "openvino":
            spec["config"]["options"]["precision"] = "f32"
        local = run_on_target(spec, None)
        remote = run_on_target(spec, "b")
        assert local.status == "ok", local.error
        assert remote.status == "ok", (remote.error, remote.stderr_tail[-2000:])
        assert remote.result["target"]["sent_files"] >= 2  # the model and its weights
        lm, rm = local.result["model"], remote.result["model"]
        assert rm["path"] == str(model) and rm["sha256"] == lm["sha256"]
        assert (rm["params"], rm["macs"]) == (lm["params"], lm["macs"]) and rm["params"] > 0
        assert remote.result["workload"] == local.result["workload"]


def test_ssh_config_is_honoured(sshd, targets):
    """An alias from ~/.ssh/config supplies host, port, user and key, as ssh users expect."""
    from app.targets.probe import check_target
    from app.targets.config import parse_url

    cfg = Path(os.environ["HOME"]) / ".ssh" / "config"
    cfg.parent.mkdir(exist_ok=True)
    cfg.write_text(f"Host edge-alias\n  HostName 127.0.0.1\n  Port {sshd.ports[0]}\n"
                   f"  User {sshd.user}\n  IdentityFile {sshd.user_key}\n")
    try:
        t = parse_url("ssh://edge-alias", name="alias").with_(python=sys.executable)
        assert (t.port, t.user, t.identity) == (None, None, None)
        # the host key was pinned under 127.0.0.1's address by the `targets` fixture
        facts = check_target(t)  # no new key to accept: found under its real address
        assert facts["reachable"] and facts["python"] == sys.version.split()[0]
        # pinning through an alias records the real address and port, as OpenSSH does
        known = cfg.parent / "known_hosts"
        saved = known.read_text()
        known.write_text("")
        try:
            check_target(t, accept_new=True)
            assert known.read_text().startswith(f"[127.0.0.1]:{sshd.ports[0]} ssh-ed25519 ")
            check_target(t)  # and it is found there next time
        finally:
            known.write_text(saved)
    finally:
        cfg.unlink()


@pytest.mark.slow
def test_silently_dead_link_is_found_by_keepalive_and_the_target_ends_the_worker(
        sshd, targets, monkeypatch):
    """A frozen ssh session (SIGSTOP: the TCP connection stays open, nothing answers) is what
    a pulled cable looks like: keepalives tell the desktop, missing heartbeats the target."""
    import signal

    from app.targets.sweep import job_client

    monkeypatch.setenv("MODELDECK_HEARTBEAT_S", "8")  # the keeper's limit, for a short test
    frozen: list[int] = []
    cache = Path(TargetStore().get("b").cache_dir)
    pids: list[int] = []

    def on_event(e):
        if (not frozen and e.get("event") == "samples"
                and "latency_ms" in (e.get("series") or {})):
            pids.extend(_job_pids(cache))
            for pid in sshd.session_pids():
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)

    client = job_client(_profile_spec(iterations=None, duration_s=300), "b", on_event)
    try:
        outcome = client.start().wait()
        assert frozen
        assert outcome.error_kind == "link", (outcome.status, outcome.error)
        assert "connection to target b" in outcome.error
        assert len(pids) == 2
        for pid in pids:  # ended on the target's side while its ssh session is still frozen
            assert _wait_gone(pid, 30), f"remote process {pid} outlived the dead link"
    finally:
        for pid in frozen:
            for sig in (signal.SIGKILL, signal.SIGCONT):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass


def test_memory_cap_is_held_on_the_target(sshd, targets):
    """The desktop cannot see a remote worker's memory: the keeper on the target holds the
    cap and says so in the same words as for a local job."""
    from app.targets.sweep import run_on_target

    outcome = run_on_target(_profile_spec(iterations=None, duration_s=60), "a", memory_mb=40)
    assert outcome.status == "failed" and outcome.error_kind == "memory", outcome.error
    assert "more than 40 MB of memory" in outcome.error
    cache = Path(TargetStore().get("a").cache_dir)
    _wait_no_jobs(cache)  # the keeper removes its job folder as it exits


def test_a_target_never_set_up_says_so_before_sending_anything(sshd, targets, capsys):
    from app.cli import main

    base = getattr(sys, "_base_executable", None) or sys.executable
    TargetStore().add(_target(sshd, "unset", python=base,
                              cache_dir=str(sshd.root.parent / "cache-unset")),
                      replace_existing=True)
    assert main(["profile", str(SAMPLE_ONNX), "--target", "unset", "--iterations", "5"]) == 2
    err = capsys.readouterr().err
    assert "onnx" in err and "not installed" in err and "set the target up" in err
    assert not list((sshd.root.parent / "cache-unset" / "blobs").iterdir())  # nothing sent


# --- optimize on a target ----------------------------------------------------------------------

def _optimize_spec(tmp_path: Path, **kw) -> dict:
    """A short search on the digits sample (as tests/app/test_optimize.py keeps it short)."""
    from app.optimize.search import OptimizeSpec
    from app.targets.optimize_cli import target_spec

    eval_npz = SAMPLE_ONNX.parent / "digits_test.npz"
    opt = OptimizeSpec(model=str(SAMPLE_ONNX), output_dir=str(tmp_path / "unused"),
                       eval=str(eval_npz), calib=str(eval_npz), subset=96, screen_rounds=2,
                       full_rounds=3, final_rounds=3, round_ms=10.0, threads=1,
                       only=("ort-int8-dynamic",), time_budget_s=60, **kw)
    return target_spec(opt.to_dict(), False, str(tmp_path / "out"))


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_optimize_on_a_target_fetches_the_winner_and_a_second_run_sends_no_model(
        sshd, targets, tmp_path):
    import json

    from app.targets.sweep import run_on_target

    cache = sshd.root.parent / "cache-opt-fresh"  # nothing sent to it by other tests
    TargetStore().add(_target(sshd, "opt", cache_dir=str(cache)), replace_existing=True)
    events: list[dict] = []
    spec = _optimize_spec(tmp_path)
    first = run_on_target(spec, "opt", events.append)
    assert first.status == "ok", (first.error, first.stderr_tail[-2000:])
    r = first.result
    out = tmp_path / "out"
    assert r["outputs"]["dir"] == str(out) and r["model"] == str(SAMPLE_ONNX)
    assert any(e.get("event") == "candidate" for e in events)  # streamed while it ran
    assert any(e.get("event") == "stage" and e.get("stage") == "fetch" for e in events)
    saved = json.loads((out / "optimize.json").read_text())
    assert saved["target"]["name"] == "opt" and saved["target"]["url"].startswith("ssh://")
    assert saved["probe"]["cpu_model"] is not None  # the target's machine, probed there
    assert str(cache) not in json.dumps(saved["outputs"])  # local paths only
    winner = Path(saved["best"]["path"])
    assert winner.parent == out and winner.is_file()
    # the file the target built (still in its optimize cache) is the file that came home
    built = next(t for t in saved["tried"] if t["name"] == saved["best"]["name"])["path"]
    assert built.startswith(str(cache)) and Path(built).is_file()
    assert _sha(winner) == _sha(Path(built))
    fetched = {f["name"]: f["sha256"] for f in saved["target"]["fetched"]}
    assert fetched[winner.name] == _sha(winner)
    for name in ("optimize.json", "optimize.html", "recipe.lineage.json"):
        assert (out / name).is_file(), name
    assert str(cache / "outputs") not in (out / "recipe.lineage.json").read_text()
    assert str(out) in (out / "optimize.html").read_text()
    assert not list(out.parent.glob(".out.part-*"))  # nothing left aside
    assert not list((cache / "outputs").iterdir())  # the target's copy removed
    second = run_on_target(spec, "opt")
    assert second.status == "ok", second.error
    t1, t2 = first.result["target"], second.result["target"]
    assert t1["sent_bytes"] >= SAMPLE_ONNX.stat().st_size
    # model and data cached by sha256 (an engine sent again only if the sources changed)
    assert (t2["sent_bytes"], t2["sent_files"]) == (0, 0) or (
        t2["engine"] != t1["engine"] and t2["sent_files"] == 1), (t1, t2)
    assert second.result["cache"]["hits"] > 0  # the target's optimize cache answered
    _wait_no_jobs(cache)


@pytest.mark.slow
def test_optimize_link_lost_leaves_no_process_and_nothing_half_copied(sshd, targets, tmp_path):
    from app.targets.sweep import job_client

    cache = Path(TargetStore().get("b").cache_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")
    pids: list[int] = []
    killed: list[int] = []

    def on_event(e):
        if not killed and e.get("event") == "candidate":
            pids.extend(_job_pids(cache))
            killed.append(sshd.kill_connections())

    spec = _optimize_spec(tmp_path, use_cache=False)
    outcome = job_client(spec, "b", on_event).start().wait()
    assert killed and killed[0] >= 1
    assert outcome.status == "failed" and outcome.error_kind == "link", outcome.error
    assert "connection to target b" in outcome.error and "lost" in outcome.error
    assert len(pids) == 2  # the worker and its keeper
    for pid in pids:
        assert _wait_gone(pid), f"remote process {pid} outlived its connection"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert not list(tmp_path.glob(".out.part-*"))


@pytest.mark.slow
def test_cli_optimize_on_two_targets_writes_a_folder_each(sshd, targets, tmp_path, capsys):
    import json

    from app.cli import main

    eval_npz = SAMPLE_ONNX.parent / "digits_test.npz"
    out = tmp_path / "opt"
    code = main(["optimize", str(SAMPLE_ONNX), "--eval", str(eval_npz), "--only",
                 "ort-int8-dynamic", "--time-budget", "20s", "--subset", "64",
                 "--target", "a", "--target", "b", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    for name in ("a", "b"):
        saved = json.loads((out / name / "optimize.json").read_text())
        assert saved["target"]["name"] == name
        assert saved["outputs"]["dir"] == str(out / name)
    assert "== target a" in text and "== target b" in text
    table = text.rsplit("target ", 1)[-1]
    assert "best" in table and str(out / "a") in text and str(out / "b") in text


@pytest.mark.slow
def test_link_cut_while_fetching_leaves_the_local_folder_as_it_was(sshd, targets, tmp_path):
    """The outputs come home aside and move in only when all arrived with the right sha256."""
    import asyncio

    import asyncssh

    from app.targets.fetch import fetch_outputs
    from app.targets.remote import RemoteJob, Session

    target = TargetStore().get("a")
    remote = Path(target.cache_dir) / "outputs" / "cut-while-fetching"
    remote.mkdir(parents=True, exist_ok=True)
    for name in ("model-optimized.onnx", "optimize.json"):
        (remote / name).write_bytes(os.urandom(4 << 20) if name.endswith(".onnx") else b"{}")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "mine.txt").write_text("the user's own file")
    left = tmp_path / ".out.part-999999999-x"  # what a relay killed mid-fetch left behind
    left.mkdir()
    (left / "model-optimized.onnx").write_bytes(b"half")
    cut: list[int] = []

    def emit(e):
        if e.get("event") == "progress" and not cut:
            cut.append(sshd.kill_connections())  # mid-file: the rest never arrives

    async def go():
        session = await Session.open(target)
        try:
            await session.hello([])
            job = RemoteJob(spec={"job": "optimize"}, engine_dir="", job_dir="",
                            outputs=[(str(remote), str(dest))])
            await fetch_outputs(session, job, {}, lambda o: o, emit)
        finally:
            await session.close()

    with pytest.raises((OSError, asyncssh.Error)):
        asyncio.run(go())
    assert cut and cut[0] >= 1
    assert sorted(p.name for p in dest.iterdir()) == ["mine.txt"]
    assert not list(tmp_path.glob(".out.part-*"))


@pytest.mark.slow
def test_optimize_stopped_on_a_target_brings_its_best_so_far_home(sshd, targets, tmp_path):
    from app.targets.sweep import job_client

    spec = _optimize_spec(tmp_path, use_cache=False)
    spec["optimize"]["only"] = ["ort-int8-dynamic", "ort-fp16"]
    client = job_client(spec, "b")

    def on_event(e):
        if e.get("event") == "candidate" and e["point"]["name"] != "baseline":
            client.cancel()

    client.on_event = on_event
    outcome = client.start().wait()
    assert outcome.status == "ok", (outcome.status, outcome.error)
    assert outcome.result["status"] == "stopped" and outcome.result["stopped"]
    assert (tmp_path / "out" / "optimize.json").is_file()
    assert outcome.result["target"]["fetched_files"] >= 2


def test_output_folders_a_lost_link_left_are_cleared_on_connect(sshd, targets):
    """An output folder nobody fetched (the link was lost) goes after an hour; a recent one
    (a job being fetched right now) stays."""
    from app.targets.sweep import run_on_target

    outs = Path(TargetStore().get("a").cache_dir) / "outputs"
    old, recent = outs / "lost-an-hour-ago", outs / "being-fetched"
    for d in (old, recent):
        d.mkdir(parents=True, exist_ok=True)
        (d / "model-optimized.onnx").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    out = run_on_target({"job": "devices"}, "a")
    assert out.status == "ok", out.error
    assert not old.exists() and recent.exists()


@pytest.mark.slow
def test_optimize_failing_on_a_target_is_one_clear_line_and_leaves_no_outputs(
        sshd, targets, tmp_path):
    from app.targets.sweep import run_on_target

    bad = tmp_path / "labels-missing.npz"
    import numpy as np

    np.savez(bad, nothing=np.zeros(3))
    spec = _optimize_spec(tmp_path)
    spec["optimize"]["eval"] = str(bad)
    cache = Path(TargetStore().get("a").cache_dir)
    before = set((cache / "outputs").glob("*"))  # other tests' folders stay where they are
    out = run_on_target(spec, "a")
    assert out.status == "failed" and out.error_kind == "bad_input", (out.status, out.error)
    assert "labels-missing.npz" in out.error and str(cache) not in out.error  # as the user knows it
    assert not (tmp_path / "out").exists()
    assert set((cache / "outputs").glob("*")) == before
