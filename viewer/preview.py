"""`anonynoise-preview`: the raw input next to the anonymized output, on this screen.

    anonynoise-preview                                the stream's default, with the window
    anonynoise-preview --replay face.aedat4 --loop    any anonynoise-stream option

For a local demo only. It runs the same stream as `anonynoise-stream` with the same options
(stream.cli), and the pipeline hands each window's raw and anonymized events to a LatestPair
in this process (one slot: a slow screen never queues a backlog or slows the stream); the Qt
event loop in the main thread draws the newest pair in the viewer's side-by-side window. What
goes out (--publish, --record, ...) is the anonymized stream alone: raw events stay in this
process, in this window.
"""

from __future__ import annotations

import argparse
import sys
import threading

PROG = "anonynoise-preview"
# what anonynoise-preview says to do where there is no display
NO_DISPLAY_INSTEAD = ("run anonynoise-stream and watch it with anonynoise-view (offscreen with "
                      "--screenshot)")


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
    With `screenshot`, the last drawn preview is saved there (tests and the documentation's
    picture: it shows raw events, so it is for recordings that may be shown)."""
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


def build_parser() -> argparse.ArgumentParser:
    """anonynoise-stream's own options (the same stream), and the hidden screenshot."""
    from stream.cli import build_parser as stream_parser

    ap = stream_parser(prog=PROG)
    ap.description = __doc__.splitlines()[0]
    ap.add_argument("--screenshot", metavar="OUT.png", default=None,
                    help=argparse.SUPPRESS)  # tests and docs: save the last preview picture
    return ap


def _main(argv=None) -> int:
    from stream.cli import start_stream
    from viewer import require_viewer_extra

    require_viewer_extra(PROG)  # first: even --help says what is missing, in one line
    from viewer.app import check_display, check_screenshot_path

    args = build_parser().parse_args(argv)
    check_display(instead=NO_DISPLAY_INSTEAD)  # before opening anything: no display, no stream
    if args.screenshot:
        check_screenshot_path(args.screenshot)
    latest = LatestPair()

    def run(pipeline, width: int, height: int) -> dict:
        return run_with_preview(pipeline, width, height, latest, screenshot=args.screenshot)

    return start_stream(args, run=run, observe=latest)


def main(argv=None) -> int:
    from stream.cli import serve

    return serve(_main, argv, prog=PROG)  # the stream's signal handling and one-line errors


if __name__ == "__main__":
    sys.exit(main())
