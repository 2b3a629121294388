"""DenoiseNet: the reference's DnCNN-style attacker front end (predicts the clean tensor)."""

from __future__ import annotations

from torch import nn


class DenoiseNet(nn.Module):
    """Conv3x3(C -> width) + ReLU, (depth - 2) x [Conv3x3 + BatchNorm + ReLU], Conv3x3(-> C).

    The reference uses width 128 and depth 15 (about 1.95M parameters for C = 10); the module
    name `dncnn` is the reference's, so its state dicts load unchanged.
    """

    kind = "denoise"
    # What a checkpoint may declare (see NoiseAnonNet.ARCH_LIMITS): the project trains widths
    # 16 to 128 and depths 5 to 15 (the reference's), on 10 channels.
    ARCH_LIMITS = {"channels": ("int", 1, 256), "width": ("int", 1, 1024),
                   "depth": ("int", 2, 200)}

    def __init__(self, channels: int = 10, width: int = 128, depth: int = 15):
        super().__init__()
        if depth < 2:
            raise ValueError("depth must be at least 2")
        self.channels, self.width, self.depth = int(channels), int(width), int(depth)
        layers = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.dncnn = nn.Sequential(*layers)

    def arch(self) -> dict:
        return {"channels": self.channels, "width": self.width, "depth": self.depth}

    def forward(self, x):
        return self.dncnn(x)
