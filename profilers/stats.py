"""Latency statistics. Floats in, floats out: formatting is the view's job."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99, 99.9)


@dataclass(frozen=True)
class LatencyStats:
    count: int
    mean: float
    std: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    p999: float
    cv: float  # coefficient of variation, std / mean
    throughput_ips: float  # inferences per second of busy time (1 / mean), single stream
    spikes: int  # iterations above median + k * MAD

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def spike_mask(values_ms: np.ndarray, k: float = 6.0) -> np.ndarray:
    """Robust outliers: above median + k x MAD (scaled to sigma). Robust to the spikes themselves.

    A floor of 1% of the median keeps perfectly flat series (MAD 0) from flagging noise.
    """
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        return np.zeros(0, dtype=bool)
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    return v > med + k * max(mad, 0.01 * med)


def latency_stats(values_ms: np.ndarray, spike_k: float = 6.0) -> LatencyStats:
    v = np.asarray(values_ms, dtype=np.float64)
    if v.size == 0:
        raise ValueError("no latencies to summarise")
    p50, p90, p95, p99, p999 = (float(x) for x in np.percentile(v, PERCENTILES))
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return LatencyStats(count=int(v.size), mean=mean, std=std, min=float(v.min()),
                        max=float(v.max()), p50=p50, p90=p90, p95=p95, p99=p99, p999=p999,
                        cv=std / mean if mean > 0 else 0.0,
                        throughput_ips=1000.0 / mean if mean > 0 else 0.0,
                        spikes=int(spike_mask(v, spike_k).sum()))


# --- uncertainty -------------------------------------------------------------------------------

CONFIDENCE = 0.95


def quantile_ci_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int, int]:
    """1-based ranks (l, u) of the order statistics that bracket the q-quantile with at least
    `confidence`, distribution-free: the count of samples below the true quantile is
    Binomial(n, q). l is 0 when no sample is low enough to bound it from below, u is n + 1 when
    none bounds it from above (too few iterations for that percentile)."""
    if n < 1:
        raise ValueError("no samples")
    alpha = (1.0 - confidence) / 2.0
    i = np.arange(n, dtype=np.float64)  # log pmf(i + 1) - log pmf(i), for i = 0 .. n - 1
    with np.errstate(divide="ignore"):
        steps = np.log(n - i) - np.log(i + 1) + np.log(q) - np.log1p(-q)
    logpmf = n * np.log1p(-q) + np.concatenate([[0.0], np.cumsum(steps)])  # k = 0 .. n
    pmf = np.exp(logpmf - logpmf.max())
    cdf = np.cumsum(pmf) / pmf.sum()  # cdf[k] = P(B <= k)
    # largest l with P(B <= l - 1) <= alpha; smallest u with P(B <= u - 1) >= 1 - alpha
    below = np.nonzero(cdf <= alpha)[0]
    low = int(below[-1]) + 1 if below.size else 0
    above = np.nonzero(cdf >= 1.0 - alpha)[0]
    high = int(above[0]) + 1 if above.size else n + 1
    return low, min(high, n + 1)


def quantile_ci(values_ms: np.ndarray, q: float, confidence: float = CONFIDENCE
                ) -> tuple[float, float]:
    """[low, high] around the q-quantile (q in 0..1) from order statistics. Assumes the
    iterations are exchangeable; drift breaks that, which the stability verdict reports. When
    too few iterations bound the interval on a side, that side is the sample's min or max
    (the true interval is wider): `quantile_ci_bounded` says so."""
    v = np.sort(np.asarray(values_ms, dtype=np.float64))
    low, high = quantile_ci_ranks(v.size, q, confidence)
    return float(v[max(low, 1) - 1]), float(v[min(high, v.size) - 1])


def quantile_ci_bounded(n: int, q: float, confidence: float = CONFIDENCE) -> bool:
    """Whether n iterations are enough to bound the q-quantile's interval on both sides."""
    low, high = quantile_ci_ranks(n, q, confidence)
    return low >= 1 and high <= n


def ratio_ci(a_rounds: list[np.ndarray], b_rounds: list[np.ndarray], resamples: int = 1000,
             confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians b / a with a bootstrap interval that resamples whole rounds (blocks), so
    drift of the machine between rounds widens the interval instead of hiding in it.
    Within a resampled round the iterations are resampled too. Returns (ratio, low, high)."""
    if not a_rounds or len(a_rounds) != len(b_rounds):
        raise ValueError("need the same number of rounds on both sides")
    a_all = np.concatenate(a_rounds)
    b_all = np.concatenate(b_rounds)
    ratio = float(np.median(b_all) / np.median(a_all))
    rng = np.random.default_rng(seed)
    r = len(a_rounds)
    a_med = np.array([np.median(x) for x in a_rounds])
    b_med = np.array([np.median(x) for x in b_rounds])
    # per-round medians carry the within-round noise; whole rounds carry the between-round
    # drift: resample rounds, combine their medians by the median (robust to one bad round)
    picks = rng.integers(0, r, size=(resamples, r))
    jitter_a = _median_jitter(a_rounds, rng, resamples)
    jitter_b = _median_jitter(b_rounds, rng, resamples)
    boot = (np.median(b_med[picks] * jitter_b[np.arange(resamples)[:, None], picks], axis=1)
            / np.median(a_med[picks] * jitter_a[np.arange(resamples)[:, None], picks], axis=1))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return ratio, float(min(low, ratio)), float(max(high, ratio))


def _median_jitter(rounds: list[np.ndarray], rng: np.random.Generator, resamples: int
                   ) -> np.ndarray:
    """(resamples, rounds) factors: a bootstrap median of each round over its own median, so
    the within-round uncertainty of each round's median enters the ratio's interval."""
    out = np.empty((resamples, len(rounds)))
    for j, x in enumerate(rounds):
        x = np.asarray(x, dtype=np.float64)
        med = float(np.median(x))
        if med <= 0:
            out[:, j] = 1.0
        elif x.size <= 500:
            idx = rng.integers(0, x.size, size=(resamples, x.size))
            out[:, j] = np.median(x[idx], axis=1) / med
        else:  # long rounds: the median's spread from its order-statistic interval (memory)
            lo, hi = quantile_ci(x, 0.5)
            out[:, j] = 1.0 + rng.normal(0.0, (hi - lo) / (2 * 1.96) / med, resamples)
    return out


# --- steady state ------------------------------------------------------------------------------

SETTLE_TOLERANCE = 0.05  # consecutive window medians within 5 % of each other: settled


@dataclass
class SettleDetector:
    """Warm-up until the latency has settled.

    Rule: iterations are grouped in windows of `window` iterations; the run has settled when the
    median of a window is within `tolerance` (relative) of the previous window's median, and at
    least `min_iterations` have run. `cap` iterations (or the caller's time cap) end the warm-up
    unsettled. `settled_at` is the number of warm-up iterations run when it settled.
    """

    window: int
    min_iterations: int
    cap: int
    tolerance: float = SETTLE_TOLERANCE
    values: list[float] = None  # type: ignore[assignment]
    settled_at: int | None = None
    _last_median: float | None = None

    def __post_init__(self) -> None:
        self.values = []
        self.window = max(1, self.window)
        self.cap = max(self.cap, self.min_iterations)

    def add(self, ms: float) -> bool:
        """Record one warm-up iteration; True when warm-up is over (settled or capped)."""
        self.values.append(ms)
        n = len(self.values)
        if n % self.window == 0:
            med = float(np.median(self.values[-self.window:]))
            prev, self._last_median = self._last_median, med
            if (self.settled_at is None and prev is not None and prev > 0
                    and abs(med - prev) <= self.tolerance * prev):
                self.settled_at = n
        if self.settled_at is not None and n >= self.min_iterations:
            return True
        return n >= self.cap

    @property
    def settled(self) -> bool:
        return self.settled_at is not None


def settle_window(first_ms: float, target_s: float = 0.1, lo: int = 5, hi: int = 100) -> int:
    """Window size covering ~target_s of inference (bounded), so a 0.1 ms model is judged on
    100 iterations and a 200 ms model on 5."""
    if first_ms <= 0:
        return hi
    return int(min(hi, max(lo, round(target_s * 1000.0 / first_ms))))


def latency_intervals(values_ms: np.ndarray, confidence: float = CONFIDENCE) -> dict[str, object]:
    """The report's `p50_ci` / `p99_ci` ([low, high]) and what they rest on."""
    v = np.asarray(values_ms, dtype=np.float64)
    return {"p50_ci": list(quantile_ci(v, 0.50, confidence)),
            "p99_ci": list(quantile_ci(v, 0.99, confidence)),
            "ci_confidence": confidence,
            "ci_method": "order statistics (distribution-free, binomial ranks)",
            # False: too few iterations to bound p99 from above; the interval ends at the max
            "p99_ci_bounded": quantile_ci_bounded(v.size, 0.99, confidence),
            # False under 6 iterations: min-max brackets the median with less than 95 %
            "p50_ci_bounded": quantile_ci_bounded(v.size, 0.50, confidence)}
