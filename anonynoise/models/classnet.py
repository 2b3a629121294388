"""ClassNet: a ResNet-18/34/50 backbone (of the ResNet's width or narrower) with the
reference's embedding head.

Used as the target-task net, the Re-ID net and the attacker. Written here (no torchvision);
module names follow torchvision inside the blocks and the reference's ClassNet outside
(`backbone` = Sequential(conv1, bn1, relu, maxpool, layer1..4, avgpool), `linear_block`,
`classifier`), so the reference's state dicts load unchanged and torchvision ImageNet weights
map onto the backbone.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import torch
from torch import nn

# blocks per stage and block type of each depth
_DEPTHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3))}
EMBEDDING = 512
WIDTH = 64  # the ResNet's first-stage channels; narrower nets are for CPU-sized studies


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, planes, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride here (v1.5)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


def resnet_backbone(network: str, input_channels: int,
                    width: int = WIDTH) -> tuple[nn.Sequential, int]:
    """(Sequential(conv1, bn1, relu, maxpool, layer1..4, avgpool), pooled feature size).
    `width` is the first stage's channels (64 in the ResNet; the later stages double it)."""
    if network not in _DEPTHS:
        raise ValueError(f"network must be one of {sorted(_DEPTHS)}, got {network!r}")
    if width < 1:
        raise ValueError(f"width must be positive, got {width}")
    kind, blocks = _DEPTHS[network]
    block = BasicBlock if kind == "basic" else Bottleneck
    layers = [nn.Conv2d(input_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
              nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    c_in = width
    for stage, (planes, n) in enumerate(zip((width, 2 * width, 4 * width, 8 * width), blocks)):
        stage_blocks = []
        for i in range(n):
            stage_blocks.append(block(c_in, planes, stride=2 if (i == 0 and stage > 0) else 1))
            c_in = planes * block.expansion
        layers.append(nn.Sequential(*stage_blocks))
    layers.append(nn.AdaptiveAvgPool2d(1))
    backbone = nn.Sequential(*layers)
    for m in backbone.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return backbone, c_in


class ClassNet(nn.Module):
    """ResNet backbone + Linear(->512), BatchNorm1d, LeakyReLU(0.5), Dropout(0.5) + classifier.

    forward returns (logits, 512-d embedding, pooled backbone feature).
    """

    kind = "classnet"
    # What a checkpoint may declare (see NoiseAnonNet.ARCH_LIMITS): the project trains widths
    # 16 to 64 (the ResNet's), 11 gestures or up to a thousand people, on 10 channels.
    ARCH_LIMITS = {"network": ("choice", tuple(_DEPTHS)), "n_classes": ("int", 1, 100_000),
                   "input_channels": ("int", 1, 256), "width": ("int", 1, 512)}

    def __init__(self, network: str = "resnet50", n_classes: int = 11, input_channels: int = 10,
                 width: int = WIDTH):
        super().__init__()
        self.network, self.n_classes, self.input_channels = network, int(n_classes), int(input_channels)
        self.width = int(width)
        self.backbone, self.feature_dim = resnet_backbone(network, input_channels, self.width)
        self.linear_block = nn.Sequential(nn.Linear(self.feature_dim, EMBEDDING),
                                          nn.BatchNorm1d(EMBEDDING), nn.LeakyReLU(0.5),
                                          nn.Dropout(p=0.5))
        self.classifier = nn.Sequential(nn.Linear(EMBEDDING, self.n_classes))
        # The reference's head initialisation.
        nn.init.kaiming_normal_(self.linear_block[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.linear_block[0].bias)
        nn.init.normal_(self.linear_block[1].weight, 1.0, 0.02)
        nn.init.zeros_(self.linear_block[1].bias)
        nn.init.normal_(self.classifier[0].weight, std=0.001)
        nn.init.zeros_(self.classifier[0].bias)

    def arch(self) -> dict:
        arch = {"network": self.network, "n_classes": self.n_classes,
                "input_channels": self.input_channels}
        if self.width != WIDTH:  # the ResNet's own width is left out: older files match
            arch["width"] = self.width
        return arch

    def forward(self, x: torch.Tensor):
        pooled = torch.flatten(self.backbone(x), 1)  # flatten, not squeeze: batch 1 stays 2-D
        embedding = self.linear_block(pooled)
        return self.classifier(embedding), embedding, pooled

    def load_torchvision(self, state_dict: "dict | str | os.PathLike") -> None:
        """Initialise the backbone from a torchvision ResNet state dict (ImageNet weights),
        given as a dict or a file (such as resnet50-0676ba61.pth from torchvision's cache).

        The first convolution is widened as the reference does: input channel i takes the
        pretrained RGB filter i % 3. The fc layer is ignored.
        """
        if self.width != WIDTH:
            raise ValueError(f"ImageNet weights are for the ResNet's width {WIDTH}, this "
                             f"{self.network} is {self.width} wide")
        if not isinstance(state_dict, dict):
            state_dict = torch.load(state_dict, map_location="cpu", weights_only=True)
        mapped = OrderedDict()
        for key, value in state_dict.items():
            head, _, rest = key.partition(".")
            if head == "fc":
                continue
            index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6,
                     "layer4": 7}.get(head)
            if index is None:
                raise ValueError(f"unexpected key {key!r} in a torchvision ResNet state dict")
            if key == "conv1.weight" and value.shape[1] != self.input_channels:
                value = value[:, [i % value.shape[1] for i in range(self.input_channels)]]
            mapped[f"{index}.{rest}"] = value
        missing, unexpected = self.backbone.load_state_dict(mapped, strict=False)
        if missing or unexpected:
            raise ValueError(f"the state dict is not a torchvision {self.network}: "
                             f"missing {missing[:3]}, unexpected {unexpected[:3]}")
