"""Event files: read AEDAT 4, Prophesee RAW (EVT 2.0 / 3.0) and DAT, and NumPy files as an
iterator of EventBatch; write AEDAT 4 and NumPy files.

AEDAT 4 is read and written by faery (its decoder returns errors where dv-processing's spins
on a damaged packet, see Aedat4Reader; its encoder takes numpy arrays whole); Prophesee formats
go through expelliarmus. Only events ever come out of a reader: APS frames, IMU samples and
triggers are counted for `info` and left in the file. A sensor size a file declares is refused
above MAX_SENSOR_SIZE unless the caller gives the same size.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import mmap
import os
import re
import struct
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from anonynoise.atomic import atomic_output, move_into_place, temporary_beside
from anonynoise.errors import AnonyNoiseError, first_line
from anonynoise.events import (
    PACKED_DTYPE,
    EventBatch,
    concatenate,
    check_sensor_limit,
    empty_events,
    from_dvsgesture_array,
    from_structured,
    make_events,
    to_packed,
    to_structured,
)

log = logging.getLogger(__name__)
AEDAT4_MAGIC = b"#!AER-DAT4.0"
# faery's event layout (its EVENTS_DTYPE): what its AEDAT 4 encoder takes. Byte for byte our
# PACKED_DTYPE where t >= 0 and p is 0 or 1, so packed records are handed over as a view.
_FAERY_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
NUMPY_BATCH = 1 << 16  # events per batch when a NumPy file is iterated
PROPHESEE_CHUNK = 1 << 18  # events per expelliarmus chunk

SensorSize = Sequence[int]
# RecordingInfo.sensor_source where the size did not come from the file's header
FROM_CALLER = "the caller"  # the sensor_size argument
FROM_EXTENT = "the events' extent"  # the largest x and y: a guess, pass sensor_size if wrong


@dataclass(frozen=True)
class RecordingInfo:
    """What a file holds, as far as its header tells (counting events means reading it)."""

    path: str
    format: str
    width: int
    height: int
    sensor_source: str  # where the size came from: header, FROM_CALLER, plugin name, FROM_EXTENT
    camera: str | None = None
    other_streams: dict[str, int] = field(default_factory=dict)  # e.g. {"frames": 3}


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise AnonyNoiseError(f"{path}: no such file")
    if path.is_dir():
        raise AnonyNoiseError(f"{path}: is a directory, not an event file")
    if not os.access(path, os.R_OK):
        raise AnonyNoiseError(f"{path}: permission denied")


def _parse_sensor(sensor_size: SensorSize | None) -> tuple[int, int] | None:
    if sensor_size is None:
        return None
    if len(sensor_size) not in (2, 3):
        raise AnonyNoiseError(f"sensor size must be (width, height), got {sensor_size!r}")
    return int(sensor_size[0]), int(sensor_size[1])


def _check_declared(path: Path | None, width, height, caller: tuple[int, int] | None) -> None:
    """A sensor size a file declares: valid, and within MAX_SENSOR_SIZE unless the caller
    gave the same size (a header's size must not drive allocation on its own)."""
    try:
        if caller is not None and caller == (width, height):
            empty_events(width, height)  # MAX_SENSOR_SIDE still holds
        else:
            check_sensor_limit(width, height)
    except AnonyNoiseError as e:
        where = "" if path is None else f"{path}: "
        raise AnonyNoiseError(f"{where}the file's {str(e).removeprefix('sensor ')}") from None


class EventReader:
    """Base of the readers: iterate for EventBatch objects; `info` says what the file is."""

    info: RecordingInfo

    def __iter__(self) -> Iterator[EventBatch]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "EventReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def sensor_size(self) -> tuple[int, int]:
        return (self.info.width, self.info.height)


# ---------------------------------------------------------------------------------------------
# AEDAT 4 (faery's decoder, behind a check of the packet chain)
#
# Why not dv-processing here: on a damaged event packet (16 zeroed bytes, a deleted byte, bit
# flips) dv-processing 2.0.4's getNextEventBatch() spins for ever at 100 % CPU holding the GIL,
# so neither a timeout nor Ctrl-C can end it (34 of 100 mutated files). faery's Rust decoder
# returns an error for a bad LZ4 frame, flatbuffer or coordinate instead. It trusts a packet's
# declared size, though: a size of -5 made it ask for 4 GiB and abort the process. So every
# packet header is checked against the file before faery reads a byte of it
# (_check_packet_chain).
# dv-processing stays the camera's and the DV network output's library.

AEDAT4_PREAMBLE = len(AEDAT4_MAGIC) + 2  # the magic and "\r\n"
_AEDAT4_COMPRESSIONS = range(5)  # NONE, LZ4, LZ4_HIGH, ZSTD, ZSTD_HIGH
_MAX_PACKET_BYTES = 1 << 28  # dv writes packets of a few 10 kB; far above any real one


def _flatbuffer_fields(buf: bytes) -> tuple[int, list[int]]:
    """The root table's position and its fields' offsets (0: absent) of a flatbuffer."""
    root = struct.unpack_from("<I", buf, 0)[0]
    vtable = root - struct.unpack_from("<i", buf, root)[0]
    vsize = struct.unpack_from("<H", buf, vtable)[0]
    if vsize < 4 or vsize % 2 or vtable + vsize > len(buf):
        raise ValueError("bad vtable")
    fields = list(struct.unpack_from(f"<{(vsize - 4) // 2}H", buf, vtable + 4))
    if any(root + f >= len(buf) for f in fields):
        raise ValueError("field past the end")
    return root, fields


def _aedat4_layout(path: Path) -> tuple[int, int]:
    """(first packet's offset, end of the packets) from the file's IOHeader, whose
    compression is checked: flatbuffer fields compression (int32), dataTablePosition (int64,
    -1: none), infoNode."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(AEDAT4_PREAMBLE + 4)
        if len(head) < AEDAT4_PREAMBLE + 4:
            raise AnonyNoiseError(f"{path}: the file ends inside its header (truncated)")
        header_bytes = struct.unpack_from("<i", head, AEDAT4_PREAMBLE)[0]
        first = AEDAT4_PREAMBLE + 4 + header_bytes
        if not 8 <= header_bytes <= min(size, 1 << 24) or first > size:
            raise AnonyNoiseError(f"{path}: corrupt AEDAT 4 header (declares {header_bytes} "
                                  "bytes)")
        buf = f.read(header_bytes)
    try:
        root, fields = _flatbuffer_fields(buf)
        compression = struct.unpack_from("<i", buf, root + fields[0])[0] if fields[0] else 0
        table = struct.unpack_from("<q", buf, root + fields[1])[0] \
            if len(fields) > 1 and fields[1] else -1
    except (struct.error, ValueError, IndexError):
        raise AnonyNoiseError(f"{path}: corrupt AEDAT 4 header") from None
    if compression not in _AEDAT4_COMPRESSIONS:
        raise AnonyNoiseError(f"{path}: corrupt AEDAT 4 header (compression {compression})")
    end = size if table < 0 else table
    if not first <= end <= size:
        raise AnonyNoiseError(f"{path}: the file is truncated or corrupt (its packet table "
                              f"at byte {table} lies outside its {size} bytes)")
    return first, end


def _check_packet_chain(path: Path, first: int, end: int, streams: set[int]) -> None:
    """Walk the packet headers (int32 stream id, int32 size) from `first` to `end`;
    AnonyNoiseError at the first header that does not fit the file."""
    count, offset = 0, first
    # the file is not empty (its header was read), so it can be mapped
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        while offset < end:
            if offset + 8 > end:
                raise AnonyNoiseError(f"{path}: the file is truncated or corrupt (a packet "
                                      f"header at byte {offset} is cut off)")
            stream, size = struct.unpack_from("<ii", buf, offset)
            if stream not in streams or not 0 < size <= min(_MAX_PACKET_BYTES,
                                                            end - offset - 8):
                raise AnonyNoiseError(f"{path}: the file is truncated or corrupt (packet "
                                      f"{count} at byte {offset}: stream {stream}, "
                                      f"{size} bytes)")
            offset += 8 + size
            count += 1


def _faery_reason(error: BaseException) -> str:
    text = first_line(error, 160)
    if "fill whole buffer" in text:
        return "the file is truncated"
    return f"the file is corrupt ({text})"


_FAERY_ERRORS = (RuntimeError, ValueError, OSError, TypeError)


class Aedat4Reader(EventReader):
    """Events of an AEDAT 4 file, batch by batch as stored (one batch a packet)."""

    def __init__(self, path: str | os.PathLike, sensor_size: SensorSize | None = None):
        from faery import aedat

        self.path = Path(path)
        _check_readable(self.path)
        caller = _parse_sensor(sensor_size)  # the header decides; a wrong guess is refused
        with open(self.path, "rb") as f:
            if f.read(len(AEDAT4_MAGIC)) != AEDAT4_MAGIC:
                raise AnonyNoiseError(f"{self.path}: not an AEDAT 4 file (no "
                                      f"{AEDAT4_MAGIC.decode()} header)")
        first, end = _aedat4_layout(self.path)
        try:
            with _rust_errors(), aedat.Decoder(self.path) as decoder:
                tracks = decoder.tracks()
                description = decoder.description()
                table = decoder.file_data_definitions()
        except _FAERY_ERRORS as e:
            raise AnonyNoiseError(f"{self.path}: cannot read: {_faery_reason(e)}") from None
        events = [t for t in tracks if t.data_type == "events"]
        if not events:
            raise AnonyNoiseError(f"{self.path}: the recording has no event stream")
        self._track = events[0].id
        _check_packet_chain(self.path, first, end, {t.id for t in tracks})
        width, height, camera = self._geometry(description, self._track, caller)
        self.info = RecordingInfo(str(self.path), "aedat4", width, height, "header",
                                  camera=camera,
                                  other_streams=self._count_other_streams(tracks, table))

    def _geometry(self, description, track: int,
                  caller: tuple[int, int] | None) -> tuple[int, int, str | None]:
        info = {}
        for node in description:  # outInfo / <id> / info
            for stream in node.nodes:
                if stream.name == str(track):
                    info = {k: a.value for n in stream.nodes if n.name == "info"
                            for k, a in n.attributes.items()}
        w, h = info.get("sizeX"), info.get("sizeY")
        if not (isinstance(w, int) and isinstance(h, int)):
            raise AnonyNoiseError(f"{self.path}: the header gives no valid event resolution "
                                  f"(sizeX {w!r}, sizeY {h!r})")
        if caller is not None and caller != (w, h):
            raise AnonyNoiseError(f"{self.path}: the header says {w}x{h}, not "
                                  f"{caller[0]}x{caller[1]}")
        _check_declared(self.path, w, h, caller)
        source = info.get("source")
        return w, h, source if isinstance(source, str) and source else None

    def _packets_of(self):
        """(track, data) of every packet, as faery decodes them; AnonyNoiseError at the first
        one it cannot."""
        from faery import aedat

        try:
            with _rust_errors(), aedat.Decoder(self.path) as decoder:
                for track, data in decoder:
                    yield track, data
        except _FAERY_ERRORS as e:
            raise AnonyNoiseError(f"{self.path}: cannot read: {_faery_reason(e)}") from None

    def _count_other_streams(self, tracks, table) -> dict[str, int]:
        """Count frames, IMU samples and triggers (never returned): from the file's table of
        packets where it has one that names only its tracks, else by reading them."""
        names = {"frame": "frames", "imus": "imu", "triggers": "triggers"}
        kinds = {t.id: names.get(t.data_type) for t in tracks}
        counts = {name: 0 for name in kinds.values() if name is not None}
        if not counts:
            return counts
        if table and all(d.track_id in kinds for d in table):
            for d in table:
                if kinds[d.track_id] is not None:
                    counts[kinds[d.track_id]] += int(d.elements_count)
            return counts
        for track, data in self._packets_of():
            name = names.get(track.data_type)
            if name is not None:
                counts[name] += 1 if name == "frames" else len(data)
        return counts

    def __iter__(self) -> Iterator[EventBatch]:
        size = self.sensor_size
        t_prev = None
        for track, data in self._packets_of():
            if track.id != self._track or not len(data):
                continue
            try:
                batch = from_structured(data, size, t_prev=t_prev)
            except AnonyNoiseError as e:
                raise AnonyNoiseError(f"{self.path}: {e}", parameter=e.parameter) from None
            t_prev = int(batch.t[-1])
            yield batch


@contextlib.contextmanager
def _rust_errors():
    """A panic inside faery (pyo3's PanicException, a BaseException) as a RuntimeError."""
    try:
        yield
    except _FAERY_ERRORS:
        raise
    except BaseException as e:
        if type(e).__name__ == "PanicException":
            raise RuntimeError(f"decoder panic: {first_line(e, 120)}") from None
        raise


def to_event_store(events: EventBatch):
    """A dv-processing EventStore with the batch's events. dv has no bulk numpy path, so this
    pushes events one by one (a few million per second)."""
    import dv_processing as dv

    store = dv.EventStore()
    # map drives the C++ push_back without a Python loop body: 1.4x the for loop
    collections.deque(map(store.push_back, events.t.tolist(), events.x.tolist(),
                          events.y.tolist(), (events.p == 1).tolist()), maxlen=0)
    return store


class Aedat4Writer:
    """Write events to an AEDAT 4 file (LZ4), readable by dv-processing and the DV software.

    The encoder is faery's (Rust): it takes numpy arrays whole, about 20 M events/s with the
    compression, where dv-processing's MonoCameraWriter needs a dv.EventStore built one event
    at a time (about 3 M events/s). The header is the one dv-processing's writer makes, with
    `camera_name` as the source. The file is written under a temporary name and moved into
    place by `close`, so an existing file is only replaced by a complete one.
    """

    def __init__(self, path: str | os.PathLike, sensor_size: SensorSize,
                 camera_name: str = "AnonyNoise"):
        from faery import aedat

        self.path = Path(path)
        self.width, self.height = _parse_sensor(sensor_size)
        self._tmp = temporary_beside(self.path, ".partial.aedat4")
        text = functools.partial(aedat.DescriptionAttribute, "string")
        info = aedat.DescriptionNode("info", "/outInfo/0/info/", {
            "sizeX": aedat.DescriptionAttribute("int", self.width),
            "sizeY": aedat.DescriptionAttribute("int", self.height),
            "source": text(camera_name)}, [])
        events = aedat.DescriptionNode("0", "/outInfo/0/", {
            "compression": text("LZ4"), "originalModuleName": text("AnonyNoise"),
            "originalOutputName": text("events"), "typeIdentifier": text("EVTS")}, [info])
        try:
            self._writer = aedat.Encoder(path=self._tmp, compression=aedat.LZ4_DEFAULT,
                                         description=[aedat.DescriptionNode(
                                             "outInfo", "/outInfo/", {}, [events])])
            self._writer.__enter__()
        except (RuntimeError, OSError) as e:
            self._tmp.unlink(missing_ok=True)
            raise AnonyNoiseError(f"{self.path}: cannot write: {first_line(e)}") from None
        self._t_last = None
        self.events_written = 0

    def write(self, events: EventBatch) -> None:
        """Append a batch (same sensor, not earlier than what was written)."""
        if self._writer is None:
            raise AnonyNoiseError(f"{self.path}: writer is closed")
        if events.sensor_size != (self.width, self.height):
            raise AnonyNoiseError(f"{self.path}: events of a {events.width}x{events.height} "
                                  f"sensor cannot go into a {self.width}x{self.height} file")
        if len(events):
            self.write_packed(to_packed(events))

    def write_packed(self, records: np.ndarray) -> None:
        """Append the packed records (PACKED_DTYPE) of a valid batch of this sensor, as
        anonynoise.events.to_packed makes them and the stream's sinks receive them."""
        if self._writer is None:
            raise AnonyNoiseError(f"{self.path}: writer is closed")
        if records.dtype != PACKED_DTYPE:
            raise AnonyNoiseError(f"{self.path}: expected {PACKED_DTYPE} records, got "
                                  f"{records.dtype}")
        if not len(records):
            return
        t_first = int(records["t"][0])
        if self._t_last is not None and t_first < self._t_last:
            raise AnonyNoiseError(f"{self.path}: events must be written in time order "
                                  f"({self._t_last} -> {t_first} µs)")
        if t_first < 0:
            raise AnonyNoiseError(f"{self.path}: AEDAT 4 cannot hold negative timestamps "
                                  f"({t_first} µs)")
        try:
            self._writer.write(0, records.view(_FAERY_DTYPE))
        except (RuntimeError, OSError) as e:  # e.g. the disk is full
            raise AnonyNoiseError(f"{self.path}: cannot write: {first_line(e)}") from None
        self._t_last = int(records["t"][-1])
        self.events_written += len(records)

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.__exit__(None, None, None)  # writes the file's table of packets
        except (RuntimeError, OSError) as e:
            self._tmp.unlink(missing_ok=True)
            raise AnonyNoiseError(f"{self.path}: cannot write: {first_line(e)}") from None
        move_into_place(self._tmp, self.path)

    def abort(self) -> None:
        """Drop what was written; an existing file at `path` is left untouched."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.__exit__(None, None, None)
            except (RuntimeError, OSError):
                pass  # the partial file goes anyway
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "Aedat4Writer":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------------------------------
# Prophesee RAW (EVT 2.0, EVT 3.0) and DAT (expelliarmus)

# Sensor sizes by plugin name, for RAW headers without a geometry line (Gen3 and Gen4.1 EVKs).
_PLUGIN_SENSORS = (
    ("gen31", (640, 480)), ("gen3", (640, 480)),
    ("gen41", (1280, 720)), ("gen4", (1280, 720)), ("imx636", (1280, 720)),
    ("genx320", (320, 320)),
)
_WORD_BYTES = {"evt2": 4, "evt3": 2}


def _read_header(path: Path) -> tuple[dict[str, str], int]:
    """Prophesee '% key value' header lines and the header's length in bytes."""
    fields: dict[str, str] = {}
    offset = 0
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            if not line.startswith(b"%"):
                break
            if not line.endswith(b"\n"):
                # expelliarmus loops forever on a header cut inside a line: refuse it here
                raise AnonyNoiseError(f"{path}: the file is truncated inside its header")
            offset += len(line)
            text = line[1:].decode("latin-1").strip()
            if text.lower() == "end":
                break
            key, _, value = text.partition(" ")
            fields[key.lower()] = value.strip()
    return fields, offset


class PropheseeReader(EventReader):
    """Events of a Prophesee RAW (EVT 2.0 / EVT 3.0) or DAT file, in chunks (expelliarmus).

    The sensor size comes from the header (geometry line, or Width/Height in DAT), else from
    `sensor_size`, else from the plugin name. EVT 3.0 time bases differ between decoders
    (see ../shared/data/real/SOURCES.md); this reader reports expelliarmus' timestamps.
    """

    def __init__(self, path: str | os.PathLike, sensor_size: SensorSize | None = None):
        self.path = Path(path)
        _check_readable(self.path)
        header, header_bytes = _read_header(self.path)
        size = self.path.stat().st_size
        if self.path.suffix.lower() == ".dat":
            self.encoding = "dat"
            if not header or "version" not in header and "width" not in header:
                raise AnonyNoiseError(f"{self.path}: not a Prophesee DAT file (no '% Width' / "
                                      "'% Version' header)")
            with open(self.path, "rb") as f:
                f.seek(header_bytes)
                type_and_size = f.read(2)
            if len(type_and_size) == 2 and type_and_size[1] != 8:
                raise AnonyNoiseError(f"{self.path}: unsupported DAT event size "
                                      f"{type_and_size[1]} bytes (expected 8)")
            data_bytes = size - header_bytes - len(type_and_size)
            word = 8
            geometry = (header.get("width"), header.get("height"))
            from_header = None
            if None not in geometry:
                if not all(re.fullmatch(r"\d{1,9}", g) for g in geometry):
                    raise AnonyNoiseError(f"{self.path}: corrupt DAT header (Width {geometry[0]!r}"
                                          f", Height {geometry[1]!r})")
                from_header = (int(geometry[0]), int(geometry[1]))
        else:
            self.encoding = self._raw_encoding(header)
            data_bytes = size - header_bytes
            word = _WORD_BYTES[self.encoding]
            from_header = None
            if "geometry" in header:
                match = re.fullmatch(r"(\d{1,9})x(\d{1,9})", header["geometry"])
                if not match:
                    raise AnonyNoiseError(f"{self.path}: corrupt RAW header (geometry "
                                          f"{header['geometry'][:40]!r})")
                from_header = (int(match.group(1)), int(match.group(2)))
        if data_bytes % word:
            raise AnonyNoiseError(f"{self.path}: the file is truncated ({data_bytes} data bytes "
                                  f"is not a whole number of {word}-byte words)")
        width, height, source = self._sensor(from_header, _parse_sensor(sensor_size),
                                             header.get("plugin_name", ""))
        self.info = RecordingInfo(str(self.path), self.encoding, width, height, source,
                                  camera=header.get("plugin_name") or None)
        self._has_data = data_bytes > 0

    def _raw_encoding(self, header: dict[str, str]) -> str:
        if not header:
            raise AnonyNoiseError(f"{self.path}: not a Prophesee RAW file (no '%' header)")
        evt = header.get("evt", "") or header.get("format", "")
        evt = evt.lower().replace("evt", "").split(";")[0].strip()
        if evt in ("2.0", "2"):
            return "evt2"
        if evt in ("3.0", "3"):
            return "evt3"
        raise AnonyNoiseError(f"{self.path}: unsupported RAW encoding {evt or 'unknown'!r} "
                              "(EVT 2.0 and EVT 3.0 are supported)")

    def _sensor(self, from_header, from_caller, plugin):
        if from_header is not None:
            if from_caller is not None and from_caller != from_header:
                raise AnonyNoiseError(f"{self.path}: the header says {from_header[0]}x"
                                      f"{from_header[1]}, not {from_caller[0]}x{from_caller[1]}",
                                      parameter="sensor_size")
            _check_declared(self.path, *from_header, from_caller)
            return (*from_header, "header")
        if from_caller is not None:
            return (*from_caller, FROM_CALLER)
        for key, wh in _PLUGIN_SENSORS:
            if key in plugin.lower():
                return (*wh, f"plugin name {plugin}")
        raise AnonyNoiseError(f"{self.path}: the header gives no sensor size: pass "
                              "sensor_size=(width, height)", parameter="sensor_size")

    def __iter__(self) -> Iterator[EventBatch]:
        from expelliarmus import Wizard

        if not self._has_data:
            return
        wizard = Wizard(encoding=self.encoding, fpath=str(self.path), chunk_size=PROPHESEE_CHUNK)
        t_prev = None
        said: list[str] = []
        try:
            for chunk in _quietly(wizard.read_chunk(), said):
                if chunk is None:
                    reason = next((s for s in said if s.startswith("ERROR")), "")
                    raise AnonyNoiseError(f"{self.path}: expelliarmus could not decode the file"
                                          + (f" ({reason.removeprefix('ERROR: ')})" if reason
                                             else ""))
                if not len(chunk):
                    continue
                try:
                    batch = from_structured(chunk, self.sensor_size, t_prev=t_prev)
                except AnonyNoiseError as e:
                    raise AnonyNoiseError(f"{self.path}: {e}", parameter=e.parameter) from None
                t_prev = int(batch.t[-1])
                yield batch
        except (ValueError, TypeError, OSError) as e:
            raise AnonyNoiseError(f"{self.path}: cannot decode: {e}") from None


# What expelliarmus' C code prints to the process's stderr (fd 2) on its own.
_EXPELLIARMUS_SAYS = ("WARNING: The timestamps are not monotonic", "ERROR: ")


def _quietly(chunks: Iterator, said: list[str]) -> Iterator:
    """The items of expelliarmus' chunk iterator, with what its C code writes to fd 2 caught
    into `said` instead of the terminal: a command's bad input ends in one line, ours (its
    'timestamps are not monotonic' came before our own error). Other threads' writes to
    stderr while a chunk is read are passed on after it."""
    while True:
        with tempfile.TemporaryFile() as caught:
            saved = os.dup(2)
            try:
                sys.stderr.flush()
                os.dup2(caught.fileno(), 2)
                try:
                    item = next(chunks)
                except StopIteration:
                    return
                finally:
                    os.dup2(saved, 2)
            finally:
                os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("latin-1").splitlines(keepends=True):
                if line.startswith(_EXPELLIARMUS_SAYS):
                    said.append(line.strip())
                    log.debug("expelliarmus: %s", line.strip())
                else:
                    os.write(2, line.encode("latin-1"))
        yield item


# ---------------------------------------------------------------------------------------------
# NumPy: .npz (ours), .npy (structured events, or DVS-Gesture N x 4 float)


_NUMPY_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _numpy_error(path: Path, error: Exception) -> AnonyNoiseError:
    reason = first_line(error, 160)
    if "pickled" in reason:  # numpy's fallback for anything that is not .npy / .npz
        reason = "not NumPy data, or it holds Python objects"
    return AnonyNoiseError(f"{path}: not a readable NumPy file ({reason})")


class NumpyReader(EventReader):
    """Events of an .npz written by `save_npz`, or of an .npy holding a structured event array
    (fields x, y, t, p; t in µs) or tonic's DVS-Gesture N x 4 float array (t in ms).

    An .npz is read as a stream, NUMPY_BATCH events at a time from each of its arrays: a
    replay starts at once and a long recording never has to fit in memory. Its arrays'
    headers are checked on opening; the events themselves as each batch is read."""

    def __init__(self, path: str | os.PathLike, sensor_size: SensorSize | None = None):
        self.path = Path(path)
        _check_readable(self.path)
        caller = _parse_sensor(sensor_size)
        self._events = self._npz = None
        self._dvsgesture = False
        try:
            if self.path.suffix.lower() == ".npz":
                self._npz = _NpzEvents(self.path, caller)
                (width, height), source = self._npz.sensor_size, "header"
            else:
                self._events, source = self._load_npy(caller)
                width, height = self._events.width, self._events.height
        except AnonyNoiseError as e:
            raise AnonyNoiseError(f"{self.path}: {e}", parameter=e.parameter) from None
        except _NUMPY_ERRORS as e:
            raise _numpy_error(self.path, e) from None
        fmt = "dvs-gesture npy" if self._dvsgesture else self.path.suffix.lower()[1:]
        self.info = RecordingInfo(str(self.path), fmt, width, height, source)

    def _load_npy(self, caller):
        _check_npy_size(self.path)
        array = np.load(self.path, allow_pickle=False)
        if array.dtype.names and array.ndim != 1:
            raise AnonyNoiseError(f"holds a structured array of shape {array.shape}, not a "
                                  "one-dimensional array of events")
        if array.dtype.names:
            if caller is not None:
                return from_structured(array, caller), FROM_CALLER
            if not len(array):
                raise AnonyNoiseError("an empty structured array has no sensor size: pass "
                                      "sensor_size=(width, height)", parameter="sensor_size")
            w, h = int(array["x"].max()) + 1, int(array["y"].max()) + 1
            _check_declared(None, w, h, None)  # the reader names the file
            return from_structured(array, (w, h)), FROM_EXTENT
        if array.ndim == 2 and array.shape[1] == 4 and array.dtype.kind == "f":
            self._dvsgesture = True
            if caller is not None:  # e.g. the synthetic benchmark at 64x64
                return from_dvsgesture_array(array, caller), FROM_CALLER
            return from_dvsgesture_array(array), "DVS-Gesture"
        raise AnonyNoiseError(f"holds a {array.dtype} array of shape {array.shape}, not events "
                              "(expected a structured array or a DVS-Gesture N x 4 array)")

    def __iter__(self) -> Iterator[EventBatch]:
        if self._npz is None:
            for i in range(0, len(self._events), NUMPY_BATCH):
                yield self._events[i:i + NUMPY_BATCH]
            return
        try:
            yield from self._npz.batches(NUMPY_BATCH)
        except AnonyNoiseError as e:
            raise AnonyNoiseError(f"{self.path}: {e}", parameter=e.parameter) from None
        except _NUMPY_ERRORS as e:
            raise _numpy_error(self.path, e) from None


def _check_npy_size(path: Path) -> None:
    """Refuse an .npy whose header declares more data than the file holds before numpy
    allocates it (a damaged shape of 1e13 elements asked for 100 TB)."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else \
                fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except Exception as e:  # noqa: BLE001 - numpy's header parser raises what it meets
            # (ValueError, SyntaxError, tokenize.TokenError, ...) on a damaged header
            raise AnonyNoiseError(f"not a readable NumPy file (its header: "
                                  f"{first_line(e, 100)})") from None
        left = path.stat().st_size - f.tell()
    if dtype.hasobject:
        return  # np.load refuses it (allow_pickle=False) with its own message
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if need != left:
        raise AnonyNoiseError(f"the header declares {shape} x {dtype.itemsize} bytes but the "
                              f"file holds {left}: truncated or corrupt")


class _NpzEvents:
    """The t, x, y, p arrays of an event .npz, read in step from their zip members."""

    FIELDS = ("t", "x", "y", "p")

    def __init__(self, path: Path, caller: tuple[int, int] | None):
        self.path = path
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [k for k in (*self.FIELDS, "width", "height") if f"{k}.npy" not in names]
            if missing:
                raise AnonyNoiseError(f"not an event .npz (missing {', '.join(missing)})")
            w, h = (_scalar_int(self._small_array(archive, k), k) for k in ("width", "height"))
            if caller is not None and caller != (w, h):
                raise AnonyNoiseError(f"the file says {w}x{h}, not {caller[0]}x{caller[1]}")
            _check_declared(None, w, h, caller)  # the reader names the file
            lengths = []
            for k in self.FIELDS:
                with archive.open(f"{k}.npy") as member:
                    lengths.append(self._header(member, k)[1])
            if len(set(lengths)) != 1:
                raise AnonyNoiseError(f"invalid events: t, x, y and p have different lengths "
                                      f"{sorted(set(lengths))}")
        self.sensor_size = (w, h)
        self.length = lengths[0]

    @staticmethod
    def _small_array(archive: zipfile.ZipFile, name: str) -> np.ndarray:
        with archive.open(f"{name}.npy") as member:
            return np.lib.format.read_array(member, allow_pickle=False)

    @staticmethod
    def _header(member, name: str) -> tuple[np.dtype, int]:
        """The dtype and length of a one-dimensional .npy member; the stream is left at its
        data."""
        fmt = np.lib.format
        version = fmt.read_magic(member)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else \
            fmt.read_array_header_2_0  # 2.0 and 3.0 differ only in the text's encoding
        shape, _, dtype = read_header(member)
        if len(shape) != 1:
            raise AnonyNoiseError(f"invalid events: field {name} must be one-dimensional, got "
                                  f"shape {shape}")
        if dtype.hasobject or dtype.kind not in "biuf":
            raise AnonyNoiseError(f"invalid events: field {name} has dtype {dtype}, expected "
                                  "numbers")
        return dtype, shape[0]

    def batches(self, size: int) -> Iterator[EventBatch]:
        w, h = self.sensor_size
        with zipfile.ZipFile(self.path) as archive:
            members = [archive.open(f"{k}.npy") for k in self.FIELDS]
            try:
                dtypes = [self._header(m, k)[0] for m, k in zip(members, self.FIELDS)]
                t_prev = None
                for start in range(0, self.length, size):
                    n = min(size, self.length - start)
                    arrays = []
                    for member, dtype, k in zip(members, dtypes, self.FIELDS):
                        data = member.read(n * dtype.itemsize)
                        if len(data) != n * dtype.itemsize:
                            raise AnonyNoiseError(f"the array {k} ends early (truncated)")
                        arrays.append(np.frombuffer(data, dtype))
                    batch = make_events(*arrays, w, h, t_prev=t_prev)
                    t_prev = int(batch.t[-1])
                    yield batch
            finally:
                for member in members:
                    member.close()


def _scalar_int(value: np.ndarray, name: str) -> int:
    if value.shape != () or value.dtype.kind not in "iu":
        raise AnonyNoiseError(f"{name} must be a single integer, got {value.dtype} of shape "
                              f"{value.shape}")
    return int(value)


def save_npz(path: str | os.PathLike, events: EventBatch) -> None:
    """Write events and the sensor size to an .npz (read back by `open_events`)."""
    _atomic_save(Path(path), lambda f: np.savez(f, t=events.t, x=events.x, y=events.y,
                                                p=events.p, width=events.width,
                                                height=events.height))


def save_npy(path: str | os.PathLike, events: EventBatch, dtype: np.dtype = PACKED_DTYPE) -> None:
    """Write events as a structured .npy (13-byte packed records by default; the sensor size
    is not stored: pass it when reading back)."""
    _atomic_save(Path(path), lambda f: np.save(f, to_structured(events, dtype)))


def _atomic_save(path: Path, save) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        save(f)


# ---------------------------------------------------------------------------------------------
# Dispatch by file name

_READERS = {".aedat4": "aedat4", ".raw": "prophesee", ".dat": "prophesee", ".npy": "numpy",
            ".npz": "numpy"}


def open_events(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> EventReader:
    """A reader for an event file, chosen by its extension."""
    path = Path(path)
    _check_readable(path)
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise AnonyNoiseError(f"{path}: unknown event file type {path.suffix or '(none)'!r} "
                              f"(known: {', '.join(sorted(_READERS))})")
    if kind == "aedat4":
        return Aedat4Reader(path, sensor_size)
    if kind == "prophesee":
        return PropheseeReader(path, sensor_size)
    return NumpyReader(path, sensor_size)


def read_events(path: str | os.PathLike, sensor_size: SensorSize | None = None) -> EventBatch:
    """All events of a file in one batch (for small files; stream large ones with open_events)."""
    with open_events(path, sensor_size) as reader:
        batches = list(reader)
        return concatenate(batches) if batches else empty_events(*reader.sensor_size)


def write_events(path: str | os.PathLike, events: EventBatch | Iterable[EventBatch],
                 sensor_size: SensorSize | None = None) -> int:
    """Write one batch or an iterable of batches to .aedat4, .npz or .npy; returns the count."""
    path = Path(path)
    batches = [events] if isinstance(events, EventBatch) else events
    suffix = path.suffix.lower()
    if suffix == ".aedat4":
        it = iter(batches)
        first = next(it, None)
        if first is None and sensor_size is None:
            raise AnonyNoiseError(f"{path}: no events and no sensor size to write")
        size = sensor_size if sensor_size is not None else first.sensor_size
        with Aedat4Writer(path, size) as writer:
            for b in ([first] if first is not None else []):
                writer.write(b)
            for b in it:
                writer.write(b)
            return writer.events_written
    if suffix in (".npz", ".npy"):
        batches = list(batches)
        if not batches:
            if sensor_size is None:
                raise AnonyNoiseError(f"{path}: no events and no sensor size to write")
            joined = empty_events(*_parse_sensor(sensor_size))
        else:
            joined = concatenate(batches)
        (save_npz if suffix == ".npz" else save_npy)(path, joined)
        return len(joined)
    what = f"cannot write {suffix!r}" if suffix else "no file extension"
    raise AnonyNoiseError(f"{path}: {what} (writable: .aedat4, .npz, .npy)")
