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
