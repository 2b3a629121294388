import numpy as np
import pytest
import tonic

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import make_events, to_dvsgesture_array, to_structured
from train.dvsgesture import load_split, scan, whole_sample_frames


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


def test_whole_sample_frames_equal_tonic_toframe(tmp_path):
    write_tree(tmp_path, users=(1,), lightings=("lab",), classes=(0,))
    rec = scan(tmp_path, "train")[0]
    ours = whole_sample_frames(rec, bins=5)
    ev = np.load(rec.path)
    from anonynoise.events import from_dvsgesture_array
    structured = to_structured(from_dvsgesture_array(ev))
    theirs = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=5)(structured)
    assert ours.shape == (10, 128, 128)
    assert np.array_equal(ours, theirs.reshape(10, 128, 128).astype(np.float32))


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
