"""Live charts of a profiling run: latency, memory, CPU and power, streamed from the worker.

Samples land in preallocated numpy ring buffers (no per-sample allocation, no per-sample
setData); a ~30 Hz QTimer redraws only what changed, with clip-to-view, peak downsampling and
antialiasing off, so a fast model (thousands of iterations a second) stays cheap to watch.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QCheckBox, QGraphicsView, QHBoxLayout, QLabel, QVBoxLayout, QWidget,
)


log = logging.getLogger(__name__)

REDRAW_MS = 33  # ~30 Hz timer
SLOW_SERIES_S = 0.25  # sampler curves (RSS, CPU, power): redrawn at most 4 times a second
MIN_FRAME_S = 0.06  # but a new frame only 60 ms after the last: the worker's latency and
# sampler batches (each ~10 Hz) then share a frame instead of costing one each
STATS_EVERY = 6  # rolling p50/p99 label: every 6th redraw (~5 Hz)
ROLLING_WINDOW = 1000  # latencies behind the rolling p50/p99
SPIKE_WINDOW = 2000  # latencies behind the live spike threshold
SPIKE_K = 6.0  # same rule as profilers.stats.spike_mask: median + k x MAD
DECIMATE_ABOVE = 4000  # points; above, the chart gets a median + min/max per bucket (decimate)
BUDGET_IN_RANGE = 5.0  # a budget line widens an axis only up to 5x the data's robust top
MAX_SPIKE_MARKERS = 300  # on a noisy machine more would bury the curve: the largest are marked
LATENCY_CAPACITY = 1 << 18  # 262k iterations (a 60 s run of a ~0.25 ms model)
SAMPLER_CAPACITY = 1 << 15  # 32k samples (27 min at the default 50 ms period)

# Mid-tone hues readable on light and dark backgrounds; axes and background follow the palette.
SERIES_COLOURS = {"latency_ms": "#3b82f6", "rss_mb": "#10b981", "gpu_mem_mb": "#a855f7",
                  "cpu_percent": "#f59e0b", "power_w": "#ef4444", "gpu_power_w": "#ec4899"}
SPIKE_COLOUR = "#ef4444"
BUDGET_COLOUR = "#ef4444"


def nice_ceiling(x: float) -> float:
    """The next 1-2-2.5-5 x 10^k at or above x: axis ranges that move in steps, not per frame."""
    return _ceiling(x, (1.0, 2.0, 2.5, 5.0, 10.0))


def nice_ceiling_y(x: float) -> float:
    """Finer steps for a y axis (1-1.5-2-2.5-3-4-5-6-8): at most a third of it left empty."""
    return _ceiling(x, (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0))


def _ceiling(x: float, steps: tuple[float, ...]) -> float:
    if not np.isfinite(x) or x <= 0:
        return 1.0
    exp = np.floor(np.log10(x))
    for m in steps:
        if m * 10 ** exp >= x:
            return float(m * 10 ** exp)
    return float(10 ** (exp + 1))


def robust_top(values: np.ndarray, k: float = SPIKE_K, floor: float = 0.0) -> float:
    """The top of what a chart should show of `values`: their maximum when nothing stands
    out, else the largest value at or under median + k x MAD (the spike rule, with MAD at
    least 1 % of the median and `floor`), so a few spikes are marked, not scaled to."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0
    if v.size < 20:
        return float(v.max())
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    limit = med + k * max(mad, 0.01 * abs(med), floor)
    body = v[v <= limit]
    return float(body.max()) if body.size else float(v.max())


def fmt_ms(value: float | None) -> str:
    """One formatting of milliseconds for every label, so the GUI and report agree."""
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.1f} ms"
    if value >= 10:
        return f"{value:.2f} ms"
    return f"{value:.3f} ms"


class RingBuffer:
    """Preallocated (t, value) ring of fixed capacity.

    Each point is written twice (slot i and i + capacity) so the newest `capacity` points are
    always one contiguous slice: views for plotting need no copy and no concatenate.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._t = np.zeros(2 * capacity, dtype=np.float64)
        self._v = np.zeros(2 * capacity, dtype=np.float64)
        self.total = 0  # points ever written

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def clear(self) -> None:
        self.total = 0

    def extend(self, t: np.ndarray, v: np.ndarray) -> None:
        m = len(v)
        if m == 0:
            return
        if m > self.capacity:
            t, v = t[-self.capacity:], v[-self.capacity:]
            self.total += m - self.capacity
            m = self.capacity
        idx = np.arange(self.total, self.total + m) % self.capacity
        self._t[idx] = t
        self._t[idx + self.capacity] = t
        self._v[idx] = v
        self._v[idx + self.capacity] = v
        self.total += m

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """The buffered points, oldest first (views into the buffer: read, don't keep)."""
        if self.total <= self.capacity:
            return self._t[:self.total], self._v[:self.total]
        start = self.total % self.capacity
        return (self._t[start:start + self.capacity], self._v[start:start + self.capacity])

    def last(self, k: int) -> np.ndarray:
        _, v = self.view()
        return v[-k:]


class Buckets:
    """Min, max and median of every `k` consecutive points of a RingBuffer, kept up to date
    incrementally (each point is bucketed once, when its bucket fills), so drawing a dense
    series costs O(screen width) per frame instead of O(points in the run)."""

    def __init__(self, source: RingBuffer, k: int = 64):
        self.source, self.k = source, k
        cap = source.capacity // k + 1
        self.mins, self.maxs, self.meds = RingBuffer(cap), RingBuffer(cap), RingBuffer(cap)
        self.done = 0  # absolute index of the first point not yet in a bucket

    def clear(self) -> None:
        for b in (self.mins, self.maxs, self.meds):
            b.clear()
        self.done = 0

    def update(self) -> None:
        total, k = self.source.total, self.k
        end = (total // k) * k
        if end <= self.done:
            return
        t, v = self.source.view()
        first = total - v.size  # absolute index of v[0]
        start = max(self.done, -(-first // k) * k)  # the oldest full bucket still buffered
        if end > start:
            seg_v = v[start - first:end - first].reshape(-1, k)
            bt = t[start - first:end - first:k]
            self.mins.extend(bt, seg_v.min(axis=1))
            self.maxs.extend(bt, seg_v.max(axis=1))
            self.meds.extend(bt, np.median(seg_v, axis=1))
        self.done = end

    def reduced(self, width: int, lo: float | None = None, hi: float | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(median x, median y, envelope x, envelope y) for ~`width` columns between lo and hi
        (everything when None); the unbucketed newest points are appended as they are."""
        self.update()
        bt, mn = self.mins.view()
        mx, md = self.maxs.view()[1], self.meds.view()[1]
        t, v = self.source.view()
        tail = self.done - (self.source.total - v.size)
        tail_t, tail_v = t[max(tail, 0):], v[max(tail, 0):]
        if t.size and bt.size and bt[0] < t[0]:  # buckets of points the ring already dropped
            i = int(np.searchsorted(bt, t[0]))
            bt, mn, mx, md = bt[i:], mn[i:], mx[i:], md[i:]
        if lo is not None and hi is not None:
            i, j = np.searchsorted(bt, [lo, hi])
            i = max(i - 1, 0)
            bt, mn, mx, md = bt[i:j + 1], mn[i:j + 1], mx[i:j + 1], md[i:j + 1]
            tail_t, tail_v = tail_t[tail_t <= hi], tail_v[tail_t <= hi]
        g = max(1, -(-bt.size // max(width, 1)))
        if g > 1:
            m = bt.size // g
            rest = slice(m * g, None)
            gt = np.concatenate([bt[:m * g:g], bt[rest][:1]])
            gmn = np.concatenate([mn[:m * g].reshape(m, g).min(axis=1), mn[rest].min(keepdims=True)
                                  if mn[rest].size else mn[:0]])
            gmx = np.concatenate([mx[:m * g].reshape(m, g).max(axis=1), mx[rest].max(keepdims=True)
                                  if mx[rest].size else mx[:0]])
            gmd = np.concatenate([np.median(md[:m * g].reshape(m, g), axis=1),
                                  np.median(md[rest], keepdims=True) if md[rest].size
                                  else md[:0]])
            bt, mn, mx, md = gt, gmn, gmx, gmd
        env_x = np.concatenate([np.repeat(bt, 2), tail_t])
        env_y = np.empty(2 * bt.size)
        env_y[0::2], env_y[1::2] = mn, mx
        env_y = np.concatenate([env_y, tail_v])
        return (np.concatenate([bt, tail_t]), np.concatenate([md, tail_v]), env_x, env_y)


@dataclass
class _Series:
    name: str
    buffer: RingBuffer
    curve: pg.PlotDataItem
    envelope: pg.PlotDataItem | None = None  # min-max band behind a dense curve
    buckets: Buckets | None = None  # incremental reduction for dense series
    dirty: bool = False
    drawn_at: float = 0.0


def predicted_power_source() -> str:
    """What the worker's power sampler will be on this machine: RAPL when its counters are
    readable, else an estimate. The report's own `power.source` replaces it at the end."""
    try:
        from profilers.samplers.power import rapl_packages

        for domain in rapl_packages():
            (domain / "energy_uj").read_text()
            return "rapl"
    except OSError:
        pass
    except Exception as e:  # never let a sensor probe break the window
        log.debug("power source probe failed: %s", e)
    return "estimate"


class LiveCharts(QWidget):
    """Four linked time plots plus a line of rolling figures; fed by `add_samples`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, useOpenGL=False)
        self.series: dict[str, _Series] = {}
        self.final_p50_ms: float | None = None
        self.power_source: str | None = None
        self._budget_items: list[tuple[pg.PlotItem, pg.InfiniteLine]] = []
        self._budget_lines: dict[str, pg.InfiniteLine] = {}
        self._budget_texts: tuple[str, ...] = ()
        self._budget_state: dict[str, str] = {}  # budget text -> what its label says now
        self._limits: dict[int, float] = {}  # id(line) -> limit in data units (log mode moves it)
        self.log_latency = False
        self._spikes = RingBuffer(4096)
        self._spike_checked = 0  # latency points already checked for spikes
        self._spikes_dirty = False
        self._redraws = 0
        self._streaming = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        header = QHBoxLayout()
        self.rolling_label = QLabel("no run yet")
        self.rolling_label.setToolTip("rolling figures over the last "
                                      f"{ROLLING_WINDOW} iterations while the run streams")
        self.p50_label = QLabel("")
        self.p50_label.setToolTip("p50 latency of the finished run, as the worker's report has it")
        self.p50_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.p50_label.font()
        font.setBold(True)
        self.p50_label.setFont(font)
        self.resources_label = QLabel("")  # kept separate for callers; shown in one line
        self.resources_label.hide()
        self.budget_label = QLabel("")
        self.budget_label.setToolTip("Budgets: while the run streams they are checked on the "
                                     "last 200 iterations (live); the verdict is the final "
                                     "figure of the whole run, as the report has it")
        self.budget_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.budget_label.hide()
        self.log_check = QCheckBox("log latency")
        self.log_check.setToolTip("Logarithmic latency axis: the typical latency and rare "
                                  "spikes 100× larger both stay readable")
        self.log_check.toggled.connect(self.set_log_latency)
        from app.gui.layout import elide_width

        for label in (self.rolling_label, self.budget_label):
            elide_width(label)  # growing texts never widen the window (tooltip: all of it)
        header.addWidget(self.rolling_label, 1)
        header.addSpacing(12)
        header.addWidget(self.p50_label)
        header.addSpacing(12)
        header.addWidget(self.log_check)
        layout.addLayout(header)
        layout.addWidget(self.budget_label)  # its own line, shown only with budgets

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.ci.setContentsMargins(2, 2, 2, 2)
        # antialiasing is off anyway (DontSavePainterState would be cheaper still, but
        # pyqtgraph's items rely on the saved state: curves vanish with it)
        self.canvas.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing,
                                        True)
        layout.addWidget(self.canvas, 1)
        self.plots: dict[str, pg.PlotItem] = {}
        for key in ("latency", "memory", "cpu", "power"):
            plot = self.canvas.addPlot(title=None)
            plot.setLabel("bottom", "time (s)")
            # No grid: pyqtgraph draws it with the axis items, which would then repaint (and
            # replay their tick text) on every frame. Ranges move in steps (_update_ranges).
            plot.setMenuEnabled(False)
            plot.enableAutoRange(x=False, y=False)
            plot.getViewBox().sigRangeChangedManually.connect(self._manual_range)
            plot.hideButtons()
            plot.getAxis("left").setWidth(44)
            for axis in ("left", "bottom"):  # "latency (ms) (x0.001)" reads as µs: plain ms
                plot.getAxis(axis).enableAutoSIPrefix(False)
            plot.setMinimumWidth(90)
            self.plots[key] = plot
        self.plots["latency"].setLabel("left", "latency (ms)")
        self.plots["memory"].setLabel("left", "RSS (MB)")
        self.plots["cpu"].setLabel("left", "CPU (%)")
        self.set_power_source(None)
        first = self.plots["latency"]
        for plot in list(self.plots.values())[1:]:
            plot.setXLink(first)

        self._add_series("latency_ms", "latency", LATENCY_CAPACITY, envelope=True)
        self._add_series("rss_mb", "memory", SAMPLER_CAPACITY)
        self._add_series("gpu_mem_mb", "memory", SAMPLER_CAPACITY)
        self._add_series("cpu_percent", "cpu", SAMPLER_CAPACITY)
        self._add_series("power_w", "power", SAMPLER_CAPACITY)
        self._add_series("gpu_power_w", "power", SAMPLER_CAPACITY)
        spike = QColor(SPIKE_COLOUR)
        spike.setAlpha(170)
        self.spike_markers = pg.PlotDataItem(pen=None, symbol="t1", symbolSize=6,
                                             symbolPen=None, symbolBrush=pg.mkBrush(spike))
        self.plots["latency"].addItem(self.spike_markers)
        self.plots["latency"].getAxis("left").setToolTip(
            "y follows the robust range (p99.5 of the run); spikes above median + 6 × MAD "
            f"are marked ▲ (the {MAX_SPIKE_MARKERS} largest), pinned to the top edge when they "
            "are off the scale. Drag or zoom "
            "to take over the range; a new run gives it back.")
        self._auto_range = True
        self._y_top: float | None = None  # latency axis top (robust range)
        self._ranges: dict[str, tuple[float, float]] = {}

        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self._tick)
        self._last_frame = 0.0
        self._apply_palette()

    def _manual_range(self, *_: Any) -> None:
        """The user dragged or zoomed: the ranges are theirs until the next run, and the
        decimated curves are recomputed for what is now visible."""
        self._auto_range = False
        self._y_top = None
        self._draw_spikes()
        for s in self.series.values():
            s.dirty = s.dirty or len(s.buffer) > DECIMATE_ABOVE
        if not self._streaming:
            self.redraw()

    def _add_series(self, name: str, plot: str, capacity: int, envelope: bool = False) -> None:
        band = None
        if envelope:
            faint = QColor(SERIES_COLOURS[name])
            faint.setAlpha(70)
            band = pg.PlotDataItem(pen=pg.mkPen(faint, width=1), antialias=False,
                                   skipFiniteCheck=True)
            band.setClipToView(True)
            self.plots[plot].addItem(band)
        curve = pg.PlotDataItem(pen=pg.mkPen(SERIES_COLOURS[name], width=1), antialias=False,
                                skipFiniteCheck=True)
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")  # a safety net: we hand it ~2/px
        self.plots[plot].addItem(curve)
        buffer = RingBuffer(capacity)
        self.series[name] = _Series(name, buffer, curve, band,
                                    Buckets(buffer) if envelope else None)

    # --- palette ---------------------------------------------------------------------------
    def _apply_palette(self) -> None:
        pal = self.palette()
        base = pal.color(QPalette.ColorRole.Base)
        text = pal.color(QPalette.ColorRole.Text)
        self.canvas.setBackground(base)
        for plot in self.plots.values():
            for axis in ("left", "bottom"):
                ax = plot.getAxis(axis)
                ax.setPen(pg.mkPen(text))
                ax.setTextPen(pg.mkPen(text))

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt override)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._apply_palette()
        super().changeEvent(event)

    # --- run lifecycle ---------------------------------------------------------------------
    def reset(self, budgets: list[str] | tuple[str, ...] = ()) -> None:
        """A new run: empty buffers (memory stays allocated), budget lines, streaming on."""
        for s in self.series.values():
            s.buffer.clear()
            if s.buckets is not None:
                s.buckets.clear()
            s.curve.setData([], [])
            if s.envelope is not None:
                s.envelope.setData([], [])
            s.dirty = False
        self._spikes.clear()
        self._spike_checked = 0
        self.spike_markers.setData([], [])
        self._auto_range, self._y_top = True, None
        self._ranges.clear()
        self.final_p50_ms = None
        self.p50_label.setText("")
        self.rolling_label.setText("starting…")
        self.resources_label.setText("")
        self._budget_state = {}
        self.set_budgets(budgets)
        self.set_power_source(predicted_power_source(), provisional=True)
        self._streaming = True
        self.timer.start()

    def stop(self) -> None:
        """The run ended (any way): draw what arrived and stop the timer; data stays."""
        self.redraw()
        self._streaming = False
        self.timer.stop()
        self._update_ranges()
        self._update_rolling()

    @property
    def streaming(self) -> bool:
        return self._streaming

    def add_samples(self, series: dict[str, list[list[float]]]) -> None:
        """One `samples` event: append to the ring buffers; drawing waits for the timer."""
        for name, points in series.items():
            s = self.series.get(name)
            if s is None or not points:
                continue
            a = np.asarray(points, dtype=np.float64)
            if a.ndim != 2 or a.shape[1] < 2:
                continue
            s.buffer.extend(a[:, 0], a[:, 1])
            s.dirty = True

    def point_count(self, name: str) -> int:
        return len(self.series[name].buffer)

    def _draw_series(self, s: _Series) -> None:
        """Hand pyqtgraph the visible x range (clip to view) reduced to ~1-2 points per pixel
        column. A dense series is drawn as its per-bucket median over a faint min-max
        envelope (peak decimation): on a noisy machine the envelope alone is a solid block."""
        t, v = s.buffer.view()
        if v.size <= DECIMATE_ABOVE or s.buckets is None:
            s.curve.setData(t, v)
            if s.envelope is not None:
                s.envelope.setData([], [])
            return
        vb = s.curve.getViewBox()
        width = int(vb.width()) if vb is not None and vb.width() > 0 else 1000
        lo = hi = None
        if vb is not None and not self._auto_range:
            lo, hi = vb.viewRange()[0]
            i, j = np.searchsorted(t, [lo, hi])
            if j - i <= 2 * width:  # zoomed in far enough: every point
                s.curve.setData(t[max(i - 1, 0):j + 1], v[max(i - 1, 0):j + 1])
                if s.envelope is not None:
                    s.envelope.setData([], [])
                return
        mid_x, mid_y, env_x, env_y = s.buckets.reduced(max(width // 2, 200), lo, hi)
        s.curve.setData(mid_x, mid_y)
        if s.envelope is not None:
            s.envelope.setData(env_x, env_y)

    def _tick(self) -> None:
        if time.perf_counter() - self._last_frame >= MIN_FRAME_S:
            self.redraw()

    def redraw(self) -> None:
        any_dirty = False
        now = time.perf_counter()
        for s in self.series.values():
            # memory, CPU and power move slowly (20 samples/s): 4 frames a second is plenty,
            # and each one spared is a plot not repainted
            if s.dirty and (s.envelope is not None or not self._streaming
                            or now - s.drawn_at >= SLOW_SERIES_S):
                self._draw_series(s)
                s.dirty = False
                s.drawn_at = now
                any_dirty = True
        if not any_dirty:
            return
        self._last_frame = now
        self._find_spikes()
        self._redraws += 1
        if self._redraws % STATS_EVERY == 1 or not self._streaming:
            self._update_ranges()
            if self._spikes_dirty:
                self._draw_spikes()
            self._update_rolling()

    def _find_spikes(self) -> None:
        buf = self.series["latency_ms"].buffer
        new = buf.total - self._spike_checked
        if new <= 0:
            return
        t, v = buf.view()
        new = min(new, len(v))
        window = v[-max(SPIKE_WINDOW, new):]
        if window.size < 20:
            return  # too few to call anything a spike yet
        med = float(np.median(window))
        mad = 1.4826 * float(np.median(np.abs(window - med)))
        limit = med + SPIKE_K * max(mad, 0.01 * med)
        fresh_t, fresh_v = t[-new:], v[-new:]
        mask = fresh_v > limit
        if mask.any():
            self._spikes.extend(fresh_t[mask], fresh_v[mask])
            self._spikes_dirty = True  # drawn with the ranges, ~5 Hz: scatter updates cost
        self._spike_checked = buf.total

    def _draw_spikes(self) -> None:
        self._spikes_dirty = False
        st, sv = self._spikes.view()
        if sv.size > MAX_SPIKE_MARKERS:
            keep = np.sort(np.argpartition(sv, -MAX_SPIKE_MARKERS)[-MAX_SPIKE_MARKERS:])
            st, sv = st[keep], sv[keep]
        y = sv.copy()
        if self._y_top is not None:
            np.minimum(y, self._y_top * 0.97, out=y)  # off the scale: pinned to the top edge
        self.spike_markers.setData(st.copy(), y)

    def _set_range(self, key: str, lo: float, hi: float, axis: str) -> None:
        if self._ranges.get(key + axis) != (lo, hi):
            self._ranges[key + axis] = (lo, hi)
            vb = self.plots[key].getViewBox()
            (vb.setXRange if axis == "x" else vb.setYRange)(lo, hi, padding=0)

    def _update_ranges(self) -> None:
        """Axis ranges that change in nice steps (x: the run's length so far; y: from zero to
        a nice ceiling), so axes repaint a few times per run instead of 30 times a second.
        Latency y follows a subsampled p99.5, so a few huge spikes do not flatten the body of
        the distribution into a line at zero (spikes above it are pinned to the top edge)."""
        if not self._auto_range:
            return
        t_end = 0.0
        for s in self.series.values():
            if len(s.buffer):
                t_end = max(t_end, float(s.buffer.view()[0][-1]))
        if t_end > 0:
            self._set_range("latency", 0.0, nice_ceiling(t_end * 1.05), "x")
        for key, names, robust in (("memory", ("rss_mb", "gpu_mem_mb"), False),
                                   ("cpu", ("cpu_percent",), True),
                                   ("power", ("power_w", "gpu_power_w"), True)):
            # memory grows in steps that are real; CPU and power have sampler blips (a CPU
            # reading over a few ms counts whole 10 ms clock ticks: 1 tick in 1 ms reads
            # 1000 %; the power estimate follows it) that must not set the axis
            top = 0.0
            for name in names:
                b = self.series[name].buffer
                if len(b):
                    vals = b.view()[1]
                    top = max(top, robust_top(vals, floor=1.0) if robust else float(vals.max()))
            top = self._with_budgets(key, top)
            if top > 0:
                self._set_range(key, 0.0, nice_ceiling_y(top * 1.1), "y")
        _, v = self.series["latency_ms"].buffer.view()
        if v.size < 5:
            return
        sample = v[:: max(1, v.size // 20_000)]
        # the body of the distribution (what is under the spike rule), not the spikes: those
        # are marked and pinned to the top edge
        top = robust_top(sample) * 1.15
        limits = [self._limits[id(line)] for plot, line in self._budget_items
                  if plot is self.plots["latency"]]
        top = nice_ceiling_y(self._with_budgets("latency", top))
        if self.log_latency:
            positive = sample[sample > 0]
            low = float(positive.min()) if positive.size else top / 100
            low = min([low] + [x / 1.5 for x in limits if x > 0])
            lo, hi = float(np.log10(10 ** np.floor(np.log10(low)))), float(np.log10(top))
            top = float(sample.max()) * 1.2  # log scale: room for every spike
            hi = max(hi, float(np.log10(nice_ceiling(top))))
            if (lo, hi) != self._ranges.get("latencyy"):
                self._y_top = None  # nothing pinned: the log axis holds them all
                self._set_range("latency", lo, hi, "y")
                self._draw_spikes()
        elif top != self._y_top:
            self._y_top = top
            self._set_range("latency", 0.0, top, "y")
            self._draw_spikes()

    def _with_budgets(self, key: str, top: float) -> float:
        """The axis top with this plot's budget lines in view, unless a line is so far above
        the data (a 20 ms budget over a 0.1 ms model) that showing it would flatten them: its
        state is then in the header's budget label."""
        for plot, line in self._budget_items:
            limit = self._limits[id(line)]
            if plot is self.plots[key] and (top <= 0 or limit <= BUDGET_IN_RANGE * top):
                top = max(top, limit * 1.1)
        return top

    def set_log_latency(self, on: bool) -> None:
        """Linear (default) or logarithmic latency axis; budget lines and spikes follow."""
        if on == self.log_latency:
            return
        self.log_latency = on
        if self.log_check.isChecked() != on:
            self.log_check.setChecked(on)
        self.plots["latency"].setLogMode(y=on)
        self.set_budgets(self._budget_texts)
        self._y_top = None
        self._ranges.clear()
        self._auto_range = True
        self._update_ranges()
        self._draw_spikes()

    def _update_rolling(self) -> None:
        lat = self.series["latency_ms"].buffer
        parts = []
        if len(lat):
            recent = lat.last(ROLLING_WINDOW)
            p50, p99 = np.percentile(recent, [50, 99])
            parts.append(f"{lat.total:,} it · rolling p50 {fmt_ms(float(p50))} · "
                         f"p99 {fmt_ms(float(p99))} · spikes {self._spikes.total}")
        res = []
        for name, fmt in (("rss_mb", "RSS {:.0f} MB"), ("cpu_percent", "CPU {:.0f}%"),
                          ("power_w", "{:.1f} W")):
            b = self.series[name].buffer
            if len(b):
                res.append(fmt.format(float(b.last(1)[0])))
        if res and self.power_source == "estimate" and len(self.series["power_w"].buffer):
            res[-1] += " (estimated)"
        self.resources_label.setText(" · ".join(res))
        self.rolling_label.setText("   |   ".join(p for p in (" · ".join(parts),
                                                              " · ".join(res)) if p)
                                   or "waiting for samples…")
        self.rolling_label.setToolTip(self.rolling_label.text() + "\n(rolling figures over the "
                                      f"last {ROLLING_WINDOW} iterations)")

    # --- budgets, power source, final figures ----------------------------------------------
    def set_budgets(self, texts: list[str] | tuple[str, ...]) -> None:
        from profilers.budgets import parse_budget

        for plot, line in self._budget_items:
            plot.removeItem(line)
        self._budget_items.clear()
        self._budget_lines.clear()
        self._limits.clear()
        self._budget_texts = tuple(texts)
        target = {"rss": "memory", "power": "power"}
        for text in texts:
            try:
                b = parse_budget(text)
            except Exception:
                continue  # the backend panel validates; a bad one is not drawn
            key = target.get(b.metric, "latency")
            plot = self.plots[key]
            log = key == "latency" and self.log_latency and b.limit > 0
            line = pg.InfiniteLine(pos=np.log10(b.limit) if log else b.limit, angle=0,
                                   movable=False,
                                   pen=pg.mkPen(BUDGET_COLOUR, width=1,
                                                style=Qt.PenStyle.DashLine),
                                   label=_budget_short(b.text),
                                   labelOpts={"position": 0.98, "color": BUDGET_COLOUR,
                                              "anchors": [(1, 1), (1, 1)]})
            plot.addItem(line)
            self._budget_items.append((plot, line))
            self._budget_lines[b.text] = line
            self._limits[id(line)] = b.limit
        old = self._budget_state  # a log/linear switch redraws the lines, keeps the state
        self._budget_state = {t: old.get(t, f"{_budget_name(t)}: watching")
                              for t in self._budget_lines}
        self._show_budget_state()

    def _show_budget_state(self) -> None:
        text = " · ".join(self._budget_state.values())
        self.budget_label.setText(text)
        self.budget_label.setToolTip(text.replace(" · ", "\n") + "\n\nLive: checked on the "
                                     "last 200 iterations while the run streams. Final: the "
                                     "whole run's figure, as the report has it.")
        self.budget_label.setVisible(bool(text))

    def mark_budget_broken(self, text: str, value: float) -> None:
        """The worker's live check (a rolling window of the last iterations) broke `text`:
        said as live, since the whole run's figure may still pass."""
        line = self._budget_lines.get(text)
        try:
            from profilers.budgets import parse_budget

            b = parse_budget(text)
            shown = _fmt_value(value, b.unit)
            metric = b.metric
        except Exception:
            shown, metric = f"{value:.3g}", "value"
        state = f"{_budget_name(text)}: live {metric} {shown} — broken (final figure pending)"
        self._budget_state[text] = state
        self._show_budget_state()
        if line is not None:
            line.setPen(pg.mkPen(BUDGET_COLOUR, width=2))
            if line.label is not None:
                line.label.setFormat(f"✗ {_budget_short(text)} (live)")

    def show_final_budgets(self, results: list[dict[str, Any]]) -> None:
        """The report's verdicts (final figures of the whole run) replace the live ones."""
        for r in results:
            text = str(r.get("budget", ""))
            value = r.get("value")
            shown = "—" if value is None else _fmt_value(float(value), str(r.get("unit", "")))
            verdict = {True: "PASS", False: "FAIL"}.get(r.get("ok"), "not measured")
            live = " (broken live, on a rolling window)" if r.get("broken_live") else ""
            self._budget_state[text] = (f"{_budget_name(text)}: final {r.get('metric', '')} "
                                        f"{shown} — {verdict}{live}")
            line = self._budget_lines.get(text)
            if line is not None:
                line.setPen(pg.mkPen(BUDGET_COLOUR, width=2 if r.get("ok") is False else 1,
                                     style=Qt.PenStyle.DashLine))
                if line.label is not None:
                    line.label.setFormat(f"{'✓' if r.get('ok') else '✗'} "
                                         f"{_budget_short(text)} {verdict}")
        self._show_budget_state()

    def set_power_source(self, source: str | None, note: str = "",
                         provisional: bool = False) -> None:
        """The power axis always names its source; an estimate says 'estimated' in the axis."""
        self.power_source = source
        if source is None:
            label = "power (W)"
        elif source == "estimate":
            label = "power (W) · estimated"
        else:
            label = f"power (W) · {source.upper() if source in ('rapl', 'nvml') else source}"
        self.plots["power"].setLabel("left", label)
        tip = note or ("expected source; confirmed when the run ends" if provisional else "")
        self.plots["power"].getAxis("left").setToolTip(tip)

    def set_result(self, report: dict[str, Any]) -> None:
        """The worker's report: exact p50, its spikes, the power source it really used."""
        lat = report.get("latency_ms") or {}
        self.final_p50_ms = lat.get("p50")
        from profilers.report.honest import ci_text, verdict_line

        verdict = (report.get("stability") or {}).get("verdict")
        self.p50_label.setText(f"p50 {fmt_ms(self.final_p50_ms)}   p99 {fmt_ms(lat.get('p99'))}"
                               f"   ({report.get('iterations', 0):,} it)"
                               + (f"   · {verdict.upper() if verdict == 'noisy' else verdict}"
                                  if verdict else ""))
        advice = (report.get("stability") or {}).get("advice") or []
        self.p50_label.setToolTip("\n".join(x for x in (
            "p50 of the finished run, as the worker's report has it",
            f"p50 {ci_text(lat, 'p50')}" if ci_text(lat, "p50") else "",
            f"p99 {ci_text(lat, 'p99')}" if ci_text(lat, "p99") else "",
            verdict_line(report).replace("; ", "\n  ").replace(": ", ":\n  ", 1),
            ("What to do:\n  " + "\n  ".join(advice)) if advice else "") if x))
        power = report.get("power") or {}
        if power.get("source"):
            self.set_power_source(power["source"], power.get("note") or "")
        if report.get("budgets"):
            self.show_final_budgets(report["budgets"])
        tl = (report.get("timelines") or {}).get("latency_ms") or {}
        spikes = report.get("spikes")
        if spikes is not None and tl.get("t_s"):
            t = np.asarray(tl["t_s"], dtype=np.float64)
            v = np.asarray(tl["values"], dtype=np.float64)
            idx = np.asarray([i for i in spikes if 0 <= i < len(v)], dtype=np.int64)
            self._spikes.clear()
            self._spikes.extend(t[idx], v[idx])
        self.stop()
        self._update_ranges()
        self._draw_spikes()
        self._update_rolling()

    def plot_colour(self, name: str) -> QColor:
        return QColor(SERIES_COLOURS[name])

    def clear(self) -> None:
        """Another model is open: nothing of the previous run stays on the charts."""
        self.reset(())
        self.timer.stop()
        self._streaming = False
        self.rolling_label.setText("no run yet")
        self.set_power_source(None)
        for key in self.plots:
            self._set_range(key, 0.0, 1.0, "y")
        self._set_range("latency", 0.0, 1.0, "x")


def _budget_name(text: str) -> str:
    """'p99=20ms' as the charts write it: 'p99 ≤ 20 ms'."""
    try:
        from profilers.budgets import parse_budget

        b = parse_budget(text)
        return f"{b.metric} ≤ {_fmt_value(b.limit, b.unit)}"
    except Exception:
        return text


def _budget_short(text: str) -> str:
    """The line's own label, short enough for a narrow plot: 'p99 ≤ 50 ms'."""
    try:
        from profilers.budgets import parse_budget

        b = parse_budget(text)
        return f"{b.metric} ≤ {b.limit:g} {b.unit}"
    except Exception:
        return text


def _fmt_value(value: float, unit: str) -> str:
    if unit == "ms":
        return fmt_ms(value)
    return f"{value:.4g} {unit}".strip()
