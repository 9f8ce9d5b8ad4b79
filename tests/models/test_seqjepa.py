"""seq-JEPA: the architecture and defaults of the authors' code (hafezgh/seq-jepa), one training step, the EMA
target, what the aggregator sees, on synthetic batches of `SequenceLoader`'s shape."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orbitset.errors import OrbitsetError
from orbitset.models.backbones import ResNet18, SmallCNN, build_backbone
from orbitset.models.methods import build_method, method_parameters
from orbitset.models.protocols import apply_protocol
from orbitset.models.seqjepa import SEQUENCE_METHODS, SeqJEPA, ema_decay_at
from orbitset.models.train import SEQUENCE_DEFAULTS, SequenceModel, TrainConfig

NAMES = ["d_rot_x", "d_rot_y", "d_rot_z", "d_floor_hue", "d_spot_theta", "d_spot_phi", "d_spot_hue"]


def sequence_batch(n=8, k=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "views": torch.randn(n, k, 3, size, size, generator=g),
        "rel_rotation": F.normalize(torch.randn(n, k - 1, 4, generator=g), dim=-1),
        "rel_latents": torch.rand(n, k - 1, 7, generator=g) - 0.5,
        "label": torch.randint(0, 3, (n,), generator=g),
    }


def seq_jepa(condition="rotation", **params):
    return build_method("seq-jepa", SmallCNN(width=8, out_dim=32), condition, SEQUENCE_METHODS,
                        **{"action_dim": 16, "pred_hidden": 24, **params})


def test_defaults_are_the_authors_3diebench_script():
    # scripts/script_transformed_views.sh: --num-heads 4 --num-enc-layers 3 --act-projdim 128 --pred-hidden 1024
    # --ema-decay 0.996; nn.TransformerEncoderLayer's default dropout 0.1
    assert method_parameters("seq-jepa", SEQUENCE_METHODS) == {
        "action_dim": 128, "num_heads": 4, "num_layers": 3, "pred_hidden": 1024, "ema_decay": 0.996, "dropout": 0.1}
    # --img-size 128 --epochs 1000 --batch-size 512 --lr 0.0004 --warmup 20; training's Adam has weight_decay=0.0
    assert SEQUENCE_DEFAULTS == {"epochs": 1000, "batch_size": 512, "lr": 4e-4, "weight_decay": 0.0, "size": 128,
                                 "warmup_epochs": 20}
    cfg = TrainConfig(method="seq-jepa", data="d", out="o").resolved()
    assert (cfg.views, cfg.condition, cfg.quaternion, cfg.backbone) == (4, "rotation", "raw", "resnet18")  # seq_len 3
    # --initial-lr 1e-5: linear warmup over 20 epochs, then constant (the cosine scheduler is overwritten)
    assert cfg.lr_at(0) == pytest.approx(1e-5) and cfg.lr_at(10) == pytest.approx(1e-5 + (4e-4 - 1e-5) / 2)
    assert cfg.lr_at(20) == cfg.lr_at(999) == 4e-4
    train = apply_protocol("seq-jepa-paper", "train", {"size": None, "views": 4}, set())
    assert (train["size"], train["batch_size"], train["epochs"], train["lr"], train["views"]) == (128, 512, 1000, 4e-4, 4)


def test_architecture_on_resnet18_is_the_originals():
    method = build_method("seq-jepa", build_backbone("resnet18", 128, zero_init_residual=True), None, SEQUENCE_METHODS)
    assert isinstance(method.backbone, ResNet18) and not isinstance(method.backbone.stem[0], nn.Identity)
    assert method.backbone.stem[0].kernel_size == (7, 7)  # 128 px: the ImageNet stem (--cifar-resnet not set)
    assert all(float(block.bn2.weight.detach().abs().sum()) == 0 for stage in method.backbone.stages for block in stage)  # zero_init_residual=True
    assert method.aggregate_dim == 512 + 128
    linear, norm = method.action_proj
    assert (linear.in_features, linear.out_features, linear.bias) == (4, 128, None) and not norm.affine
    layers = method.aggregator.layers
    assert len(layers) == 3 and all(not layer.norm_first for layer in layers)  # post-norm
    assert layers[0].self_attn.num_heads == 4 and layers[0].linear1.out_features == 4 * 640
    assert layers[0].dropout.p == 0.1 and float(method.aggregator.token.abs().sum()) == 0
    assert isinstance(method.aggregator.norm, nn.LayerNorm)
    first, bn, _, last = method.predictor
    assert (first.in_features, first.out_features, first.bias, bn.num_features) == (640 + 128, 1024, None, 1024)
    assert (last.in_features, last.out_features) == (1024, 512) and last.bias is not None
    assert all(not p.requires_grad for p in method.target_encoder.parameters())
    assert build_method("seq-jepa", SmallCNN(), "rotation+color", SEQUENCE_METHODS).action_proj[0].in_features == 6


def test_loss_is_one_minus_cosine_to_the_target_encoders_embedding():
    torch.manual_seed(0)
    method = seq_jepa().eval()
    batch = sequence_batch()
    out = method(batch["views"], batch["rel_rotation"])
    context = method.backbone(batch["views"][:, :3].flatten(0, 1)).reshape(8, 3, -1)
    target = method.target_encoder(batch["views"][:, 3])
    predicted = method.predictor(torch.cat([method.aggregate(context, batch["rel_rotation"]),
                                            method.action_proj(batch["rel_rotation"][:, -1])], dim=-1))
    assert float(out.loss) == pytest.approx(1 - float(F.cosine_similarity(predicted, target).mean()), abs=1e-6)
    assert out.aggregate.shape == (8, 32 + 16) and torch.allclose(out.rep_a, context[:, 0])
    assert torch.allclose(out.rep_b, context[:, 1])
    with pytest.raises(OrbitsetError, match="K >= 2"):
        method(batch["views"], batch["rel_rotation"][:, :2])


@torch.no_grad()
def test_the_aggregate_sees_every_action_but_the_last():
    torch.manual_seed(0)
    method = seq_jepa().eval()
    context, actions = torch.randn(5, 3, 32), F.normalize(torch.randn(5, 3, 4), dim=-1)
    base = method.aggregate(context, actions)
    last, first = actions.clone(), actions.clone()
    last[:, -1] = F.normalize(torch.randn(5, 4), dim=-1)
    first[:, 0] = F.normalize(torch.randn(5, 4), dim=-1)
    assert torch.allclose(method.aggregate(context, last), base, atol=1e-6)
    assert not torch.allclose(method.aggregate(context, first), base, atol=1e-4)


def test_one_step_lowers_the_loss_and_moves_the_target_by_ema():
    torch.manual_seed(0)
    model = SequenceModel(seq_jepa(), 3, "rotation", NAMES).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    batch = sequence_batch()
    before_target = copy.deepcopy(model.method.target_encoder.state_dict())
    loss, terms = model.step(batch)
    optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in model.method.target_encoder.parameters())
    optimizer.step()
    online = {k: v.clone() for k, v in model.method.backbone.state_dict().items()}
    model.after_step(0, 10)
    decay = ema_decay_at(0, 10, 0.996)
    for name, value in model.method.target_encoder.named_parameters():
        expected = decay * before_target[name] + (1 - decay) * online[name]
        assert torch.allclose(value, expected, atol=1e-7), name
    after, _ = model.step(batch)
    assert float(after) < float(loss)
    assert {"loss", "cosine", "probe_top1", "probe_r2"} <= set(terms)


def test_colour_actions_append_hue_deltas_of_every_consecutive_pair():
    model = SequenceModel(seq_jepa("rotation+color"), 3, "rotation+color", NAMES)
    batch = sequence_batch()
    actions = model.pair_condition(batch)
    assert actions.shape == (8, 3, 6) and torch.equal(actions[..., 4:], batch["rel_latents"][..., [3, 6]])


def test_ema_decay_follows_the_originals_cosine():
    assert ema_decay_at(0, 100, 0.996) == pytest.approx(0.996)
    assert ema_decay_at(50, 100, 0.996) == pytest.approx(0.998)
    assert ema_decay_at(100, 100, 0.996) == pytest.approx(1.0)
    with pytest.raises(OrbitsetError, match="ema_decay"):
        SeqJEPA(SmallCNN(), ema_decay=1.5)
    with pytest.raises(OrbitsetError, match="divisible"):
        seq_jepa(num_heads=5)
