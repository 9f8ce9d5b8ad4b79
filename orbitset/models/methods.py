"""Self-supervised image methods trained on pairs of views: SIE, VICReg, SimCLR, EquiMod, SEN-style, AugSelf-style.

Every method wraps a trunk (``orbitset.models.backbones``) and is called on a pair of image batches plus the
*condition* of the pair: the relative rotation quaternion (x, y, z, w) of view b with respect to view a, optionally
followed by the hue deltas (floor, spot) of b minus a ("rotation+color"). A call returns a `MethodOutput` with the
weighted total loss, its unweighted terms and the trunk representations.

Defaults follow the published configurations (../shared/REFERENCE.md); projector widths default to 4x the input
dimension (1024 for SIE's 256-d parts of a ResNet-18, 2048 for a 512-d representation) so that they scale with the
trunk.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from orbitset.errors import OrbitsetError
from orbitset.models import losses

#: Width of each condition kind: the quaternion, then the two hue deltas.
CONDITIONS = {"rotation": 4, "rotation+color": 6}
HUE_FACTORS = ("floor_hue", "spot_hue")


@dataclass
class MethodOutput:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    rep_a: torch.Tensor | None = None
    rep_b: torch.Tensor | None = None


def projector(in_dim: int, dims: Sequence[int]) -> nn.Sequential:
    """(Linear-BN-ReLU) for every hidden width, then a Linear without bias to the last width."""
    layers: list[nn.Module] = []
    for width in dims[:-1]:
        layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        in_dim = width
    layers.append(nn.Linear(in_dim, dims[-1], bias=False))
    return nn.Sequential(*layers)


def _dims(dims: Sequence[int] | None, in_dim: int) -> list[int]:
    return list(dims) if dims else [4 * in_dim] * 3


class HyperPredictor(nn.Module):
    """SIE's hypernetwork predictor: W(c) = sum_i c_i W_i (a bias-free Linear from the condition to a D x D matrix).

    ``forward(z, c)`` returns W(c) z per row; it is linear in the condition c by construction. Initialisation: W_i
    drawn with standard deviation `init_std`/sqrt(D), plus the identity on the quaternion's w component (index 3,
    `identity_index`), so that the untrained predictor is close to the identity for small rotations (a choice of
    orbitset; the reference gives no initialisation). `identity_index=None` gives a plain random init.
    """

    def __init__(self, condition_dim: int, dim: int, init_std: float = 0.1, identity_index: int | None = 3) -> None:
        super().__init__()
        weight = torch.randn(condition_dim, dim, dim) * init_std / dim**0.5
        if identity_index is not None and identity_index < condition_dim:
            weight[identity_index] += torch.eye(dim)
        self.weight = nn.Parameter(weight)

    def matrices(self, condition: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, D, D) the matrices W(c)."""
        return torch.einsum("nc,cij->nij", condition, self.weight)

    def forward(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        per_basis = torch.einsum("cij,nj->nci", self.weight, z)
        return torch.einsum("nc,nci->ni", condition.to(per_basis.dtype), per_basis)


class MLPPredictor(nn.Module):
    """A predictor conditioned by concatenation: MLP([z, embed(c)]) (EquiMod's form)."""

    def __init__(self, condition_dim: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.embed = nn.Linear(condition_dim, dim)
        self.net = projector(2 * dim, [hidden, dim])

    def forward(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, self.embed(condition.to(z.dtype))], dim=1))


class Method(nn.Module):
    """Base class: a trunk, a loss on a pair of views, and the embedding spaces used by the evaluations."""

    #: Whether the method predicts view b's embedding from view a's (used by retrieval, PRE, equivariance).
    has_predictor = False

    def __init__(self, backbone: nn.Module, condition_dim: int = 4) -> None:
        super().__init__()
        self.backbone = backbone
        self.rep_dim = backbone.out_dim
        self.condition_dim = condition_dim

    def representation(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor, condition: torch.Tensor) -> MethodOutput:
        rep_a, rep_b = self.representation(view_a), self.representation(view_b)
        loss, terms = self.pair_loss(rep_a, rep_b, condition)
        return MethodOutput(loss, terms, rep_a, rep_b)

    def pair_loss(self, rep_a, rep_b, condition) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def invariant_part(self, rep: torch.Tensor) -> torch.Tensor:
        """The part of the representation the method makes invariant (all of it unless the method splits it)."""
        return rep

    def target_embedding(self, rep: torch.Tensor) -> torch.Tensor:
        """The embedding in which a prediction from another view is compared (retrieval, PRE)."""
        return rep

    def predict(self, embedding_a: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predicted embedding of view b from view a's; the identity for invariant methods."""
        return embedding_a


class VICReg(Method):
    """VICReg (Bardes et al. 2022): 25 x invariance MSE + 25 x variance hinge + 1 x covariance on projections."""

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0) -> None:
        super().__init__(backbone, condition_dim)
        self.projector = projector(self.rep_dim, _dims(projector_dims, self.rep_dim))
        self.coeffs = {"inv": sim_coeff, "var": std_coeff, "cov": cov_coeff}

    def pair_loss(self, rep_a, rep_b, condition):
        terms = losses.vicreg_terms(self.projector(rep_a), self.projector(rep_b))
        return sum(self.coeffs[k] * v for k, v in terms.items()), terms

    def target_embedding(self, rep):
        return self.projector(rep)


class SimCLR(Method):
    """SimCLR (Chen et al. 2020): symmetric InfoNCE between the projections of the two views, temperature 0.1."""

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 temperature: float = 0.1) -> None:
        super().__init__(backbone, condition_dim)
        self.projector = projector(self.rep_dim, _dims(projector_dims, self.rep_dim))
        self.temperature = temperature

    def pair_loss(self, rep_a, rep_b, condition):
        nce = losses.info_nce(self.projector(rep_a), self.projector(rep_b), self.temperature)
        return nce, {"nce": nce}

    def target_embedding(self, rep):
        return self.projector(rep)


class AugSelf(SimCLR):
    """SimCLR plus AugSelf-style transformation prediction: an MLP on [rep_a, rep_b] regresses the condition (MSE)."""

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 temperature: float = 0.1, head_dims: Sequence[int] = (512,), aug_coeff: float = 1.0) -> None:
        super().__init__(backbone, condition_dim, projector_dims=projector_dims, temperature=temperature)
        self.head = projector(2 * self.rep_dim, [*head_dims, condition_dim])
        self.aug_coeff = aug_coeff

    def pair_loss(self, rep_a, rep_b, condition):
        nce, terms = super().pair_loss(rep_a, rep_b, condition)
        predicted = self.head(torch.cat([rep_a, rep_b], dim=1))
        terms["aug"] = F.mse_loss(predicted, condition.to(predicted.dtype))
        return nce + self.aug_coeff * terms["aug"], terms


class SIE(Method):
    """SIE (Garrido et al. 2023): representation split into an invariant and an equivariant part.

    The first ``inv_fraction`` of the trunk's dimensions are invariant, the rest equivariant; each part has its own
    projector. The equivariant embedding of view a is mapped by the hypernetwork predictor W(condition) to predict
    view b's. Loss = inv_coeff x MSE(inv_a, inv_b) + equi_coeff x MSE(W eq_a, eq_b)
    + var_coeff x variance hinge of the joined [inv, eq] embeddings (both views)
    + pred_var_coeff x variance hinge of the prediction + cov_coeff x covariance of the joined embeddings.
    """

    has_predictor = True

    def __init__(self, backbone, condition_dim=4, *, inv_fraction: float = 0.5,
                 projector_dims: Sequence[int] | None = None, inv_coeff: float = 10.0, equi_coeff: float = 4.5,
                 var_coeff: float = 10.0, pred_var_coeff: float = 10.0, cov_coeff: float = 1.0) -> None:
        super().__init__(backbone, condition_dim)
        self.split = int(round(self.rep_dim * inv_fraction))
        if not 0 < self.split < self.rep_dim:
            raise OrbitsetError(f"inv_fraction={inv_fraction} leaves an empty part of the {self.rep_dim}-d representation")
        self.inv_projector = projector(self.split, _dims(projector_dims, self.split))
        eq_dim = self.rep_dim - self.split
        self.eq_projector = projector(eq_dim, _dims(projector_dims, eq_dim))
        self.predictor = HyperPredictor(condition_dim, _dims(projector_dims, eq_dim)[-1])
        self.coeffs = {"inv": inv_coeff, "equi": equi_coeff, "var": var_coeff, "pred_var": pred_var_coeff,
                       "cov": cov_coeff}

    def pair_loss(self, rep_a, rep_b, condition):
        inv_a, inv_b = self.inv_projector(rep_a[:, : self.split]), self.inv_projector(rep_b[:, : self.split])
        eq_a, eq_b = self.target_embedding(rep_a), self.target_embedding(rep_b)
        predicted = self.predictor(eq_a, condition)
        joined_a, joined_b = torch.cat([inv_a, eq_a], 1), torch.cat([inv_b, eq_b], 1)
        terms = {
            "inv": F.mse_loss(inv_a, inv_b),
            "equi": F.mse_loss(predicted, eq_b),
            "var": (losses.variance_hinge(joined_a) + losses.variance_hinge(joined_b)) / 2,
            "pred_var": losses.variance_hinge(predicted),
            "cov": losses.covariance_penalty(joined_a) + losses.covariance_penalty(joined_b),
        }
        return sum(self.coeffs[k] * v for k, v in terms.items()), terms

    def invariant_part(self, rep):
        return rep[:, : self.split]

    def target_embedding(self, rep):
        return self.eq_projector(rep[:, self.split :])

    def predict(self, embedding_a, condition):
        return self.predictor(embedding_a, condition)


class EquiMod(Method):
    """EquiMod (Devillers & Lefort 2023), VICReg form: an invariant projector trained with VICReg between the views,
    and an equivariant projector whose embedding of view a, passed with the condition through an MLP predictor, is
    trained with VICReg against view b's. Loss = VICReg(inv) + equi_weight x VICReg(predicted, eq_b)."""

    has_predictor = True

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0,
                 equi_weight: float = 1.0) -> None:
        super().__init__(backbone, condition_dim)
        dims = _dims(projector_dims, self.rep_dim)
        self.inv_projector = projector(self.rep_dim, dims)
        self.eq_projector = projector(self.rep_dim, dims)
        self.predictor = MLPPredictor(condition_dim, dims[-1], dims[0])
        self.coeffs = {"inv": sim_coeff, "var": std_coeff, "cov": cov_coeff}
        self.equi_weight = equi_weight

    def _vicreg(self, a, b):
        terms = losses.vicreg_terms(a, b)
        return sum(self.coeffs[k] * v for k, v in terms.items())

    def pair_loss(self, rep_a, rep_b, condition):
        inv = self._vicreg(self.inv_projector(rep_a), self.inv_projector(rep_b))
        equi = self._vicreg(self.predict(self.target_embedding(rep_a), condition), self.target_embedding(rep_b))
        return inv + self.equi_weight * equi, {"inv_vicreg": inv, "equi_vicreg": equi}

    def target_embedding(self, rep):
        return self.eq_projector(rep)

    def predict(self, embedding_a, condition):
        return self.predictor(embedding_a, condition)


class SEN(Method):
    """SEN-style (Park et al. 2022) equivariant contrastive learning: the hypernetwork predictor maps view a's
    projection to view b's, and InfoNCE (temperature 0.1) contrasts the prediction with the true embedding."""

    has_predictor = True

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 temperature: float = 0.1) -> None:
        super().__init__(backbone, condition_dim)
        dims = _dims(projector_dims, self.rep_dim)
        self.projector = projector(self.rep_dim, dims)
        self.predictor = HyperPredictor(condition_dim, dims[-1])
        self.temperature = temperature

    def pair_loss(self, rep_a, rep_b, condition):
        predicted = self.predict(self.target_embedding(rep_a), condition)
        nce = losses.info_nce(predicted, self.target_embedding(rep_b), self.temperature)
        return nce, {"nce": nce}

    def target_embedding(self, rep):
        return self.projector(rep)

    def predict(self, embedding_a, condition):
        return self.predictor(embedding_a, condition)


#: Method name -> (class, default condition).
METHODS: dict[str, tuple[type[Method], str]] = {
    "sie": (SIE, "rotation"),
    "sie-color": (SIE, "rotation+color"),
    "vicreg": (VICReg, "rotation"),
    "simclr": (SimCLR, "rotation"),
    "equimod": (EquiMod, "rotation"),
    "sen": (SEN, "rotation"),
    "augself": (AugSelf, "rotation"),
}


def method_parameters(name: str) -> dict[str, object]:
    """The tunable keyword arguments of a method and their defaults (the published configuration)."""
    cls = METHODS[name][0]
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.kind == p.KEYWORD_ONLY}


def build_method(name: str, backbone: nn.Module, condition: str | None = None, **params) -> Method:
    """A method by name with keyword overrides of its defaults (see `method_parameters`)."""
    if name not in METHODS:
        raise OrbitsetError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    cls, default_condition = METHODS[name]
    condition = condition or default_condition
    if condition not in CONDITIONS:
        raise OrbitsetError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    allowed = method_parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise OrbitsetError(f"method {name!r} has no parameter {', '.join(unknown)}; it takes {', '.join(allowed)}")
    return cls(backbone, CONDITIONS[condition], **params)


def hue_delta_columns(latent_names: Sequence[str]) -> list[int]:
    """Indices of the floor and spot hue factors in a list of latent (or latent-delta) names."""
    columns = []
    for factor in HUE_FACTORS:
        matches = [i for i, name in enumerate(latent_names) if factor in name]
        if not matches:
            raise OrbitsetError(
                f"the dataset has no {factor!r} factor (factors: {', '.join(latent_names)}); "
                "the rotation+color condition needs 3DIEBench-style hue factors"
            )
        columns.append(matches[0])
    return columns


def pair_condition(rel_rotation: torch.Tensor, rel_latents: torch.Tensor | None, rel_latent_names: Sequence[str],
                   condition: str) -> torch.Tensor:
    """The condition vector of a batch of pairs: the quaternion, then the hue deltas for "rotation+color"."""
    if condition == "rotation":
        return rel_rotation.float()
    if rel_latents is None:
        raise OrbitsetError("the rotation+color condition needs the latent deltas of the pairs (rel_latents)")
    hues = rel_latents[:, hue_delta_columns(rel_latent_names)]
    return torch.cat([rel_rotation, hues], dim=1).float()
