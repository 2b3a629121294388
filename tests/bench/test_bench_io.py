"""bench/io.py runs on a tiny file and the peers decode the same events as ours (timings not
asserted)."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_io_benchmark_runs_and_peers_agree_with_ours():
    proc = subprocess.run([sys.executable, str(BENCH / "io.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    # rows: file | events | tool | events/s | seconds | ratio | check
    rows = [[c.strip() for c in line.split("|")] for line in out.splitlines()
            if line.startswith("clustered 64x48")]
    by_tool = {r[2]: r for r in rows}
    assert set(by_tool) == {"ours", "dv-processing", "tonic"}, out
    n_ours = int(by_tool["ours"][1].replace(",", ""))
    assert n_ours == 1_000_000  # 0.2 s at 5 Mev/s
    # dv-processing is our own reader's backend: it must always read the file, and agree.
    assert by_tool["dv-processing"][6] == "ok", out
    assert int(by_tool["dv-processing"][1].replace(",", "")) == n_ours
    # tonic needs the optional `aedat` package: without it the row reports the error.
    tonic = by_tool["tonic"]
    if tonic[6].startswith("error"):
        assert "aedat" in tonic[6], out
    else:
        assert tonic[6] == "ok" and int(tonic[1].replace(",", "")) == n_ours, out
