"""The backend dock's target picker against a real sshd: remote devices, a remote run's live
events, the unknown-host-key question, and the state shown when the link drops."""
from __future__ import annotations

import json

import pytest

from app.targets.config import TargetStore
from tests.app.sshd import sshd_missing, start_sshd, target_for

pytestmark = [pytest.mark.skipif(sshd_missing() is not None, reason=sshd_missing() or ""),
              pytest.mark.slow]  # a real sshd and remote workers: seconds each


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sshd-gui")
    (root / "home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root / "home"))
        mp.setenv("MODELDECK_TARGETS_FILE", str(root / "targets.json"))
        s = start_sshd(root / "server", ports=1)
        TargetStore().add(target_for(s, "edge"))
        try:
            yield s
        finally:
            s.stop()


def _run(qtbot, job, timeout=120_000):
    events = []
    job.sig_event.connect(events.append)
    with qtbot.waitSignal(job.sig_finished, timeout=timeout) as blocker:
        job.start()
    return blocker.args[0], events


@pytest.mark.slow
def test_picker_lists_targets_asks_for_the_host_key_then_runs_remotely(server, qtbot):
    from PySide6.QtWidgets import QMessageBox

    from app.gui.panels.target_picker import THIS_COMPUTER, TargetPicker

    picker = TargetPicker()
    qtbot.addWidget(picker)
    assert [picker.combo.itemText(i) for i in range(picker.combo.count())] == [THIS_COMPUTER,
                                                                               "edge"]
    assert picker.target() is None and picker.command() is None
    with qtbot.waitSignal(picker.sig_target_changed) as changed:
        picker.set_target("edge")
    assert changed.args == ["edge"]
    # first contact: the fingerprint is shown and nothing is pinned until the user says yes
    outcome, _ = _run(qtbot, picker.job({"job": "devices"}))
    assert outcome.status == "failed" and outcome.error_kind == "host_key"
    assert picker._box is not None and "SHA256:" in picker._box.text()
    with qtbot.waitSignal(picker.sig_target_changed):
        picker._box.button(QMessageBox.StandardButton.Yes).click()
    outcome, events = _run(qtbot, picker.job({"job": "devices"}))
    assert outcome.status == "ok", outcome.error
    names = [b["backend"] for b in outcome.result["backends"]]
    assert "onnxruntime" in names  # devices from the remote probe
    assert outcome.result["target"]["name"] == "edge"
    assert picker.state.text() == "connected to edge"
    assert any(e.get("stage") == "connect" for e in events)


@pytest.mark.slow
def test_remote_run_streams_samples_and_a_dropped_link_is_shown(server, qtbot):
    from app.gui.panels.target_picker import TargetPicker
    from app.targets.probe import check_target
    from profilers.backends import BackendOptions
    from profilers.runner import RunConfig
    from tests.conftest import SAMPLE_ONNX

    check_target(TargetStore().get("edge"), accept_new=True)  # pinned (order-independent)
    picker = TargetPicker()
    qtbot.addWidget(picker)
    picker.set_target("edge")
    cfg = RunConfig(model=str(SAMPLE_ONNX), options=BackendOptions(threads=1), duration_s=120)
    job = picker.job({"job": "profile", "config": cfg.to_dict()})
    latencies = []

    def on_event(e):
        if e.get("event") == "samples" and "latency_ms" in e.get("series", {}):
            latencies.extend(e["series"]["latency_ms"])
            if len(latencies) >= 50 and not cut:
                cut.append(server.kill_connections())

    cut: list[int] = []
    job.sig_event.connect(on_event)
    outcome, _ = _run(qtbot, job)
    assert cut and latencies  # live samples arrived from the remote run before the cut
    assert outcome.error_kind == "link", outcome.error
    text = picker.state.text()
    assert text.startswith("Link to edge lost") and "measure" in text
    assert "--" not in text  # the window's words, no command-line flags


@pytest.mark.slow
def test_window_runs_the_profile_on_the_chosen_target(server, opened, qtbot):
    """The backend dock's 'Run on': devices come from the target's probe and the run's live
    samples reach the charts, the report naming the target."""
    from app.targets.probe import check_target

    check_target(TargetStore().get("edge"), accept_new=True)
    w = opened
    picker = w.backend.target_picker
    picker.reload()
    with qtbot.waitSignal(picker.sig_target_changed):
        picker.set_target("edge")
    qtbot.waitUntil(lambda: w.devices_job is None, timeout=120_000)  # the remote probe
    assert picker.state.text() == "connected to edge"
    b = w.backend
    b.length_mode.setCurrentText("iterations")
    b.iterations.setValue(300)
    b.warmup.setValue(5)
    samples = []
    with qtbot.waitSignal(w.sig_profile_finished, timeout=120_000) as blocker:
        job = w.run_profile()
        assert job is not None and job.command is not None  # the relay, not a local worker
        job.sig_event.connect(lambda e: e.get("event") == "samples" and samples.append(e))
    outcome = blocker.args[0]
    assert outcome.status == "ok", outcome.error
    assert samples  # streamed live from the target
    assert w.last_report["target"]["name"] == "edge"
    picker.set_target(None)  # back to this computer for whatever runs next


@pytest.mark.slow
def test_optimize_panel_searches_on_the_chosen_target(server, qtbot, tmp_path):
    """Run ▸ Optimize… with 'Run on' set to a target: the search runs there, its points fill
    the chart, and the winner comes home into the local output folder."""
    from pathlib import Path

    from app.gui.optimize_panel import OptimizePanel
    from app.gui.panels.target_picker import TargetPicker
    from app.targets.probe import check_target
    from tests.conftest import SAMPLES

    check_target(TargetStore().get("edge"), accept_new=True)
    picker = TargetPicker()
    qtbot.addWidget(picker)
    picker.reload()
    picker.set_target("edge")
    panel = OptimizePanel(tmp_path / "work")
    qtbot.addWidget(panel)
    panel.picker = picker
    panel.set_model(str(SAMPLES / "digits_cnn.onnx"))
    panel.extra = {"subset": 96, "screen_rounds": 2, "full_rounds": 2, "final_rounds": 3,
                   "round_ms": 10.0, "use_cache": False, "only": ["ort-int8-dynamic"]}
    job = panel.start()
    assert job is not None and job.command is not None  # the relay, not a local worker
    with qtbot.waitSignal(panel.sig_finished, timeout=300_000) as finished:
        pass
    result = finished.args[0]
    assert result is not None and result["best"] is not None, panel.status.text()
    assert panel.chart.count() >= 2  # baseline + the candidate, streamed from the target
    winner = Path(result["best"]["path"])
    assert winner.exists() and (tmp_path / "work") in winner.parents  # fetched home
    assert "edge" in json.dumps(result.get("target") or {})
