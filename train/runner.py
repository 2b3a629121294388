"""What every training stage needs around its loop: devices and processes, a progress bar,
per-epoch metrics (JSONL, TensorBoard when installed), training state for --resume.

One process trains on one device; under `torchrun` each process is one rank of a
DistributedDataParallel job (gloo on CPUs, NCCL on GPUs), and only rank 0 evaluates, logs
and writes files.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from anonynoise.anonymizer import resolve_device
from anonynoise.atomic import atomic_output
from anonynoise.checkpoint import plain_metadata
from anonynoise.errors import AnonyNoiseError

log = logging.getLogger(__name__)
STATE_FORMAT = "anonynoise-training-state"


@dataclass
class Processes:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def wrap(self, net: nn.Module) -> nn.Module:
        """DistributedDataParallel around a net when the job has several processes."""
        if not self.distributed:
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(net, device_ids=ids)

    def check_in_sync(self, nets: dict[str, nn.Module]) -> None:
        """After distributed training every rank must hold the same weights (DDP averages
        the gradients); a difference means a gradient escaped the reduction."""
        if not self.distributed:
            return
        for name, net in nets.items():
            total = torch.stack([p.detach().double().sum() for p in unwrap(net).parameters()])
            gathered = [torch.zeros_like(total) for _ in range(self.world)]
            dist.all_gather(gathered, total.cpu() if self.device.type == "cpu" else total)
            spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
            if spread > 1e-6 * max(1.0, float(total.abs().max())):
                raise RuntimeError(f"distributed training: the {name} net differs between ranks")
        log.info("weights identical on all %d ranks", self.world)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def start(device: str = "auto", seed: int = 42) -> Processes:
    """Set up this process (torchrun's environment when present) and seed everything."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        dev = resolve_device(device)
        if dev.type == "cuda":
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    else:
        dev = resolve_device(device)
    seed_everything(seed + rank)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    return Processes(rank, world, dev)


def seed_everything(seed: int) -> None:
    """Seeds for training only (data order, augmentation, initial weights). The stream's
    anonymization noise never uses them: it reseeds from OS entropy."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress(iterable, total: int, description: str, enabled: bool):
    """A progress bar per epoch on an interactive terminal (rank 0 only)."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


class MetricLog:
    """Per-epoch metrics to OUT/metrics.jsonl and, when tensorboard is installed, to OUT/tb."""

    def __init__(self, out: Path, enabled: bool, resume: bool = False):
        self.path = out / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AnonyNoiseError(f"--out {out}: cannot create it: "
                                  f"{e.strerror or e}") from None
        if not resume and self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"))
        except ImportError:  # tensorboard is optional
            self.writer = None

    def write(self, epoch: int, metrics: dict) -> None:
        if not self.enabled:
            return
        row = {"epoch": epoch, "time": round(time.time(), 3), **plain_metadata(metrics)}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, epoch)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net


def save_state(path: Path, stage: str, epoch: int, nets: dict, optimizers: dict,
               schedulers: dict, extra: dict) -> None:
    """Everything --resume needs, loadable with weights_only=True."""
    payload = {"format": STATE_FORMAT, "stage": stage, "epoch": epoch,
               "nets": {k: unwrap(v).state_dict() for k, v in nets.items()},
               "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
               "schedulers": {k: v.state_dict() for k, v in schedulers.items()},
               "extra": plain_metadata(extra)}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_state(path: str | os.PathLike, stage: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AnonyNoiseError(f"--resume {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise AnonyNoiseError(f"--resume {path}: not a readable training state ({e})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise AnonyNoiseError(f"--resume {path}: not a training state (these are the "
                              "state.pt files a run writes into its --out folder)")
    if state["stage"] != stage:
        raise AnonyNoiseError(f"--resume {path}: a {state['stage']} state, this is {stage}")
    return state


def restore(state: dict, nets: dict, optimizers: dict, schedulers: dict) -> int:
    """Load a training state into the objects; returns the epoch to continue from."""
    try:
        for k, net in nets.items():
            unwrap(net).load_state_dict(state["nets"][k])
        for k, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        for k, sched in schedulers.items():
            sched.load_state_dict(state["schedulers"][k])
    except (KeyError, RuntimeError, ValueError) as e:
        raise AnonyNoiseError(f"--resume: the state does not fit this run ({str(e)[:200]})") \
            from None
    return int(state["epoch"]) + 1
