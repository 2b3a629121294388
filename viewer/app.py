"""Run the live viewer: a receiver, a window and a Qt event loop, until the window closes,
N frames were drawn (screenshots) or the stream stays silent past the timeout."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from anonynoise.errors import AnonyNoiseError
from viewer.receiver import DEFAULT_ADDRESS, LatestWindowReceiver


@dataclass
class ViewerConfig:
    address: str = DEFAULT_ADDRESS
    curve_keys: str | None = None  # folder from `anonynoise-stream keys DIR`
    client_name: str | None = None  # whose key in that folder (StreamClient's default if None)
    fps: float = 60.0  # redraws per second, at most 60
    stale_s: float = 2.0  # "waiting for stream" after this long without a window
    screenshot: str | None = None  # render offscreen, save this PNG after `frames` frames
    frames: int | None = None  # stop after this many drawn windows (1 with a screenshot)
    timeout_s: float | None = None  # give up when no window arrives for this long
    size: tuple[int, int] = (800, 600)  # window size in pixels


@dataclass(frozen=True)
class ViewerResult:
    frames: int  # windows drawn
    windows: int  # windows received
    lost: int  # windows missing from seq
    sessions: int
    screenshot: str | None


def check_screenshot_path(path: str) -> None:
    """Fail before connecting, not after the frames: a missing folder or unknown format."""
    from pyqtgraph.Qt import QtGui

    target = Path(path)
    if not target.parent.is_dir():
        raise AnonyNoiseError(f"{path}: no such folder for the screenshot")
    formats = {bytes(f).decode().lower() for f in QtGui.QImageWriter.supportedImageFormats()}
    if target.suffix.lower().lstrip(".") not in formats:
        raise AnonyNoiseError(f"{path}: unknown image format (use .png)")


def check_display(instead: str = "use --screenshot OUT.png to render offscreen") -> None:
    """Qt aborts the process when it has no platform to draw on: say so in one line first,
    with what the calling command can do instead."""
    from pyqtgraph.Qt import QtWidgets

    if QtWidgets.QApplication.instance() is not None or os.environ.get("QT_QPA_PLATFORM"):
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise AnonyNoiseError("no display (DISPLAY and WAYLAND_DISPLAY are unset): run it on "
                              f"a desktop, or {instead}")


def run_viewer(config: ViewerConfig) -> ViewerResult:
    """Show the stream at config.address until the window is closed (or Ctrl-C), or until
    config.frames windows were drawn; raises AnonyNoiseError on a timeout."""
    from viewer.window import ViewerWindow, qt_app  # first: it picks the Qt binding

    from pyqtgraph.Qt import QtCore, QtWidgets

    if config.screenshot:
        if QtWidgets.QApplication.instance() is None:  # the platform is fixed at creation
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        check_screenshot_path(config.screenshot)
    # The subscription first: a bad address or key folder is reported before Qt starts.
    receiver = LatestWindowReceiver(config.address, curve_keys=config.curve_keys,
                                    client_name=config.client_name)
    try:
        check_display()
        qt_app()
    except BaseException:
        receiver.stop()
        raise
    receiver.start()
    loop = QtCore.QEventLoop()
    window = None
    previous = None
    try:
        window = ViewerWindow(receiver, config.address, fps=config.fps,
                              stale_s=config.stale_s, size=config.size)
        window.closed.connect(loop.quit)
        window.after_tick = _stop_rule(config, loop)
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C ends the viewer normally. Python runs the handler between two ticks;
            # raising KeyboardInterrupt inside a Qt slot would only print it.
            previous = signal.signal(signal.SIGINT, lambda *_: loop.quit())
        window.show()
        window.start()
        loop.exec()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if window is not None:
            window.after_tick = None
            window.stop()
            window.close()
        receiver.stop()
    if window.failure is not None:
        raise window.failure
    state = window.state
    return ViewerResult(window.frames_drawn, state.windows, state.lost, state.sessions,
                        config.screenshot)


def _stop_rule(config: ViewerConfig, loop):
    """What the window checks after each tick: enough frames (save the screenshot, stop) or
    silence past the timeout (raise: the window stops and run_viewer re-raises)."""
    frames = config.frames or (1 if config.screenshot else None)

    def after_tick(w) -> None:
        if frames is not None and w.frames_drawn >= frames:
            if config.screenshot:
                w.save_screenshot(config.screenshot)
            w.stop()
            loop.quit()
        elif config.timeout_s is not None:
            state = w.state
            last = state.started_at if state.received_at is None else state.received_at
            if time.monotonic() - last > config.timeout_s:
                what = "no window" if state.window is None else "no new window"
                if state.bad_messages:  # something is publishing there, but not valid windows
                    raise AnonyNoiseError(
                        f"{what} from {config.address} in {config.timeout_s:g} s, but "
                        f"{state.bad_messages} malformed messages refused (last: "
                        f"{state.last_error})")
                raise AnonyNoiseError(f"{what} from {config.address} in {config.timeout_s:g} s "
                                      "(is anonynoise-stream publishing there?)")

    return after_tick
