"""What a comparison's latency ratios mean, as text: each p50 ratio to the first model with its
interval from interleaved rounds, and "no measurable difference" when that interval spans 1.
Comparisons of schema 1 (one run per model, no intervals) give no lines."""
from __future__ import annotations

import os
from typing import Any


def ratio_text(rel: dict[str, Any] | None) -> str:
    """'0.974 [0.940–1.023] no measurable difference'; '' without an interval."""
    rel = rel or {}
    ci = rel.get("latency_p50_ci")
    if rel.get("latency_p50") is None or not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    return f"{rel['latency_p50']:.3f} [{ci[0]:.3f}–{ci[1]:.3f}] {rel.get('latency_verdict', '')}"


def ratio_lines(result: dict[str, Any]) -> list[str]:
    rows = result.get("rows") or []
    inter = result.get("interleaved") or {}
    if len(rows) < 2 or not ratio_text(rows[1].get("relative")):
        return []
    first = os.path.basename(str(rows[0].get("model", "")))
    out = [f"\np50 relative to {first}, timed interleaved ({inter.get('rounds')} rounds of "
           f"{inter.get('iterations_per_round')} iterations each, 95 % interval):"]
    for r in rows[1:]:
        out.append(f"  {os.path.basename(str(r.get('model', '')))[:34]:<34s} "
                   f"× {ratio_text(r.get('relative'))}")
    noisy = [os.path.basename(str(r.get("model", ""))) for r in rows
             if (r.get("stability") or {}).get("verdict") == "noisy"]
    if noisy:
        out.append(f"  note: the machine was noisy while profiling {', '.join(noisy)}; the "
                   "intervals include that noise")
    return out
