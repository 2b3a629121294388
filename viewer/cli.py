"""`anonynoise-view`: show the anonymized stream live.

    anonynoise-view                                   the stream's default, tcp://127.0.0.1:5555
    anonynoise-view tcp://10.0.0.5:5555 --curve-keys keys/ --client-name alice
    anonynoise-view --screenshot shot.png --frames 10 --timeout 20   offscreen, for docs/tests

Thin: parse, run the viewer (viewer.app), report. Errors are one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from anonynoise.cli_support import bounded, parse_sensor, run
from viewer.receiver import DEFAULT_ADDRESS

PROG = "anonynoise-view"
SCREENSHOT_TIMEOUT_S = 30.0  # with --screenshot and no --timeout


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("address", nargs="?", default=DEFAULT_ADDRESS, metavar="ADDR",
                    help=f"the stream's live endpoint (default {DEFAULT_ADDRESS})")
    ap.add_argument("--curve-keys", metavar="DIR", default=None,
                    help="CURVE keys (from `anonynoise-stream keys DIR`) of an encrypted stream")
    ap.add_argument("--client-name", default=None,
                    help="which client key in --curve-keys to use")
    ap.add_argument("--fps", type=bounded(float, 1, 60, "--fps"), default=60.0,
                    help="redraws per second (default and maximum 60)")
    ap.add_argument("--screenshot", metavar="OUT.png", default=None,
                    help="render offscreen, save the window after --frames frames and exit")
    ap.add_argument("--frames", type=bounded(int, 1, 10**9, "--frames"), default=None,
                    help="exit after drawing this many windows (default 1 with --screenshot)")
    ap.add_argument("--timeout", type=bounded(float, 0.1, 10**6, "--timeout"), default=None,
                    metavar="S", help="give up (exit 2) when no window arrives for S seconds "
                    f"(default: never; {SCREENSHOT_TIMEOUT_S:g} with --screenshot)")
    ap.add_argument("--stale", type=bounded(float, 0.1, 3600, "--stale"), default=2.0,
                    metavar="S", help='show "waiting for stream" after S seconds of silence '
                                      "(default 2)")
    ap.add_argument("--size", type=parse_sensor, default=(800, 600), metavar="WxH",
                    help="window size in pixels (default 800x600)")
    return ap


def screenshot_timeout(args) -> float | None:
    """A screenshot run (offscreen, unattended) must end even when no stream is there."""
    if args.timeout is None and args.screenshot:
        return SCREENSHOT_TIMEOUT_S
    return args.timeout


def _main(argv=None) -> int:
    from viewer import require_viewer_extra

    require_viewer_extra(PROG)  # first: even --help says what is missing, in one line
    args = build_parser().parse_args(argv)
    from viewer.app import ViewerConfig, run_viewer

    result = run_viewer(ViewerConfig(
        address=args.address, curve_keys=args.curve_keys, client_name=args.client_name,
        fps=args.fps, stale_s=args.stale, screenshot=args.screenshot, frames=args.frames,
        timeout_s=screenshot_timeout(args), size=args.size))
    if args.screenshot:
        print(f"wrote {args.screenshot} after {result.frames} frames ({result.windows} windows "
              f"received, {result.lost} lost)")
    return 0


def main(argv=None) -> int:
    return run(_main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
