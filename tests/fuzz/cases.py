"""Fuzz cases: small valid base files cut from the real recordings, deterministic mutations of
them, and the commands each case goes through.

A format has one or more bases (`bases(fmt)`); case `i` of format `f` uses base
i % len(bases) and a numpy Generator seeded with (seed, crc32(f), i), so a case is the same on
every machine and run: `python -m tests.fuzz --case dat:7 --out DIR` makes it again. The
NumPy bases are written by anonynoise.io (save_npy, save_npz) from events it read, so they
follow the product's own layout.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import mutators as m

REPO = Path(__file__).resolve().parents[2]
# as tests/conftest.py: the real recordings live beside the checkout, never in it
REAL_DATA = Path(os.environ.get("ANONYNOISE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
FORMATS = ("aedat4", "evt2", "evt3", "dat", "npy", "npz")
COMMANDS = ("info", "anonymize", "replay")
TIMEOUTS = {"info": 20.0, "anonymize": 60.0, "replay": 60.0}  # seconds, on a slow machine
SEED = 20250207
CUT_BYTES = 256 << 10  # Prophesee bases: the first this many bytes of data, whole words


@dataclass(frozen=True)
class Base:
    """A valid file the mutations start from."""

    fmt: str
    name: str  # e.g. "face" (what it was cut from)
    suffix: str
    data: bytes
    header: int  # bytes of header before the first event word
    align: int  # bytes of an event word / record (1: none)


@dataclass
class Case:
    id: str  # e.g. "dat-0007-sky-dat_time.wrap" (random) or "dat-width32768" (named)
    fmt: str
    base: str
    kind: str
    data: bytes
    suffix: str
    commands: tuple[str, ...] = COMMANDS

    def write(self, folder: Path) -> Path:
        path = Path(folder) / f"{self.id}{self.suffix}"
        path.write_bytes(self.data)
        return path


class MissingData(Exception):
    """A real recording the bases need is not there."""


def _real(name: str) -> Path:
    path = REAL_DATA / name
    if not path.is_file():
        raise MissingData(f"real recording {name} not available in {REAL_DATA}")
    return path


def _cut_prophesee(name: str, fmt: str, word: int, keep: int = CUT_BYTES) -> Base:
    data = _real(name).read_bytes()
    header = m.prophesee_header_length(data)
    start = header + (2 if fmt == "dat" else 0)  # DAT: event type and size bytes
    body = (min(keep, len(data) - start) // word) * word
    return Base(fmt, name.split("_")[0], Path(name).suffix, data[:start + body], start, word)


def _events(name: str, limit: int, data: bytes | None = None):
    """The first `limit` events of a real recording (or of `data`, a base cut from it), as
    anonynoise.io.read_events reads them."""
    import tempfile

    from anonynoise.io import read_events

    if data is None:
        return read_events(_real(name))[:limit]
    with tempfile.TemporaryDirectory(prefix="fuzz-base-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return read_events(path)[:limit]


def _saved(save, events, suffix: str) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fuzz-base-") as tmp:
        path = Path(tmp) / f"base{suffix}"
        save(path, events)
        return path.read_bytes()


def _make_bases(fmt: str) -> list[Base]:
    if fmt == "aedat4":
        from anonynoise.events import to_packed

        face = _real("face_dvxplorer.aedat4").read_bytes()
        robot = _real("robotarm_davis346.aedat4").read_bytes()
        events = _events("face_dvxplorer.aedat4", 100_000)
        rewritten = m.aedat4_encode(to_packed(events), events.width, events.height)
        return [Base(fmt, name, ".aedat4", data, m.aedat4_layout(data)[0], 1)
                for name, data in (("face", face), ("robotarm", robot),
                                   ("face-faery", rewritten))]
    if fmt == "evt2":
        return [_cut_prophesee("spinner_gen3_evt2.raw", fmt, 4)]
    if fmt == "evt3":
        return [_cut_prophesee("sky_imx636_evt3.raw", fmt, 2),
                _cut_prophesee("road_gen41_evt3.raw", fmt, 2)]
    if fmt == "dat":
        return [_cut_prophesee("sky_imx636.dat", fmt, 8)]
    if fmt == "npy":
        from anonynoise.io import save_npy

        face = _saved(save_npy, _events("face_dvxplorer.aedat4", 50_000), ".npy")
        ref = np.load(_real("road_gen41_evt3.expelliarmus.npy"), mmap_mode="r")
        road = m._save_npy(np.ascontiguousarray(ref[:40_000]))
        return [Base(fmt, name, ".npy", data, len(data) - len(m.npy_split(data)[2]),
                     m._load_npy(data).dtype.itemsize)
                for name, data in (("face", face), ("road-expelliarmus", road))]
    if fmt == "npz":
        from anonynoise.io import save_npz

        robot = _saved(save_npz, _events("robotarm_davis346.aedat4", 50_000), ".npz")
        cut = _cut_prophesee("sky_imx636.dat", "dat", 8).data
        sky = _saved(save_npz, _events("sky_imx636.dat", 30_000, cut), ".npz")
        return [Base(fmt, name, ".npz", data, 0, 1) for name, data in (("robotarm", robot),
                                                                       ("sky", sky))]
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


_BASES: dict[str, list[Base]] = {}


def bases(fmt: str) -> list[Base]:
    """The format's bases (made once per process; MissingData where a recording is absent)."""
    if fmt not in _BASES:
        _BASES[fmt] = _make_bases(fmt)
    return _BASES[fmt]


# ---------------------------------------------------------------------------------------------
# random cases


@dataclass(frozen=True)
class Kind:
    """A mutation: label, function, fixed keyword arguments, and optionally one parameter
    drawn from choices (its value goes into the label: dat_time.wrap)."""

    label: str
    fn: Callable
    kwargs: dict = field(default_factory=dict)
    choose: tuple[str, tuple] | None = None
    weight: float = 1.0
    generic: bool = False


def _raw_header() -> list[Kind]:
    """A Prophesee RAW header's edits (EVT 2.0 and 3.0 alike)."""
    return [
        Kind("geometry", m.header_set, {"key": "geometry"},
             choose=("value", m.GEOMETRIES_TEXT), weight=2),
        Kind("evt", m.header_set, {"key": "evt"}, choose=("value", _EVT_VALUES)),
        Kind("header_delete", m.header_delete),
        Kind("long_line", m.header_long_line, weight=0.5),
    ]


def _generic() -> list[Kind]:
    return [Kind("bitflip", m.bit_flips, weight=2, generic=True),
            Kind("random", m.random_bytes, generic=True),
            Kind("truncate", m.truncate, generic=True),
            Kind("zero", m.zero_chunk, generic=True),
            Kind("dup", m.duplicate_chunk, generic=True),
            Kind("delete", m.delete_chunk, generic=True)]


_EVT_VALUES = (b"2.0", b"3.0", b"4.0", b"2.1", b"", b"abc", b"3")
KINDS: dict[str, list[Kind]] = {
    "aedat4": _generic() + [
        *[Kind(f"{key}", m.aedat4_attr, {"key": key}, choose=("value", m.ATTR_VALUES[key]),
               weight=1.5 if key.startswith("size") else 0.5) for key in m.ATTR_VALUES],
        Kind("header_size", m.aedat4_header_size),
        Kind("table", m.aedat4_table),
        Kind("packet", m.aedat4_packet, choose=("mode", m.PACKET_MODES), weight=2),
        Kind("events", m.aedat4_events, choose=("mode", m.TIME_MODES), weight=2),
        Kind("geometry", m.aedat4_events, {"mode": "geometry"},
             choose=("size", m.GEOMETRIES)),
    ],
    "evt2": _generic() + _raw_header() + [
        Kind("time_high", m.evt2_time_high, choose=("mode", m.EVT_MODES), weight=3),
    ],
    "evt3": _generic() + _raw_header() + [
        Kind("time", m.evt3_time, choose=("mode", m.EVT_MODES), weight=3),
    ],
    "dat": _generic() + [
        Kind("width", m.header_set, {"key": "Width"}, choose=("value", m.HUGE_SIZES)),
        Kind("height", m.header_set, {"key": "Height"}, choose=("value", m.HUGE_SIZES)),
        Kind("version", m.header_set, {"key": "Version"},
             choose=("value", (b"1", b"3", b"0", b"abc", b""))),
        Kind("header_delete", m.header_delete),
        Kind("long_line", m.header_long_line, weight=0.5),
        Kind("event_size", m.dat_event_size),
        Kind("dat_time", m.dat_time, choose=("mode", m.DAT_MODES), weight=3),
    ],
    "npy": _generic() + [
        Kind("events", m.npy_events, choose=("mode", m.NPY_MODES), weight=3),
        Kind("zero_d", m.npy_zero_d),
        Kind("shape", m.npy_header, choose=("shape", m.HUGE_SHAPES), weight=1.5),
        Kind("descr", m.npy_header, choose=("descr", m.DESCRS)),
        Kind("fortran", m.npy_header, {"fortran": True}, weight=0.3),
        Kind("header_len", m.npy_header_len),
        Kind("float4", m.npy_as_float4),
    ],
    "npz": _generic() + [
        Kind("member", m.npz_member, choose=("mode", m.NPZ_MODES), weight=5),
        Kind("inner", m.npz_inner, choose=("op", m.INNER_OPS), weight=5),
        Kind("deflated", m.npz_inner, {"op": "none", "compressed": True}, weight=0.5),
    ],
}


def _label(value) -> str:
    """A parameter's value as a piece of a file name."""
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")[:28] or "empty"


def _apply(kind: Kind, base: Base, data: bytes, rng) -> tuple[str, bytes]:
    kwargs = dict(kind.kwargs)
    label = kind.label
    if kind.choose is not None:
        name, choices = kind.choose
        value = choices[int(rng.integers(0, len(choices)))]
        kwargs[name] = value
        label += f".{_label(value)}"
    if kind.generic and kind.fn is not m.truncate:
        # half the time past the header: the decoder's paths, not only the header's checks
        if rng.random() < 0.5:
            kwargs["lo"] = base.header
        if kind.fn is not m.bit_flips:
            kwargs["align"] = base.align
    elif kind.fn is m.truncate and rng.random() < 0.7:
        kwargs["lo"] = base.header
    return label, kind.fn(data, rng, **kwargs)


def random_case(fmt: str, index: int, seed: int = SEED) -> Case:
    """Case `index` of format `fmt`: a mutation drawn by weight (now and then a second one on
    top), on base index % len(bases)."""
    rng = np.random.default_rng([seed, zlib.crc32(fmt.encode()), index])
    all_bases = bases(fmt)
    base = all_bases[index % len(all_bases)]
    kinds = KINDS[fmt]
    weights = np.array([k.weight for k in kinds], float)
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    label, data = _apply(kind, base, base.data, rng)
    if rng.random() < 0.1:  # stacked: a generic damage on top of the first
        extra = _generic()[int(rng.integers(0, 6))]
        label2, data = _apply(extra, base, data, rng)
        label += f"+{label2}"
    return Case(f"{fmt}-{index:04d}-{base.name}-{label}", fmt, base.name, label, data,
                base.suffix)


# ---------------------------------------------------------------------------------------------
# commands


def command(name: str, path: Path, workdir: Path, variant: int = 0) -> tuple[str, list[str]]:
    """(program, argv) of a command on a case file; outputs go to workdir. variant picks the
    anonymize output format (.npz, .aedat4)."""
    path, workdir = Path(path), Path(workdir)
    if name == "info":
        return "anonynoise", ["info", str(path)]
    if name == "anonymize":
        out = workdir / f"anonymized{('.npz', '.aedat4')[variant % 2]}"
        return "anonynoise", ["anonymize", str(path), str(out)]
    if name == "replay":
        # --status-every 0: no periodic status lines; the final summary line stays
        return "anonynoise-stream", ["--replay", str(path), "--fast", "--publish", "none",
                                     "--record", str(workdir / "replayed.aedat4"),
                                     "--status-every", "0"]
    raise ValueError(f"unknown command {name!r} (known: {', '.join(COMMANDS)})")


def shell_command(prog: str, argv: list[str], as_limit: int | None,
                  timeout: float | None = None) -> str:
    """The command as a reader reruns it in a shell, with the same limits."""
    import shlex

    line = shlex.join([prog, *argv])
    if timeout:
        line = f"timeout -s KILL {timeout:g} {line}"
    if as_limit:
        line = f"(ulimit -v {as_limit // 1024}; {line})"
    return line


# ---------------------------------------------------------------------------------------------
# running a case


@dataclass
class Outcome:
    case: str
    fmt: str
    command: str
    shell: str  # the command line, to rerun it by hand
    result: object  # runner.Result
    failure: str | None  # None: the acceptance predicate holds (runner.failure)


def run_case(runner, case: Case, name: str, folder: Path, *, timeout: float | None = None,
             as_limit: int | None = None, variant: int = 0) -> Outcome:
    """Write the case file into folder (once) and run command `name` on it; its outputs go to
    a folder of their own, removed afterwards."""
    import shutil

    from .runner import AS_LIMIT, failure

    as_limit = AS_LIMIT if as_limit is None else as_limit
    folder = Path(folder)
    path = folder / f"{case.id}{case.suffix}"
    if not path.exists():
        case.write(folder)
    workdir = folder / f"{case.id}.{name}.out"
    workdir.mkdir(parents=True, exist_ok=True)
    prog, argv = command(name, path, workdir, variant)
    timeout = TIMEOUTS[name] if timeout is None else timeout
    try:
        result = runner.run(prog, argv, workdir, timeout, as_limit)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Outcome(case.id, case.fmt, name, shell_command(prog, argv, as_limit, timeout),
                   result, failure(result))


# ---------------------------------------------------------------------------------------------
# the fast subset (tests/fuzz/test_fuzz_files.py): named cases with fixed parameters


@dataclass(frozen=True)
class Named:
    """A named case: mutations (function, keyword arguments) applied in turn to base `base`
    of format `fmt`, with a Generator seeded by the name; and the commands it goes through."""

    fmt: str
    name: str
    steps: tuple
    commands: tuple[str, ...] = COMMANDS
    base: int = 0
    variant: int = 0  # anonymize's output: 0 .npz, 1 .aedat4


I, A, P = "info", "anonymize", "replay"
FAST: tuple[Named, ...] = (
    # AEDAT 4: corrupt packets, header size and geometry, time jumps (re-encoded by faery)
    Named("aedat4", "face-bitflips8", ((m.bit_flips, {"n": 8, "lo": 2400}),), (I, P)),
    Named("aedat4", "face-truncate-half", ((m.truncate, {"at": 949253 // 2}),), (I, A),
          variant=1),
    Named("aedat4", "robotarm-packet-repeat", ((m.aedat4_packet, {"mode": "repeat",
                                                                  "index": 6}),), (I, P), 1),
    Named("aedat4", "face-headersize0", ((m.aedat4_header_size, {"value": 0}),), (I,)),
    Named("aedat4", "face-packet10-zeroed", ((m.aedat4_packet, {"mode": "zero",
                                                                "index": 10}),), (I, P)),
    Named("aedat4", "face-table0", ((m.aedat4_table, {"value": 0}),), (I,)),
    Named("aedat4", "face-compression-NONE", ((m.aedat4_attr, {"key": "compression",
                                                               "value": "NONE",
                                                               "which": 0}),), (I,)),
    Named("aedat4", "negative-times", ((m.aedat4_events, {"mode": "negative"}),), (I, A), 2),
    Named("aedat4", "face-sizeX32768", ((m.aedat4_attr, {"key": "sizeX", "value": "32768",
                                                         "which": -1}),), (I, A)),
    Named("aedat4", "geometry20000x20000", ((m.aedat4_events, {"mode": "geometry",
                                                               "size": (20000, 20000)}),),
          (I, A, P), 2),
    Named("aedat4", "gap1e11", ((m.aedat4_events, {"mode": "gap", "at": 0.5}),), (A, P), 2),
    # EVT 2.0
    Named("evt2", "geometry32768x720", ((m.header_set, {"key": "geometry",
                                                        "value": b"32768x720"}),), (I, A)),
    Named("evt2", "geometry-abc", ((m.header_set, {"key": "geometry",
                                                   "value": b"abcxdef"}),), (I,)),
    Named("evt2", "geometry-20digits", ((m.header_set, {"key": "geometry",
                                                        "value": b"99999999999999999999x720"}),),
          (I, A, P)),
    Named("evt2", "declared-evt3", ((m.header_set, {"key": "evt", "value": b"3.0"}),), (I, P)),
    Named("evt2", "timehigh-glitch", ((m.evt2_time_high, {"mode": "glitch", "at": 0.5}),),
          (I, A, P)),
    Named("evt2", "bitflips16", ((m.bit_flips, {"n": 16, "lo": 164}),), (I, P)),
    Named("evt2", "truncate-midword", ((m.truncate, {"at": 164 + 4 * 30000 + 3}),), (I,)),
    Named("evt2", "dup-chunk", ((m.duplicate_chunk, {"at": 164 + 4 * 20000,
                                                     "length": 4 * 5000}),), (I, A)),
    # EVT 3.0
    Named("evt3", "geometry20000x20000", ((m.header_set, {"key": "geometry",
                                                          "value": b"20000x20000"}),),
          (I, A, P)),
    Named("evt3", "timehigh-wrap", ((m.evt3_time, {"mode": "wrap", "at": 0.5,
                                                   "word": "high"}),), (I, A, P)),
    Named("evt3", "zero-chunk", ((m.zero_chunk, {"at": 225 + 2 * 40000,
                                                 "length": 4096}),), (I, A), variant=1),
    Named("evt3", "declared-evt2", ((m.header_set, {"key": "evt", "value": b"2.0"}),),
          (I, P), 1),
    Named("evt3", "bitflips16", ((m.bit_flips, {"n": 16, "lo": 166}),), (I, P), 1),
    Named("evt3", "delete-oddchunk", ((m.delete_chunk, {"at": 166 + 2 * 30000 + 1,
                                                        "length": 777}),), (I,), 1),
    # DAT
    Named("dat", "width32768", ((m.header_set, {"key": "Width", "value": b"32768"}),), (I, A),
          variant=1),
    Named("dat", "height-abc", ((m.header_set, {"key": "Height", "value": b"abc"}),), (I,)),
    Named("dat", "height640.5", ((m.header_set, {"key": "Height", "value": b"640.5"}),), (I,)),
    Named("dat", "wrap32", ((m.dat_time, {"mode": "wrap", "at": 0.5}),), (I, A, P)),
    Named("dat", "eventsize16", ((m.dat_event_size, {"size_byte": 16}),), (I,)),
    Named("dat", "bitflips16", ((m.bit_flips, {"n": 16, "lo": 67}),), (I, P)),
    Named("dat", "dup-records", ((m.duplicate_chunk, {"at": 67 + 8 * 10000,
                                                      "length": 8 * 3000}),), (P,)),
    # NumPy .npy
    Named("npy", "gap1e11", ((m.npy_events, {"mode": "gap", "at": 0.5}),), (I, A, P)),
    Named("npy", "int64-max", ((m.npy_events, {"mode": "int64-max", "at": 0.5}),), (I, A)),
    Named("npy", "shape0d", ((m.npy_zero_d, {"kind": "record"}),), (I,)),
    Named("npy", "shape1e12", ((m.npy_header, {"shape": "(1000000000000,)"}),), (I,)),
    Named("npy", "descr-t-float", ((m.npy_header, {"descr": m.DESCRS[2]}),), (I,)),
    Named("npy", "headerlen0", ((m.npy_header_len, {"value": 0}),), (I,)),
    Named("npy", "float4-nan", ((m.npy_as_float4, {"poison": "nan"}),), (I, A)),
    Named("npy", "bitflips16", ((m.bit_flips, {"n": 16, "lo": 192}),), (I,), 1),
    # NumPy .npz (ours)
    Named("npz", "geometry20000x20000", ((m.npz_member, {"mode": "width", "value": 20000}),
                                         (m.npz_member, {"mode": "height", "value": 20000})),
          (I, A, P)),
    Named("npz", "geometry16384x16384", ((m.npz_member, {"mode": "width", "value": 16384}),
                                         (m.npz_member, {"mode": "height", "value": 16384})),
          (A, P)),
    Named("npz", "width32769", ((m.npz_member, {"mode": "width", "value": 32769}),), (I,)),
    Named("npz", "gap1e11", ((m.npz_member, {"mode": "t-gap"}),), (I, A, P), 1),
    Named("npz", "t-float-nan", ((m.npz_member, {"mode": "t-float-nan"}),), (I,)),
    Named("npz", "lengths", ((m.npz_member, {"mode": "lengths"}),), (I,)),
    Named("npz", "bitflips16", ((m.bit_flips, {"n": 16}),), (I,)),
    Named("npz", "t-member-bitflips-deflated", ((m.npz_inner, {"member": "t", "op": "bitflip",
                                                               "compressed": True}),), (I, P)),
)


def named_case(spec: Named) -> Case:
    """The case of a named spec (MissingData where its recording is absent)."""
    all_bases = bases(spec.fmt)
    base = all_bases[spec.base % len(all_bases)]
    rng = np.random.default_rng([SEED, zlib.crc32(spec.name.encode())])
    data = base.data
    for fn, kwargs in spec.steps:
        data = fn(data, rng, **kwargs)
    return Case(f"{spec.fmt}-{spec.name}", spec.fmt, base.name, spec.name, data, base.suffix,
                spec.commands)
