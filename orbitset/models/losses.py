"""Loss terms of the reference methods (VICReg variance/covariance, InfoNCE) and the R^2 scores of the probes (both conventions).

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


def r2_global_mean(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """R^2 = 1 - SS_res / SS_tot with ONE global mean over all targets and components: the convention of SIE,
    ContextSSL and EquiCaps (reported as ``r2_global_mean``, and as ``r2``).

    SS_tot = sum((target - target.mean())^2) over every entry of the (N, C) targets."""
    prediction, target = prediction.double(), target.double()
    ss_res = (target - prediction).pow(2).sum()
    ss_tot = (target - target.mean()).pow(2).sum()
    return float(1.0 - ss_res / ss_tot.clamp_min(1e-12))


def r2_per_component(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """The average over the C components of each one's R^2 = 1 - SS_res_c / SS_tot_c (its own mean): seq-JEPA's
    convention, scikit-learn's ``r2_score`` default (``multioutput="uniform_average"``; a constant component scores
    1 when predicted exactly, else 0, as scikit-learn's ``force_finite``). Reported as ``r2_per_component``."""
    prediction, target = prediction.double().reshape(len(target), -1), target.double().reshape(len(target), -1)
    ss_res = (target - prediction).pow(2).sum(dim=0)
    ss_tot = (target - target.mean(dim=0)).pow(2).sum(dim=0)
    constant = ss_tot == 0
    scores = torch.where(constant, (ss_res == 0).double(), 1.0 - ss_res / ss_tot.where(~constant, torch.ones_like(ss_tot)))
    return float(scores.mean())


def r2_both(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Both R^2 conventions, labelled: ``r2_global_mean`` and ``r2_per_component``."""
    return {"r2_global_mean": r2_global_mean(prediction, target), "r2_per_component": r2_per_component(prediction, target)}
