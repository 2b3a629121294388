"""Bad input and hostile flags against the core: damaged files end in one AnonyNoiseError
within a bound, time jumps cost no empty windows, declared sizes do not drive allocation, and
no flag combination lets the raw events through (issue 36)."""

import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from anonynoise.anonymizer import AnonymizationRefused, Anonymizer
from anonynoise.checkpoint import Representation, save_checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import MAX_SENSOR_SIZE, make_events
from anonynoise.examples import clustered_stream
from anonynoise.filters import FilterConfig
from anonynoise.io import open_events, read_events, save_npy
from anonynoise.models import LightAnonNet
from anonynoise.identity import NovelShare
from anonynoise.windower import Windower

HANG_BOUND_S = 60  # a read that has not ended by then is the hang of issue 36


def _read_in_child(path, limit_gb=4):
    """Read a file in a child under an address-space limit and a time bound; (status, out)."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({limit_gb} << 30, {limit_gb} << 30))
        from anonynoise.io import open_events
        from anonynoise.errors import AnonyNoiseError
        try:
            with open_events({str(path)!r}) as r:
                print("events", sum(len(b) for b in r))
        except AnonyNoiseError as e:
            print("error", e)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=HANG_BOUND_S)
    return done.returncode, done.stdout.strip(), done.stderr


def _first_packet(data: bytes) -> int:
    return 18 + struct.unpack_from("<i", data, 14)[0]


@pytest.mark.parametrize("damage", ["zeroed", "deleted-byte", "duplicated-chunk", "bit-flips"])
def test_damaged_aedat4_ends_in_one_error_not_a_hang(real_file, tmp_path, damage):
    # each of these made dv-processing 2.0.4 spin for ever, holding the GIL
    data = bytearray(real_file("face_dvxplorer.aedat4").read_bytes())
    rng = np.random.default_rng(7)
    at = _first_packet(data) + 40_000
    if damage == "zeroed":
        data[at:at + 16] = bytes(16)
    elif damage == "deleted-byte":
        del data[at]
    elif damage == "duplicated-chunk":
        data[at:at] = data[at:at + 65_536]
    else:
        for o in rng.integers(_first_packet(data), len(data), 200):
            data[int(o)] ^= 1 << int(rng.integers(8))
    path = tmp_path / f"{damage}.aedat4"
    path.write_bytes(bytes(data))
    status, out, err = _read_in_child(path)
    assert status == 0, err
    assert out.startswith("error ") and "corrupt" in out or "truncated" in out, out


@pytest.mark.parametrize("size", [-5, 0, 0x7FFFFFFF])
def test_aedat4_packet_size_is_checked_before_the_decoder_allocates(real_file, tmp_path, size):
    data = bytearray(real_file("face_dvxplorer.aedat4").read_bytes())
    first = _first_packet(data)
    data[first + 4:first + 8] = struct.pack("<i", size)
    path = tmp_path / "size.aedat4"
    path.write_bytes(bytes(data))
    status, out, err = _read_in_child(path)  # faery aborted the process on -5 (4 GiB asked)
    assert status == 0, err
    assert out.startswith("error ") and f"{size} bytes" in out, out


def test_real_aedat4_files_read_exactly_as_before(real_file):
    with open_events(real_file("robotarm_davis346.aedat4")) as r:
        assert sum(len(b) for b in r) == 117_667
        assert r.info.other_streams == {"frames": 3, "imu": 130, "triggers": 15}


def _dat(path, header: bytes, records: np.ndarray = np.zeros(0, "<u8")):
    ts = np.arange(len(records), dtype="<u4")
    body = np.empty(len(records), [("t", "<u4"), ("w", "<u4")])
    body["t"], body["w"] = ts, 0
    path.write_bytes(header + bytes([0x0C, 0x08]) + body.tobytes())
    return path


@pytest.mark.parametrize("header, message", [
    (b"% Width 32768\n% Height 4\n", "must be in 1..16384"),
    (b"% Width 8000\n% Height 6000\n", "larger than any event sensor"),
    (b"% Width 4\n% Height abc\n", "corrupt DAT header"),
])
def test_dat_header_sizes_are_checked(tmp_path, header, message):
    path = _dat(tmp_path / "h.dat", header + b"% Version 2\n", np.zeros(4, "<u8"))
    with pytest.raises(AnonyNoiseError, match=message):
        open_events(path)


def test_a_large_declared_sensor_needs_the_caller_to_say_so(tmp_path):
    w = MAX_SENSOR_SIZE[0] + 1
    path = _dat(tmp_path / "w.dat", f"% Width {w}\n% Height 4\n% Version 2\n".encode(),
                np.zeros(4, "<u8"))
    with pytest.raises(AnonyNoiseError, match="larger than any event sensor"):
        open_events(path)
    assert open_events(path, (w, 4)).sensor_size == (w, 4)


def test_raw_geometry_that_is_not_a_size_is_one_error(tmp_path):
    path = tmp_path / "g.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 20000xabc\n% end\n" + bytes(8))
    with pytest.raises(AnonyNoiseError, match="corrupt RAW header"):
        open_events(path)


def test_npy_shapes_that_are_not_events(tmp_path):
    dtype = [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")]
    np.save(tmp_path / "scalar.npy", np.zeros((), dtype))
    with pytest.raises(AnonyNoiseError, match="shape \\(\\)"):
        open_events(tmp_path / "scalar.npy", (4, 4))
    np.save(tmp_path / "ten.npy", np.zeros(10, dtype))
    data = (tmp_path / "ten.npy").read_bytes().replace(b"(10,), }", b"(10**13,)}")
    (tmp_path / "huge.npy").write_bytes(data)
    with pytest.raises(AnonyNoiseError, match="not a readable NumPy file"):
        open_events(tmp_path / "huge.npy", (4, 4))
    data = (tmp_path / "ten.npy").read_bytes().replace(b"(10,), }", b"(99999,),}")
    (tmp_path / "long.npy").write_bytes(data)
    with pytest.raises(AnonyNoiseError, match="declares"):
        open_events(tmp_path / "long.npy", (4, 4))


def test_int64_extreme_timestamps_are_one_error(tmp_path):
    with pytest.raises(AnonyNoiseError, match="beyond"):
        make_events([0, 2 ** 63 - 1], [0, 0], [0, 0], [0, 1], 4, 4)
    with pytest.raises(AnonyNoiseError, match="beyond"):
        make_events([-(2 ** 63), 0], [0, 0], [0, 0], [0, 1], 4, 4)


def test_a_time_jump_costs_no_empty_windows():
    t = np.array([0, 10, 20_000, 20_000 + 10 ** 11, 20_000 + 10 ** 11 + 60_000], np.int64)
    events = make_events(t, [0] * 5, [0] * 5, [1] * 5, 4, 4)
    windower = Windower(50_000, 4, 4)
    windows = windower.push(events) + windower.flush()
    assert [(w.t_start, len(w.events)) for w in windows] == [
        (0, 3), (10 ** 11, 1), (10 ** 11 + 50_000, 1)]  # the grid kept, the gap skipped
    assert windower.gaps.count == 1 and windower.gaps.largest_us == 10 ** 11
    # a short quiet stretch is still cut into empty windows: consumers see time pass
    quiet = Windower(50_000, 4, 4)
    windows = quiet.push(make_events([0, 1_000_000], [0, 0], [0, 0], [1, 1], 4, 4))
    assert len(windows) == 20 and quiet.gaps.count == 0


def test_a_jump_in_a_file_replays_at_once(tmp_path):
    from stream.sources import ReplaySource

    t = np.concatenate([np.arange(0, 200_000, 1_000), 4_295_000_000 + np.arange(0, 200_000,
                                                                                 1_000)])
    n = len(t)
    path = tmp_path / "wrap.npy"
    save_npy(path, make_events(t, np.zeros(n), np.zeros(n), np.ones(n), 8, 8))
    source = ReplaySource(path, speed=1.0, sensor_size=(8, 8))
    start = time.monotonic()
    assert sum(len(b) for b in source) == n
    assert time.monotonic() - start < 5  # 0.4 s of events; before, 4,295 s of waiting


def test_empty_windows_skip_the_net(strong_anonymizer):
    calls = []
    net_forward = strong_anonymizer.anonymize_tensor
    strong_anonymizer.anonymize_tensor = lambda c: calls.append(1) or net_forward(c)
    out = strong_anonymizer.anonymize(make_events([], [], [], [], 32, 32), 0, 20_000)
    assert len(out.events) == 0 and out.tensor is None and not calls


@pytest.fixture
def strong_anonymizer(tmp_path):
    torch.manual_seed(0)
    net = LightAnonNet(10, width=8)
    torch.nn.init.constant_(net.head.bias, 1.0)
    path = save_checkpoint(tmp_path / "strong.pt", net, Representation(window_us=20_000))
    return Anonymizer(path, "cpu", seed=1)


@pytest.fixture
def identity_checkpoint(tmp_path):
    net = LightAnonNet(10, width=8)
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)  # scale 0: the output is the input
    return save_checkpoint(tmp_path / "identity.pt", net, Representation(window_us=20_000))


@pytest.mark.parametrize("filters", [None, "slots", "refractory"])
def test_no_flag_lets_a_near_identity_net_publish_raw_events(identity_checkpoint, filters):
    config = None if filters is None else FilterConfig(filters)
    anonymizer = Anonymizer(identity_checkpoint, "cpu", allow_weak=True, filters=config)
    assert any("near-identity" in w for w in anonymizer.weakened)
    events = clustered_stream(128, 128, duration_s=0.1, rate=1e6, seed=3)
    windower = Windower(20_000, 128, 128)
    windows = windower.push(events) + windower.flush()
    assert len(windows) >= 4
    for w in windows:
        with pytest.raises(AnonymizationRefused, match="repeats the input"):
            anonymizer.anonymize(w.events, w.t_start, w.t_end)
    assert anonymizer.refused == len(windows)


def test_a_net_behind_moving_filters_is_not_refused(identity_checkpoint):
    anonymizer = Anonymizer(identity_checkpoint, "cpu", filters=FilterConfig("warp+jitter"))
    events = clustered_stream(128, 128, duration_s=0.02, rate=1e6, seed=3)
    out = anonymizer.anonymize(events, int(events.t[0]), int(events.t[0]) + 20_000)
    assert len(out.events) > 0 and anonymizer.weakened == []


def test_novel_share_by_hand():
    raw = make_events([0, 5, 15], [1, 2, 3], [0, 0, 0], [1, 1, 0], 4, 1)
    # the same cell and bin twice (one of them new); the same cell in another bin; another
    # polarity; another pixel
    out = make_events([1, 2, 12, 16, 17], [1, 1, 2, 3, 0], [0] * 5, [1] * 5, 4, 1)
    novel = NovelShare(4, 1)
    assert novel(raw, out, 0, 20, 2) == 4 / 5
    assert novel(raw, raw, 0, 20, 2) == 0.0  # the buffer is left clean between calls
    assert novel(raw, raw[1:], 0, 20, 2) == 0.0  # a subset of the input is raw events too
    assert novel(raw, out, 0, 20, 2) == 4 / 5


def test_expelliarmus_warning_does_not_reach_stderr(tmp_path, capfd):
    # DAT records: t uint32, then x (14 bits), y (14 bits), p (4 bits); time goes back
    body = np.zeros(4, [("t", "<u4"), ("w", "<u4")])
    body["t"] = [10, 20, 5, 30]
    path = tmp_path / "back.dat"
    path.write_bytes(b"% Width 4\n% Height 4\n% Version 2\n" + bytes([0x0C, 0x08])
                     + body.tobytes())
    # expelliarmus takes the step back for a 32-bit wrap (+2**32 µs) and says so on fd 2
    events = read_events(path)
    assert events.t.tolist() == [10, 20, 5 + 2 ** 32, 30 + 2 ** 32]
    err = capfd.readouterr().err
    assert "WARNING" not in err, err


def test_a_window_that_cannot_fit_in_memory_is_refused_before_allocation(monkeypatch,
                                                                          strong_anonymizer):
    import anonynoise.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2 << 30)  # 2 GiB left
    with pytest.raises(AnonyNoiseError, match=r"needs about 3\.8 GiB, more than the 2\.0"):
        memory.check_window_memory(4096, 3072, 5)  # 8 copies of 5 x 2 x 4096 x 3072 float32
    memory.check_window_memory(1280, 720, 5)  # 1.1 GiB: fits
    with pytest.raises(AnonyNoiseError, match="needs about"):
        strong_anonymizer.check_source(8000, 8000)


def test_the_stream_refuses_a_synthetic_sensor_too_large_for_memory(monkeypatch):
    import anonynoise.memory as memory
    from stream.sources import SyntheticSource

    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
    with pytest.raises(AnonyNoiseError, match="needs about"):
        SyntheticSource(8000, 8000)


def test_a_weakened_configuration_is_named_in_the_stream_identity(identity_checkpoint, caplog):
    from anonynoise.offline import open_anonymizer

    with caplog.at_level("WARNING"):
        identity = open_anonymizer(identity_checkpoint, "cpu", allow_weak=True,
                                   filters=None).identity
    assert identity["weakened"] and "near-identity" in identity["weakened"][0]
    assert any("weakened anonymization" in r.getMessage() for r in caplog.records)
    from anonynoise.offline import default_model

    assert open_anonymizer(default_model(), "cpu").identity["weakened"] == []  # the default: none


@pytest.mark.parametrize("width, height", [(1280, -1), (0, 720), (20000, 720)])
def test_an_npz_declaring_a_bad_sensor_is_one_error(tmp_path, width, height):
    path = tmp_path / "bad.npz"  # found by the fuzz suite: height -1 reached np.zeros
    np.savez(path, t=np.arange(3), x=np.zeros(3, np.int16), y=np.zeros(3, np.int16),
             p=np.ones(3, np.uint8), width=width, height=height)
    with pytest.raises(AnonyNoiseError, match="the file's (width|height)"):
        open_events(path)
