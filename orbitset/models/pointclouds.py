"""Point-cloud classifiers: PointNet (no equivariance), VN-PointNet (Vector Neurons), frame-averaged PointNet.

Inputs are (B, P, 3) points as rows, in orbitset's world frame (right-handed, Z up). Every model returns class
logits from ``forward`` and an invariant (for VN and FA) global descriptor from ``features``.

Vector-neuron features are (B, C, 3, P...): C channels of 3-vectors, rotated on dimension 2 (see
`orbitset.models.equivariance.act_vectors`). VN layers commute with rotations (SO(3)); the invariant head turns
them into rotation-invariant scalars.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from orbitset.errors import OrbitsetError

EPS = 1e-6


def _mlp_head(in_dim: int, dims: Sequence[int], num_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in dims:
        layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        in_dim = width
    layers.append(nn.Linear(in_dim, num_classes))
    return nn.Sequential(*layers)


class PointNet(nn.Module):
    """PointNet (Qi et al. 2017) without the input/feature transform nets: a shared per-point MLP
    (3 -> 64 -> 64 -> 64 -> 128 -> 1024, Conv1d-BN-ReLU), max pool, and a 512 -> 256 head with dropout 0.3."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (64, 64, 64, 128, 1024),
                 head: Sequence[int] = (512, 256), dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [nn.Conv1d(channels, width, 1, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            channels = width
        self.shared = nn.Sequential(*layers)
        self.out_dim = channels
        self.head = _mlp_head(channels, head, num_classes, dropout)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        return self.shared(points.transpose(1, 2)).amax(dim=2)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(points))


# --- Vector Neurons (Deng et al. 2021) --------------------------------------------------------------------------


class VNLinear(nn.Module):
    """Channel mixing of vector features with a C_out x C_in matrix (no bias: a bias would break equivariance)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels) / in_channels**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oc,bc...->bo...", self.weight, x)


class VNBatchNorm(nn.Module):
    """Batch norm of the vector norms; directions are kept (v -> v / |v| * BN(|v|))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.norm(dim=2) + EPS  # (B, C, ...)
        shape = norm.shape
        normalised = self.bn(norm.reshape(shape[0], shape[1], -1)).reshape(shape)
        return x / norm.unsqueeze(2) * normalised.unsqueeze(2)


class VNLeakyReLU(nn.Module):
    """Vector-neuron leaky ReLU: a learned direction k = U x per channel; where <q, k> < 0 the component of q along k
    is removed. Output = slope * q + (1 - slope) * that."""

    def __init__(self, channels: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.direction = VNLinear(channels, channels)
        self.negative_slope = negative_slope

    def forward(self, q: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        k = self.direction(q if x is None else x)
        dot = (q * k).sum(dim=2, keepdim=True)
        k_norm_sq = (k * k).sum(dim=2, keepdim=True)
        rectified = torch.where(dot >= 0, q, q - dot / (k_norm_sq + EPS) * k)
        return self.negative_slope * q + (1 - self.negative_slope) * rectified


class VNLinearLeakyReLU(nn.Module):
    """VNLinear -> VNBatchNorm -> VNLeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.linear = VNLinear(in_channels, out_channels)
        self.bn = VNBatchNorm(out_channels)
        self.relu = VNLeakyReLU(out_channels, negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.linear(x)))


class VNMaxPool(nn.Module):
    """Per channel, keep the vector (over the last dimension) with the largest projection on a learned direction."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.direction = VNLinear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dot = (x * self.direction(x)).sum(dim=2)  # (B, C, P)
        index = dot.argmax(dim=-1)  # (B, C)
        return torch.gather(x, -1, index[:, :, None, None].expand(-1, -1, 3, 1)).squeeze(-1)


class VNInvariant(nn.Module):
    """Invariant head: an equivariant 3-vector frame T = VN-MLP(x) (B, 3, 3) and the invariants <x_c, T_k>."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.frame = nn.Sequential(VNLinearLeakyReLU(channels, max(channels // 2, 3)), VNLinear(max(channels // 2, 3), 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 3) -> (B, C, 3) rotation-invariant coordinates of each vector in the learned frame."""
        return torch.einsum("bcd,bkd->bck", x, self.frame(x))


def knn_edge_features(points: torch.Tensor, k: int) -> torch.Tensor:
    """(B, P, 3) -> (B, 3, 3, P, k) vector features per edge: x_j - x_i, x_i, x_j x x_i (cross product)."""
    distances = torch.cdist(points.double(), points.double())  # float64: rotations must not reorder near-ties
    index = distances.topk(k, dim=-1, largest=False).indices  # (B, P, k)
    neighbours = torch.gather(points.unsqueeze(1).expand(-1, points.shape[1], -1, -1), 2,
                              index.unsqueeze(-1).expand(-1, -1, -1, 3))  # (B, P, k, 3)
    centre = points.unsqueeze(2).expand_as(neighbours)
    edges = torch.stack([neighbours - centre, centre, torch.cross(neighbours, centre, dim=-1)], dim=1)
    return edges.permute(0, 1, 4, 2, 3)  # (B, 3 channels, 3, P, k)


class VNPointNet(nn.Module):
    """VN-PointNet: k-NN edge features -> VN layers (widths of PointNet divided by 3) -> VN pooling over points ->
    invariant head -> MLP classifier. ``k=0`` uses the centred points alone as the input channel."""

    def __init__(self, num_classes: int, widths: Sequence[int] = (21, 21, 42, 341), k: int = 20,
                 pooling: str = "mean", head: Sequence[int] = (512, 256), dropout: float = 0.3) -> None:
        super().__init__()
        if pooling not in ("mean", "max"):
            raise OrbitsetError(f"VN pooling must be 'mean' or 'max', not {pooling!r}")
        self.k = k
        self.input = VNLinearLeakyReLU(3 if k else 1, widths[0])
        self.layers = nn.Sequential(*[VNLinearLeakyReLU(a, b) for a, b in zip(widths[:-2], widths[1:-1])])
        self.last = nn.Sequential(VNLinear(widths[-2], widths[-1]), VNBatchNorm(widths[-1]))
        self.pool = VNMaxPool(widths[-1]) if pooling == "max" else None
        self.invariant = VNInvariant(widths[-1])
        self.out_dim = 3 * widths[-1]
        self.head = _mlp_head(self.out_dim, head, num_classes, dropout)

    def equivariant_features(self, points: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) -> (B, C, 3) pooled rotation-equivariant vector features."""
        points = points - points.mean(dim=1, keepdim=True)
        if self.k:
            x = self.input(knn_edge_features(points, min(self.k, points.shape[1]))).mean(dim=-1)
        else:
            x = self.input(points.transpose(1, 2).unsqueeze(1))
        x = self.last(self.layers(x))
        return self.pool(x) if self.pool is not None else x.mean(dim=-1)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        return self.invariant(self.equivariant_features(points)).flatten(1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(points))


# --- Frame averaging (Puny et al. 2022) --------------------------------------------------------------------------


def pca_frames(points: torch.Tensor, group: str = "so3") -> torch.Tensor:
    """PCA frames of (B, P, 3) points: (B, F, 3, 3) with F = 4 (SO(3): sign choices with det +1) or 8 (O(3)).

    Frame columns are the covariance eigenvectors in increasing eigenvalue order, each with a sign choice;
    computed in float64 for stability. For a rotated cloud R x the set of frames is {R F}.
    """
    centred = (points - points.mean(dim=1, keepdim=True)).double()
    covariance = centred.transpose(1, 2) @ centred / points.shape[1]
    _, vectors = torch.linalg.eigh(covariance)  # (B, 3, 3), columns
    signs = torch.tensor([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], dtype=torch.float64,
                         device=points.device)  # (8, 3)
    frames = vectors.unsqueeze(1) * signs[None, :, None, :]  # (B, 8, 3, 3)
    if group == "o3":
        return frames
    if group != "so3":
        raise OrbitsetError(f"frame-averaging group must be 'so3' or 'o3', not {group!r}")
    keep = torch.linalg.det(frames) > 0  # exactly 4 per cloud
    return frames[keep].reshape(points.shape[0], 4, 3, 3)


class FrameAveragedPointNet(nn.Module):
    """A PointNet made exactly invariant by averaging its global feature over the PCA frames of the input:
    features(x) = mean over frames F of PointNet.features((x - mean x) F); the classifier head reads that average."""

    def __init__(self, num_classes: int, group: str = "so3", **pointnet) -> None:
        super().__init__()
        self.group = group
        self.backbone = PointNet(num_classes, **pointnet)
        self.out_dim = self.backbone.out_dim

    def features(self, points: torch.Tensor) -> torch.Tensor:
        frames = pca_frames(points, self.group)  # (B, F, 3, 3)
        centred = (points - points.mean(dim=1, keepdim=True)).double()
        canonical = torch.einsum("bpi,bfij->bfpj", centred, frames).to(points.dtype)
        b, f, p, _ = canonical.shape
        return self.backbone.features(canonical.reshape(b * f, p, 3)).reshape(b, f, -1).mean(dim=1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.backbone.head(self.features(points))


POINT_MODELS = {"pointnet": PointNet, "vn-pointnet": VNPointNet, "fa-pointnet": FrameAveragedPointNet}


def build_point_model(name: str, num_classes: int, **params) -> nn.Module:
    """A point-cloud classifier by name with keyword overrides of its defaults."""
    if name not in POINT_MODELS:
        raise OrbitsetError(f"unknown point-cloud model {name!r}; choose one of {', '.join(POINT_MODELS)}")
    try:
        return POINT_MODELS[name](num_classes, **params)
    except TypeError as exc:
        raise OrbitsetError(f"bad parameters for {name}: {exc}") from exc
