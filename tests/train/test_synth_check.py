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


def test_the_clean_reid_net_is_trained_once_per_benchmark_and_configuration(tmp_path, monkeypatch):
    import numpy as np
    import torch

    from anonynoise.synth.dataset import MANIFEST
    from train import synth_check
    from train.classify import FitConfig

    root = tmp_path / "bench" / "DVSGesture"
    root.mkdir(parents=True)
    (root / MANIFEST).write_text('{"config": 1}')
    rng = np.random.default_rng(0)
    x = rng.random((8, 10, 16, 16), dtype=np.float32)
    labels = np.repeat(np.arange(2), 4)
    fit = FitConfig(width=8, epochs=1, batch=8)
    trained = []
    real_fit = synth_check.fit_classnet

    def counting_fit(*args, **kwargs):
        trained.append(kwargs.get("config"))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(synth_check, "fit_classnet", counting_fit)
    first = synth_check.clean_reid_net(root, x, labels, 2, fit)
    again = synth_check.clean_reid_net(root, x, labels, 2, fit)
    assert len(trained) == 1  # the second job of the seed loads it
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    synth_check.clean_reid_net(root, x, labels, 2, FitConfig(width=8, epochs=2, batch=8))
    assert len(trained) == 2  # another training configuration is another net
    (root / MANIFEST).write_text('{"config": 2}')
    synth_check.clean_reid_net(root, x, labels, 2, fit)
    assert len(trained) == 3  # so is a regenerated benchmark
    cached = sorted(root.parent.glob("clean-reid-*.pt"))
    assert len(cached) == 3
    for path in cached:
        path.write_bytes(b"broken")
    synth_check.clean_reid_net(root, x, labels, 2, fit)
    assert len(trained) == 4  # a damaged cache is trained again, not an error
    assert sum(p.read_bytes() != b"broken" for p in cached) == 1  # written anew
