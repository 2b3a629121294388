"""The service end to end: replays of real recordings through the pipeline to real ZeroMQ
subscribers, the recorder, the DV output, failures, security and the command line."""

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from anonynoise.anonymizer import AnonymizationRefused, Anonymizer
from anonynoise.checkpoint import Representation, save_checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.io import open_events, read_events
from anonynoise.models import LightAnonNet
from anonynoise.represent import events_to_counts
from stream.client import StreamClient
from stream.pipeline import Pipeline, StreamConfig
from stream.publisher import Publisher
from stream.sinks import DVNetworkSink, RecorderSink
from stream.sources import ReplaySource
from anonynoise.windower import Windower

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WINDOW = 50_000
# The anonymizer refuses nets whose noise is under 5% of the signal, so every anonymized
# window must differ from the raw one by more than that (relative L1 of the count maps).
MIN_DISTANCE = 0.05


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = LightAnonNet(10, width=8)
    torch.nn.init.constant_(net.head.bias, 1.0)  # untrained, but clearly noisy
    path = tmp_path_factory.mktemp("model") / "light50.pt"
    return save_checkpoint(path, net, Representation(window_us=WINDOW))


@pytest.fixture(scope="module")
def anonymizer(checkpoint):
    return Anonymizer(checkpoint, "cpu", threads=1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector(threading.Thread):
    """Receive windows until `timeout_s` without one, or until `stop_after` windows."""

    def __init__(self, address, stop_after=None, **kw):
        super().__init__(daemon=True)
        self.client = StreamClient(address, timeout_s=kw.pop("timeout_s", 5), **kw)
        self.windows = []
        self.stop_after = stop_after

    def run(self):
        with self.client:
            for w in self.client:
                self.windows.append((w.header, w.events.copy()))
                if self.stop_after is not None and len(self.windows) >= self.stop_after:
                    break


def replay(path, anonymizer, address, sinks=(), wait_for_subscriber=True, **pipeline_kw):
    source = ReplaySource(path, speed=None)
    publisher = Publisher(None, address)
    collector = Collector(address)
    collector.start()
    if wait_for_subscriber:
        assert publisher.wait_for_lossless_subscriber(10)
    try:
        pipeline = Pipeline(source, anonymizer, publisher, sinks,
                            StreamConfig(window_us=WINDOW), {"kind": "light_anon"},
                            paced=False, **pipeline_kw)
        summary = pipeline.run()
    finally:
        publisher.close()
    collector.join(20)
    return collector.windows, summary, source


def raw_windows(path):
    events = read_events(path)
    w = Windower(WINDOW, events.width, events.height)
    return w.push(events) + w.flush(), events


@pytest.mark.parametrize("name", ["face_dvxplorer.aedat4", "robotarm_davis346.aedat4"])
def test_a_replay_reaches_a_lossless_subscriber_whole_and_anonymized(name, real_file, anonymizer,
                                                                     tmp_path):
    path = real_file(name)
    record = tmp_path / "out.aedat4"
    raw, events = raw_windows(path)
    with open_events(path) as reader:
        width, height = reader.sensor_size
    recorder = RecorderSink(record, width, height)
    received, summary, _ = replay(path, anonymizer, f"ipc://{tmp_path}/lossless", [recorder])
    recorder.close()
    # every window covering the recording, in order, none lost
    assert [h.seq for h, _ in received] == list(range(len(raw)))
    assert received[0][0].t_start == 0 and received[-1][0].t_end >= events.t[-1] - events.t[0]
    origin = raw[0].t_start
    for (header, ev), window in zip(received, raw):
        assert (header.t_start, header.t_end) == (window.t_start - origin, window.t_end - origin)
        got = events_to_counts(_batch(header, ev), header.t_start, header.t_end, 5)
        want = events_to_counts(window.events, window.t_start, window.t_end, 5)
        distance = np.abs(got - want).sum() / max(want.sum(), 1.0)
        assert distance > MIN_DISTANCE, (header.seq, distance)
    assert summary["dropped"]["anonymization"] == 0
    # the recording is what the subscriber received, and says nothing of the camera
    recorded = read_events(record)
    sent = np.concatenate([ev["t"] for _, ev in received])
    assert np.array_equal(recorded.t, sent)
    with open_events(record) as reader:
        assert reader.info.camera == "AnonyNoise" and not reader.info.other_streams


def _batch(header, events):
    from stream.protocol import window_events

    return window_events(header, events)


def test_the_robot_arms_frames_never_leave(real_file, anonymizer, tmp_path):
    path = real_file("robotarm_davis346.aedat4")
    with open_events(path) as reader:
        assert reader.info.other_streams.get("frames") == 3  # they are in the file
    ctx = zmq.Context.instance()
    spy = ctx.socket(zmq.SUB)
    spy.setsockopt(zmq.SUBSCRIBE, b"")  # every topic
    address = f"ipc://{tmp_path}/all"
    spy.connect(address)
    received, _, _ = replay(path, anonymizer, address)
    topics = set()
    while spy.poll(200):
        frames = spy.recv_multipart()
        topics.add(frames[0])
        assert len(frames) in (2, 3)
    spy.close()
    assert topics <= {b"window", b"status"} and received


class Flaky:
    """An anonymizer that fails on chosen windows (counted like any failure)."""

    def __init__(self, inner, fail_on):
        self.inner, self.fail_on, self.calls = inner, set(fail_on), 0
        self.window_us, self.check_source = inner.window_us, inner.check_source

    def anonymize(self, events, t0, t1):
        self.calls += 1
        if self.calls - 1 in self.fail_on:
            raise AnonymizationRefused("injected failure")
        return self.inner.anonymize(events, t0, t1)


def test_a_failed_window_is_dropped_and_counted_never_sent_raw(real_file, anonymizer, tmp_path):
    path = real_file("face_dvxplorer.aedat4")
    raw, _ = raw_windows(path)
    received, summary, _ = replay(path, Flaky(anonymizer, {2, 5}), f"ipc://{tmp_path}/f")
    seqs = [h.seq for h, _ in received]
    assert 2 not in seqs and 5 not in seqs and len(seqs) == len(raw) - 2
    assert summary["dropped"]["anonymization"] == 2
    assert received[-1][0].dropped["anonymization"] == 2  # consumers are told
    for header, ev in received:
        window = raw[header.seq]
        assert not (len(ev) == len(window.events) and np.array_equal(
            ev["x"], window.events.x))


def test_the_service_hides_its_start_up_objects_from_the_collector(anonymizer, tmp_path):
    from anonynoise.examples import clustered_stream
    from anonynoise.io import save_npz

    save_npz(tmp_path / "a.npz", clustered_stream(32, 24, 0.2, 1e5, seed=0))
    gc.unfreeze()
    alive = len(gc.get_objects())  # torch, numba, the model...: a full collection's work
    try:
        received, _, _ = replay(tmp_path / "a.npz", anonymizer, f"ipc://{tmp_path}/g")
        assert len(received) == 4
        assert gc.get_freeze_count() >= 0.9 * alive
    finally:
        gc.unfreeze()


def test_repeated_failures_stop_the_service(real_file, anonymizer, tmp_path):
    path = real_file("face_dvxplorer.aedat4")
    with pytest.raises(AnonyNoiseError, match="failed for 3 windows in a row"):
        source = ReplaySource(path, speed=None)
        publisher = Publisher(None, f"ipc://{tmp_path}/x")
        try:
            Pipeline(source, Flaky(anonymizer, range(100)), publisher, (),
                     StreamConfig(window_us=WINDOW, max_consecutive_failures=3)).run()
        finally:
            publisher.close()


def test_a_subscriber_that_never_reads_slows_nobody(real_file, anonymizer, tmp_path):
    path = real_file("face_dvxplorer.aedat4")
    address = f"ipc://{tmp_path}/live"
    publisher = Publisher(address)
    ctx = zmq.Context.instance()
    stuck = ctx.socket(zmq.SUB)
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.SUBSCRIBE, b"window")
    stuck.connect(address)
    reader = Collector(address, timeout_s=3)
    reader.start()
    time.sleep(0.5)  # both subscriptions arrive (PUB has no lossless handshake)
    start = time.monotonic()
    try:
        summary = Pipeline(ReplaySource(path, speed=1.0), anonymizer, publisher, (),
                           StreamConfig(window_us=WINDOW), paced=True).run()
    finally:
        publisher.close()
    elapsed = time.monotonic() - start
    reader.join(10)
    stuck.close()
    duration = read_events(path).duration_us / 1e6
    assert elapsed < duration + 5  # paced at real time, not held back by the stuck one
    assert [h.seq for h, _ in reader.windows] == list(range(summary["windows_in"]))


def test_curve_lets_only_allowed_clients_in(tmp_path, anonymizer):
    from stream.keys import make_keys

    keys = make_keys(tmp_path / "keys", ("allowed",))
    other = make_keys(tmp_path / "other", ("stranger",))
    port = free_port()
    with pytest.raises(AnonyNoiseError, match="reachable from other machines") as e:
        Publisher(f"tcp://0.0.0.0:{port}")
    assert e.value.parameter == "curve_keys" and "--" not in str(e.value)
    publisher = Publisher(f"tcp://0.0.0.0:{port}", curve_keys=keys)
    address = f"tcp://127.0.0.1:{port}"
    good = Collector(address, curve_keys=keys, client_name="allowed", timeout_s=3)
    # a stranger who even knows the server's public key, but whose key is not allowed
    (other / "server.key").write_bytes((keys / "server.key").read_bytes())
    bad = Collector(address, curve_keys=other, client_name="stranger", timeout_s=3)
    good.start()
    bad.start()
    time.sleep(0.5)
    from anonynoise.events import make_events
    from stream.protocol import WindowHeader

    ev = make_events([1, 2], [1, 2], [1, 2], [0, 1], 8, 8)
    try:
        for seq in range(5):
            publisher.publish(WindowHeader("s", seq, 0, 10, 8, 8, 2), ev, wait=False)
            time.sleep(0.05)
    finally:
        good.join(10)
        bad.join(10)
        publisher.close()
    assert len(good.windows) == 5 and bad.windows == []


def test_a_live_source_never_waits_for_a_stalled_recorder(tmp_path):
    from anonynoise.events import make_events
    from stream.protocol import WindowHeader

    out = tmp_path / "live.aedat4"
    recorder = RecorderSink(out, 64, 48, queue_windows=4)
    n = 20_000
    rng = np.random.default_rng(0)
    os.kill(recorder.process.pid, signal.SIGSTOP)  # the recorder stops reading
    try:
        accepted, started = [], time.monotonic()
        for k in range(60):
            t = k * 50_000 + np.sort(rng.integers(0, 50_000, n))
            ev = make_events(t, rng.integers(0, 64, n), rng.integers(0, 48, n),
                             rng.integers(0, 2, n), 64, 48)
            if recorder.put(WindowHeader("s", k, k * 50_000, (k + 1) * 50_000, 64, 48, n), ev,
                            wait=False):
                accepted.append(k)
        waited = time.monotonic() - started
    finally:
        os.kill(recorder.process.pid, signal.SIGCONT)
    recorder.close()
    assert 0 < len(accepted) < 60, len(accepted)  # the rest were dropped, not waited for
    assert waited < 10, waited
    assert recorder.windows == len(accepted)
    recorded = read_events(out)  # exactly the accepted windows, complete
    assert len(recorded) == n * len(accepted)
    assert sorted({int(t) // 50_000 for t in recorded.t}) == accepted


def test_dv_network_reader_receives_the_anonymized_events():
    import dv_processing as dv

    from anonynoise.events import make_events
    from stream.protocol import WindowHeader

    port = free_port()
    sink = DVNetworkSink(port, 32, 24)
    reader = dv.io.NetworkReader("127.0.0.1", port)
    time.sleep(0.3)
    ev = make_events(np.arange(100) * 10, np.arange(100) % 32, np.arange(100) % 24,
                     np.arange(100) % 2, 32, 24)
    sink.put(WindowHeader("s", 0, 0, 1000, 32, 24, 100), ev, wait=True)
    got = 0
    deadline = time.monotonic() + 10
    while got < 100 and time.monotonic() < deadline:
        batch = reader.getNextEventBatch()
        if batch is not None:
            got += batch.size()
        else:
            time.sleep(0.01)
    resolution = reader.getEventResolution()
    sink.close()
    assert got == 100 and resolution == (32, 24)
    with pytest.raises(AnonyNoiseError, match="reachable from other machines: give tls=") as e:
        DVNetworkSink(free_port(), 32, 24, host="0.0.0.0")
    assert e.value.parameter == "tls" and "--" not in str(e.value)


# --- the command line ----------------------------------------------------------------------


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "stream", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_bad_input_is_one_line(tmp_path, checkpoint, real_file):
    (tmp_path / "junk.aedat4").write_text("no")
    whole = save_checkpoint(tmp_path / "whole.pt", _light(), Representation(window_us=None))
    fixed = save_checkpoint(tmp_path / "fixed.pt", _light(),
                            Representation(width=128, height=128, window_us=WINDOW))
    face = str(real_file("face_dvxplorer.aedat4"))
    copy, link = tmp_path / "face.aedat4", tmp_path / "same.aedat4"
    copy.write_bytes(Path(face).read_bytes())
    os.link(copy, link)
    port = free_port()
    busy = zmq.Context.instance().socket(zmq.PUB)
    busy.bind(f"tcp://127.0.0.1:{port}")
    cases = [
        (["--replay", str(tmp_path / "missing.aedat4"), "--model", str(checkpoint)], "no such file"),
        (["--replay", str(tmp_path / "junk.aedat4"), "--model", str(checkpoint)], "junk.aedat4"),
        (["--replay", face, "--model", str(whole)], "whole samples"),
        (["--replay", face, "--model", str(fixed)], "128x128"),
        (["--replay", face, "--model", str(checkpoint), "--publish",
          f"tcp://127.0.0.1:{port}"], "cannot publish"),
        (["--camera", "--model", str(checkpoint)], "camera"),
        (["--replay", face, "--model", str(checkpoint), "--filters", "warp+blur"],
         "unknown privacy filter 'blur' in 'warp+blur' (filters: warp, slots, refractory, "
         "jitter, joined "
         "by '+'; or none, or model"),
        (["--replay", face, "--model", str(checkpoint), "--publish", "tcp://127.0.0.1:99999"],
         "the port must be 1 to 65535"),
        # the recording itself as the output (here a hard link to a copy of it)
        (["--replay", str(copy), "--model", str(checkpoint), "--record", str(link)],
         "is the input"),
        # the library's error names its parameter, the command line puts the flag in front
        (["--replay", face, "--model", str(checkpoint), "--device", "nonsense"],
         "anonynoise-stream: error: --device: "),
    ]
    try:
        for args, message in cases:
            done = cli(*args)
            assert done.returncode == 2, (args, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], (args, done.stderr)
    finally:
        busy.close()
    assert copy.read_bytes() == Path(face).read_bytes()


@pytest.mark.parametrize("model", ["checkpoint", "none"])
def test_the_command_filters_and_says_so_in_every_header(tmp_path, checkpoint, real_file, model):
    address = f"ipc://{tmp_path}/filtered"
    collector = Collector(address, stop_after=12, timeout_s=60)  # 60: the service's start
    collector.start()
    done = cli("--replay", str(real_file("face_dvxplorer.aedat4")), "--fast", "--model",
               str(checkpoint) if model == "checkpoint" else "none", "--publish", "none",
               "--lossless", address, "--wait-subscriber", "30", "--filters",
               "warp+slots+jitter", "--warp-period", "0.2", "--status-every", "0")
    collector.join(60)
    assert done.returncode == 0, done.stderr
    assert len(collector.windows) == 12  # the face recording's 50 ms windows, all sent:
    assert "windows 12/12 (dropped: queue 0, anonymization 0" in done.stderr
    assert "% of real time" in done.stderr.splitlines()[-1]  # the anonymizer's load
    # the tile follows the sensor (240 / 8); a net trained without jitter runs at full
    # resolution, the filters alone on the tiles themselves
    grid = "windows at full resolution" if model == "checkpoint" else \
        "windows on a 11x8 grid of 30 px cells"
    assert f"320x240 sensor: jitter tiles 30 px; {grid}" in done.stdout
    headers = [h.model for h, _ in collector.windows]
    assert headers[0]["filters"] == {"spec": "warp+slots+jitter", "tiles": 8.0, "warp_scale": 0.25,
                                     "warp_displacement": 0.15, "warp_grid": 3,
                                     "warp_period_s": 0.2}
    assert all(h == headers[0] for h in headers)
    assert headers[0]["kind"] == ("light_anon" if model == "checkpoint" else "filters_only")
    assert sum(len(ev) for _, ev in collector.windows) > 0


def test_flag_values_out_of_range_are_refused_before_anything_runs(tmp_path, checkpoint):
    # --dv-port 99999 used to reach dv-processing and end in a cut-off pybind11 message;
    # --max-window-events 0 ran and dropped every event
    out = tmp_path / "x.aedat4"
    for flag, value, message in (("--dv-port", "99999", "--dv-port must be between 1 and 65535"),
                                 ("--dv-port", "0", "--dv-port must be between 1 and 65535"),
                                 ("--max-window-events", "0",
                                  "--max-window-events must be between 1 and"),
                                 ("--wait-subscriber", "-1",
                                  "--wait-subscriber must be between 0.0 and"),
                                 ("--status-every", "-1", "--status-every must be between 0.0")):
        done = cli("--synthetic", "--model", str(checkpoint), "--publish", "none", "--record",
                   str(out), flag, value, timeout=60)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr.strip().splitlines()[-1], done.stderr
        assert "Traceback" not in done.stderr and not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--record", "out.npz"], "--record out.npz: recordings are .aedat4 files"),
    (["--publish", "tcp://0.0.0.0:5555"],
     "--publish tcp://0.0.0.0:5555 is reachable from other machines: give --curve-keys DIR"),
    (["--publish", "none", "--lossless", "tcp://10.0.0.5:5556"],
     "--lossless tcp://10.0.0.5:5556 is reachable from other machines"),
    (["--dv-port", "7777", "--dv-host", "0.0.0.0"],
     "--dv-host 0.0.0.0 is reachable from other machines: give --dv-tls CERT KEY CA or say "
     "--insecure"),
])
def test_outputs_are_refused_in_the_flags_terms_before_the_model_loads(flags, message):
    from stream.cli import build_parser, check_outputs

    with pytest.raises(AnonyNoiseError) as e:
        check_outputs(build_parser().parse_args(flags))
    assert str(e.value).startswith(message)
    if "--record" not in flags:
        check_outputs(build_parser().parse_args(flags + ["--insecure"]))  # said, so allowed
    check_outputs(build_parser().parse_args(["--publish", "tcp://127.0.0.1:5555", "--dv-port",
                                             "7777", "--record", "a.AEDAT4"]))  # all local


def _light():
    torch.manual_seed(0)
    net = LightAnonNet(10, width=8)
    torch.nn.init.constant_(net.head.bias, 1.0)
    return net


def wait_for_windows(proc, n, timeout=120):
    """Read the command's status lines until it has published n windows."""
    import re

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"windows (\d+)/", line)
        if found and int(found.group(1)) >= n:
            return True
        if not line and proc.poll() is not None:
            return False
    return False


def recording_service(face, checkpoint, out):
    """The command replaying the face recording in a loop into a recording, status lines on."""
    return subprocess.Popen([sys.executable, "-m", "stream", "--replay", str(face), "--loop",
                             "--model", str(checkpoint), "--publish", "none", "--record",
                             str(out), "--status-every", "0.3"], cwd=REPO,
                            stderr=subprocess.PIPE, text=True)


def test_sigint_leaves_a_complete_recording(tmp_path, checkpoint, real_file):
    out = tmp_path / "rec.aedat4"
    proc = recording_service(real_file("face_dvxplorer.aedat4"), checkpoint, out)
    try:
        assert wait_for_windows(proc, 15)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a looping replay behind
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by SIGINT" in err
    recorded = read_events(out)
    assert len(recorded) > 0 and np.all(np.diff(recorded.t) >= 0)
    assert recorded.t[-1] >= 12 * WINDOW  # at least the windows it had published


def test_a_killed_service_still_leaves_what_it_recorded(tmp_path, checkpoint, real_file):
    out = tmp_path / "rec.aedat4"
    proc = recording_service(real_file("face_dvxplorer.aedat4"), checkpoint, out)
    try:
        assert wait_for_windows(proc, 10)
        proc.kill()  # SIGKILL: the service cannot close anything
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # the recorder process notices within a second and finishes
    finally:
        if proc.poll() is None:
            proc.kill()
    recorded = read_events(out)
    assert len(recorded) > 0 and np.all(np.diff(recorded.t) >= 0)
    assert [p.name for p in tmp_path.iterdir()] == ["rec.aedat4"]  # no partial file left


def test_a_recorder_that_cannot_write_stops_the_service_with_one_line(tmp_path, checkpoint,
                                                                       real_file):
    import resource

    def limit_file_size():  # as a full disk: files stop growing at 300 kB (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    out = tmp_path / "rec.aedat4"
    done = subprocess.run([sys.executable, "-m", "stream", "--replay",
                           str(real_file("face_dvxplorer.aedat4")), "--loop", "--fast",
                           "--model", str(checkpoint), "--publish", "none", "--record",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          preexec_fn=limit_file_size)
    assert done.returncode != 0
    assert done.stderr.count("recorder failed") == 1, done.stderr  # said once, in one line
    assert "cannot write" in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # the partial file is gone
    with pytest.raises(AnonyNoiseError, match="no such directory"):
        RecorderSink(tmp_path / "nope" / "rec.aedat4", 32, 24)


def test_dv_port_of_the_command_serves_network_readers(tmp_path, checkpoint, real_file):
    import dv_processing as dv

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream", "--replay",
                             str(real_file("face_dvxplorer.aedat4")), "--loop", "--model",
                             str(checkpoint), "--publish", "none", "--dv-port", str(port),
                             "--status-every", "0.3"], cwd=REPO, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert wait_for_windows(proc, 1)
        reader, deadline = None, time.monotonic() + 120
        while reader is None and time.monotonic() < deadline:
            try:
                reader = dv.io.NetworkReader("127.0.0.1", port)
            except RuntimeError:  # not listening yet
                time.sleep(0.2)
        assert reader is not None and reader.getEventResolution() == (320, 240)
        got = 0
        while got < 10_000 and time.monotonic() < deadline:
            batch = reader.getNextEventBatch()
            got += 0 if batch is None else batch.size()
            if batch is None:
                time.sleep(0.01)
        assert got >= 10_000
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err


def test_client_keys_name_what_is_missing(tmp_path):
    from stream.keys import client_keys, make_keys

    with pytest.raises(AnonyNoiseError, match="no such folder .*anonynoise-stream keys DIR"):
        client_keys(tmp_path / "nowhere")
    make_keys(tmp_path / "keys", ("alice",))
    with pytest.raises(AnonyNoiseError, match=r"bob.key_secret: no such key file .*--clients bob"):
        client_keys(tmp_path / "keys", "bob")
    public, secret, server = client_keys(tmp_path / "keys", "alice")
    assert public and secret and server


def test_secret_keys_are_readable_by_their_owner_only(tmp_path):
    from stream.keys import make_keys

    old = os.umask(0o022)
    try:
        keys = make_keys(tmp_path / "keys", ("alice",))
    finally:
        os.umask(old)
    for secret in (keys / "server.key_secret", keys / "clients" / "alice.key_secret"):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    for public in (keys / "server.key", keys / "clients" / "alice.key"):
        assert public.stat().st_mode & 0o777 == 0o644, public


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:99999", "tcp://127.0.0.1:0",
                                     "tcp://127.0.0.1"])
def test_a_tcp_address_without_a_usable_port_is_refused_by_both_ends(address):
    # ZeroMQ would take 99999 modulo 65536 and listen where no client looks
    with pytest.raises(AnonyNoiseError, match="the port must be 1 to 65535"):
        Publisher(address)
    with pytest.raises(AnonyNoiseError, match="the port must be 1 to 65535"):
        StreamClient(address)


def test_the_last_status_line_counts_windows_a_stop_left_queued():
    from stream.cli import status_line

    s = {"seconds": 2.0, "events_in_per_s": 1e6, "events_out_per_s": 2e6, "windows_in": 37,
         "windows_out": 33, "latency_ms_p50": None, "latency_ms_p99": None,
         "dropped": {"queue": 2, "anonymization": 1, "sink": 4, "burst_events": 0}}
    assert "still queued" not in status_line(s)  # while running, one is always in flight
    assert "windows 33/37" in status_line(s, final=True)
    assert "; 1 still queued at the stop)" in status_line(s, final=True)
    s["windows_out"] = 34
    assert "still queued" not in status_line(s, final=True)  # all accounted for


def test_the_model_leaves_a_core_to_the_rest_of_the_service(monkeypatch):
    from stream.cli import model_threads

    # the cores this process may use (its affinity), else the machine's
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert model_threads(None) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert model_threads(None) == 15
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # not Linux
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert model_threads(None) == 15
    assert model_threads(2) == 2
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert model_threads(None) == 1
    with pytest.raises(AnonyNoiseError, match="at least 1"):
        model_threads(0)


def test_a_dv_port_in_use_is_one_line_without_the_librarys_source_location(checkpoint):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("--synthetic", "--model", str(checkpoint), "--publish", "none",
                   "--dv-port", str(port), "--status-every", "0", timeout=120)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"cannot serve DV output on 127.0.0.1:{port}" in last, done.stderr
    assert last.endswith("Address already in use") and "[system:" not in last, last
    assert "Traceback" not in done.stderr


def test_the_status_line_says_when_the_anonymizer_falls_behind_the_source():
    from stream.cli import BEHIND_MS, status_line

    s = {"seconds": 40.0, "events_in_per_s": 2e6, "events_out_per_s": 1e6, "windows_in": 144,
         "windows_out": 140, "dropped": {"queue": 0, "anonymization": 0, "sink": 0,
                                          "burst_events": 0},
         "latency_ms_p50": 15499.4, "latency_ms_p99": 32395.5}
    assert "slower than real time" in status_line(s)
    s["latency_ms_p50"] = BEHIND_MS / 2
    assert "slower than real time" not in status_line(s)
    s["latency_ms_p50"] = s["latency_ms_p99"] = None  # --fast: no latency at all
    assert "slower than real time" not in status_line(s)
