"""Train and evaluate ClassNets on in-memory tensors: the task net and the Re-ID net.

Small, CPU-friendly loops on arrays, used by the synthetic learnability check: augmentation
as the reference (random crop with padding and a small rotation, the same for every bin and
polarity), a P x K identity sampler for the triplet loss, top-1 accuracy and Re-ID retrieval
with the reference's rules. The training stages (train.stages) work on datasets instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anonynoise.losses import reid_loss, target_loss
from anonynoise.metrics import ReidResult, flip_descriptor, reid_evaluate, top1_accuracy
from anonynoise.models import ClassNet
from anonynoise.models.classnet import WIDTH
from train.augment import random_hflip, shift_and_rotate

log = logging.getLogger(__name__)


def augment(x: torch.Tensor, generator: torch.Generator, max_degrees: float = 15.0) -> torch.Tensor:
    """The reference's DVS-Gesture augmentation: RandomCrop(h, padding=h // 12) and
    RandomRotation(15) in one resampling (train.augment)."""
    return shift_and_rotate(x, generator, max(x.shape[-2] // 12, 1), max_degrees)


def identity_batches(ids: np.ndarray, per_id: int, batch: int, rng: np.random.Generator):
    """Index batches of batch // per_id identities with per_id samples each (P x K), covering
    every sample about once per epoch; identities with fewer samples repeat some."""
    by_id = {i: np.flatnonzero(ids == i) for i in np.unique(ids)}
    chunks = []
    for members in by_id.values():
        order = rng.permutation(members)
        if len(order) % per_id:
            order = np.concatenate([order, rng.choice(members, per_id - len(order) % per_id)])
        chunks += [order[k:k + per_id] for k in range(0, len(order), per_id)]
    rng.shuffle(chunks)
    per_batch = max(batch // per_id, 2)
    return [np.concatenate(chunks[k:k + per_batch]) for k in range(0, len(chunks), per_batch)
            if len(chunks[k:k + per_batch]) >= 2]


def cpu_layout(module: nn.Module, device: torch.device) -> nn.Module:
    """A net channels-last on the CPU: convolutions train faster there when both weights and
    input are (48x48, batch 32: the DnCNN 16 x 5 42 to 53 instead of 102 to 142 ms a step,
    the ResNet-18 16 wide 32 to 34 instead of 40 to 45); a GPU keeps its layout."""
    return module.to(memory_format=torch.channels_last) if device.type == "cpu" else module


def cpu_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An input for a cpu_layout net."""
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else x


@dataclass
class FitConfig:
    network: str = "resnet18"
    width: int = WIDTH  # first-stage channels (the ResNet's 64; narrower for CPU studies)
    epochs: int = 30
    batch: int = 32
    lr: float = 1e-3
    per_id: int = 4  # samples per identity in a Re-ID batch
    seed: int = 0
    device: str = "cpu"
    augment: bool = True
    # mirror half the Re-ID training samples: identity does not depend on the side, and the
    # reference's descriptor adds the mirrored input's embedding (never for the task, whose
    # classes include left and right)
    reid_flip: bool = True


def fit_classnet(x, labels: np.ndarray, n_classes: int, reid: bool,
                 config: FitConfig = FitConfig(), *, init: ClassNet | None = None,
                 denoiser: nn.Module | None = None, clean: np.ndarray | None = None):
    """Train a ClassNet on (N, C, H, W) inputs: cross-entropy (task) or cross-entropy plus
    the batch-hard triplet loss (Re-ID, P x K batches); Adam with a cosine schedule.

    `x` may be a list of arrays of the same samples (noise draws of an anonymizer): epoch e
    trains on draw e mod len(x). `init` starts from a copy of a trained net (its classifier
    is replaced when the classes differ). With `denoiser` (and the paired `clean` inputs) the
    net trains behind it and the denoiser learns to restore the clean input (MSE): the
    reference's post-training attack. Returns the net, or (net, denoiser) with a denoiser."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    device = torch.device(config.device)
    draws = x if isinstance(x, (list, tuple)) else [x]
    net = ClassNet(config.network, n_classes, draws[0].shape[1], config.width)
    if init is not None:
        state = {k: v for k, v in init.state_dict().items()
                 if not (k.startswith("classifier.") and init.n_classes != n_classes)}
        net.load_state_dict(state, strict=False)
    net = cpu_layout(net.to(device), device)
    params = list(net.parameters())
    if denoiser is not None:
        if clean is None:
            raise ValueError("a denoiser needs the paired clean inputs")
        denoiser = cpu_layout(denoiser.to(device), device)
        params += list(denoiser.parameters())
        clean_t = torch.from_numpy(clean)
    opt = torch.optim.Adam(params, lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    # labels on the device too, and the epoch's loss summed there: a .item() a step would
    # make the host wait for the GPU every step instead of queueing the next one
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    # on a GPU the whole training set lives there: a gather and a host-to-device copy per
    # step cost more than the step of these small nets (no copy at all on the CPU)
    draws_t = [torch.from_numpy(d).to(device) for d in draws]
    if denoiser is not None:
        clean_t = clean_t.to(device)
    for epoch in range(config.epochs):
        data = draws_t[epoch % len(draws_t)]
        net.train()
        if denoiser is not None:
            denoiser.train()
        if reid:
            batches = identity_batches(labels, config.per_id, config.batch, rng)
        else:
            order = rng.permutation(len(labels))
            batches = [order[k:k + config.batch] for k in range(0, len(labels), config.batch)
                       if len(order[k:k + config.batch]) > 1]
        total = torch.zeros((), device=device)
        for idx in batches:
            idx_t = torch.from_numpy(np.asarray(idx)).to(device, non_blocking=True)
            xb = data[idx_t]
            c = xb.shape[1]
            if denoiser is not None:  # the same augmentation for the pair
                xb = torch.cat((xb, clean_t[idx_t]), 1)
            if config.augment:
                xb = augment(xb, gen)
                if reid and config.reid_flip:
                    xb = random_hflip(xb, gen)
            xb, yb = xb.to(device), y[idx_t]
            loss = 0.0
            if denoiser is not None:
                xb, target_clean = xb[:, :c], xb[:, c:]
                xb = denoiser(cpu_input(xb, device))
                loss = F.mse_loss(xb, target_clean)
            logits, embedding, _ = net(cpu_input(xb, device))
            loss = loss + (reid_loss(logits, embedding, yb) if reid else target_loss(logits, yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        sched.step()
        log.info("epoch %d/%d loss %.4f", epoch + 1, config.epochs, total.item() / len(labels))
    net.eval()
    if denoiser is not None:
        return net, denoiser.eval()
    return net


@torch.no_grad()
def predict(net: ClassNet, x: np.ndarray, device: str = "cpu", batch: int = 64,
            front: nn.Module | None = None):
    """(logits, flip descriptors) of every input, in eval mode; `front` (a denoiser) first."""
    dev = torch.device(device)
    net = cpu_layout(net.eval(), dev)
    if front is not None:
        front = cpu_layout(front.eval(), dev)

    def run(v):
        if front is not None:
            v = front(cpu_input(v, dev))
        return net(cpu_input(v, dev))

    logits, desc = [], []
    for k in range(0, len(x), batch):
        xb = torch.from_numpy(x[k:k + batch]).to(device)
        logits.append(run(xb)[0].cpu())
        desc.append(flip_descriptor(lambda v: run(v)[1], xb).cpu())
    return torch.cat(logits), torch.cat(desc)


def target_accuracy(net: ClassNet, x: np.ndarray, targets: np.ndarray,
                    device: str = "cpu", front: nn.Module | None = None) -> float:
    logits, _ = predict(net, x, device, front=front)
    return top1_accuracy(logits, torch.from_numpy(targets.astype(np.int64)))


def reid_accuracy(net: ClassNet, x: np.ndarray, users: np.ndarray, files: np.ndarray,
                  targets: np.ndarray, query: np.ndarray, device: str = "cpu",
                  front: nn.Module | None = None) -> ReidResult:
    """Re-ID on unseen people: `query` marks the query recordings, the rest is the gallery."""
    _, desc = predict(net, x, device, front=front)
    d = desc.numpy()
    q, g = np.flatnonzero(query), np.flatnonzero(~query)
    return reid_evaluate(d[q], users[q], files[q], targets[q], d[g], users[g], files[g],
                         targets[g])
