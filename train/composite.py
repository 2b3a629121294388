"""The adversarial pipeline as the stream runs it: the anonymizer per window, judged on clips.

The same three updates per batch as train.stages' pipeline (anonymizer: target CE minus
`reid_weight` x the Re-ID triplet loss, plus the noise-budget penalty; target and Re-ID nets on
what they see), but the anonymizer works on the stream's windows, each with its own noise and
through the events round trip (straight-through gradient), and the target and Re-ID nets judge
the clip a consumer re-bins from those windows (train.clips). So the anonymizer is trained
against what a consumer of a few seconds of the stream can see, not against single windows.
In memory, on arrays: the privacy study's CPU-sized runs.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from anonynoise.losses import anonymizer_loss, reid_loss, target_loss
from anonynoise.models import ClassNet
from anonynoise.models.noise import NoiseAnonNet
from train.classify import identity_batches
from train.augment import shift_and_rotate
from train.clips import compose_clips, flat_windows, stream_windows, study_generators
from train.event_domain import event_mass, noise_budget_penalty

log = logging.getLogger(__name__)
NOISE_BUDGET_WEIGHT = 10.0  # as train.stages


@dataclass
class CompositeConfig:
    epochs: int = 6
    batch: int = 16          # clips per step (P x K: batch / per_id identities)
    per_id: int = 4
    lr_anon: float = 1e-3
    lr_helper: float = 1e-4  # the reference's lr0_helper
    reid_weight: float = 1.0
    noise_budget: float | None = 3.0
    reid_cap: float | None = None  # see anonynoise.losses.anonymizer_loss
    # the anonymizer's Re-ID term: "triplet" (the reference: minus the adversary's triplet
    # loss) or "confusion" (the adversary's posterior over identities pushed to uniform,
    # anonynoise.losses.confusion_loss)
    reid_push: str = "triplet"
    # push identities apart only in steps where the pipeline's target net's CE is at most
    # this: past it the anonymizer only restores the task (see train_composite)
    target_ce_bound: float | None = None
    # with the bound: a multiplier of the Re-ID weight in [0, 1] that follows dual ascent on
    # the bound (+ this x (bound - CE) a step) instead of the per-step switch
    bound_dual_lr: float | None = None
    # updates of the Re-ID net per batch: the extra ones on the same detached clips (the nets
    # cost 3 of a step's 99 ms a clip, so a stronger in-loop adversary is nearly free)
    adversary_steps: int = 1
    lr_adversary: float | None = None  # None: lr_helper, as the reference
    # The anonymizer learnt perturbations that fool the one adversary it trains against but
    # not a fresh attacker (which starts from the clean Re-ID net and learns past them). With
    # restarts, every in-loop adversary goes back to its starting weights (and a new
    # optimiser) once an epoch, so it starts where such an attacker does; several adversaries
    # restart at staggered steps, and the anonymizer pushes against their mean.
    adversaries: int = 1
    adversary_restart: bool = False
    clean_target_weight: float = 0.0  # CE of the frozen clean target net on what it sees
    # At an epoch's end, if the pipeline's gesture net's recent cross-entropy is above chance,
    # every net and optimiser goes back to where it was at the previous epoch's end (or the
    # start). At 110 people the anonymizer went over the edge in an epoch (CE 3.3 to 3.9, chance
    # 2.4) and did not come back even with the Re-ID push off; the reference keeps the last
    # epoch regardless, which there shipped a stream with no gesture left in it.
    rollback: bool = False
    # the round trip's backward below zero (train.event_domain.ROUND_TRIP_GRADIENTS)
    round_trip_gradient: str = "identity"
    clip_bins: int = 5
    seed: int = 0
    device: str = "cpu"


def _augment_clip_windows(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The reference's shift + rotation, one transform per clip for all of its windows."""
    n, w, c, h, wd = x.shape
    flat = shift_and_rotate(x.reshape(n, w * c, h, wd), gen, max(h // 12, 1))
    return flat.reshape(n, w, c, h, wd)


def restarts_due(step: int, period: int, count: int) -> list[int]:
    """Which of `count` adversaries go back to their start at global step `step`: adversary k
    once every `period` steps, k / count of a period after adversary 0, never at step 0."""
    return [k for k in range(count) if step > 0 and step % period == k * period // count]


RECENT_STEPS = 50  # the horizon of the rollback's recent cross-entropy


def _snapshot(nets: dict, opt_a, opt_t, opts_i: list, multiplier: torch.Tensor) -> dict:
    """Copies of every net's and optimiser's state (and the dual multiplier), for rollback."""
    return copy.deepcopy({"nets": {k: n.state_dict() for k, n in nets.items()},
                          "opts": [o.state_dict() for o in (opt_a, opt_t, *opts_i)],
                          "multiplier": multiplier})


def _restore(snapshot: dict, nets: dict, opt_a, opt_t, opts_i: list) -> torch.Tensor:
    """Puts a _snapshot back (the learning-rate schedule goes on: the next epoch retries at
    its lower rate); returns the multiplier it held."""
    for k, net in nets.items():
        net.load_state_dict(snapshot["nets"][k])
    for o, state in zip((opt_a, opt_t, *opts_i), snapshot["opts"]):
        lr = [g["lr"] for g in o.param_groups]
        o.load_state_dict(state)
        for g, r in zip(o.param_groups, lr):
            g["lr"] = r
    return snapshot["multiplier"].clone()


def train_composite(anon: NoiseAnonNet, target_net: ClassNet, id_net: ClassNet,
                    windows: np.ndarray, targets: np.ndarray, ids: np.ndarray,
                    config: CompositeConfig = CompositeConfig(),
                    on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """Train the three nets in place on (N, n_windows, C, H, W) uint8 windows; returns the
    per-epoch metrics (losses, noise scale, event-rate ratio on the training clips).
    on_step, if given, gets each step's losses as floats (a study's trace: it syncs a GPU
    every step, so the product's training leaves it out)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = torch.device(config.device)
    draws = study_generators(device)  # the noise and the round trip's, parallel on the CPU
    for net in (anon, target_net, id_net):
        net.to(device)
    opt_a = torch.optim.Adam(anon.parameters(), lr=config.lr_anon)
    opt_t = torch.optim.Adam(target_net.parameters(), lr=config.lr_helper)
    lr_i = config.lr_helper if config.lr_adversary is None else config.lr_adversary
    # id_net is adversary 0 (trained in place); the others start as copies of it
    adversaries = [id_net] + [copy.deepcopy(id_net) for _ in range(config.adversaries - 1)]
    opts_i = [torch.optim.Adam(net.parameters(), lr=lr_i) for net in adversaries]
    start_state = copy.deepcopy(id_net.state_dict()) if config.adversary_restart else None
    sched_a = torch.optim.lr_scheduler.CosineAnnealingLR(opt_a, T_max=config.epochs)
    frozen_target = None
    if config.clean_target_weight > 0:
        frozen_target = copy.deepcopy(target_net).eval().requires_grad_(False)
    t_all = torch.from_numpy(targets.astype(np.int64)).to(device)
    i_all = torch.from_numpy(ids.astype(np.int64)).to(device)
    if device.type != "cpu":  # uint8 windows fit on a GPU; gathering there saves a copy a step
        windows = torch.from_numpy(np.ascontiguousarray(windows)).to(device)
    multiplier = torch.zeros((), device=device)  # dual ascent starts with the push off
    history = []
    step = 0
    nets = {"anon": anon, "target": target_net, **{f"id{k}": n for k, n in enumerate(adversaries)}}
    good = _snapshot(nets, opt_a, opt_t, opts_i, multiplier) if config.rollback else None
    for epoch in range(config.epochs):
        for net in (anon, target_net, *adversaries):
            net.train()
        started, seen, restarts = time.time(), 0, 0
        batches = identity_batches(ids, config.per_id, config.batch, rng)  # as many each epoch
        # summed on the device: a .item() a step would stall the queue of GPU work every step
        names = ["loss_anon", "loss_target", "loss_id", "event_rate_ratio",
                 "uncapped_event_rate_ratio"]
        if config.target_ce_bound is not None:
            # the share of steps with the Re-ID push on (dual: the multiplier's mean)
            names.append("reid_active")
        sums = {k: torch.zeros((), device=device) for k in names}
        # the gesture net's CE over the last ~RECENT_STEPS steps: an epoch's mean hides a
        # collapse in its last part
        recent = None
        for idx in batches:
            if start_state is not None:
                for k in restarts_due(step, len(batches), len(adversaries)):
                    adversaries[k].load_state_dict(start_state)
                    opts_i[k] = torch.optim.Adam(adversaries[k].parameters(), lr=lr_i)
                    restarts += 1
            step += 1
            idx_t = torch.from_numpy(idx).to(device, non_blocking=True)
            batch = windows[idx_t] if torch.is_tensor(windows) \
                else torch.from_numpy(windows[idx]).to(device)
            x = _augment_clip_windows(batch.float(), gen)
            target, identity = t_all[idx_t], i_all[idx_t]
            flat = flat_windows(x)
            raw = anon(flat, generator=draws)  # one noise draw per window, as the stream
            raw_windows = raw.reshape(x.shape)
            seen_clip = compose_clips(stream_windows(raw, flat, straight_through=True,
                                                     generator=draws,
                                                     gradient=config.round_trip_gradient)
                                      .reshape(x.shape), config.clip_bins)
            t_logits, _, _ = target_net(seen_clip)
            judged = [net(seen_clip) for net in adversaries]  # (logits, embedding, features)
            loss_t = target_loss(t_logits, target)
            reid_weight = config.reid_weight
            if config.target_ce_bound is not None:
                # Without it a sweep of Re-ID caps collapsed: once the push had destroyed the
                # gesture (the target net at chance), its CE no longer pointed back and the
                # anonymizer flooded every window with noise up to the budget (gesture 0.15,
                # attackers 0.15). The Re-ID term is switched off while the task suffers.
                if config.bound_dual_lr is None:
                    active = (loss_t.detach() <= config.target_ce_bound).float()
                else:
                    # the switch flips with every noisy batch; a multiplier moves by the
                    # bound's slack, so the push settles where the task holds the bound
                    active = multiplier
                    multiplier = (multiplier + config.bound_dual_lr * (
                        config.target_ce_bound - loss_t.detach())).clamp(0.0, 1.0)
                reid_weight = reid_weight * active
            loss_a = anonymizer_loss(t_logits, target, [e for _, e, _ in judged], identity,
                                     reid_weight, reid_cap=config.reid_cap,
                                     push=config.reid_push,
                                     id_logits=[lg for lg, _, _ in judged])
            clean_ce = None
            if frozen_target is not None:
                # a consumer's off-the-shelf net, trained on clean events, must still work
                clean_ce = target_loss(frozen_target(seen_clip)[0], target)
                loss_a = loss_a + config.clean_target_weight * clean_ce
            if config.noise_budget is not None:
                # on the anonymizer's own output, before the runtime's cap: the cap's factor
                # carries no gradient, so the output's scale could grow far past the cap
                # unseen, and a penalty after the cap never brought it back (every budget of
                # a sweep ended at the cap, 2.9 events out per event in)
                loss_a = loss_a + NOISE_BUDGET_WEIGHT * noise_budget_penalty(
                    raw_windows, x, config.noise_budget)
            # each adversary's loss depends on its own weights only, so one backward of the sum
            loss_i = torch.stack([reid_loss(lg, e, identity) for lg, e, _ in judged]).sum()
            for o in (opt_a, opt_t, *opts_i):
                o.zero_grad(set_to_none=True)
            loss_a.backward(inputs=list(anon.parameters()), retain_graph=True)
            loss_t.backward(inputs=list(target_net.parameters()), retain_graph=True)
            loss_i.backward(inputs=[p for net in adversaries for p in net.parameters()])
            for o in (opt_a, opt_t, *opts_i):
                o.step()
            loss_i = loss_i.detach() / len(adversaries)
            seen_detached = seen_clip.detach()
            for net, opt_i in zip(adversaries, opts_i):
                for _ in range(config.adversary_steps - 1):
                    opt_i.zero_grad(set_to_none=True)
                    logits, embedding, _ = net(seen_detached)
                    reid_loss(logits, embedding, identity).backward()
                    opt_i.step()
            n = len(idx)
            seen += n
            with torch.no_grad():
                recent = loss_t.detach() if recent is None else recent.lerp(
                    loss_t.detach(), 1.0 / RECENT_STEPS)
                sums["loss_anon"] += loss_a * n
                sums["loss_target"] += loss_t * n
                sums["loss_id"] += loss_i * n
                in_mass = event_mass(x).sum().clamp(min=1)  # the clean clips' events
                sums["event_rate_ratio"] += event_mass(seen_clip).sum() / in_mass * n
                sums["uncapped_event_rate_ratio"] += event_mass(raw_windows).sum() / in_mass * n
                if config.target_ce_bound is not None:
                    sums["reid_active"] += active * n
            if on_step is not None:
                on_step({"epoch": epoch, "step": step, "loss_target": loss_t.item(),
                         "loss_clean_target": (clean_ce.item() if clean_ce is not None
                                               else float("nan")),
                         "uncapped_event_rate_ratio": (event_mass(raw_windows).sum()
                                                       / in_mass).item(),
                         "event_rate_ratio": (event_mass(seen_clip).sum() / in_mass).item(),
                         "reid_weight": float(reid_weight)})
        sched_a.step()
        metrics = {"epoch": epoch, **{k: v.item() / max(seen, 1) for k, v in sums.items()},
                   "seconds": round(time.time() - started, 1)}
        if start_state is not None:
            metrics["adversary_restarts"] = restarts
        if good is not None and recent is not None:
            metrics["recent_loss_target"] = recent.item()
            chance = math.log(t_logits.shape[1])
            if metrics["recent_loss_target"] > chance:
                multiplier = _restore(good, nets, opt_a, opt_t, opts_i)
                metrics["rolled_back"] = 1.0
                log.warning("seed %d pipeline epoch %d: the gesture net's recent cross-entropy "
                            "%.3g is above chance (%.3g): back to the previous epoch's nets",
                            config.seed, epoch + 1, metrics["recent_loss_target"], chance)
            else:
                good = _snapshot(nets, opt_a, opt_t, opts_i, multiplier)
                metrics["rolled_back"] = 0.0
        history.append(metrics)
        log.info("seed %d pipeline epoch %d/%d %s", config.seed, epoch + 1, config.epochs,
                 " ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    for net in (anon, target_net, *adversaries):
        net.eval()
    return history
