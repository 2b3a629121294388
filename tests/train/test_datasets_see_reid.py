"""SEE and Event-ReId v2: the on-disk layouts, the reference's preprocessing commands
(train.reid_utils.event_partition, split_train_test) and the loaders (train.datasets.see,
train.datasets.eventreid), on small trees built in tmp_path."""

import json
import logging
from fractions import Fraction

import numpy as np
import pytest
import tonic
from PIL import Image

from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError
from train.datasets import open_dataset
from train.datasets.eventreid import QUERY_LIST, chunk_frames, load_eventreid, read_chunk
from train.datasets.see import METADATA, load_see, read_metadata, sequence_frames
from train.reid_utils.event_partition import main as partition_main
from train.reid_utils.split_train_test import TEST_IDS, split
from train.reid_utils.split_train_test import main as split_main

# ============================================================================== SEE

H, W = 6, 8


def see_frames(n, seed=0, h=H, w=W):
    """n grayscale frames: each pixel black (0), white (255) or no event (128), different in
    every frame (so the order of the frames matters)."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 128, 255], np.uint8), size=(n, h, w), p=[0.3, 0.4, 0.3])


def expected_bins(frames, bins=5):
    """(2 * bins, H, W): white, black planes of each of `bins` consecutive groups."""
    masks = np.stack([frames == 255, frames == 0], axis=1).astype(np.float32)
    used = masks[: len(frames) // bins * bins]
    return used.reshape(bins, -1, *masks.shape[1:]).sum(1).reshape(2 * bins, *frames.shape[1:])


def write_sequence(folder, frames, ext=".png", shuffle=True):
    folder.mkdir(parents=True)
    order = np.random.default_rng(1).permutation(len(frames)) if shuffle else range(len(frames))
    for i in order:  # written out of order: only the names may give the order
        im = Image.fromarray(frames[i])
        if ext == ".jpg":
            im.save(folder / f"{i:05d}.jpg", quality=100)
        else:
            im.save(folder / f"{i:05d}{ext}")


SEE_TREE = {
    # role: [(filename, user, emotion)]
    "train": [("s1_007_happiness", "007", "happiness"), ("s2_003_anger", "003", "anger"),
              ("s3_012_surprise", "012", "surprise"), ("s4_003_happiness", "003", "happiness")],
    "val": [("v1_050_anger", "050", "anger"), ("v2_050_surprise", "050", "surprise"),
            ("v3_060_anger", "060", "anger")],
    "query": [("v1_050_anger", "050", "anger"), ("v3_060_anger", "060", "anger")],
    "gallery": [("v2_050_surprise", "050", "surprise")],
}


def write_see(root, tree=SEE_TREE, n_frames=10, skip=()):
    """ROOT/event/<emotion>/<sequence>/<NNNNN>.png and a metadata JSON; returns its path and
    the frames written per sequence."""
    written = {}
    meta = {role: [] for role in tree}
    for role, entries in tree.items():
        for name, user, emotion in entries:
            meta[role].append({"filename": name, "user_id": user, "target_id": emotion})
            if name in written or name in skip:
                continue
            frames = see_frames(n_frames, seed=len(written))
            write_sequence(root / "event" / emotion / name, frames)
            written[name] = frames
    path = root / "meta.json"
    path.write_text(json.dumps(meta))
    return path, written


def test_see_frames_are_white_black_planes_of_five_consecutive_groups(tmp_path):
    frames = see_frames(10)
    write_sequence(tmp_path / "seq", frames)
    x = sequence_frames(tmp_path / "seq")
    assert x.shape == (10, H, W) and x.dtype == np.float32
    assert np.array_equal(x, expected_bins(frames))
    # spelled out for the first bin: frames 0 and 1, white plane first
    assert np.array_equal(x[0], (frames[0] == 255).astype(int) + (frames[1] == 255))
    assert np.array_equal(x[1], (frames[0] == 0).astype(int) + (frames[1] == 0))
    # the order is the file names' (a shuffled order gives other sums)
    shuffled = frames[np.random.default_rng(1).permutation(10)]
    assert not np.array_equal(x, expected_bins(shuffled))


def test_see_frame_count_not_a_multiple_of_five_drops_the_tail(tmp_path):
    frames = see_frames(13, seed=3)
    frames[10:] = 255  # the three dropped frames would show in the last bin
    write_sequence(tmp_path / "seq", frames)
    x = sequence_frames(tmp_path / "seq")
    assert np.array_equal(x, expected_bins(frames[:10]))
    assert x.reshape(5, 2, H, W).sum() == ((frames[:10] == 0) | (frames[:10] == 255)).sum()


def test_see_jpeg_frames_of_flat_blocks_and_other_files(tmp_path):
    # JPEG at quality 100 keeps flat 8x8 blocks exact; other files in the folder are ignored
    rng = np.random.default_rng(4)
    blocks = rng.choice(np.array([0, 128, 255], np.uint8), size=(5, 2, 3))
    frames = blocks.repeat(8, axis=1).repeat(8, axis=2)
    write_sequence(tmp_path / "seq", frames, ext=".jpg")
    (tmp_path / "seq" / "notes.txt").write_text("not a frame")
    x = sequence_frames(tmp_path / "seq")
    assert x.shape == (10, 16, 24)
    assert np.array_equal(x, expected_bins(frames))


def test_see_one_bit_images(tmp_path):
    frames = see_frames(5, seed=5)
    frames[frames == 128] = 0
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).convert("1").save(folder / f"{i:05d}.png")
    x = sequence_frames(folder)
    assert np.array_equal(x, expected_bins(frames))
    assert np.all(x.reshape(5, 2, H, W).sum(1) == 1)  # every pixel is white or black


def test_see_too_few_frames_or_a_corrupt_one(tmp_path):
    write_sequence(tmp_path / "short", see_frames(4))
    with pytest.raises(AnonyNoiseError, match="4 frames, need at least 5"):
        sequence_frames(tmp_path / "short")
    write_sequence(tmp_path / "bad", see_frames(6))
    (tmp_path / "bad" / "00002.png").write_bytes(b"not an image at all")
    with pytest.raises(AnonyNoiseError, match="00002.png: unreadable image"):
        sequence_frames(tmp_path / "bad")
    write_sequence(tmp_path / "cut", see_frames(5, h=40, w=40))
    data = (tmp_path / "cut" / "00003.png").read_bytes()
    (tmp_path / "cut" / "00003.png").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(AnonyNoiseError, match="00003.png"):
        sequence_frames(tmp_path / "cut")


def test_see_frames_of_different_sizes(tmp_path):
    folder = tmp_path / "seq"
    write_sequence(folder, see_frames(5))
    Image.fromarray(see_frames(1, h=H + 1)[0]).save(folder / "00002.png")
    with pytest.raises(AnonyNoiseError, match="different sizes"):
        sequence_frames(folder)


def test_load_see_roles_labels_and_frames(tmp_path):
    meta, written = write_see(tmp_path)
    bench = load_see(tmp_path, metadata=meta)
    assert [len(bench.train), len(bench.val), len(bench.query), len(bench.gallery)] == \
        [4, 3, 2, 1]
    assert bench.n_targets == 3 and bench.notes["emotions"] == ["anger", "happiness", "surprise"]
    assert bench.n_ids == 3 and bench.input_shape == (10, H, W)
    # identity labels 0..K-1 in the order of the users' numbers (3, 7, 12: not as strings)
    assert bench.train.id_labels == {3: 0, 7: 1, 12: 2}
    items = [bench.train[i] for i in range(4)]
    assert [(t, label, user) for _, t, label, user, _ in items] == \
        [(1, 1, 7), (0, 0, 3), (2, 2, 12), (1, 0, 3)]
    for (x, *_), (name, _, _) in zip(items, SEE_TREE["train"]):
        assert x.shape == (10, H, W)
        assert np.array_equal(x.numpy(), expected_bins(written[name]))
    # evaluation people are not training classes; their targets use the training emotions
    assert [bench.val[i][1:4] for i in range(3)] == [(0, -1, 50), (2, -1, 50), (0, -1, 60)]
    # query and gallery are val's sequences: the same recording numbers, the same frames
    val_rec = {s.source.name: s.recording for s in bench.val.samples}
    for part in (bench.query, bench.gallery):
        for i, s in enumerate(part.samples):
            assert s.recording == val_rec[s.source.name]
            assert np.array_equal(part[i][0].numpy(), expected_bins(written[s.source.name]))
    assert len(set(val_rec.values())) == 3
    assert len({s.recording for s in bench.train.samples} | set(val_rec.values())) == 7


def test_load_see_missing_sequences_and_layouts(tmp_path):
    meta, _ = write_see(tmp_path / "a", skip=("s3_012_surprise",))
    with pytest.raises(AnonyNoiseError, match=r"1 sequences .* missing.*s3_012_surprise"):
        load_see(tmp_path / "a", metadata=meta)
    (tmp_path / "b").mkdir()
    with pytest.raises(AnonyNoiseError, match="no event/ folder"):
        load_see(tmp_path / "b", metadata=meta)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [{"filename": "x"}], "val": [], "query": [],
                               "gallery": []}))
    (tmp_path / "b" / "event").mkdir()
    with pytest.raises(AnonyNoiseError, match="not SEE split metadata"):
        load_see(tmp_path / "b", metadata=bad)


def test_load_see_refuses_an_evaluation_emotion_unseen_in_training(tmp_path):
    tree = dict(SEE_TREE, val=SEE_TREE["val"] + [("v9_070_fear", "070", "fear")])
    meta, _ = write_see(tmp_path, tree=tree)
    with pytest.raises(AnonyNoiseError, match="emotion 'fear' not in training"):
        load_see(tmp_path, metadata=meta)


def test_load_see_short_sequence_fails_when_made_with_its_name(tmp_path):
    meta, _ = write_see(tmp_path, n_frames=4)
    bench = load_see(tmp_path, metadata=meta)  # frames are made on first use
    with pytest.raises(AnonyNoiseError, match="s1_007_happiness: 4 frames"):
        bench.train.preload()


def test_the_shipped_see_metadata():
    meta = read_metadata()
    assert METADATA.is_file()
    assert {role: len(meta[role]) for role in ("train", "val", "query", "gallery")} == \
        {"train": 2088, "val": 140, "query": 40, "gallery": 100}
    assert len({e["target_id"] for e in meta["train"]}) == 7
    train_users = {e["user_id"] for e in meta["train"]}
    val_users = {e["user_id"] for e in meta["val"]}
    assert len(train_users) == 78 and len(val_users) == 20 and not train_users & val_users
    names = lambda role: {e["filename"] for e in meta[role]}  # noqa: E731
    assert names("query") | names("gallery") == names("val")
    assert not names("query") & names("gallery")


# ============================================================================== Event-ReId v2


def write_events(path, lines, header="640 480"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in ([header] if header else []) + lines))


def event_lines(times, seed=0):
    rng = np.random.default_rng(seed)
    return [f"{t} {rng.integers(0, 640)} {rng.integers(0, 480)} {rng.integers(0, 2)}"
            for t in times]


def chunk_of(t, t0, integration=Fraction("33.3")):
    """The chunk number (from 1) of an event at t: t0 + (k-1)*I < t <= t0 + k*I, exactly."""
    t, t0 = Fraction(t), Fraction(t0)
    if t == t0:
        return 1
    k = (t - t0) / integration
    return int(k) if k == int(k) else int(k) + 1


def chunk_files(out, ident, cam):
    return sorted((out / "Event_ReId_v2" / ident / cam).iterdir())


def test_partition_cuts_33_3_unit_chunks_exactly(tmp_path):
    # t0 = 1000, then events at n + 0.05: never within 0.05 of a boundary 1000 + k * 33.3
    rng = np.random.default_rng(0)
    times = ["1000.0"] + [f"{n}.05" for n in sorted(rng.choice(np.arange(1000, 1400), 300,
                                                               replace=False))]
    lines = event_lines(times)
    write_events(tmp_path / "in" / "004" / "cam_3" / "events.txt", lines)
    assert partition_main(["--input_dir", str(tmp_path / "in"),
                           "--out_dir", str(tmp_path / "out")]) == 0
    files = chunk_files(tmp_path / "out", "004", "cam_3")
    expected = {}
    for line in lines:
        expected.setdefault(chunk_of(line.split()[0], "1000.0"), []).append(line)
    assert [f.name for f in files] == [f"004_c3_{k:03d}.txt" for k in sorted(expected)]
    assert files[0].name == "004_c3_001.txt" and len(files) == 12  # 1000 .. 1399.05
    for f in files:
        k = int(f.stem.split("_")[-1])
        assert f.read_text().splitlines() == expected[k]
    assert sum(len(f.read_text().splitlines()) for f in files) == len(lines)


def test_partition_boundary_event_closes_its_chunk(tmp_path):
    lines = event_lines(["0.0", "10", "33.3", "33.4", "66.6", "66.7"])
    write_events(tmp_path / "in" / "001" / "cam_1" / "events.txt", lines)
    partition_main(["--input_dir", str(tmp_path / "in"), "--out_dir", str(tmp_path / "out")])
    files = chunk_files(tmp_path / "out", "001", "cam_1")
    assert [f.read_text().splitlines() for f in files] == [lines[:3], lines[3:5], lines[5:]]


def test_partition_silence_skips_numbers_and_writes_no_empty_files(tmp_path):
    lines = event_lines(["0", "10", "20", "150", "151", "200"])
    write_events(tmp_path / "in" / "001" / "cam_2" / "events.txt", lines)
    partition_main(["--input_dir", str(tmp_path / "in"), "--out_dir", str(tmp_path / "out")])
    files = chunk_files(tmp_path / "out", "001", "cam_2")
    assert [f.name for f in files] == ["001_c2_001.txt", "001_c2_005.txt", "001_c2_007.txt"]
    assert [len(f.read_text().splitlines()) for f in files] == [3, 2, 1]


def test_partition_rerun_replaces_old_chunks(tmp_path):
    events = tmp_path / "in" / "001" / "cam_1" / "events.txt"
    write_events(events, event_lines(["0", "50", "100"]))
    argv = ["--input_dir", str(tmp_path / "in"), "--out_dir", str(tmp_path / "out")]
    partition_main(argv)
    assert len(chunk_files(tmp_path / "out", "001", "cam_1")) == 3
    write_events(events, event_lines(["0", "5"]))
    partition_main(argv)
    assert [f.name for f in chunk_files(tmp_path / "out", "001", "cam_1")] == ["001_c1_001.txt"]


def test_partition_bad_input(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(AnonyNoiseError, match="no such folder"):
        partition_main(["--input_dir", str(tmp_path / "nowhere"), "--out_dir", str(out)])
    assert run(partition_main, ["--input_dir", str(tmp_path / "nowhere"), "--out_dir",
                                str(out)], prog="event_partition") == 2
    assert "event_partition: error:" in capsys.readouterr().err
    events = tmp_path / "in" / "001" / "cam_1" / "events.txt"
    write_events(events, event_lines(["0", "1", "2"]) + ["3 17 5"] + event_lines(["4"]))
    argv = ["--input_dir", str(tmp_path / "in"), "--out_dir", str(out)]
    with pytest.raises(AnonyNoiseError, match=r"events.txt:5: expected 't x y p'"):
        partition_main(argv)
    assert run(partition_main, argv, prog="event_partition") == 2
    assert "events.txt:5" in capsys.readouterr().err
    assert not (out / "Event_ReId_v2" / "001" / "cam_1").exists()  # nothing half-written
    assert not list((out / "Event_ReId_v2" / "001").glob("*.partial"))
    write_events(events, ["0 1 2 1", "zero 1 2 1"], header=None)
    with pytest.raises(AnonyNoiseError, match=r"events.txt:2: bad timestamp 'zero'"):
        partition_main(argv)


def build_raw(root, ids, cams=(1, 2), chunks=7, per_chunk=4, seed=0):
    """IN/<ID>/cam_<c>/events.txt, each `chunks` chunks of `per_chunk` events, inside the
    bounding box x in [100, 140], y in [50, 120]."""
    rng = np.random.default_rng(seed)
    for ident in ids:
        for cam in cams:
            lines = []
            for k in range(chunks):
                ts = np.sort(rng.uniform(0.1, 33.2, per_chunk)) + 33.3 * k + 1000
                if k == 0:
                    ts[0] = 1000  # t0: the first chunk starts on an event
                lines += [f"{t:.2f} {rng.integers(100, 141)} {rng.integers(50, 121)} "
                          f"{rng.integers(0, 2)}" for t in ts]
            write_events(root / f"{ident:03d}" / f"cam_{cam}" / "events.txt", lines)


def test_split_train_test_every_chunk_for_train_every_fifth_for_test(tmp_path):
    ids = (1, 2, 3, 5)
    build_raw(tmp_path / "in", ids, chunks=12)
    partition_main(["--input_dir", str(tmp_path / "in"), "--out_dir", str(tmp_path / "part")])
    assert split_main(["--data_dir", str(tmp_path / "part" / "Event_ReId_v2"),
                       "--out_dir", str(tmp_path / "data")]) == 0
    train = sorted(f.name for f in (tmp_path / "data" / "train").iterdir())
    test = sorted(f.name for f in (tmp_path / "data" / "test").iterdir())
    assert train == [f"{i:03d}_c{c}_{k:03d}.txt" for i in (1, 3) for c in (1, 2)
                     for k in range(1, 13)]
    assert test == [f"{i:03d}_c{c}_{k:03d}.txt" for i in (2, 5) for c in (1, 2)
                    for k in (1, 6, 11)]
    src = tmp_path / "part" / "Event_ReId_v2" / "005" / "cam_2" / "005_c2_006.txt"
    assert (tmp_path / "data" / "test" / "005_c2_006.txt").read_text() == src.read_text()
    assert TEST_IDS == {2, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32}


def test_split_counts_files_not_chunk_numbers(tmp_path):
    # with gaps in the numbering, "every 5th" is every 5th file in name order
    cam = tmp_path / "part" / "002" / "cam_1"
    cam.mkdir(parents=True)
    numbers = [1, 2, 4, 5, 9, 10, 11, 12, 20, 30, 31]
    for k in numbers:
        (cam / f"002_c1_{k:03d}.txt").write_text(f"{k} 1 1 1\n")
    counts = split(tmp_path / "part", tmp_path / "data")
    assert counts == {"train": 0, "test": 3}
    assert sorted(f.name for f in (tmp_path / "data" / "test").iterdir()) == \
        ["002_c1_001.txt", "002_c1_010.txt", "002_c1_031.txt"]
    with pytest.raises(AnonyNoiseError, match="no such folder"):
        split(tmp_path / "nowhere", tmp_path / "data")


def reid_tree(tmp_path, ids=(1, 2, 3, 5), chunks=12):
    build_raw(tmp_path / "in", ids, chunks=chunks)
    partition_main(["--input_dir", str(tmp_path / "in"), "--out_dir", str(tmp_path / "part")])
    split(tmp_path / "part" / "Event_ReId_v2", tmp_path / "data")
    return tmp_path / "data"


def test_load_eventreid_on_the_split_tree(tmp_path, caplog):
    root = reid_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        bench = load_eventreid(root)
    assert "query list does not match" in caplog.text
    assert len(bench.train) == 2 * 2 * 12 and len(bench.val) == 2 * 2 * 3
    assert bench.n_ids == 2 and bench.train.id_labels == {1: 0, 3: 1}
    assert bench.n_targets is None
    # queries: the first chunk of each test identity and camera; the rest is the gallery
    assert sorted(s.source.name for s in bench.query.samples) == \
        ["002_c1_001.txt", "002_c2_001.txt", "005_c1_001.txt", "005_c2_001.txt"]
    assert len(bench.gallery) == 8 and not {s.source.name for s in bench.gallery.samples} & \
        {s.source.name for s in bench.query.samples}
    # target = camera; recording = one per (identity, camera), across roles
    for part in (bench.train, bench.val):
        for s in part.samples:
            ident, cam, _ = s.source.name.split("_")
            assert s.target == int(cam[1:]) and s.user == int(ident)
    rec = {}
    for s in bench.train.samples + bench.val.samples:
        rec.setdefault((s.user, s.target), set()).add(s.recording)
    assert len(rec) == 8 and all(len(r) == 1 for r in rec.values())
    assert len({r for rs in rec.values() for r in rs}) == 8
    x, target, label, user, _ = bench.train[13]
    assert x.shape == (10, 304, 304) and (target, label, user) == (2, 0, 1)  # 001_c2_002
    assert bench.input_shape == (10, 304, 304)
    # training frames are resized nearest (counts stay counts), evaluation frames bilinear
    small = chunk_frames(bench.train.samples[13].source)
    assert set(np.unique(x.numpy())) <= set(np.unique(small))
    q = bench.query[0]
    assert q[0].shape == (10, 304, 304) and q[2] == -1
    assert "crop pad 25" in bench.augmentation.name


def write_chunk(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t} {x} {y} {p}\n" for t, x, y, p in rows))


def test_chunk_frames_bbox_crop_binning_and_centred_square(tmp_path):
    rng = np.random.default_rng(2)
    n = 400
    t = np.sort(rng.uniform(5000.0, 5033.3, n)).round(3)
    x = rng.integers(100, 141, n)
    y = rng.integers(50, 121, n)
    p = rng.integers(0, 2, n)
    x[:4], y[:4] = [100, 140, 120, 120], [80, 80, 50, 120]  # the box's edges, early
    path = tmp_path / "001_c1_001.txt"
    write_chunk(path, zip(t, x, y, p))
    ours = chunk_frames(path)
    assert ours.shape == (10, 71, 71) and ours.dtype == np.float32
    # the reference: t cast to int64, coordinates minus their minimum, tonic's ToFrame
    ev = np.zeros(n, np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16),
                               ("p", bool)]))
    ev["t"], ev["x"], ev["y"], ev["p"] = t.astype(np.int64), x - 100, y - 50, p > 0
    theirs = tonic.transforms.ToFrame(sensor_size=(41, 71, 2), n_time_bins=5)(ev)
    theirs = theirs.reshape(10, 71, 41).astype(np.float32)
    left = (71 - 41) // 2
    assert left == 15
    assert np.array_equal(ours[:, :, left:left + 41], theirs)
    assert not ours[:, :, :left].any() and not ours[:, :, left + 41:].any()
    assert ours[:, :, left].any() and ours[:, :, left + 40].any()  # x = 100 and x = 140
    assert ours[:, 0].any() and ours[:, 70].any()  # y = 50 and y = 120
    ti = t.astype(np.int64)
    kept = ti < ti[0] + (ti[-1] - ti[0]) // 5 * 5  # tonic drops the remainder
    assert 0 < (~kept).sum() < n and ours.sum() == kept.sum()
    # polarity planes: channel 0 of a bin is p = 0, channel 1 is p = 1
    assert ours[0::2].sum() == (kept & (p == 0)).sum()


def test_chunk_frames_wide_box_is_padded_top_and_bottom(tmp_path):
    rows = [(0, 10, 7, 1), (3, 30, 7, 0), (6, 20, 12, 1), (12, 15, 9, 1), (20, 25, 10, 0)]
    write_chunk(tmp_path / "001_c1_001.txt", rows)
    sq = chunk_frames(tmp_path / "001_c1_001.txt")
    assert sq.shape == (10, 21, 21)  # 21 wide, 6 tall
    top = (21 - 6) // 2
    assert not sq[:, :top].any() and not sq[:, top + 6:].any()
    assert sq[0 * 2 + 1, top + 0, 0] == 1  # t 0, p 1, x 10 -> col 0, y 7 -> row 0: bin 0
    assert sq[0 * 2 + 0, top + 0, 20] == 1  # t 3 is in bin 0 too (bins of 20 // 5 = 4)
    assert sq[1 * 2 + 1, top + 5, 10] == 1  # t 6: bin 1
    assert sq[3 * 2 + 1, top + 2, 5] == 1  # t 12: bin 3
    assert sq.sum() == 4  # t 20 = the last timestamp, in tonic's dropped remainder


def test_chunk_frames_bad_chunks(tmp_path):
    empty = tmp_path / "001_c1_001.txt"
    empty.write_text("")
    assert read_chunk(empty).shape == (0, 4)
    with pytest.raises(AnonyNoiseError, match="empty chunk"):
        chunk_frames(empty)
    bad = tmp_path / "001_c1_002.txt"
    bad.write_text("0 1 2 1\n1 x 2 1\n")
    with pytest.raises(AnonyNoiseError, match="001_c1_002.txt: not an Event-ReId chunk"):
        chunk_frames(bad)
    unsorted = tmp_path / "001_c1_003.txt"
    write_chunk(unsorted, [(10, 1, 1, 1), (2, 2, 2, 0), (30, 3, 3, 1)])
    with pytest.raises(AnonyNoiseError, match="001_c1_003.txt"):
        chunk_frames(unsorted)


def test_chunk_frames_of_a_very_short_chunk_are_zeros_like_tonic(tmp_path):
    path = tmp_path / "001_c1_009.txt"
    write_chunk(path, [(100.2, 3, 4, 1), (101.7, 5, 4, 0), (103.9, 4, 6, 1)])
    ev = np.zeros(3, np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16),
                               ("p", bool)]))
    ev["t"], ev["x"], ev["y"], ev["p"] = [100, 101, 103], [0, 2, 1], [0, 0, 2], [1, 0, 1]
    theirs = tonic.transforms.ToFrame(sensor_size=(3, 3, 2), n_time_bins=5)(ev)
    assert theirs.sum() == 0
    assert np.array_equal(chunk_frames(path), theirs.reshape(10, 3, 3).astype(np.float32))


def test_load_eventreid_uses_the_reference_query_list_when_the_tree_has_it(tmp_path, caplog):
    listed = QUERY_LIST.read_text().split()
    assert len(listed) == 44 and len(set(listed)) == 44
    keys = {(int(n[:3]), int(n[5])) for n in listed}
    assert len(keys) == 44 and {i for i, _ in keys} == TEST_IDS  # 11 people x 4 cameras
    for name in listed:
        write_chunk(tmp_path / "test" / name, [(0, 1, 1, 1), (10, 2, 2, 0)])
    extra = ["002_c1_001.txt", "002_c1_999.txt", "032_c4_001.txt"]
    for name in extra:
        write_chunk(tmp_path / "test" / name, [(0, 1, 1, 1)])
    (tmp_path / "test" / "005_c2_500.txt").write_text("")  # empty: skipped
    write_chunk(tmp_path / "train" / "001_c1_001.txt", [(0, 1, 1, 1)])
    with caplog.at_level(logging.WARNING):
        bench = load_eventreid(tmp_path)
    assert "query list does not match" not in caplog.text
    assert sorted(s.source.name for s in bench.query.samples) == sorted(listed)
    assert sorted(s.source.name for s in bench.gallery.samples) == sorted(extra)
    assert len(bench.val) == 47


def test_load_eventreid_bad_trees(tmp_path):
    write_chunk(tmp_path / "a" / "train" / "001_c1_001.txt", [(0, 1, 1, 1)])
    write_chunk(tmp_path / "a" / "test" / "001_c2_001.txt", [(0, 1, 1, 1)])
    with pytest.raises(AnonyNoiseError, match=r"identities \[1\] are in both train and test"):
        load_eventreid(tmp_path / "a")
    write_chunk(tmp_path / "b" / "train" / "001_c1_001.txt", [(0, 1, 1, 1)])
    (tmp_path / "b" / "test").mkdir()
    (tmp_path / "b" / "test" / "002_c1_001.txt").write_text("")
    (tmp_path / "b" / "test" / "readme.txt").write_text("not a chunk")
    with pytest.raises(AnonyNoiseError, match="test: no chunk files"):
        load_eventreid(tmp_path / "b")
    with pytest.raises(AnonyNoiseError, match="train: no such folder"):
        load_eventreid(tmp_path / "c")


# ============================================================================== open_dataset


def test_open_dataset_names_and_refused_options(tmp_path):
    with pytest.raises(AnonyNoiseError, match="unknown dataset 'mnist'"):
        open_dataset("mnist", tmp_path)
    for name in ("see", "reid"):
        with pytest.raises(AnonyNoiseError, match=f"--size is for quick runs on dvsg or synth, "
                                                  f"not {name}"):
            open_dataset(name, tmp_path, size=64)
        with pytest.raises(AnonyNoiseError, match=f"--window_ms needs event streams.*{name}"):
            open_dataset(name, tmp_path, window_ms=100.0)
    with pytest.raises(AnonyNoiseError, match="no event/ folder"):
        open_dataset("see", tmp_path)
    write_chunk(tmp_path / "train" / "001_c1_001.txt", [(0, 1, 1, 1)])
    write_chunk(tmp_path / "test" / "002_c3_001.txt", [(0, 1, 1, 1)])
    bench = open_dataset("reid", tmp_path)
    assert bench.name == "reid" and len(bench.train) == 1 and len(bench.query) == 1


def test_frame_files_sort_by_number_not_by_string(tmp_path):
    from train.datasets.see import _natural

    names = ["10.jpg", "2.jpg", "1.jpg", "00003.jpg"]
    assert [p.name for p in sorted((tmp_path / n for n in names), key=_natural)] == \
        ["1.jpg", "2.jpg", "00003.jpg", "10.jpg"]


def test_split_ignores_what_a_killed_partition_left_behind(tmp_path):
    from train.reid_utils.split_train_test import split

    cam = tmp_path / "in" / "001" / "cam_1"
    cam.mkdir(parents=True)
    (cam / "001_c1_001.txt").write_text("1.0 2 3 1\n")
    partial = tmp_path / "in" / "001" / "cam_2.partial"
    partial.mkdir()
    (partial / "001_c2_001.txt").write_text("1.0 2 3 1\n")
    assert split(tmp_path / "in", tmp_path / "out") == {"train": 1, "test": 0}
