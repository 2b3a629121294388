"""The nets: anonymizers (paper and light), ClassNet (ResNet + embedding head), DenoiseNet."""

from __future__ import annotations

from torch import nn

from anonynoise.models.classnet import ClassNet
from anonynoise.models.denoise import DenoiseNet
from anonynoise.models.noise import FORMS, AnonOutput, LightAnonNet, NoiseAnonNet, PaperAnonNet

MODEL_KINDS: dict[str, type[nn.Module]] = {
    cls.kind: cls for cls in (PaperAnonNet, LightAnonNet, ClassNet, DenoiseNet)
}
ANONYMIZER_KINDS = (PaperAnonNet.kind, LightAnonNet.kind)


def build_model(kind: str, arch: dict) -> nn.Module:
    """A fresh net of `kind` with constructor arguments `arch`."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODEL_KINDS))})")
    return MODEL_KINDS[kind](**arch)


__all__ = ["ANONYMIZER_KINDS", "FORMS", "MODEL_KINDS", "AnonOutput", "ClassNet", "DenoiseNet",
           "LightAnonNet", "NoiseAnonNet", "PaperAnonNet", "build_model"]
