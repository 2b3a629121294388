"""The Qt side: thin pyqtgraph widgets that put what `render.py` draws on screen.

One `QApplication` per process (`qt_app()`, through pyqtgraph's mkQApp). Each widget is a
status strip (a QLabel) above a GraphicsView whose only item is a ViewBox with one ImageItem:
no axes, no margins, fixed colours and levels, so a screenshot maps back to sensor pixels.
The strip sits above the picture, never on it, so the text hides no events.
"""

from __future__ import annotations

import logging
import os
import sys
import time

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets  # noqa: E402

from anonynoise.errors import AnonyNoiseError  # noqa: E402
from viewer.overlay import WAITING, is_stale, overlay_text  # noqa: E402
from viewer.render import DEFAULT_PALETTE, Palette, render_events, side_by_side  # noqa: E402

log = logging.getLogger(__name__)
MAX_FPS = 60.0
# Strip text: yellowish white on black. Its anti-aliased pixels have r == g != b, so they never
# equal a palette colour and a screenshot's picture can be found by its colours alone.
STRIP_STYLE = ("QLabel { background-color: black; color: rgb(255, 255, 160); "
               "font-family: monospace; padding: 2px 4px; }")
_handler_installed = False


def check_qt_binding() -> None:
    """Refuse PySide6 >= 6.12 on Python < 3.12: SignalInstance.emit() leaks a reference to
    True there and the process aborts after ~2,200 setImage calls (ecosystem notes, 0.1)."""
    import PySide6

    major, minor = (int(v) for v in PySide6.__version__.split(".")[:2])
    if sys.version_info < (3, 12) and (major, minor) >= (6, 12):
        raise AnonyNoiseError(f"PySide6 {PySide6.__version__} crashes the viewer on Python "
                              f"{sys.version_info.major}.{sys.version_info.minor} after a "
                              "few thousand frames: install 'PySide6-Essentials<6.12'")


def _qt_message(mode, context, message) -> None:
    # Qt's own chatter (the offscreen platform warns about size hints on every show) goes to
    # logging, so that errors stay one line on stderr.
    level = logging.ERROR if mode in (QtCore.QtMsgType.QtCriticalMsg,
                                      QtCore.QtMsgType.QtFatalMsg) else logging.INFO
    log.log(level, "Qt: %s", message)


def qt_app() -> QtWidgets.QApplication:
    """The process's QApplication, created on first use."""
    global _handler_installed
    check_qt_binding()
    if not _handler_installed:
        QtCore.qInstallMessageHandler(_qt_message)
        _handler_installed = True
    return pg.mkQApp("anonynoise-view")


def qimage_to_rgb(image: QtGui.QImage) -> np.ndarray:
    """(height, width, 3) uint8 copy of a QImage (or QPixmap)."""
    if isinstance(image, QtGui.QPixmap):
        image = image.toImage()
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w = image.height(), image.width()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(h, image.bytesPerLine())
    return rows[:, :w * 3].reshape(h, w, 3).copy()


class PictureView(QtWidgets.QWidget):
    """A status strip above one RGB picture, scaled to fit with its aspect ratio kept."""

    closed = QtCore.Signal()

    def __init__(self, title: str, size: tuple[int, int] = (800, 600), lines: int = 3):
        qt_app()  # a widget needs the application first
        super().__init__()
        self.setWindowTitle(title)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.strip = QtWidgets.QLabel()
        self.strip.setStyleSheet(STRIP_STYLE)
        # Ignored: a long status line must not widen the window (and rescale the picture).
        self.strip.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                 QtWidgets.QSizePolicy.Policy.Fixed)
        # A fixed height: the picture keeps its scale whatever the text says.
        metrics = self.strip.fontMetrics()
        self.strip.setFixedHeight(metrics.lineSpacing() * lines + 2 * 2 + 2)
        layout.addWidget(self.strip)
        self.view = pg.GraphicsView(background="k")
        self.box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setCentralItem(self.box)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.image)
        layout.addWidget(self.view, 1)
        self.picture_size: tuple[int, int] | None = None  # (width, height) shown
        self._text = None
        self.resize(*size)

    def set_status(self, text: str) -> None:
        if text != self._text:  # unchanged while waiting: skip the repaint
            self._text = text
            self.strip.setText(text)

    def status_text(self) -> str:
        return self.strip.text()

    def set_picture(self, rgb: np.ndarray) -> None:
        """Show a (height, width, 3) uint8 picture; a new size refits the view."""
        size = (rgb.shape[1], rgb.shape[0])
        if size != self.picture_size:
            self.picture_size = size
            self.box.setRange(QtCore.QRectF(0, 0, *size), padding=0)
            self._resized(size)
        self.image.setImage(rgb, autoLevels=False, levels=(0, 255))

    def _resized(self, size: tuple[int, int]) -> None:
        """Hook for subclasses: the picture changed size."""

    def picture_to_widget(self, col: float, row: float) -> tuple[float, float]:
        """Where the centre of picture pixel (col, row) lands in this widget (and in its
        grab()), in widget pixels."""
        scene = self.image.mapToScene(QtCore.QPointF(col + 0.5, row + 0.5))
        point = self.view.viewportTransform().map(scene)
        origin = self.view.viewport().mapTo(self, QtCore.QPoint(0, 0))
        return point.x() + origin.x(), point.y() + origin.y()

    def grab_rgb(self) -> np.ndarray:
        """Render the widget now and return it as (height, width, 3) uint8."""
        return qimage_to_rgb(self.grab())

    def save_screenshot(self, path: str) -> None:
        if not self.grab().save(str(path)):
            raise AnonyNoiseError(f"{path}: cannot write the screenshot")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.closed.emit()
        super().closeEvent(event)


class ViewerWindow(PictureView):
    """The live view: a QTimer (at most 60 Hz) pulls the newest window from `source` (anything
    with `snapshot(now) -> ReceiverState`, normally a LatestWindowReceiver) and draws it."""

    def __init__(self, source, address: str, *, fps: float = MAX_FPS, stale_s: float = 2.0,
                 palette: Palette = DEFAULT_PALETTE, size: tuple[int, int] = (800, 600)):
        super().__init__(f"AnonyNoise viewer: {address}", size)
        self.source, self.address = source, address
        self.stale_s, self.palette = stale_s, palette
        self.waiting = pg.TextItem(WAITING, color=(255, 255, 160), anchor=(0.5, 0.5))
        self.box.addItem(self.waiting)
        self.box.setRange(QtCore.QRectF(0, 0, 1, 1), padding=0)
        self.waiting.setPos(0.5, 0.5)
        self.frames_drawn = 0  # windows put on screen (each at most once)
        self.state = None  # the last ReceiverState seen
        self.session: str | None = None  # of the window on screen
        self._version = 0
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setInterval(max(1, round(1000 / min(max(fps, 0.1), MAX_FPS))))
        self.timer.timeout.connect(self._tick)
        self.after_tick = None  # called with the window after each timer tick (run_viewer)
        self.failure: BaseException | None = None
        # the overlay from the start, but no picture: windows are drawn by ticks only, where
        # run_viewer's stop rule sees each (a frame drawn here made a one-frame run draw two)
        now = time.monotonic()
        self._show_state(source.snapshot(now), now)

    def _tick(self) -> None:
        try:
            self.refresh()
            if self.after_tick is not None:
                self.after_tick(self)
        except Exception as e:  # noqa: BLE001 - Qt would print it and tick on forever
            self.failure = e
            self.stop()
            self.closed.emit()

    def refresh(self, now: float | None = None) -> bool:
        """One tick: draw the newest window if there is a new one, update the strip.
        True when a window was drawn."""
        now = time.monotonic() if now is None else now
        state = self.source.snapshot(now)
        failure = getattr(state, "failure", None)
        if failure is not None:  # a bug in the receiving thread: stop, do not freeze
            raise RuntimeError(f"the viewer's receiver stopped: {type(failure).__name__}: "
                               f"{failure}") from failure
        drew = False
        if state.window is not None and state.version != self._version:
            # the header was checked by stream.protocol when it arrived, its sensor size
            # included, and render_events checks the size again before allocating the picture
            header = state.window.header
            self.set_picture(render_events(state.window.events, header.width, header.height,
                                           self.palette))
            self._version, self.session = state.version, header.session
            self.frames_drawn += 1
            drew = True
        self._show_state(state, now)
        return drew

    def _show_state(self, state, now: float) -> None:
        """The overlay and the waiting sign for a receiver state."""
        self.state = state
        stale = is_stale(state, now, self.stale_s)
        if self.waiting.isVisible() != stale:
            self.waiting.setVisible(stale)
        self.set_status(overlay_text(state, now, self.address, self.stale_s))

    def _resized(self, size: tuple[int, int]) -> None:
        self.waiting.setPos(size[0] / 2, size[1] / 2)

    def sensor_to_widget(self, x: float, y: float) -> tuple[float, float]:
        """Where the centre of sensor pixel (x, y) lands in this widget and its grab()."""
        return self.picture_to_widget(x, y)

    def start(self) -> None:
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


class SideBySideView(PictureView):
    """A local preview of raw events next to their anonymized version, for the operator's own
    screen (the stream can open one beside the pipeline). Raw events only ever reach this
    widget: nothing here publishes or records. Needs a running Qt event loop to repaint."""

    GAP = 4  # black columns between the two pictures

    def __init__(self, title: str = "AnonyNoise preview: raw (left) | anonymized (right)",
                 palette: Palette = DEFAULT_PALETTE, size: tuple[int, int] = (1200, 500)):
        super().__init__(title, size, lines=1)
        self.palette = palette
        self.sensor: tuple[int, int] | None = None
        self.set_status("left: raw events (local preview only, never published)  |  "
                        "right: anonymized events (what the stream publishes)")

    def show_windows(self, raw, anonymized, width: int, height: int) -> None:
        """Draw one window of raw and anonymized events (structured arrays with x, y, p, or
        EventBatches) of a width x height sensor."""
        self.sensor = (width, height)
        self.set_picture(side_by_side(render_events(raw, width, height, self.palette),
                                      render_events(anonymized, width, height, self.palette),
                                      self.GAP))

    def sensor_to_widget(self, x: float, y: float, side: str) -> tuple[float, float]:
        """Widget position of sensor pixel (x, y) in the 'raw' or the 'anonymized' picture."""
        if side not in ("raw", "anonymized"):
            raise ValueError(f"side is 'raw' or 'anonymized', not {side!r}")
        offset = 0 if side == "raw" else self.sensor[0] + self.GAP
        return self.picture_to_widget(x + offset, y)


def preview_side_by_side(raw, anonymized, width: int, height: int, *,
                         view: SideBySideView | None = None,
                         show: bool = True) -> SideBySideView:
    """Show raw next to anonymized events in one window and return it; pass the returned
    view back as `view=` for the next window. The caller runs the Qt event loop."""
    qt_app()
    view = view or SideBySideView()
    view.show_windows(raw, anonymized, width, height)
    if show and not view.isVisible():
        view.show()
    return view
