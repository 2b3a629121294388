"""The fuzz suite's own machinery: mutators, case generation, the runners and the predicate.
These hold whatever the product does with the cases (test_fuzz_files.py judges that)."""

from __future__ import annotations

import io
import struct
import textwrap
import time

import numpy as np
import pytest

from . import cases as C
from . import mutators as m
from .runner import ForkServer, Result, SubprocessRunner, failure, stderr_lines


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# the predicate


@pytest.mark.parametrize("rc, stderr, timed_out, expected", [
    (0, "", False, None),
    (0, "anonynoise-stream: source ended: ...\n", False, None),
    (2, "anonynoise: error: x.dat: bad\n", False, None),
    (2, "", False, "no-message"),
    (2, "WARNING: The timestamps are not monotonic.\nanonynoise: error: bad\n", False,
     "extra-lines"),
    (1, "anonynoise: internal error: ValueError: x\n", False, "exit-1"),
    (1, "Traceback (most recent call last):\n  ...\nValueError: x\n", False, "traceback"),
    (-9, "", True, "timeout"),
    (-11, "", False, "signal-SIGSEGV"),
    (0, "\n  \nanonynoise: note\n\n", False, None),
])
def test_the_predicate(rc, stderr, timed_out, expected):
    assert failure(Result(rc, "", stderr, 1.0, timed_out)) == expected


# ---------------------------------------------------------------------------------------------
# mutators, on small synthetic files (no real recording needed)


def _dat(n=100):
    header = b"% Height 720\n% Version 2\n% Width 1280\n"
    t = np.arange(n, dtype=np.uint32) * 10 + 5
    w = (np.arange(n, dtype=np.uint32) % 1280) | ((np.arange(n, dtype=np.uint32) % 720) << 14)
    return header + b"\x0c\x08" + np.stack([t, w], 1).astype("<u4").tobytes()


def _dat_times(data):
    end = m.prophesee_header_length(data) + 2
    return np.frombuffer(data[end:], "<u4").reshape(-1, 2)[:, 0].astype(np.int64)


def test_generic_mutators_are_deterministic_and_do_what_they_say():
    data = bytes(range(256)) * 40
    for fn in (m.bit_flips, m.random_bytes, m.truncate, m.zero_chunk, m.duplicate_chunk,
               m.delete_chunk):
        assert fn(data, rng(3)) == fn(data, rng(3)), fn.__name__
        assert fn(data, rng(3)) != data or fn is m.truncate, fn.__name__
    assert m.truncate(data, rng(), at=100) == data[:100]
    assert m.zero_chunk(data, rng(), at=10, length=5)[10:15] == bytes(5)
    assert m.duplicate_chunk(data, rng(), at=10, length=5) == data[:15] + data[10:]
    assert m.delete_chunk(data, rng(), at=10, length=5) == data[:10] + data[15:]
    flipped = m.bit_flips(data, rng(), n=1, lo=1000)
    diff = [i for i in range(len(data)) if flipped[i] != data[i]]
    assert len(diff) == 1 and diff[0] >= 1000
    assert bin(flipped[diff[0]] ^ data[diff[0]]).count("1") == 1
    for fn in (m.bit_flips, m.random_bytes, m.truncate, m.zero_chunk, m.duplicate_chunk,
               m.delete_chunk):  # tiny or empty input, and a protected prefix past the end
        for tiny in (b"", b"x", b"xy"):
            fn(tiny, rng(), lo=5)


def test_prophesee_header_edits():
    data = _dat()
    set_width = m.header_set(data, rng(), key="Width", value=b"32768")
    assert b"% Width 32768\n" in set_width and b"% Width 1280" not in set_width
    assert set_width.endswith(data[m.prophesee_header_length(data):])
    inserted = m.header_set(data, rng(), key="geometry", value=b"20000x20000")
    assert inserted.index(b"% geometry 20000x20000\n") < m.prophesee_header_length(inserted)
    assert b"Height" not in m.header_delete(data, rng(), key="Height")
    assert m.dat_event_size(data, rng(), size_byte=16)[m.prophesee_header_length(data) + 1] \
        == 16


def test_dat_time_jumps():
    data = _dat()
    wrapped = _dat_times(m.dat_time(data, rng(), mode="wrap", at=0.5))
    steps = np.diff(wrapped)
    assert (steps < 0).sum() == 1 and wrapped[50] == 0 and wrapped[49] == (1 << 32) - 10
    jumped = _dat_times(m.dat_time(data, rng(), mode="jump", at=0.5, delta=10**9))
    assert jumped[50] - jumped[49] == 10**9 + 10
    glitch = _dat_times(m.dat_time(data, rng(), mode="glitch", at=0.5))
    assert glitch[50] == (1 << 32) - 1 and glitch[51] == _dat_times(data)[51]


def test_evt2_and_evt3_time_words():
    header = b"% evt 2.0\n"
    th = [(0x8 << 28) | k for k in range(10)]
    words = np.array([w for k in th for w in (k, 0x1 << 28 | 5)], "<u4")
    data = header + words.tobytes()
    out = np.frombuffer(m.evt2_time_high(data, rng(), mode="glitch", at=0.5)[len(header):],
                        "<u4")
    changed = np.flatnonzero(out != words)
    assert len(changed) == 1 and out[changed[0]] >> 28 == 0x8
    assert out[changed[0]] & 0x0FFFFFFF == 5 + (1 << 27)
    header3 = b"% evt 3.0\n"
    w3 = np.array([(0x8 << 12) | k for k in range(10)] + [(0x6 << 12) | 7] * 3, "<u2")
    out3 = np.frombuffer(m.evt3_time(header3 + w3.tobytes(), rng(), mode="max", at=0.0,
                                     word="high")[len(header3):], "<u2")
    assert (out3[:10] == 0x8FFF).all() and (out3[10:] == w3[10:]).all()


def test_aedat4_text_edits_keep_the_length():
    xml = (b'<dv version="2.0">\n    <node name="info">\n        <attr key="sizeX" type="int">'
           b'320</attr>\n        <attr key="sizeY" type="int">240</attr>\n    </node>\n</dv>')
    data = m.AEDAT4_MAGIC + struct.pack("<i", len(xml)) + xml + b"\x00" * 16
    for value in ("2147483647", "0", "abc", ""):
        out = m.aedat4_attr(data, rng(), key="sizeX", value=value, which=-1)
        assert len(out) == len(data)
        assert f'type="int">{value}</attr>'.encode() in out
    assert m.aedat4_header_size(data, rng(), value=0)[14:18] == b"\x00" * 4


def test_npy_mutators():
    records = np.zeros(100, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    records["t"] = np.arange(100) * 7
    data = m._save_npy(records)
    gap = np.load(io.BytesIO(m.npy_events(data, rng(), mode="gap", at=0.5)))
    assert gap["t"][50] - gap["t"][49] == 10**11 + 7
    assert np.load(io.BytesIO(m.npy_zero_d(data, rng(), kind="record"))).shape == ()
    huge = m.npy_header(data, rng(), shape="(1000000000000,)")
    assert b"'shape': (1000000000000,)" in huge and huge.endswith(records.tobytes())
    assert (len(huge) - len(records.tobytes())) % 64 == 0  # the header stays aligned


def test_npz_member_rewrites_one_member():
    buf = io.BytesIO()
    np.savez(buf, t=np.arange(10), x=np.zeros(10, np.int16), y=np.zeros(10, np.int16),
             p=np.zeros(10, np.uint8), width=np.int64(64), height=np.int64(48))
    out = np.load(io.BytesIO(m.npz_member(buf.getvalue(), rng(), mode="width", value=32768)))
    assert int(out["width"]) == 32768 and int(out["height"]) == 48


# ---------------------------------------------------------------------------------------------
# cases from the real recordings


def _bases_or_skip(fmt):
    try:
        return C.bases(fmt)
    except C.MissingData as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("fmt", C.FORMATS)
def test_cases_are_small_deterministic_and_mutated(fmt):
    bases = _bases_or_skip(fmt)
    for base in bases:
        assert len(base.data) < 1_300_000, base.name
    for index in range(6):
        case = C.random_case(fmt, index)
        again = C.random_case(fmt, index)
        assert (case.id, case.data) == (again.id, again.data)
        assert case.id.startswith(f"{fmt}-{index:04d}-")
    assert C.random_case(fmt, 0).data != C.random_case(fmt, 0, seed=1).data or \
        C.random_case(fmt, 0).kind != C.random_case(fmt, 0, seed=1).kind


def test_the_named_cases_differ_from_their_bases():
    for spec in C.FAST:
        bases = _bases_or_skip(spec.fmt)
        assert C.named_case(spec).data != bases[spec.base].data, spec.name


# ---------------------------------------------------------------------------------------------
# the runners


@pytest.fixture(scope="module")
def server():
    with ForkServer() as s:
        yield s


def test_a_timeout_kills_the_whole_process_group(server, tmp_path):
    code = textwrap.dedent(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(tmp_path / 'pid')!r}, "w").write(str(child.pid))
        while True:
            pass
    """)
    for runner in (server, SubprocessRunner()):
        (tmp_path / "pid").unlink(missing_ok=True)
        result = runner.run("python", [], tmp_path, 8.0, code=code)
        assert result.timed_out and result.rc == -9 and failure(result) == "timeout"
        assert 8.0 <= result.elapsed < 30
        assert (tmp_path / "pid").exists(), "the command had not started its child in 8 s"
        pid = int((tmp_path / "pid").read_text())
        state = "?"
        for _ in range(100):  # a killed process lingers a moment, then goes or is a zombie
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                state = None
            if state in (None, "Z"):
                break
            time.sleep(0.05)
        assert state in (None, "Z"), f"the grandchild {pid} survived the timeout ({state})"


def test_the_address_space_limit_holds(server, tmp_path):
    code = "import numpy as np\na = np.ones(1 << 30)\nprint(a.sum())"  # 8 GiB
    for runner in (server, SubprocessRunner()):
        result = runner.run("python", [], tmp_path, 60.0, as_limit=2 << 30, code=code)
        assert result.rc == 1 and "MemoryError" in result.stderr, result


def test_the_fork_server_gives_what_a_fresh_process_gives(server, tmp_path):
    """The same exit status and stderr, stdout, for a few commands both ways."""
    try:
        evt2 = C.bases("evt2")[0]
        npz = C.named_case(next(s for s in C.FAST if s.name == "lengths"))
    except C.MissingData as e:
        pytest.skip(str(e))
    good = tmp_path / "good.raw"
    good.write_bytes(evt2.data)
    cut = tmp_path / "cut.raw"
    cut.write_bytes(evt2.data[:50])  # inside the header
    bad = npz.write(tmp_path)
    runs = [("anonynoise", ["info", str(good)]), ("anonynoise", ["info", str(cut)]),
            ("anonynoise", ["anonymize", str(bad), str(tmp_path / "out.npz")]),
            ("anonynoise", ["info", "--sensor", "0x0", str(good)])]
    for prog, argv in runs:
        forked = server.run(prog, argv, tmp_path, 60)
        fresh = SubprocessRunner().run(prog, argv, tmp_path, 120)
        assert (forked.rc, forked.stdout, stderr_lines(forked.stderr)) == \
            (fresh.rc, fresh.stdout, stderr_lines(fresh.stderr)), (argv, forked, fresh)
