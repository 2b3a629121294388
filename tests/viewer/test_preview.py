"""`anonynoise-preview`: raw next to anonymized on the local screen, never on the wire."""

import os
import subprocess
import sys

import numpy as np

from anonynoise.io import read_events
from tests.stream.test_service import (  # noqa: F401 (fixtures)
    REPO, WINDOW, anonymizer, checkpoint, raw_windows, replay)
from viewer.preview import LatestPair, build_parser


def test_latest_pair_keeps_only_the_newest():
    latest = LatestPair()
    assert latest.take() is None
    latest("raw1", "anon1")
    latest("raw2", "anon2")
    assert latest.take() == ("raw2", "anon2") and latest.take() is None
    assert latest.windows == 2


def test_the_preview_sees_raw_windows_and_the_wire_only_anonymized(real_file, anonymizer,
                                                                   tmp_path):
    path = real_file("robotarm_davis346.aedat4")
    seen = []
    received, summary, _ = replay(path, anonymizer, f"ipc://{tmp_path}/preview",
                                  preview=lambda raw, anon: seen.append((raw, anon)))
    raw, _ = raw_windows(path)
    assert len(seen) == len(raw) == len(received)
    for (p_raw, p_anon), window, (header, ev) in zip(seen, raw, received):
        assert np.array_equal(p_raw.t, window.events.t) and np.array_equal(p_raw.x, window.events.x)
        assert len(p_anon) == len(ev) == header.events
        # what went on the wire is the anonymized window, not the raw one
        assert not (len(ev) == len(p_raw) and np.array_equal(ev["x"], p_raw.x)
                    and np.array_equal(ev["y"], p_raw.y))


def test_preview_command_runs_offscreen_and_records_only_anonymized(real_file, checkpoint,
                                                                   tmp_path):
    path = real_file("robotarm_davis346.aedat4")
    shot, rec = tmp_path / "preview.png", tmp_path / "anon.aedat4"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-m", "viewer.preview", "--replay", str(path), "--fast",
                           "--model", str(checkpoint), "--publish", "none", "--record", str(rec),
                           "--screenshot", str(shot)],
                          capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    from PIL import Image

    picture = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    half = picture.shape[1] // 2
    background = picture[2, 2]
    for side in (picture[:, :half], picture[:, half:]):
        assert (np.abs(side - background).sum(-1) > 30).mean() > 0.001  # events on both sides
    raw, events = raw_windows(path)
    recorded = read_events(rec)
    assert len(recorded) != len(events)
    assert recorded.t.max() < WINDOW * len(raw)


def test_preview_without_a_display_is_one_line(real_file, checkpoint, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([sys.executable, "-m", "viewer.preview", "--replay",
                           str(real_file("robotarm_davis346.aedat4")), "--fast", "--model",
                           str(checkpoint), "--publish", "none", "--record",
                           str(tmp_path / "x.aedat4")],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0], done.stderr
    assert lines[0].startswith("anonynoise-preview: error:")
    assert "watch it with anonynoise-view" in lines[0] and "or use --screenshot" not in lines[0]
    assert not (tmp_path / "x.aedat4").exists()  # refused before any output was opened


def test_preview_takes_the_stream_options_and_hides_its_screenshot(capsys):
    args = build_parser().parse_args(["--replay", "f.aedat4", "--loop", "--lossless",
                                      "ipc:///tmp/x", "--filters", "none", "--screenshot",
                                      "p.png"])
    assert (args.replay, args.loop, args.lossless, args.filters, args.screenshot) == \
        ("f.aedat4", True, "ipc:///tmp/x", "none", "p.png")
    help_text = build_parser().format_help()
    assert help_text.startswith("usage: anonynoise-preview") and "--replay" in help_text
    assert "--screenshot" not in help_text  # a test and docs option, not a user's


def test_the_stream_command_has_no_preview_any_more():
    from stream.cli import build_parser as stream_parser

    help_text = stream_parser().format_help()
    assert "preview" not in help_text and "screenshot" not in help_text
    done = subprocess.run([sys.executable, "-m", "stream", "--preview"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2 and "unrecognized arguments: --preview" in done.stderr
