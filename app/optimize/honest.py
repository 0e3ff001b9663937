"""The intervals the search's verdicts rest on: a paired bootstrap of the accuracy drop and
interleaved latency rounds with a bootstrap interval of the speedup.

The speedup's interval is profilers.stats.ratio_ci (the honest-numbers work) where present; the
accuracy drop's paired bootstrap and the p50's round bootstrap live here (percentile bootstrap,
95 %, fixed seed so a verdict is repeatable).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def _bounds(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1.0 - confidence) / 2
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def paired_accuracy_drop(base_correct: np.ndarray, cand_correct: np.ndarray,
                         resamples: int = BOOTSTRAP, confidence: float = CONFIDENCE,
                         seed: int = 0) -> Interval:
    """Accuracy(base) - accuracy(candidate) on the same samples, with a paired bootstrap interval.

    Pairing matters: both models see the same hard and easy samples, so resampling samples
    (not each model's accuracy apart) gives the much narrower interval of their difference.
    """
    b = np.asarray(base_correct, dtype=np.float64)
    c = np.asarray(cand_correct, dtype=np.float64)
    if b.shape != c.shape or b.size == 0:
        raise ValueError("paired accuracy needs the same, non-empty set of samples for both")
    diff = b - c
    point = float(diff.mean())
    if not diff.any():
        return Interval(point, 0.0, 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(resamples, diff.size))
    lo, hi = _bounds(diff[idx].mean(axis=1), confidence)
    return Interval(point, lo, hi)


def paired_agreement(ref_pred: np.ndarray, cand_pred: np.ndarray, resamples: int = BOOTSTRAP,
                     confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """Share of samples where both models pick the same class, with a bootstrap interval."""
    same = (np.asarray(ref_pred) == np.asarray(cand_pred)).astype(np.float64)
    if same.size == 0:
        raise ValueError("no samples")
    if same.all():
        return Interval(1.0, 1.0, 1.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, same.size, size=(resamples, same.size))
    lo, hi = _bounds(same[idx].mean(axis=1), confidence)
    return Interval(float(same.mean()), lo, hi)


def median_interval(rounds: list[np.ndarray], resamples: int = BOOTSTRAP,
                    confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """p50 of all iterations, with an interval from resampling whole rounds (a round shares its
    moment's machine state, so rounds, not iterations, are the independent units)."""
    pooled = np.concatenate(rounds)
    point = float(np.median(pooled))
    meds = np.array([np.median(r) for r in rounds])
    if len(meds) < 2:
        return Interval(point, point, point)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(meds), size=(resamples, len(meds)))
    lo, hi = _bounds(np.median(meds[idx], axis=1), confidence)
    return Interval(point, min(lo, point), max(hi, point))


def speedup_interval(base_rounds: list[np.ndarray], cand_rounds: list[np.ndarray],
                     resamples: int = BOOTSTRAP, confidence: float = CONFIDENCE,
                     seed: int = 0) -> Interval:
    """Baseline p50 / candidate p50 from interleaved rounds, paired by round. Uses the
    honest-numbers ratio interval (profilers.stats.ratio_ci: rounds resampled as blocks, each
    round's median jittered by its own bootstrap) where it is present."""
    try:
        from profilers.stats import ratio_ci
    except ImportError:  # an older profilers: the plain round bootstrap below
        ratio_ci = None
    if ratio_ci is not None and len(base_rounds) == len(cand_rounds) and base_rounds:
        value, low, high = ratio_ci(cand_rounds, base_rounds, resamples, confidence, seed)
        return Interval(value, low, high)
    base = np.array([np.median(r) for r in base_rounds])
    cand = np.array([np.median(r) for r in cand_rounds])
    point = float(np.median(np.concatenate(base_rounds)) / np.median(np.concatenate(cand_rounds)))
    if len(base) < 2:
        return Interval(point, point, point)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(resamples, len(base)))
    ratios = np.median(base[idx], axis=1) / np.median(cand[idx], axis=1)
    lo, hi = _bounds(ratios, confidence)
    return Interval(point, min(lo, point), max(hi, point))


def interleaved_rounds(runners: list[Any], rounds: int, iterations: int, blocks: int = 4,
                       cancelled=lambda: False, meter: Any = None) -> list[list[np.ndarray]]:
    """Time each runner (a callable doing one inference) alternately, round by round.

    Within a round each runner's iterations come in `blocks` short blocks, alternating A B A B
    (and B A B A in the next round), so a burst of other load on a shared machine falls on all
    runners alike instead of on whichever happened to run then. Returns per runner a list of
    per-round latency arrays in ms. A `meter` (app.optimize.energy.EnergyMeter) is read around
    each block, not each iteration."""
    import time

    out: list[list[np.ndarray]] = [[] for _ in runners]
    blocks = max(1, min(blocks, iterations))
    sizes = [len(b) for b in np.array_split(np.arange(iterations), blocks)]
    for r in range(rounds):
        if cancelled():
            break
        order = list(range(len(runners)))
        if r % 2:
            order.reverse()
        times = [np.empty(iterations) for _ in runners]
        done = 0
        for size in sizes:
            for i in order:
                run, t = runners[i], times[i]
                m0 = meter.read() if meter is not None else None
                for k in range(done, done + size):
                    t0 = time.perf_counter_ns()
                    run()
                    t[k] = (time.perf_counter_ns() - t0) / 1e6
                if meter is not None:
                    meter.add(i, m0, size)
            done += size
        for i in range(len(runners)):
            out[i].append(times[i])
        if meter is not None:
            meter.end_round()
    return out
