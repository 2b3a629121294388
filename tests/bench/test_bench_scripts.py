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
        for tool in ("tonic ToFrame", "numpy bincount", "dv EdgeMapAccumulator"):
            peer = [r for r in rows if tool in r and re.search(r"ours [\d.]+x", r)]
            assert {r.split("|")[1].strip() for r in peer} == {"10 ms", "20 ms", "50 ms"}, out
        assert any("tensor -> events" in r and "ours" in r for r in rows), out


def test_filters_benchmark_runs_and_sets_each_filter_beside_its_peers():
    proc = subprocess.run([sys.executable, str(BENCH / "filters.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for size in ("128x128", "346x260", "640x480"):
        rows = [r.split("|") for r in proc.stdout.splitlines() if r.startswith(size)]
        tools = [r[2].strip() for r in rows]
        assert tools == ["ours refractory", "ours slots", "tonic RefractoryPeriod",
                         "dv BackgroundActivity",
                         "ours jitter", "tonic SpatialJitter", "ours warp", "ours"], proc.stdout
        compared = [r[2].strip() for r in rows if re.search(r"ours [\d.]+x", r[-1])]
        assert compared == ["tonic RefractoryPeriod", "dv BackgroundActivity",
                            "tonic SpatialJitter"]


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
    # | net | sensor | rate | replay | recorder | endpoint | DV sink | x real time | latency |
    #   windows sent / received | dropped | out per in |
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.startswith("| light")]
    assert [r[4].strip() for r in rows] == ["fast", "paced", "paced"]
    assert [(r[5].strip(), r[6].strip(), r[7].strip()) for r in rows] == [
        ("on", "lossless", "off"), ("on", "lossless", "off"), ("off", "live", "on")]
    zmq_rows = [line.split("|") for line in proc.stdout.splitlines() if "events per window" in line]
    assert len(zmq_rows) == 4  # 10k and 100k events, ipc and tcp
    for r in zmq_rows:
        got, sent = (int(v) for v in r[3].split("/"))
        assert got == sent > 0
    for r in rows[:2]:
        sent, received = (int(v) for v in r[10].split("/"))
        assert sent == received > 0  # the lossless subscriber got every window


def test_gpu_benchmark_runs_on_the_cpu_tiny(tmp_path):
    import json

    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--device", "cpu", "--tiny",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert set(r["nets"]) == {"light 64x48", "paper 64x48"}
    assert all(v == 0.0 for v in r["same_net_max_rel_diff"].values())  # CPU vs CPU
    for pl in r["pipeline"].values():
        assert pl["windows"] == pl["published"] > 0 and pl["dropped"] == 0
    for rt in r["runtime"].values():
        assert rt["refused"] == 0 and 0 < rt["events_out_per_in"] <= 2.9 * 1.05


def test_run_all_writes_every_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for script in ("represent.py", "filters.py", "io.py", "models.py", "pipeline.py"):
        assert f"`python bench/{script}`" in text
    assert "FAILED" not in text and "## On a GPU" in text and "dv EdgeMapAccumulator" in text


def test_concurrent_training_benchmark_runs_on_the_cpu_tiny():
    proc = subprocess.run([sys.executable, str(BENCH / "concurrent_training.py"), "--device",
                           "cpu", "--tiny", "--epochs", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = proc.stdout.strip().splitlines()[-1].split("|")
    assert row[1].strip() == "cpu" and int(row[2]) == 2 and int(row[4]) > 0
    assert float(row[5]) > 0 and float(row[6]) > 0


def test_training_benchmark_sets_each_step_beside_the_plain_torch_formulation():
    proc = subprocess.run([sys.executable, str(BENCH / "training.py"), "--tiny"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    steps = ["anonymizer step (pipeline)", "anonymized draw (no gradient)",
             "attacker (or any ClassNet) step", "attacker step behind a denoiser"]
    tables = proc.stdout.split("\n\n")
    rows = [r.split("|") for r in tables[0].splitlines() if r.startswith("| ")][1:]
    assert [r[1].strip() for r in rows] == steps
    for r in rows:
        assert float(r[3]) > 0 and float(r[4]) > 0 and re.fullmatch(r" ours [\d.]+x ", r[5])
    # the second table: the same steps with glibc's malloc as it is, from a child process
    if sys.platform.startswith("linux"):
        rows = [r.split("|") for r in tables[-1].splitlines() if r.startswith("| ")][1:]
        assert [r[1].strip() for r in rows] == steps
        for r in rows:
            assert float(r[2]) > 0 and float(r[3]) > 0
            assert re.fullmatch(r" kept [\d.]+x ", r[4])
