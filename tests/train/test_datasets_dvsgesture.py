import numpy as np
import numpy.lib.recfunctions  # noqa: F401
import pytest
import tonic
import torch

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import make_events, to_dvsgesture_array
from train.datasets.dvsgesture import load_split, scan, whole_sample_frames


def write_tree(root, users=(1, 2), lightings=("lab", "led"), classes=range(3)):
    rng = np.random.default_rng(0)
    for user in users:
        for lighting in lightings:
            folder = root / "ibmGestureTrain" / f"user{user:02d}_{lighting}"
            folder.mkdir(parents=True)
            for c in classes:
                n = 500
                ev = make_events(np.sort(rng.integers(0, 2_000_000, n)), rng.integers(0, 128, n),
                                 rng.integers(0, 128, n), rng.integers(0, 2, n), 128, 128)
                np.save(folder / f"{c}.npy", to_dvsgesture_array(ev))
    (root / "ibmGestureTrain" / "README.txt").write_text("not a session")


def test_scan_reads_users_lightings_and_classes(tmp_path):
    write_tree(tmp_path, classes=(0, 1, 10))
    recs = scan(tmp_path, "train")
    assert len(recs) == 2 * 2 * 3
    assert [r.target for r in recs[:3]] == [0, 1, 10]  # numeric order, not "10" < "2"
    assert {r.user for r in recs} == {1, 2} and {r.lighting for r in recs} == {"lab", "led"}
    with pytest.raises(AnonyNoiseError, match="no such folder"):
        scan(tmp_path, "test")


def test_an_events_filter_gets_microseconds_and_the_truncation_follows_it(tmp_path):
    # a stream's filter works in µs: given whole ms (as until 2026-11-29) a 10 ms slot was
    # 10 s, one slot per recording
    write_tree(tmp_path, users=(1,), lightings=("lab",), classes=(0,))
    rec = scan(tmp_path, "train")[0]
    seen = []

    def identity(events):
        seen.append(events)
        return events

    assert np.array_equal(whole_sample_frames(rec, bins=5, events_filter=identity),
                          whole_sample_frames(rec, bins=5))
    array = np.load(rec.path)
    assert seen[0].t[-1] == round(array[-1, 3] * 1000) and seen[0].t[-1] > 1_000_000


def test_whole_sample_frames_equal_the_references_tonic_toframe(tmp_path):
    write_tree(tmp_path, users=(1,), lightings=("lab",), classes=(0,))
    rec = scan(tmp_path, "train")[0]
    ours = whole_sample_frames(rec, bins=5)
    # the reference: the float ms column cast to int64 (truncated), then ToFrame(n_time_bins=5)
    ev = np.load(rec.path)
    dtype = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
    structured = np.lib.recfunctions.unstructured_to_structured(ev, dtype)
    theirs = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=5)(structured)
    assert ours.shape == (10, 128, 128)
    assert np.array_equal(ours, theirs.reshape(10, 128, 128).astype(np.float32))
    # µs timestamps bin differently: the truncation is what makes it the reference's
    exact = whole_sample_frames(rec, bins=5, reference_ms=False)
    assert exact.sum() > 0 and not np.array_equal(exact, ours)


def test_load_split_and_a_broken_file(tmp_path):
    write_tree(tmp_path)
    frames, recs = load_split(tmp_path, "train")
    assert frames.shape == (12, 10, 128, 128) and frames.dtype == np.float32
    recs[0].path.write_bytes(b"garbage")
    with pytest.raises(AnonyNoiseError, match="not a DVS-Gesture recording"):
        load_split(tmp_path, "train")


def test_synthetic_benchmark_sensor_size_comes_from_its_manifest(tmp_path):
    from anonynoise.synth import DatasetConfig, generate_dataset

    root = generate_dataset(tmp_path, DatasetConfig(users=2, test_users=1, reps=1, size=32,
                                                    duration_s=0.3), workers=1)
    frames, recs = load_split(root, "train")
    assert frames.shape == (11, 10, 32, 32) and len(recs) == 11
    # --dataset synth takes the folder given to `anonynoise synth dataset` or its DVSGesture/
    from train.datasets import open_dataset

    assert root.name == "DVSGesture"
    a, b = open_dataset("synth", root), open_dataset("synth", root.parent)
    assert len(a.train) == len(b.train) == 11
    assert float(a.train[0][0].sum()) == float(b.train[0][0].sum())


def write_split(root, split, users, lightings=("lab", "led"), classes=range(3), n=400, seed=0):
    rng = np.random.default_rng(seed)
    for user in users:
        for lighting in lightings:
            folder = root / split / f"user{user:02d}_{lighting}"
            folder.mkdir(parents=True)
            for c in classes:
                ev = make_events(np.sort(rng.integers(0, 1_000_000, n)), rng.integers(0, 128, n),
                                 rng.integers(0, 128, n), rng.integers(0, 2, n), 128, 128)
                np.save(folder / f"{c}.npy", to_dvsgesture_array(ev))


def test_benchmark_roles_labels_and_first_session_queries(tmp_path):
    from train.datasets import open_dataset

    write_split(tmp_path, "ibmGestureTrain", users=(3, 1))
    write_split(tmp_path, "ibmGestureTest", users=(7, 9))
    bench = open_dataset("dvsg", tmp_path)
    assert (len(bench.train), len(bench.val)) == (12, 12)
    assert bench.n_ids == 2 and bench.n_targets == 11
    x, target, id_label, user, rec = bench.train[0]
    assert x.shape == (10, 128, 128) and (user, id_label) == (1, 0)  # users sorted -> 0..K-1
    assert bench.train[len(bench.train) - 1][2] == 1
    # not the real DVS-Gesture: queries are each test person's first session ("lab")
    assert len(bench.query) == 6 and len(bench.gallery) == 6
    assert {bench.query[i][3] for i in range(6)} == {7, 9}
    assert all(bench.val[i][2] == -1 for i in range(len(bench.val)))  # no train labels in test
    # query and gallery share val's frames instead of making them twice
    q = bench.query.samples[0]
    assert bench.query.frames(0) is bench.val.frames(bench.val.samples.index(q))


def test_the_references_query_list_is_used_on_the_real_layout(tmp_path):
    from train.datasets.dvsgesture import QUERY_LIST, query_recordings, scan

    listed = [line.split()[2] for line in QUERY_LIST.read_text().splitlines() if line.strip()]
    assert len(listed) == 66 and len(set(listed)) == 60
    for path in set(listed):  # a test folder holding exactly the listed files plus one more
        f = tmp_path / path.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        ev = make_events([0, 1000], [1, 2], [1, 2], [0, 1], 128, 128)
        np.save(f, to_dvsgesture_array(ev))
    extra = tmp_path / "ibmGestureTest" / "user24_led" / "0.npy"
    extra.parent.mkdir(parents=True, exist_ok=True)
    np.save(extra, to_dvsgesture_array(make_events([0, 5], [1, 2], [1, 2], [0, 1], 128, 128)))
    test = scan(tmp_path, "test")
    queries = query_recordings(test)
    assert len(queries) == 60
    assert all(test[i].path != extra for i in queries)


def test_windows_as_the_stream_cuts_them(tmp_path):
    from train.datasets import open_dataset

    write_split(tmp_path, "ibmGestureTrain", users=(1, 2), n=2000)
    write_split(tmp_path, "ibmGestureTest", users=(3,), n=2000)
    bench = open_dataset("dvsg", tmp_path, window_ms=100, windows_per_recording=3)
    assert bench.representation.window_us == 100_000
    assert len(bench.train) == 3 * 12 and len(bench.val) == 3 * 6
    # a 100 ms window holds about a tenth of a 1 s recording's 2000 events
    total = float(bench.val[0][0].sum())
    assert 100 < total < 320
    # evaluation windows are fixed, training windows drawn again each time
    assert torch.equal(bench.val[1][0], bench.val[1][0])
    torch.manual_seed(0)
    draws = [bench.train[0][0] for _ in range(4)]
    assert not all(torch.equal(draws[0], d) for d in draws[1:])
    # windows of one recording are the same recording for the Re-ID junk rule
    assert len({bench.val[i][4] for i in range(3)}) == 1


def test_size_shrinks_counts_by_summing(tmp_path):
    from train.datasets import open_dataset

    write_split(tmp_path, "ibmGestureTrain", users=(1, 2))
    write_split(tmp_path, "ibmGestureTest", users=(3,))
    full = open_dataset("dvsg", tmp_path)
    small = open_dataset("dvsg", tmp_path, size=32)
    assert small.train[0][0].shape == (10, 32, 32)
    assert float(small.train[0][0].sum()) == float(full.train[0][0].sum())
    assert (small.representation.width, small.representation.height) == (32, 32)


def test_layout_errors(tmp_path):
    from train.datasets import open_dataset

    with pytest.raises(AnonyNoiseError, match="anonynoise synth dataset"):
        open_dataset("synth", tmp_path / "nothing")
    write_split(tmp_path, "ibmGestureTrain", users=(1, 2))
    write_split(tmp_path, "ibmGestureTest", users=(2,))
    with pytest.raises(AnonyNoiseError, match="not a synthetic benchmark"):
        open_dataset("synth", tmp_path)
    with pytest.raises(AnonyNoiseError, match=r"users \[2\] are in both splits"):
        open_dataset("dvsg", tmp_path)
