import numpy as np
import torch

from train.classify import FitConfig, augment, fit_classnet, identity_batches, target_accuracy


def test_augment_shifts_and_rotates_whole_samples_and_keeps_counts():
    x = torch.zeros(4, 10, 24, 24)
    x[:, :, 10:14, 10:14] = 3.0
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= {0.0, 3.0}  # nearest pixels: counts stay counts
    for i in range(4):  # every channel of a sample moved the same way
        assert all(torch.equal(out[i, 0], out[i, c]) for c in range(10))
    assert not all(torch.equal(out[i, 0], x[i, 0]) for i in range(4))


def test_identity_batches_have_several_samples_per_identity():
    ids = np.repeat(np.arange(6), 5)
    batches = identity_batches(ids, per_id=4, batch=16, rng=np.random.default_rng(0))
    for b in batches:
        _, counts = np.unique(ids[b], return_counts=True)
        assert counts.min() >= 4 and len(counts) >= 2
    assert set(np.concatenate(batches)) == set(range(30))


def test_fit_learns_a_trivial_task():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 24)
    x = rng.random((48, 10, 16, 16)).astype(np.float32)
    x[y == 1, :, :8] += 3.0  # class 1 is bright in the upper half
    net = fit_classnet(x, y, 2, reid=False, config=FitConfig(epochs=4, batch=16, augment=False))
    assert target_accuracy(net, x, y) > 0.9
