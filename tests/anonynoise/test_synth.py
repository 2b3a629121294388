import json
import subprocess
import sys
import time

import numpy as np
import pytest

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch, from_dvsgesture_array
from anonynoise.io import read_events
from anonynoise.synth import (
    CUES,
    GESTURES,
    DatasetConfig,
    LiveScene,
    generate_dataset,
    record_gesture,
    sample_person,
    sample_variation,
)
from anonynoise.synth.figure import figure_shapes
from anonynoise.synth.gestures import arm_angles
from anonynoise.synth.scene import adaptive_frames

TINY = DatasetConfig(users=3, test_users=1, reps=2, size=24, duration_s=0.3, seed=5)


def person_and_variation(seed=0):
    rng = np.random.default_rng(seed)
    return sample_person(rng), sample_variation(rng, "lab")


def test_recordings_are_deterministic_for_a_seed():
    p, v = person_and_variation()
    a = record_gesture(p, 3, v, width=48, height=40, duration_s=0.4, seed=11)
    b = record_gesture(p, 3, v, width=48, height=40, duration_s=0.4, seed=11)
    c = record_gesture(p, 3, v, width=48, height=40, duration_s=0.4, seed=12)
    assert len(a) > 100 and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in "txyp")
    assert len(a) != len(c) or not np.array_equal(a.t, c.t)


def test_events_are_valid_and_inside_the_recording():
    p, v = person_and_variation(1)
    ev = record_gesture(p, 0, v, width=64, height=48, duration_s=0.5, seed=1)
    EventBatch(ev.t.copy(), ev.x.copy(), ev.y.copy(), ev.p.copy(), 64, 48)  # re-validated
    assert ev.sensor_size == (64, 48)
    assert 0 <= ev.t[0] and ev.t[-1] < 500_000
    assert 0.3 < ev.p.mean() < 0.7


def test_event_rates_are_in_the_range_of_dvs_gesture():
    rng = np.random.default_rng(2)
    rates = []
    for gesture in range(len(GESTURES)):
        p, v = sample_person(rng), sample_variation(rng)
        ev = record_gesture(p, gesture, v, duration_s=1.0, seed=gesture)
        rates.append(len(ev) / 1.0)
    assert 5e4 <= np.median(rates) <= 1e6, rates
    assert min(rates) >= 1e4 and max(rates) <= 2e6, rates


def test_motion_makes_the_events():
    p, v = person_and_variation(3)
    v = type(v)(**{**v.__dict__, "start": 10.0})  # the gesture never starts: only sway, noise
    still = record_gesture(p, 3, v, duration_s=0.5, seed=0)
    p, v = person_and_variation(3)
    moving = record_gesture(p, 3, v, duration_s=0.5, seed=0)
    assert len(moving) > 2 * len(still)


def test_adaptive_frames_follow_the_motion():
    p, v = person_and_variation(4)
    t = np.arange(2001) / 2000
    shapes = figure_shapes(p, v, arm_angles(3, t, p, v, np.random.default_rng(0)), t, 128, 128)
    frames = adaptive_frames(shapes, t, max_shift_px=0.5, max_gap_s=0.004)
    assert frames[0] == 0 and frames[-1] == 2000
    gaps = np.diff(t[frames])
    assert gaps.max() <= 0.004 + 1e-9
    rest = frames[t[frames] < v.start]
    assert len(rest) < 0.5 * v.start * 2000  # sparse while the arms rest
    assert len(frames) < 2001


def test_cues_switched_off_are_the_same_for_everyone():
    rng = np.random.default_rng(0)
    people = [sample_person(rng, ("motion",)) for _ in range(3)]
    for name in CUES["clothing"] + CUES["body"]:
        assert len({getattr(q, name) for q in people}) == 1, name
    assert len({q.speed for q in people}) == 3
    with pytest.raises(ValueError, match="unknown cues"):
        sample_person(rng, ("voice",))


def test_dataset_layout_and_determinism(tmp_path):
    root = generate_dataset(tmp_path / "a", TINY, workers=2)
    files = sorted(p.relative_to(root) for p in root.rglob("*.npy"))
    assert len(files) == 3 * 2 * 11
    assert {f.parts[0] for f in files} == {"ibmGestureTrain", "ibmGestureTest"}
    train_users = {f.parts[1].split("_")[0] for f in files if f.parts[0] == "ibmGestureTrain"}
    test_users = {f.parts[1].split("_")[0] for f in files if f.parts[0] == "ibmGestureTest"}
    assert train_users == {"user01", "user02"} and test_users == {"user03"}
    for user in ("user01", "user03"):  # two sessions under different lightings
        sessions = {f.parts[1] for f in files if f.parts[1].startswith(user)}
        assert len(sessions) == 2
    assert {f.name for f in files} == {f"{k}.npy" for k in range(11)}
    arr = np.load(root / files[0])
    assert arr.dtype == np.float64 and arr.shape[1] == 4
    ev = from_dvsgesture_array(arr)  # x, y, p, t in ms with a µs fraction
    assert ev.sensor_size == (128, 128) and ev.x.max() < 24 and ev.y.max() < 24
    manifest = json.loads((root / "anonynoise-synth.json").read_text())
    assert manifest["recordings"] == 66 and manifest["config"]["seed"] == 5
    other = generate_dataset(tmp_path / "b", TINY, workers=1)
    for f in files:
        assert np.array_equal(np.load(root / f), np.load(other / f)), f
    assert not (tmp_path / "a" / "DVSGesture.partial").exists()


def test_an_existing_dataset_is_kept_unless_forced(tmp_path):
    root = generate_dataset(tmp_path, TINY, workers=1)
    marker = root / "keep.txt"
    marker.write_text("x")
    with pytest.raises(AnonyNoiseError, match="already exists"):
        generate_dataset(tmp_path, TINY, workers=1)
    assert marker.exists()
    generate_dataset(tmp_path, TINY, workers=1, force=True)
    assert not marker.exists()


def test_bad_dataset_configs():
    # the library names its parameters, never the command's flags (the command adds them)
    for bad, parameter in [(DatasetConfig(users=5, test_users=5), "test_users"),
                           (DatasetConfig(reps=6), "reps"), (DatasetConfig(size=8), "size")]:
        with pytest.raises(AnonyNoiseError, match=f"^{parameter} must be") as caught:
            bad.check()
        assert caught.value.parameter == parameter and "--" not in str(caught.value)


def test_tonic_reads_the_generated_tree(tmp_path):
    tonic = pytest.importorskip("tonic")
    config = DatasetConfig(users=12, test_users=2, reps=1, size=16, duration_s=0.2, seed=1)
    root = generate_dataset(tmp_path, config, workers=2)
    # tonic checks for its downloaded archive before it looks at the files
    for name in ("ibmGestureTrain.tar.gz", "ibmGestureTest.tar.gz"):
        (root / name).write_bytes(b"")
    train = tonic.datasets.DVSGesture(str(tmp_path), train=True)
    assert len(train) == 10 * 11
    events, target = train[0]
    assert set(events.dtype.names) == {"x", "y", "p", "t"} and 0 <= target <= 10
    i = train.data.index(next(d for d in train.data if d.endswith("/7.npy")))
    events, target = train[i]
    assert target == 7
    ours = from_dvsgesture_array(np.load(train.data[i]))
    assert np.array_equal(events["x"], ours.x) and np.abs(events["t"] - ours.t).max() <= 1


def test_live_scene_is_a_continuous_sorted_stream():
    scene = LiveScene(48, 48, seed=3, chunk_ms=10)
    it = iter(scene)
    t_prev = -1
    for k in range(120):
        batch = next(it)
        assert batch.sensor_size == (48, 48)
        if len(batch):
            assert batch.t[0] >= max(t_prev, k * 10_000) and batch.t[-1] < (k + 1) * 10_000
            t_prev = int(batch.t[-1])
    assert scene.gestures and scene.gestures[0][0] == 0.0


def test_live_scene_paces_in_real_time():
    scene = LiveScene(32, 32, seed=1, chunk_ms=20, realtime=True)
    it = iter(scene)
    next(it)
    start = time.monotonic()
    for _ in range(10):
        next(it)
    assert time.monotonic() - start >= 0.15  # ten chunks of 20 ms take about 0.2 s


def test_live_scene_clock_starts_with_its_first_chunk():
    """A slow start (the renderer and simulator compile on a fresh install) must not come out
    later as a burst of overdue chunks: a live source would drop them."""
    scene = LiveScene(32, 32, seed=1, chunk_ms=20, realtime=True)
    run, calls = scene.sim.run, []

    def slow_first(*args):
        if not calls:
            time.sleep(0.5)  # 25 chunks' worth
        calls.append(1)
        return run(*args)

    scene.sim.run = slow_first
    it = iter(scene)
    next(it)
    start = time.monotonic()
    for _ in range(10):
        next(it)
    assert time.monotonic() - start >= 0.15


def test_synth_commands(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "anonynoise", "synth", *map(str, args)],
                              capture_output=True, text=True, timeout=300)

    proc = cli("record", tmp_path / "r.aedat4", "--seconds", "0.5", "--size", "32", "--seed", "2")
    assert proc.returncode == 0, proc.stderr
    ev = read_events(tmp_path / "r.aedat4")
    assert ev.sensor_size == (32, 32) and ev.t[-1] < 500_000 and len(ev) > 100
    proc = cli("record", tmp_path / "r.txt", "--seconds", "0.1")  # was an .aedat4 named .txt
    assert proc.returncode == 2 and "synth record writes .aedat4" in proc.stderr
    assert not (tmp_path / "r.txt").exists() and "Traceback" not in proc.stderr
    proc = cli("dataset", tmp_path / "d", "--users", "2", "--test-users", "1", "--reps", "1",
               "--size", "16", "--duration", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 22 recordings" in proc.stdout
    proc = cli("dataset", tmp_path / "d", "--users", "2", "--test-users", "1")
    assert proc.returncode == 2 and "--force: " in proc.stderr and "already exists" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("dataset", tmp_path / "e", "--users", "3", "--test-users", "3")
    assert proc.returncode == 2 and "error: --test-users: test_users must be" in proc.stderr


def test_synth_dataset_stopped_by_sigterm_leaves_no_workers_and_no_partial_folder(
        tmp_path, processes):
    import signal

    children, alive = processes

    proc = subprocess.Popen([sys.executable, "-m", "anonynoise", "synth", "dataset",
                             str(tmp_path / "d"), "--size", "64", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "d" / "DVSGesture.partial"
    deadline = time.time() + 120
    while not (partial.is_dir() and any(partial.rglob("*.npy"))) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.1)
    workers = children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "no recordings written by workers"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "anonynoise: interrupted"
    assert not partial.exists() and not (tmp_path / "d" / "DVSGesture").exists()
    time.sleep(0.5)
    assert not alive(workers)
