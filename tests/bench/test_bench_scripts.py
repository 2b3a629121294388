"""Each benchmark script runs on a tiny size, so the scripts do not rot (timings not asserted)."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_represent_benchmark_runs_and_reports_ratios():
    proc = subprocess.run([sys.executable, str(BENCH / "represent.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for size in ("128x128", "346x260", "640x480"):
        rows = [line for line in out.splitlines() if line.startswith(size)]
        assert any("tonic ToFrame" in r and re.search(r"ours [\d.]+x", r) for r in rows), out
        assert any("tensor -> events" in r and "ours" in r for r in rows), out


def test_models_benchmark_runs_for_both_nets():
    proc = subprocess.run([sys.executable, str(BENCH / "models.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "1x10x32x48" in line]
    assert {r.split("|")[0].strip() for r in rows} == {"light", "paper"}
    assert len(rows) == 4  # two nets x threads 1 and 2


def test_pipeline_benchmark_runs_fast_and_paced():
    proc = subprocess.run([sys.executable, str(BENCH / "pipeline.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("| light")]
    assert [r[4].strip() for r in rows] == ["fast", "paced"]
    for r in rows:
        sent, received = (int(v) for v in r[7].split("/"))
        assert sent == received > 0  # the lossless subscriber got every window
