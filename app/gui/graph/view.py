"""GraphView: the model graph in the centre of the main window.

A QGraphicsView over three layer items (items.py) fed by the folded graph (fold.py) and its
compound layout (layout.py). The view gets plain data only — a ModelGraph and dicts keyed by
node id — never a framework object.

Mouse: wheel zooms toward the cursor (kept by hand: the scrollable rect is one viewport larger
than the graph on every side, so this works when the graph is smaller than the window too),
drag (left on empty space, or middle) pans, click selects, double-click opens a group box /
closes a group frame (on its title). Keys: F fits — a readable overview: the deepest open
groups close until the graph fits at FIT_MIN_SCALE, else the zoom stops there, centred —
Ctrl+= / Ctrl+- zoom, Ctrl+0 is 100 %, Ctrl+F finds, F3 / Shift+F3 next / previous match,
Esc clears. Weights, Constant-node ones included, are rows of the box that reads them.

Speed (bench/gui_graph_bench.py, 2-core VM, offscreen): set_model -> first paint 90 ms for
DenseNet-121 (1,746 nodes, opens folded to 137 boxes; 0.33 s for 252 boxes with stages, the
machine loaded), 0.57 s for a 10,000-node graph;
opening every group of the latter and painting takes about 2 s. Big models open folded
(fold.py), and far-out zoom levels draw plain shapes without text (items.py).
"""
from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (QColor, QCursor, QImage, QKeySequence, QLinearGradient, QPainter, QPalette,
                           QShortcut)
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFrame, QGraphicsScene, QGraphicsView,
                               QHBoxLayout, QLabel, QLineEdit, QSizePolicy, QToolButton,
                               QToolTip, QVBoxLayout, QWidget)

from app.gui.graph.content import box_content
from app.gui.graph.fold import INPUT, OUTPUT, FoldItem, FoldTree, shape_text
from app.gui.graph.items import (BOX_GROUP, BOX_IO, BOX_NODE, BOX_OWNER, PAD, Box,
                                 EdgeLayer, Frame, FrameLayer, NodeLayer, Theme)
from app.gui.graph.layout import GROUP_TITLE, CompoundLayout, SceneLayout
from app.gui.graph.style import (CATEGORY_LABELS, DEVICE_COLOURS, HOT_COLOUR, PRECISION_COLOURS,
                                 category, category_colour, dominant_category,
                                 header_text_colour, neutral_colour, time_colour, value_colour)
from converters.graph import ModelGraph

log = logging.getLogger(__name__)

COLOUR_MODES = {"op": "Op type", "time": "Time", "device": "Device", "precision": "Precision"}
MIN_BOX_W, MAX_BOX_W = 96.0, 250.0
MIN_SCALE, MAX_SCALE = 0.01, 4.0
READABLE_SCALE = 0.85  # opening zoom when fitting the whole graph would make text unreadable
FIT_MIN_SCALE = 0.6  # below this zoom box titles are no longer legible: Fit folds or stops here
MAX_EXPORT_PIXELS = 16384  # longest side of an exported PNG


class _Canvas(QGraphicsView):
    """The QGraphicsView proper: input handling and the paint hook."""

    sig_painted = Signal(float)  # milliseconds the frame took
    sig_view_changed = Signal()

    def __init__(self, owner: GraphView):
        super().__init__(owner)
        self._owner = owner
        self._pan_from: QPoint | None = None
        self._press_pos: QPoint | None = None
        self._moved = False
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing, True)
        self.setCacheMode(QGraphicsView.CacheModeFlag.CacheNone)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.viewport().setMouseTracking(True)
        self.horizontalScrollBar().valueChanged.connect(self.sig_view_changed)
        self.verticalScrollBar().valueChanged.connect(self.sig_view_changed)

    # --- paint hook -------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        t = time.perf_counter()
        super().paintEvent(event)
        self.sig_painted.emit((time.perf_counter() - t) * 1000.0)

    # --- zoom ---------------------------------------------------------------------------------
    def scale_factor(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float, anchor_under_mouse: bool = True,
                at: QPointF | None = None) -> None:
        """Zoom keeping the scene point under `at` (viewport coordinates; default: the cursor
        or the centre) where it is.

        Qt's AnchorUnderMouse cannot do that once the graph is smaller than the window (the
        scroll bars have no range and the view centres the scene), so the view's scrollable
        rect is kept one viewport larger than the graph on every side (`update_margins`) and
        the anchor is kept by hand.
        """
        s = self.scale_factor()
        factor = max(MIN_SCALE / s, min(MAX_SCALE / s, factor))
        if abs(factor - 1.0) < 1e-6:
            return
        vp = self.viewport().rect()
        if at is None:
            cursor = self.viewport().mapFromGlobal(QCursor.pos())
            at = QPointF(cursor) if anchor_under_mouse and vp.contains(cursor) else \
                QPointF(vp.center())
        before = self.mapToScene(at.toPoint())
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(factor, factor)
        self.update_margins()
        self.keep_at(before, at)
        self.sig_view_changed.emit()

    def keep_at(self, scene_point: QPointF, viewport_point: QPointF) -> None:
        """Scroll so that `scene_point` shows at `viewport_point`."""
        now = self.mapFromScene(scene_point)
        d = now - viewport_point.toPoint()
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + d.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + d.y())

    def update_margins(self) -> None:
        """Room to scroll: the graph's rect plus one viewport at the current zoom each side."""
        graph = self._owner._scene_rect
        if graph.isEmpty():
            return
        s = self.scale_factor()
        vp = self.viewport().rect()
        mx, my = vp.width() / s, vp.height() / s
        self.setSceneRect(graph.adjusted(-mx, -my, mx, my))

    def wheelEvent(self, event) -> None:  # noqa: N802 (Qt override)
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta:
            self.zoom_by(math.pow(1.0015, delta), at=event.position())
        event.accept()

    # --- mouse --------------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self._press_pos = event.position().toPoint()
        self._moved = False
        if event.button() == Qt.MouseButton.LeftButton:
            key = self._owner._hit(self.mapToScene(self._press_pos))
            if key is not None:
                self._owner._click(key)
                event.accept()
                return
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._pan_from = self._press_pos
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        pos = event.position().toPoint()
        if self._pan_from is not None:
            d = pos - self._pan_from
            if d.manhattanLength() > 2:
                self._moved = True
            self._pan_from = pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - d.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - d.y())
            event.accept()
            return
        key = self._owner._hit(self.mapToScene(pos))
        self.viewport().setCursor(Qt.CursorShape.PointingHandCursor if key
                                  else Qt.CursorShape.ArrowCursor)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().setCursor(Qt.CursorShape.ArrowCursor)
            if not self._moved and event.button() == Qt.MouseButton.LeftButton:
                self._owner._clear_selection()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.button() == Qt.MouseButton.LeftButton:
            key = self._owner._hit(self.mapToScene(event.position().toPoint()))
            if key is not None:
                self._owner._activate(key)
                event.accept()
                return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.modifiers() in (Qt.KeyboardModifier.NoModifier,
                                 Qt.KeyboardModifier.KeypadModifier):
            if event.key() == Qt.Key.Key_F:
                self._owner.fit()
                return
            if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
                self._owner.zoom_in()
                return
            if event.key() == Qt.Key.Key_Minus:
                self._owner.zoom_out()
                return
            if event.key() == Qt.Key.Key_Escape:
                self._owner._clear_selection()
                return
        super().keyPressEvent(event)

    def viewportEvent(self, event) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QEvent.Type.ToolTip:
            key = self._owner._hit(self.mapToScene(event.pos()))
            if key is not None:
                QToolTip.showText(event.globalPos(), self._owner._tooltip(key), self.viewport())
            else:
                QToolTip.hideText()
            return True
        return super().viewportEvent(event)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self.update_margins()
        self.sig_view_changed.emit()


class _Minimap(QWidget):
    """A small overview of the whole graph with the visible area framed; click to go there."""

    def __init__(self, owner: GraphView):
        super().__init__(owner)
        self._owner = owner
        self._cache_key: tuple | None = None
        self._frames: list[QRectF] = []
        self._blocks: list[tuple[QColor, list[QRectF]]] = []
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, False)

    def invalidate(self) -> None:
        """The graph or its colours changed: map the boxes again at the next paint."""
        self._cache_key = None
        self.update()

    def _transform(self) -> tuple[float, float, float, QRectF]:
        scene = self._owner._scene_rect
        inner = QRectF(self.rect()).adjusted(6, 6, -6, -6)
        if scene.isEmpty() or inner.isEmpty():
            return 1.0, 0.0, 0.0, scene
        s = min(inner.width() / scene.width(), inner.height() / scene.height())
        ox = inner.left() + (inner.width() - scene.width() * s) / 2 - scene.left() * s
        oy = inner.top() + (inner.height() - scene.height() * s) / 2 - scene.top() * s
        return s, ox, oy, scene

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        o = self._owner
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pal = self.palette()
        bg = QColor(pal.color(QPalette.ColorRole.Window))
        bg.setAlphaF(0.92)
        p.setPen(o._theme.pen(o._theme.border))
        p.setBrush(bg)
        p.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
        s, ox, oy, _ = self._transform()

        def m(r: QRectF) -> QRectF:
            return QRectF(r.left() * s + ox, r.top() * s + oy, max(1.0, r.width() * s),
                          max(1.0, r.height() * s))

        key = (self.size().width(), self.size().height(), id(o._nodes.boxes))
        if key != self._cache_key:  # mapping thousands of boxes is too slow for every scroll
            self._cache_key = key
            self._frames = [m(f.rect) for f in o._frames.frames]
            by_colour: dict[int, tuple[QColor, list[QRectF]]] = {}
            for b in o._nodes.boxes:
                fill = b.fill if b.kind != BOX_IO else o._theme.muted
                by_colour.setdefault(fill.rgba(), (fill, []))[1].append(m(b.rect))
            self._blocks = list(by_colour.values())
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setPen(o._theme.pen(o._theme.frame_border))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRects(self._frames)
        p.setPen(Qt.PenStyle.NoPen)
        for fill, rects in self._blocks:
            p.setBrush(fill)
            p.drawRects(rects)
        visible = o.canvas.mapToScene(o.canvas.viewport().rect()).boundingRect()
        accent = QColor(pal.color(QPalette.ColorRole.Highlight))
        p.setPen(o._theme.pen(accent, 1.5))
        fill = QColor(accent)
        fill.setAlphaF(0.12)
        p.setBrush(fill)
        p.drawRect(m(visible).intersected(QRectF(self.rect()).adjusted(1, 1, -1, -1)))
        p.end()

    def _go(self, pos: QPointF) -> None:
        s, ox, oy, _ = self._transform()
        if s > 0:
            self._owner.canvas.centerOn(QPointF((pos.x() - ox) / s, (pos.y() - oy) / s))

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self._go(event.position())

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._go(event.position())


class _Legend(QWidget):
    """What the colours mean in the current colour mode."""

    def __init__(self, owner: GraphView):
        super().__init__(owner)
        self._owner = owner
        self.entries: list[tuple[QColor, str]] = []
        self.gradient: tuple[str, str] | None = None  # (low label, high label) in time mode
        self.title = ""
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)

    def set_content(self, title: str, entries: list[tuple[QColor, str]],
                    gradient: tuple[str, str] | None = None) -> None:
        self.title, self.entries, self.gradient = title, entries, gradient
        fm = self.fontMetrics()
        rows = len(entries) + (2 if gradient else 0)
        w = max([fm.horizontalAdvance(title)] + [fm.horizontalAdvance(t) + 22 for _, t in entries]
                + ([fm.horizontalAdvance(f"{gradient[0]}   {gradient[1]}"), 140] if gradient
                   else []))
        self.resize(int(w) + 20, int((rows + 1) * (fm.height() + 3) + 14))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pal = self.palette()
        theme = self._owner._theme
        bg = QColor(pal.color(QPalette.ColorRole.Window))
        bg.setAlphaF(0.92)
        p.setPen(theme.pen(theme.border))
        p.setBrush(bg)
        p.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
        fm = self.fontMetrics()
        lh = fm.height() + 3
        y = 8
        f = p.font()
        f.setBold(True)
        p.setFont(f)
        p.setPen(pal.color(QPalette.ColorRole.WindowText))
        p.drawText(QRect(10, y, self.width() - 20, lh), Qt.AlignmentFlag.AlignVCenter, self.title)
        f.setBold(False)
        p.setFont(f)
        y += lh
        if self.gradient:
            g = QLinearGradient(10, 0, self.width() - 10, 0)
            for i in range(11):
                g.setColorAt(i / 10, time_colour(i / 10))
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(g)
            p.drawRoundedRect(QRectF(10, y + 3, self.width() - 20, lh - 6), 3, 3)
            y += lh
            p.setPen(pal.color(QPalette.ColorRole.WindowText))
            p.drawText(QRect(10, y, self.width() - 20, lh), Qt.AlignmentFlag.AlignLeft,
                       self.gradient[0])
            p.drawText(QRect(10, y, self.width() - 20, lh), Qt.AlignmentFlag.AlignRight,
                       self.gradient[1])
            y += lh
        for colour, text in self.entries:
            p.setPen(theme.pen(theme.border))
            p.setBrush(colour)
            p.drawRoundedRect(QRectF(10, y + (lh - 12) / 2, 12, 12), 3, 3)
            p.setPen(pal.color(QPalette.ColorRole.WindowText))
            p.drawText(QRect(30, y, self.width() - 36, lh), Qt.AlignmentFlag.AlignVCenter, text)
            y += lh
        p.end()


class GraphView(QWidget):
    """The model graph: folded groups, coloured boxes, search, minimap, legend, export.

    Selection made by the user (click, search) emits `sig_node_selected(node_id)` — or
    `sig_group_selected(scope path)` for a scope group; `select_node()` does not emit.
    """

    sig_node_selected = Signal(str)
    sig_group_selected = Signal(str)
    sig_frame_painted = Signal(float)  # ms a frame of the graph took to paint
    sig_layout_changed = Signal()  # after a model is shown or a group opened/closed

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._model: ModelGraph | None = None
        self._tree: FoldTree | None = None
        self._layout: CompoundLayout | None = None
        self._scene_layout = SceneLayout()
        self._scene_rect = QRectF()
        self._costs: dict[str, dict[str, Any]] = {}
        self._times: dict[str, float] = {}
        self._devices: dict[str, str] = {}
        self._precisions: dict[str, str] = {}
        self._mode = "op"
        self._selected: str | None = None
        self._matches: list[str] = []
        self._match_i = -1
        self._texts: dict[str, tuple[str, list[tuple[str, int]], float, float]] = {}
        self._widths: dict[tuple[str, bool], float] = {}
        self._value_seen: list[str] = []
        self._group_counts: dict[str, tuple[int, dict[str, int]]] = {}
        self._status: dict[str, str] = {}
        self._status_palette: dict[str, tuple[str, str]] = {}
        self._status_title = ""
        self._notes: dict[str, str] = {}
        self._theme = Theme(self.palette(), self.font())

        self._scene = QGraphicsScene(self)
        self._scene.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)  # 3 big items
        self._frames = FrameLayer(self._theme)
        self._edges = EdgeLayer(self._theme)
        self._nodes = NodeLayer(self._theme)
        for layer in (self._frames, self._edges, self._nodes):
            self._scene.addItem(layer)
        self.canvas = _Canvas(self)
        self.canvas.setScene(self._scene)
        self.canvas.sig_painted.connect(self.sig_frame_painted)
        self._build_toolbar()
        self.minimap = _Minimap(self)
        self.legend = _Legend(self)
        self.canvas.sig_view_changed.connect(self._place_overlays)
        self.canvas.sig_view_changed.connect(self.minimap.update)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self._toolbar)
        lay.addWidget(self.canvas, 1)
        self._apply_palette()
        self._add_shortcuts()
        self.minimap.hide()
        self.legend.hide()

    # --- construction helpers ---------------------------------------------------------------
    def _build_toolbar(self) -> None:
        bar = QWidget(self)
        h = QHBoxLayout(bar)
        h.setContentsMargins(6, 4, 6, 4)
        h.setSpacing(4)
        self.search_box = QLineEdit(bar)
        self.search_box.setPlaceholderText("Find node: name or op type  (Ctrl+F)")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setMinimumWidth(240)
        self.search_box.setMaximumWidth(360)
        self.search_box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.search_box.textChanged.connect(self._on_search_text)
        self.search_box.returnPressed.connect(self._on_search_return)
        self.search_box.installEventFilter(self)
        self._prev_btn = self._tool_button(bar, "‹", "Previous match (Shift+F3)",
                                           self.find_previous)
        self._next_btn = self._tool_button(bar, "›", "Next match (F3)", self.find_next)
        self._match_label = QLabel("", bar)
        self._match_label.setMinimumWidth(56)
        self.mode_box = QComboBox(bar)
        for key, label in COLOUR_MODES.items():
            self.mode_box.addItem(f"Colour: {label}", key)
        self.mode_box.currentIndexChanged.connect(
            lambda i: self.set_colour_mode(self.mode_box.itemData(i)))
        h.addWidget(self.search_box)
        h.addWidget(self._prev_btn)
        h.addWidget(self._next_btn)
        h.addWidget(self._match_label)
        h.addStretch(1)
        h.addWidget(self.mode_box)
        h.addWidget(self._tool_button(bar, "Expand all", "Open every group", self.expand_all))
        h.addWidget(self._tool_button(bar, "Collapse all", "Close every group",
                                      self.collapse_all))
        h.addWidget(self._tool_button(bar, "Fit", "Show the whole graph (F)", self.fit))
        h.addWidget(self._tool_button(bar, "Export…", "Save the graph as PNG or SVG",
                                      self._export_dialog))
        self._toolbar = bar

    @staticmethod
    def _tool_button(parent: QWidget, text: str, tip: str, slot) -> QToolButton:
        b = QToolButton(parent)
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        b.clicked.connect(lambda: slot())
        return b

    def _add_shortcuts(self) -> None:
        ctx = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for seq, slot in ((QKeySequence.StandardKey.ZoomIn, self.zoom_in),
                          ("Ctrl+=", self.zoom_in),
                          (QKeySequence.StandardKey.ZoomOut, self.zoom_out),
                          ("Ctrl+0", self.reset_zoom),
                          (QKeySequence.StandardKey.Find, self._focus_search),
                          ("F3", self.find_next), ("Shift+F3", self.find_previous)):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(ctx)
            sc.activated.connect(slot)

    def _focus_search(self) -> None:
        self.search_box.setFocus()
        self.search_box.selectAll()

    # --- public API ---------------------------------------------------------------------------
    def set_model(self, model: ModelGraph | None,
                  costs: Mapping[str, Any] | None = None,
                  fold: Callable[[FoldTree], None] | None = None) -> None:
        """Show a model (None clears). `costs`: node id -> NodeCost or its dict, for tooltips.
        `fold(tree)` opens groups instead of the default (a few hundred boxes).

        Times, devices and precisions of the previous model are dropped (node ids repeat
        across models); the colour mode stays.
        """
        t0 = time.perf_counter()
        self._model = model
        self._costs = {k: _as_dict(v) for k, v in (costs or {}).items()}
        self._times, self._devices, self._precisions = {}, {}, {}
        self._status, self._notes = {}, {}
        i = self.mode_box.findData("status")
        if i >= 0:
            self.mode_box.removeItem(i)
            if self._mode == "status":
                self._mode = "op"
        self._selected = None
        self._matches, self._match_i = [], -1
        self._texts.clear()
        self._group_counts.clear()
        self._value_seen.clear()
        self.search_box.blockSignals(True)
        self.search_box.clear()
        self.search_box.blockSignals(False)
        self._match_label.setText("")
        if model is None:
            self._tree = self._layout = None
            self._show_layout(SceneLayout())
            return
        self._tree = FoldTree(model)
        (fold or FoldTree.auto_fold)(self._tree)
        self._layout = CompoundLayout(self._tree, self._box_size)
        t1 = time.perf_counter()
        self._relayout()
        t2 = time.perf_counter()
        self._initial_view()
        log.debug("set_model: fold %.0f ms, layout+scene %.0f ms, %d boxes",
                  (t1 - t0) * 1e3, (t2 - t1) * 1e3, len(self._nodes.boxes))

    def model(self) -> ModelGraph | None:
        return self._model

    def set_costs(self, costs: Mapping[str, Any] | None) -> None:
        self._costs = {k: _as_dict(v) for k, v in (costs or {}).items()}

    def set_node_times(self, times: Mapping[str, float] | None) -> None:
        """Per-node milliseconds (node id -> ms) for the "time" colour mode."""
        self._times = {k: float(v) for k, v in (times or {}).items() if v is not None}
        self._recolour()

    def set_node_devices(self, devices: Mapping[str, str] | None) -> None:
        """Node id -> device ("CPU", "GPU", ...) for the "device" colour mode."""
        self._devices = {k: str(v) for k, v in (devices or {}).items() if v}
        self._recolour()

    def set_node_precisions(self, precisions: Mapping[str, str] | None) -> None:
        """Node id -> precision ("FP32", "INT8", ...) for the "precision" colour mode."""
        self._precisions = {k: str(v).upper() for k, v in (precisions or {}).items() if v}
        self._recolour()

    def set_node_status(self, status: Mapping[str, str] | None,
                        palette: Mapping[str, tuple[str, str]] | None = None,
                        title: str = "Changes") -> None:
        """Node id -> a status ("same", "changed", ...) and status -> (colour, legend label),
        in order of importance: the "status" colour mode (the graph diff). A folded group
        takes the colour of its most important status."""
        self._status = dict(status or {})
        self._status_palette = dict(palette or {})
        self._status_title = title
        if self.mode_box.findData("status") < 0 and self._status:
            self.mode_box.insertItem(0, f"Colour: {title}", "status")
        self._recolour()

    def set_node_notes(self, notes: Mapping[str, str] | None) -> None:
        """Node id -> one line added to its tooltip (the diff says what it matched)."""
        self._notes = dict(notes or {})

    def set_colour_mode(self, mode: str) -> None:
        """"op" (default), "time", "device" or "precision" ("status" once statuses are set)."""
        if mode == "status" and self.mode_box.findData("status") >= 0:
            pass
        elif mode not in COLOUR_MODES:
            raise ValueError(f"unknown colour mode {mode!r}; one of {', '.join(COLOUR_MODES)}")
        self._mode = mode
        i = self.mode_box.findData(mode)
        if i != self.mode_box.currentIndex():
            self.mode_box.blockSignals(True)
            self.mode_box.setCurrentIndex(i)
            self.mode_box.blockSignals(False)
        self._recolour()

    def colour_mode(self) -> str:
        return self._mode

    def select_node(self, node_id: str | None, centre: bool = True) -> bool:
        """Select a node (opening the groups that hide it) without emitting a signal."""
        if node_id and self._tree is not None:
            node_id = self._tree.box_for(node_id)  # a weight Constant: the node reading it
        if not node_id or self._tree is None or node_id not in self._tree.items:
            self._set_selected(None)
            return False
        if self._tree.reveal(node_id):
            self._relayout(anchor=self._visible_key(node_id))
        self._set_selected(node_id)
        if centre:
            self._centre_on(node_id)
        return True

    def selected_node(self) -> str | None:
        return self._selected

    def expand(self, key: str) -> bool:
        return self._set_expanded(key, True)

    def collapse(self, key: str) -> bool:
        return self._set_expanded(key, False)

    def toggle(self, key: str) -> bool:
        it = self._tree.items.get(key) if self._tree else None
        return it is not None and self._set_expanded(key, not it.expanded)

    def expand_all(self) -> None:
        if self._tree is None:
            return
        self._tree.expand_all()
        self._layout.invalidate()
        self._relayout(anchor=self._selected)

    def collapse_all(self) -> None:
        if self._tree is None:
            return
        self._tree.collapse_all()
        self._layout.invalidate()
        self._relayout()
        self.fit()

    def refold(self, fold: Callable[[FoldTree], None]) -> None:
        """Open and close groups with `fold(tree)` (e.g. svg.apply_expand), then lay out."""
        if self._tree is None:
            return
        fold(self._tree)
        self._layout.invalidate()
        self._relayout()

    def is_expanded(self, key: str) -> bool:
        it = self._tree.items.get(key) if self._tree else None
        return bool(it is not None and it.is_group and it.expanded)

    def visible_node_count(self) -> int:
        """Boxes standing for model nodes or collapsed groups (inputs/outputs not counted)."""
        return self._tree.visible_node_count() if self._tree else 0

    def visible_keys(self) -> list[str]:
        """Keys of the boxes shown (node ids for nodes) and of the open group frames."""
        return [b.key for b in self._nodes.boxes] + [f.key for f in self._frames.frames]

    def fold_tree(self) -> FoldTree | None:
        return self._tree

    def scene_layout(self) -> SceneLayout:
        return self._scene_layout

    def item_scene_rect(self, key: str) -> QRectF | None:
        """Where a box or group frame lies in scene coordinates (None when not shown)."""
        i = self._nodes.by_key.get(key)
        if i is not None:
            return QRectF(self._nodes.boxes[i].rect)
        for f in self._frames.frames:
            if f.key == key:
                return QRectF(f.rect)
        return None

    def map_to_viewport(self, key: str) -> QPoint | None:
        """The viewport point at the centre of a box (for tests and tours)."""
        r = self.item_scene_rect(key)
        return None if r is None else self.canvas.mapFromScene(r.center())

    def node_colour(self, key: str) -> QColor | None:
        """The fill colour a box has in the current colour mode."""
        i = self._nodes.by_key.get(key)
        if i is not None:
            return QColor(self._nodes.boxes[i].fill)
        for f in self._frames.frames:
            if f.key == key:
                return QColor(f.fill)
        return None

    def find(self, text: str) -> int:
        """Find nodes by name or op type; jumps to the first. Returns the number of matches."""
        if self.search_box.text() != text:
            self.search_box.blockSignals(True)
            self.search_box.setText(text)
            self.search_box.blockSignals(False)
        self._matches = self._tree.search(text) if self._tree else []
        self._match_i = -1
        if self._matches:
            self.find_next()
        else:
            self._update_match_marks()
        return len(self._matches)

    def matches(self) -> list[str]:
        return list(self._matches)

    def find_next(self) -> None:
        if self._matches:
            self._goto_match((self._match_i + 1) % len(self._matches))

    def find_previous(self) -> None:
        if self._matches:
            self._goto_match((self._match_i - 1) % len(self._matches))

    def fit(self, refold: bool = True) -> None:
        """A readable overview of the whole graph (never zooming in past 100 %).

        Fitting a long graph whole needs a zoom at which no label can be read: the boxes
        become a thin line. So the deepest open groups are closed, level by level, until the
        graph fits at a legible zoom (FIT_MIN_SCALE); when even the most folded graph does
        not, the zoom stops at that limit, centred on the graph.
        """
        if self._scene_rect.isEmpty():
            return
        while refold and self._fit_scale() < FIT_MIN_SCALE and self._fold_deepest():
            pass
        s = min(1.0, max(FIT_MIN_SCALE, self._fit_scale()))
        self._set_scale(s, self._scene_rect.center())

    def graph_rect(self) -> QRectF:
        """The graph's extent in scene coordinates (with a small margin)."""
        return QRectF(self._scene_rect)

    def _fit_scale(self) -> float:
        vp = self.canvas.viewport().rect()
        r = self._scene_rect
        if r.isEmpty() or vp.isEmpty():
            return 1.0
        return min(vp.width() / r.width(), vp.height() / r.height())

    def _fold_deepest(self) -> bool:
        """Close the open groups that hold no open group. False when none is open."""
        tree = self._tree
        if tree is None:
            return False
        open_groups = [g for g in tree.groups()
                       if g.expanded and g is not tree.root and not g.body]
        deepest = [g for g in open_groups
                   if not any(c.expanded and c.is_group and
                              (not c.body or any(x.is_group and x.expanded and not x.body
                                                 for x in c.children))
                              for c in g.children)]
        if not deepest:
            return False
        for g in deepest:
            tree.set_expanded(g.key, False)
            self._layout.invalidate(g.key)
            if self._selected and tree.contains(g, self._selected):
                self._selected = None
        self._relayout()
        return True

    def _set_scale(self, s: float, centre: QPointF) -> None:
        self.canvas.resetTransform()
        self.canvas.scale(s, s)
        self.canvas.update_margins()
        self.canvas.centerOn(centre)
        self.canvas.sig_view_changed.emit()

    def zoom_in(self) -> None:
        self.canvas.zoom_by(1.25, anchor_under_mouse=False)

    def zoom_out(self) -> None:
        self.canvas.zoom_by(0.8, anchor_under_mouse=False)

    def reset_zoom(self) -> None:
        self.canvas.zoom_by(1.0 / self.canvas.scale_factor(), anchor_under_mouse=False)

    def zoom(self) -> float:
        return self.canvas.scale_factor()

    def export_image(self, path: str | Path, scale: float = 2.0) -> Path:
        """Save the whole graph as PNG (or any QImage format) or SVG, chosen by suffix."""
        path = Path(path)
        rect = self._scene_rect if not self._scene_rect.isEmpty() else QRectF(0, 0, 100, 100)
        bg = QColor(self._theme.base)
        if path.suffix.lower() == ".svg":
            from PySide6.QtSvg import QSvgGenerator

            gen = QSvgGenerator()
            gen.setFileName(str(path))
            gen.setSize(QSize(math.ceil(rect.width()), math.ceil(rect.height())))
            gen.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
            gen.setTitle(self._model.meta.path if self._model else "graph")
            gen.setDescription("ModelDeck graph view")
            p = QPainter(gen)
            p.fillRect(QRectF(0, 0, rect.width(), rect.height()), bg)
            self._render(p, QRectF(0, 0, rect.width(), rect.height()), rect)
            p.end()
        else:
            scale = min(scale, MAX_EXPORT_PIXELS / max(rect.width(), rect.height(), 1.0))
            w, h = max(1, round(rect.width() * scale)), max(1, round(rect.height() * scale))
            img = QImage(w, h, QImage.Format.Format_RGB32)  # opaque: saves 2-3x faster
            img.fill(bg)
            p = QPainter(img)
            self._render(p, QRectF(0, 0, w, h), rect)
            p.end()
            # PNG at a low zlib level: a tall graph's image saves ~30 % faster, ~20 % larger
            quality = 80 if path.suffix.lower() == ".png" else -1
            if not img.save(str(path), None, quality):
                raise OSError(f"could not write {path}: unsupported format or folder not writable")
        log.info("graph exported to %s", path)
        return path

    # --- internals: layout --------------------------------------------------------------------
    def _render(self, p: QPainter, target: QRectF, source: QRectF) -> None:
        p.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self._scene.render(p, target, source, Qt.AspectRatioMode.KeepAspectRatio)

    def _set_expanded(self, key: str, expanded: bool) -> bool:
        if self._tree is None or not self._tree.set_expanded(key, expanded):
            return False
        self._layout.invalidate(key)
        if not expanded and self._selected and self._tree.contains(self._tree.items[key],
                                                                  self._selected):
            self._selected = key if self._tree.items[key].node is not None else None
        self._relayout(anchor=key)
        return True

    def _visible_key(self, key: str) -> str | None:
        owner = self._tree.visible_owner(key) if self._tree else None
        return owner.key if owner else None

    def _relayout(self, anchor: str | None = None) -> None:
        """Lay out what is visible and rebuild the layers; keep `anchor` where it was."""
        before = self.item_scene_rect(anchor) if anchor else None
        before_vp = self.canvas.mapFromScene(before.topLeft()) if before is not None else None
        self._show_layout(self._layout.run() if self._layout else SceneLayout())
        if anchor and before_vp is not None:
            after = self.item_scene_rect(anchor)
            if after is not None:
                delta = self.canvas.mapFromScene(after.topLeft()) - before_vp
                self.canvas.horizontalScrollBar().setValue(
                    self.canvas.horizontalScrollBar().value() + delta.x())
                self.canvas.verticalScrollBar().setValue(
                    self.canvas.verticalScrollBar().value() + delta.y())
        self.sig_layout_changed.emit()

    def _show_layout(self, sl: SceneLayout) -> None:
        self._scene_layout = sl
        tree = self._tree
        boxes: list[Box] = []
        frames: list[Frame] = []
        if tree is not None:
            for key, (x, y, w, h) in sl.boxes.items():
                it = tree.items[key]
                title, lines, _, _ = self._text(it)
                kind = (BOX_IO if it.kind in (INPUT, OUTPUT) else
                        BOX_OWNER if it.is_group and it.node is not None else
                        BOX_GROUP if it.is_group else BOX_NODE)
                boxes.append(Box(key, kind, QRectF(x, y, w, h), title, lines))
            for key, (x, y, w, h) in sl.frames.items():
                it = tree.items[key]
                title = it.label if it.node is None else f"{it.node.op_type} · {it.node.name}"
                if it.body:
                    title = it.label
                frames.append(Frame(key, QRectF(x, y, w, h), title, owner=it.node is not None))
            frames.sort(key=lambda f: -f.rect.width() * f.rect.height())  # outer first
        self._nodes.set_boxes(boxes)
        self._frames.set_frames(frames)
        self._edges.set_routes(sl.edges)
        margin = 60.0
        self._scene_rect = QRectF(0, 0, sl.width, sl.height).adjusted(-margin, -margin, margin,
                                                                      margin)
        self._scene.setSceneRect(self._scene_rect)
        self.canvas.update_margins()
        self._recolour()
        self._update_match_marks()
        self._set_selected(self._selected if self._selected in self._nodes.by_key or any(
            f.key == self._selected for f in frames) else None)
        self._place_overlays()

    def _initial_view(self) -> None:
        """Fit when text stays readable, else readable zoom on the top of the graph."""
        vp = self.canvas.viewport().rect()
        r = self._scene_rect
        if r.isEmpty() or vp.isEmpty():
            return
        s = min(vp.width() / r.width(), vp.height() / r.height())
        if s >= 0.6:
            self.fit()
            return
        s = READABLE_SCALE if vp.width() / r.width() < READABLE_SCALE else min(
            1.0, vp.width() / r.width())
        # the top of the graph, centred on the boxes that show there
        band = QRectF(r.left(), r.top(), r.width(), vp.height() / s)
        xs = [b.rect.center().x() for b in self._nodes.boxes if b.rect.intersects(band)]
        cx = (min(xs) + max(xs)) / 2 if xs else r.center().x()
        self._set_scale(s, QPointF(cx, r.top() + vp.height() / (2 * s)))

    def _centre_on(self, key: str) -> None:
        r = self.item_scene_rect(key)
        if r is None:
            return
        if self.canvas.scale_factor() < 0.5:  # make the target readable
            self.canvas.zoom_by(0.85 / self.canvas.scale_factor(), anchor_under_mouse=False)
        self.canvas.centerOn(r.center())

    # --- internals: box contents ------------------------------------------------------------
    def _box_size(self, it: FoldItem) -> tuple[float, float]:
        _, _, w, h = self._text(it)
        return w, h

    def _group_summary(self, it: FoldItem) -> tuple[int, dict[str, int]]:
        s = self._group_counts.get(it.key)
        if s is None:
            hist = self._tree.op_histogram(it)
            s = self._group_counts[it.key] = (sum(hist.values()), hist)
        return s

    def _text(self, it: FoldItem) -> tuple[str, list[tuple[str, int]], float, float]:
        """Title, body lines and size of a box, elided to the box width; cached per item."""
        cached = self._texts.get(it.key)
        if cached is not None:
            return cached
        t = self._theme
        title, lines = box_content(self._tree, it, self._group_summary)
        extra = 22 if it.is_group else 0
        title_w = self._advance(title, True) + extra
        widths = [self._advance(s, False) for s, _ in lines]
        w = min(MAX_BOX_W, max(MIN_BOX_W, max([title_w] + widths) + 2 * PAD + 2))
        inner = w - 2 * PAD
        if title_w > inner:
            title = t.title_fm.elidedText(title, Qt.TextElideMode.ElideMiddle, inner - extra)
        lines = [(t.body_fm.elidedText(s, Qt.TextElideMode.ElideMiddle, inner)
                  if lw > inner else s, role) for (s, role), lw in zip(lines, widths)]
        if it.kind in (INPUT, OUTPUT):
            h = t.title_fm.height() + t.line_h * len(lines) + 12
        else:
            h = t.header_h + (t.line_h * len(lines) + 7 if lines else 0)
        entry = (title, lines, float(math.ceil(w)), float(math.ceil(h)))
        self._texts[it.key] = entry
        return entry

    def _advance(self, text: str, title: bool) -> float:
        """Text width, cached: shapes and weight lines repeat all over a model."""
        cache = self._widths
        w = cache.get((text, title))
        if w is None:
            fm = self._theme.title_fm if title else self._theme.body_fm
            w = cache[(text, title)] = fm.horizontalAdvance(text)
        return w

    def _tooltip(self, key: str) -> str:
        tree = self._tree
        if tree is None or key not in tree.items:
            return ""
        it = tree.items[key]
        rows: list[tuple[str, str]] = []
        if it.node is not None:
            n = it.node
            head = f"<b>{html.escape(n.op_type)}</b> {html.escape(n.name)}"
            rows.append(("id", n.id))
            if n.domain:
                rows.append(("domain", n.domain))
            for name in n.inputs:
                if name:
                    rows.append(("in", f"{name}  {shape_text(tree.tensors.get(name))}"))
            for name in n.outputs:
                rows.append(("out", f"{name}  {shape_text(tree.tensors.get(name))}"))
            for k, v in list(n.attributes.items())[:8]:
                text = repr(v)
                rows.append((k, text if len(text) < 60 else text[:57] + "…"))
            cost = self._costs.get(key)
            if cost:
                for field in ("params", "macs", "flops"):
                    if cost.get(field):
                        rows.append((field, _human(cost[field])))
        else:
            count, hist = self._group_summary(it) if it.is_group else (0, {})
            head = f"<b>{html.escape(it.path or it.label)}</b>"
            if it.is_group:
                rows.append(("nodes", str(count)))
                rows.append(("ops", ", ".join(f"{op} ×{c}" for op, c in list(hist.items())[:8])))
            elif it.tensor is not None:
                rows.append(("tensor", f"{it.tensor.dtype or '?'} {shape_text(it.tensor)}"))
        if key in self._times or it.is_group:
            ms = self._value_time(it)
            if ms is not None:
                rows.append(("time", f"{ms:.3f} ms"))
        for label, table in (("device", self._devices), ("precision", self._precisions)):
            v = self._value_cat(it, table)
            if v:
                rows.append((label, v))
        if key in self._notes:
            rows.append(("diff", self._notes[key]))
        body = "".join(f"<tr><td style='color:gray'>{html.escape(k)}</td>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        hint = ("<br><i>double-click to open</i>" if it.is_group and not it.expanded else "")
        return f"{head}<table>{body}</table>{hint}"

    # --- internals: colours --------------------------------------------------------------------
    def _value_time(self, it: FoldItem) -> float | None:
        if it.node is not None and not it.is_group:
            return self._times.get(it.key)
        if it.kind in (INPUT, OUTPUT):
            return None
        vals = [self._times[leaf.key] for leaf in self._tree.leaf_nodes(it)
                if leaf.key in self._times]
        return sum(vals) if vals else None

    def _value_cat(self, it: FoldItem, table: Mapping[str, str]) -> str | None:
        if it.kind in (INPUT, OUTPUT) or not table:
            return None
        if not it.is_group:
            return table.get(it.key)
        vals = {table[leaf.key] for leaf in self._tree.leaf_nodes(it) if leaf.key in table}
        if not vals:
            return None
        return vals.pop() if len(vals) == 1 else "MIXED"

    def _recolour(self) -> None:
        """Fill every box and owner frame for the colour mode; refresh the legend."""
        tree = self._tree
        if tree is None:
            self.legend.hide()
            return
        mode = self._mode
        neutral = neutral_colour(self.palette())
        entries: dict[str, QColor] = {}
        values: dict[str, Any] = {}
        targets = [(b, tree.items[b.key]) for b in self._nodes.boxes] + [
            (f, tree.items[f.key]) for f in self._frames.frames if f.owner]
        if mode == "status":
            rank = {st: i for i, st in enumerate(self._status_palette)}
            for b, it in targets:
                if it.kind in (INPUT, OUTPUT):
                    b.fill = neutral
                    continue
                sts = {self._status.get(leaf.key) for leaf in tree.leaf_nodes(it)} - {None}
                st = min(sts, key=lambda x: rank.get(x, 99)) if sts else None
                if st is None or st not in self._status_palette:
                    b.fill = neutral
                    continue
                colour, label = self._status_palette[st]
                b.fill = QColor(colour)
                entries[label] = b.fill
        elif mode == "time":
            for b, it in targets:
                values[b.key] = self._value_time(it)
            top = max((v for v in values.values() if v is not None), default=0.0)
            for b, it in targets:
                v = values[b.key]
                b.fill = neutral if v is None or top <= 0 else time_colour(v / top)
        elif mode in ("device", "precision"):
            table = self._devices if mode == "device" else self._precisions
            colours = DEVICE_COLOURS if mode == "device" else PRECISION_COLOURS
            for b, it in targets:
                v = self._value_cat(it, table)
                if v is None:
                    b.fill = neutral
                else:
                    b.fill = value_colour(v, colours, self._value_seen)
                    entries[v] = b.fill
        else:
            for b, it in targets:
                if it.node is not None:
                    cat = category(it.node.op_type)
                elif it.is_group:
                    cat = dominant_category(self._group_summary(it)[1])
                else:
                    continue
                b.fill = category_colour(cat)
                entries[CATEGORY_LABELS[cat]] = b.fill
        for b, it in targets:
            if isinstance(b, Box):
                b.title_colour = header_text_colour(b.fill)
        self._nodes.update()
        self._frames.update()
        self.minimap.invalidate()
        # legend
        if mode == "time":
            top = max((v for v in values.values() if v is not None), default=None)
            if top is None:
                self.legend.set_content("Time (no data)", [(neutral, "not measured")])
            else:
                self.legend.set_content("Time per box", [(neutral, "not measured")],
                                        ("0 ms", f"{top:.3g} ms"))
        elif mode == "status":
            order = [label for _, label in self._status_palette.values()]
            items = sorted(entries.items(), key=lambda kv: order.index(kv[0]))
            self.legend.set_content(self._status_title,
                                    [(c, label) for label, c in items] or [(neutral, "no data")])
        else:
            title = {"op": "Op type", "device": "Device", "precision": "Precision"}[mode]
            items = sorted(entries.items())
            if mode != "op" and any(b.fill == neutral for b, it in targets
                                    if it.kind not in (INPUT, OUTPUT)):
                items.append(("no data", neutral))
            if not items:
                items = [("no data", neutral)]
            self.legend.set_content(title, [(c, label) for label, c in items])
        self.legend.setVisible(bool(self._nodes.boxes))
        self._place_overlays()

    # --- internals: selection and search -------------------------------------------------------
    def _hit(self, p: QPointF) -> str | None:
        b = self._nodes.box_at(p)
        if b is not None:
            return b.key
        f = self._frames.frame_at(p)
        if f is not None:
            if p.y() - f.rect.top() <= GROUP_TITLE:  # the title band of an open group
                return f.key
        return None

    def _click(self, key: str) -> None:
        self._set_selected(key)
        it = self._tree.items[key]
        if it.node is not None:
            self.sig_node_selected.emit(it.node.id)
        elif it.is_group:
            self.sig_group_selected.emit(it.path or it.label)

    def _activate(self, key: str) -> None:
        """Double-click: open a closed group, close an open one."""
        it = self._tree.items.get(key) if self._tree else None
        if it is not None and it.is_group:
            self.toggle(key)

    def _clear_selection(self) -> None:
        self._set_selected(None)

    def _set_selected(self, key: str | None) -> None:
        old = self._selected
        self._selected = key
        self._nodes.selected = key
        self._frames.selected = key
        self._nodes.update_key(old)
        self._nodes.update_key(key)
        self._frames.update()
        self._edges.set_highlight(key)

    def _on_search_text(self, text: str) -> None:
        self._matches = self._tree.search(text) if self._tree and len(text.strip()) >= 2 else []
        self._match_i = -1
        self._update_match_marks()

    def _on_search_return(self) -> None:
        if not self._matches:
            self.find(self.search_box.text())
        else:
            self.find_next()

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt override)
        """Shift+Enter in the search box goes back; Esc leaves it."""
        if obj is self.search_box and event.type() == QEvent.Type.KeyPress:
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
                    event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
                self.find_previous()
                return True
            if event.key() == Qt.Key.Key_Escape:
                self.search_box.clear()
                self.canvas.setFocus()
                return True
        return super().eventFilter(obj, event)

    def _goto_match(self, i: int) -> None:
        self._match_i = i
        key = self._matches[i]
        if self._tree.reveal(key):
            self._relayout(anchor=None)
        self._set_selected(key)
        self._centre_on(key)
        self._update_match_marks()
        self.sig_node_selected.emit(key)

    def _update_match_marks(self) -> None:
        tree = self._tree
        marks: set[str] = set()
        if tree is not None:
            for k in self._matches:
                owner = tree.visible_owner(k)
                if owner is not None:
                    marks.add(owner.key)
        self._nodes.matches = marks
        self._nodes.current = self._matches[self._match_i] if 0 <= self._match_i < len(
            self._matches) else None
        self._nodes.update()
        if self._matches:
            pos = f"{self._match_i + 1}/{len(self._matches)}" if self._match_i >= 0 else \
                f"{len(self._matches)} found"
            self._match_label.setText(pos)
        else:
            self._match_label.setText("no match" if self.search_box.text().strip() else "")

    # --- internals: overlays, theme, dialogs ----------------------------------------------------
    def _place_overlays(self) -> None:
        g = self.canvas.geometry()
        margin = 10
        self.legend.move(g.right() - self.legend.width() - margin, g.top() + margin)
        vis = self.canvas.mapToScene(self.canvas.viewport().rect()).boundingRect()
        big = not self._scene_rect.isEmpty() and not vis.contains(self._scene_rect)
        if big and g.width() > 320 and g.height() > 240:
            r = self._scene_rect
            h = min(220, g.height() // 3)
            w = min(180, g.width() // 4, max(60, int(h * r.width() / max(r.height(), 1))))
            h = min(h, max(60, int(w * r.height() / max(r.width(), 1))))
            self.minimap.resize(w, h)
            self.minimap.move(g.right() - w - margin, g.bottom() - h - margin)
            self.minimap.show()
            self.minimap.raise_()
        else:
            self.minimap.hide()
        self.legend.raise_()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._place_overlays()

    def changeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange,
                            QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._apply_palette(relayout=event.type() == QEvent.Type.FontChange)

    def _apply_palette(self, relayout: bool = False) -> None:
        theme = Theme(self.palette(), self.font())
        self._theme = theme
        for layer in (self._nodes, self._frames, self._edges):
            layer.theme = theme
        self.canvas.setBackgroundBrush(theme.base)
        self._widths.clear()
        if relayout and self._layout is not None:
            self._texts.clear()
            self._layout.clear_sizes()
            self._relayout()
        else:
            self._recolour()
        self._edges.set_highlight(self._selected)
        self.canvas.viewport().update()

    def _export_dialog(self) -> None:
        from app.gui.file_dialogs import remember, start_path

        path = getattr(getattr(self._model, "meta", None), "path", "") or "graph"
        stem = Path(path).name.split(".")[0] or "graph"
        path, _ = QFileDialog.getSaveFileName(self, "Export graph", start_path(
            "graph", f"{stem}.png"), "PNG image (*.png);;SVG drawing (*.svg)")
        if path:
            remember("graph", path)
            try:
                self.export_image(path)
            except OSError as e:
                log.error("%s", e)
                QToolTip.showText(self.mapToGlobal(QPoint(10, 10)), str(e), self)


def _as_dict(v: Any) -> dict[str, Any]:
    if isinstance(v, Mapping):
        return dict(v)
    if is_dataclass(v):
        return asdict(v)
    return {k: getattr(v, k) for k in ("params", "macs", "flops", "note") if hasattr(v, k)}


def _human(n: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}"
    return f"{n:g}"


__all__ = ["GraphView", "COLOUR_MODES", "HOT_COLOUR"]
