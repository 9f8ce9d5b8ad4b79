"""Image trunks: ResNet-18 (the standard architecture, written here without torchvision) and a small CNN for CPU runs.

Every trunk maps (N, 3, H, W) float images to an (N, D) representation and exposes ``out_dim`` = D.
"""

from __future__ import annotations

import torch
from torch import nn

from orbitset.errors import OrbitsetError

BACKBONES = ("resnet18", "small")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.downsample(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016): 4 stages of 2 basic blocks (64, 128, 256, 512 channels), global average pool.

    ``small_stem=True`` replaces the 7x7/2 convolution and max pool by one 3x3/1 convolution (CIFAR-style), for
    images of 64 px or less. ``num_classes`` adds the usual fully connected classifier (1000 for ImageNet); without it
    the output is the 512-d pooled representation. ``zero_init_residual=True`` starts the last batch norm of every
    block at zero weight, so that each block begins as the identity (torchvision's option, used by seq-JEPA).
    """

    def __init__(self, small_stem: bool = False, num_classes: int | None = None, zero_init_residual: bool = False) -> None:
        super().__init__()
        if small_stem:
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        stages, channels = [], 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(channels, width, stride), BasicBlock(width, width)))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(512, num_classes) if num_classes else nn.Identity()
        self.out_dim = num_classes or 512
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if zero_init_residual and isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x)).mean(dim=(2, 3))
        return self.fc(features)


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU stages (stride 2 after the first), global average pool: a trunk that trains on a CPU."""

    def __init__(self, width: int = 16, out_dim: int = 128) -> None:
        super().__init__()
        layers, channels = [], 3
        for index, multiplier in enumerate((1, 2, 4, 4)):
            layers += [
                nn.Conv2d(channels, width * multiplier, 3, 1 if index == 0 else 2, 1, bias=False),
                nn.BatchNorm2d(width * multiplier),
                nn.ReLU(inplace=True),
            ]
            channels = width * multiplier
        layers += [nn.Conv2d(channels, out_dim, 3, 1, 1, bias=False), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def build_backbone(name: str, image_size: int = 256, zero_init_residual: bool = False) -> nn.Module:
    """A trunk by name ("resnet18" or "small"); ResNet-18 gets the CIFAR-style stem for images of 64 px or less, and
    `zero_init_residual` (see `ResNet18`; the small CNN has no residual blocks)."""
    if name == "resnet18":
        return ResNet18(small_stem=image_size <= 64, zero_init_residual=zero_init_residual)
    if name == "small":
        return SmallCNN()
    raise OrbitsetError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
