"""How much to trust a report's figures, as text and HTML: the intervals around p50 / p99, the
stable / noisy verdict with its reasons and advice, the runtime's own latency beside the host's,
what the per-layer table leaves unaccounted for, and the machine state behind a run.

Reports of schema 1 have none of these fields: every function returns "" / [] for them, so old
reports still render.
"""
from __future__ import annotations

from typing import Any

from profilers.report import svg


def _e(v: Any) -> str:
    return svg.esc(v)


def _items(v: Any) -> list[Any]:
    """A report field meant to be a list; [] for anything else (a hand-edited or hostile file)."""
    return v if isinstance(v, list) else []


def _dicts(v: Any) -> list[dict[str, Any]]:
    return [x for x in _items(v) if isinstance(x, dict)]


def _f(v: Any, sig: int = 4) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "—"
    return f"{x:.{sig}g}"


def ci_text(lat: dict[str, Any] | None, key: str) -> str:
    """'95 % CI 0.141–0.145 ms' for key p50 / p99; '' when the report has no interval."""
    ci = (lat or {}).get(f"{key}_ci")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    conf = (lat or {}).get("ci_confidence")
    conf = conf if isinstance(conf, (int, float)) and 0 < conf < 1 else 0.95
    open_end = key == "p99" and (lat or {}).get("p99_ci_bounded") is False
    if key == "p50" and (lat or {}).get("p50_ci_bounded") is False:  # under 6 iterations
        return (f"{conf * 100:.0f} % CI wider than {_f(ci[0])}–{_f(ci[1])} ms (too few "
                "iterations to bound it)")
    return (f"{conf * 100:.0f} % CI {_f(ci[0])}–{_f(ci[1])}{'+' if open_end else ''} ms"
            + (" (too few iterations to bound it above)" if open_end else ""))


def stability(r: dict[str, Any]) -> dict[str, Any]:
    s = r.get("stability")
    return s if isinstance(s, dict) and isinstance(s.get("verdict"), str) else {}


def verdict_line(r: dict[str, Any]) -> str:
    """'stable' / 'noisy: reason; reason' in one line; '' for reports without a verdict."""
    s = stability(r)
    if not s.get("verdict"):
        return ""
    noisy = [str(x.get("text", "")) for x in _dicts(s.get("reasons")) if x.get("noisy")]
    return s["verdict"] + (": " + "; ".join(noisy) if noisy else "")


def device_line(r: dict[str, Any]) -> str:
    d = r.get("latency_device_ms")
    if not isinstance(d, dict) or d.get("p50") is None:
        return ""
    return (f"p50 {_f(d['p50'])} ms ({ci_text(d, 'p50') or 'no interval'})  p99 {_f(d.get('p99'))}"
            f" ms  [{d.get('source') or 'runtime'}]")


def layers_line(r: dict[str, Any]) -> str:
    """'layers add up to 0.108 ms of 0.110 ms (mean of the profiled run): 0.002 ms unaccounted'"""
    s = r.get("layers_summary")
    if not isinstance(s, dict) or s.get("sum_ms") is None:
        return ""
    run = s.get("profiled_run_ms")
    if run is None:
        return f"layers add up to {_f(s['sum_ms'])} ms"
    return (f"layers add up to {_f(s['sum_ms'])} ms of {_f(run)} ms end to end "
            f"({s.get('statistic') or 'mean'} of the profiled run, {s.get('source') or 'timed'}): "
            f"{_f(s.get('unaccounted_ms'))} ms unaccounted for (framework overhead, copies, "
            "untimed layers)")


def environment_pairs(env: dict[str, Any]) -> list[tuple[str, Any]]:
    """The machine-state rows a report records since schema 2."""
    freq = env.get("frequency_mhz") if isinstance(env.get("frequency_mhz"), dict) else None
    during = env.get("load_during") if isinstance(env.get("load_during"), dict) else {}
    rows: list[tuple[str, Any]] = []
    if "governor" in env:
        rows.append(("CPU governor", env.get("governor") or "not readable"))
    if freq:
        hw = (f"; hardware {_f(freq.get('hw_min'))}–{_f(freq.get('hw_max'))} MHz"
              if freq.get("hw_max") else "")
        rows.append(("CPU frequency", f"{_f(freq.get('min'))}–{_f(freq.get('max'))} MHz "
                                      f"({freq.get('source')}){hw}"))
    if isinstance(env.get("load_before"), list):
        rows.append(("Load average before", ", ".join(_f(x, 3) for x in env["load_before"])))
    if during:
        rows.append(("Load during the run", f"{_f(during.get('other_cores'), 2)} cores by other "
                     f"processes, {_f(during.get('own_cores'), 2)} by this run"))
    if "pinned_cpus" in env:
        rows.append(("Pinning", f"CPUs {env.get('pinned_cpus')}" if env.get("pinned")
                     else "not pinned"))
    if env.get("throttle_count") is not None:
        rows.append(("Thermal throttle events (since boot)", env["throttle_count"]))
    return rows


def stability_html(r: dict[str, Any]) -> str:
    """The verdict section: badge, reasons measured, what to do."""
    s = stability(r)
    if not s.get("verdict"):
        return ""
    cls = "ok" if s["verdict"] == "stable" else "bad"
    reasons = "".join(f"<li>{_e(x.get('text'))}{'' if x.get('noisy') else ' (note)'}</li>"
                      for x in _dicts(s.get("reasons")))
    advice = "".join(f"<li>{_e(a)}</li>" for a in _items(s.get("advice")))
    settled = s.get("settled_at_iteration")
    warm = (f"Warm-up: {s.get('warmup_iterations')} iterations; settled at iteration "
            f"{settled}" if settled is not None else
            f"Warm-up: {s.get('warmup_iterations')} iterations; did not settle")
    return (f'<h2>Stability <span class="badge {cls}">{_e(s["verdict"])}</span></h2>'
            + (f"<p>Measured reasons:</p><ul>{reasons}</ul>" if reasons else
               "<p>No sign of noise: low spread, no drift, no competing load measured.</p>")
            + (f"<p>What to do:</p><ul>{advice}</ul>" if advice else "")
            + f'<p class="muted">{_e(warm)} (rule: {_e(s.get("warmup_rule") or "—")}). '
            f"CV {_f(s.get('cv'), 3)}.</p>")


def text_lines(r: dict[str, Any]) -> list[str]:
    """The CLI's lines after the latency figures: intervals, runtime latency, verdict, advice."""
    lat = r.get("latency_ms") or {}
    out = []
    if ci_text(lat, "p50"):
        out.append(f"  interval    p50 {ci_text(lat, 'p50')}   p99 {ci_text(lat, 'p99')}")
    if device_line(r):
        out.append(f"  runtime's   {device_line(r)}")
    s = stability(r)
    if s.get("verdict"):
        settled = s.get("settled_at_iteration")
        warm = (f"settled after {settled} warm-up iterations" if settled is not None
                else f"did not settle in {s.get('warmup_iterations')} warm-up iterations")
        out.append(f"  stability   {s['verdict'].upper()}  (CV {_f(s.get('cv'), 3)}, {warm})")
        for reason in _dicts(s.get("reasons")):
            out.append(f"              - {reason.get('text')}"
                       + ("" if reason.get("noisy") else " (note)"))
        for advice in _items(s.get("advice")):
            out.append(f"              → {advice}")
    if layers_line(r):
        out.append(f"  layers      {layers_line(r)}")
    return out
