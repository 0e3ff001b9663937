"""The conversion pipeline end to end on the trained sample: planning, measurements after every
step, lineage and replay, where fidelity broke, and that the source is never touched."""
from __future__ import annotations

import json
import shutil
import signal
import threading
from pathlib import Path

import pytest

from app.jobs.client import JobClient
from converters.errors import ModelDeckError
from converters.formats import sha256_of
from converters.passes import PassError
from app.pipeline import ConvertSpec, StepSpec, plan, run_pipeline, spec_from_recipe
from tests.conftest import SAMPLES

SAMPLE_PT2 = SAMPLES / "digits_cnn.pt2"


@pytest.fixture
def sample(tmp_path) -> Path:
    """A private copy, so a bug that writes the source cannot damage the shipped one."""
    dst = tmp_path / "src" / "digits_cnn.onnx"
    dst.parent.mkdir()
    shutil.copy(SAMPLES / "digits_cnn.onnx", dst)
    return dst


def _names(steps):
    return [s.name for s in steps]


def test_plan_inserts_conversions():
    spec = ConvertSpec(model="m.pt2", output="o.xml", to="openvino",
                       passes=(StepSpec("fp16"),))
    assert _names(plan("torch", spec)) == ["export-onnx", "export-openvino", "fp16"]
    spec = ConvertSpec(model="m.pt2", output="o.xml", to="openvino",
                       passes=(StepSpec("prune-channels", {"ratio": "0.2"}),))
    assert _names(plan("torch", spec)) == ["prune-channels", "export-onnx", "export-openvino"]
    spec = ConvertSpec(model="m.onnx", output="o.onnx", passes=(StepSpec("prune-channels"),))
    with pytest.raises(PassError, match="prune-channels runs on PyTorch models only"):
        plan("onnx", spec)
    with pytest.raises(PassError, match="unknown option"):
        plan("onnx", ConvertSpec(model="m", output="o", passes=(StepSpec("fp16", {"x": "1"}),)))


def test_fp16_then_openvino_every_step_measured(sample, tmp_path):
    before = sha256_of([sample])
    out = tmp_path / "out" / "digits_fp16.xml"
    events = []
    result = run_pipeline(ConvertSpec(model=str(sample), output=str(out), to="openvino",
                                      passes=(StepSpec("fp16"),), eval="sample"),
                          events.append)
    assert sha256_of([sample]) == before
    assert [s["pass"] for s in result["steps"]] == ["source", "fp16", "export-openvino"]
    src, fp16, ov = result["steps"]
    assert fp16["size_bytes"] < 0.6 * src["size_bytes"]
    assert src["params"] == fp16["params"]
    # OpenVINO folds BatchNorm into the convolutions: a few hundred fewer parameters
    assert 0.995 * src["params"] < ov["params"] <= src["params"]
    for st in (fp16, ov):
        assert st["fidelity"]["cosine"] > 0.999 and st["fidelity"]["top1_agreement"] > 0.99
        assert abs(st["accuracy"]["accuracy"] - src["accuracy"]["accuracy"]) < 0.01
        assert Path(st["output"]).exists()
        assert Path(st["output"] + ".lineage.json").exists()
    assert out.exists() and out.with_suffix(".bin").exists()
    lineage = json.loads(Path(result["lineage"]).read_text())
    assert lineage["parent_sha256"] == before
    assert lineage["output_sha256"] == sha256_of([out, out.with_suffix(".bin")])
    assert [e["step"]["pass"] for e in events if e["event"] == "step"] == \
        ["source", "fp16", "export-openvino"]


def test_recipe_replays_the_same_steps(sample, tmp_path):
    first = run_pipeline(ConvertSpec(model=str(sample), output=str(tmp_path / "a.onnx"),
                                     passes=(StepSpec("prune-magnitude", {"amount": "0.5"}),)))
    spec, warnings = spec_from_recipe(first["lineage"], str(sample), str(tmp_path / "b.onnx"))
    assert warnings == []
    assert spec.passes == (StepSpec("prune-magnitude", {"amount": "0.5"}),)
    second = run_pipeline(spec)
    assert second["steps"][1]["sparsity"] == pytest.approx(first["steps"][1]["sparsity"])
    assert sha256_of([tmp_path / "a.onnx"]) == sha256_of([tmp_path / "b.onnx"])
    with pytest.raises(ModelDeckError, match="not a ModelDeck lineage"):
        spec_from_recipe(sample, str(sample), "x.onnx")


def test_names_the_step_and_node_where_fidelity_broke(sample, tmp_path):
    result = run_pipeline(ConvertSpec(
        model=str(sample), output=str(tmp_path / "lr.onnx"),
        passes=(StepSpec("simplify"),
                StepSpec("lowrank", {"ratio": "0.02", "energy": "none"})),
        fidelity_threshold=0.999))
    broken = result["first_broken"]
    assert broken["step"] == 2 and broken["pass"] == "lowrank"
    assert broken["node"] is not None  # the diverging node inside the ONNX graph


def test_refuses_to_overwrite_the_source(sample):
    with pytest.raises(ModelDeckError, match="never overwrites its source"):
        run_pipeline(ConvertSpec(model=str(sample), output=str(sample),
                                 passes=(StepSpec("fp16"),)))
    with pytest.raises(ModelDeckError, match=r"name the output \*\.xml"):
        run_pipeline(ConvertSpec(model=str(sample), output="x.onnx", to="openvino"))


def test_killed_conversion_leaves_no_output_and_source_intact(sample, tmp_path):
    before = sha256_of([sample])
    out = tmp_path / "q.xml"
    spec = ConvertSpec(model=str(sample), output=str(out), to="openvino",
                       passes=(StepSpec("int8-static", {"samples": "300"}),), calib="sample")
    started = threading.Event()

    def on_event(e):
        if e.get("event") == "stage" and e.get("stage") == "int8-static":
            started.set()

    client = JobClient({"job": "convert", "convert": spec.to_dict()}, on_event=on_event,
                       timeout_s=300).start()
    box = {}
    waiter = threading.Thread(target=lambda: box.setdefault("o", client.wait()))
    waiter.start()
    assert started.wait(120), "quantization never started"
    client.proc.send_signal(signal.SIGKILL)
    waiter.join(60)
    assert box["o"].status == "failed"
    assert not out.exists() and not out.with_suffix(".bin").exists()
    assert sha256_of([sample]) == before


def test_cli_convert_json(sample, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "d.onnx"
    r = subprocess.run([sys.executable, "-m", "app.cli", "convert", str(sample), "--pass",
                        "int8-dynamic", "--eval", "sample", "-o", str(out), "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    step = res["steps"][-1]
    for key in ("pass", "output", "size_bytes", "params", "sparsity", "fidelity", "accuracy",
                "seconds"):
        assert key in step
    assert set(step["fidelity"]) >= {"cosine", "max_abs_err", "sqnr_db", "top1_agreement"}
    assert step["accuracy"]["accuracy"] > 0.95
    r = subprocess.run([sys.executable, "-m", "app.cli", "convert", str(sample), "--pass",
                        "nope", "-o", str(tmp_path / "x.onnx")], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "unknown pass 'nope'" in r.stderr


def test_relative_paths_survive_quantizers_that_change_directory(sample, tmp_path, monkeypatch):
    """ORT's quantization tools run inside the work folder; relative paths must not break."""
    monkeypatch.chdir(sample.parent)
    result = run_pipeline(ConvertSpec(model=sample.name, output="out/q.onnx",
                                      passes=(StepSpec("int8-static"),), calib="sample"))
    assert Path(result["output"]) == sample.parent / "out" / "q.onnx"
    assert (sample.parent / "out" / "q.onnx").exists()


@pytest.fixture(autouse=True, scope="module")
def _consent_to_run_models():
    """These tests run PyTorch programs in-process: running one needs the user's consent."""
    from converters.formats import consent

    with consent(True):
        yield



# --- order: passes run as given; orders the rules refuse are refused before any work --------

@pytest.mark.parametrize("fmt, names, rule", [
    ("torch", ["distill", "prune-channels"], "distill-after-pruning"),
    ("torch", ["distill"], "distill-after-pruning"),
    ("torch", ["prune-magnitude", "distill"], "no-distill-after-zeroing"),
    ("onnx", ["int8-dynamic", "simplify"], "simplify-before-precision"),
    ("onnx", ["fp16", "prune-magnitude"], "precision-last"),
    ("onnx", ["fp16", "int8-dynamic"], "one-precision"),
    ("torch", ["simplify", "prune-channels"], "format"),
])
def test_plan_refuses_an_invalid_order_naming_the_rule(fmt, names, rule):
    spec = ConvertSpec(model="m", output="o", passes=tuple(StepSpec(n) for n in names))
    with pytest.raises(PassError, match=f"rule {rule}") as info:
        plan(fmt, spec)
    assert all(n in str(info.value) for n in names)  # says which passes clash


def test_plan_keeps_the_order_given():
    for names in (["simplify", "prune-magnitude"], ["prune-magnitude", "simplify"]):
        spec = ConvertSpec(model="m", output="o", passes=tuple(StepSpec(n) for n in names))
        assert _names(plan("onnx", spec)) == names
    spec = ConvertSpec(model="m.pt2", output="o.onnx",
                       passes=(StepSpec("prune-channels"), StepSpec("distill"),
                               StepSpec("simplify"), StepSpec("int8-dynamic")))
    assert _names(plan("torch", spec)) == ["prune-channels", "distill", "export-onnx",
                                           "simplify", "int8-dynamic"]
    # a teacher given by hand is a reason to distill without pruning first
    spec = ConvertSpec(model="m.pt2", output="o.pt2",
                       passes=(StepSpec("distill", {"teacher": "big.pt2"}),))
    assert _names(plan("torch", spec)) == ["distill"]


def test_recipe_with_an_invalid_order_is_refused(sample, tmp_path):
    recipe = tmp_path / "r.lineage.json"
    recipe.write_text(json.dumps({"schema": "modeldeck.lineage/1", "source": {},
                                  "passes": [{"name": "int8-dynamic"}, {"name": "simplify"}]}))
    spec, _ = spec_from_recipe(recipe, str(sample), str(tmp_path / "r.onnx"))
    with pytest.raises(PassError, match="rule simplify-before-precision.*simplify → int8"):
        run_pipeline(spec)
    assert not (tmp_path / "r.onnx").exists() and not (tmp_path / "r.steps").exists()


@pytest.mark.slow
def test_prune_then_distill_learns_from_the_model_before_pruning(tmp_path):
    """The sample's PyTorch model: distill's teacher is the unpruned source, its lineage says it
    changed the weights, and accuracy on the held-out digits is measured after each step."""
    src = tmp_path / "src" / "digits_cnn.pt2"
    src.parent.mkdir()
    shutil.copy(SAMPLE_PT2, src)
    out = tmp_path / "pd.pt2"
    result = run_pipeline(ConvertSpec(
        model=str(src), output=str(out), calib="sample", eval="sample", trust_code=True,
        passes=(StepSpec("prune-channels", {"ratio": "0.5"}), StepSpec("distill"))))
    source, pruned, distilled = result["steps"]
    assert [s["pass"] for s in result["steps"]] == ["source", "prune-channels", "distill"]
    lineage = json.loads(Path(distilled["output"] + ".lineage.json").read_text())
    assert lineage["pass"] == "distill" and lineage["changed"] is True
    assert lineage["options"]["teacher"] == str(src)  # the model before pruning
    assert lineage["parent_sha256"] == pruned["sha256"] != lineage["output_sha256"]
    acc = [s["accuracy"]["accuracy"] for s in (source, pruned, distilled)]
    print(f"\naccuracy source {acc[0]:.4f}, prune-channels 0.5 {acc[1]:.4f}, "
          f"+distill {acc[2]:.4f}")
    assert acc[1] < acc[0] - 0.05  # pruning half the channels costs accuracy...
    assert acc[2] > acc[1] + 0.05  # ...which distillation from the unpruned model recovers
    final = json.loads(Path(result["lineage"]).read_text())
    assert [s["pass"] for s in final["steps"]] == ["prune-channels", "distill"]
    assert all(s["changed"] for s in final["steps"])


def test_cli_runs_passes_in_the_order_given_and_refuses_an_invalid_one(sample, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    def convert(*passes: str, out: str):
        args = [a for p in passes for a in ("--pass", p)]
        return subprocess.run([sys.executable, "-m", "app.cli", "convert", str(sample), *args,
                               "-o", str(tmp_path / out), "--json"], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    for order in (("prune-magnitude", "simplify"), ("simplify", "prune-magnitude")):
        r = convert(*order, out="-".join(order) + ".onnx")
        assert r.returncode == 0, r.stderr
        steps = json.loads(r.stdout)["steps"]
        assert [s["pass"] for s in steps] == ["source", *order]
        lineage = json.loads(Path(json.loads(r.stdout)["lineage"]).read_text())
        assert [s["pass"] for s in lineage["steps"]] == list(order)
    r = convert("int8-dynamic", "simplify", out="bad.onnx")
    assert r.returncode == 2
    assert "rule simplify-before-precision" in r.stderr and "simplify → int8-dynamic" in r.stderr
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow
def test_real_model_simplify_then_int8_dynamic_runs_and_the_reverse_is_refused(tmp_path):
    """rapidocr 3.10.0's text-direction classifier (paddle2onnx: every weight in a Constant
    node, 566 nodes), through the CLI in both orders."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.real_models import wheel_member

    model = wheel_member("rapidocr", "3.10.0",
                         "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx")

    def convert(*passes: str, out: str):
        args = [a for p in passes for a in ("--pass", p)]
        return subprocess.run([sys.executable, "-m", "app.cli", "convert", str(model), *args,
                               "-o", str(tmp_path / out), "--json"], cwd=REPO,
                              capture_output=True, text=True, timeout=600)

    r = convert("simplify", "int8-dynamic", out="good.onnx")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert [s["pass"] for s in res["steps"]] == ["source", "simplify", "int8-dynamic"]
    source, simplified, quantized = res["steps"]
    assert simplified["params"] < source["params"]  # Constant weights folded (BN into Conv)
    assert quantized["fidelity"]["cosine"] > 0.99
    lineage = json.loads(Path(res["lineage"]).read_text())
    assert [s["pass"] for s in lineage["steps"]] == ["simplify", "int8-dynamic"]
    assert all(s["changed"] for s in lineage["steps"])
    r = convert("int8-dynamic", "simplify", out="bad.onnx")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "rule simplify-before-precision" in r.stderr
    assert "a valid order: simplify → int8-dynamic" in r.stderr
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "bad.steps").exists()
