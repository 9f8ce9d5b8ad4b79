import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orbitset import geometry
from orbitset.errors import OrbitsetError
from orbitset.models import losses
from orbitset.models.backbones import SmallCNN
from orbitset.models.conditions import hue_delta_columns, pair_condition
from orbitset.models.methods import METHODS, HyperPredictor, build_method, method_parameters
from orbitset.models.train import ImageModel

NAMES = ["rot_x", "rot_y", "rot_z", "floor_hue", "spot_theta", "spot_phi", "spot_hue"]


def fixed_batch(n=16, size=32):
    g = torch.Generator().manual_seed(0)
    return {
        "view_a": torch.randn(n, 3, size, size, generator=g),
        "view_b": torch.randn(n, 3, size, size, generator=g),
        "rel_rotation": torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1),
        "rel_latents": torch.rand(n, 7, generator=g) - 0.5,
        "label": torch.randint(0, 3, (n,), generator=g),
    }


def trunk():
    return SmallCNN(width=8, out_dim=32)


@pytest.mark.parametrize("name", list(METHODS))
def test_one_step_lowers_the_loss(name):
    torch.manual_seed(0)
    model = ImageModel(build_method(name, trunk()), 3, METHODS[name][1], NAMES).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = fixed_batch()
    before, terms = model.step(batch)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after, _ = model.step(batch)
    assert float(after.detach()) < float(before.detach())
    assert {"loss", "probe_top1", "probe_r2"} <= set(terms)


def test_sie_output_shapes_and_split():
    method = build_method("sie", trunk())
    out = method(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.randn(4, 4))
    assert out.rep_a.shape == (4, 32) and out.loss.ndim == 0
    assert set(out.terms) == {"inv", "equi", "var", "pred_var", "cov"}
    rep = torch.randn(4, 32)
    assert torch.equal(method.invariant_part(rep), rep[:, :16])
    assert torch.equal(method.part(rep, "inv"), rep[:, :16]) and torch.equal(method.part(rep, "equi"), rep[:, 16:])
    assert torch.equal(method.part(rep, "all"), rep)
    # default projector = 4x the part width, three layers: 16 -> 64 -> 64 -> 64
    assert method.target_embedding(rep).shape == (4, 64)
    assert method.predictor.hypernet.weight.shape == (64 * 64, 4)
    with pytest.raises(OrbitsetError, match="does not split"):
        build_method("vicreg", trunk()).part(rep, "equi")


@torch.no_grad()
def test_sie_loss_weights_are_the_ones_the_original_applies():
    # 10 inv, 4.5 equi (0.45 x 10), 10 variance, 5 prediction variance (the original halves its 10), 1 covariance
    method = build_method("sie", trunk())
    assert method.coeffs == {"inv": 10.0, "equi": 4.5, "var": 10.0, "pred_var": 5.0, "cov": 1.0}
    torch.manual_seed(0)
    rep_a, rep_b, q = torch.randn(8, 32), torch.randn(8, 32), F.normalize(torch.randn(8, 4), dim=1)
    loss, terms = method.pair_loss(rep_a, rep_b, q)
    inv_a, inv_b = method.inv_projector(rep_a[:, :16]), method.inv_projector(rep_b[:, :16])
    eq_a, eq_b = method.eq_projector(rep_a[:, 16:]), method.eq_projector(rep_b[:, 16:])
    pred = method.predictor(eq_a, q)
    x, y = torch.cat([inv_a, eq_a], 1), torch.cat([inv_b, eq_b], 1)

    def hinge(z):  # the original: mean(relu(1 - sqrt(var + 1e-4)))
        return F.relu(1 - torch.sqrt(z.var(dim=0) + 1e-4)).mean()

    def cov(z):
        z = z - z.mean(0)
        c = z.T @ z / (len(z) - 1)
        return (c - torch.diag(torch.diag(c))).pow(2).sum() / z.shape[1]

    expected = (10 * F.mse_loss(inv_a, inv_b) + 0.45 * 10 * F.mse_loss(pred, eq_b)
                + 10 * (hinge(x) / 2 + hinge(y) / 2) + 10 * hinge(pred) / 2 + 1 * (cov(x) + cov(y)))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_hypernetwork_is_a_bias_free_linear_with_pytorch_default_init():
    torch.manual_seed(0)
    predictor = HyperPredictor(4, 64)
    assert isinstance(predictor.hypernet, nn.Linear) and predictor.hypernet.bias is None
    assert predictor.hypernet.in_features == 4 and predictor.hypernet.out_features == 64 * 64
    weight = predictor.hypernet.weight.detach()
    bound = 1 / math.sqrt(4)  # kaiming_uniform(a=sqrt(5)) of nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(weight.abs().max()) <= bound and float(weight.abs().max()) > 0.99 * bound
    assert float(weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.02)
    # so predictions start large: ||W(q) z|| / ||z|| ~ sqrt(D / 12) for a unit quaternion
    z, q = torch.randn(512, 64), F.normalize(torch.randn(512, 4), dim=1)
    ratio = float((predictor(z, q).norm(dim=1) / z.norm(dim=1)).mean())
    assert ratio == pytest.approx(math.sqrt(64 / 12), rel=0.15)
    with_bias = HyperPredictor(4, 8, bias=True)
    z, q = torch.randn(5, 8), torch.zeros(5, 4)
    assert torch.allclose(with_bias(z, q), z @ with_bias.hypernet.bias.view(8, 8).T, atol=1e-6)  # W(0) = B
    near_identity = HyperPredictor(4, 8, init="identity")
    assert torch.allclose(near_identity.matrices(torch.tensor([[0.0, 0.0, 0.0, 1.0]]))[0], torch.eye(8), atol=0.2)
    with pytest.raises(OrbitsetError, match="hypernetwork init"):
        HyperPredictor(4, 8, init="zeros")


def test_hypernetwork_predictor_is_linear_in_the_condition():
    torch.manual_seed(0)
    predictor = HyperPredictor(4, 12)
    z = torch.randn(5, 12)
    q1, q2 = torch.randn(5, 4), torch.randn(5, 4)
    a, b = 0.7, -1.3
    combined = predictor(z, a * q1 + b * q2)
    assert torch.allclose(combined, a * predictor(z, q1) + b * predictor(z, q2), atol=1e-4)
    expected = torch.einsum("nij,nj->ni", predictor.matrices(q1), z)  # W(q) z with W(q) = sum_i q_i W_i
    assert torch.allclose(predictor(z, q1), expected, atol=1e-4)
    assert torch.allclose(predictor(z, torch.zeros(5, 4)), torch.zeros(5, 12))


def _fit_quaternion_product(condition: torch.Tensor, q_a: torch.Tensor, q_b: torch.Tensor) -> torch.Tensor:
    """SIE's predictor (dim 4) fitted by least squares to map embedding q_a under `condition` to q_b; returns its
    predictions (the predictor is linear in its weights, so the least-squares fit is the best it can do)."""
    design = torch.einsum("nc,nj->ncj", condition, q_a).reshape(len(q_a), 16)
    solution = torch.linalg.lstsq(design, q_b).solution  # (c, j) x i
    predictor = HyperPredictor(4, 4).double()
    with torch.no_grad():
        predictor.hypernet.weight.copy_(solution.reshape(4, 4, 4).permute(2, 1, 0).reshape(16, 4))
    return predictor(q_a, condition)


def test_raw_quaternion_makes_q_b_exactly_predictable_and_the_canonical_form_does_not():
    # Poses in 3DIEBench's ranges (every pose quaternion has w > 0); embedding = pose quaternion, linear in it.
    g = torch.Generator().manual_seed(0)
    euler_a, euler_b = ((torch.rand(2, 256, 3, generator=g, dtype=torch.float64) * 2 - 1) * math.pi / 2).unbind(0)
    q_a, q_b = geometry.euler_to_quat(euler_a), geometry.euler_to_quat(euler_b)
    raw = geometry.relative_quat_3diebench(euler_a, euler_b)  # what PairLoader(rotation="quat_raw") delivers
    canonical = geometry.matrix_to_quat(geometry.relative_rotation(geometry.euler_to_matrix(euler_a),
                                                                  geometry.euler_to_matrix(euler_b)))
    flipped = raw[:, 3] < 0
    assert 0 < int(flipped.sum()) < 40  # the canonical form differs on a few percent of the pairs
    assert torch.allclose(canonical[~flipped], raw[~flipped], atol=1e-9)
    assert torch.allclose(canonical[flipped], -raw[flipped], atol=1e-9)
    exact = _fit_quaternion_product(raw, q_a, q_b)
    assert float((exact - q_b).abs().max()) < 1e-9
    best = _fit_quaternion_product(canonical, q_a, q_b)
    assert float((best - q_b).norm(dim=1).mean()) > 0.05


def test_vicreg_uses_the_sie_repository_coefficients():
    method = build_method("vicreg", trunk())
    assert method.coeffs == {"inv": 10.0, "var": 10.0, "cov": 1.0}
    assert method_parameters("vicreg") == {"projector_dims": None, "sim_coeff": 10.0, "std_coeff": 10.0,
                                           "cov_coeff": 1.0}


@torch.no_grad()
def test_equimod_defaults_are_the_originals():
    torch.manual_seed(0)
    method = build_method("equimod", trunk(), projector_dims=[16, 16])
    assert isinstance(method.predictor, HyperPredictor) and method.predictor.hypernet.bias is None
    assert method.equi_factor == 0.45 and method.coeffs == {"inv": 10.0, "var": 10.0, "cov": 1.0}
    rep_a, rep_b, q = torch.randn(8, 32), torch.randn(8, 32), F.normalize(torch.randn(8, 4), dim=1)
    loss, _ = method.pair_loss(rep_a, rep_b, q)
    inv = losses.vicreg_terms(method.inv_projector(rep_a), method.inv_projector(rep_b))
    eq_a, eq_b = method.eq_projector(rep_a), method.eq_projector(rep_b)
    on_embeddings = losses.vicreg_terms(eq_a, eq_b)  # variance and covariance of the two equivariant embeddings
    equi = 10 * F.mse_loss(method.predictor(eq_a, q), eq_b) + 10 * on_embeddings["var"] + on_embeddings["cov"]
    expected = 10 * inv["inv"] + 10 * inv["var"] + inv["cov"] + 0.45 * equi
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    mlp = build_method("equimod", trunk(), projector_dims=[16, 16], predictor="mlp", equi_terms="prediction")
    assert not isinstance(mlp.predictor, HyperPredictor)
    with pytest.raises(OrbitsetError, match="EquiMod takes"):
        build_method("equimod", trunk(), predictor="transformer")


def test_augself_head_is_the_originals():
    method = build_method("augself", trunk())
    layers = list(method.head)
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in layers if isinstance(m, nn.Linear)] == [(64, 64), (64, 64), (64, 4)]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in method.head.modules())
    bn = build_method("augself", trunk(), head_dims=[16], head_batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm1d) for m in bn.head.modules())


def test_color_condition_appends_hue_deltas():
    batch = fixed_batch(4)
    condition = pair_condition(batch["rel_rotation"], batch["rel_latents"], NAMES, "rotation+color")
    assert condition.shape == (4, 6)
    assert torch.equal(condition[:, 4:], batch["rel_latents"][:, [3, 6]])
    assert hue_delta_columns(["d_rot_x", "d_floor_hue", "d_spot_hue"]) == [1, 2]
    with pytest.raises(OrbitsetError, match="floor_hue"):
        hue_delta_columns(["rot_x"])
    assert build_method("sie-color", trunk()).predictor.hypernet.in_features == 6


def test_parameters_are_flags_with_published_defaults():
    assert method_parameters("simclr")["temperature"] == 0.1
    assert method_parameters("sie")["equi_coeff"] == 4.5
    method = build_method("sie", trunk(), equi_coeff=2.0, projector_dims=[32, 32], hypernet_bias=True)
    assert method.coeffs["equi"] == 2.0 and method.predictor.hypernet.weight.shape == (32 * 32, 4)
    assert method.predictor.hypernet.bias is not None
    with pytest.raises(OrbitsetError, match="no parameter"):
        build_method("vicreg", SmallCNN(), bogus=1)
    with pytest.raises(OrbitsetError, match="unknown method"):
        build_method("byol", SmallCNN())
