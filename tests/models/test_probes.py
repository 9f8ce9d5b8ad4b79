"""Probe fitting on frozen features: fresh or fixed draws per epoch, whole objects held out for early stopping."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orbitset.errors import OrbitsetError
from orbitset.models.evaluate import (EvalOptions, draw_pairs, holdout_mask, scaled_identity_beta, train_probe)
from orbitset.models.protocols import PROTOCOLS, apply_protocol


def test_holdout_mask_holds_out_whole_objects():
    keys = [f"obj{i % 20}" for i in range(200)]  # 20 objects, 10 rows each, interleaved
    mask = holdout_mask(keys, 0.25, seed=0)
    held = {k for k, m in zip(keys, mask.tolist()) if m}
    assert len(held) == 5
    assert all(m == (k in held) for k, m in zip(keys, mask.tolist()))  # every row of a held-out object, no other
    assert torch.equal(mask, holdout_mask(keys, 0.25, seed=0))
    assert not torch.equal(mask, holdout_mask(keys, 0.25, seed=1))
    with pytest.raises(OrbitsetError, match="holdout_fraction"):
        holdout_mask(["a", "b"], 0.1, seed=0)


def test_draw_pairs_gives_distinct_views_and_fresh_draws_per_seed():
    obj, a, b = draw_pairs(50, 4, 3, torch.Generator().manual_seed(0))
    assert torch.equal(obj, torch.arange(50).repeat_interleave(3))
    assert bool((a != b).all()) and int(a.max()) <= 3 and int(b.max()) <= 3
    assert len({(x, y) for x, y in zip(a.tolist(), b.tolist())}) == 12  # every ordered pair of 4 views occurs
    again = draw_pairs(50, 4, 3, torch.Generator().manual_seed(1))
    assert not torch.equal(a, again[1])
    with pytest.raises(OrbitsetError, match="at least 2 views"):
        draw_pairs(3, 1, 1, torch.Generator())


def test_probe_sees_the_draw_of_every_epoch():
    seen = []

    def sample(epoch):
        seen.append(epoch)
        g = torch.Generator().manual_seed(epoch)
        x = torch.randn(64, 3, generator=g)
        return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])

    probe, epochs = train_probe(nn.Linear(3, 1), sample, F.mse_loss, EvalOptions(probe_epochs=60, probe_lr=5e-2,
                                                                                 batch_size=16))
    assert seen == list(range(60)) and epochs == 60
    x, y = sample(1000)
    with torch.no_grad():
        assert F.mse_loss(probe(x), y) < 1e-2  # fitted through the standardisation


def test_early_stopping_keeps_the_best_held_out_weights():
    # Pure-noise targets: fitting only overfits, so the best held-out loss comes early and training stops long
    # before the epoch budget; the kept weights beat those of the same fit run to the end.
    torch.manual_seed(0)
    x, y = torch.randn(400, 16), torch.randn(400, 1)
    keys = [f"obj{i // 4}" for i in range(400)]
    held = holdout_mask(keys, 0.25, 0)
    opts = EvalOptions(probe_epochs=100, probe_lr=1e-2, batch_size=32, patience=3)

    def mlp():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 1))

    fixed = lambda epoch: (x[~held], y[~held])  # noqa: E731
    probe, epochs = train_probe(mlp(), fixed, F.mse_loss, opts, (x[held], y[held]))
    assert epochs < 20
    to_the_end, all_epochs = train_probe(mlp(), fixed, F.mse_loss, opts)
    assert all_epochs == 100
    with torch.no_grad():
        assert F.mse_loss(probe(x[held]), y[held]) < F.mse_loss(to_the_end(x[held]), y[held])


def test_scaled_identity_beta_is_the_least_squares_scale():
    torch.manual_seed(0)
    e_a, w = torch.randn(100, 8), torch.rand(100)
    assert scaled_identity_beta(e_a, 1.7 * w[:, None] * e_a, w) == pytest.approx(1.7, rel=1e-5)
    noisy = 1.7 * w[:, None] * e_a + 0.1 * torch.randn(100, 8)
    beta = scaled_identity_beta(e_a, noisy, w)
    errors = [float(((b * w[:, None] * e_a - noisy) ** 2).sum()) for b in (beta - 0.01, beta, beta + 0.01)]
    assert errors[1] < min(errors[0], errors[2])


def test_paper_protocol_fixes_the_published_settings():
    train = apply_protocol("3diebench-paper", "train", {"size": None, "epochs": None, "backbone": "resnet18"}, set())
    assert (train["backbone"], train["size"], train["batch_size"], train["epochs"]) == ("resnet18", 256, 1024, 2000)
    assert train["quaternion"] == "raw" and train["lr"] == 1e-3 and train["weight_decay"] == 1e-6
    evaluation = PROTOCOLS["3diebench-paper"]["eval"]
    assert (evaluation["probe_epochs"], evaluation["batch_size"], evaluation["pair_sampling"]) == (300, 256, "fresh")
    assert apply_protocol("3diebench-paper", "train", {"size": 256}, {"size"})["size"] == 256  # agreeing is fine
    with pytest.raises(OrbitsetError, match="fixes size=256"):
        apply_protocol("3diebench-paper", "train", {"size": 64}, {"size"})
    assert apply_protocol(None, "eval", {"probe_epochs": 5}, {"probe_epochs"}) == {"probe_epochs": 5}
