import math

import pytest
import torch

from orbitset.models import losses


TARGET = [[1.0, 10.0], [3.0, 14.0], [5.0, 12.0]]
PREDICTION = [[2.0, 11.0], [3.0, 12.0], [4.0, 13.0]]


def test_r2_global_mean_by_hand():
    target, prediction = torch.tensor(TARGET), torch.tensor(PREDICTION)
    # residuals 1,1,0,4,1,1 -> SS_res 8; the global mean of all six targets is 45/6 = 7.5
    ss_tot = sum((v - 7.5) ** 2 for v in (1, 10, 3, 14, 5, 12))
    assert losses.r2_global_mean(prediction, target) == pytest.approx(1 - 8 / ss_tot)


def test_r2_per_component_by_hand():
    target, prediction = torch.tensor(TARGET), torch.tensor(PREDICTION)
    # column 0: mean 3, SS_tot 8, SS_res 1+0+1 = 2 -> 0.75; column 1: mean 12, SS_tot 8, SS_res 1+4+1 = 6 -> 0.25
    assert losses.r2_per_component(prediction, target) == pytest.approx((0.75 + 0.25) / 2)
    assert losses.r2_both(prediction, target) == {"r2_global_mean": losses.r2_global_mean(prediction, target),
                                                  "r2_per_component": pytest.approx(0.5)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_conventions_match_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(seed)
    # components on different scales, as a quaternion beside hue deltas: the two conventions then differ
    target = torch.randn(40, 6, generator=g) * torch.tensor([1.0, 0.5, 0.2, 3.0, 0.05, 0.1])
    prediction = target + 0.3 * torch.randn(40, 6, generator=g)
    expected = metrics.r2_score(target.numpy(), prediction.numpy())
    assert losses.r2_per_component(prediction, target) == pytest.approx(expected, abs=1e-6)
    flat = metrics.r2_score(target.flatten().numpy(), prediction.flatten().numpy())  # one mean over every entry
    assert losses.r2_global_mean(prediction, target) == pytest.approx(flat, abs=1e-6)
    assert abs(losses.r2_global_mean(prediction, target) - expected) > 0.05


def test_r2_per_component_constant_column_as_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    target = torch.tensor([[1.0, 2.0], [2.0, 2.0], [4.0, 2.0]])
    for prediction in (torch.tensor([[1.5, 2.0], [2.0, 2.0], [3.5, 2.0]]), torch.tensor([[1.5, 2.5], [2.0, 2.0], [3.5, 2.0]])):
        assert losses.r2_per_component(prediction, target) == pytest.approx(
            metrics.r2_score(target.numpy(), prediction.numpy()))


def test_r2_perfect_and_mean_predictions():
    target = torch.randn(50, 4)
    for r2 in (losses.r2_global_mean, losses.r2_per_component):
        assert r2(target, target) == pytest.approx(1.0)
    assert losses.r2_global_mean(torch.full_like(target, float(target.mean())), target) == pytest.approx(0.0, abs=1e-12)
    assert losses.r2_per_component(target.mean(0).expand_as(target), target) == pytest.approx(0.0, abs=1e-12)


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
