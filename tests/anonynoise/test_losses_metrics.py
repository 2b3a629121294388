import math

import numpy as np
import pytest
import torch

from anonynoise.losses import anonymizer_loss, batch_hard_triplet, pairwise_euclidean, reid_loss
from anonynoise.metrics import average_precision, flip_descriptor, reid_evaluate, top1_accuracy


def test_batch_hard_triplet_by_hand():
    # 1-D embeddings: a=0, b=3 (id 0); c=4, d=10 (id 1)
    emb = torch.tensor([[0.0], [3.0], [4.0], [10.0]])
    ids = torch.tensor([0, 0, 1, 1])
    # hardest positive / negative: a: 3 / 4; b: 3 / 1; c: 6 / 1; d: 6 / 7
    per_sample = [max(0, 3 - 4 + 4), max(0, 3 - 1 + 4), max(0, 6 - 1 + 4), max(0, 6 - 7 + 4)]
    assert batch_hard_triplet(emb, ids).item() == pytest.approx(np.mean(per_sample), abs=1e-4)
    assert batch_hard_triplet(emb, ids, margin=0.0).item() == pytest.approx((0 + 2 + 5 + 0) / 4,
                                                                            abs=1e-4)


def test_triplet_handles_samples_without_positives_or_negatives_as_the_reference():
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # no positives: d_ap is the self distance sqrt(1e-12) = 1e-6; d_an = 5
    assert batch_hard_triplet(emb, torch.tensor([0, 1])).item() == pytest.approx(0.0, abs=1e-6)
    assert batch_hard_triplet(emb, torch.tensor([0, 1]), margin=6.0).item() == \
        pytest.approx(1.0 + 1e-6, abs=1e-5)
    # no negatives: d_an = inf, no loss
    assert batch_hard_triplet(emb, torch.tensor([2, 2])).item() == 0.0
    assert pairwise_euclidean(emb, emb)[0, 0].item() == pytest.approx(1e-6)


def test_triplet_gradient_is_finite_at_identical_embeddings():
    emb = torch.zeros(3, 4, requires_grad=True)
    batch_hard_triplet(emb, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(emb.grad).all()


def test_loss_wiring():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([0, 1])
    emb = torch.tensor([[0.0], [3.0]])
    ce = torch.nn.functional.cross_entropy(logits, target).item()
    trip = batch_hard_triplet(emb, torch.tensor([0, 1])).item()
    assert reid_loss(logits, emb, target).item() == pytest.approx(ce + trip)
    assert anonymizer_loss(logits, target, emb, target, reid_weight=0.5).item() == \
        pytest.approx(ce - 0.5 * trip)


def test_top1_accuracy():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_accuracy(logits, torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)


def test_average_precision_by_hand():
    # ranking: items 4, 2, 7, 1, 3; good = {2, 3}; junk = {7}
    # after junk removal: 4, 2, 1, 3 -> good at ranks 1 and 3 (0-based)
    ap, cmc = average_precision(np.array([4, 2, 7, 1, 3]), np.array([2, 3]), np.array([7]))
    # i=0: rank 1: precision 1/2, old precision 0/1 -> 0.25 / 2 ... trapezoid / n_good
    expected = ((0 / 1 + 1 / 2) / 2 + (1 / 3 + 2 / 4) / 2) / 2
    assert ap == pytest.approx(expected)
    assert cmc.tolist() == [0, 1, 1, 1, 1]
    ap, cmc = average_precision(np.array([3, 1]), np.array([3]), np.array([], int))
    assert ap == 1.0 and cmc.tolist() == [1, 1]
    assert average_precision(np.array([0, 1]), np.array([], int), np.array([], int)) == (0.0, None)


def unit(*v):
    v = np.array(v, float)
    return v / np.linalg.norm(v)


def test_reid_evaluate_with_junk_removal_and_unmatched_queries():
    # gallery: id, file, target (gesture)
    g_desc = np.array([unit(1, 0), unit(0.9, 0.1), unit(0.5, 0.5), unit(0, 1), unit(0.2, 0.8)])
    g_id = np.array([1, 1, 2, 1, 2])
    g_file = np.array(["a", "b", "c", "d", "e"])
    g_tgt = np.array([3, 5, 3, 6, 6])
    # query 0: id 1, file "a", gesture 3 -> gallery 0 is junk (same file), gallery 1 is junk?
    #   no: gallery 1 has file b and gesture 5 -> good; gallery 3 (gesture 6) good.
    #   scores: g0 1.0 (junk), g1 .99, g2 .71, g4 .24, g3 0 -> after junk: g1, g2, g4, g3
    #   good at ranks 0 and 3: AP = ((1 + 1)/2 + (1/3 + 2/4)/2) / 2
    # query 1: id 2, file "x", gesture 6 -> g4 junk (same gesture), g2 good
    #   scores with unit(0, 1): g3 1.0, g4 .97 (junk), g2 .71, ... -> g3, g2, g1, g0: rank 1
    # query 2: id 9 (not in the gallery): no good match, counts in the denominator
    q_desc = np.array([unit(1, 0), unit(0, 1), unit(1, 1)])
    r = reid_evaluate(q_desc, [1, 2, 9], ["a", "x", "y"], [3, 6, 0], g_desc, g_id, g_file, g_tgt)
    ap0 = ((1 + 1) / 2 + (1 / 3 + 2 / 4) / 2) / 2
    ap1 = (0 / 1 + 1 / 2) / 2
    assert r.mAP == pytest.approx((ap0 + ap1) / 3)
    assert r.rank1 == pytest.approx(1 / 3)  # only query 0 hits at rank 1
    assert r.rank5 == pytest.approx(2 / 3) and r.rank10 == pytest.approx(2 / 3)
    assert (r.queries, r.queries_without_match) == (3, 1)


def test_flip_descriptor_is_normalised_and_flip_invariant():
    embed = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 4, 5))
    x = torch.rand(3, 2, 3, 4)
    d = flip_descriptor(embed, x)
    assert torch.allclose(d.norm(dim=1), torch.ones(3))
    assert torch.allclose(flip_descriptor(embed, torch.flip(x, dims=(3,))), d, atol=1e-6)
    assert math.isclose(float((d[0] @ d[0]).detach()), 1.0, rel_tol=1e-5)
