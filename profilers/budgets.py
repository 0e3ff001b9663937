"""Budgets: `p99=20ms`, `rss=500MB`, `power=15W` — checked live and at the end of a run."""
from __future__ import annotations

import re
from dataclasses import dataclass

from converters.errors import ModelDeckError

LATENCY_METRICS = {"p50", "p90", "p95", "p99", "p999", "mean", "max", "first"}
_UNITS = {
    "ms": ("ms", 1.0), "s": ("ms", 1000.0), "us": ("ms", 1e-3),
    "mb": ("mb", 1.0), "gb": ("mb", 1000.0), "kb": ("mb", 1e-3),
    "w": ("w", 1.0), "mw": ("w", 1e-3),
}
_METRIC_KIND = {**{m: "ms" for m in LATENCY_METRICS}, "rss": "mb", "power": "w"}


class BudgetError(ModelDeckError):
    pass


@dataclass(frozen=True)
class Budget:
    metric: str  # p99, rss, power, ...
    limit: float  # in ms, MB or W
    unit: str
    text: str

    def check(self, value: float | None) -> bool | None:
        return None if value is None else bool(value <= self.limit)


def parse_budget(text: str) -> Budget:
    m = re.fullmatch(r"\s*([a-z0-9]+)\s*=\s*([0-9.]+)\s*([a-zA-Z]+)\s*", text)
    if not m or m.group(1) not in _METRIC_KIND:
        raise BudgetError(f"bad --budget {text!r}: expected METRIC=VALUEUNIT with METRIC one of "
                          f"{', '.join(sorted(_METRIC_KIND))}, e.g. p99=20ms or rss=500MB")
    metric, value, unit = m.group(1), float(m.group(2)), m.group(3).lower()
    kind, scale = _UNITS.get(unit, (None, 0.0))
    if kind != _METRIC_KIND[metric]:
        allowed = {"ms": "ms, s or us", "mb": "KB, MB or GB", "w": "W or mW"}[_METRIC_KIND[metric]]
        raise BudgetError(f"bad --budget {text!r}: {metric} takes {allowed}")
    return Budget(metric, value * scale, {"ms": "ms", "mb": "MB", "w": "W"}[kind], text.strip())
