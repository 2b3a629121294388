"""The recipe's pieces: exact clip composition, the capped Re-ID term, the composite
pipeline (the report command's tests are in tests/experiments)."""

import numpy as np
import pytest
import torch

from anonynoise.events import make_events
from anonynoise.losses import anonymizer_loss, confusion_loss
from anonynoise.models import ClassNet, LightAnonNet
from anonynoise.represent import events_to_counts
from train.clips import anonymized_clips, clean_clips, compose_clips, recording_windows
from train.composite import CompositeConfig, restarts_due, train_composite


def random_events(n=5000, duration_us=1_000_000, size=16, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    t[0] = 0
    return make_events(t, rng.integers(0, size, n), rng.integers(0, size, n),
                       rng.integers(0, 2, n), size, size)


def test_clips_composed_from_windows_equal_binning_the_clip_directly():
    ev = random_events()
    windows = recording_windows(ev, 50_000, 20, bins=5)          # 20 windows of 50 ms
    assert windows.shape == (20, 10, 16, 16) and windows.dtype == np.uint8
    assert windows.astype(int).sum() == len(ev)
    clip = clean_clips(windows[None], clip_bins=5)[0]
    direct = events_to_counts(ev, 0, 1_000_000, 5).reshape(10, 16, 16)  # 200 ms bins
    np.testing.assert_array_equal(clip, direct)


def test_compose_refuses_windows_that_do_not_divide():
    with pytest.raises(ValueError, match="divide"):
        compose_clips(torch.zeros(1, 7, 10, 4, 4), 5)


def test_anonymized_clips_are_event_counts_within_the_cap():
    ev = random_events(seed=1)
    windows = recording_windows(ev, 50_000, 20)[None]
    torch.manual_seed(0)
    anon = LightAnonNet(10, width=8)
    torch.nn.init.constant_(anon.head.bias, 3.0)
    out = anonymized_clips(anon, windows)
    assert out.shape == (1, 10, 16, 16)
    assert np.array_equal(out, np.round(out)) and out.min() >= 0   # whole events
    assert out.sum() <= 2.9 * len(ev) * 1.05


def test_reid_cap_stops_the_push_past_chance():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 11), torch.randint(0, 11, (8,))
    emb = (torch.randn(8, 16) * 10).requires_grad_()
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    free = anonymizer_loss(logits, target, emb, ids, 1.0)
    capped = anonymizer_loss(logits, target, emb, ids, 1.0, reid_cap=0.5)
    assert capped.item() == pytest.approx(torch.nn.functional.cross_entropy(
        logits, target).item() - 0.5, abs=1e-5)
    assert free.item() < capped.item()
    grad, = torch.autograd.grad(capped, emb)
    assert grad.abs().sum() == 0  # above the cap the Re-ID term gives no gradient


def test_confusion_loss_is_zero_at_a_uniform_posterior_and_kl_from_it_elsewhere():
    assert confusion_loss(torch.full((3, 5), 7.0)).item() == pytest.approx(0.0, abs=1e-6)
    # one sample, 2 identities, p = (0.8, 0.2): KL(uniform || p) = -log(2) - (log .8 + log .2) / 2
    logits = torch.log(torch.tensor([[0.8, 0.2]])).requires_grad_()
    value = confusion_loss(logits)
    assert value.item() == pytest.approx(-np.log(2) - (np.log(0.8) + np.log(0.2)) / 2, abs=1e-6)
    grad, = torch.autograd.grad(value, logits)  # d/dz = p - 1/C: lowers the confident logit
    assert grad[0].tolist() == pytest.approx([0.8 - 0.5, 0.2 - 0.5], abs=1e-6)
    target_logits, target = torch.randn(1, 3), torch.tensor([1])
    assert anonymizer_loss(target_logits, target, torch.zeros(1, 4), torch.tensor([0]), 2.0,
                           push="confusion", id_logits=logits).item() == pytest.approx(
        torch.nn.functional.cross_entropy(target_logits, target).item() + 2 * value.item())
    with pytest.raises(ValueError, match="unknown Re-ID push"):
        anonymizer_loss(target_logits, target, torch.zeros(1, 4), torch.tensor([0]), push="x")


def _tiny_pipeline(clips: int):
    """Random windows (clips x 10 windows of 10 x 16 x 16), 3 gestures, 4 clips a person, and
    fresh nets: the anonymizer, the target net and the Re-ID net."""
    rng = np.random.default_rng(0)
    windows = rng.poisson(0.3, (clips, 10, 10, 16, 16)).astype(np.uint8)
    targets, ids = rng.integers(0, 3, clips), np.repeat(np.arange(clips // 4), 4)
    torch.manual_seed(0)
    anon = LightAnonNet(10, width=8, form="mean_scale")
    nets = [ClassNet("resnet18", 3, 10), ClassNet("resnet18", clips // 4, 10)]
    return windows, targets, ids, anon, nets


def _pipeline_run(clips: int, epochs: int = 1, **config):
    """The three nets' weights after training on _tiny_pipeline, and the per-epoch history."""
    windows, targets, ids, anon, nets = _tiny_pipeline(clips)
    history = train_composite(anon, *nets, windows, targets, ids,
                              CompositeConfig(epochs=epochs, batch=8, **config))
    return [n.state_dict() for n in (anon, *nets)], history


def _pipeline_after(clips: int, **config):
    states, history = _pipeline_run(clips, **config)
    return states, history[-1]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_the_target_ce_bound_switches_the_reid_push_off_while_the_task_suffers():
    """A bound no batch meets trains the anonymizer exactly as a Re-ID weight of 0; a bound
    every batch meets exactly as no bound."""
    (never, *_), h_never = _pipeline_after(16, reid_weight=3.0, target_ce_bound=0.0)
    (off, *_), h_off = _pipeline_after(16, reid_weight=0.0)
    (always, *_), h_always = _pipeline_after(16, reid_weight=3.0, target_ce_bound=1e9)
    (free, *_), h_free = _pipeline_after(16, reid_weight=3.0)
    assert h_never["reid_active"] == 0 and h_always["reid_active"] == 1
    assert "reid_active" not in h_free
    for a, b in ((never, off), (always, free)):
        assert _same(a, b)
    assert not _same(never, always)  # the push did something


def test_an_epoch_that_ends_above_chance_is_undone():
    """A gesture net far above chance (huge logits on random clips) makes every epoch end
    above chance: with the rollback every net ends exactly as it started, and each epoch says
    it was undone; without it the nets move. With one gesture (chance 0, CE 0) no epoch is
    undone and the rollback changes nothing."""
    def run(classes, rollback):
        windows, targets, ids, anon, nets = _tiny_pipeline(16)
        if classes == 1:
            targets = np.zeros_like(targets)
            nets[0] = ClassNet("resnet18", 1, 10)
        else:
            with torch.no_grad():
                nets[0].classifier[0].weight.mul_(1e4)
        start = [{k: v.clone() for k, v in n.state_dict().items()} for n in (anon, *nets)]
        history = train_composite(anon, *nets, windows, targets, ids, CompositeConfig(
            epochs=2, batch=8, reid_weight=1.0, rollback=rollback))
        return start, [n.state_dict() for n in (anon, *nets)], history

    start, end, history = run(3, True)
    assert [h["rolled_back"] for h in history] == [1.0, 1.0]
    assert all(h["recent_loss_target"] > np.log(3) for h in history)
    assert all(_same(a, b) for a, b in zip(start, end))
    start, end, history = run(3, False)
    assert "rolled_back" not in history[-1]
    assert not _same(start[0], end[0])
    _, kept, history = run(1, True)
    assert [h["rolled_back"] for h in history] == [0.0, 0.0]
    assert all(_same(a, b) for a, b in zip(kept, run(1, False)[1]))


def test_the_dual_multiplier_moves_by_the_bounds_slack():
    """Dual ascent starts with the push off: a bound no batch meets keeps it off (as a Re-ID
    weight of 0); a bound every batch meets by far, with step 1, opens it fully after the
    first step (two steps: a mean of 0.5)."""
    never, h_never = _pipeline_after(16, reid_weight=3.0, target_ce_bound=0.0,
                                     bound_dual_lr=0.5)
    off, _ = _pipeline_after(16, reid_weight=0.0)
    assert h_never["reid_active"] == 0 and _same(never[0], off[0])
    opened, h_opened = _pipeline_after(16, reid_weight=3.0, target_ce_bound=1e9,
                                       bound_dual_lr=1.0)
    assert h_opened["reid_active"] == 0.5 and not _same(opened[0], off[0])


def test_extra_adversary_steps_train_the_reid_net_alone():
    """One batch: more Re-ID updates change the Re-ID net only; its own learning rate (0 here)
    holds its weights still (batch norm's statistics move in training) while the others
    train."""
    one, _ = _pipeline_after(8, reid_weight=1.0)
    three, _ = _pipeline_after(8, reid_weight=1.0, adversary_steps=3)
    assert _same(one[0], three[0]) and _same(one[1], three[1])
    assert not _same(one[2], three[2])
    frozen, _ = _pipeline_after(8, reid_weight=1.0, adversary_steps=3, lr_adversary=0.0)
    fresh = dict(_tiny_pipeline(8)[4][1].named_parameters())
    assert all(torch.equal(frozen[2][k], v) for k, v in fresh.items())
    assert _same(frozen[0], one[0])


def test_restarts_are_once_a_period_each_and_staggered():
    due = {k: [s for s in range(31) if k in restarts_due(s, 10, 2)] for k in range(2)}
    assert due == {0: [10, 20, 30], 1: [5, 15, 25]}
    assert [s for s in range(31) if restarts_due(s, 10, 1)] == [10, 20, 30]
    assert restarts_due(0, 10, 3) == []  # every adversary starts where it was given


def test_the_push_against_several_adversaries_is_their_mean():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 11), torch.randint(0, 11, (8,))
    a, b = torch.randn(8, 16) * 3, torch.randn(8, 16) * 3
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    ce = torch.nn.functional.cross_entropy(logits, target)
    one = [ce - anonymizer_loss(logits, target, e, ids, 1.0) for e in (a, b)]
    both = ce - anonymizer_loss(logits, target, [a, b], ids, 1.0)
    assert both.item() == pytest.approx((one[0] + one[1]).item() / 2, abs=1e-5)
    assert one[0].item() != pytest.approx(one[1].item())


def test_restarted_adversaries_go_back_to_the_clean_reid_net():
    """Two epochs of 2 batches: adversary 0 restarts at the second epoch's start, adversary 1
    half an epoch after each of its starts; with the adversary's rate 0 a restart changes
    nothing, so the anonymizer trains as with one adversary that never restarts."""
    def run(**config):
        return _pipeline_run(16, epochs=2, reid_weight=1.0, **config)
    plain, _ = run()
    restarted, history = run(adversary_restart=True)
    assert [h["adversary_restarts"] for h in history] == [0, 1]
    assert not _same(plain[2], restarted[2])  # the Re-ID net went back and trained again
    _, history = run(adversaries=2, adversary_restart=True)
    assert [h["adversary_restarts"] for h in history] == [1, 2]
    still, _ = run(lr_adversary=0.0)
    still_restarted, _ = run(adversaries=1, adversary_restart=True, lr_adversary=0.0)
    assert _same(still[0], still_restarted[0])


def test_the_confusion_push_trains_the_anonymizer_on_the_adversarys_posterior():
    """Weight 0 is the same training whichever push; with weight, the confusion push trains
    a different anonymizer from the triplet push (and the cap, a triplet matter, is moot)."""
    (zero_t, *_), _ = _pipeline_after(16, reid_weight=0.0)
    (zero_c, *_), _ = _pipeline_after(16, reid_weight=0.0, reid_push="confusion")
    (triplet, *_), _ = _pipeline_after(16, reid_weight=3.0)
    (confusion, *_), _ = _pipeline_after(16, reid_weight=3.0, reid_push="confusion")
    (capped, *_), _ = _pipeline_after(16, reid_weight=3.0, reid_push="confusion", reid_cap=0.1)
    assert _same(zero_t, zero_c)
    assert not _same(confusion, zero_c) and not _same(confusion, triplet)
    assert _same(confusion, capped)


def test_composite_pipeline_trains_the_three_nets():
    windows, targets, ids, anon, nets = _tiny_pipeline(16)
    before = [{k: v.clone() for k, v in n.state_dict().items()} for n in (anon, *nets)]
    history = train_composite(anon, *nets, windows, targets, ids,
                              CompositeConfig(epochs=1, batch=8, reid_cap=4.0,
                                              clean_target_weight=1.0))
    assert len(history) == 1 and history[0]["event_rate_ratio"] <= 2.9 * 1.05
    for net, old in zip((anon, *nets), before):
        assert any(not torch.equal(v, old[k]) for k, v in net.state_dict().items()
                   if v.dtype.is_floating_point)


def test_the_noise_budget_binds_the_anonymizers_own_output_not_the_capped_one():
    # The runtime's cap scales a window down with a factor that carries no gradient. A budget
    # judged after the cap never saw the output's scale: the nets let it grow to thousands of
    # times the input's events, the cap drowned the input, and every budget ended at the cap.
    windows, targets, ids, anon, nets = _tiny_pipeline(32)
    with torch.no_grad():
        anon.head.bias[10:] = 2.0  # a mean of 2 events a pixel: past the cap from the start
    history = train_composite(anon, *nets, windows, targets, ids, CompositeConfig(
        epochs=6, batch=8, reid_weight=0.0, noise_budget=3.0, lr_anon=0.1))
    assert history[0]["uncapped_event_rate_ratio"] > 3.5
    assert history[-1]["uncapped_event_rate_ratio"] <= 3.0 * 1.1  # (without the fix: 3484)
    assert history[-1]["event_rate_ratio"] <= 3.0 * 1.1
