"""The paper's training stages: pre-training, the adversarial pipeline, post-training attacks.

    pretrain / posttrain   (train.preposttrain_networks) a ClassNet for the task or for
                           identities, on clean inputs (pre) or behind a frozen anonymizer,
                           optionally with a denoiser in front (post); Adam lr0 + cosine;
                           the best epoch on the validation metric and the last are kept.
    pipeline               (train.train_pipeline) anonymizer against the Re-ID net while the
                           target net keeps the task: three updates per batch from one
                           forward per net; the last epoch is kept.

Each takes the parsed command line (train.options) and writes into --out (default
runs/<ename>/): checkpoints in the project's format, metrics.jsonl, state.pt for --resume.
"""

from __future__ import annotations

import json
import logging
import time
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler

from anonynoise.checkpoint import Representation, save_checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.losses import anonymizer_loss, reid_loss, target_loss
from train import nets
from train.datasets import Benchmark, open_dataset, subsample
from train.evaluate import batches, reid_metrics, summary, target_top1
from train.event_domain import (event_rate_ratio, noise_budget_penalty,
                                straight_through_round_trip)
from train.runner import MetricLog, Processes, load_state, progress, restore, save_state, start

log = logging.getLogger(__name__)
NOISE_BUDGET_WEIGHT = 10.0  # the penalty per unit of event-rate ratio over the budget


def open_benchmark(args: Namespace, reid: bool = False) -> Benchmark:
    """The dataset of the command line, checked and with its frames made (before training);
    with `reid` (the stage evaluates Re-ID) its test split must hold a query and a gallery."""
    bench = open_dataset(args.dataset, args.dataset_path, window_ms=args.window_ms,
                         size=args.size)
    if args.subset is not None:
        if not 0 < args.subset <= 1:
            raise AnonyNoiseError(f"--subset must be in (0, 1], got {args.subset}")
        bench.train = subsample(bench.train, args.subset, args.seed)
    if len(bench.train) == 0:
        raise AnonyNoiseError(f"{args.dataset_path}: no training samples")
    bench.train.frames(0)  # read one sample now: a broken tree fails before training
    if reid and not (len(bench.query) and len(bench.gallery)):
        # else a whole training ran first and its evaluation failed on an empty list
        raise AnonyNoiseError(
            f"{args.dataset_path}: no Re-ID {'query' if not len(bench.query) else 'gallery'} "
            f"(query {len(bench.query)}, gallery {len(bench.gallery)}): Re-ID needs each test "
            "person recorded in at least two sessions (the synthetic benchmark: --reps 2)")
    log.info("%s", bench.describe())
    return bench


def _out(args: Namespace) -> Path:
    return Path(args.out) if args.out else Path("runs") / args.ename


def _loader(bench: Benchmark, args: Namespace, procs: Processes):
    sampler = (DistributedSampler(bench.train, procs.world, procs.rank, shuffle=True,
                                  seed=args.seed, drop_last=True) if procs.distributed else None)
    loader = batches(bench.train, args.batch_size, args.num_workers, sampler=sampler,
                     shuffle=True, drop_last=len(bench.train) > args.batch_size,
                     generator=torch.Generator().manual_seed(args.seed))
    return loader, sampler


def _representation(bench: Benchmark, any_size: bool = False) -> Representation:
    rep = bench.representation
    return replace(rep, width=None, height=None) if any_size else rep


def _training_record(args: Namespace, stage: str, bench: Benchmark, epoch: int,
                     metrics: dict) -> dict:
    keep = ("ename", "dataset", "network", "batch_size", "lr0", "lr0_helper", "epochs",
            "anno_type", "prepostmode", "denoisenet", "noise_std", "window_ms", "reid_weight",
            "noise_budget", "event_domain", "size", "subset", "seed", "anonnet")
    return {"stage": stage, "epoch": epoch, "metrics": metrics, "dataset_notes": bench.notes,
            "args": {k: getattr(args, k) for k in keep if hasattr(args, k)},
            "augmentation": bench.augmentation.name}


# ---------------------------------------------------------------------------------------------
# pre- and post-training


def _in_processes(stage, args: Namespace) -> dict:
    procs = start(args.device, args.seed)
    try:
        return stage(args, procs)
    finally:
        procs.close()


def preposttrain(args: Namespace) -> dict:
    """Pre-train (clean inputs) or post-train (behind a frozen anonymizer) a ClassNet for the
    task (--anno_type target) or identities (--anno_type id); returns the final metrics."""
    return _in_processes(_preposttrain, args)


def _preposttrain(args: Namespace, procs: Processes) -> dict:
    task = args.anno_type == "target"
    bench = open_benchmark(args, reid=not task)
    if task and bench.n_targets is None:
        raise AnonyNoiseError(f"--dataset {args.dataset} has no task labels (Event-ReId v2 has "
                              "only identities): use --anno_type id")
    post = args.prepostmode == "post"
    if post and args.anon_weights is None and not args.val_only:
        raise AnonyNoiseError("--prepostmode post needs --anon_weights (the anonymizer to "
                              "attack, from train_pipeline)")
    channels = bench.input_shape[0]
    n_classes = bench.n_targets if task else bench.n_ids
    role = "targetnet" if task else "idnet"
    classnet = nets.classnet(args.class_weights, n_classes, channels, args.network,
                             "--class_weights", role=None if args.class_weights is None else
                             _role_hint(args.class_weights, role))
    model: torch.nn.Module = classnet
    if post:
        anon = nets.anonymizer(args.anon_weights, channels, noise_std=args.noise_std) \
            if args.anon_weights else None
        if anon is None:
            raise AnonyNoiseError("--val_only --prepostmode post needs --anon_weights")
        denoise = (nets.denoiser(args.denoise_weights, channels, args.denoise_width,
                                 args.denoise_depth) if args.denoisenet else None)
        model = nets.PostClassNet(anon, classnet, denoise, args.event_domain)
    model = model.to(procs.device)
    out = _out(args)
    stage = f"{args.prepostmode}-{args.anno_type}"
    metric_name = "val_target_top1" if task else "reid_rank1"

    def evaluate() -> dict:
        if post:
            model.eval()

        def prepare(x):
            if not post:
                return x
            x = model.anonymize(x)
            return model.denoisenet(x) if model.denoisenet is not None else x
        if task:
            return {"val_target_top1": target_top1(classnet, bench.val, prepare,
                                                   args.batch_size, procs.device)}
        return summary(reid_metrics(classnet, bench.query, bench.gallery, prepare,
                                    args.batch_size, procs.device))

    if args.val_only:
        return _evaluate_only(evaluate, procs, out, stage)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    train_model = procs.wrap(model)
    first = 0
    if args.resume:
        first = restore(load_state(args.resume, stage), {"model": model}, {"opt": opt},
                        {"sched": sched})
    loader, sampler = _loader(bench, args, procs)
    metrics_log = MetricLog(out, procs.main, resume=bool(args.resume))
    gen = torch.Generator().manual_seed(args.seed + procs.rank)
    best = float("-inf")
    metrics: dict = {}
    for epoch in range(first, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        gen.manual_seed(args.seed + 1000 * epoch + procs.rank)
        model.train()
        if post:
            model.anonnet.eval()
        started, total, seen, hits = time.time(), 0.0, 0, 0
        for x, target, id_label, _, _ in progress(loader, len(loader),
                                                  f"{args.ename} {epoch + 1}/{args.epochs}",
                                                  procs.main):
            x = bench.augmentation(x, gen).to(procs.device)
            labels = (target if task else id_label).to(procs.device)
            if (labels < 0).any():
                raise AnonyNoiseError("a training sample without a label")
            out_ = train_model(x)
            logits, embedding = out_[0], out_[1]
            loss = target_loss(logits, labels) if task else reid_loss(logits, embedding, labels)
            if post and args.denoisenet:
                # the attacker has paired data: its denoiser learns to restore the clean input
                loss = loss + F.mse_loss(out_[3], x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
            seen += len(x)
            hits += int((logits.argmax(1) == labels).sum())
        sched.step()
        metrics = {"stage": stage, "train_loss": total / max(seen, 1),
                   "train_accuracy": hits / max(seen, 1), "lr": sched.get_last_lr()[0],
                   "seconds": round(time.time() - started, 2)}
        if procs.main:
            metrics.update(evaluate())
            record = _training_record(args, stage, bench, epoch, metrics)
            rep = _representation(bench)
            if metrics[metric_name] > best:
                best = metrics[metric_name]
                save_checkpoint(out / "classnet_best.pt", classnet, rep, record)
            save_checkpoint(out / "classnet_last.pt", classnet, rep, record)
            if post and model.denoisenet is not None:
                save_checkpoint(out / "denoise_last.pt", model.denoisenet, rep, record)
            save_state(out / "state.pt", stage, epoch, {"model": model}, {"opt": opt},
                       {"sched": sched}, {"best": best})
            metrics_log.write(epoch, metrics)
            log.info("epoch %d/%d %s", epoch + 1, args.epochs,
                     " ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                              if isinstance(v, float)))
        procs.barrier()
    procs.check_in_sync({"model": model})
    metrics_log.close()
    return metrics


def _evaluate_only(evaluate, procs: Processes, out: Path, stage: str) -> dict:
    """--val_only: evaluate once (rank 0), log and print the metrics."""
    metrics = evaluate() if procs.main else {}
    if procs.main:
        MetricLog(out, True).write(0, {"stage": stage, **metrics})
        print(json.dumps(metrics))
    return metrics


def _role_hint(path: str, role: str) -> str | None:
    """Which sub-net to take from a reference file that holds a whole pipeline (targetnet
    or idnet); our checkpoints and bare state dicts need none."""
    from anonynoise.checkpoint import read_torch_file

    data = read_torch_file(path)
    if isinstance(data, dict) and data.get("format") == "anonynoise-checkpoint":
        return None
    keys = data.get("state_dict", data) if isinstance(data, dict) else {}
    return role if any(str(k).startswith(f"{role}.") or f".{role}." in str(k)
                       for k in keys) else None


# ---------------------------------------------------------------------------------------------
# the adversarial pipeline


def pipeline(args: Namespace) -> dict:
    """Train the anonymizer against the Re-ID net while the target net keeps the task;
    returns the last epoch's metrics."""
    return _in_processes(_pipeline, args)


def _pipeline(args: Namespace, procs: Processes) -> dict:
    if args.dataset == "reid":
        raise AnonyNoiseError(
            "train_pipeline needs task labels and Event-ReId v2 has only identities. Train the "
            "anonymizer on another dataset (dvsg, see or synth), then evaluate it on Event-ReId "
            "v2 with a post-training attack: python -m train.preposttrain_networks --dataset "
            "reid --anno_type id --prepostmode post --anon_weights ANON.pt ...")
    bench = open_benchmark(args, reid=True)
    channels = bench.input_shape[0]
    if args.target_weights is None or args.id_weights is None:
        log.warning("no --target_weights / --id_weights: the target and Re-ID nets start "
                    "untrained (the reference starts from the pre-trained nets)")
    target_net = nets.classnet(args.target_weights, bench.n_targets, channels, args.network,
                               "--target_weights", role=_maybe_role(args.target_weights,
                                                                    "targetnet"))
    id_net = nets.classnet(args.id_weights, bench.n_ids, channels, args.network,
                           "--id_weights", role=_maybe_role(args.id_weights, "idnet"))
    anon = nets.anonymizer(args.anon_weights, channels, args.anonnet, args.noise_std)
    anon, target_net, id_net = (n.to(procs.device) for n in (anon, target_net, id_net))
    out = _out(args)
    stage = "pipeline"

    def anonymize(x):
        x = anon(x)
        return straight_through_round_trip(x) if args.event_domain else x

    def evaluate() -> dict:
        anon.eval()
        with torch.no_grad():
            rates = [event_rate_ratio(anonymize(x.to(procs.device)), x.to(procs.device))
                     for x, *_ in batches(bench.val, args.batch_size)]
        return {"val_target_top1": target_top1(target_net, bench.val, anonymize,
                                               args.batch_size, procs.device),
                **summary(reid_metrics(id_net, bench.query, bench.gallery, anonymize,
                                       args.batch_size, procs.device)),
                "val_event_rate_ratio": sum(rates) / max(len(rates), 1)}

    if args.val_only:
        return _evaluate_only(evaluate, procs, out, stage)

    opt_a = torch.optim.Adam(anon.parameters(), lr=args.lr0)
    opt_t = torch.optim.Adam(target_net.parameters(), lr=args.lr0_helper)
    opt_i = torch.optim.Adam(id_net.parameters(), lr=args.lr0_helper)
    sched_a = torch.optim.lr_scheduler.CosineAnnealingLR(opt_a, T_max=args.epochs)
    sched_t = torch.optim.lr_scheduler.StepLR(opt_t, step_size=100, gamma=0.5)
    sched_i = torch.optim.lr_scheduler.StepLR(opt_i, step_size=100, gamma=0.5)
    all_nets = {"anon": anon, "target": target_net, "id": id_net}
    optims = {"anon": opt_a, "target": opt_t, "id": opt_i}
    scheds = {"anon": sched_a, "target": sched_t, "id": sched_i}
    first = restore(load_state(args.resume, stage), all_nets, optims, scheds) \
        if args.resume else 0
    d_anon, d_target, d_id = (procs.wrap(n) for n in (anon, target_net, id_net))
    loader, sampler = _loader(bench, args, procs)
    metrics_log = MetricLog(out, procs.main, resume=bool(args.resume))
    gen = torch.Generator()
    metrics: dict = {}
    for epoch in range(first, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        gen.manual_seed(args.seed + 1000 * epoch + procs.rank)
        for n in all_nets.values():
            n.train()
        started, seen = time.time(), 0
        sums = {"loss_anon": 0.0, "loss_target": 0.0, "loss_id": 0.0, "noise_scale": 0.0,
                "train_event_rate_ratio": 0.0}
        for x, target, id_label, _, _ in progress(loader, len(loader),
                                                  f"{args.ename} {epoch + 1}/{args.epochs}",
                                                  procs.main):
            x = bench.augmentation(x, gen).to(procs.device)
            target, id_label = target.to(procs.device), id_label.to(procs.device)
            x_a = d_anon(x)
            seen_input = straight_through_round_trip(x_a) if args.event_domain else x_a
            # One forward per net: the target and Re-ID nets' own losses have the same
            # parameter gradients on x_a as on x_a.detach(), and DDP sees one backward each.
            t_logits, _, _ = d_target(seen_input)
            i_logits, i_embedding, _ = d_id(seen_input)
            loss_a = anonymizer_loss(t_logits, target, i_embedding, id_label, args.reid_weight)
            if args.noise_budget is not None:
                loss_a = loss_a + NOISE_BUDGET_WEIGHT * noise_budget_penalty(
                    seen_input, x, args.noise_budget)
            loss_t = target_loss(t_logits, target)
            loss_i = reid_loss(i_logits, i_embedding, id_label)
            for o in optims.values():
                o.zero_grad(set_to_none=True)
            loss_a.backward(inputs=list(anon.parameters()), retain_graph=True)
            loss_t.backward(inputs=list(target_net.parameters()), retain_graph=True)
            loss_i.backward(inputs=list(id_net.parameters()))
            for o in optims.values():
                o.step()
            n = len(x)
            seen += n
            sums["loss_anon"] += loss_a.item() * n
            sums["loss_target"] += loss_t.item() * n
            sums["loss_id"] += loss_i.item() * n
            with torch.no_grad():
                sums["noise_scale"] += float((x_a - x).abs().mean()) * n
                sums["train_event_rate_ratio"] += event_rate_ratio(seen_input, x) * n
        for s in scheds.values():
            s.step()
        metrics = {"stage": stage, **{k: v / max(seen, 1) for k, v in sums.items()},
                   "lr_anon": sched_a.get_last_lr()[0], "seconds": round(time.time() - started, 2)}
        if procs.main:
            metrics.update(evaluate())
            record = _training_record(args, stage, bench, epoch, metrics)
            # the adversarial game has no best epoch: the last one is kept (the reference's)
            save_checkpoint(out / "anonymizer.pt", anon, _representation(bench, any_size=True),
                            record)
            save_checkpoint(out / "targetnet.pt", target_net, _representation(bench), record)
            save_checkpoint(out / "idnet.pt", id_net, _representation(bench), record)
            save_state(out / "state.pt", stage, epoch, all_nets, optims, scheds, {})
            metrics_log.write(epoch, metrics)
            log.info("epoch %d/%d %s", epoch + 1, args.epochs,
                     " ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                              if isinstance(v, float)))
        procs.barrier()
    procs.check_in_sync(all_nets)
    metrics_log.close()
    return metrics


def _maybe_role(path: str | None, role: str) -> str | None:
    return None if path is None else _role_hint(path, role)
