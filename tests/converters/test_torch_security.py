"""Hostile PyTorch files, built here: nothing of the file runs without consent, a consented run
cannot write outside its job folders (Landlock), zip bombs and unpickler-crashing pickles are
refused before anything reads them, and torch's own noise never reaches the user.

Every case goes through the real CLI (`modeldeck inspect / profile / convert`) as a subprocess
and checks the exit code, one clear line on stderr, the victim file untouched, and the memory
the CLI and its worker used (max RSS of the children).
"""
from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from app.jobs.sandbox import landlock_abi
from converters.errors import ConsentRequired, ModelLoadError
from converters.formats import Trust, open_model
from converters.formats.torch_format import MAX_PICKLE_DEPTH, check_archive
from tests.conftest import REPO

torch = pytest.importorskip("torch")

MODELDECK = [sys.executable, "-m", "app.cli"]
VICTIM_BYTES = b"precious data\n" * 8  # 112 bytes: torch.from_file maps 28 float32 of it
RSS_LIMIT_MB = 1500  # torch import + a small model; a bomb read would take gigabytes
LANDLOCK_ABI, NO_LANDLOCK = landlock_abi()
needs_landlock = pytest.mark.skipif(not LANDLOCK_ABI, reason=f"no Landlock here: {NO_LANDLOCK}")


def _run(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The CLI in a child; its max RSS (and its worker's) is added as .max_rss_mb."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "sys.stderr.write('\\nMAXRSS %d\\n' % "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "default"}
    r = subprocess.run([sys.executable, "-c", wrapper, *MODELDECK, *args], cwd=cwd or REPO,
                       capture_output=True, text=True, timeout=timeout, env=env)
    err, _, rss = r.stderr.rpartition("MAXRSS ")
    r.stderr = err.rstrip("\n")
    r.max_rss_mb = int(rss) / 1024  # type: ignore[attr-defined]  # ru_maxrss is in KiB
    return r


def _one_clear_line(r: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2 and exactly one line on stderr, naming `words`; no traceback, no torch noise."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("modeldeck: error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert r.max_rss_mb < RSS_LIMIT_MB, r.max_rss_mb  # type: ignore[attr-defined]
    return lines[0]


# --- hostile TorchScript --------------------------------------------------------------------

def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "outside" / "victim.bin"
    victim.parent.mkdir()
    victim.write_bytes(VICTIM_BYTES)
    return victim


def _writer_module(victim: Path) -> torch.nn.Module:
    """A model whose forward maps `victim` shared (creating it if missing) and overwrites it."""
    class Writer(torch.nn.Module):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = torch.from_file(self.path, True, 28)  # shared=True: writes go to the file
            t.fill_(7.0)
            return x + t.sum()

    return Writer(str(victim))


def _save(module: torch.nn.Module, path: Path, shape: list[int] | None = (2,)) -> Path:
    extra = {}
    if shape is not None:
        extra["modeldeck.json"] = json.dumps(
            {"inputs": [{"name": "x", "shape": list(shape), "dtype": "float32"}]})
    torch.jit.save(torch.jit.script(module), str(path), _extra_files=extra)
    return path


@pytest.fixture
def writer(tmp_path):
    victim = _victim(tmp_path)
    model = _save(_writer_module(victim), tmp_path / "writer.pt")
    return model, victim


def test_writer_really_writes_when_run(tmp_path):
    """The hostile model does what it claims when run unprotected: the tests below can fail."""
    victim = _victim(tmp_path)
    model = torch.jit.load(str(_save(_writer_module(victim), tmp_path / "w.pt")))
    model(torch.zeros(2))
    assert victim.read_bytes() != VICTIM_BYTES


def test_inspect_never_runs_the_model(writer):
    model, victim = writer
    r = _run("inspect", str(model), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["inputs"][0]["shape"] == [2]  # declared, read without running
    assert any("runs code stored in the file" in note for note in summary["notes"])
    assert victim.read_bytes() == VICTIM_BYTES


@pytest.mark.parametrize("command", ["profile", "convert"])
def test_running_needs_consent(writer, tmp_path, command):
    model, victim = writer
    extra = (["--backend", "torch", "--iterations", "2"] if command == "profile"
             else ["--to", "onnx", "-o", str(tmp_path / "out" / "w.onnx")])
    line = _one_clear_line(_run(command, str(model), *extra), "--trust", "only with your consent")
    assert "trust-pickle" not in line
    assert victim.read_bytes() == VICTIM_BYTES
    assert not (tmp_path / "out").exists()


def test_code_run_on_load_needs_consent(tmp_path):
    """torch.jit.load calls a scripted __setstate__: loading alone would run the file's code."""
    victim = _victim(tmp_path)

    class OnLoad(torch.nn.Module):
        def __init__(self, path: str) -> None:
            super().__init__()
            self.w = torch.ones(2)
            self.path = path

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.w

        @torch.jit.export
        def __getstate__(self) -> tuple[torch.Tensor, bool, str]:
            return self.w, self.training, self.path

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool, str]) -> None:
            self.path = state[2]
            self.w = state[0] + torch.from_file(self.path, True, 28).fill_(7.0).sum()
            self.training = state[1]

    model = _save(OnLoad(str(victim)), tmp_path / "onload.pt")
    torch.jit.load(str(_save(OnLoad(str(tmp_path / "probe.bin")), tmp_path / "probe.pt")))
    assert (tmp_path / "probe.bin").exists()  # loading alone really runs __setstate__
    _one_clear_line(_run("inspect", str(model)), "__setstate__", "--trust")
    assert victim.read_bytes() == VICTIM_BYTES
    with pytest.raises(ConsentRequired, match="OnLoad"):
        open_model(model)
    assert victim.read_bytes() == VICTIM_BYTES


# --- the sandbox of a consented run -----------------------------------------------------------

@pytest.mark.slow
@needs_landlock
@pytest.mark.parametrize("command", ["inspect", "profile"])
def test_consented_run_cannot_write_outside_its_folders(writer, tmp_path, command):
    model, victim = writer
    missing = victim.with_name("created.bin")
    _save(_writer_module(missing), tmp_path / "creator.pt")
    extra = ["--backend", "torch", "--iterations", "2"] if command == "profile" else []
    for path in (model, tmp_path / "creator.pt"):
        r = _run(command, str(path), "--trust", *extra)
        if command == "profile":  # the run fails: its write was refused
            _one_clear_line(r, "Permission denied")
        else:  # the shape probe fails and says so; the graph is still shown
            assert r.returncode == 0, r.stderr
            assert "Permission denied" in r.stdout
    assert victim.read_bytes() == VICTIM_BYTES
    assert not missing.exists()


@needs_landlock
def test_report_names_the_protection(tmp_path):
    model = _save(torch.nn.ReLU(), tmp_path / "relu.pt")
    out = tmp_path / "run.json"
    r = _run("profile", str(model), "--backend", "torch", "--iterations", "3", "--trust",
             "--json", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    sandbox = json.loads(out.read_text())["environment"]["sandbox"]
    assert sandbox.startswith(f"landlock v{LANDLOCK_ABI}: writes limited to ")
    assert "/dev/null" in sandbox and str(tmp_path) not in sandbox


def test_sandbox_status_without_landlock_says_why():
    from app.jobs.sandbox import NOT_NEEDED, SandboxStatus

    assert NOT_NEEDED.describe().startswith("none: not needed")
    status = SandboxStatus("none", 0, (), "this kernel (4.19) has no Landlock")
    assert status.describe() == "none: this kernel (4.19) has no Landlock" and not status.active


# --- zip bombs ---------------------------------------------------------------------------------

def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's crc32_combine: the CRC of A+B from CRC(A), CRC(B) and len(B), in GF(2)."""
    def times(mat: list[int], vec: int) -> int:
        total, i = 0, 0
        while vec:
            if vec & 1:
                total ^= mat[i]
            vec, i = vec >> 1, i + 1
        return total

    def square(mat: list[int]) -> list[int]:
        return [times(mat, mat[n]) for n in range(32)]

    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = square(odd)
    odd = square(even)
    while True:
        even = square(odd)
        if len2 & 1:
            crc1 = times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = square(even)
        if len2 & 1:
            crc1 = times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def _bomb_member(head: bytes, fill: bytes, size: int) -> tuple[bytes, int, int]:
    """(raw deflate data, crc32, uncompressed size): `head` then `fill` repeated to `size`.

    One deflate block of 1 MiB of `fill` is compressed once and repeated (each ends in a full
    flush, so the copies are independent): a 6 GiB member costs milliseconds, not minutes."""
    block = fill * ((1 << 20) // len(fill))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    count = (size - len(head)) // len(block)
    crc, block_crc = zlib.crc32(head), zlib.crc32(block)
    reps_crc, reps_len, n = 0, 0, count  # CRC of `count` blocks by doubling
    power_crc, power_len = block_crc, len(block)
    while n:
        if n & 1:
            reps_crc = _crc32_combine(reps_crc, power_crc, power_len) if reps_len else power_crc
            reps_len += power_len
        power_crc = _crc32_combine(power_crc, power_crc, power_len)
        power_len *= 2
        n >>= 1
    crc = _crc32_combine(crc, reps_crc, reps_len)
    data = first + chunk * count + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return data, crc, len(head) + reps_len


def _write_zip64(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip (zip64 records throughout) of (name, data, crc, size, method) members, written
    by hand because zipfile cannot store a pre-compressed member."""
    central, offset = b"", 0
    with open(path, "wb") as f:
        for name, data, crc, size, method in members:
            raw = name.encode()
            extra = struct.pack("<HHQQ", 1, 16, size, len(data))
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0x21, crc,
                                0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(extra)) + raw + extra)
            f.write(data)
            cextra = struct.pack("<HHQQQ", 1, 24, size, len(data), offset)
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0,
                                   0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(raw), len(cextra), 0,
                                   0, 0, 0, 0xFFFFFFFF) + raw + cextra
            offset = f.tell()
        n = len(members)
        f.write(central)
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central),
                            offset))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, offset + len(central), 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, 0xFFFFFFFF, 0xFFFFFFFF, 0))


def _rebuild(src: Path, dst: Path, replace: str, bomb: tuple[bytes, int, int]) -> Path:
    """`src` with the member whose name ends in `replace` swapped for the bomb."""
    members = []
    with zipfile.ZipFile(src) as zf:
        for info in zf.infolist():
            if info.filename.endswith(replace):
                members.append((info.filename, bomb[0], bomb[1], bomb[2], zipfile.ZIP_DEFLATED))
                replace = "\0"  # only the first match
            else:
                data = zf.read(info)
                members.append((info.filename, data, zlib.crc32(data), len(data),
                                zipfile.ZIP_STORED))
    assert replace == "\0", f"no member ending in {replace} in {src.name}"
    _write_zip64(dst, members)
    return dst


class Small(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("archives")
    torch.export.save(torch.export.export(Small(), (torch.zeros(2, 4),)), str(d / "small.pt2"))
    _save(Small(), d / "small.pt", [2, 4])
    return d


SIX_GIB = 6 * 1024 ** 3
BOMBS = {  # name: (source archive, member replaced, head, fill)
    "pt2 program JSON": ("small.pt2", "models/model.json", b'{"pad": "', b" "),
    "pt2 .pt member": ("small.pt2", ".pt", b"\x80\x02", b"\0"),
    "pt2 weight": ("small.pt2", "weight_0", b"", b"\0"),
    "TorchScript data.pkl": ("small.pt", "data.pkl", b"\x80\x02", b"\0"),
    "TorchScript tensor": ("small.pt", "data/0", b"", b"\0"),
}


def _bomb(archives: Path, tmp_path: Path, case: str) -> Path:
    src, member, head, fill = BOMBS[case]
    dst = tmp_path / f"bomb{Path(src).suffix}"
    return _rebuild(archives / src, dst, member, _bomb_member(head, fill, SIX_GIB))


def test_bomb_builder_makes_real_bombs(archives, tmp_path):
    """The hand-built member is a valid 6 GiB deflate stream with the right CRC (read 8 MiB)."""
    path = _bomb(archives, tmp_path, "pt2 program JSON")
    assert path.stat().st_size < 8 * 1024 ** 2
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("model.json"))
        assert info.file_size >= SIX_GIB - (1 << 20)
        with zf.open(info) as f:
            assert f.read(8 << 20).startswith(b'{"pad": "     ')
    data, crc, size = _bomb_member(b"ab", b"xyz", 3 * (1 << 20) + 100)
    plain = zlib.decompress(data, -15)
    assert len(plain) == size and zlib.crc32(plain) == crc


@pytest.mark.parametrize("case", list(BOMBS))
def test_bombs_are_refused_before_reading(archives, tmp_path, case):
    path = _bomb(archives, tmp_path, case)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ModelLoadError, match="zip bomb") as err:
        open_model(path, Trust(run_code=True))  # consent does not lift size limits
    assert "6.0 GiB" in str(err.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


@pytest.mark.slow
@pytest.mark.parametrize("command", ["inspect", "convert", "profile"])
def test_bomb_through_the_cli(archives, tmp_path, command):
    path = _bomb(archives, tmp_path, "pt2 program JSON" if command != "profile"
                 else "TorchScript tensor")
    extra = {"inspect": [], "convert": ["--to", "onnx", "-o", str(tmp_path / "o.onnx"),
                                        "--trust"],
             "profile": ["--backend", "torch", "--trust", "--iterations", "2"]}[command]
    _one_clear_line(_run(command, str(path), *extra), "zip bomb", "6.0 GiB")
    assert not (tmp_path / "o.onnx").exists()


def test_real_archives_pass_the_check(archives):
    for path in [archives / "small.pt2", archives / "small.pt",
                 *(REPO / "resources" / "samples").glob("*.pt*")]:
        check_archive(path)


# --- pickles that crash unpicklers ------------------------------------------------------------

def _nested_pickle(depth: int) -> bytes:
    """[[[...]]] `depth` lists deep, protocol 2: EMPTY_LIST × depth, APPEND × (depth - 1)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def test_depth_walk_matches_real_nesting():
    value = pickle.loads(_nested_pickle(50))
    for _ in range(49):
        (value,) = value
    assert value == []


@pytest.mark.slow
@pytest.mark.parametrize("member", ["constants.pkl", "data.pkl"])
def test_deeply_nested_pickle_is_refused(archives, tmp_path, member):
    src = archives / "small.pt"
    dst = tmp_path / "deep.pt"
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            data = a.read(info)
            b.writestr(info, _nested_pickle(200_000) if info.filename.endswith(member) else data)
    _one_clear_line(_run("inspect", str(dst), "--trust"), "nests more than", member)


def test_nested_legacy_pickle_is_refused(tmp_path):
    path = tmp_path / "deep.pth"
    path.write_bytes(_nested_pickle(MAX_PICKLE_DEPTH + 10))
    with pytest.raises(ModelLoadError, match="nests more than"):
        open_model(path, Trust(run_code=True))


# --- torch's own noise ---------------------------------------------------------------------------

def _mutate(src: Path, dst: Path, member: str, change) -> Path:
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            data = a.read(info)
            b.writestr(info, change(data) if info.filename.endswith(member) else data)
    return dst


NOISY = {  # damaged files torch answers with warnings or logged tracebacks
    "TorchScript code syntax": ("small.pt", ".py", lambda d: d.replace(b"def forward", b"def (")),
    "TorchScript unknown op": ("small.pt", ".py", lambda d: d.replace(b"torch.linear",
                                                                     b"torch.linear_nope")),
    "pt2 half JSON": ("small.pt2", "models/model.json", lambda d: d[: len(d) // 2]),
    "pt2 unknown op": ("small.pt2", "models/model.json",
                       lambda d: d.replace(b"torch.ops.aten.linear", b"torch.ops.aten.nope")),
    "pt2 bad weight": ("small.pt2", "weight_0", lambda d: d[:3]),
}


@pytest.mark.parametrize("case", list(NOISY))
def test_damaged_files_leave_no_torch_noise(archives, tmp_path, capfd, case):
    """torch logs a 20-line traceback (its own handlers, straight to stderr) for some of these;
    the reader turns each into one ModelLoadError and torch's words into debug records."""
    src, member, change = NOISY[case]
    path = _mutate(archives / src, tmp_path / f"bad{Path(src).suffix}", member, change)
    capfd.readouterr()
    with pytest.raises(ModelLoadError) as err:
        open_model(path, Trust(run_code=True))
    assert "\n" not in str(err.value).strip() or "TorchScript" in str(err.value)
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_damaged_file_through_the_cli(archives, tmp_path):
    src, member, change = NOISY["pt2 unknown op"]
    path = _mutate(archives / src, tmp_path / "bad.pt2", member, change)
    _one_clear_line(_run("inspect", str(path), "--trust"), "bad.pt2", "cannot read")


def test_sandbox_lets_a_job_reach_accelerator_drivers(tmp_path):
    """CUDA, NVML and OpenVINO's GPU/NPU plugins open their device files read-write: a trusted
    model on a GPU must still reach them (found on a machine with an NVIDIA GPU, where every
    trusted torch run on CUDA failed with 'no CUDA GPU visible')."""
    from app.jobs.sandbox import device_files

    dev = tmp_path / "dev"
    for name in ("null", "nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-caps/nvidia-cap1",
                 "dri/renderD128", "accel/accel0", "kfd", "sda", "shm/x"):
        (dev / name).parent.mkdir(parents=True, exist_ok=True)
        (dev / name).touch()
    names = {str(p.relative_to(dev)) for p in device_files(dev)}
    assert names == {"null", "nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-caps/nvidia-cap1",
                     "dri/renderD128", "accel/accel0", "kfd"}
    assert Path("/dev/null") in device_files()


@needs_landlock
def test_a_job_on_an_accelerator_may_write_its_own_proc_files(tmp_path):
    """The CUDA driver writes below /proc/PID as it starts (cuInit failed with 'Error 304: OS
    call failed' under the sandbox on an H200): a job on a GPU may write there, and still
    nowhere else; a job on the CPU may not."""
    import subprocess
    import sys

    code = ("import json, sys; from app.jobs.sandbox import apply_for_job;"
            "spec = json.loads(sys.argv[1]); apply_for_job(spec); out = []\n"
            "for path, text in (('/proc/self/comm', 'modeldeck-t'), (sys.argv[2], 'x')):\n"
            "    try:\n"
            "        open(path, 'w').write(text); out.append('written')\n"
            "    except OSError as e:\n"
            "        out.append(e.strerror)\n"
            "print(json.dumps(out))")
    root = str(Path(__file__).parents[2])
    outside = tmp_path / "outside.txt"
    results = {}
    for device in ("CUDA", "CPU"):
        spec = {"job": "profile", "config": {"device": device, "trust_code": True}}
        r = subprocess.run([sys.executable, "-c", code, json.dumps(spec), str(outside)],
                           capture_output=True, text=True, timeout=60, cwd=root,
                           env={**os.environ, "PYTHONPATH": root})
        results[device] = json.loads(r.stdout.strip().splitlines()[-1])
    assert results["CUDA"] == ["written", "Permission denied"]
    assert results["CPU"] == ["Permission denied", "Permission denied"]
    assert not outside.exists()
