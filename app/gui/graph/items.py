"""The graph's scene items: three layers (frames, edges, boxes), each ONE QGraphicsItem.

Thousands of small QGraphicsItems each cost a Python paint call per frame; one item per layer
draws only what its exposed rectangle shows (a grid index finds it) and switches level of
detail with the zoom: text only when it is readable, plain coloured rectangles (batched by
colour) when far out. Pens are cosmetic so lines stay crisp on high-DPI screens; nothing is
cached as a pixmap.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPalette,
                           QPen, QPolygonF)
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.gui.graph.layout import GROUP_TITLE, EdgeRoute
from app.gui.graph.style import header_text_colour, is_dark, mix

TEXT_LOD = 0.42  # below this zoom text is unreadable: boxes become plain shapes
SHAPE_LOD = 0.14  # below this, plain rectangles batched by colour
RADIUS = 5.0
PAD = 8.0
ARROW_LEN = 8.0
ARROW_HALF = 3.6
GRID = 600.0  # cell size of the spatial index (scene units)

NORMAL, MUTED = 0, 1
BOX_NODE, BOX_GROUP, BOX_OWNER, BOX_IO = "node", "group", "owner", "io"


class Theme:
    """Fonts and palette-derived colours; rebuilt when the palette or font changes."""

    def __init__(self, palette: QPalette, font: QFont):
        self.dark = is_dark(palette)
        self.base = QColor(palette.color(QPalette.ColorRole.Base))
        self.text = QColor(palette.color(QPalette.ColorRole.Text))
        self.muted = mix(self.text, self.base, 0.42)
        self.body = QColor(self.base)
        self.border = mix(self.text, self.base, 0.62)
        self.edge = mix(self.text, self.base, 0.45)
        self.accent = QColor(palette.color(QPalette.ColorRole.Highlight))
        self.match = QColor("#f0a020")
        self.io_fill = mix(self.base, self.text, 0.10)
        self.frame_fill = QColor(self.text)
        self.frame_fill.setAlphaF(0.045 if self.dark else 0.035)
        self.frame_border = mix(self.text, self.base, 0.72)
        self.title_font = QFont(font)
        self.title_font.setBold(True)
        self.body_font = QFont(font)
        size = font.pointSizeF()
        if size > 0:
            self.body_font.setPointSizeF(size * 0.9)
        self.title_fm = QFontMetricsF(self.title_font)
        self.body_fm = QFontMetricsF(self.body_font)
        self.header_h = math.ceil(self.title_fm.height() + 8)
        self.line_h = math.ceil(self.body_fm.height() + 1)

    def pen(self, colour: QColor, width: float = 1.0, style=Qt.PenStyle.SolidLine) -> QPen:
        p = QPen(colour, width, style)
        p.setCosmetic(True)
        return p


@dataclass(slots=True)
class Box:
    key: str
    kind: str  # BOX_NODE | BOX_GROUP | BOX_OWNER | BOX_IO
    rect: QRectF
    title: str
    lines: list[tuple[str, int]]
    fill: QColor = field(default_factory=QColor)
    title_colour: QColor = field(default_factory=QColor)


@dataclass(slots=True)
class Frame:
    key: str
    rect: QRectF
    title: str
    owner: bool  # an If/Loop node's frame: its title band takes the node's colour
    fill: QColor = field(default_factory=QColor)


class GridIndex:
    """Which rectangles meet a query rectangle, without looking at all of them."""

    def __init__(self, rects: Sequence[QRectF], cell: float = GRID):
        self.cell = cell
        self.cells: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(rects):
            for key in self._keys(r):
                self.cells.setdefault(key, []).append(i)

    def _keys(self, r: QRectF) -> Iterable[tuple[int, int]]:
        c = self.cell
        x0, x1 = int(math.floor(r.left() / c)), int(math.floor(r.right() / c))
        y0, y1 = int(math.floor(r.top() / c)), int(math.floor(r.bottom() / c))
        for gx in range(x0, x1 + 1):
            for gy in range(y0, y1 + 1):
                yield gx, gy

    def query(self, r: QRectF) -> list[int]:
        c = self.cell
        x0, x1 = int(math.floor(r.left() / c)), int(math.floor(r.right() / c))
        y0, y1 = int(math.floor(r.top() / c)), int(math.floor(r.bottom() / c))
        if (x1 - x0 + 1) * (y1 - y0 + 1) > 4 * len(self.cells):
            found = {i for ids in self.cells.values() for i in ids}
        else:
            found = set()
            for gx in range(x0, x1 + 1):
                for gy in range(y0, y1 + 1):
                    ids = self.cells.get((gx, gy))
                    if ids:
                        found.update(ids)
        return sorted(found)


def _lod(painter: QPainter) -> float:
    return QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())


class _Layer(QGraphicsItem):
    def __init__(self) -> None:
        super().__init__()
        self._bounds = QRectF()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.setAcceptHoverEvents(False)

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt override)
        return self._bounds

    def _set_bounds(self, r: QRectF) -> None:
        self.prepareGeometryChange()
        self._bounds = QRectF(r)


class NodeLayer(_Layer):
    """All boxes: nodes, collapsed groups, model inputs and outputs."""

    def __init__(self, theme: Theme):
        super().__init__()
        self.theme = theme
        self.boxes: list[Box] = []
        self.by_key: dict[str, int] = {}
        self.index = GridIndex([])
        self.selected: str | None = None
        self.matches: set[str] = set()
        self.current: str | None = None
        self.setZValue(2)

    def set_boxes(self, boxes: list[Box]) -> None:
        self.boxes = boxes
        self.by_key = {b.key: i for i, b in enumerate(boxes)}
        self.index = GridIndex([b.rect for b in boxes])
        bounds = QRectF()
        for b in boxes:
            bounds = bounds.united(b.rect.adjusted(-2, -2, 6, 6))
        self._set_bounds(bounds)
        self.update()

    def box_at(self, p: QPointF) -> Box | None:
        for i in self.index.query(QRectF(p, p)):
            if self.boxes[i].rect.contains(p):
                return self.boxes[i]
        return None

    def update_key(self, key: str | None) -> None:
        i = self.by_key.get(key) if key else None
        if i is not None:
            self.update(self.boxes[i].rect.adjusted(-6, -6, 10, 10))

    def paint(self, painter: QPainter, option, widget: QWidget | None = None) -> None:
        lod = _lod(painter)
        ids = self.index.query(option.exposedRect)
        if not ids:
            return
        if lod < SHAPE_LOD:
            self._paint_blocks(painter, ids)
        else:
            detailed = lod >= TEXT_LOD
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            for i in ids:
                self._paint_box(painter, self.boxes[i], detailed)
        self._paint_marks(painter, ids)

    def _paint_blocks(self, painter: QPainter, ids: list[int]) -> None:
        by_colour: dict[int, tuple[QColor, list[QRectF]]] = {}
        for i in ids:
            b = self.boxes[i]
            fill = b.fill if b.kind != BOX_IO else self.theme.io_fill
            entry = by_colour.get(fill.rgba())
            if entry is None:
                entry = by_colour[fill.rgba()] = (fill, [])
            entry[1].append(b.rect)
        painter.setPen(Qt.PenStyle.NoPen)
        for fill, rects in by_colour.values():
            painter.setBrush(fill)
            painter.drawRects(rects)

    def _paint_box(self, painter: QPainter, b: Box, detailed: bool) -> None:
        t = self.theme
        r = b.rect
        if b.kind == BOX_IO:
            radius = min(r.height() / 2, 12.0)
            painter.setPen(t.pen(t.border))
            painter.setBrush(t.io_fill)
            painter.drawRoundedRect(r, radius, radius)
            if detailed:
                self._paint_text(painter, b, r.top(), t.text, centred=True)
            return
        if b.kind == BOX_GROUP or b.kind == BOX_OWNER:  # a stack: there is more inside
            painter.setPen(t.pen(t.border))
            painter.setBrush(t.body)
            painter.drawRoundedRect(r.translated(4, 4), RADIUS, RADIUS)
        if not detailed:
            painter.setPen(t.pen(t.border))
            painter.setBrush(b.fill)
            painter.drawRoundedRect(r, RADIUS, RADIUS)
            return
        hh = min(float(t.header_h), r.height())
        painter.setPen(Qt.PenStyle.NoPen)
        if hh >= r.height() - 0.5:
            painter.setBrush(b.fill)
            painter.drawRoundedRect(r, RADIUS, RADIUS)
        else:
            painter.setBrush(t.body)
            painter.drawRoundedRect(r, RADIUS, RADIUS)
            painter.setBrush(b.fill)
            painter.drawRoundedRect(QRectF(r.left(), r.top(), r.width(), hh + RADIUS), RADIUS,
                                    RADIUS)
            painter.setBrush(t.body)
            painter.drawRect(QRectF(r.left(), r.top() + hh, r.width(), RADIUS))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(t.pen(t.border))
        painter.drawRoundedRect(r, RADIUS, RADIUS)
        # title in the header
        painter.setFont(t.title_font)
        painter.setPen(b.title_colour)
        title_rect = QRectF(r.left() + PAD, r.top(), r.width() - 2 * PAD, hh)
        painter.drawText(title_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                         b.title)
        if b.kind in (BOX_GROUP, BOX_OWNER):
            painter.drawText(title_rect,
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, "+")
        self._paint_text(painter, b, r.top() + hh, t.text)

    def _paint_text(self, painter: QPainter, b: Box, top: float, colour: QColor,
                    centred: bool = False) -> None:
        t = self.theme
        r = b.rect
        if b.kind == BOX_IO:
            painter.setFont(t.title_font)
            painter.setPen(colour)
            lines = [(b.title, NORMAL)] + b.lines
            y = r.top() + (r.height() - t.title_fm.height() - t.line_h * len(b.lines)) / 2
            painter.drawText(QRectF(r.left(), y, r.width(), t.title_fm.height()),
                             Qt.AlignmentFlag.AlignCenter, lines[0][0])
            y += t.title_fm.height()
            painter.setFont(t.body_font)
            painter.setPen(t.muted)
            for text, _ in lines[1:]:
                painter.drawText(QRectF(r.left(), y, r.width(), t.line_h),
                                 Qt.AlignmentFlag.AlignCenter, text)
                y += t.line_h
            return
        painter.setFont(t.body_font)
        y = top + 3 + t.body_fm.ascent()
        for text, role in b.lines:
            painter.setPen(t.muted if role == MUTED else t.text)
            painter.drawText(QPointF(r.left() + PAD, y), text)
            y += t.line_h

    def _paint_marks(self, painter: QPainter, ids: list[int]) -> None:
        """Search matches and the selection, drawn over the boxes."""
        if not self.matches and self.selected is None:
            return
        t = self.theme
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for i in ids:
            b = self.boxes[i]
            if b.key == self.selected:
                painter.setPen(t.pen(t.accent, 3.0))
            elif b.key == self.current or b.key in self.matches:
                painter.setPen(t.pen(t.match, 2.5 if b.key == self.current else 2.0))
            else:
                continue
            radius = min(b.rect.height() / 2, 12.0) if b.kind == BOX_IO else RADIUS
            painter.drawRoundedRect(b.rect.adjusted(-2, -2, 2, 2), radius + 2, radius + 2)


class FrameLayer(_Layer):
    """The outlines of expanded groups, nested frames tinting their content a little more."""

    def __init__(self, theme: Theme):
        super().__init__()
        self.theme = theme
        self.frames: list[Frame] = []
        self.index = GridIndex([])
        self.selected: str | None = None
        self.setZValue(0)

    def set_frames(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.index = GridIndex([f.rect for f in frames], cell=GRID * 4)
        bounds = QRectF()
        for f in frames:
            bounds = bounds.united(f.rect.adjusted(-2, -2, 2, 2))
        self._set_bounds(bounds)
        self.update()

    def frame_at(self, p: QPointF) -> Frame | None:
        """The innermost frame holding p."""
        best = None
        for i in self.index.query(QRectF(p, p)):
            f = self.frames[i]
            if f.rect.contains(p) and (best is None or f.rect.width() * f.rect.height()
                                       < best.rect.width() * best.rect.height()):
                best = f
        return best

    def paint(self, painter: QPainter, option, widget: QWidget | None = None) -> None:
        t = self.theme
        lod = _lod(painter)
        ids = self.index.query(option.exposedRect)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, lod >= SHAPE_LOD)
        for i in ids:
            f = self.frames[i]
            r = f.rect
            if not r.intersects(option.exposedRect):
                continue
            sel = f.key == self.selected
            painter.setPen(t.pen(t.accent, 2.0) if sel else t.pen(t.frame_border))
            painter.setBrush(t.frame_fill)
            painter.drawRoundedRect(r, 8.0, 8.0)
            if f.owner:
                band = QRectF(r.left(), r.top(), r.width(), GROUP_TITLE)
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(f.fill)
                path = QPainterPath()
                path.addRoundedRect(band.adjusted(0.5, 0.5, -0.5, 8), 8.0, 8.0)
                clip = QPainterPath()
                clip.addRect(band)
                painter.drawPath(path.intersected(clip))
            if lod >= TEXT_LOD:
                painter.setFont(t.title_font)
                painter.setPen(header_text_colour(f.fill) if f.owner else t.text)
                painter.drawText(QRectF(r.left() + 10, r.top(), r.width() - 20, GROUP_TITLE),
                                 Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                                 f.title)
                painter.drawText(QRectF(r.left() + 10, r.top(), r.width() - 20, GROUP_TITLE),
                                 Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, "−")


@dataclass
class _Tile:
    lines: QPainterPath
    arrows: QPainterPath
    bounds: QRectF


class EdgeLayer(_Layer):
    """Every edge, as smooth curves; grouped in tiles so a frame draws a few big paths."""

    TILE = 1600.0

    def __init__(self, theme: Theme):
        super().__init__()
        self.theme = theme
        self.routes: list[EdgeRoute] = []
        self.tiles: list[_Tile] = []
        self.highlight: tuple[QPainterPath, QPainterPath] | None = None
        self.setZValue(1)

    def set_routes(self, routes: list[EdgeRoute]) -> None:
        self.routes = routes
        tiles: dict[tuple[int, int], tuple[QPainterPath, QPainterPath]] = {}
        for r in routes:
            if len(r.points) < 2:
                continue
            x, y = r.points[0]
            key = (int(x // self.TILE), int(y // self.TILE))
            entry = tiles.get(key)
            if entry is None:
                entry = tiles[key] = (QPainterPath(), QPainterPath())
            _add_route(entry[0], entry[1], r)
        self.tiles = []
        bounds = QRectF()
        for lines, arrows in tiles.values():
            b = lines.controlPointRect().united(arrows.controlPointRect()).adjusted(-2, -2, 2, 2)
            self.tiles.append(_Tile(lines, arrows, b))
            bounds = bounds.united(b)
        self.highlight = None
        self._set_bounds(bounds)
        self.update()

    def set_highlight(self, key: str | None) -> None:
        """Draw the edges touching `key` in the accent colour."""
        old = self.highlight
        self.highlight = None
        if key:
            lines, arrows = QPainterPath(), QPainterPath()
            for r in self.routes:
                if (r.src == key or r.dst == key) and len(r.points) >= 2:
                    _add_route(lines, arrows, r)
            if not lines.isEmpty():
                self.highlight = (lines, arrows)
        for h in (old, self.highlight):
            if h is not None:
                self.update(h[0].controlPointRect().united(h[1].controlPointRect())
                            .adjusted(-4, -4, 4, 4))

    def paint(self, painter: QPainter, option, widget: QWidget | None = None) -> None:
        t = self.theme
        lod = _lod(painter)
        exposed = option.exposedRect
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, lod >= SHAPE_LOD)
        pen = t.pen(t.edge, 1.3 if lod >= TEXT_LOD else 1.0)
        for tile in self.tiles:
            if not tile.bounds.intersects(exposed):
                continue
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(tile.lines)
            if lod >= SHAPE_LOD:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(t.edge)
                painter.drawPath(tile.arrows)
        if self.highlight is not None:
            painter.setPen(t.pen(t.accent, 2.4))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(self.highlight[0])
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(t.accent))
            painter.drawPath(self.highlight[1])


def _add_route(lines: QPainterPath, arrows: QPainterPath, r: EdgeRoute) -> None:
    """A smooth curve through the route's points, vertical at every bend, plus its arrowhead."""
    pts = r.points
    (ex, ey) = pts[-1]
    (px, py) = pts[-2]
    down = ey >= py
    if r.arrow:  # stop the line where the arrowhead starts
        pts = pts[:-1] + [(ex, ey - ARROW_LEN + 1 if down else ey + ARROW_LEN - 1)]
    x0, y0 = pts[0]
    lines.moveTo(x0, y0)
    for x1, y1 in pts[1:]:
        dy = (y1 - y0) * 0.5
        lines.cubicTo(x0, y0 + dy, x1, y1 - dy, x1, y1)
        x0, y0 = x1, y1
    if r.arrow:
        s = -1.0 if down else 1.0
        arrows.addPolygon(QPolygonF([QPointF(ex, ey), QPointF(ex - ARROW_HALF, ey + s * ARROW_LEN),
                                     QPointF(ex + ARROW_HALF, ey + s * ARROW_LEN)]))
        arrows.closeSubpath()
