"""seq-JEPA (Ghaemi et al. 2025): predict the target encoder's embedding of the last view of a sequence from an
aggregate of the earlier views, each tagged with the action that leads to the next view.

A sequence holds K views of one object (K = seq_len + 1; 4 in the paper's 3DIEBench setting). Views 0..K-2 are the
context, view K-1 the target. The action between consecutive views j, j+1 is the condition of that pair
(`orbitset.models.conditions`: the relative quaternion of R_j^T R_{j+1}, then the hue deltas for "rotation+color"),
an (N, K-1, A) tensor. Forward pass, as hafezgh/seq-jepa's ``SeqJEPA_Transforms`` (src/models.py) computes it:

- every context view goes through the online trunk: (N, K-1, D);
- every action through ``action_proj`` = Linear(A, P, no bias) + BatchNorm1d(P, affine=False); context token j is
  [trunk(view j), action_proj(action j)] with the last context token's action set to zero (its action, to the target,
  conditions the predictor instead);
- a learnt aggregation token (zeros at start) is prepended, and a post-norm transformer encoder (``num_layers``
  layers of ``num_heads`` heads, feed-forward 4 x (D + P), dropout 0.1, ReLU, no positional encoding) followed by a
  LayerNorm gives the aggregate representation = the output at the aggregation token, (N, D + P);
- the predictor MLP(Linear(D + 2P, H, no bias), BatchNorm1d(H), ReLU, Linear(H, D)) maps [aggregate,
  action_proj(action K-2)] to a prediction of the target view's embedding by the EMA target trunk (no gradient);
- loss = 1 - mean cosine similarity between prediction and target embedding.

After every optimiser step the target trunk's parameters move to the online ones by EMA (`update_target`), with the
decay of the epoch from `ema_decay_at` (cosine from ``ema_decay`` = 0.996 to 1 over training, as the original sets
it). Defaults: the authors' 3DIEBench script (scripts/script_transformed_views.sh: ``--num-heads 4 --num-enc-layers 3
--act-projdim 128 --pred-hidden 1024 --ema-decay 0.996 --act-cond 1 --learn-act-emb 1``, ``--latent-type rot``: the
4-d quaternion action). The trunk is the online encoder: `representation` (single view) is what the pair evaluations
read; `aggregate` is the sequence representation.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from orbitset.errors import OrbitsetError
from orbitset.models.methods import Method, MethodOutput


def ema_decay_at(epoch: int, epochs: int, base: float) -> float:
    """The EMA decay during `epoch` (0-based) of `epochs`: 1 - (1 - base) (cos(pi epoch / epochs) + 1) / 2."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * epoch / max(epochs, 1)) + 1.0) / 2.0


class Aggregator(nn.Module):
    """A learnt token prepended to the (N, L, E) context tokens, a post-norm transformer encoder and a final
    LayerNorm; returns the output at that token, (N, E)."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, mlp_ratio: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        if dim % num_heads:
            raise OrbitsetError(f"the token width {dim} is not divisible by num_heads={num_heads}; change num_heads "
                                "or action_dim")
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, num_heads, dim * mlp_ratio, dropout, batch_first=True)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.token.expand(len(tokens), -1, -1), tokens], dim=1)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)[:, 0]


class SeqJEPA(Method):
    """seq-JEPA on sequences of views (see the module docstring); ``forward(views, actions)`` with views
    (N, K, 3, H, W) and actions (N, K-1, A) returns a `MethodOutput` with the loss, ``terms["cosine"]``, ``rep_a`` =
    the trunk representation of view 0 and ``rep_b`` that of view 1 (the online probes' pair), and the aggregate in
    ``aggregate``."""

    #: Trained on sequences (`orbitset.loaders.SequenceLoader`), not pairs.
    sequence = True

    def __init__(self, backbone, condition_dim=4, *, action_dim: int = 128, num_heads: int = 4, num_layers: int = 3,
                 pred_hidden: int = 1024, ema_decay: float = 0.996, dropout: float = 0.1) -> None:
        super().__init__(backbone, condition_dim)
        if not 0 <= ema_decay <= 1:
            raise OrbitsetError(f"ema_decay must lie in [0, 1], got {ema_decay}")
        self.target_encoder = copy.deepcopy(backbone)
        for p in self.target_encoder.parameters():
            p.requires_grad_(False)
        self.action_dim, self.ema_decay = action_dim, ema_decay
        self.action_proj = nn.Sequential(nn.Linear(condition_dim, action_dim, bias=False),
                                         nn.BatchNorm1d(action_dim, affine=False))
        self.aggregate_dim = self.rep_dim + action_dim
        self.aggregator = Aggregator(self.aggregate_dim, num_heads, num_layers, dropout=dropout)
        self.predictor = nn.Sequential(
            nn.Linear(self.aggregate_dim + action_dim, pred_hidden, bias=False), nn.BatchNorm1d(pred_hidden),
            nn.ReLU(inplace=True), nn.Linear(pred_hidden, self.rep_dim))

    def aggregate(self, context: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(N, L, D) trunk representations of the context views and the (N, L, A) actions from each to the next
        view -> (N, D + P) aggregate representations (the last context view's action is not seen: zeroed)."""
        n, length = context.shape[:2]
        projected = self.action_proj(actions.reshape(n * length, -1).to(context.dtype)).reshape(n, length, -1)
        seen = torch.ones(1, length, 1, dtype=projected.dtype, device=projected.device)
        seen[:, -1] = 0
        return self.aggregator(torch.cat([context, projected * seen], dim=-1))

    def forward(self, views: torch.Tensor, actions: torch.Tensor) -> MethodOutput:
        n, k = views.shape[:2]
        if k < 2 or actions.shape[:2] != (n, k - 1):
            raise OrbitsetError(f"seq-JEPA needs (N, K, 3, H, W) views with K >= 2 and (N, K-1, A) actions, got "
                                f"{tuple(views.shape)} and {tuple(actions.shape)}")
        context = self.backbone(views[:, :-1].flatten(0, 1)).reshape(n, k - 1, -1)
        with torch.no_grad():
            target = self.target_encoder(views[:, -1]).detach()
        # the original projects the predictor's action on its own (its batch-norm statistics over N rows) and the
        # context actions together (over N (K-1) rows, the last included before it is zeroed)
        to_target = self.action_proj(actions[:, -1].to(context.dtype))
        aggregate = self.aggregate(context, actions)
        predicted = self.predictor(torch.cat([aggregate, to_target], dim=-1))
        cosine = F.cosine_similarity(predicted.float(), target.float(), dim=1).mean()
        loss = 1 - cosine
        out = MethodOutput(loss, {"cosine": cosine}, context[:, 0], context[:, 1] if k > 2 else target)
        out.aggregate = aggregate
        return out

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """target <- decay * target + (1 - decay) * online, for every parameter of the trunk (not its buffers: the
        target trunk's batch norms keep their own statistics, as in the original)."""
        for online, target in zip(self.backbone.parameters(), self.target_encoder.parameters()):
            target.mul_(decay).add_(online.detach(), alpha=1 - decay)


#: Sequence method name -> (class, default condition), as `orbitset.models.methods.METHODS`.
SEQUENCE_METHODS: dict[str, tuple[type[Method], str]] = {"seq-jepa": (SeqJEPA, "rotation")}
