"""Loss terms of the reference methods (VICReg variance/covariance, InfoNCE) and the R^2 score of the probes.

Embeddings are (N, D) tensors; every loss is a scalar averaged over the batch.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def _float32(fn):
    """Compute a loss in float32 outside autocast (batch statistics are too coarse in bfloat16)."""

    @functools.wraps(fn)
    def wrapper(*tensors, **kwargs):
        with torch.autocast(tensors[0].device.type, enabled=False):
            return fn(*(t.float() if isinstance(t, torch.Tensor) else t for t in tensors), **kwargs)

    return wrapper


@_float32
def variance_hinge(z: torch.Tensor, target: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance term: mean over dimensions of relu(target - std), std over the batch (with eps inside sqrt)."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(target - std).mean()


@_float32
def covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term: sum of squared off-diagonal covariances divided by the dimension."""
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / max(n - 1, 1)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    return off_diagonal.pow(2).sum() / d


@_float32
def vicreg_terms(z_a: torch.Tensor, z_b: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three VICReg terms (unweighted): invariance MSE, variance (mean of both views), covariance (sum of both)."""
    return {
        "inv": F.mse_loss(z_a, z_b),
        "var": (variance_hinge(z_a) + variance_hinge(z_b)) / 2,
        "cov": covariance_penalty(z_a) + covariance_penalty(z_b),
    }


@_float32
def info_nce(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric NT-Xent (SimCLR): each of the 2N embeddings must pick its partner among the 2N - 1 others."""
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = z @ z.T / temperature
    n = z_a.shape[0]
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def r2_score(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """R^2 = 1 - SS_res / SS_tot with ONE global mean over all targets and components (3DIEBench's definition).

    Not sklearn's per-output average: SS_tot = sum((target - target.mean())^2) over every entry.
    """
    prediction, target = prediction.double(), target.double()
    ss_res = (target - prediction).pow(2).sum()
    ss_tot = (target - target.mean()).pow(2).sum()
    return float(1.0 - ss_res / ss_tot.clamp_min(1e-12))
