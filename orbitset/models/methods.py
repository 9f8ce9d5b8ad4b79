"""Self-supervised image methods trained on pairs of views: SIE, VICReg, SimCLR, EquiMod, SEN-style, AugSelf.

Every method wraps a trunk (``orbitset.models.backbones``) and is called on a pair of image batches plus the
*condition* of the pair (`orbitset.models.conditions`: the relative quaternion, optionally the hue deltas). A call
returns a `MethodOutput` with the weighted total loss, its unweighted terms and the trunk representations.

Defaults are the SIE repository's 3DIEBench configuration (facebookresearch/SIE, README command: ``--sim-coeff 10
--std-coeff 10 --cov-coeff 1 --mlp 2048-2048-2048 --equi-factor 0.45 --hypernetwork linear``), with each loss weight
as the code effectively applies it; every difference from it is a keyword option. Projector widths default to 4x the
input dimension (2048 for a ResNet-18's 512-d representation, 1024 for each of SIE's 256-d parts: the original's
2048-2048-2048 split by the parts' share), so that they scale with the trunk.

Deliberate departures from the original, for every method: the loss terms are computed in float32 outside autocast;
the variance/covariance statistics are those of the local batch (the original gathers them across GPUs, the same on
one device).
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
from orbitset.models.conditions import CONDITIONS

#: Initialisations of the hypernetwork predictor (see `HyperPredictor`).
HYPERNET_INITS = ("default", "identity")
#: The parts of a representation an evaluation can read (`Method.part`).
PARTS = ("inv", "equi", "all")


@dataclass
class MethodOutput:
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    rep_a: torch.Tensor | None = None
    rep_b: torch.Tensor | None = None
    #: Sequence methods: the aggregate representation of the context views.
    aggregate: torch.Tensor | None = None


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


def mlp_head(in_dim: int, dims: Sequence[int], batch_norm: bool = False) -> nn.Sequential:
    """(Linear[-BN]-ReLU) for every hidden width, then a Linear with bias to the last width (heads and probes)."""
    layers: list[nn.Module] = []
    for width in dims[:-1]:
        layers += [nn.Linear(in_dim, width), *([nn.BatchNorm1d(width)] if batch_norm else []), nn.ReLU(inplace=True)]
        in_dim = width
    layers.append(nn.Linear(in_dim, dims[-1]))
    return nn.Sequential(*layers)


class HyperPredictor(nn.Module):
    """SIE's hypernetwork predictor: W(c) = sum_i c_i W_i (+ B with `bias`), a Linear from the condition c to the
    D x D matrix W(c); ``forward(z, c)`` returns W(c) z per row, linear in c when there is no bias.

    `init`: ``"default"`` (the original's) keeps PyTorch's default initialisation of ``nn.Linear(C, D * D)``:
    entries uniform in +-1/sqrt(C), so that the untrained predictor multiplies embeddings by about sqrt(D / 3C) and
    the variance hinge on its output starts idle; ``"identity"`` (an orbitset option) draws W_i with standard
    deviation 0.1/sqrt(D) and adds the identity on the quaternion's w component (index 3), B = 0: close to the
    identity for small rotations.
    """

    def __init__(self, condition_dim: int, dim: int, bias: bool = False, init: str = "default") -> None:
        super().__init__()
        if init not in HYPERNET_INITS:
            raise OrbitsetError(f"unknown hypernetwork init {init!r}; choose one of {', '.join(HYPERNET_INITS)}")
        self.dim = dim
        self.hypernet = nn.Linear(condition_dim, dim * dim, bias=bias)
        if init == "identity":
            with torch.no_grad():
                self.hypernet.weight.normal_(0.0, 0.1 / dim**0.5)
                if condition_dim > 3:
                    self.hypernet.weight.view(dim, dim, condition_dim)[:, :, 3] += torch.eye(dim)
                if bias:
                    self.hypernet.bias.zero_()

    def matrices(self, condition: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, D, D) the matrices W(c)."""
        return self.hypernet(condition).view(-1, self.dim, self.dim)

    def forward(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        # sum_i c_i (W_i z): never materialises the N x D x D matrices
        basis = self.hypernet.weight.view(self.dim, self.dim, -1)
        per_basis = torch.einsum("ijc,nj->nci", basis.to(z.dtype), z)
        out = torch.einsum("nc,nci->ni", condition.to(per_basis.dtype), per_basis)
        if self.hypernet.bias is not None:
            out = out + z @ self.hypernet.bias.view(self.dim, self.dim).T.to(z.dtype)
        return out


class MLPPredictor(nn.Module):
    """A predictor conditioned by concatenation: MLP([z, embed(c)]) (an EquiMod option)."""

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
    #: Index splitting the representation into an invariant and an equivariant part; None: no split.
    split: int | None = None

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

    def part(self, rep: torch.Tensor, part: str) -> torch.Tensor:
        """The columns of a representation that an evaluation reads: "inv", "equi" or "all" (`PARTS`)."""
        if part not in PARTS:
            raise OrbitsetError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
        if part == "all":
            return rep
        if self.split is None:
            raise OrbitsetError(f"{type(self).__name__} does not split its representation; evaluate it with part 'all'")
        return rep[:, : self.split] if part == "inv" else rep[:, self.split :]

    def invariant_part(self, rep: torch.Tensor) -> torch.Tensor:
        """The part of the representation the method makes invariant (all of it unless the method splits it)."""
        return rep if self.split is None else rep[:, : self.split]

    def target_embedding(self, rep: torch.Tensor) -> torch.Tensor:
        """The embedding in which a prediction from another view is compared (retrieval, PRE)."""
        return rep

    def predict(self, embedding_a: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predicted embedding of view b from view a's; the identity for invariant methods."""
        return embedding_a


class VICReg(Method):
    """VICReg (Bardes et al. 2022) on projections: sim x invariance MSE + std x variance hinge + cov x covariance.

    Defaults 10 / 10 / 1: the SIE repository's 3DIEBench command (the VICReg paper uses 25 / 25 / 1)."""

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 sim_coeff: float = 10.0, std_coeff: float = 10.0, cov_coeff: float = 1.0) -> None:
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
    """SimCLR plus AugSelf-style transformation prediction: a head on [rep_a, rep_b] regresses the condition's
    quaternion (MSE, weight `aug_coeff`).

    Default head (the SIE repository's): 2D -> 2D -> 2D -> 4 with ReLU and no batch norm (1024 -> 1024 -> 1024 -> 4
    on a ResNet-18); `head_dims` sets the widths (the last is always the quaternion's 4), `head_batch_norm` adds
    batch norm after the hidden layers. Departure: with the rotation+color condition the head still regresses the
    quaternion only, as the original's rotation variant does."""

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 temperature: float = 0.1, head_dims: Sequence[int] | None = None, head_batch_norm: bool = False,
                 aug_coeff: float = 1.0) -> None:
        super().__init__(backbone, condition_dim, projector_dims=projector_dims, temperature=temperature)
        hidden = list(head_dims) if head_dims is not None else [2 * self.rep_dim] * 2
        self.head = mlp_head(2 * self.rep_dim, [*hidden, 4], batch_norm=head_batch_norm)
        self.aug_coeff = aug_coeff

    def pair_loss(self, rep_a, rep_b, condition):
        nce, terms = super().pair_loss(rep_a, rep_b, condition)
        predicted = self.head(torch.cat([rep_a, rep_b], dim=1))
        terms["aug"] = F.mse_loss(predicted, condition[:, :4].to(predicted.dtype))
        return nce + self.aug_coeff * terms["aug"], terms


class SIE(Method):
    """SIE (Garrido et al. 2023): representation split into an invariant and an equivariant part.

    The first ``inv_fraction`` of the trunk's dimensions are invariant, the rest equivariant; each part has its own
    projector. The equivariant embedding of view a is mapped by the hypernetwork predictor W(condition) to predict
    view b's. Loss = inv_coeff x MSE(inv_a, inv_b) + equi_coeff x MSE(W eq_a, eq_b)
    + var_coeff x variance hinge of the joined [inv, eq] embeddings (mean of both views)
    + pred_var_coeff x variance hinge of the prediction + cov_coeff x covariance of the joined embeddings.

    Defaults as the original effectively applies them: inv 10, equi 4.5 (``--equi-factor 0.45`` x sim 10), var 10,
    pred_var 5 (the code halves its std_coeff 10 on this term), cov 1; a bias-free hypernetwork with PyTorch's
    default initialisation (`hypernet_bias`, `hypernet_init`: see `HyperPredictor`). The quaternion convention of the
    condition is the training's (`orbitset.models.conditions`; the original's is "raw").
    """

    has_predictor = True

    def __init__(self, backbone, condition_dim=4, *, inv_fraction: float = 0.5,
                 projector_dims: Sequence[int] | None = None, inv_coeff: float = 10.0, equi_coeff: float = 4.5,
                 var_coeff: float = 10.0, pred_var_coeff: float = 5.0, cov_coeff: float = 1.0,
                 hypernet_bias: bool = False, hypernet_init: str = "default") -> None:
        super().__init__(backbone, condition_dim)
        self.split = int(round(self.rep_dim * inv_fraction))
        if not 0 < self.split < self.rep_dim:
            raise OrbitsetError(f"inv_fraction={inv_fraction} leaves an empty part of the {self.rep_dim}-d representation")
        self.inv_projector = projector(self.split, _dims(projector_dims, self.split))
        eq_dim = self.rep_dim - self.split
        self.eq_projector = projector(eq_dim, _dims(projector_dims, eq_dim))
        self.predictor = HyperPredictor(condition_dim, _dims(projector_dims, eq_dim)[-1], hypernet_bias, hypernet_init)
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

    def target_embedding(self, rep):
        return self.eq_projector(rep[:, self.split :])

    def predict(self, embedding_a, condition):
        return self.predictor(embedding_a, condition)


class EquiMod(Method):
    """EquiMod (Devillers & Lefort 2023), the SIE repository's VICReg form: an invariant and an equivariant projector
    on the whole representation; loss = VICReg(inv_a, inv_b) + equi_factor x equivariant term.

    Equivariant term (`equi_terms`): ``"embeddings"`` (the original's) = sim x MSE(pred, eq_b) + std x variance hinge
    and cov x covariance of the two equivariant embeddings eq_a, eq_b; ``"prediction"`` = VICReg between the
    prediction and eq_b. `predictor`: ``"hypernetwork"`` (the original's default, `HyperPredictor`) or ``"mlp"``
    (`MLPPredictor`). Defaults 10 / 10 / 1 and equi_factor 0.45: the SIE repository's 3DIEBench command line.
    """

    has_predictor = True

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 sim_coeff: float = 10.0, std_coeff: float = 10.0, cov_coeff: float = 1.0,
                 equi_factor: float = 0.45, predictor: str = "hypernetwork", equi_terms: str = "embeddings",
                 hypernet_bias: bool = False, hypernet_init: str = "default") -> None:
        super().__init__(backbone, condition_dim)
        if predictor not in ("hypernetwork", "mlp") or equi_terms not in ("embeddings", "prediction"):
            raise OrbitsetError(f"EquiMod takes predictor 'hypernetwork' or 'mlp' and equi_terms 'embeddings' or "
                                f"'prediction', not {predictor!r} and {equi_terms!r}")
        dims = _dims(projector_dims, self.rep_dim)
        self.inv_projector = projector(self.rep_dim, dims)
        self.eq_projector = projector(self.rep_dim, dims)
        self.predictor = (HyperPredictor(condition_dim, dims[-1], hypernet_bias, hypernet_init)
                          if predictor == "hypernetwork" else MLPPredictor(condition_dim, dims[-1], dims[0]))
        self.coeffs = {"inv": sim_coeff, "var": std_coeff, "cov": cov_coeff}
        self.equi_factor, self.equi_terms = equi_factor, equi_terms

    def _weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.coeffs[k] * v for k, v in terms.items())

    def pair_loss(self, rep_a, rep_b, condition):
        inv = self._weighted(losses.vicreg_terms(self.inv_projector(rep_a), self.inv_projector(rep_b)))
        eq_a, eq_b = self.target_embedding(rep_a), self.target_embedding(rep_b)
        predicted = self.predict(eq_a, condition)
        if self.equi_terms == "embeddings":
            terms = losses.vicreg_terms(eq_a, eq_b)
            terms["inv"] = losses.vicreg_terms(predicted, eq_b)["inv"]
        else:
            terms = losses.vicreg_terms(predicted, eq_b)
        equi = self._weighted(terms)
        return inv + self.equi_factor * equi, {"inv_vicreg": inv, "equi_vicreg": equi}

    def target_embedding(self, rep):
        return self.eq_projector(rep)

    def predict(self, embedding_a, condition):
        return self.predictor(embedding_a, condition)


class SEN(Method):
    """SEN-style (Park et al. 2022) equivariant contrastive learning: the hypernetwork predictor maps view a's
    projection to view b's, and InfoNCE (temperature 0.1) contrasts the prediction with the true embedding
    (the SIE repository's SimCLROnlyEqui)."""

    has_predictor = True

    def __init__(self, backbone, condition_dim=4, *, projector_dims: Sequence[int] | None = None,
                 temperature: float = 0.1, hypernet_bias: bool = False, hypernet_init: str = "default") -> None:
        super().__init__(backbone, condition_dim)
        dims = _dims(projector_dims, self.rep_dim)
        self.projector = projector(self.rep_dim, dims)
        self.predictor = HyperPredictor(condition_dim, dims[-1], hypernet_bias, hypernet_init)
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


def method_parameters(name: str, registry: dict[str, tuple[type[Method], str]] | None = None) -> dict[str, object]:
    """The tunable keyword arguments of a method and their defaults (the published configuration); `registry`:
    the methods by name (default `METHODS`)."""
    cls = (registry or METHODS)[name][0]
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.kind == p.KEYWORD_ONLY}


def build_method(name: str, backbone: nn.Module, condition: str | None = None,
                 registry: dict[str, tuple[type[Method], str]] | None = None, **params) -> Method:
    """A method by name (from `registry`, default `METHODS`) with keyword overrides of its defaults (see
    `method_parameters`)."""
    registry = registry or METHODS
    if name not in registry:
        raise OrbitsetError(f"unknown method {name!r}; choose one of {', '.join(registry)}")
    cls, default_condition = registry[name]
    condition = condition or default_condition
    if condition not in CONDITIONS:
        raise OrbitsetError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    allowed = method_parameters(name, registry)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise OrbitsetError(f"method {name!r} has no parameter {', '.join(unknown)}; it takes {', '.join(allowed)}")
    return cls(backbone, CONDITIONS[condition], **params)
