"""Writing what the window shows to files: a run report or a comparison, as HTML, JSON or CSV.

Runs on the GUI thread: the writers are fast (a report is a few MB at most) and import no
framework; the model files themselves are copied on a thread (copy_files)."""
from __future__ import annotations

import csv
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPORT_FILTERS = "HTML report (*.html);;JSON (*.json);;CSV (*.csv)"


def export_run(report: dict[str, Any], path: str | os.PathLike[str]) -> list[Path]:
    """A profile report, by suffix: .html, .json, or .csv (a folder of CSV files named after
    the chosen file, since a run has several tables)."""
    from profilers.report import write_csv, write_html, write_json

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".html":
        return [write_html(report, path)]
    if suffix == ".json":
        return [write_json(report, path)]
    if suffix == ".csv":
        return list(write_csv(report, path.with_suffix("")))
    raise ValueError(f"choose a .html, .json or .csv file name (got {path.name})")


def export_comparison(result: dict[str, Any], path: str | os.PathLike[str]) -> list[Path]:
    from profilers.report import write_json

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return [write_json(result, path)]
    if suffix == ".html":
        from profilers.report.compare_html import write_compare_html

        return [write_compare_html(result, path)]
    if suffix == ".csv":
        return [_comparison_csv(result, path)]
    raise ValueError(f"choose a .html, .json or .csv file name (got {path.name})")


def _comparison_csv(result: dict[str, Any], path: Path) -> Path:
    header = ["model", "format", "backend", "size_bytes", "params", "p50_ms", "p90_ms", "p99_ms",
              "rss_peak_mb", "cosine", "max_abs_err", "sqnr_db", "top1_agreement", "accuracy"]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in result.get("rows") or []:
            lat, fid = r.get("latency_ms") or {}, r.get("fidelity") or {}
            w.writerow([r.get("model"), r.get("format"), r.get("backend"), r.get("size_bytes"),
                        r.get("params"), lat.get("p50"), lat.get("p90"), lat.get("p99"),
                        r.get("rss_peak_mb"), fid.get("cosine"), fid.get("max_abs_err"),
                        fid.get("sqnr_db"), fid.get("top1_agreement"),
                        (r.get("accuracy") or {}).get("accuracy")])
    os.replace(tmp, path)
    return path


def model_files(path: str) -> list[Path]:
    """A model and its companions: OpenVINO .bin, ONNX external data, the lineage record."""
    p = Path(path)
    files = [p]
    if p.suffix.lower() == ".xml":
        files.append(p.with_suffix(".bin"))
    files += [q for q in (p.with_name(p.name + ".data"), p.with_name(p.name + ".lineage.json"))]
    return [f for f in files if f.exists()]


def copy_files(files: list[Path], dest_dir: str, done: Callable[[list[str], str | None], None]
               ) -> threading.Thread:
    """Copy on a thread (models can be large); `done(copied, error)` is called on that thread:
    route it through a Qt signal to touch widgets."""
    def work() -> None:
        copied: list[str] = []
        try:
            for f in files:
                copied.append(shutil.copy2(f, dest_dir))
            done(copied, None)
        except OSError as e:
            done(copied, f"{e.strerror or e}: {e.filename or ''}")

    t = threading.Thread(target=work, name="export-copy", daemon=True)
    t.start()
    return t
