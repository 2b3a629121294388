"""Building and loading the nets of the stages, with the checks that make bad weights fail
before any training starts: wrong kind, wrong number of classes or input channels."""

from __future__ import annotations

import logging

import torch
from torch import nn

from anonynoise.checkpoint import CheckpointError, load_net
from anonynoise.models import ANONYMIZER_KINDS, ClassNet, DenoiseNet, LightAnonNet, PaperAnonNet
from train.event_domain import straight_through_round_trip

log = logging.getLogger(__name__)
DEFAULT_NETWORK = "resnet50"


def classnet(path: str | None, n_classes: int, channels: int, network: str | None,
             flag: str, role: str | None = None) -> ClassNet:
    """A ClassNet from weights (ours or the reference's) or fresh; refuses weights for another
    number of classes or input channels, or another network than --network names."""
    if path is None:
        return ClassNet(network or DEFAULT_NETWORK, n_classes, channels)
    try:
        net, ckpt = load_net(path, "classnet", role=role)
    except CheckpointError as e:
        raise CheckpointError(f"{flag}: {e}") from None
    if net.n_classes != n_classes:
        raise CheckpointError(f"{flag} {path}: a ClassNet for {net.n_classes} classes; this "
                              f"dataset and task have {n_classes}")
    if net.input_channels != channels:
        raise CheckpointError(f"{flag} {path}: expects {net.input_channels} input channels, the "
                              f"data has {channels}")
    if network is not None and net.network != network:
        raise CheckpointError(f"{flag} {path}: is a {net.network}, --network says {network}")
    return net.train()


def anonymizer(path: str | None, channels: int, kind: str = "paper",
               noise_std: float = 1.0) -> nn.Module:
    """The anonymizer: from --anon_weights (ours or the reference's anonnet), or fresh."""
    if path is None:
        cls = {"paper": PaperAnonNet, "light": LightAnonNet}[kind]
        return cls(channels=channels, noise_std=noise_std)
    try:
        net, ckpt = load_net(path, ANONYMIZER_KINDS, role="anonnet")
    except CheckpointError as e:
        raise CheckpointError(f"--anon_weights: {e}") from None
    if net.channels != channels:
        raise CheckpointError(f"--anon_weights {path}: made for {net.channels} channels, the "
                              f"data has {channels}")
    if ckpt.training.get("source") == "reference state dict":
        net.noise_std = float(noise_std)  # the reference keeps it on the command line
    return net


def denoiser(path: str | None, channels: int, width: int = 128, depth: int = 15) -> DenoiseNet:
    if path is None:
        return DenoiseNet(channels, width, depth)
    try:
        net, _ = load_net(path, "denoise", role="denoisenet")
    except CheckpointError as e:
        raise CheckpointError(f"--denoise_weights: {e}") from None
    if net.channels != channels:
        raise CheckpointError(f"--denoise_weights {path}: made for {net.channels} channels, the "
                              f"data has {channels}")
    return net.train()


class PostClassNet(nn.Module):
    """The attacker of post-training: a frozen anonymizer, an optional denoiser learning to
    restore the clean input, and a ClassNet. forward -> (logits, embedding, pooled,
    denoised or None)."""

    def __init__(self, anon: nn.Module, net: ClassNet, denoise: nn.Module | None = None,
                 event_domain: bool = False):
        super().__init__()
        self.anonnet = anon
        for p in self.anonnet.parameters():
            p.requires_grad_(False)
        self.denoisenet = denoise
        self.classnet = net
        self.event_domain = event_domain

    def anonymize(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.anonnet.eval()
            x = self.anonnet(x)
            return straight_through_round_trip(x) if self.event_domain else x

    def forward(self, x: torch.Tensor):
        x = self.anonymize(x)
        denoised = None
        if self.denoisenet is not None:
            denoised = self.denoisenet(x)
            x = denoised
        logits, embedding, pooled = self.classnet(x)
        return logits, embedding, pooled, denoised
