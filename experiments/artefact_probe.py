"""Grid and polarity artefacts of anonymizers on the real sample recordings (a probe, a minute).

    python -m experiments.artefact_probe                       # the shipped net, the filters alone
    python -m experiments.artefact_probe --model runs/pool/seed1/anonymizer.pt --seconds 1

For each recording (its first --seconds), the input's statistics and each anonymizer's output
(anonynoise.artefacts: even-row / even-column shares, ON share, period-2 waves), and what
counts as an artefact. The table goes to stdout as markdown.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anonynoise.artefacts import artefacts, grid_statistics
from anonynoise.cli_support import run
from anonynoise.io import read_events
from anonynoise.loading import load

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
RECORDINGS = ("face_dvxplorer.aedat4", "robotarm_davis346.aedat4", "spinner_gen3_evt2.raw",
              "road_gen41_evt3.raw", "sky_imx636.dat", "sky_imx636_evt3.raw")
FILTERS_ALONE = "filters alone (warp+refractory+jitter)"


def anonymizers(models: list[str]) -> dict:
    """name -> anonymizer: the shipped net, the given ones, the filters alone (the default)."""
    out = {"shipped": load("net", device="cpu")}
    for model in models:
        out[Path(model).stem if Path(model).stem != "anonymizer" else str(model)] = \
            load(model, "cpu")
    out[FILTERS_ALONE] = load("none", "cpu", "warp+refractory+jitter")
    return out


def row(name: str, stats, found: list[str] | None) -> str:
    s = stats
    verdict = "" if found is None else ("none" if not found else "; ".join(found))
    return (f"| {name} | {s.events:,} | {s.even_rows:.2f} | {s.even_cols:.2f} | "
            f"{s.on_share:.2f} | {s.row_wave:.2f} / {s.col_wave:.2f} / {s.checker_wave:.2f} | "
            f"{verdict} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="another checkpoint (again "
                                                                 "for more)")
    ap.add_argument("--real", default=str(REAL), help="the real recordings' folder")
    ap.add_argument("--seconds", type=float, default=1.0, help="of each recording (default 1)")
    args = ap.parse_args(argv)
    nets = anonymizers(args.model)
    print("| recording / anonymizer | events | even rows | even cols | ON share | "
          "waves row / col / checker | artefacts |")
    print("|---|---|---|---|---|---|---|")
    for name in RECORDINGS:
        path = Path(args.real) / name
        if not path.is_file():
            continue
        events = read_events(path)
        events = events.slice_time(int(events.t[0]), int(events.t[0]) + int(args.seconds * 1e6))
        print(row(f"**{name}** {events.width}x{events.height}, input", grid_statistics(events),
                  None))
        for label, anonymizer in nets.items():
            out = anonymizer(events)
            print(row(label, grid_statistics(out), artefacts(events, out)))
    return 0


if __name__ == "__main__":
    sys.exit(run(main, prog="artefact_probe"))
