"""Colours of the graph view: op categories (Netron-like), time, device and precision scales.

Category colours are saturated mid-dark tones with white header text, readable on a light
and on a dark window alike; everything else (background, box bodies, text, edges) comes from
the widget's QPalette so the view follows the system theme.
"""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette

from app.gui.graph.palette import (CATEGORY_COLOURS, CATEGORY_LABELS, CATEGORY_OF,  # noqa: F401
                                   category, dominant_category)

HOT_COLOUR = "#d7301f"  # the slowest node in "time" mode
_TIME_STOPS = ((0.0, "#3b6fb6"), (0.35, "#5fa8a0"), (0.6, "#e6c350"), (0.8, "#ee8a3c"),
               (1.0, HOT_COLOUR))
PRECISION_COLOURS: dict[str, str] = {
    "FP64": "#1f4e79", "FP32": "#3b6fb6", "TF32": "#4a86c5", "FP16": "#2e8b57", "BF16": "#57a773",
    "FP8": "#8e6bb8", "INT16": "#c77c2e", "INT8": "#e07b24", "UINT8": "#e89a3c",
    "INT4": "#c8453a", "UINT4": "#d0594d", "NF4": "#b0413e", "INT2": "#9b2d2d", "BOOL": "#777777",
    "MIXED": "#8a7f6a",
}
DEVICE_COLOURS: dict[str, str] = {"CPU": "#3b6fb6", "GPU": "#2e8b57", "NPU": "#b3631b",
                                  "CUDA": "#2e8b57", "DML": "#6a4a8c", "MIXED": "#8a7f6a"}
_CATEGORICAL = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
                "#ff9da7", "#9c755f", "#bab0ac")


def category_colour(cat: str) -> QColor:
    return QColor(CATEGORY_COLOURS.get(cat, CATEGORY_COLOURS["other"]))


def time_colour(fraction: float) -> QColor:
    """0 -> cool blue, 1 -> HOT_COLOUR, through teal, yellow and orange."""
    f = min(1.0, max(0.0, fraction))
    for (f0, c0), (f1, c1) in zip(_TIME_STOPS, _TIME_STOPS[1:]):
        if f <= f1:
            t = 0.0 if f1 == f0 else (f - f0) / (f1 - f0)
            a, b = QColor(c0), QColor(c1)
            return QColor.fromRgbF(a.redF() + (b.redF() - a.redF()) * t,
                                   a.greenF() + (b.greenF() - a.greenF()) * t,
                                   a.blueF() + (b.blueF() - a.blueF()) * t)
    return QColor(HOT_COLOUR)


def value_colour(value: str, table: dict[str, str], seen: list[str]) -> QColor:
    """A fixed colour for known values, a stable categorical one for the rest."""
    known = table.get(value.upper())
    if known is not None:
        return QColor(known)
    if value not in seen:
        seen.append(value)
    return QColor(_CATEGORICAL[seen.index(value) % len(_CATEGORICAL)])


def header_text_colour(fill: QColor) -> QColor:
    """White on dark fills, near-black on light ones (time scale's yellow)."""
    lum = 0.2126 * fill.redF() + 0.7152 * fill.greenF() + 0.0722 * fill.blueF()
    return QColor("#1b1b1b") if lum > 0.6 else QColor("#ffffff")


def neutral_colour(palette: QPalette) -> QColor:
    """Fill of a box without data in time/device/precision modes."""
    c = QColor(palette.color(QPalette.ColorRole.Mid))
    return c


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightnessF() < 0.5


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """a*(1-t) + b*t."""
    return QColor.fromRgbF(a.redF() + (b.redF() - a.redF()) * t,
                           a.greenF() + (b.greenF() - a.greenF()) * t,
                           a.blueF() + (b.blueF() - a.blueF()) * t,
                           a.alphaF() + (b.alphaF() - a.alphaF()) * t)
