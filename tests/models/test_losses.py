import math

import pytest
import torch

from orbitset.models import losses


def test_r2_uses_one_global_mean():
    target = torch.tensor([[1.0, 10.0], [3.0, 14.0], [5.0, 12.0]])
    prediction = torch.tensor([[2.0, 11.0], [3.0, 12.0], [4.0, 13.0]])
    # by hand: residuals 1,1,0,4,1,1 -> SS_res 8; global mean of all six targets = 45/6 = 7.5
    ss_tot = sum((v - 7.5) ** 2 for v in (1, 10, 3, 14, 5, 12))
    assert losses.r2_score(prediction, target) == pytest.approx(1 - 8 / ss_tot)
    # sklearn's per-output average would differ: (1 - 2/8) and (1 - 6/8) -> 0.5
    assert losses.r2_score(prediction, target) != pytest.approx(0.5)


def test_r2_perfect_and_mean_predictions():
    target = torch.randn(50, 4)
    assert losses.r2_score(target, target) == pytest.approx(1.0)
    assert losses.r2_score(torch.full_like(target, float(target.mean())), target) == pytest.approx(0.0, abs=1e-12)


def test_variance_hinge_and_covariance():
    torch.manual_seed(0)
    wide = torch.randn(4096, 8) * 3
    assert losses.variance_hinge(wide) == 0
    collapsed = torch.zeros(16, 8)
    assert losses.variance_hinge(collapsed) == pytest.approx(1 - math.sqrt(1e-4))
    independent = torch.randn(20000, 4)
    assert losses.covariance_penalty(independent) < 1e-3
    correlated = independent[:, :1].repeat(1, 4)
    # every off-diagonal covariance is ~1: 12 entries squared / 4 dims
    assert losses.covariance_penalty(correlated) == pytest.approx(3.0, rel=0.05)


def test_info_nce_prefers_matching_pairs():
    torch.manual_seed(0)
    z = torch.randn(32, 16)
    matched = losses.info_nce(z, z + 0.01 * torch.randn_like(z))
    shuffled = losses.info_nce(z, z[torch.randperm(32)])
    assert matched < 0.1 < shuffled
