"""Probe fitting on frozen features: whole training objects held out for early stopping, best weights kept."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orbitset.errors import OrbitsetError
from orbitset.models.evaluate import EvalOptions, holdout_mask, train_probe


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


def test_early_stopping_keeps_the_best_held_out_weights():
    # Pure-noise targets: fitting only overfits, so the best held-out loss comes early and training stops long
    # before the epoch budget; the kept weights beat those of the same fit run to the end.
    torch.manual_seed(0)
    x, y = torch.randn(400, 16), torch.randn(400, 1)
    keys = [f"obj{i // 4}" for i in range(400)]
    opts = EvalOptions(probe_epochs=100, probe_lr=1e-2, batch_size=32, holdout_fraction=0.25, patience=3)
    calls = []

    def counting_mse(prediction, target):
        calls.append(1)
        return F.mse_loss(prediction, target)

    def mlp():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 1))

    probe = train_probe(mlp(), x, y, counting_mse, opts, keys)
    held = holdout_mask(keys, 0.25, opts.seed)
    steps_per_epoch = -(-int((~held).sum()) // 32)
    assert len(calls) < 20 * (steps_per_epoch + 1)  # stopped within 20 of the 100 epochs
    to_the_end = train_probe(mlp(), x[~held], y[~held], F.mse_loss, EvalOptions(probe_epochs=100, probe_lr=1e-2,
                                                                                  batch_size=32))
    with torch.no_grad():
        assert F.mse_loss(probe(x[held]), y[held]) < F.mse_loss(to_the_end(x[held]), y[held])
