import json

import pytest
import torch

from orbitset import geometry
from orbitset.errors import OrbitsetError
from orbitset.models.backbones import SmallCNN
from orbitset.models.methods import build_method
from orbitset.models.pointclouds import PointNet
from orbitset.models.train import (CHECKPOINT_FILE, METRICS_FILE, ImageModel, PointModel, TrainConfig, _pair_loader, fit,
                                   load_checkpoint, save_checkpoint)
from orbitset.testing import write_synthetic_dataset

NAMES = ["rot_x", "rot_y", "rot_z", "floor_hue", "spot_theta", "spot_phi", "spot_hue"]


def pair_batches(epoch, batches=2, n=8):
    """Deterministic batches for an epoch (as a seeded loader would give)."""
    g = torch.Generator().manual_seed(epoch)
    for _ in range(batches):
        yield {
            "view_a": torch.randn(n, 3, 16, 16, generator=g),
            "view_b": torch.randn(n, 3, 16, 16, generator=g),
            "rel_rotation": torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1),
            "rel_latents": torch.rand(n, 7, generator=g),
            "label": torch.randint(0, 3, (n,), generator=g),
        }


def new_model(seed=0):
    torch.manual_seed(seed)
    model = ImageModel(build_method("sie", SmallCNN(width=4, out_dim=16)), 3, "rotation", NAMES)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def test_resume_continues_from_the_same_state(tmp_path):
    straight, optimizer = new_model()
    fit(straight, optimizer, pair_batches, 3, tmp_path / "straight", progress=False)

    first, optimizer = new_model()
    fit(first, optimizer, pair_batches, 1, tmp_path / "resumed", progress=False)
    assert load_checkpoint(tmp_path / "resumed" / CHECKPOINT_FILE)["epoch"] == 1
    again, optimizer = new_model(seed=123)  # a different init: resume must overwrite it
    history = fit(again, optimizer, pair_batches, 3, tmp_path / "resumed", resume=True, progress=False)
    assert [h["epoch"] for h in history] == [2, 3]
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    lines = [json.loads(line) for line in (tmp_path / "resumed" / METRICS_FILE).read_text().splitlines()]
    summaries = [line for line in lines if "step" not in line]
    assert [line["epoch"] for line in summaries if "batch_norm_recomputed" not in line] == [1, 2, 3]
    assert [line["epoch"] for line in summaries if line.get("batch_norm_recomputed") == 2] == [1, 3]


def test_zero_epochs_saves_the_initial_model(tmp_path):
    model, optimizer = new_model()
    assert fit(model, optimizer, pair_batches, 0, tmp_path, progress=False) == []
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert state["epoch"] == 0
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())


def test_point_model_trains(tmp_path):
    torch.manual_seed(0)
    model = PointModel(PointNet(2, widths=(8, 16), head=(8,)))

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        labels = torch.arange(16) % 2
        scale = torch.where(labels[:, None, None] == 1, torch.tensor([2.0, 1.0, 0.5]), torch.tensor([0.5, 1.0, 2.0]))
        yield {"points": torch.randn(16, 32, 3, generator=g) * scale, "label": labels}

    history = fit(model, torch.optim.Adam(model.parameters(), lr=1e-2), batches, 30, tmp_path, progress=False)
    assert history[-1]["loss"] < history[0]["loss"]


def test_batch_norm_statistics_are_recomputed_with_the_final_weights(tmp_path):
    torch.manual_seed(0)
    model = PointModel(PointNet(2, widths=(8,), head=(4,)))

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        for _ in range(3):
            yield {"points": torch.randn(16, 32, 3, generator=g) * (1 + epoch), "label": torch.arange(16) % 2}

    fit(model, torch.optim.Adam(model.parameters(), lr=0.1), batches, 5, tmp_path, progress=False)
    conv, norm = model.classifier.shared[0], model.classifier.shared[1]
    with torch.no_grad():  # the average of the batch means of one more epoch, through the final weights
        expected = torch.stack([conv(b["points"].transpose(1, 2)).mean(dim=(0, 2)) for b in batches(5)]).mean(0)
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert bool(state["batch_norm_recomputed"]) and state["epoch"] == 5
    assert torch.equal(state["model"]["classifier.shared.1.running_mean"], norm.running_mean)
    # a run stopped after its last epoch but before the recomputation gets it when resumed
    save_checkpoint(tmp_path / CHECKPOINT_FILE, model, torch.optim.Adam(model.parameters()), 5)
    norm.reset_running_stats()
    assert fit(model, torch.optim.Adam(model.parameters()), batches, 5, tmp_path, resume=True, progress=False) == []
    assert bool(load_checkpoint(tmp_path / CHECKPOINT_FILE)["batch_norm_recomputed"])
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(OrbitsetError, match="no checkpoint"):
        load_checkpoint(tmp_path / CHECKPOINT_FILE)


def test_arguments_out_of_range_are_orbitset_errors(tmp_path):
    for bad, match in (({"size": 0}, "size must be at least 8"), ({"batch_size": 1}, "batch-size must be at least 2"),
                       ({"epochs": -1}, "epochs must be at least 0"), ({"lr": 0.0}, "lr must be positive"),
                       ({"quaternion": "signed"}, "quaternion convention")):
        with pytest.raises(OrbitsetError, match=match):
            TrainConfig(method="sie", data=str(tmp_path), out=str(tmp_path), **bad).resolved()


@pytest.mark.parametrize("quaternion", ["raw", "canonical"])
def test_the_condition_reaching_the_model_follows_the_quaternion_convention(tmp_path, quaternion):
    write_synthetic_dataset(tmp_path / "data", classes=2, objects_per_class=8, views=6, size=16, points=8)
    cfg = TrainConfig(method="sie", data=str(tmp_path / "data"), out=str(tmp_path / "run"), batch_size=16, size=16,
                      backbone="small", pairs_per_object=6, quaternion=quaternion).resolved()
    batch = next(iter(_pair_loader(cfg, "train")))
    euler_a, euler_b = batch["latents_a"][:, :3].double(), batch["latents_b"][:, :3].double()
    raw = geometry.relative_quat_3diebench(euler_a, euler_b)
    expected = raw if quaternion == "raw" else geometry.canonical_quat(raw)
    condition = ImageModel(build_method("sie", SmallCNN(width=4, out_dim=16)), 2, "rotation", NAMES).pair_condition(batch)
    assert torch.allclose(condition.double(), expected, atol=1e-6)
    poses = geometry.euler_to_quat(torch.cat([euler_a, euler_b]))
    assert bool((poses[:, 3] > 0).all())  # 3DIEBench's ranges: every pose quaternion has w > 0
