"""Report writers: JSON round trip, self-contained HTML, CSV — on synthetic reports.

The reports are built here (no backend, no model run) with the shape runner.run_profile gives,
so these tests are fast and run anywhere.
"""
from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from converters.errors import ModelDeckError
from profilers.report import load_report, write_csv, write_html, write_json
from profilers.report.html import fmt_num, render_html
from profilers.stats import latency_stats, spike_mask

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


def make_report(n: int = 5000, seed: int = 0, power_source: str = "estimate",
                n_layers: int = 40) -> dict[str, Any]:
    """A complete report as run_profile would return it: lognormal latencies with spikes,
    sampled timelines, layers, one broken and one met budget."""
    rng = np.random.default_rng(seed)
    lat = rng.lognormal(mean=np.log(8.0), sigma=0.06, size=n)
    spike_at = rng.choice(np.arange(100, n), size=max(3, n // 1000), replace=False)
    lat[spike_at] *= rng.uniform(3, 9, size=spike_at.size)
    t0 = 1.25  # load + first inference + warm-up before the loop
    starts = t0 + np.concatenate([[0.0], np.cumsum(lat[:-1] / 1000 + 20e-6)])
    end = float(starts[-1] + lat[-1] / 1000)
    stats = latency_stats(lat)
    t = np.arange(0.0, end + 0.3, 0.05)
    rss = 180 + 40 * (1 - np.exp(-t * 3)) + rng.normal(0, 0.5, t.size)
    cpu = np.where(t > t0, 98.0, 40.0) + rng.normal(0, 3, t.size)
    power = cpu / 100 * 10.0
    note = ("estimated, not measured: 10 W per busy core x the worker's CPU use. RAPL "
            "counters are root-only" if power_source == "estimate"
            else "CPU package power from RAPL (whole socket, all processes)")
    mean_w = float(power[t > t0].mean())
    measure_s = end - t0
    energy = mean_w * measure_s / n
    layers = []
    for i in range(n_layers):
        fallback = i % 13 == 5
        suffix = "/conv_with_a_rather_long_runtime_name" * (i % 3)
        layers.append({"name": f"/backbone/block{i}{suffix}/Conv_{i}",
                       "op_type": ["Conv", "Relu", "MatMul", "Add", "Softmax"][i % 5],
                       "time_ms": float(rng.gamma(2.0, 0.15)), "node_id": f"n{i}",
                       "device": "CPU" if fallback else "GPU.0", "exec_type": "jit_avx512",
                       "precision": "FP32" if fallback else "FP16", "fallback": fallback})
    layers.sort(key=lambda r: r["time_ms"], reverse=True)

    def timeline(values: np.ndarray, unit: str, source: str, tn: str = "") -> dict[str, Any]:
        return {"t_s": t.tolist(), "values": values.tolist(), "unit": unit, "source": source,
                "note": tn}

    return {
        "schema": "modeldeck.report/1", "status": "ok", "created": "2025-05-01T10:20:30+00:00",
        "backend": "openvino", "device": "GPU", "threads": 4,
        "model": {"path": "/models/resnet<50>&co.onnx", "format": "onnx", "sha256": "ab" * 32,
                  "file_size": 102_400_000, "nodes": 122, "params": 25_557_032,
                  "macs": 4_089_184_256, "flops": 8_178_368_512},
        "config": {"model": "/models/resnet<50>&co.onnx", "backend": "openvino",
                   "device": "GPU", "options": {"threads": 4, "precision": "f16"},
                   "iterations": n, "duration_s": None, "warmup": 10, "budgets": ["p99=9ms"]},
        "inputs": {"input": {"shape": [1, 3, 224, 224], "dtype": "float32"}},
        "inputs_source": "generated (seed 0)",
        "environment": {"cpu_model": "Intel(R) Xeon(R) Platinum 8480+", "cores_physical": 16,
                        "cores_logical": 32, "cpus_usable": 16, "memory_gb": 128.0,
                        "os": "Linux 6.8.0", "platform": "Linux-6.8.0-x86_64", "python": "3.12.3",
                        "libraries": {"numpy": "2.2.5", "openvino": "2025.1.0"}},
        "load_ms": 812.5,
        "runtime": {"device": "GPU", "execution_devices": ["GPU.0"], "inference_precision": "f16",
                    "performance_hint": "LATENCY", "streams": 1, "openvino": "2025.1.0"},
        "first_inference_ms": 95.25,
        "latency_ms": stats.to_dict(),
        "throughput_ips": n / measure_s, "iterations": n, "measure_s": measure_s,
        "memory": {"rss_peak_mb": float(rss.max()) + 3, "rss_mean_mb": float(rss.mean())},
        "cpu": {"mean_percent": float(cpu[t > t0].mean())},
        "power": {"source": power_source, "note": note, "mean_w": mean_w,
                  "energy_per_inference_j": energy, "inferences_per_joule": 1 / energy},
        "gpu": {},
        "sampling": {"period_s": 0.05, "ticks": int(t.size), "busy_s": 0.02,
                     "busy_fraction": 0.002},
        "timelines": {
            "latency_ms": {"t_s": starts.tolist(), "values": lat.tolist(), "unit": "ms",
                           "source": "perf_counter_ns"},
            "rss_mb": timeline(rss, "MB", "psutil"),
            "cpu_percent": timeline(cpu, "%", "psutil"),
            "power_w": timeline(power, "W", power_source, note),
        },
        "spikes": np.flatnonzero(spike_mask(lat)).tolist(),
        "layers": layers,
        "budgets": [
            {"budget": "p99=9ms", "metric": "p99", "limit": 9.0, "unit": "ms",
             "value": stats.p99, "ok": stats.p99 <= 9.0, "broken_live": True},
            {"budget": "rss=500MB", "metric": "rss", "limit": 500.0, "unit": "MB",
             "value": float(rss.max()), "ok": True, "broken_live": False},
        ],
        "errors": [],
    }


def failed_report() -> dict[str, Any]:
    """What a run that died during load leaves: most keys missing, a partial timeline."""
    return {"schema": "modeldeck.report/1", "status": "failed", "backend": "openvino",
            "device": "NPU", "model": {"path": "/models/m.xml"},
            "timelines": {"rss_mb": {"t_s": [0.0, 0.05, 0.1], "values": [90.0, None, 140.5],
                                     "unit": "MB", "source": "psutil"}},
            "latency_ms": {}, "power": {"source": None, "mean_w": None},
            "errors": ["NPU plugin not found: install the NPU driver"]}


class _StrictParser(HTMLParser):
    """Fails on unbalanced tags: html.parser itself accepts anything."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _parse(page: str) -> _StrictParser:
    p = _StrictParser()
    p.feed(page)
    p.close()
    assert not p.problems, p.problems[:5]
    assert p.stack == [], p.stack
    return p


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return make_report()


@pytest.fixture(scope="module")
def page(report) -> str:
    return render_html(report)


# ---------------------------------------------------------------- JSON


def test_json_round_trip(tmp_path, report):
    path = write_json(report, tmp_path / "run.json")
    assert load_report(path) == report
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left


def test_json_writes_standard_json(tmp_path, report):
    odd = {**report, "load_ms": float("nan"), "threads": np.int64(4),
           "first_inference_ms": np.float32(1.5)}
    path = write_json(odd, tmp_path / "odd.json")
    back = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert back["load_ms"] is None and back["threads"] == 4 and back["first_inference_ms"] == 1.5


def test_json_overwrites_atomically(tmp_path, report):
    path = tmp_path / "run.json"
    path.write_text("old")
    write_json(report, path)
    assert load_report(path)["status"] == "ok"


@pytest.mark.parametrize("content, words", [
    ('{"name": "resnet", "nodes": 3}', "no 'schema' field"),
    ('{"schema": "other.tool/2"}', "schema 'other.tool/2'"),
    ("[1, 2, 3]", "no 'schema' field"),
    ("this is { not json", "invalid JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a text"),
])
def test_load_report_rejects_other_files(tmp_path, content, words):
    path = tmp_path / "x.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ModelDeckError, match="not a ModelDeck report") as e:
        load_report(path)
    assert words in str(e.value) and str(path) in str(e.value)


def test_load_report_missing_file(tmp_path):
    with pytest.raises(ModelDeckError, match="does not exist"):
        load_report(tmp_path / "nope.json")


# ---------------------------------------------------------------- HTML


def test_html_is_well_formed(page):
    parsed = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert ("style", {}) in parsed.tags


def test_html_is_self_contained(page):
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, re.I)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert "<link" not in page and "<img" not in page


def test_html_escapes_strings(page):
    assert "resnet<50>" not in page
    assert "resnet&lt;50&gt;&amp;co.onnx" in page


def test_html_shows_figures(page, report):
    lat = report["latency_ms"]
    for key in ("p50", "p90", "p95", "p99", "p999", "mean", "std"):
        assert fmt_num(lat[key]) in page, key
    assert f"{fmt_num(lat['p99'])} ms" in page
    assert "f16" in page and "Xeon" in page and "2025.1.0" in page  # runtime + environment
    assert "FAIL" in page and "PASS" in page  # the broken p99 budget and the met rss one
    assert "CPU fallback" in page


def test_html_says_power_is_estimated(page, report):
    assert "estimated" in page
    assert f"{fmt_num(report['power']['mean_w'])} W (estimated)" in page


def test_html_measured_power_is_not_called_estimated():
    page = render_html(make_report(n=500, power_source="rapl"))
    assert "estimated" not in page.lower()
    assert "measured · rapl" in page


def test_html_one_svg_per_chart(page):
    # latency timeline, histogram, percentile strip, RSS, CPU, power, slowest layers
    assert page.count("<svg") == 7
    assert page.count("</svg>") == 7


def test_html_without_layers_has_no_layer_chart():
    page = render_html(make_report(n=300, n_layers=0))
    assert page.count("<svg") == 6 and "Slowest" not in page


def test_html_failed_report(tmp_path):
    path = write_html(failed_report(), tmp_path / "failed.html")
    page = path.read_text(encoding="utf-8")
    _parse(page)
    assert "failed" in page and "NPU plugin not found" in page
    assert "—" in page
    assert page.count("<svg") == 1  # the partial RSS timeline; nothing else to draw
    assert "No latency measurements" in page


def test_html_empty_dict_does_not_crash():
    _parse(render_html({"schema": "modeldeck.report/1"}))


def test_html_100k_iterations_stays_small(tmp_path):
    big = make_report(n=100_000, seed=1)
    path = write_html(big, tmp_path / "big.html")
    size = path.stat().st_size
    assert size < 2_000_000, size
    _parse(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- CSV


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_files(tmp_path, report):
    out = tmp_path / "nested" / "csv"
    paths = write_csv(report, out)
    names = {p.name for p in paths}
    assert names == {"iterations.csv", "samples.csv", "layers.csv", "summary.csv"}
    assert all(p.exists() and p.parent == out for p in paths)

    it = _rows(out / "iterations.csv")
    assert len(it) == report["iterations"]
    lat = report["timelines"]["latency_ms"]
    assert [float(r["latency_ms"]) for r in it] == lat["values"]  # exact round trip
    assert float(it[10]["t_s"]) == lat["t_s"][10]
    assert sum(int(r["spike"]) for r in it) == len(report["spikes"])

    samples = _rows(out / "samples.csv")
    expected = sum(len(tl["values"]) for name, tl in report["timelines"].items()
                   if name != "latency_ms")
    assert len(samples) == expected
    assert {r["series"] for r in samples} == {"rss_mb", "cpu_percent", "power_w"}
    assert {r["source"] for r in samples if r["series"] == "power_w"} == {"estimate"}
    for r in samples:
        float(r["t_s"]), float(r["value"])

    layers = _rows(out / "layers.csv")
    assert len(layers) == len(report["layers"])
    assert float(layers[0]["time_ms"]) == report["layers"][0]["time_ms"]
    assert {r["fallback"] for r in layers} == {"0", "1"}

    summary = {r["metric"]: r for r in _rows(out / "summary.csv")}
    assert float(summary["latency_p99_ms"]["value"]) == report["latency_ms"]["p99"]
    assert summary["power_mean_w"]["source"] == "estimate"
    for r in summary.values():
        if r["value"]:
            float(r["value"])


def test_csv_failed_report(tmp_path):
    paths = write_csv(failed_report(), tmp_path)
    assert {p.name for p in paths} == {"iterations.csv", "samples.csv", "summary.csv"}
    assert _rows(tmp_path / "iterations.csv") == []
    assert len(_rows(tmp_path / "samples.csv")) == 2  # the None sample is left out
    summary = _rows(tmp_path / "summary.csv")
    assert summary and all(r["value"] == "" for r in summary)


def test_html_gpu_timelines():
    r = make_report(n=400)
    t = r["timelines"]["rss_mb"]["t_s"]
    r["timelines"]["gpu_mem_mb"] = {"t_s": t, "values": [2100.0] * len(t), "unit": "MB",
                                    "source": "nvml", "note": "GPU memory used on the device"}
    r["timelines"]["gpu_power_w"] = {"t_s": t, "values": [65.0] * len(t), "unit": "W",
                                     "source": "nvml", "note": "GPU board power from NVML"}
    r["gpu"] = {"gpu_mem_mb": {"source": "nvml", "unit": "MB", "note": "", "mean": 2100.0,
                               "max": 2100.0},
                "gpu_power_w": {"source": "nvml", "unit": "W", "note": "", "mean": 65.0,
                                "max": 65.0}}
    page = render_html(r)
    _parse(page)
    assert page.count("<svg") == 9
    assert "GPU board power" in page and "measured · nvml" in page
