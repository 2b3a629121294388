"""The `anonynoise` command as a user runs it: a real process, its output and exit status."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from anonynoise.events import make_events
from anonynoise.examples import clustered_stream
from anonynoise.io import read_events, save_npy, save_npz, write_events


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "anonynoise", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anonynoise: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert proc.stdout == ""


def test_info_on_the_davis_recording(real_file):
    proc = run_cli("info", real_file("robotarm_davis346.aedat4"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "346x260 (from header)" in out and "117,667" in out
    assert "frames (3)" in out and "imu (130)" in out and "triggers (15)" in out
    assert "DAVIS346_00000104" in out


def test_info_json_on_the_face_recording(real_file):
    proc = run_cli("info", "--json", real_file("face_dvxplorer.aedat4"))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["events"] == 111_954 and info["sensor"] == [320, 240]
    assert info["t_first_us"] == 1605537493718345
    assert info["duration_s"] == pytest.approx(0.589917, abs=1e-6)
    assert info["event_rate_per_s"] == pytest.approx(111_954 / 0.589917)


def test_info_on_prophesee_files(real_file):
    proc = run_cli("info", "--json", real_file("spinner_gen3_evt2.raw"))
    assert json.loads(proc.stdout)["events"] == 539_481
    proc = run_cli("info", "--json", "--sensor", "1280x720",
                   real_file("road_gen41_evt3.expelliarmus.npy"))
    assert json.loads(proc.stdout)["events"] == 219_596


@pytest.fixture
def broken(tmp_path):
    write_events(tmp_path / "whole.aedat4", clustered_stream(64, 48, duration_s=0.1, seed=1))
    whole = (tmp_path / "whole.aedat4").read_bytes()
    (tmp_path / "text.aedat4").write_text("just some text\n")
    (tmp_path / "truncated.aedat4").write_bytes(whole[: len(whole) // 2])
    arr = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    arr["t"], arr["x"] = [1, 2, 3], [0, 1, 400]
    np.save(tmp_path / "outside.npy", arr)
    arr["t"], arr["x"] = [5, 2, 9], [0, 1, 2]
    np.save(tmp_path / "decreasing.npy", arr)
    save_npz(tmp_path / "whole.npz", clustered_stream(64, 48, duration_s=0.1, seed=1))
    whole = (tmp_path / "whole.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    return tmp_path


@pytest.mark.parametrize("name, extra, fragments", [
    ("missing.aedat4", [], ["missing.aedat4: no such file"]),
    ("text.aedat4", [], ["text.aedat4: not an AEDAT 4 file"]),
    ("truncated.aedat4", [], ["truncated.aedat4", "truncated or corrupt"]),
    ("truncated.npz", [], ["truncated.npz", "not a readable NumPy file"]),
    ("outside.npy", ["--sensor", "346x260"], ["x=400", "outside the 346x260 sensor"]),
    ("decreasing.npy", ["--sensor", "346x260"], ["timestamps decrease at event 1"]),
])
def test_bad_input_gives_one_line_and_a_non_zero_exit(broken, name, extra, fragments):
    assert_one_line_error(run_cli("info", broken / name, *extra), *fragments)


@pytest.mark.parametrize("sensor, message", [("640by480", "expected WIDTHxHEIGHT"),
                                             ("0x0", "width and height must be 1 to 16384"),
                                             ("20000x480", "width and height must be 1 to 16384")])
def test_bad_sensor_argument_is_a_usage_error(tmp_path, sensor, message):
    proc = run_cli("info", tmp_path / "x.npy", "--sensor", sensor)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr


def test_convert_to_a_name_without_extension_says_so(tmp_path):
    src = tmp_path / "in.npz"
    save_npz(src, make_events([1, 2], [0, 1], [0, 1], [1, 0], 4, 4))
    assert_one_line_error(run_cli("convert", src, tmp_path / "outdir"),
                          "outdir: no file extension (writable: .aedat4, .npz, .npy)")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_reader_that_closed_its_pipe_ends_the_command_quietly(real_file):
    # `anonynoise info F | head -1` with head already gone: no error line, SIGPIPE's status
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "anonynoise", "info",
                               str(real_file("face_dvxplorer.aedat4"))], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode == 128 + signal.SIGPIPE and proc.stderr == ""


def test_the_filters_help_names_those_the_shipped_model_records():
    """The default filters (no net) are the shipped net's, as its checkpoint records them
    (6 px tiles on its 48x48 sensor: an eighth of the height), and the help says so."""
    from anonynoise import filters
    from anonynoise.checkpoint import load_checkpoint
    from anonynoise.cli_support import SHIPPED_FILTERS
    from anonynoise.offline import default_model

    training = load_checkpoint(default_model()).training
    assert filters.ModelFilters().resolve(training) == filters.SHIPPED_FILTERS
    assert (training["filters"]["block"], filters.training_height(training)) == (6, 48)
    assert SHIPPED_FILTERS == f"{filters.SHIPPED_FILTERS.spec}, jitter tiles an eighth of the " \
                              "sensor's height"
    assert SHIPPED_FILTERS in " ".join(run_cli("anonymize", "--help").stdout.split())


def test_convert_raw_to_aedat4_keeps_every_event(real_file, tmp_path):
    out = tmp_path / "road.aedat4"
    proc = run_cli("convert", real_file("road_gen41_evt3.raw"), out)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 219,596 events" in proc.stdout
    a, b = read_events(real_file("road_gen41_evt3.raw")), read_events(out)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in "txyp")


def test_convert_does_not_clobber_the_output_on_failure(tmp_path):
    ok = make_events([0, 1], [0, 3], [0, 1], [0, 1], 4, 4)
    save_npy(tmp_path / "in.npy", ok)
    (tmp_path / "out.aedat4").write_bytes(b"previous content")
    proc = run_cli("convert", tmp_path / "in.npy", tmp_path / "out.aedat4", "--sensor", "2x2")
    assert_one_line_error(proc, "outside the 2x2 sensor")
    assert (tmp_path / "out.aedat4").read_bytes() == b"previous content"


@pytest.mark.parametrize("command", ["convert", "anonymize"])
def test_the_input_is_never_the_output(real_file, tmp_path, command):
    face = real_file("face_dvxplorer.aedat4")
    copy = tmp_path / "face.aedat4"
    copy.write_bytes(face.read_bytes())
    for output in (copy, tmp_path / "." / "face.aedat4"):
        proc = run_cli(command, copy, output)
        assert_one_line_error(proc, "is the input", "would replace the recording")
    assert copy.read_bytes() == face.read_bytes()


def test_demo_runs_and_writes_a_readable_recording(tmp_path):
    proc = run_cli("demo", "--seconds", "0.3", "--out", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    assert "15 windows" in proc.stdout
    out = read_events(tmp_path / "demo" / "demo-resampled.aedat4")
    assert out.sensor_size == (128, 128) and 0 < out.t[-1] < 300_000


@pytest.mark.parametrize("args, fragment", [
    (["--seconds", "nan"], "--seconds must be between"),
    (["--window-ms", "0"], "--window-ms must be between"),
    (["--window-ms", "500", "--seconds", "0.1"], "longer than --seconds"),
    (["--sensor", "2000x2000"], "goes up to 1280x720"),
    (["--sensor", "32768x32768"], "must be 1 to 16384"),
])
def test_demo_refuses_bad_arguments(tmp_path, args, fragment):
    proc = run_cli("demo", "--out", tmp_path, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert fragment in proc.stderr


def test_convert_to_npy_says_how_to_read_it_back(tmp_path):
    save_npy(tmp_path / "in.npy", make_events([0, 1], [0, 3], [0, 1], [0, 1], 4, 4))
    proc = run_cli("convert", tmp_path / "in.npy", tmp_path / "out.npy", "--sensor", "4x4")
    assert proc.returncode == 0 and "--sensor 4x4" in proc.stdout
