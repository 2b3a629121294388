import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import (concatenate, make_events, to_dvsgesture_array, to_packed,
                               to_structured)
from anonynoise.examples import clustered_stream
from anonynoise.io import (
    Aedat4Writer,
    open_events,
    read_events,
    save_npy,
    save_npz,
    write_events,
)

# Counts from ../shared/data/real/SOURCES.md (faery, dv-processing, aedat and expelliarmus agree).
REAL = {
    "face_dvxplorer.aedat4": (111_954, (320, 240)),
    "robotarm_davis346.aedat4": (117_667, (346, 260)),
    "spinner_gen3_evt2.raw": (539_481, (640, 480)),
    "road_gen41_evt3.raw": (219_596, (1280, 720)),
    "sky_imx636_evt3.raw": (1_218_618, (1280, 720)),
    "sky_imx636.dat": (1_218_618, (1280, 720)),
}


def same_events(a, b):
    return a.sensor_size == b.sensor_size and all(np.array_equal(getattr(a, f), getattr(b, f))
                                                  for f in "txyp")


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_recordings_read_with_the_published_counts(real_file, name):
    count, size = REAL[name]
    with open_events(real_file(name)) as reader:
        assert reader.sensor_size == size
        t_prev, n, batches = None, 0, 0
        for batch in reader:
            assert batch.sensor_size == size
            assert np.all(np.diff(batch.t) >= 0)
            assert t_prev is None or batch.t[0] >= t_prev  # also across batches
            t_prev = int(batch.t[-1]) if len(batch) else t_prev
            n += len(batch)
            batches += 1
    assert n == count
    assert batches > 1 or count < 300_000  # streamed in batches, not one concatenated array


def test_aps_frames_are_reported_but_never_returned_as_events(real_file):
    path = real_file("robotarm_davis346.aedat4")
    with open_events(path) as reader:
        assert reader.info.other_streams == {"frames": 3, "imu": 130, "triggers": 15}
        assert reader.info.camera == "DAVIS346_00000104"
        total = sum(len(b) for b in reader)
    assert total == 117_667  # exactly the event stream: no frame pixels among the events


def test_face_recording_metadata(real_file):
    with open_events(real_file("face_dvxplorer.aedat4")) as reader:
        assert reader.info.other_streams == {"imu": 475, "triggers": 0}
        first = next(iter(reader))
    assert first.t[0] == 1605537493718345


def test_prophesee_sizes_come_from_header_or_plugin(real_file):
    assert open_events(real_file("sky_imx636_evt3.raw")).info.sensor_source == "header"
    spinner = open_events(real_file("spinner_gen3_evt2.raw"))
    assert spinner.info.sensor_source.startswith("plugin name hal_plugin_gen3")
    assert open_events(real_file("spinner_gen3_evt2.raw"), (640, 480)).info.sensor_source == \
        "the caller"
    with pytest.raises(AnonyNoiseError, match="header says 1280x720, not 640x480"):
        open_events(real_file("sky_imx636.dat"), (640, 480))


def test_dat_and_evt3_twins_agree_on_x_y_p(real_file):
    dat = read_events(real_file("sky_imx636.dat"))
    evt3 = read_events(real_file("sky_imx636_evt3.raw"))
    assert np.array_equal(dat.x, evt3.x) and np.array_equal(dat.y, evt3.y)
    assert np.array_equal(dat.p, evt3.p)


def test_expelliarmus_reference_npy_matches_our_evt3_reading(real_file):
    ref = read_events(real_file("road_gen41_evt3.expelliarmus.npy"), (1280, 720))
    ours = read_events(real_file("road_gen41_evt3.raw"))
    assert same_events(ref, ours)


def test_aedat4_round_trip_of_a_real_recording_is_exact(real_file, tmp_path):
    ev = read_events(real_file("face_dvxplorer.aedat4"))
    out = tmp_path / "face.aedat4"
    assert write_events(out, ev) == 111_954
    assert same_events(read_events(out), ev)
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_aedat4_round_trip_in_many_batches(tmp_path):
    ev = clustered_stream(64, 48, duration_s=0.2, rate=2e5, seed=1)
    out = tmp_path / "s.aedat4"
    with Aedat4Writer(out, (64, 48)) as w:
        for k in range(0, 200_000, 30_000):
            w.write(ev.slice_time(k, k + 30_000))  # slices of one batch: no duplicates
    back = read_events(out)
    assert len(back) == len(ev) and same_events(back, ev)


def test_aedat4_packed_records_as_the_stream_sinks_write_them(tmp_path):
    ev = clustered_stream(64, 48, duration_s=0.1, rate=2e5, seed=2)
    out = tmp_path / "packed.aedat4"
    with Aedat4Writer(out, (64, 48)) as w:
        w.write_packed(to_packed(ev.slice_time(0, 50_000)))
        w.write_packed(to_packed(ev.slice_time(50_000, 100_001))[:0])  # empty: nothing
        w.write_packed(to_packed(ev.slice_time(50_000, 100_001)))
        with pytest.raises(AnonyNoiseError, match="expected .* records"):
            w.write_packed(to_structured(ev))
        with pytest.raises(AnonyNoiseError, match="time order"):
            w.write_packed(to_packed(ev.slice_time(0, 10)))
    back = read_events(out)
    assert len(back) == len(ev) and same_events(back, ev)


def test_writer_refuses_bad_batches_and_keeps_an_existing_file(tmp_path):
    out = tmp_path / "keep.aedat4"
    good = make_events([0, 5], [0, 1], [0, 1], [0, 1], 4, 3)
    write_events(out, good)
    with pytest.raises(AnonyNoiseError, match="time order"):
        with Aedat4Writer(out, (4, 3)) as w:
            w.write(make_events([10], [0], [0], [0], 4, 3))
            w.write(make_events([3], [0], [0], [0], 4, 3))
    assert same_events(read_events(out), good)  # the aborted write left the old file intact
    with pytest.raises(AnonyNoiseError, match="sensor cannot go into"):
        with Aedat4Writer(tmp_path / "x.aedat4", (4, 3)) as w:
            w.write(make_events([0], [0], [0], [0], 5, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["keep.aedat4"]


def test_written_files_get_the_usual_permissions(tmp_path):
    ev = make_events([0, 5], [0, 1], [0, 1], [0, 1], 4, 3)
    mask = os.umask(0o022)
    try:
        for name in ("a.aedat4", "a.npz", "a.npy"):
            write_events(tmp_path / name, ev)
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    finally:
        os.umask(mask)


def test_negative_timestamps_cannot_go_into_aedat4(tmp_path):
    with pytest.raises(AnonyNoiseError, match="cannot hold negative timestamps"):
        write_events(tmp_path / "n.aedat4", make_events([-5, 1], [0, 1], [0, 1], [0, 1], 4, 3))
    assert list(tmp_path.iterdir()) == []


FULL_DISK = """
import resource, signal, sys
from anonynoise.errors import AnonyNoiseError
from anonynoise.examples import clustered_stream
from anonynoise.io import write_events
# A file may grow to 200 kB: past it write() fails with EFBIG, as on a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    write_events(sys.argv[1], clustered_stream(64, 48, duration_s=0.5, seed=1))
except AnonyNoiseError as e:
    print(e)
    sys.exit(3)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="needs RLIMIT_FSIZE and SIGXFSZ")
@pytest.mark.parametrize("suffix, reason", [(".aedat4", "File too large"),
                                            (".npz", "File too large"),
                                            (".npy", "is the disk full?")])
def test_a_full_disk_is_an_error_and_keeps_the_old_file(tmp_path, suffix, reason):
    out = tmp_path / f"full{suffix}"
    old = make_events([0, 5], [0, 1], [0, 1], [0, 1], 64, 48)
    write_events(out, old)
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "cannot write" in proc.stdout and reason in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr
    assert same_events(read_events(out, (64, 48)), old)  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # the partial file is gone


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_an_unwritable_place_is_a_one_line_error():
    for name in ("x.npz", "x.aedat4"):
        with pytest.raises(AnonyNoiseError, match="cannot write"):
            write_events(f"/proc/self/{name}", make_events([0], [0], [0], [0], 4, 3))


def test_npz_sensor_size_must_be_integers(tmp_path):
    ev = dict(t=np.arange(2), x=np.zeros(2), y=np.zeros(2), p=np.zeros(2))
    for width in (np.array([640, 1]), np.array(640.7), np.array(np.inf)):
        np.savez(tmp_path / "w.npz", width=width, height=np.array(480), **ev)
        with pytest.raises(AnonyNoiseError, match="width must be a single integer"):
            read_events(tmp_path / "w.npz")


def test_npz_is_read_as_a_stream_of_batches(tmp_path, monkeypatch):
    import anonynoise.io as io

    monkeypatch.setattr(io, "NUMPY_BATCH", 1000)
    ev = clustered_stream(40, 30, duration_s=0.05, rate=1e5, seed=3)  # about 5,000 events
    save_npz(tmp_path / "e.npz", ev)
    with open_events(tmp_path / "e.npz") as reader:
        batches = list(reader)
    assert [len(b) for b in batches[:-1]] == [1000] * (len(batches) - 1)
    assert same_events(concatenate(batches), ev)
    # compressed members stream too
    np.savez_compressed(tmp_path / "c.npz", t=ev.t, x=ev.x, y=ev.y, p=ev.p, width=40, height=30)
    assert same_events(read_events(tmp_path / "c.npz"), ev)


def test_npz_stream_errors_name_the_file_on_one_line(tmp_path, monkeypatch):
    import zipfile

    import anonynoise.io as io

    monkeypatch.setattr(io, "NUMPY_BATCH", 2)
    fields = dict(x=np.zeros(4), y=np.zeros(4), p=np.zeros(4), width=4, height=3)
    cases = {  # name: (arrays, message)
        "flat.npz": (dict(fields, t=np.zeros((2, 2))), "must be one-dimensional"),
        "lengths.npz": (dict(fields, t=np.arange(3)), "different lengths"),
        "order.npz": (dict(fields, t=np.array([0, 5, 3, 7])), "timestamps decrease"),
        "objects.npz": (dict(fields, t=np.array(["a", "b", "c", "d"])), "expected numbers"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(AnonyNoiseError, match=message) as err:
            read_events(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)
    # a member whose data is shorter than its header says
    np.savez(tmp_path / "short.npz", t=np.arange(4), **fields)
    with zipfile.ZipFile(tmp_path / "short.npz") as src, \
            zipfile.ZipFile(tmp_path / "cut.npz", "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            dst.writestr(item, data[:-8] if item == "t.npy" else data)
    with pytest.raises(AnonyNoiseError, match="ends early") as err:
        read_events(tmp_path / "cut.npz")
    assert "cut.npz" in str(err.value)


def test_writer_to_a_missing_folder(tmp_path):
    with pytest.raises(AnonyNoiseError, match="no such directory"):
        Aedat4Writer(tmp_path / "nope" / "a.aedat4", (4, 3))


def test_npz_and_npy_round_trip(tmp_path):
    ev = clustered_stream(40, 30, duration_s=0.05, rate=1e5, seed=2)
    save_npz(tmp_path / "e.npz", ev)
    assert same_events(read_events(tmp_path / "e.npz"), ev)
    save_npy(tmp_path / "e.npy", ev)
    assert same_events(read_events(tmp_path / "e.npy", (40, 30)), ev)
    inferred = open_events(tmp_path / "e.npy")
    assert inferred.info.sensor_source.startswith("the events' extent")
    np.save(tmp_path / "tonic.npy", to_structured(ev))
    assert same_events(read_events(tmp_path / "tonic.npy", (40, 30, 2)), ev)


def test_an_unknown_sensor_size_names_the_parameter_and_the_command_its_flag(tmp_path, capsys):
    from anonynoise.cli import main

    np.save(tmp_path / "empty.npy", to_structured(clustered_stream(8, 8, 0.01, seed=1)[:0]))
    with pytest.raises(AnonyNoiseError, match=r"no sensor size: pass sensor_size=\(width") as e:
        open_events(tmp_path / "empty.npy")
    assert e.value.parameter == "sensor_size" and "--" not in str(e.value)
    assert main(["info", str(tmp_path / "empty.npy")]) == 2
    assert "anonynoise: error: --sensor: " in capsys.readouterr().err
    assert main(["info", str(tmp_path / "empty.npy"), "--sensor", "8x8"]) == 0
    assert "8x8 (from --sensor)" in capsys.readouterr().out


def test_dvsgesture_npy_file(tmp_path):
    ev = make_events([1000, 1500, 2250], [0, 64, 127], [127, 3, 0], [1, 0, 1], 128, 128)
    np.save(tmp_path / "3.npy", to_dvsgesture_array(ev))
    reader = open_events(tmp_path / "3.npy")
    assert reader.info.format == "dvs-gesture npy" and reader.sensor_size == (128, 128)
    assert same_events(read_events(tmp_path / "3.npy"), ev)


def test_a_dvsgesture_npy_file_of_another_size_reads_at_the_callers_sensor(tmp_path):
    # the synthetic benchmark writes DVS-Gesture's layout at --size 64
    ev = make_events([1000, 1500, 2250], [0, 40, 63], [63, 3, 0], [1, 0, 1], 64, 64)
    np.save(tmp_path / "3.npy", to_dvsgesture_array(ev))
    reader = open_events(tmp_path / "3.npy", (64, 64))
    assert reader.info.format == "dvs-gesture npy" and reader.sensor_size == (64, 64)
    assert same_events(read_events(tmp_path / "3.npy", (64, 64)), ev)
    with pytest.raises(AnonyNoiseError, match="3.npy: .*outside the 32x32 sensor"):
        read_events(tmp_path / "3.npy", (32, 32))


def test_invalid_events_in_a_file_name_the_file(tmp_path):
    arr = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    arr["t"] = [5, 3, 9]
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(AnonyNoiseError, match=r"bad\.npy: invalid events: timestamps decrease"):
        read_events(tmp_path / "bad.npy", (4, 4))
    arr["t"] = [1, 2, 3]
    arr["x"] = [0, 1, 9]
    np.save(tmp_path / "outside.npy", arr)
    with pytest.raises(AnonyNoiseError, match="outside the 4x4 sensor"):
        read_events(tmp_path / "outside.npy", (4, 4))


def aedat4_bytes(tmp_path, events=200_000):
    """A valid AEDAT 4 file of our own making, to cut and break."""
    path = tmp_path / "source.aedat4"
    write_events(path, clustered_stream(64, 48, duration_s=events / 2e6, seed=4))
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture
def bad_files(tmp_path):
    """Broken inputs of every kind (made here, so these tests need no recordings)."""
    aedat = aedat4_bytes(tmp_path)
    assert len(aedat) > 400_000
    dat_header = b"% Width 4\n% Height 4\n% Version 2\n" + bytes([0x0C, 0x08])
    files = {
        "text.aedat4": b"hello, I am a text file\n",
        "truncated.aedat4": aedat[: len(aedat) // 2],
        "header-only.aedat4": aedat[:2_000],
        "empty.aedat4": b"",
        "text.raw": b"hello\n",
        "odd.raw": b"% evt 3.0\n% end\n" + bytes(1001),
        "text.dat": b"hello\n",
        "truncated.dat": dat_header + bytes(8 * 100 + 3),
        "text.npy": b"not numpy",
        "evt4.raw": b"% evt 4.0\n% end\n\x00\x00",
        "missing-fields.npz": None,
        "header-cut.raw": b"% evt 3.0\n% plugin_name hal_plug",  # expelliarmus would hang
        "header-cut.dat": b"% Width 4\n% Heig",
    }
    for name, data in files.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    np.savez(tmp_path / "missing-fields.npz", t=np.arange(3), x=np.zeros(3))
    np.savez_compressed(tmp_path / "whole.npz", t=np.arange(5000), x=np.zeros(5000))
    whole = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])  # no central directory
    return tmp_path


@pytest.mark.parametrize("name, message", [
    ("text.aedat4", "not an AEDAT 4 file"),
    ("empty.aedat4", "not an AEDAT 4 file"),
    ("truncated.aedat4", "truncated or corrupt"),
    ("header-only.aedat4", "truncated"),
    ("text.raw", "not a Prophesee RAW file"),
    ("odd.raw", "truncated"),
    ("text.dat", "not a Prophesee DAT file"),
    ("truncated.dat", "truncated"),
    ("text.npy", "not a readable NumPy file"),
    ("evt4.raw", "unsupported RAW encoding"),
    ("missing-fields.npz", "missing y, p, width, height"),
    ("truncated.npz", "not a readable NumPy file"),
    ("header-cut.raw", "truncated inside its header"),
    ("header-cut.dat", "truncated inside its header"),
])
def test_broken_files_raise_one_line_errors(bad_files, name, message):
    with pytest.raises(AnonyNoiseError, match=message) as err:
        read_events(bad_files / name)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_a_raw_file_with_a_header_and_no_data_has_no_events(tmp_path):
    (tmp_path / "empty.raw").write_bytes(b"% evt 3.0\n% geometry 320x240\n% end\n")
    with open_events(tmp_path / "empty.raw") as reader:
        assert reader.sensor_size == (320, 240) and list(reader) == []


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(AnonyNoiseError, match="no such file"):
        open_events(tmp_path / "missing.aedat4")
    (tmp_path / "x.csv").write_text("1,2,3\n")
    with pytest.raises(AnonyNoiseError, match="unknown event file type '.csv'"):
        open_events(tmp_path / "x.csv")
    with pytest.raises(AnonyNoiseError, match="is a directory"):
        open_events(tmp_path)
    with pytest.raises(AnonyNoiseError, match="cannot write '.txt'"):
        write_events(tmp_path / "x.txt", make_events([0], [0], [0], [0], 2, 2))
