"""The full fuzz run: N deterministic cases per format, each through info, anonymize and a
--fast replay, with counts per format and command.

    python -m tests.fuzz --cases 200               the full run (from the repository root)
    python -m tests.fuzz --cases 30 --jobs 2       a medium run
    python -m tests.fuzz --case dat:7 --out DIR    one case again, its file kept in DIR

Exit status 0 when every case met the predicate (exit 0 or 2, in time, at most one line on
stderr and exactly one for exit 2, no traceback), 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import collections
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import cases as C
from . import runner as R


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz",
                                 description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--cases", type=int, default=200, help="cases per format (default 200)")
    ap.add_argument("--start", type=int, default=0, help="index of the first case (default 0)")
    ap.add_argument("--formats", default=",".join(C.FORMATS),
                    help=f"comma-separated (default {','.join(C.FORMATS)})")
    ap.add_argument("--commands", default=",".join(C.COMMANDS),
                    help=f"comma-separated (default {','.join(C.COMMANDS)})")
    ap.add_argument("--case", action="append", default=[], metavar="FORMAT:INDEX",
                    help="run only this case (repeatable); with --out its file is kept")
    ap.add_argument("--named", action="append", default=[], metavar="NAME",
                    help="run only this case of the fast subset (repeatable), e.g. dat-wrap32")
    ap.add_argument("--seed", type=int, default=C.SEED, help=f"(default {C.SEED})")
    ap.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1)")
    ap.add_argument("--runner", choices=("forkserver", "subprocess"),
                    default=os.environ.get("FUZZ_RUNNER", "forkserver"),
                    help="forkserver (default: fast) or subprocess (a fresh interpreter each)")
    ap.add_argument("--timeout-info", type=float, default=C.TIMEOUTS["info"],
                    help=f"seconds (default {C.TIMEOUTS['info']:g})")
    ap.add_argument("--timeout", type=float, default=C.TIMEOUTS["anonymize"],
                    help=f"seconds for anonymize and replay (default "
                         f"{C.TIMEOUTS['anonymize']:g})")
    ap.add_argument("--as-limit-gb", type=float, default=R.AS_LIMIT / (1 << 30),
                    help=f"address-space limit (default {R.AS_LIMIT / (1 << 30):g})")
    ap.add_argument("--max-timeouts", type=int, default=10,
                    help="after this many timeouts of a format and command, its remaining "
                         "cases are not run and count as failed (default 10; 0: no limit)")
    ap.add_argument("--out", type=Path, default=None,
                    help="keep the case files here (default: a temporary folder, removed)")
    ap.add_argument("-v", "--verbose", action="store_true", help="a line for every case")
    args = ap.parse_args(argv)
    args.formats = [f for f in args.formats.split(",") if f]
    args.commands = [c for c in args.commands.split(",") if c]
    for f in args.formats:
        if f not in C.FORMATS:
            ap.error(f"unknown format {f!r} (known: {', '.join(C.FORMATS)})")
    for c in args.commands:
        if c not in C.COMMANDS:
            ap.error(f"unknown command {c!r} (known: {', '.join(C.COMMANDS)})")
    picked = []
    for text in args.case:
        fmt, _, index = text.partition(":")
        if fmt not in C.FORMATS or not index.isdigit():
            ap.error(f"--case {text!r}: expected FORMAT:INDEX such as dat:7")
        picked.append((fmt, int(index)))
    names = {f"{spec.fmt}-{spec.name}": spec for spec in C.FAST}
    for text in args.named:
        if text not in names:
            ap.error(f"--named {text!r}: no such case (known: {', '.join(names)})")
        picked.append((names[text].fmt, names[text]))
    args.picked = picked
    if args.cases < 0 or args.jobs < 1:
        ap.error("--cases must be at least 0 and --jobs at least 1")
    return args


class Tally:
    """Counts per (format, command): ok-0, ok-2, each failure kind; the first example of each
    failure; timeouts for the cut-off."""

    def __init__(self):
        self.counts = collections.defaultdict(collections.Counter)
        self.examples: dict[tuple[str, str, str], C.Outcome] = {}
        self.lock = threading.Lock()

    def add(self, o: C.Outcome) -> None:
        key = (o.fmt, o.command)
        with self.lock:
            if o.failure is None:
                self.counts[key][f"ok-exit-{o.result.rc}"] += 1
            else:
                self.counts[key][o.failure] += 1
                self.examples.setdefault((o.fmt, o.command, o.failure), o)

    def skip(self, fmt: str, command: str) -> None:
        with self.lock:
            self.counts[(fmt, command)]["not-run"] += 1

    def timeouts(self, fmt: str, command: str) -> int:
        with self.lock:
            return self.counts[(fmt, command)]["timeout"]

    def failed(self) -> int:
        return sum(n for c in self.counts.values() for k, n in c.items()
                   if not k.startswith("ok-"))


def report(tally: Tally, out=sys.stdout) -> None:
    kinds = sorted({k for c in tally.counts.values() for k in c if not k.startswith("ok-")})
    cols = ["cases", "ok-exit-0", "ok-exit-2", *kinds]
    print("\n" + f"{'format':<8} {'command':<10} " + " ".join(f"{c:>{max(len(c), 5)}}"
                                                             for c in cols), file=out)
    totals = collections.Counter()
    for (fmt, command), c in sorted(tally.counts.items(),
                                    key=lambda kv: (C.FORMATS.index(kv[0][0]),
                                                    C.COMMANDS.index(kv[0][1]))):
        c = collections.Counter(c)
        c["cases"] = sum(c.values())
        totals.update(c)
        print(f"{fmt:<8} {command:<10} " + " ".join(f"{c[k]:>{max(len(k), 5)}}" for k in cols),
              file=out)
    print(f"{'total':<8} {'':<10} " + " ".join(f"{totals[k]:>{max(len(k), 5)}}" for k in cols),
          file=out)
    if tally.examples:
        print("\nfirst example of each failure (format, command, kind):", file=out)
    for (fmt, command, kind), o in sorted(tally.examples.items(),
                                          key=lambda kv: (C.FORMATS.index(kv[0][0]),
                                                          C.COMMANDS.index(kv[0][1]), kv[0][2])):
        index = o.case.split("-")[1]
        again = f"--case {fmt}:{int(index)}" if index.isdigit() else f"--named {o.case}"
        print(f"\n[{fmt} {command} {kind}] case {o.case} (again: python -m tests.fuzz "
              f"{again} --commands {command} --out DIR)", file=out)
        print("  " + R.describe(o.result, limit=600).replace("\n", "\n  "), file=out)
        print(f"  $ {o.shell}", file=out)


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = args.out or Path(tempfile.mkdtemp(prefix="anonynoise-fuzz-"))
    folder.mkdir(parents=True, exist_ok=True)
    keep = args.out is not None
    timeouts = {"info": args.timeout_info, "anonymize": args.timeout, "replay": args.timeout}
    as_limit = int(args.as_limit_gb * (1 << 30)) or None
    todo = args.picked or [(f, i) for f in args.formats
                           for i in range(args.start, args.start + args.cases)]
    tally = Tally()
    missing: dict[str, str] = {}
    tasks: queue.Queue = queue.Queue()
    for item in todo:
        tasks.put(item)
    print_lock = threading.Lock()
    t0 = time.monotonic()
    done = collections.Counter()

    def say(text: str) -> None:
        with print_lock:
            print(text, flush=True)

    def work(run) -> None:
        while True:
            try:
                fmt, index = tasks.get_nowait()
            except queue.Empty:
                return
            if fmt in missing:
                continue
            try:
                if isinstance(index, C.Named):
                    case, variant = C.named_case(index), index.variant
                else:
                    case, variant = C.random_case(fmt, index, args.seed), index
            except C.MissingData as e:
                missing[fmt] = str(e)
                continue
            for name in args.commands:
                if name not in case.commands:
                    continue
                if args.max_timeouts and tally.timeouts(fmt, name) >= args.max_timeouts:
                    tally.skip(fmt, name)
                    continue
                o = C.run_case(run, case, name, folder, timeout=timeouts[name],
                               as_limit=as_limit, variant=variant)
                tally.add(o)
                if args.verbose or o.failure:
                    first = (R.stderr_lines(o.result.stderr) or [""])[0][:150]
                    say(f"{o.case:<48} {name:<9} {o.failure or 'ok':<12} exit "
                        f"{o.result.rc:>3} {o.result.elapsed:6.1f} s  {first}")
            if not keep:
                (folder / f"{case.id}{case.suffix}").unlink(missing_ok=True)
            with print_lock:
                done[fmt] += 1
                if not args.verbose and done[fmt] % 25 == 0:
                    print(f"... {fmt}: {done[fmt]} cases, {time.monotonic() - t0:.0f} s",
                          flush=True)

    runners = []
    try:
        for _ in range(args.jobs):
            runners.append(R.make_runner(args.runner))
        threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        print("interrupted: counts so far", file=sys.stderr)
    finally:
        for r in runners:
            r.close()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    for fmt, why in missing.items():
        print(f"{fmt}: skipped: {why}")
    report(tally)
    elapsed = time.monotonic() - t0
    print(f"\n{sum(sum(c.values()) for c in tally.counts.values())} runs in {elapsed:.0f} s "
          f"({args.runner}, {args.jobs} job{'s' if args.jobs > 1 else ''}, seed {args.seed}); "
          f"{tally.failed()} failed" + (f"; case files in {folder}" if keep else ""))
    return 1 if tally.failed() or (missing and not tally.counts) else 0


if __name__ == "__main__":
    sys.exit(main())
