"""The new commands (`report`, `graph`, `diff`) given damaged or hostile input, run as a user
runs them: a subprocess, one clear line and exit 2, never an internal error (exit 1), never the
source overwritten."""
from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SAMPLE = REPO / "resources" / "samples" / "digits_cnn.onnx"


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})


def one_clear_error(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert r.stderr.strip().startswith("modeldeck: error:")


@pytest.fixture(scope="module")
def real_report(tmp_path_factory) -> dict:
    """A real profile of the sample (ONNX Runtime, 60 iterations): every field a run writes."""
    out = tmp_path_factory.mktemp("run") / "run.json"
    r = run_cli("profile", str(SAMPLE), "--iterations", "60", "--threads", "1",
                "--json", str(out))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def _render(tmp_path: Path, report: object | str) -> subprocess.CompletedProcess:
    src = tmp_path / "run.json"
    src.write_text(report if isinstance(report, str) else json.dumps(report))
    return run_cli("report", str(src), "--html", str(tmp_path / "out.html"),
                   "--csv", str(tmp_path / "csv"))


@pytest.mark.slow
@pytest.mark.parametrize("field,value", [
    (("stability", "reasons"), [1, "text"]),  # was AttributeError: 'int' has no 'get'
    (("stability", "reasons"), 7),  # was TypeError: not iterable
    (("stability", "advice"), 3),
    (("latency_ms", "ci_confidence"), "high"),  # was ValueError in the interval text
    (("latency_ms", "ci_confidence"), [0.95]),
    (("environment", "load_before"), 2.5),  # was TypeError: float is not iterable
    (("latency_ms", "p999"), -1.0),  # was ValueError: histogram bins must increase
])
def test_report_with_hostile_field_values_renders_or_says_why(tmp_path, real_report, field,
                                                               value):
    bad = copy.deepcopy(real_report)
    bad[field[0]][field[1]] = value
    r = _render(tmp_path, bad)
    assert r.returncode in (0, 2), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    if r.returncode == 0:
        assert "Stability" in (tmp_path / "out.html").read_text()


def test_report_of_deeply_nested_json_is_one_clear_error(tmp_path):
    r = _render(tmp_path, "[" * 100_000 + "]" * 100_000)  # was RecursionError, exit 1
    one_clear_error(r)
    assert "nested" in r.stderr


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.parametrize("cmd", [
    lambda m, o: ("graph", m, "-o", o),  # ONNX is recognised by content, whatever its name
    lambda m, o: ("diff", m, str(SAMPLE), "-o", o),
    lambda m, o: ("diff", str(SAMPLE), m, "-o", o),
    lambda m, o: ("profile", m, "--iterations", "5", "--json", o),
    lambda m, o: ("profile", m, "--iterations", "5", "--html", o),
    lambda m, o: ("compare", m, str(SAMPLE), "--rounds", "2", "--html", o),
], ids=["graph", "diff-base", "diff-other", "profile-json", "profile-html", "compare-html"])
def test_an_output_named_as_the_source_model_is_refused_and_the_model_kept(tmp_path, cmd):
    model = tmp_path / "model.svg"
    model.write_bytes(SAMPLE.read_bytes())
    before = _sha(model)
    r = run_cli(*cmd(str(model), str(model)))
    one_clear_error(r)
    assert "input of this command" in r.stderr
    assert _sha(model) == before
    # the same file reached by another spelling (a relative path) is the same file
    r = run_cli(*cmd(str(model), str(model.parent / "." / model.name)))
    one_clear_error(r)
    assert _sha(model) == before


@pytest.mark.slow
def test_report_never_overwrites_its_run(tmp_path, real_report):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(real_report))
    before = _sha(run)
    one_clear_error(run_cli("report", str(run), "--html", str(run)))
    one_clear_error(run_cli("report", str(run), "--csv", str(run)))  # was FileExistsError, exit 1
    assert _sha(run) == before
    other = tmp_path / "other.txt"
    other.write_text("x")
    r = run_cli("report", str(run), "--csv", str(other))
    one_clear_error(r)
    assert "not a folder" in r.stderr


def test_diff_output_in_a_missing_folder_or_on_a_folder_is_one_clear_error(tmp_path):
    # both were internal errors (FileNotFoundError / IsADirectoryError, exit 1) after parsing
    r = run_cli("diff", str(SAMPLE), str(SAMPLE), "-o", str(tmp_path / "missing" / "d.svg"))
    one_clear_error(r)
    assert "does not exist" in r.stderr
    (tmp_path / "d.svg").mkdir()
    r = run_cli("diff", str(SAMPLE), str(SAMPLE), "-o", str(tmp_path / "d.svg"))
    one_clear_error(r)
    assert "is a folder" in r.stderr


def test_one_interleaved_round_never_claims_a_difference():
    # one round runs the reference first and never reverses the order, and has no between-round
    # spread: `compare A A --rounds 1` said "faster: 3.8% to 39.1% less time" for a model
    # against itself. Ten timings per side, the second side 20 % lower.
    import numpy as np

    from profilers.compare import ab_ratio

    ref = [np.linspace(1.0, 1.1, 10)]
    other = [np.linspace(0.8, 0.88, 10)]
    one = ab_ratio(ref, other)
    assert not one["latency_verdict"].startswith(("faster", "slower")), one
    assert "round" in one["latency_verdict"]
    two = ab_ratio(ref * 2, other * 2)  # two rounds may say so
    assert two["latency_verdict"].startswith("faster"), two


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "inf"])
def test_graph_scale_must_be_a_positive_number(tmp_path, scale):
    # 0 and -1 wrote a 1x1 pixel PNG and said 'wrote'; nan said 'cannot convert float NaN'
    out = tmp_path / "g.png"
    r = run_cli("graph", str(SAMPLE), "-o", str(out), "--scale", scale)
    assert r.returncode == 2, r.stderr
    assert "--scale" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_compare_of_models_with_other_inputs_says_so_not_the_size_you_set():
    # digits_cnn takes 1x1x8x8, digits_vgg 1x1x32x32: the user set no size, yet the message was
    # "input: dim 2 is fixed to 32 in the model, the size you set has 8"
    vgg = REPO / "resources" / "samples" / "digits_vgg.onnx"
    r = run_cli("compare", str(SAMPLE), str(vgg), "--rounds", "2", "--iterations", "10")
    one_clear_error(r)
    assert "digits_vgg.onnx" in r.stderr and "inputs of digits_cnn.onnx" in r.stderr
    ts = REPO / "resources" / "samples" / "digits_cnn.ts.pt"  # other errors keep their words
    r = run_cli("compare", str(SAMPLE), str(ts), "--rounds", "2", "--iterations", "10")
    one_clear_error(r)
    assert "--trust" in r.stderr and "inputs of" not in r.stderr


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_report_of_a_fifo_or_a_device_is_refused_without_reading(tmp_path, kind):
    # `report /dev/zero-link --html x` read until the kernel killed it; a FIFO waited forever
    import os

    run = tmp_path / "run.json"
    if kind == "fifo":
        os.mkfifo(run)
    else:
        run.symlink_to("/dev/zero")
    r = run_cli("report", str(run), "--html", str(tmp_path / "x.html"), timeout=60)
    one_clear_error(r)
    assert "not a regular file" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--inputs", "--eval"])
def test_compare_data_that_is_a_fifo_is_refused_not_waited_on(tmp_path, option):
    # the job opened the FIFO and waited until killed
    import os

    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    r = run_cli("compare", str(SAMPLE), str(SAMPLE), "--rounds", "2", "--iterations", "5",
                option, str(fifo), timeout=120)
    one_clear_error(r)
    assert "named pipe" in r.stderr


@pytest.mark.slow
def test_a_png_shrunk_to_fit_the_pixel_cap_says_so(tmp_path):
    # DenseNet-121 with every group open is ~50,000 units tall: the PNG came out 305 x 16384 px,
    # its labels a third of their size, and the command said only 'wrote'
    from tests.conftest import light_model

    r = run_cli("graph", str(light_model("densenet121")), "-o", str(tmp_path / "d.png"),
                "--expand", "all")
    assert r.returncode == 0, r.stderr
    assert "note: the PNG was shrunk" in r.stderr and ".svg" in r.stderr
    r = run_cli("graph", str(SAMPLE), "-o", str(tmp_path / "s.png"))
    assert r.returncode == 0 and "note:" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("change", [
    {"passes": [5]},  # was an internal error: 'int' object is not subscriptable
    {"passes": "simplify"},  # was an internal error: string indices must be integers
    {"passes": [{"name": "simplify", "options": [1]}]},  # was 'error: TypeError: cannot ...'
    {"passes": [{"options": {}}]},
    {"calib": {"x": 1}},  # was 'error: TypeError: expected str, bytes or os.PathLike ...'
    {"to": 5},
], ids=["int-pass", "str-passes", "list-options", "no-name", "dict-calib", "int-to"])
def test_a_hostile_recipe_is_one_clear_error(tmp_path, change):
    from app.pipeline import LINEAGE_SCHEMA

    recipe = {"schema": LINEAGE_SCHEMA, "source": {"path": str(SAMPLE)}, "to": None,
              "passes": [{"name": "simplify", "options": {}}], "calib": None, **change}
    path = tmp_path / "r.lineage.json"
    path.write_text(json.dumps(recipe))
    out = tmp_path / "out.onnx"
    r = run_cli("convert", str(SAMPLE), "--recipe", str(path), "-o", str(out))
    one_clear_error(r)
    assert "recipe" in r.stderr and "TypeError" not in r.stderr
    assert not out.exists()


def test_a_recipe_that_is_a_fifo_is_refused(tmp_path):
    import os

    fifo = tmp_path / "r.lineage.json"
    os.mkfifo(fifo)
    r = run_cli("convert", str(SAMPLE), "--recipe", str(fifo), "-o", str(tmp_path / "o.onnx"),
                timeout=60)
    one_clear_error(r)
    assert "named pipe" in r.stderr
