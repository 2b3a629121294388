"""Cut each camera's events.txt of Event-ReId v2 into chunks of 33.3 time units.

    python -m train.reid_utils.event_partition --input_dir ./Event_ReId_v2/ [--out_dir ./output/]

Input: INPUT_DIR/<ID>/<camera folder>/events.txt (first line "width height", then "t x y p"
lines); the camera number is the digit in the folder name. Output, as the reference:
OUT_DIR/Event_ReId_v2/<ID>/<camera folder>/<ID>_c<camera>_<NNN>.txt, chunk NNN (from 001)
holding the events with t0 + (NNN-1)*33.3 < t <= t0 + NNN*33.3 (the first also t = t0); the
bounds are sums of 33.3, as in the reference, so an event exactly on a bound may fall either
side by float rounding.

Two differences from the reference script, both deliberate: it drops the first event of every
chunk after the first (the event that closes the previous chunk is never written), we keep it;
and across a silence longer than one chunk it numbers chunks per event, we number them by time
and write no empty files. Chunk numbers agree wherever events never pause for 33.3 units, so
the reference's query list names the same chunks.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
from pathlib import Path

from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError

log = logging.getLogger(__name__)
INTEGRATION = 33.3


def camera_number(folder: Path) -> int:
    digits = re.findall(r"\d+", folder.name)
    if not digits:
        raise AnonyNoiseError(f"{folder}: no camera number in the folder name")
    return int(digits[-1])


def partition(events_txt: Path, out: Path, ident: str, camera: int,
              integration: float = INTEGRATION) -> int:
    """Write the chunks of one events.txt into folder `out`; returns how many were written."""
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    written, number, end, chunk = 0, 0, None, None
    try:
        with open(events_txt) as f:
            for n, line in enumerate(f, 1):
                words = line.split()
                if len(words) == 2 and n == 1 or not words:  # "width height" header
                    continue
                if len(words) < 4:
                    raise AnonyNoiseError(f"{events_txt}:{n}: expected 't x y p', got "
                                          f"{line.strip()[:60]!r}")
                try:
                    t = float(words[0])
                except ValueError:
                    raise AnonyNoiseError(f"{events_txt}:{n}: bad timestamp {words[0]!r}") \
                        from None
                if end is None:
                    end, number = t + integration, 1
                if t > end:
                    while t > end:
                        end += integration
                        number += 1
                    chunk.close()
                    chunk = None
                if chunk is None:
                    chunk = open(tmp / f"{ident}_c{camera}_{number:03d}.txt", "w")
                    written += 1
                chunk.write(" ".join(words[:4]) + "\n")
        if chunk is not None:
            chunk.close()
    except BaseException:
        if chunk is not None:
            chunk.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Cut Event-ReId v2 recordings into 33.3-unit chunks")
    ap.add_argument("--input_dir", default="./Event_ReId_v2/", help="event stream directory")
    ap.add_argument("--out_dir", default="./output/", help="where Event_ReId_v2/ is written")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(args.input_dir)
    if not root.is_dir():
        raise AnonyNoiseError(f"{root}: no such folder (expected Event-ReId v2: "
                              "<ID>/<camera folder>/events.txt)")
    ids = sorted(d for d in root.iterdir() if d.is_dir() and d.name.isdigit())
    if not ids:
        raise AnonyNoiseError(f"{root}: no identity folders (001, 002, ...)")
    if len(ids) != 33:
        log.warning("%s: %d identity folders (Event-ReId v2 has 33)", root, len(ids))
    total = 0
    for ident in ids:
        cameras = sorted(d for d in ident.iterdir() if d.is_dir() and (d / "events.txt").is_file())
        if not cameras:
            raise AnonyNoiseError(f"{ident}: no camera folders with events.txt")
        for cam in cameras:
            out = Path(args.out_dir) / "Event_ReId_v2" / ident.name / cam.name
            n = partition(cam / "events.txt", out, ident.name, camera_number(cam))
            log.info("%s/%s: %d chunks", ident.name, cam.name, n)
            total += n
    print(f"wrote {total} chunks to {Path(args.out_dir) / 'Event_ReId_v2'}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, prog="event_partition"))
