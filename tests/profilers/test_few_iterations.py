"""A run of a handful of iterations cannot carry a 95 % interval or a 'stable' verdict: the
report says so instead of printing 'p50 95 % CI 1.423–1.423 ms' and STABLE after one iteration
(found running `modeldeck profile embedding_model.onnx --iterations 1`)."""
from __future__ import annotations

import numpy as np

from profilers.report.honest import ci_text
from profilers.stability import verdict
from profilers.stats import latency_intervals


def _verdict(v: np.ndarray) -> dict:
    return verdict(v, cv=float(v.std() / v.mean()), spikes=0, threads=1, spinning=False,
                   load={"other_cores": 0.0}, state={}, settled_at=20, warmup_asked=10)


def test_too_few_iterations_give_no_95_percent_median_interval():
    # five samples bracket the median with 1 - 2 / 2**5 = 94 % at best; six with 97 %
    for n, bounded in ((1, False), (3, False), (5, False), (6, True), (300, True)):
        v = np.linspace(1.0, 1.2, n)
        lat = {"p50": float(np.median(v)), **latency_intervals(v)}
        assert lat["p50_ci_bounded"] is bounded, n
        text = ci_text(lat, "p50")
        assert ("too few iterations" in text) is not bounded, (n, text)


def test_too_few_iterations_are_not_a_stable_run():
    few = _verdict(np.full(3, 1.5))
    assert few["verdict"] == "noisy"
    assert any("iterations" in w for w in few["warnings"])
    assert "measure longer (more iterations or seconds)" in few["advice"]
    assert _verdict(np.full(300, 1.5))["verdict"] == "stable"
