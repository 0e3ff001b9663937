"""Each way a worker job can go wrong, as a user meets it: a crash in a native parser, a model
that never finishes, a model that eats memory, a worker killed mid-run, a conversion killed or
out of disk, a source inside the output's folders, and a worker or its children outliving a job.
Real models, real backends, real processes; only the crashes are caused by a signal."""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.jobs.client import JobClient
from app.jobs.limits import Limits
from app.pipeline import ConvertSpec, StepSpec
from profilers.runner import RunConfig
from tests.conftest import REPO, SAMPLE_ONNX


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def endless_loop_model(path: Path) -> Path:
    """y = x + 10^12 (a Loop adding 1 that many times): runs for days."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.ones(1, np.float32), "one")])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)], "endless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array(10**12, np.int64), "trips"),
         numpy_helper.from_array(np.array(True), "cond")])
    return _save(graph, path)


def constant_of_shape_model(path: Path, side: int) -> Path:
    """y = x + sum(ones(side, side)): a side x side float32 tensor made at run time."""
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                          value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
         helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
         helper.make_node("Add", ["x", "s"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.array([side, side], np.int64), "shape")])
    return _save(graph, path)


def _workers_of(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for k in kids:
        try:
            if "app.jobs.worker" in " ".join(k.cmdline()):
                out.append(k)
        except psutil.Error:
            pass
    return out


def _group_members(pgid: int) -> list[int]:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                found.append(p.pid)
        except (ProcessLookupError, PermissionError):
            pass
    return found


# --- crashes ----------------------------------------------------------------------------------

def test_worker_crash_during_inspect_is_exit_2_and_one_line(light):
    """A native crash in the parser (here a real SIGSEGV delivered to the worker while it reads
    ResNet-50) ends the CLI with exit 2 and one line, never a core dump of the CLI itself."""
    cli = subprocess.Popen([sys.executable, "-m", "app.cli", "inspect", str(light("resnet50"))],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    workers: list[psutil.Process] = []
    while not workers and time.monotonic() < deadline and cli.poll() is None:
        workers = _workers_of(cli.pid)
        time.sleep(0.005)
    assert workers, "the CLI never started a worker for inspect"
    os.kill(workers[0].pid, signal.SIGSEGV)
    out, err = cli.communicate(timeout=60)
    r = subprocess.CompletedProcess(cli.args, cli.returncode, out, err)
    assert r.returncode == 2, (r.returncode, err)
    line = one_line(r)
    assert "reader crashed on this file (SIGSEGV in the native parser)" in line
    assert "damaged or hostile" in line
    assert out == ""


# --- time -------------------------------------------------------------------------------------

def test_endless_model_stops_at_the_timeout(tmp_path):
    model = endless_loop_model(tmp_path / "endless.onnx")
    t0 = time.monotonic()
    r = run_cli("profile", str(model), "--iterations", "2", "--warmup", "0", "--no-samplers",
                "--timeout", "4", "--json", str(tmp_path / "run.json"))
    assert time.monotonic() - t0 < 60
    assert r.returncode == 2, r.stderr
    assert "did not finish within 4 s" in one_line(r)
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["status"] == "failed" and report["errors"][0]["kind"] == "timeout"
    assert [s["stage"] for s in report["stages"]][-1] == "first"  # stuck in its first inference


def test_no_progress_limit_stops_one_endless_inference(tmp_path):
    model = endless_loop_model(tmp_path / "endless.onnx")
    cfg = RunConfig(model=str(model), iterations=2, warmup=0)
    outcome = JobClient({"job": "profile", "config": cfg.to_dict()},
                        limits=Limits(timeout_s=120, idle_s=4, memory_mb=None)).run()
    assert outcome.status == "failed" and outcome.error_kind == "timeout"
    assert "no progress for 4 s in stage 'first'" in outcome.error
    assert outcome.samples.get("rss_mb"), "sampler readings kept arriving meanwhile"


# --- memory -----------------------------------------------------------------------------------

def test_memory_cap_stops_a_model_that_grows_past_it(tmp_path):
    """ConstantOfShape 20000x20000 (1.6 GB) against a 400 MB cap: stopped near the cap, said
    so, and the report of the failed run written."""
    model = constant_of_shape_model(tmp_path / "big.onnx", 20000)
    r = run_cli("profile", str(model), "--iterations", "3", "--warmup", "0",
                "--memory-limit", "400", "--json", str(tmp_path / "run.json"))
    assert r.returncode == 2, r.stderr
    line = one_line(r)
    assert "used more than 400 MB of memory" in line and "--memory-limit" in line
    stopped_at = float(line.split("(")[1].split(" MB when stopped")[0])
    assert 400 < stopped_at < 2000
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["status"] == "failed" and report["errors"][0]["kind"] == "memory"


def test_memory_backstop_refuses_one_huge_allocation_at_once(tmp_path):
    """6.4 GB asked in one allocation under a 500 MB cap (env variable): the kernel limit
    refuses it before any of it is touched; a clear exit 2, the machine never near it."""
    model = constant_of_shape_model(tmp_path / "huge.onnx", 40000)
    t0 = time.monotonic()
    r = run_cli("profile", str(model), "--iterations", "1", "--warmup", "0", "--no-samplers",
                env={"MODELDECK_MEM_LIMIT_MB": "500"})
    assert r.returncode == 2, r.stderr
    assert "memory" in one_line(r).lower()
    assert time.monotonic() - t0 < 60


# --- a worker killed mid-run ------------------------------------------------------------------

def test_profile_killed_mid_run_still_writes_its_report(tmp_path):
    """The JSON report of a run whose worker is killed: status failed, the error, the samples
    and stages received before the kill."""
    out = tmp_path / "run.json"
    master, slave = pty.openpty()  # a terminal on stderr turns on the live status line
    cli = subprocess.Popen([sys.executable, "-m", "app.cli", "profile", str(SAMPLE_ONNX),
                            "--duration", "60", "--json", str(out)], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 90
    try:
        while b" it  p50" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert b" it  p50" in seen, seen[-500:]
        workers = _workers_of(cli.pid)
        assert workers
        os.kill(workers[0].pid, signal.SIGKILL)
        cli.wait(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
        os.close(master)
    assert cli.returncode == 1
    report = json.loads(out.read_text())
    assert report["status"] == "failed"
    assert "SIGKILL" in report["errors"][0]["message"]
    assert report["iterations"] > 0 and report["latency_ms"]["p50"] > 0
    assert len(report["timelines"]["latency_ms"]["values"]) == report["iterations"]
    assert [s["stage"] for s in report["stages"]][:2] == ["inspect", "load"]


# --- conversions ------------------------------------------------------------------------------

def test_conversion_killed_mid_run_leaves_no_work_folder(tmp_path):
    out = tmp_path / "out.xml"
    work = tmp_path / ".out.work"
    spec = ConvertSpec(model=str(SAMPLE_ONNX), output=str(out), to="openvino",
                       passes=(StepSpec("fp16"),))
    client = JobClient({"job": "convert", "convert": spec.to_dict()}, timeout_s=300).start()
    deadline = time.monotonic() + 120
    while not (work.is_dir() and any(work.rglob("*"))) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert work.is_dir(), "the conversion never wrote to its work folder"
    os.kill(client.proc.pid, signal.SIGKILL)
    outcome = client.wait()
    assert outcome.status == "failed" and outcome.error_kind == "crashed"
    assert not work.exists()
    assert not list(tmp_path.rglob("*.partial")) and not out.exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB file system (tmpfs), smaller than the sample model."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("how, name", [(["--pass", "fp16"], "out.onnx"),
                                       (["--to", "openvino"], "out.xml")], ids=["onnx", "ir"])
def test_full_disk_says_so_and_leaves_nothing(tiny_disk, how, name):
    r = run_cli("convert", str(SAMPLE_ONNX), *how, "-o", str(tiny_disk / name))
    assert r.returncode == 2, r.stderr
    line = one_line(r)
    assert f"no space left on {tiny_disk}" in line and "needed ~" in line
    assert list(tiny_disk.iterdir()) == []


def test_source_inside_the_steps_folder_is_refused_untouched(tmp_path):
    out = tmp_path / "out.onnx"
    r = run_cli("convert", str(SAMPLE_ONNX), "--pass", "fp16", "-o", str(out))
    assert r.returncode == 0, r.stderr
    step = tmp_path / "out.steps" / "01-fp16.onnx"
    before = step.read_bytes()
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    r = run_cli("convert", str(step), "--pass", "fp16", "-o", str(out))
    assert r.returncode == 2
    assert "is inside" in one_line(r) and "never overwrites its source" in one_line(r)
    assert step.read_bytes() == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing


# --- nothing outlives its job -----------------------------------------------------------------

def test_no_process_of_a_job_outlives_it(tmp_path):
    """OpenVINO, ONNX Runtime, a refused file and a killed worker: when each job has ended, its
    process group (the worker and anything it forked) is empty."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    specs = [
        {"job": "profile", "config": RunConfig(model=str(SAMPLE_ONNX), backend="openvino",
                                               iterations=5, warmup=1).to_dict()},
        {"job": "inspect", "model": str(SAMPLE_ONNX)},
        {"job": "inspect", "model": str(bad)},
    ]
    groups = []
    for spec in specs:
        client = JobClient(spec, timeout_s=120).start()
        groups.append(client.proc.pid)
        assert os.getpgid(client.proc.pid) == client.proc.pid  # its own group
        client.wait()
    killed = JobClient({"job": "profile", "config": RunConfig(
        model=str(SAMPLE_ONNX), duration_s=60).to_dict()}, timeout_s=3).start()
    groups.append(killed.proc.pid)
    assert killed.wait().error_kind == "timeout"
    for pgid in groups:
        assert _group_members(pgid) == [], f"group {pgid} outlived its job"


def test_worker_dies_with_its_client(tmp_path):
    """A client killed outright (no chance to clean up): its worker notices and ends itself."""
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from app.jobs.client import JobClient\n"
            "from profilers.runner import RunConfig\n"
            "c = JobClient({'job': 'profile', 'config': RunConfig(model=%r, duration_s=120)"
            ".to_dict()}).start()\n"
            "print(c.proc.pid, flush=True)\n"
            "time.sleep(300)\n") % (str(REPO), str(SAMPLE_ONNX))
    client = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    worker = int(client.stdout.readline())
    assert psutil.pid_exists(worker)
    client.kill()
    client.wait()
    deadline = time.monotonic() + 15
    while _group_members(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group_members(worker) == []

