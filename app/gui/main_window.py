"""The main window: graph in the centre, passes + backend on the left, live charts at the
bottom, node details + variants (+ converter queue) on the right.

It owns no computation: every model read, run, conversion and comparison is a worker job
(app.gui.jobs.WorkerJob) whose events feed the panels. A failed job is shown and forgotten;
the window keeps what it had.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QEvent, QObject, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QVBoxLayout,
    QWidget,
)

from app.gui import settings
from app.gui.dialogs import code_consent_dialog, error_dialog
from app.gui.jobs import WorkerJob
from app.gui.layout import CENTRAL_MIN_WIDTH, CHARTS_IDLE_HEIGHT, CHARTS_RUN_SHARE
from app.gui.panels.backend_panel import BackendPanel
from app.gui.panels.converter import ConverterPanel, QueueItem, local_files
from app.gui.panels.job_bar import JobBar
from app.gui.panels.node_details import NodeDetailsPanel, human
from app.gui.panels.passes_panel import PassesPanel
from app.gui.panels.variants import Variant, VariantsPanel
from converters.graph import ModelGraph

log = logging.getLogger(__name__)

SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "torch": ".pt2", "tflite": ".tflite"}
COLOUR_MODES = [("Op type", "op"), ("Time", "time"), ("Device", "device"),
                ("Precision", "precision")]
STATE_VERSION = 1


def sample_dir() -> Path:
    spec = importlib.util.find_spec("resources.samples")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


def sample_models() -> list[tuple[str, Path]]:
    """The trained digits sample and the onnx package's light Model Zoo graphs (found without
    importing onnx in the GUI process)."""
    samples = sample_dir()
    items = [("Digits CNN — ONNX (trained on scikit-learn digits)", samples / "digits_cnn.onnx"),
             ("Digits CNN — torch.export (.pt2)", samples / "digits_cnn.pt2")]
    spec = importlib.util.find_spec("onnx")
    if spec is not None and spec.origin:
        light = Path(spec.origin).parent / "backend" / "test" / "data" / "light"
        for p in sorted(light.glob("light_*.onnx")):
            items.append((f"{p.stem.removeprefix('light_')} — ONNX Model Zoo (light)", p))
    return [(label, p) for label, p in items if p.exists()]


def _graph_view_class():
    """The graph view is built by another module; until it exists, a placeholder keeps the
    window usable (and says why)."""
    try:
        from app.gui.graph import GraphView

        return GraphView, None
    except Exception as e:  # ImportError while it is being written, or a broken module
        log.warning("graph view unavailable: %s", e)
        return None, f"{type(e).__name__}: {e}"


class _GraphPlaceholder(QLabel):
    """Same API as GraphView, drawing nothing but a note."""

    sig_node_selected = Signal(str)

    def __init__(self, why: str):
        super().__init__(f"The graph view is not available ({why}).")
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.graph: ModelGraph | None = None

    def set_model(self, graph: ModelGraph, costs: dict | None = None) -> None:
        self.graph = graph
        self.setText(f"{graph.node_count()} nodes (graph view not available)")

    def set_node_times(self, times: dict) -> None: ...
    def set_node_devices(self, devices: dict) -> None: ...
    def set_node_precisions(self, precisions: dict) -> None: ...
    def _sync_colour_menu(self) -> None:
        """The graph view has its own colour combo: the menu shows what it shows."""
        mode = getattr(self.graph_view, "colour_mode", None)
        current = mode() if callable(mode) else None
        if current in self.colour_actions:
            self.colour_actions[current].setChecked(True)

    def set_colour_mode(self, mode: str) -> None: ...
    def select_node(self, node_id: str) -> None: ...

    def export_image(self, path: str) -> None:
        self.grab().save(path)


class MainWindow(QMainWindow):
    sig_model_opened = Signal(str)  # the path whose graph and summary are now shown
    sig_profile_finished = Signal(object)  # JobOutcome
    sig_error = Signal(str, str)  # title, message (tests and logs; the dialog shows it too)
    sig_first_painted = Signal()  # the window has been painted once (startup measurement)
    sig_ready = Signal()  # the deferred parts (live charts) are built too
    sig_recounted = Signal()  # summary and MACs now at the sizes in the Inputs table

    def __init__(self, work_dir: str | os.PathLike[str] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("ModelDeck")
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks |
                            QMainWindow.DockOption.AllowTabbedDocks)
        self.work_dir = Path(work_dir or settings.get_json("work_dir") or Path(
            QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
        ) / "variants")
        self.model_path: str | None = None  # what Run profile / Apply work on
        self.root_path: str | None = None  # what the variants table descends from
        self.summary: dict[str, Any] = {}
        self.current_graph: ModelGraph | None = None
        self.costs: dict[str, dict[str, Any]] = {}
        self.last_report: dict[str, Any] | None = None
        self.last_comparison: dict[str, Any] | None = None
        self._last_result_kind: str | None = None  # "run" | "comparison"
        self.inspect_job: WorkerJob | None = None
        self.recount_job: WorkerJob | None = None
        self.profile_job: WorkerJob | None = None
        self.compare_job: WorkerJob | None = None
        self.devices_job: WorkerJob | None = None
        # Files whose code the user agreed to run (asked once per file, for this session).
        self.trusted_files: set[str] = set()
        self.profile_layers: list[dict[str, Any]] = []
        self.errors: list[dict[str, str]] = []
        self.last_error_dialog: QMessageBox | None = None
        self.charts = None  # app.gui.charts.LiveCharts, built after the first paint
        self._charts_idle = False  # the charts dock is kept short until a run starts
        self._first_shown = False

        graph_cls, why = _graph_view_class()
        self.graph_view = graph_cls() if graph_cls is not None else _GraphPlaceholder(why or "")
        self.graph_view.setObjectName("graph_view")
        self.graph_view.setMinimumWidth(CENTRAL_MIN_WIDTH)  # its toolbar must not set the
        # window's width: at 1366 px the docks beside it need theirs
        self.setCentralWidget(self.graph_view)
        self.graph_view.sig_node_selected.connect(self._on_node_selected)

        self.backend = BackendPanel()
        self.passes = PassesPanel()
        self.details = NodeDetailsPanel()
        self.variants = VariantsPanel()
        self.converter = ConverterPanel(self.convert_spec_for_file, self.passes.describe)
        self.charts_holder = QWidget()
        QVBoxLayout(self.charts_holder).setContentsMargins(0, 0, 0, 0)
        self.charts_placeholder = QLabel("Live charts appear here when a run starts.")
        self.charts_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.charts_holder.layout().addWidget(self.charts_placeholder)

        self.dock_passes = self._dock("Passes", "dock_passes", self.passes,
                                      Qt.DockWidgetArea.LeftDockWidgetArea)
        self.dock_backend = self._dock("Backend", "dock_backend", self.backend,
                                       Qt.DockWidgetArea.LeftDockWidgetArea)
        self.dock_charts = self._dock("Live charts", "dock_charts", self.charts_holder,
                                      Qt.DockWidgetArea.BottomDockWidgetArea)
        self.dock_details = self._dock("Details", "dock_details", self.details,
                                       Qt.DockWidgetArea.RightDockWidgetArea)
        self.dock_variants = self._dock("Variants", "dock_variants", self.variants,
                                        Qt.DockWidgetArea.RightDockWidgetArea)
        self.dock_converter = self._dock("Converter", "dock_converter", self.converter,
                                         Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(self.dock_variants, self.dock_converter)
        self.dock_variants.raise_()
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)

        self.job_bar = JobBar()
        self.statusBar().addWidget(self.job_bar, 1)
        self.summary_label = QLabel("")
        self.statusBar().addPermanentWidget(self.summary_label)

        self._build_menus()
        self._connect_panels()
        self._restore_layout()
        from app.gui.dialogs import recent_log
        from app.gui.widgets import guard_wheel

        guard_wheel()  # the wheel scrolls lists and docks, never an unfocused field under it
        recent_log()  # error dialogs' Details carry the log lines that led to them

    # --- construction ----------------------------------------------------------------------
    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea
              ) -> QDockWidget:
        from app.gui.layout import scrollable

        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState/restoreState key
        # forms scroll inside their dock rather than setting the window's minimum height
        dock.setWidget(scrollable(widget) if name in ("dock_passes", "dock_backend")
                       else widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.act_open = self._action(file_menu, "&Open…", self.open_dialog,
                                       QKeySequence(QKeySequence.StandardKey.Open))
        self.samples_menu = file_menu.addMenu("Open &Sample")
        for label, path in sample_models():
            act = self.samples_menu.addAction(label)
            act.setToolTip(str(path))
            act.triggered.connect(lambda _=False, p=str(path): self.open_model(p))
        self.recent_menu = file_menu.addMenu("&Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._fill_recent()
        file_menu.addSeparator()
        self.act_export = self._action(file_menu, "&Export report…", self.export_report_dialog,
                                       QKeySequence("Ctrl+E"))
        self.act_export_graph = self._action(file_menu, "Export &graph image…",
                                             self.export_graph_dialog)
        file_menu.addSeparator()
        self.act_quit = self._action(file_menu, "&Quit", self.close, QKeySequence("Ctrl+Q"))

        run_menu = bar.addMenu("&Run")
        self.act_profile = self._action(run_menu, "&Profile", self.run_profile,
                                        QKeySequence("Ctrl+R"))
        self.act_stop = self._action(run_menu, "&Stop", self.stop_profile,
                                     QKeySequence("Ctrl+."))
        self.act_apply = self._action(run_menu, "&Apply passes", self.apply_passes,
                                      QKeySequence("Ctrl+Shift+A"))
        self.act_compare = self._action(run_menu, "&Compare variants",
                                        lambda: self.compare(self.variants.compare_paths()))
        from app.gui import optimize_action

        optimize_action.attach(self, run_menu)  # Run ▸ Optimize…: search + live Pareto chart

        view_menu = bar.addMenu("&View")
        for dock in (self.dock_passes, self.dock_backend, self.dock_charts, self.dock_details,
                     self.dock_variants, self.dock_converter):
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        colour_menu = view_menu.addMenu("&Colour nodes by")
        colour_menu.aboutToShow.connect(self._sync_colour_menu)
        self.colour_group = QActionGroup(self)
        self.colour_actions: dict[str, QAction] = {}
        for label, mode in COLOUR_MODES:
            act = colour_menu.addAction(label)
            act.setCheckable(True)
            act.setChecked(mode == "op")
            self.colour_group.addAction(act)
            act.triggered.connect(lambda _=False, m=mode: self.set_colour_mode(m))
            self.colour_actions[mode] = act
        view_menu.addSeparator()
        self._action(view_menu, "&Reset layout", self.reset_layout)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About ModelDeck", self._about)

    def _action(self, menu, text: str, slot, shortcut: QKeySequence | None = None) -> QAction:
        act = menu.addAction(text)
        if shortcut is not None:
            act.setShortcut(shortcut)
        act.triggered.connect(lambda _=False: slot())
        return act

    def _connect_panels(self) -> None:
        self.backend.sig_run_requested.connect(self.run_profile)
        self._recount_timer = QTimer(self)  # edits settle before a worker counts again
        self._recount_timer.setSingleShot(True)
        self._recount_timer.setInterval(300)
        self._recount_timer.timeout.connect(self.recount_at_sizes)
        self.backend.inputs_table.sig_changed.connect(self._recount_timer.start)
        self.backend.sig_stop_requested.connect(self.stop_profile)
        self.backend.target_picker.sig_target_changed.connect(lambda _t: self.refresh_devices())
        self.passes.sig_apply_requested.connect(self.apply_passes)
        self.passes.sig_selection_changed.connect(self.converter.refresh_plan)
        self.variants.sig_open.connect(lambda p: self.open_model(p, as_variant=True))
        self.variants.sig_profile.connect(self.run_profile)
        self.variants.sig_compare.connect(self.compare)
        self.variants.sig_export.connect(self.export_variant_dialog)
        self.variants.sig_details.connect(self._show_variant_details)
        from app.gui.graph.diff_view import start_graph_diff

        self.variants.sig_diff.connect(lambda paths: start_graph_diff(self, paths))
        self.converter.sig_details.connect(self._show_queue_details)
        self.variants.set_runner_check(self.backend.can_run)  # Compare: one backend runs all
        from app.gui.variant_store import VariantStore

        self.variants.set_store(VariantStore(self.work_dir))  # rows outlive the open model
        self.backend.sig_backend_changed.connect(lambda _name: self.variants._update_buttons())
        self._export_done.connect(self._on_export_done)

    # --- window events ---------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        if not self._first_shown:
            self._first_shown = True
            QApplication.instance().installEventFilter(self)  # until the first paint

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if (event.type() == QEvent.Type.Paint and isinstance(obj, QWidget)
                and obj.window() is self):
            QApplication.instance().removeEventFilter(self)
            QTimer.singleShot(0, self._after_first_paint)  # once this paint has completed
        return False

    def _after_first_paint(self) -> None:
        """The costly parts (pyqtgraph, the devices probe) wait until the window is on screen."""
        self.sig_first_painted.emit()
        self.refresh_devices()
        QTimer.singleShot(10, self._build_deferred)

    def _build_deferred(self) -> None:
        self.passes.ensure_loaded()
        self.converter.refresh_plan()
        self.ensure_charts()
        if self._charts_idle:  # no run yet: the graph gets the height, not empty axes
            self.resizeDocks([self.dock_charts], [CHARTS_IDLE_HEIGHT], Qt.Orientation.Vertical)
            from app.gui.layout import side_widths

            self.resizeDocks([self.dock_passes, self.dock_details], list(side_widths(self)),
                             Qt.Orientation.Horizontal)  # first start: the graph gets the rest
        self._keep_on_screen()
        self.sig_ready.emit()

    def _keep_on_screen(self) -> None:
        """After contents changed (a model, a run): never wider or taller than the screen."""
        from app.gui.layout import fit_to_screen

        QTimer.singleShot(0, lambda: fit_to_screen(self))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self._save_layout()
        self.converter.cancel_all()
        for job in self.findChildren(WorkerJob):
            if job.is_running():
                job.kill()  # the user is leaving: no grace period
                job.proc.waitForFinished(2000)
        super().closeEvent(event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt override)
        if local_files(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt override)
        files = local_files(event.mimeData())
        if files:
            event.acceptProposedAction()
            self.open_model(files[0])

    # --- layout ----------------------------------------------------------------------------
    def _save_layout(self) -> None:
        s = settings.settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(STATE_VERSION))

    def _restore_layout(self) -> None:
        s = settings.settings()
        geometry, state = s.value("window/geometry"), s.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            from app.gui.layout import default_size

            self.resize(*default_size(self))
        if isinstance(state, QByteArray):
            self.restoreState(state, STATE_VERSION)
        else:
            self._charts_idle = True  # a short charts dock until the first run
        from app.gui.layout import fit_to_screen

        fit_to_screen(self)

    def reset_layout(self) -> None:
        for dock in (self.dock_passes, self.dock_backend, self.dock_charts, self.dock_details,
                     self.dock_variants, self.dock_converter):
            dock.setFloating(False)
            dock.show()
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock_passes)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock_backend)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock_charts)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock_details)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock_variants)
        self.tabifyDockWidget(self.dock_variants, self.dock_converter)
        self.dock_variants.raise_()

    # --- helpers ---------------------------------------------------------------------------
    def ensure_charts(self):
        """Build the live charts (imports pyqtgraph) on first need, not before the first paint."""
        if self.charts is None:
            t0 = time.perf_counter()
            from app.gui.charts import LiveCharts

            self.charts = LiveCharts()
            self.charts_placeholder.hide()
            self.charts_holder.layout().addWidget(self.charts)
            log.debug("charts built in %.0f ms", (time.perf_counter() - t0) * 1e3)
        return self.charts

    def show_error(self, title: str, message: str, details: str = "") -> None:
        """Readable message + details on demand, never modal: jobs keep streaming."""
        log.warning("%s: %s", title, message)
        if not details and sys.exc_info()[0] is not None:  # called while handling an error
            details = traceback.format_exc()
        self.errors.append({"title": title, "message": message, "details": details})
        self.job_bar.set_text(f"{title}: {message}")
        self.last_error_dialog = error_dialog(self, title, message, details)
        self.sig_error.emit(title, message)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = settings.recent_files()
        for path in files:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.open_model(p))
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear").triggered.connect(settings.clear_recent_files)

    def _sync_colour_menu(self) -> None:
        """The graph view has its own colour combo: the menu shows what it shows."""
        mode = getattr(self.graph_view, "colour_mode", None)
        current = mode() if callable(mode) else None
        if current in self.colour_actions:
            self.colour_actions[current].setChecked(True)

    def set_colour_mode(self, mode: str) -> None:
        self.graph_view.set_colour_mode(mode)
        if mode in self.colour_actions:
            self.colour_actions[mode].setChecked(True)

    def _about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("About ModelDeck")
        box.setText("ModelDeck — inspect, profile, compress and convert deep-learning models.\n"
                    "Models are read and run in worker processes; this window only draws.")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # --- devices ---------------------------------------------------------------------------
    def refresh_devices(self) -> None:
        job = self.backend.target_picker.job({"job": "devices"}, self)  # local or remote
        self.devices_job = job

        def done(outcome) -> None:
            if outcome.status == "ok":
                self.backend.set_devices((outcome.result or {}).get("backends", []))
            else:
                self.backend.devices_failed(outcome.error or "the devices job failed")
            if self.devices_job is job:
                self.devices_job = None
            job.deleteLater()

        job.sig_finished.connect(done)
        job.start()

    # --- open ------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        from app.gui.file_dialogs import model_filter

        start = os.path.dirname(self.model_path) if self.model_path else str(sample_dir())
        path, _ = QFileDialog.getOpenFileName(self, "Open model", start, model_filter())
        if path:
            self.open_model(path)

    def open_model(self, path: str, trust_pickle: bool = False, as_variant: bool = False
                   ) -> WorkerJob:
        """Inspect `path` in a worker; the graph and summary replace the current ones only
        when it succeeds."""
        path = os.path.abspath(path)
        if self.inspect_job is not None and not self.inspect_job.is_done():
            self.inspect_job.cancel()  # superseded
        trust_pickle = trust_pickle or path in self.trusted_files
        spec = {"job": "inspect", "model": path, "layers": True, "graph": True,
                "trust_code": trust_pickle}
        job = WorkerJob(spec, self)
        self.inspect_job = job
        self.job_bar.bind(job, f"Opening {os.path.basename(path)}")
        job.sig_finished.connect(
            lambda outcome: self._on_inspected(job, path, trust_pickle, as_variant, outcome))
        job.start()
        return job

    def _on_inspected(self, job: WorkerJob, path: str, trusted: bool, as_variant: bool,
                      outcome) -> None:
        job.deleteLater()
        if job is self.inspect_job:
            self.inspect_job = None
        name = os.path.basename(path)
        if outcome.status == "cancelled":
            return
        if outcome.status != "ok":
            if outcome.error_kind == "needs_consent" and not trusted:
                def answer(yes: bool) -> None:
                    if yes:
                        self.trusted_files.add(path)
                        self.open_model(path, trust_pickle=True, as_variant=as_variant)
                    else:
                        self.job_bar.set_text(f"{name}: not opened (its code was not trusted)")

                code_consent_dialog(self, path, outcome.error or "", answer)
                return
            self.show_error(f"Could not open {name}", outcome.error or "unknown error",
                            outcome.stderr_tail)
            return
        result = dict(outcome.result or {})
        try:
            graph = ModelGraph.from_dict(result.pop("graph"))
        except (KeyError, ValueError, TypeError) as e:
            self.show_error(f"Could not open {name}", f"the worker sent no usable graph: {e}",
                            outcome.stderr_tail)
            return
        if path != self.model_path:
            self._forget_run()  # the charts and time colouring were the previous model's
        self.model_path = path
        self.summary = result
        self.current_graph = graph
        self.costs = {row["id"]: row for row in result.get("layers") or []}
        self.graph_view.set_model(graph, self.costs)
        self.details.set_model(graph, result, self.costs)
        self.backend.set_model_format(result.get("format"))
        self.passes.set_model_format(result.get("format"))  # grey what cannot apply
        if not as_variant or self.root_path is None:
            self.backend.inputs_table.set_workload(result.get("workload"))
        if not as_variant or self.root_path is None:
            self.root_path = path
            self.variants.set_original(result, path)
            self.last_comparison = None  # the Comparison tab was cleared with the rows
            if self._last_result_kind == "comparison":
                self._last_result_kind = None
        settings.add_recent_file(path)
        self.setWindowTitle(f"ModelDeck — {name}")
        self.summary_label.setText(self._summary_text(result))
        self.job_bar.set_text(f"Opened {name}: {graph.node_count()} nodes")
        self._keep_on_screen()
        self.sig_model_opened.emit(path)

    def recount_at_sizes(self) -> WorkerJob | None:
        """Count parameters and MACs again at the sizes in the Inputs table (in a worker); the
        graph keeps its layout, the summary, node costs and the table's sources follow."""
        table = self.backend.inputs_table
        if not self.model_path or not table.valid():
            return None
        if self.recount_job is not None and not self.recount_job.is_done():
            self.recount_job.cancel()  # superseded by a newer edit
        path = self.model_path
        spec = {"job": "inspect", "model": path, "layers": True,
                "trust_code": path in self.trusted_files, "shapes": table.user_shapes()}
        job = WorkerJob(spec, self)
        self.recount_job = job
        job.sig_finished.connect(lambda outcome: self._on_recounted(job, path, outcome))
        job.start()
        return job

    def _on_recounted(self, job: WorkerJob, path: str, outcome) -> None:
        job.deleteLater()
        if job is not self.recount_job or path != self.model_path:
            return  # superseded, or another model is open now
        self.recount_job = None
        if outcome.status == "cancelled":
            return
        if outcome.status != "ok":
            self.backend.inputs_table.show_problem(outcome.error or "these sizes cannot be used")
            return
        result = dict(outcome.result or {})
        self.summary = result  # no "graph": the view keeps the one it has
        self.costs = {row["id"]: row for row in result.get("layers") or []}
        if self.current_graph is not None:
            self.details.set_model(self.current_graph, self.summary, self.costs)
        self.backend.inputs_table.set_workload(result.get("workload"), keep_user=True)
        self.summary_label.setText(self._summary_text(self.summary))
        self.sig_recounted.emit()

    def _forget_run(self) -> None:
        """Another model (a variant too): the last run's charts and time colouring belong to
        the previous one; a run still streaming keeps its charts until it ends."""
        self.last_report = None
        if self._last_result_kind == "run":
            self._last_result_kind = None
        self.profile_layers = []
        if self.charts is not None and not self.charts.streaming:
            self.charts.clear()
        self.set_colour_mode("op")

    @staticmethod
    def _summary_text(s: dict[str, Any]) -> str:
        from app.gui.panels.node_details import macs_basis

        ins = ", ".join(f"{t['name']} {_shape(t.get('shape'))}" for t in s.get("inputs") or [])
        outs = ", ".join(f"{t['name']} {_shape(t.get('shape'))}" for t in s.get("outputs") or [])
        return (f"{s.get('format')} · {s.get('nodes', 0):,} nodes · {human(s.get('params'))} "
                f"params · {human(s.get('macs'))} MACs{macs_basis(s)} · in: {ins} · out: {outs}")

    def _on_node_selected(self, node_id: str) -> None:
        self.details.select_node(node_id or None)
        self.dock_details.raise_()

    # --- profile ---------------------------------------------------------------------------
    def _carries_code(self, path: str) -> bool:
        """A PyTorch file: running it runs code it brought (judged on content, no framework)."""
        from converters.errors import ModelDeckError
        from converters.formats import detect_format

        try:
            return detect_format(Path(path)).name == "torch"
        except ModelDeckError:
            return False

    def _ask_consent(self, paths: list[str], action: str, go: Callable[[], Any]) -> bool:
        """True when every file that carries code is trusted; else ask (once per file) and
        call `go` again after a yes. The job spec then carries trust_code."""
        for path in (os.path.abspath(p) for p in paths):
            if path not in self.trusted_files and self._carries_code(path):
                def answer(yes: bool, path: str = path) -> None:
                    if yes:
                        self.trusted_files.add(path)
                        go()
                    else:
                        self.job_bar.set_text(f"{os.path.basename(path)}: nothing started "
                                              "(its code was not trusted)")

                code_consent_dialog(self, path, f"{action} {path}: the model is a program "
                                    "that runs with your permissions", answer, action)
                return False
        return True

    def _trusted(self, paths: list[str]) -> bool:
        return any(os.path.abspath(p) in self.trusted_files for p in paths)

    def run_profile(self, path: str | None = None) -> WorkerJob | None:
        path = path or self.model_path
        if path and not self._ask_consent([path], "run", lambda: self.run_profile(path)):
            return None
        if not path:
            self.show_error("Nothing to profile", "open a model first (File ▸ Open or drop a "
                            "file on the window)")
            return None
        if self.profile_job is not None and not self.profile_job.is_done():
            self.job_bar.set_text("a run is already going: stop it first")
            return None
        try:
            config = self.backend.run_config(path)
        except Exception as e:  # ModelDeckError / ValueError from the config's validation
            self.show_error("Cannot start the run", str(e))
            return None
        config["trust_code"] = self._trusted([path])
        charts = self.ensure_charts()
        if self._charts_idle:  # the first run: the charts take their share of the height
            self._charts_idle = False
            self.resizeDocks([self.dock_charts], [int(self.height() * CHARTS_RUN_SHARE)],
                             Qt.Orientation.Vertical)
        charts.reset(config.get("budgets") or ())
        self.profile_layers = []
        job = self.backend.target_picker.job({"job": "profile", "config": config}, self)
        self.profile_job = job
        self.job_bar.bind(job, f"Profiling {os.path.basename(path)} on "
                               f"{config['backend']}/{config['device']}")
        self.backend.set_running(True)
        job.sig_event.connect(self._on_profile_event)
        job.sig_finished.connect(lambda outcome: self._on_profiled(job, path, outcome))
        job.start()
        self.dock_charts.raise_()
        return job

    def stop_profile(self) -> None:
        for job in (self.profile_job, self.compare_job):
            if job is not None and not job.is_done():
                job.cancel()

    def _on_profile_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "samples":
            self.charts.add_samples(event.get("series") or {})
        elif kind == "budget" and event.get("ok") is False:
            value = float(event.get("value") or 0.0)
            self.charts.mark_budget_broken(str(event.get("budget")), value)
            self.job_bar.set_text(f"budget broken live: {event.get('budget')} (last 200 "
                                  f"iterations: {value:.3g}; the whole run's figure decides)")
        elif kind == "layer":
            self.profile_layers.append(event)

    def _on_profiled(self, job: WorkerJob, path: str, outcome) -> None:
        job.deleteLater()
        if job is self.profile_job:
            self.profile_job = None
        self.backend.set_running(False)
        self.charts.stop()
        if outcome.status == "cancelled":
            self.job_bar.set_text("Run cancelled; the charts keep what was measured")
        elif outcome.status != "ok":
            self.show_error("The run failed", (outcome.error or "unknown error")
                            + "\nThe charts keep the samples received before it stopped.",
                            outcome.stderr_tail)
        else:
            report = outcome.result or {}
            self.last_report = report
            self._last_result_kind = "run"
            self.charts.set_result(report)
            p50 = (report.get("latency_ms") or {}).get("p50")
            if p50 is not None:
                self.variants.set_latency(path, p50)
            layers = report.get("layers") or self.profile_layers
            if layers and os.path.abspath(path) == self.model_path:
                self._show_layer_times(layers)
            broken = [b["budget"] for b in report.get("budgets") or [] if b.get("ok") is False]
            from app.gui.charts import fmt_ms  # loaded with the charts already

            stability = report.get("stability") or {}
            noisy = (f" — noisy: {'; '.join((stability.get('advice') or [])[:1])}"
                     if stability.get("verdict") == "noisy" else "")
            self.job_bar.set_text(f"Run done: p50 {fmt_ms(p50)}, {report.get('iterations')} "
                                  "iterations" + (f" — budget broken: {', '.join(broken)}"
                                                  if broken else "") + noisy)
        self._keep_on_screen()
        self.sig_profile_finished.emit(outcome)

    def _show_layer_times(self, layers: list[dict[str, Any]]) -> None:
        times: dict[str, float] = {}
        devices: dict[str, str] = {}
        precisions: dict[str, str] = {}
        for row in layers:
            nid = row.get("node_id")
            if not nid:
                continue
            times[nid] = times.get(nid, 0.0) + float(row.get("time_ms") or 0.0)
            if row.get("device"):
                devices[nid] = row["device"]
            if row.get("precision"):
                precisions[nid] = row["precision"]
        self.graph_view.set_node_times(times)
        self.graph_view.set_node_devices(devices)
        self.graph_view.set_node_precisions(precisions)
        self.details.set_layer_times(layers)
        self.set_colour_mode("time")

    # --- convert ---------------------------------------------------------------------------
    def _output_path(self, source: str, source_format: str, steps: list[dict], to: str | None
                     ) -> str:
        from app.pipeline import ConvertSpec, plan

        spec = ConvertSpec.from_dict({"model": source, "output": "x", "to": to,
                                      "passes": steps})
        fmt = source_format
        for s in plan(source_format, spec):
            if s.kind == "convert" and s.target:
                fmt = s.target
        tag = "+".join(p["name"] for p in steps) or f"to-{to}"
        stem = Path(source).name.split(".")[0]
        out_dir = self.work_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{stem}.{tag}{SUFFIX.get(fmt, '.onnx')}"
        i = 2
        while path.exists() or path.with_suffix(".bin").exists() and fmt == "openvino":
            path = out_dir / f"{stem}.{tag}.{i}{SUFFIX.get(fmt, '.onnx')}"
            i += 1
        return str(path)

    def convert_spec(self, source: str, source_format: str) -> dict[str, Any]:
        """The worker's convert spec for `source` with the passes panel's choices.
        Raises ValueError (or a ModelDeckError) with a message for the user."""
        steps = self.passes.steps()
        to = self.passes.target_format()
        if not steps and to in (None, source_format):
            raise ValueError("nothing to do: check a pass or choose another target format")
        calib = self.passes.calibration() if self.passes.needs_calibration() else None
        if self.passes.needs_calibration() and not calib:
            raise ValueError("choose calibration data (a file or folder path is empty)")
        output = self._output_path(source, source_format, steps, to)
        convert = {"model": source, "output": output, "to": to, "passes": steps,
                   "calib": calib, "eval": self.passes.eval_data(),
                   "trust_code": self._trusted([source]),
                   # the sizes set in the Inputs table hold for the open model's passes too
                   "shapes": (self.backend.inputs_table.user_shapes()
                              if source == self.model_path else {})}
        # the engine reads "convert"; the flat copy matches the brief's contract
        return {"job": "convert", "convert": convert, **convert}

    def convert_spec_for_file(self, path: str) -> dict[str, Any]:
        from converters.formats import detect_format

        return self.convert_spec(os.path.abspath(path), detect_format(Path(path)).name)

    def apply_passes(self) -> Variant | None:
        if not self.model_path:
            self.show_error("Nothing to convert", "open a model first")
            return None
        problems = self.passes.order_problems()
        if problems:  # said before the consent question: nothing to consent to
            self.show_error("Cannot apply the passes in this order", "\n\n".join(problems))
            return None
        if not self._ask_consent([self.model_path], "convert", self.apply_passes):
            return None
        try:
            spec = self.convert_spec(self.model_path, self.summary.get("format", "onnx"))
        except Exception as e:
            self.show_error("Cannot apply the passes", str(e))
            return None
        job = WorkerJob(spec, self)
        name = "+".join(p["name"] for p in spec["passes"]) or f"→ {spec['to']}"
        if spec["to"]:
            name += f" → {spec['to']}"
        variant = self.variants.add_conversion(name, job)
        job.sig_finished.connect(lambda outcome: self._on_converted(job, variant, outcome))
        job.start()
        self.dock_variants.raise_()
        return variant

    def _on_converted(self, job: WorkerJob, variant: Variant, outcome) -> None:
        job.deleteLater()
        if outcome.status == "ok":
            self.job_bar.set_text(f"{variant.name}: {variant.path}")
        elif outcome.status == "failed":
            self.job_bar.set_text(f"{variant.name} failed: {outcome.error} (double-click the row "
                                  "for details)")

    def _show_variant_details(self, variant: Variant) -> None:
        self.last_error_dialog = error_dialog(self, f"{variant.name} failed", variant.message,
                                              variant.details)

    def _show_queue_details(self, item: QueueItem) -> None:
        outcome = item.outcome
        self.last_error_dialog = error_dialog(
            self, f"Converting {os.path.basename(item.path)} failed",
            item.result_label.text().lstrip("⚠ "), outcome.stderr_tail if outcome else "")

    # --- compare ---------------------------------------------------------------------------
    def compare(self, paths: list[str]) -> WorkerJob | None:
        if len(paths) < 2:
            self.show_error("Nothing to compare", "compare needs at least two finished variants")
            return None
        if self.compare_job is not None and not self.compare_job.is_done():
            self.job_bar.set_text("a comparison is already running")
            return None
        formats = {v.format for v in self.variants.variants
                   if v.format and v.path and os.path.abspath(v.path) in
                   {os.path.abspath(p) for p in paths}}
        ok, why = self.backend.can_run(formats)
        if not ok:
            self.show_error("Cannot compare", why)
            return None
        if not self._ask_consent(paths, "compare", lambda: self.compare(paths)):
            return None
        try:
            config = self.backend.run_config(paths[0])
        except Exception as e:
            self.show_error("Cannot compare", str(e))
            return None
        config["trust_code"] = self._trusted(paths)
        spec = {"job": "compare", "models": paths, "config": config,
                "eval": self.passes.eval_data(), "backend_given": True,
                "backend": config["backend"], "device": config["device"],
                "iterations": config.get("iterations")}
        job = WorkerJob(spec, self)
        self.compare_job = job
        self.job_bar.bind(job, f"Comparing {len(paths)} models")
        job.sig_finished.connect(lambda outcome: self._on_compared(job, outcome))
        job.start()
        return job

    def _on_compared(self, job: WorkerJob, outcome) -> None:
        job.deleteLater()
        if job is self.compare_job:
            self.compare_job = None
        if outcome.status == "ok":
            self.last_comparison = outcome.result or {}
            self._last_result_kind = "comparison"
            self.variants.show_comparison(self.last_comparison)
            self.dock_variants.raise_()
        elif outcome.status == "failed":
            self.show_error("The comparison failed", outcome.error or "unknown error",
                            outcome.stderr_tail)

    # --- export ----------------------------------------------------------------------------
    _export_done = Signal(list, object)  # copied paths, error (from the copy thread)

    def export_report(self, path: str, kind: str | None = None) -> list[Path]:
        """Write the latest run ("run") or comparison ("comparison") by the file's suffix."""
        from app.gui.export import export_comparison, export_run

        kind = kind or self._last_result_kind
        if kind == "comparison" and self.last_comparison:
            return export_comparison(self.last_comparison, path)
        if self.last_report:
            return export_run(self.last_report, path)
        raise ValueError("nothing to export yet: run a profile or a comparison first")

    def export_report_dialog(self) -> None:
        from app.gui.export import REPORT_FILTERS
        from app.gui.file_dialogs import remember, start_path

        if not (self.last_report or self.last_comparison):
            self.show_error("Nothing to export", "run a profile or a comparison first")
            return
        what = "comparison" if self._last_result_kind == "comparison" else "run"
        stem = Path(self.model_path or "report").name.split(".")[0]
        path, _ = QFileDialog.getSaveFileName(self, f"Export the {what} report",
                                              start_path("report", f"{stem}-{what}.html"),
                                              REPORT_FILTERS)
        if not path:
            return
        remember("report", path)
        try:
            written = self.export_report(path)
        except Exception as e:
            self.show_error("Export failed", str(e))
            return
        self.job_bar.set_text("wrote " + ", ".join(map(str, written[:3]))
                              + (" …" if len(written) > 3 else ""))

    def export_graph_dialog(self) -> None:
        if self.current_graph is None:
            self.show_error("Nothing to export", "open a model first")
            return
        from app.gui.file_dialogs import remember, start_path

        stem = Path(self.model_path or "graph").name.split(".")[0]
        path, _ = QFileDialog.getSaveFileName(self, "Export graph image",
                                              start_path("graph", f"{stem}.png"),
                                              "PNG image (*.png);;SVG image (*.svg)")
        if path:
            remember("graph", path)
            try:
                self.graph_view.export_image(path)
                self.job_bar.set_text(f"wrote {path}")
            except Exception as e:
                self.show_error("Export failed", str(e))

    def export_variant_dialog(self, path: str) -> None:
        from app.gui.export import copy_files, model_files

        from app.gui.file_dialogs import remember, start_dir

        dest = QFileDialog.getExistingDirectory(self, "Export the variant to a folder",
                                                start_dir("variant"))
        if dest:
            remember("variant", dest)
            files = model_files(path)
            self.job_bar.set_text(f"copying {len(files)} file(s) to {dest}…")
            copy_files(files, dest, lambda copied, err: self._export_done.emit(copied, err))

    def _on_export_done(self, copied: list, error: object) -> None:
        if error:
            self.show_error("Export failed", str(error))
        else:
            self.job_bar.set_text(f"exported {len(copied)} file(s): {', '.join(copied)}")


def _shape(shape: list[Any] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
