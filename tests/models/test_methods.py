import pytest
import torch

from orbitset.errors import OrbitsetError
from orbitset.models.backbones import SmallCNN
from orbitset.models.methods import (METHODS, HyperPredictor, build_method, hue_delta_columns, method_parameters,
                                     pair_condition)
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


@pytest.mark.parametrize("name", list(METHODS))
def test_one_step_lowers_the_loss(name):
    torch.manual_seed(0)
    model = ImageModel(build_method(name, SmallCNN(width=8, out_dim=32)), 3, METHODS[name][1], NAMES).train()
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
    method = build_method("sie", SmallCNN(width=8, out_dim=32))
    out = method(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32), torch.randn(4, 4))
    assert out.rep_a.shape == (4, 32) and out.loss.ndim == 0
    assert set(out.terms) == {"inv", "equi", "var", "pred_var", "cov"}
    rep = torch.randn(4, 32)
    assert torch.equal(method.invariant_part(rep), rep[:, :16])
    # default projector = 4x the part width, three layers: 16 -> 64 -> 64 -> 64
    assert method.target_embedding(rep).shape == (4, 64)
    assert method.predictor.weight.shape == (4, 64, 64)


def test_sie_loss_uses_published_coefficients():
    method = build_method("sie", SmallCNN(width=8, out_dim=32))
    assert method.coeffs == {"inv": 10.0, "equi": 4.5, "var": 10.0, "pred_var": 10.0, "cov": 1.0}
    with torch.no_grad():
        out = method(torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32), torch.randn(8, 4))
    assert float(out.loss) == pytest.approx(float(sum(method.coeffs[k] * v for k, v in out.terms.items())), rel=1e-6)


def test_hypernetwork_predictor_is_linear_in_the_condition():
    torch.manual_seed(0)
    predictor = HyperPredictor(4, 12)
    z = torch.randn(5, 12)
    q1, q2 = torch.randn(5, 4), torch.randn(5, 4)
    a, b = 0.7, -1.3
    combined = predictor(z, a * q1 + b * q2)
    assert torch.allclose(combined, a * predictor(z, q1) + b * predictor(z, q2), atol=1e-5)
    # and it is W(q) z with W(q) = sum_i q_i W_i
    expected = torch.einsum("nij,nj->ni", predictor.matrices(q1), z)
    assert torch.allclose(predictor(z, q1), expected, atol=1e-5)
    assert torch.allclose(predictor(z, torch.zeros(5, 4)), torch.zeros(5, 12))


def test_color_condition_appends_hue_deltas():
    batch = fixed_batch(4)
    condition = pair_condition(batch["rel_rotation"], batch["rel_latents"], NAMES, "rotation+color")
    assert condition.shape == (4, 6)
    assert torch.equal(condition[:, 4:], batch["rel_latents"][:, [3, 6]])
    assert hue_delta_columns(["d_rot_x", "d_floor_hue", "d_spot_hue"]) == [1, 2]
    with pytest.raises(OrbitsetError, match="floor_hue"):
        hue_delta_columns(["rot_x"])
    assert build_method("sie-color", SmallCNN(width=8, out_dim=32)).predictor.weight.shape[0] == 6


def test_parameters_are_flags_with_published_defaults():
    assert method_parameters("simclr")["temperature"] == 0.1
    assert method_parameters("sie")["equi_coeff"] == 4.5
    method = build_method("sie", SmallCNN(width=8, out_dim=32), equi_coeff=2.0, projector_dims=[32, 32])
    assert method.coeffs["equi"] == 2.0 and method.predictor.weight.shape == (4, 32, 32)
    with pytest.raises(OrbitsetError, match="no parameter"):
        build_method("vicreg", SmallCNN(), bogus=1)
    with pytest.raises(OrbitsetError, match="unknown method"):
        build_method("byol", SmallCNN())
