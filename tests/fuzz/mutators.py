"""Mutations of event files: pure functions (data: bytes, rng: numpy Generator, **params) ->
bytes. A parameter left None is drawn from rng; one given is used as is (the fast subset's
named cases fix them all). Nothing here reads a file of its own or keeps state.

Generic (any bytes): bit_flips, random_bytes, truncate, zero_chunk, duplicate_chunk,
delete_chunk.

Format-aware:
  Prophesee '% key value' headers (.raw, .dat): header_set, header_delete, header_long_line,
      dat_event_size (the two bytes after a DAT header: event type and size)
  time jumps in the event words: dat_time (8-byte records, t uint32 first), evt2_time_high
      (32-bit words, type nibble 0x8 = TIME_HIGH, its 28 bits are t >> 6), evt3_time (16-bit
      words, 0x8 = TIME_HIGH and 0x6 = TIME_LOW, 12 bits each of a 24-bit time)
  AEDAT 4: aedat4_attr (a same-length textual edit of the XML inside the header's
      flatbuffer: sizeX, sizeY, compression, ...), aedat4_header_size (the int32 after the
      magic), aedat4_table (the header's dataTablePosition), aedat4_packet (a
      packet's stream id or size; drop, repeat or swap whole packets), aedat4_events (decoded
      and re-encoded with faery: time jumps, extreme times, odd geometry)
  NumPy: npy_events (t gaps of 1e11 us, int64 extremes, backwards), npy_zero_d (shape ()),
      npy_header (the header's shape, descr, fortran_order rewritten as text), npy_header_len,
      npy_as_float4 (a DVS-Gesture N x 4 float array with NaN / inf / huge), npz_member
      (one member of an event .npz replaced: width / height, a t gap, a length mismatch, ...),
      npz_inner (a generic mutation of one member's bytes, zipped again with good CRCs)
"""

from __future__ import annotations

import ast
import io
import re
import struct
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# helpers


def _log_uniform(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer in [low, high], uniform in log: small values as often as large ones."""
    return int(np.exp(rng.uniform(np.log(low), np.log(high + 1)))) if high > low else low


def _chunk(rng, size: int, lo: int, length, at, align: int) -> tuple[int, int]:
    """(at, length) of a chunk of data[lo:size], drawn where not given."""
    lo = min(lo, size)
    if length is None:
        length = _log_uniform(rng, 1, max(1, min(1 << 16, (size - lo) // 2 or 1)))
        if align > 1 and rng.random() < 0.7:
            length = max(align, length - length % align)
    if at is None:
        at = int(rng.integers(lo, max(lo + 1, size - length + 1)))
        if align > 1 and rng.random() < 0.7:
            at -= (at - lo) % align
    return int(at), int(length)


# ---------------------------------------------------------------------------------------------
# generic


def bit_flips(data: bytes, rng, *, n: int | None = None, lo: int = 0) -> bytes:
    """Flip n bits at random places of data[lo:]."""
    if len(data) <= lo:
        return data
    n = _log_uniform(rng, 1, 64) if n is None else n
    out = bytearray(data)
    for pos in rng.integers(lo, len(data), n):
        out[int(pos)] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def random_bytes(data: bytes, rng, *, at: int | None = None, length: int | None = None,
                 lo: int = 0, align: int = 1) -> bytes:
    """Overwrite a chunk with random bytes."""
    at, length = _chunk(rng, len(data), lo, length, at, align)
    junk = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return data[:at] + junk + data[at + length:]


def truncate(data: bytes, rng, *, at: int | None = None, lo: int = 0) -> bytes:
    """Cut the file at `at` (anywhere from lo: inside the header where lo is 0)."""
    if at is None:
        low = min(lo, len(data))
        at = int(rng.integers(low, max(len(data), low + 1)))
    return data[:at]


def zero_chunk(data: bytes, rng, *, at: int | None = None, length: int | None = None,
               lo: int = 0, align: int = 1) -> bytes:
    at, length = _chunk(rng, len(data), lo, length, at, align)
    return data[:at] + bytes(len(data[at:at + length])) + data[at + length:]


def duplicate_chunk(data: bytes, rng, *, at: int | None = None, length: int | None = None,
                    lo: int = 0, align: int = 1) -> bytes:
    """Repeat a chunk right after itself (the file grows by length)."""
    at, length = _chunk(rng, len(data), lo, length, at, align)
    return data[:at + length] + data[at:at + length] + data[at + length:]


def delete_chunk(data: bytes, rng, *, at: int | None = None, length: int | None = None,
                 lo: int = 0, align: int = 1) -> bytes:
    at, length = _chunk(rng, len(data), lo, length, at, align)
    return data[:at] + data[at + length:]


# ---------------------------------------------------------------------------------------------
# Prophesee headers ('% key value' lines, then binary data)


def prophesee_header_length(data: bytes) -> int:
    """Bytes of the '%' lines at the start (as anonynoise.io and expelliarmus read them)."""
    offset = 0
    while offset < len(data) and data[offset:offset + 1] == b"%":
        end = data.find(b"\n", offset)
        if end < 0:
            return len(data)
        line, offset = data[offset:end], end + 1
        if line[1:].strip().lower() == b"end":
            break
    return offset


HUGE_SIZES = (b"16384", b"32768", b"65535", b"65536", b"20000", b"2147483647",
              b"4294967296", b"99999999999999999999", b"0", b"-1", b"-640", b"abc", b"",
              b"1e9", b"640.5", b"0x280", b"1")


GEOMETRIES_TEXT = (b"20000x20000", b"16384x16384", b"32768x720", b"1280x32768",
                   b"32768x32768", b"65535x65535", b"0x0", b"0x720", b"2147483647x1",
                   b"99999999999999999999x720", b"-1x720", b"abcxdef", b"640 by 480", b"",
                   b"1x1", b"640x480x3")


def header_set(data: bytes, rng, *, key: str | None = None, value: bytes | None = None,
               keys: tuple[str, ...] = ("Width", "Height")) -> bytes:
    """Set the header line '% key value' (replaced where the key is there, case-insensitive;
    else inserted as the header's last line)."""
    key = key if key is not None else str(rng.choice(list(keys)))
    if value is None:
        if key.lower() == "geometry":
            value = GEOMETRIES_TEXT[int(rng.integers(0, len(GEOMETRIES_TEXT)))]
        else:
            value = HUGE_SIZES[int(rng.integers(0, len(HUGE_SIZES)))]
    end = prophesee_header_length(data)
    header, body = data[:end], data[end:]
    line = b"% " + key.encode() + (b" " + value if value else b"") + b"\n"
    pattern = re.compile(rb"^% *" + re.escape(key.encode()) + rb"( [^\n]*)?\n",
                         re.IGNORECASE | re.MULTILINE)
    if pattern.search(header):
        header = pattern.sub(lambda m: line, header, count=1)
    else:
        lines = header.splitlines(keepends=True)
        at = len(lines) - 1 if lines and lines[-1].strip().lower() == b"% end" else len(lines)
        header = b"".join(lines[:at]) + line + b"".join(lines[at:])
    return header + body


def header_delete(data: bytes, rng, *, key: str | None = None) -> bytes:
    """Remove a header line (a random one where key is None)."""
    end = prophesee_header_length(data)
    lines = data[:end].splitlines(keepends=True)
    if not lines:
        return data
    if key is None:
        del lines[int(rng.integers(0, len(lines)))]
    else:
        lines = [ln for ln in lines if not re.match(rb"% *" + re.escape(key.encode()) + rb"\b",
                                                    ln, re.IGNORECASE)]
    return b"".join(lines) + data[end:]


def header_long_line(data: bytes, rng, *, length: int | None = None) -> bytes:
    """Insert a very long '%' comment line at the start of the header."""
    length = _log_uniform(rng, 1000, 4 << 20) if length is None else length
    return b"% " + b"x" * length + b"\n" + data


def dat_event_size(data: bytes, rng, *, type_byte: int | None = None,
                   size_byte: int | None = None) -> bytes:
    """Edit the DAT event type and size bytes after the header (size 8 is the only valid)."""
    end = prophesee_header_length(data)
    if len(data) < end + 2:
        return data
    out = bytearray(data)
    if type_byte is None and size_byte is None:
        if rng.random() < 0.5:
            type_byte = int(rng.choice([0, 1, 0x0C, 0x7F, 0xFF]))
        else:
            size_byte = int(rng.choice([0, 1, 4, 7, 9, 16, 0xFF]))
    if type_byte is not None:
        out[end] = type_byte
    if size_byte is not None:
        out[end + 1] = size_byte
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# time jumps in Prophesee event words

DAT_MODES = ("wrap", "jump", "glitch", "backwards", "max")


def dat_time(data: bytes, rng, *, mode: str | None = None, at: float | None = None,
             delta: int | None = None) -> bytes:
    """Change the uint32 timestamps of DAT records from record `at` (a fraction of the file)
    on: wrap (all shifted so that they run up to 2**32 - 1 and start again from 0 at
    record `at`: a 32-bit wrap), jump (+delta),
    glitch (one record's t set to 2**32 - 1), backwards (-delta, floored at 0), max (all
    2**32 - 1 from there)."""
    end = prophesee_header_length(data) + 2
    n = (len(data) - end) // 8
    if n < 2:
        return data
    mode = mode or str(rng.choice(DAT_MODES))
    k = int((rng.uniform(0.05, 0.95) if at is None else at) * n)
    rec = np.frombuffer(data, np.uint32, count=2 * n, offset=end).reshape(n, 2).copy()
    t = rec[:, 0].astype(np.int64)
    if mode == "wrap":  # every time shifted so that they pass 2**32 - 1 at record k
        t = (t + (1 << 32) - t[k]) % (1 << 32)
    elif mode == "jump":
        d = _log_uniform(rng, 10**6, 2**31) if delta is None else delta
        t[k:] = np.minimum(t[k:] + d, (1 << 32) - 1)
    elif mode == "glitch":
        t[k] = (1 << 32) - 1
    elif mode == "backwards":
        d = _log_uniform(rng, 1, 10**7) if delta is None else delta
        t[k:] = np.maximum(t[k:] - d, 0)
    elif mode == "max":
        t[k:] = (1 << 32) - 1
    else:
        raise ValueError(mode)
    rec[:, 0] = t.astype(np.uint32)
    return data[:end] + rec.tobytes() + data[end + 8 * n:]


EVT_MODES = ("glitch", "jump", "backwards", "wrap", "max")


def evt2_time_high(data: bytes, rng, *, mode: str | None = None, at: float | None = None,
                   delta: int | None = None) -> bytes:
    """Change EVT 2.0 TIME_HIGH words (type 0x8; bits 0-27 hold t >> 6) from the one at `at`
    (a fraction of them) on: glitch (that one word alone: +delta, default 2**27, a time
    2**33 us ahead, then back), jump (all later ones +delta), backwards (-delta), wrap (all
    shifted so that they pass 2**28 - 1 and start again at 0 at that word), max (all
    0x0FFFFFFF from there)."""
    end = prophesee_header_length(data)
    n = (len(data) - end) // 4
    words = np.frombuffer(data, np.uint32, count=n, offset=end).copy()
    idx = np.flatnonzero((words >> 28) == 0x8)
    if not len(idx):
        return data
    mode = mode or str(rng.choice(EVT_MODES))
    k = int((rng.uniform(0.05, 0.95) if at is None else at) * len(idx))
    k = min(k, len(idx) - 1)
    payload = (words[idx] & 0x0FFFFFFF).astype(np.int64)
    mask = (1 << 28) - 1
    if mode == "glitch":
        d = (1 << 27) if delta is None else delta
        payload[k] = min(payload[k] + d, mask)
    elif mode == "jump":
        d = _log_uniform(rng, 1 << 10, 1 << 27) if delta is None else delta
        payload[k:] = np.minimum(payload[k:] + d, mask)
    elif mode == "backwards":
        d = _log_uniform(rng, 1, 1 << 20) if delta is None else delta
        payload[k:] = np.maximum(payload[k:] - d, 0)
    elif mode == "wrap":  # all shifted: they pass 2**28 - 1 and start again at word k
        payload = (payload + mask + 1 - payload[k]) & mask
    elif mode == "max":
        payload[k:] = mask
    else:
        raise ValueError(mode)
    words[idx] = (0x8 << 28) | payload.astype(np.uint32)
    return data[:end] + words.tobytes() + data[end + 4 * n:]


def evt3_time(data: bytes, rng, *, mode: str | None = None, at: float | None = None,
              delta: int | None = None, word: str | None = None) -> bytes:
    """Change EVT 3.0 TIME_HIGH (type 0x8) or TIME_LOW (0x6) words (12 bits each of a 24-bit
    time) from the one at `at` on, as evt2_time_high (glitch: one word's payload set to
    payload + delta, default 0x800, modulo 2**12)."""
    end = prophesee_header_length(data)
    n = (len(data) - end) // 2
    words = np.frombuffer(data, np.uint16, count=n, offset=end).copy()
    word = word or ("high" if rng.random() < 0.8 else "low")
    kind = 0x8 if word == "high" else 0x6
    idx = np.flatnonzero((words >> 12) == kind)
    if not len(idx):
        return data
    mode = mode or str(rng.choice(EVT_MODES))
    k = min(int((rng.uniform(0.05, 0.95) if at is None else at) * len(idx)), len(idx) - 1)
    payload = (words[idx] & 0x0FFF).astype(np.int64)
    if mode == "glitch":
        payload[k] = (payload[k] + (0x800 if delta is None else delta)) & 0xFFF
    elif mode == "jump":
        d = int(rng.integers(1, 0x1000)) if delta is None else delta
        payload[k:] = (payload[k:] + d) & 0xFFF
    elif mode == "backwards":
        d = int(rng.integers(1, 0x800)) if delta is None else delta
        payload[k:] = np.maximum(payload[k:] - d, 0)
    elif mode == "wrap":  # all shifted: the 12-bit TIME_HIGH wraps at word k
        payload = (payload + 0x1000 - payload[k]) & 0xFFF
    elif mode == "max":
        payload[k:] = 0xFFF
    else:
        raise ValueError(mode)
    words[idx] = (kind << 12) | payload.astype(np.uint16)
    return data[:end] + words.tobytes() + data[end + 2 * n:]


# ---------------------------------------------------------------------------------------------
# AEDAT 4: "#!AER-DAT4.0\r\n", int32 header size, the header (a flatbuffer IOHeader:
# compression, dataTablePosition int64, the XML description), then packets (int32 stream id,
# int32 size, a compressed flatbuffer) and the file data table.

AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"


def aedat4_layout(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(end of the header, [(offset, total length) of each packet up to the data table or
    the first one that does not fit])."""
    if not data.startswith(AEDAT4_MAGIC) or len(data) < len(AEDAT4_MAGIC) + 4:
        return len(data), []
    (size,) = struct.unpack_from("<i", data, len(AEDAT4_MAGIC))
    pos = len(AEDAT4_MAGIC) + 4 + max(size, 0)
    header_end = pos
    table = aedat4_table_position(data)
    stop = table if table is not None and header_end <= table <= len(data) else len(data)
    packets = []
    while pos + 8 <= stop:
        _, length = struct.unpack_from("<ii", data, pos)
        if length < 0 or pos + 8 + length > stop:
            break
        packets.append((pos, 8 + length))
        pos += 8 + length
    return header_end, packets


def aedat4_table_position(data: bytes) -> int | None:
    """The header's dataTablePosition: the int64 in the header's flatbuffer that points to
    the end part of the file."""
    offset = _table_offset(data)
    return None if offset is None else struct.unpack_from("<q", data, offset)[0]


def _table_offset(data: bytes) -> int | None:
    start = len(AEDAT4_MAGIC) + 4
    if len(data) < start:
        return None
    (size,) = struct.unpack_from("<i", data, start - 4)
    header_end = start + max(size, 0)
    xml = data.find(b"<dv", start)
    stop = min(xml if xml > 0 else start + 64, start + 64)
    for offset in range(start, stop - 7):
        (value,) = struct.unpack_from("<q", data, offset)
        if header_end < value <= len(data) and value > len(data) // 2:
            return offset
    return None


ATTR_VALUES = {
    "sizeX": ("20000", "32768", "65535", "2147483647", "99999999999", "0", "-1", "-346",
              "abc", "", "1"),
    "sizeY": ("20000", "32768", "65535", "2147483647", "99999999999", "0", "-1", "-260",
              "abc", "", "1"),
    "compression": ("NONE", "ZSTD", "LZ4_HIGH", "ZSTD_HIGH", "BOGUS", ""),
    "typeIdentifier": ("FRME", "IMUS", "TRIG", "XXXX", ""),
}


def aedat4_attr(data: bytes, rng, *, key: str | None = None, value: str | None = None,
                which: int | None = None) -> bytes:
    """Set an <attr key="KEY" ...>VALUE</attr> of the header's XML, keeping the file's length
    (the flatbuffer around the XML holds its length): the indentation after the attribute
    gives or takes the difference. which: the occurrence (a stream each), all if -1."""
    key = key or str(rng.choice(list(ATTR_VALUES)))
    value = value if value is not None else str(rng.choice(ATTR_VALUES[key]))
    pattern = re.compile(rb'(<attr key="' + re.escape(key.encode()) +
                         rb'" type="[a-z]+">)([^<]*)(</attr>)(\s*)')
    matches = list(pattern.finditer(data, 0, 1 << 16))
    if not matches:
        return data
    if which is None:
        which = int(rng.integers(-1, len(matches)))
    chosen = matches if which == -1 else [matches[min(which, len(matches) - 1)]]
    out = data
    for m in reversed(chosen):  # from the end: earlier offsets stay valid
        new = value.encode()
        space = m.group(4)
        spare = len(m.group(2)) + len(space) - len(new)
        if spare < 1:  # keep at least the newline
            continue
        space = (space[:1] + b" " * (spare - 1)) if space.startswith(b"\n") else b" " * spare
        out = out[:m.start()] + m.group(1) + new + m.group(3) + space + out[m.end():]
    return out


def aedat4_header_size(data: bytes, rng, *, value: int | None = None) -> bytes:
    """Set the int32 header size after the magic."""
    at = len(AEDAT4_MAGIC)
    if len(data) < at + 4:
        return data
    (size,) = struct.unpack_from("<i", data, at)
    if value is None:
        value = int(rng.choice([0, 1, -1, -(1 << 31), (1 << 31) - 1, size - 1, size + 1,
                                size + 8, size * 2, len(data), len(data) + 1]))
    return data[:at] + struct.pack("<i", value) + data[at + 4:]


def aedat4_table(data: bytes, rng, *, value: int | None = None) -> bytes:
    """Set the header's dataTablePosition (where the index of packets at the end starts)."""
    offset = _table_offset(data)
    if offset is None:
        return data
    (old,) = struct.unpack_from("<q", data, offset)
    if value is None:
        value = int(rng.choice([0, -1, 1, old - 1, old + 1, old + 8, len(data), len(data) + 1,
                                (1 << 62), -(1 << 63), 18]))
    return data[:offset] + struct.pack("<q", value) + data[offset + 8:]


PACKET_MODES = ("size", "stream", "drop", "repeat", "swap", "zero")


def aedat4_packet(data: bytes, rng, *, mode: str | None = None, index: int | None = None,
                  value: int | None = None) -> bytes:
    """Edit the packet at `index`: its size field (value or a drawn odd one), its stream id,
    drop it, repeat it (a copy right after it), swap it with the next one, or zero its body."""
    _, packets = aedat4_layout(data)
    if not packets:
        return data
    mode = mode or str(rng.choice(PACKET_MODES))
    i = int(rng.integers(0, len(packets))) if index is None else min(index, len(packets) - 1)
    pos, length = packets[i]
    if mode == "size":
        if value is None:
            value = int(rng.choice([0, 1, -1, -(1 << 31), (1 << 31) - 1, length, length - 9,
                                    length * 4, len(data)]))
        return data[:pos + 4] + struct.pack("<i", value) + data[pos + 8:]
    if mode == "stream":
        value = int(rng.choice([1, 2, 3, 4, 99, -1, (1 << 31) - 1])) if value is None else value
        return data[:pos] + struct.pack("<i", value) + data[pos + 4:]
    if mode == "drop":
        return data[:pos] + data[pos + length:]
    if mode == "repeat":
        return data[:pos + length] + data[pos:pos + length] + data[pos + length:]
    if mode == "swap":
        if i + 1 >= len(packets):
            return data
        pos2, length2 = packets[i + 1]
        return data[:pos] + data[pos2:pos2 + length2] + data[pos:pos + length] + \
            data[pos2 + length2:]
    if mode == "zero":
        return data[:pos + 8] + bytes(length - 8) + data[pos + length:]
    raise ValueError(mode)


@lru_cache(maxsize=8)
def aedat4_decode(data: bytes) -> tuple[np.ndarray, int, int]:
    """The events of a valid AEDAT 4 file (PACKED_DTYPE records) and its sensor size."""
    from anonynoise.events import to_packed
    from anonynoise.io import read_events

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / "base.aedat4"
        path.write_bytes(data)
        events = read_events(path)
    return to_packed(events), events.width, events.height


def aedat4_encode(records: np.ndarray, width: int, height: int) -> bytes:
    """An AEDAT 4 file (faery's encoder, as anonynoise.io.Aedat4Writer writes, with no check of
    times or sizes) of records with fields t (any int64, cast to uint64), x, y, p."""
    from faery import aedat

    events = np.zeros(len(records), [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
    events["t"] = records["t"].astype(np.int64).view(np.uint64)
    events["x"], events["y"] = records["x"], records["y"]
    events["on"] = records["p"] != 0
    attr = aedat.DescriptionAttribute
    info = aedat.DescriptionNode("info", "/outInfo/0/info/", {
        "sizeX": attr("int", int(width)), "sizeY": attr("int", int(height)),
        "source": attr("string", "fuzz")}, [])
    node = aedat.DescriptionNode("0", "/outInfo/0/", {
        "compression": attr("string", "LZ4"), "originalModuleName": attr("string", "fuzz"),
        "originalOutputName": attr("string", "events"),
        "typeIdentifier": attr("string", "EVTS")}, [info])
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / "case.aedat4"
        with aedat.Encoder(path=path, compression=aedat.LZ4_DEFAULT,
                           description=[aedat.DescriptionNode("outInfo", "/outInfo/", {},
                                                              [node])]) as encoder:
            step = 4096  # several packets, as a recorder writes them
            for i in range(0, len(events), step):
                encoder.write(0, events[i:i + step])
        return path.read_bytes()


# faery writes non-decreasing uint64 times only: backwards times come from aedat4_packet
# (repeat, swap); negative int64 times are uint64 times past 2**63
TIME_MODES = ("gap", "int64-max", "negative", "uint64-top", "uint64-max", "all-same",
              "one-event", "empty")
GEOMETRIES = ((20000, 20000), (16384, 16384), (32768, 32768), (32769, 1), (65535, 65535),
              (0, 0), (1, 1), (-1, 240), (2147483647, 1))


def aedat4_events(data: bytes, rng, *, mode: str | None = None, size=None,
                  gap: int | None = None, at: float | None = None,
                  limit: int = 60_000) -> bytes:
    """Decode a valid AEDAT 4 file and write its first `limit` events again (faery) with a time
    change (TIME_MODES: gap: +gap, default 1e11 us, from event `at` on; int64-max: times
    from there up to the int64 limit; negative: every time below 0 as int64; uint64-top:
    the top bit set from there on; uint64-max: 2**64 - 1 from there on; all-same;
    one-event; empty) or with the sensor size `size` (mode "geometry": the header's text)."""
    records, width, height = aedat4_decode(data)
    records = records[:limit].copy()
    mode = mode or str(rng.choice(TIME_MODES + ("geometry",) * 3))
    k = int((rng.uniform(0.05, 0.95) if at is None else at) * len(records))
    t = records["t"]
    if mode == "gap":
        t[k:] += int(10**11 if gap is None else gap)
    elif mode == "int64-max":
        t[k:] = np.iinfo(np.int64).max - (t[-1] - t[k:])
    elif mode == "negative":
        t[:] -= t[-1] + 1
    elif mode == "uint64-top":
        t[k:] |= np.int64(-(1 << 63))
    elif mode == "uint64-max":
        t[k:] = -1
    elif mode == "all-same":
        t[:] = t[0]
    elif mode == "one-event":
        records = records[:1]
    elif mode == "empty":
        records = records[:0]
    elif mode == "geometry":  # written with the true size, then the header's text edited
        if size is None:
            size = GEOMETRIES[int(rng.integers(0, len(GEOMETRIES)))]
        out = aedat4_encode(records, width, height)
        for key, value in zip(("sizeX", "sizeY"), size):
            out = aedat4_attr(out, rng, key=key, value=str(value), which=-1)
        return out
    else:
        raise ValueError(mode)
    return aedat4_encode(records, width, height)


# ---------------------------------------------------------------------------------------------
# NumPy .npy and .npz


def _load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _save_npy(array: np.ndarray) -> bytes:
    if array.dtype.names:  # padding bytes of an aligned dtype: zeros, not whatever memory held
        clean = np.zeros(array.shape, array.dtype)
        for name in array.dtype.names:
            clean[name] = array[name]
        array = clean
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


NPY_MODES = ("gap", "int64-max", "int64-min", "backwards", "negative", "all-same", "empty",
             "one-event", "xy-out", "p-odd")


def npy_events(data: bytes, rng, *, mode: str | None = None, at: float | None = None,
               gap: int | None = None) -> bytes:
    """Rewrite the t (or x, y, p) field of a structured event .npy: gap (+gap, default
    1e11 us, from event `at` on), int64-max / int64-min (times at the limits), backwards,
    negative, all-same, empty, one-event, xy-out (coordinates past the sensor), p-odd
    (polarities 2..255)."""
    array = _load_npy(data)
    if not array.dtype.names or array.ndim != 1 or not len(array):
        return data
    return _save_npy(_events_mutation(array.copy(), rng, mode, at, gap))


def _events_mutation(array, rng, mode, at, gap):
    mode = mode or str(rng.choice(NPY_MODES))
    n = len(array)
    k = int((rng.uniform(0.05, 0.95) if at is None else at) * n)
    t = array["t"]
    i64 = np.iinfo(np.int64)
    if mode == "gap":
        t[k:] += int(10**11 if gap is None else gap)
    elif mode == "int64-max":
        t[k:] = i64.max - (t[-1] - t[k:])
    elif mode == "int64-min":
        t[:k] = i64.min + (t[:k] - t[0])
    elif mode == "backwards":
        t[k:] -= int(_log_uniform(rng, 1, 10**9) if gap is None else gap)
    elif mode == "negative":
        t[:] -= t[-1] + 1
    elif mode == "all-same":
        t[:] = t[0]
    elif mode == "empty":
        array = array[:0]
    elif mode == "one-event":
        array = array[:1]
    elif mode == "xy-out":
        array["x"][k:] = np.iinfo(array["x"].dtype).max
        array["y"][k:] = np.iinfo(array["y"].dtype).min if array["y"].dtype.kind == "i" else 0
    elif mode == "p-odd":
        array["p"][k:] = int(rng.integers(2, 256)) if array["p"].dtype.itemsize == 1 else 7
    else:
        raise ValueError(mode)
    return array


def npy_zero_d(data: bytes, rng, *, kind: str | None = None) -> bytes:
    """A shape () array: one structured record (kind "record") or a float (kind "float")."""
    kind = kind or str(rng.choice(["record", "float", "int"]))
    array = _load_npy(data)
    if kind == "record" and array.dtype.names and array.size:
        return _save_npy(np.array(array.reshape(-1)[0], dtype=array.dtype))
    if kind == "int":
        return _save_npy(np.array(7, dtype=np.int64))
    return _save_npy(np.array(1.5))


def npy_split(data: bytes) -> tuple[bytes, dict, bytes]:
    """(magic and version, header dict, data) of an .npy."""
    major = data[6]
    if major == 1:
        (hlen,) = struct.unpack_from("<H", data, 8)
        start = 10
    else:
        (hlen,) = struct.unpack_from("<I", data, 8)
        start = 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin-1"))
    return data[:8], header, data[start + hlen:]


def npy_join(header_text: str, body: bytes) -> bytes:
    """An .npy of a header dict's text (written as is) and data (version 1.0 or 2.0)."""
    text = header_text.encode("latin-1")
    for major, fmt, prefix in ((1, "<H", 10), (2, "<I", 12)):
        total = prefix + len(text) + 1
        pad = (-total) % 64
        hlen = len(text) + pad + 1
        if hlen < (1 << (8 * struct.calcsize(fmt))):
            return (b"\x93NUMPY" + bytes([major, 0]) + struct.pack(fmt, hlen) + text +
                    b" " * pad + b"\n" + body)
    raise ValueError("header too long")


HUGE_SHAPES = ("(1000000000000,)", "(4611686018427387904,)", "(9223372036854775807,)",
               "(-1,)", "(0,)", "()", "(2, 3)", "(10, 1000000000)", "(1000000000, 4)",
               "(3.5,)", "(N,)")
DESCRS = ("'<f8'", "'|V13'", "[('t', '<f8'), ('x', '<i2'), ('y', '<i2'), ('p', 'u1')]",
          "[('t', '>i8'), ('x', '>i2'), ('y', '>i2'), ('p', 'u1')]",
          "[('t', '<i4'), ('x', '<i2'), ('y', '<i2'), ('p', 'u1')]",
          "[('t', '<i8'), ('x', '<i2'), ('y', '<i2')]",
          "[('t', '<i8'), ('x', '<i8'), ('y', '<i8'), ('p', '<i8')]",
          "[('T', '<i8'), ('x', '<i2'), ('y', '<i2'), ('p', 'u1')]",
          "[('t', '<u8'), ('x', '<u2'), ('y', '<u2'), ('p', '?')]",
          "[('t', '<i8', (2,)), ('x', '<i2'), ('y', '<i2'), ('p', 'u1')]",
          "'O'", "'<U4'", "'bogus'")


def npy_header(data: bytes, rng, *, shape: str | None = None, descr: str | None = None,
               fortran: bool | None = None) -> bytes:
    """Rewrite the .npy header's dict as text: shape (e.g. a huge declared length over the
    same small data), descr, fortran_order. Those not given or drawn keep their values."""
    try:
        _, header, body = npy_split(data)
    except (ValueError, SyntaxError, struct.error, IndexError):
        return data
    if shape is None and descr is None and fortran is None:
        what = rng.integers(0, 3)
        if what == 0:
            shape = str(rng.choice(HUGE_SHAPES))
        elif what == 1:
            descr = str(rng.choice(DESCRS))
        else:
            fortran = True
    text_descr = descr if descr is not None else repr(np.lib.format.dtype_to_descr(
        np.dtype(header["descr"]) if not isinstance(header["descr"], list)
        else np.dtype([tuple(f) for f in header["descr"]])))
    text_shape = shape if shape is not None else repr(tuple(header["shape"]))
    text_fortran = repr(fortran if fortran is not None else header["fortran_order"])
    return npy_join(f"{{'descr': {text_descr}, 'fortran_order': {text_fortran}, "
                    f"'shape': {text_shape}, }}", body)


def npy_header_len(data: bytes, rng, *, value: int | None = None) -> bytes:
    """Set the header length field (uint16 of a version 1.0 .npy)."""
    if len(data) < 10 or data[6] != 1:
        return data
    (old,) = struct.unpack_from("<H", data, 8)
    value = int(rng.choice([0, 1, old - 1, old + 1, old + 64, 65535])) if value is None \
        else value
    return data[:8] + struct.pack("<H", value & 0xFFFF) + data[10:]


def npy_as_float4(data: bytes, rng, *, poison: str | None = None) -> bytes:
    """The events as tonic's DVS-Gesture N x 4 float array (x, y, p, t in ms), with poison
    values from the middle on: nan, inf, huge (1e30), negative, or none."""
    array = _load_npy(data)
    if not array.dtype.names or array.ndim != 1 or not len(array):
        return data
    out = np.stack([array["x"], array["y"], array["p"],
                    (array["t"] - array["t"][0]) / 1000.0], axis=1).astype(np.float32)
    poison = poison or str(rng.choice(["nan", "inf", "huge", "negative", "none", "x-nan"]))
    k = len(out) // 2
    col = 0 if poison == "x-nan" else 3
    value = {"nan": np.nan, "inf": np.inf, "huge": 1e30, "negative": -1e6, "none": None,
             "x-nan": np.nan}[poison]
    if value is not None:
        out[k:, col] = value
    return _save_npy(out)


NPZ_MODES = ("width", "height", "size-array", "size-float", "t-gap", "t-int64", "t-float-nan",
             "lengths", "missing", "t-2d", "x-huge", "t-object-free")


def npz_member(data: bytes, rng, *, mode: str | None = None, value=None) -> bytes:
    """Rewrite an event .npz (as anonynoise.io.save_npz writes it) with one member changed:
    width / height (value, or drawn: 32768, 20000, 0, -1, 2**40), size-array (width of shape
    (1,)), size-float (width 640.0), t-gap (+1e11 us from the middle), t-int64 (times at the
    int64 limit), t-float-nan (t as float with NaN), lengths (x one shorter), missing (no p),
    t-2d (t of shape (n, 1)), x-huge (x as int64 past any sensor)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {name[:-4]: np.lib.format.read_array(archive.open(name),
                                                            allow_pickle=False)
                       for name in archive.namelist() if name.endswith(".npy")}
    except (zipfile.BadZipFile, ValueError, OSError, KeyError):
        return data
    if not {"t", "x", "y", "p", "width", "height"} <= set(members):
        return data
    mode = mode or str(rng.choice(NPZ_MODES))
    n = len(members["t"])
    if mode in ("width", "height"):
        if value is None:
            value = int(rng.choice([16384, 32768, 32769, 20000, 65535, 0, -1, 1 << 40]))
        members[mode] = np.array(value, dtype=np.int64)
    elif mode == "size-array":
        members["width"] = np.array([members["width"]])
    elif mode == "size-float":
        members["width"] = np.array(float(members["width"]))
    elif mode == "t-gap":
        members["t"] = members["t"].copy()
        members["t"][n // 2:] += int(10**11 if value is None else value)
    elif mode == "t-int64":
        t = members["t"].astype(np.int64)
        members["t"] = np.iinfo(np.int64).max - (t[-1] - t)
    elif mode == "t-float-nan":
        t = members["t"].astype(np.float64)
        t[n // 2] = np.nan
        members["t"] = t
    elif mode == "lengths":
        members["x"] = members["x"][:-1]
    elif mode == "missing":
        del members["p"]
    elif mode == "t-2d":
        members["t"] = members["t"].reshape(-1, 1)
    elif mode == "x-huge":
        members["x"] = members["x"].astype(np.int64) + (1 << 40)
    elif mode == "t-object-free":
        members["t"] = members["t"].astype(np.uint64) | np.uint64(1 << 63)
    else:
        raise ValueError(mode)
    buf = io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


INNER_OPS = ("bitflip", "zero", "truncate", "dup", "delete", "random")


def npz_inner(data: bytes, rng, *, member: str | None = None, op: str | None = None,
              compressed: bool | None = None) -> bytes:
    """Damage one member's bytes inside an .npz (a generic mutation: INNER_OPS) and zip it
    again with correct CRCs, so that the reader gets past the zip's own checks; compressed:
    the new archive deflated (as np.savez_compressed writes), op "none" to change nothing
    else."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError):
        return data
    if not members:
        return data
    names = sorted(members)
    name = f"{member}.npy" if member is not None and f"{member}.npy" in members else \
        names[int(rng.integers(0, len(names)))]
    op = op or str(rng.choice(INNER_OPS))
    fn = {"bitflip": bit_flips, "zero": zero_chunk, "truncate": truncate,
          "dup": duplicate_chunk, "delete": delete_chunk, "random": random_bytes,
          "none": None}[op]
    if fn is not None:
        members[name] = fn(members[name], rng)
    compressed = bool(rng.random() < 0.3) if compressed is None else compressed
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for key in names:
            archive.writestr(zipfile.ZipInfo(key, (1980, 1, 1, 0, 0, 0)), members[key],
                             compress_type=method)
    return buf.getvalue()
