import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_synth_check_smoke_run_writes_a_report(tmp_path):
    out = tmp_path / "report.md"
    proc = subprocess.run([sys.executable, "-m", "train.synth_check", "--tiny", "--out", str(out),
                           "--data", str(tmp_path / "data")], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "| gesture top-1, ClassNet |" in text and "| Re-ID rank-1, ClassNet |" in text
    assert '"reid_queries": 22' in text  # 2 test people x 11 gestures, one session each
