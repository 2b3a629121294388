"""`anonynoise-stream --preview`: the raw input next to the anonymized output, on this screen.

For a local demo only. The pipeline hands each window's raw and anonymized events to a
LatestPair in this process (one slot: a slow screen never queues a backlog or slows the
stream); the Qt event loop in the main thread draws the newest pair in the viewer's
side-by-side window. Nothing here publishes or records: raw events stay in this process.
"""

from __future__ import annotations

import threading

# what `anonynoise-stream --preview` says to do where there is no display
NO_DISPLAY_INSTEAD = ("leave out --preview (`anonynoise-view` shows the anonymized stream, "
                      "offscreen with --screenshot)")


class LatestPair:
    """The newest (raw, anonymized) window; older ones are overwritten, never queued."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pair = None
        self.windows = 0

    def __call__(self, raw, anonymized) -> None:
        with self._lock:
            self._pair = (raw, anonymized)
            self.windows += 1

    def take(self):
        """The newest pair since the last take, or None."""
        with self._lock:
            pair, self._pair = self._pair, None
            return pair


def run_with_preview(pipeline, width: int, height: int, latest: LatestPair,
                     fps: float = 30.0, screenshot: str | None = None) -> dict:
    """Run the pipeline in a thread and the preview window here (the main thread, as Qt
    wants) until the stream ends or the window is closed; returns the pipeline's summary.
    With `screenshot`, the last drawn preview is saved there (tests, not documentation: it
    shows raw events)."""
    from pyqtgraph.Qt import QtCore

    from viewer.app import check_display
    from viewer.window import SideBySideView, qt_app

    check_display(instead=NO_DISPLAY_INSTEAD)
    app = qt_app()
    view = SideBySideView()
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["summary"] = pipeline.run()
        except BaseException as e:  # noqa: BLE001 - raised again in the main thread
            outcome["error"] = e

    worker = threading.Thread(target=work, name="pipeline", daemon=True)

    def tick() -> None:
        pair = latest.take()
        if pair is not None:
            view.show_windows(pair[0], pair[1], width, height)
        if not worker.is_alive():
            app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(tick)
    view.closed.connect(pipeline.stop)  # closing the window stops the stream cleanly
    view.show()
    worker.start()
    timer.start(int(1000 / fps))
    app.exec()
    timer.stop()
    pipeline.stop()
    worker.join()
    if screenshot:
        tick()
        view.save_screenshot(screenshot)
    view.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]
