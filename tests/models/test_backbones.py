import torch

from orbitset.models.backbones import ResNet18, SmallCNN, build_backbone


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_resnet18_matches_the_standard_parameter_count():
    # torchvision's resnet18 (1000-class fc): 11,689,512 parameters; the trunk alone 11,176,512.
    assert count(ResNet18(num_classes=1000)) == 11_689_512
    assert count(ResNet18()) == 11_176_512


def test_trunk_shapes():
    x = torch.randn(2, 3, 64, 64)
    assert build_backbone("resnet18", 64)(x).shape == (2, 512)
    assert ResNet18()(torch.randn(2, 3, 96, 96)).shape == (2, 512)
    small = SmallCNN(width=8, out_dim=24)
    assert small(x).shape == (2, 24) and small.out_dim == 24
