import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anonynoise.errors import AnonyNoiseError
from experiments.controls import ClipTransform, binarize, block_means, random_warp

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "experiments" / "configs" / "controls_tiny.toml"


def clips(n=3, c=10, size=16, seed=0):
    return np.random.default_rng(seed).poisson(0.5, (n, c, size, size)).astype(np.float32)


def test_block_means_keeps_counts_and_flattens_each_block():
    x = clips()
    out = block_means(x, 4)
    assert out.shape == x.shape
    np.testing.assert_allclose(out.sum((2, 3)), x.sum((2, 3)), rtol=1e-5)
    np.testing.assert_allclose(out[0, 0, :4, :4], x[0, 0, :4, :4].mean())
    np.testing.assert_allclose(out[2, 9, 12:, 4:8], x[2, 9, 12:, 4:8].mean(), rtol=1e-6)


def test_binarize_keeps_where_not_how_many():
    x = np.array([[[[0, 1, 5], [2, 0, 0]]]], np.float32)
    assert binarize(x).tolist() == [[[[0, 1, 1], [1, 0, 0]]]]


def test_a_warp_of_no_strength_is_the_identity():
    x = clips()
    np.testing.assert_allclose(random_warp(x, np.random.default_rng(0), 0.0, 0.0), x,
                               atol=1e-5)


def test_a_warp_moves_events_keeps_their_count_and_moves_every_channel_alike():
    x = clips(n=2, c=2)
    x[:, 1] = x[:, 0]  # two identical channels must stay identical: one warp per sample
    x[1] = x[0]  # two identical samples get different warps
    out = random_warp(x, np.random.default_rng(1), 0.4, 0.25)
    np.testing.assert_allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(out[:, 1], out[:, 0])
    assert np.abs(out[0] - x[0]).sum() > 0.2 * x[0].sum()
    assert np.abs(out[0] - out[1]).sum() > 0.1 * x[0].sum()


def test_a_chain_applies_left_to_right_and_says_when_it_is_random():
    x = clips()
    rng = np.random.default_rng(0)
    assert not ClipTransform("bin+pool").random and ClipTransform("warp+bin").random
    np.testing.assert_array_equal(ClipTransform("bin+pool")(x, rng),
                                  block_means(binarize(x), 4))
    np.testing.assert_array_equal(ClipTransform("none")(x, rng), x)


def test_bad_transforms_are_refused():
    with pytest.raises(AnonyNoiseError, match="unknown transform step 'blur'"):
        ClipTransform("pool+blur").check(48)
    with pytest.raises(AnonyNoiseError, match="divide data.size 48"):
        ClipTransform("pool", pool=5).check(48)
    ClipTransform("warp+bin+pool").check(48)


def test_stream_transforms_run_the_stream_filters_window_by_window():
    from anonynoise.examples import clustered_stream
    from anonynoise.filters import PrivacyFilter
    from anonynoise.windower import Windower
    from train.replay import stream_filtered

    t = ClipTransform("stream:slots+jitter", pool=4)
    assert t.on_events and t.random and t.events_random and t.steps == ()
    assert t.stream.spec == "slots+jitter" and t.stream.block == 4
    assert not ClipTransform("stream:slots").events_random
    thin = ClipTransform("stream:refractory+jitter", refractory_ms=300.0).stream
    assert thin.refractory_ms == 300.0 and thin.steps == ("refractory", "jitter")
    ev = clustered_stream(32, 32, duration_s=0.3, rate=3e5, seed=1)
    out = stream_filtered(ev, t.stream, 50_000, 5, seed=9)
    # the same as the stream's filter on each of the stream's windows
    w, pf = Windower(50_000, 32, 32), PrivacyFilter(t.stream, seed=9)
    want = [pf(win.events, win.t_start, win.t_end, 5) for win in w.push(ev) + w.flush()]
    assert np.array_equal(out.x, np.concatenate([e.x for e in want]))
    assert 0 < len(out) < len(ev)
    run = t.events_filter(seed=3)
    a, b = run(ev), run(ev)  # every recording of a load gets its own draw
    assert not np.array_equal(a.x, b.x)
    with pytest.raises(AnonyNoiseError, match="unknown privacy filter 'blur'"):
        ClipTransform("stream:warp+blur").check(48)


def test_net_transforms_run_the_streams_anonymizer_a_new_stream_per_recording():
    from anonynoise.examples import clustered_stream
    from anonynoise.represent import events_to_counts

    net_alone = ClipTransform("net:none")
    assert net_alone.uses_net and net_alone.events_random and net_alone.steps == ()
    run = ClipTransform("net:warp+slots", pool=4).events_filter(seed=5)
    ev = clustered_stream(32, 32, duration_s=0.2, rate=3e5, seed=2)
    a, b = run(ev), run(ev)
    assert run.anonymizer.filters.spec == "warp+slots" and run.anonymizer.windows == 8
    # 4 windows of 50 ms each time; the output is the anonymizer's, not the input
    assert 0 < len(a) and not np.array_equal(a.t[:100], ev.t[:100])
    assert not np.array_equal(events_to_counts(a, 0, 200_000, 1),
                              events_to_counts(b, 0, 200_000, 1))  # a new warp and new noise


def test_a_missing_net_is_refused_before_any_benchmark(tmp_path):
    config = tmp_path / "c.toml"
    missing = tmp_path / "missing.pt"
    config.write_text(TINY.read_text().replace(
        "[data]", f"[transform]\nnet = '{missing}'\n\n[data]"))
    proc = subprocess.run([sys.executable, "-m", "experiments.controls", "--config", str(config),
                           "--transforms", "net:none", "--data",
                           str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 2 and "missing.pt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "data").exists()


def test_controls_smoke_run_writes_a_report(tmp_path):
    out = tmp_path / "controls.md"
    config = tmp_path / "c.toml"
    config.write_text(TINY.read_text().replace(
        "draws = 2", 'draws = 2\nattackers = ["scratch", "clean+denoiser"]'))
    proc = subprocess.run([sys.executable, "-m", "experiments.controls", "--config", str(config),
                           "--transforms", "none", "warp+slots+pool", "stream:warp+slots+jitter",
                           "net:jitter", "--out", str(out), "--data",
                           str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")]
    assert rows[0][2:] == ["Re-ID rank-1 (scratch)", "Re-ID rank-1 (clean+denoiser)",
                           "strongest", "change |"]
    assert [r[0] for r in rows[1:]] == ["| none", "| warp+slots+pool",
                                        "| stream:warp+slots+jitter", "| net:jitter"]
    assert "behind a denoiser" in text
    for r in rows[1:]:  # the strongest is the higher of the two attackers' means
        means = [float(r[k].split(" ± ")[0]) for k in (2, 3)]
        assert float(r[4]) == pytest.approx(max(means), abs=1e-3)
    assert rows[2][-1].endswith("% |")  # the change relative to no transform
    # the transform jobs of the seed started from one clean Re-ID net, trained once
    assert len(list((tmp_path / "data").glob("*/clean-reid-*.pt"))) == 1


def test_controls_refuses_an_unknown_step_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.controls", "--config", str(TINY),
                           "--transforms", "blur", "--data", str(tmp_path / "data")],
                          capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode != 0
    assert "unknown transform step 'blur'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # refused before any benchmark was generated


def test_slots_keep_the_first_event_of_each_pixel_and_polarity_per_slot():
    from anonynoise.events import make_events
    from experiments.controls import slots_from_zero
    # t (µs), x, y, p: two events of (1, 0, on) in slot 0, one of them off; then slot 1
    ev = make_events([100, 200, 300, 9_999, 10_000, 10_500], [1, 1, 1, 2, 1, 1],
                     [0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 1], 4, 2)
    out = slots_from_zero(ev, 10_000)
    assert out.t.tolist() == [100, 300, 9_999, 10_000]
    assert out.p.tolist() == [1, 0, 1, 1] and out.x.tolist() == [1, 1, 2, 1]
    assert ClipTransform("slots+pool").on_events and not ClipTransform("pool").on_events


def test_block_sums_add_each_block_of_a_large_sensor():
    from experiments.synth_check import block_sums

    x = clips(n=2, c=3, size=8)
    out = block_sums(x, 4)
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.float32
    assert out[1, 2, 3, 0] == x[1, 2, 6:8, 0:2].sum()
    assert out[0, 0, 0, 3] == x[0, 0, 0:2, 6:8].sum()
    np.testing.assert_array_equal(out.sum((2, 3)), x.sum((2, 3)))
    assert block_sums(x, None) is x and block_sums(x, 8) is x


def test_tiles_make_the_stream_filters_follow_the_sensor():
    t = ClipTransform("stream:warp+refractory+jitter", pool=6, tiles=8.0)
    assert t.stream.block is None and t.stream.block_for(128) == 16
    assert t.stream.block_for(48) == 6
    assert ClipTransform("stream:jitter", pool=6).stream.block_for(128) == 6  # pixels


def test_controls_at_a_summed_size_run_and_say_so(tmp_path):
    from experiments.controls import load_config

    out = tmp_path / "controls.md"
    config = tmp_path / "c.toml"
    config.write_text(TINY.read_text().replace(
        "draws = 2", 'draws = 2\nattack_size = 16\nattackers = ["clean+denoiser"]').replace(
        "[data]", "[transform]\ntiles = 8.0\n\n[data]"))
    proc = subprocess.run([sys.executable, "-m", "experiments.controls", "--config", str(config),
                           "--transforms", "none", "stream:warp+jitter", "--out", str(out),
                           "--data", str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "summed to 16x16 for every net (the transforms run at 32x32)" in text
    import json

    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["attack_size"] == 16 and saved["transform"]["tiles"] == 8.0
    assert list(saved["rows"]) == ["none", "stream:warp+jitter"]
    assert saved["rows"]["none"]["clean+denoiser"][0]["seed"] == 0
    assert "jitter tiles of 4 px (an 8th of the height)" in text
    # the clean Re-ID net of the summed clips is its own, not the full size's

    (path,) = (tmp_path / "data").glob("*/clean-reid-*.pt")
    assert load_config(config).attack_size == 16 and path.is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text().replace("draws = 2", "draws = 2\nattack_size = 12"))
    proc = subprocess.run([sys.executable, "-m", "experiments.controls", "--config", str(bad),
                           "--data", str(tmp_path / "data2")], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "attack_size must divide data.size 32, got 12" in proc.stderr
    assert not (tmp_path / "data2").exists()
