"""Standard evaluations of a trained run, on frozen features (the 3DIEBench protocol of SIE, Garrido et al., ICML 2023).

This module holds the image and point-cloud evaluations together because they share one options object, one feature
pass over the orbits and one result-writing entry point (`evaluate`).

Features: every view of every object of a split goes once through the frozen trunk (`orbit_features`, model in eval
mode), and the probes draw their pairs or views from those features. Image evaluations read the representation part
`EvalOptions.part` ("inv", "equi" or "all"; only "all" for methods that do not split), recorded in the JSON as
``part``; quaternion targets and conditions follow the run's training convention (`TrainConfig.quaternion`).

Tasks (`TASKS`); each returns a dict of metrics and is written to ``RUN/eval/TASK.json`` by `evaluate`:
- ``classify``: linear probe on the representation; top-1 over every view of the evaluated objects;
- ``rotation``: MLP probe (2D -> 1024 -> 1024 -> 4, ReLU) on [rep_a, rep_b] predicting the relative quaternion;
  R^2 in both conventions (`orbitset.models.losses`): ``r2_global_mean`` (one global mean over every component:
  SIE's, ContextSSL's, EquiCaps'; also written as ``r2``) and ``r2_per_component`` (the average of per-component
  R^2: seq-JEPA's, scikit-learn's default), on `test_pairs` seeded pairs per evaluated object, next to the R^2 of the
  constant training-mean predictor (``r2_mean_baseline``, global mean), and the angular errors of the predicted
  rotation, plain and symmetry-aware (`orbitset.models.rotation_errors`);
- ``color``: the same probe predicting the (floor, spot) hue deltas;
- ``view-rotation``: the same probe on one view's representation predicting that view's pose quaternion in the
  run's convention (`orbitset.models.conditions.view_quaternion`; seq-JEPA's single-view rotation R^2), scored on
  `test_pairs` seeded views per evaluated object;
- ``aggregate`` (sequence methods): linear probe on the aggregate representation of K - 1 distinct views of an
  object with the actions between them (the training's sequence length, `TrainConfig.views`); top-1 over
  `test_pairs` seeded sequences per evaluated object (seq-JEPA's aggregate top-1); ``views`` sequences per
  training object, drawn once (whatever `pair_sampling`: a fresh draw would rerun the aggregator every epoch);
- ``retrieval``: predict view j's embedding from view 0's for every j = 0..V-1 and rank the true view among the
  object's V views by cosine similarity (MRR, H@1, H@2, H@5, H@10); invariant methods predict with the identity;
- ``pre``: the same predictions (every j, view 0 included, as the original's eval_prediction_errors.py), nearest
  neighbour by cosine similarity over every embedding of the split; error = mean(1 - <q, q_nn>^2) between the target
  view's pose quaternion and the neighbour's;
- ``pointcloud``: accuracy of a point-cloud run under test rotations about Z (orbitset's up axis) and in SO(3); keys
  are ``TRAIN/TEST`` protocol names, e.g. ``z/z`` and ``z/so3``;
- ``equivariance``: relative invariance error of the invariant part and, for methods with a predictor, the
  relative prediction error of W(q) next to the identity's and the best scaled identity beta * w * I's;
- ``orbit-plot``: a NERO-style figure of the model's output along orbits (``RUN/eval/orbit-plot.png``).

Probe protocol (`EvalOptions` defaults = the paper's): Adam (weight decay 0), lr 1e-3, batch 256, 300 epochs, and for
``pair_sampling="fresh"`` a fresh random pair (rotation, colour) or view (classify) per training object in every
epoch (`pairs_per_object`, `views`: more per epoch, for datasets too small to give a probe enough steps). The
cheaper option for CPU runs: ``pair_sampling="fixed"`` (the pairs or views drawn once), fewer `probe_epochs`, and
early stopping on held-out objects (`stop_split`, or a `holdout_fraction` of the training objects; never the
evaluated split).

Departures from the original scripts, on purpose: the frozen trunk runs in eval mode (the original leaves it in
train mode, so its BatchNorm statistics drift during probing), with the statistics that training recomputed over one
epoch with the final weights (`orbitset.models.train.recompute_batch_norm`); checkpoints load strictly (a shape
mismatch is an error, where the original silently keeps random weights); test metrics average over every view
(classify) or `test_pairs` pairs (rotation, colour) per object instead of one random draw, the same expectation with
less noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from orbitset import geometry
from orbitset.errors import OrbitsetError
from orbitset.models import equivariance
from orbitset.models.conditions import EULER_LATENTS, hue_delta_columns, relative_quaternion, view_quaternion
from orbitset.models.losses import r2_both, r2_global_mean
from orbitset.models.rotation_errors import rotation_errors
from orbitset.models.methods import PARTS, mlp_head
from orbitset.models.train import ImageModel, TrainConfig, load_run

IMAGE_TASKS = ("classify", "rotation", "color", "view-rotation", "aggregate", "retrieval", "pre", "equivariance",
               "orbit-plot")
POINT_TASKS = ("pointcloud", "equivariance", "orbit-plot")
TASKS = tuple(dict.fromkeys(IMAGE_TASKS + POINT_TASKS))
#: Image tasks that read a representation part; the others work in the method's own embedding space.
PART_TASKS = ("classify", "rotation", "color", "view-rotation")
PAIR_SAMPLING = ("fresh", "fixed")
#: With progress, a probe writes a line every this many epochs (and at its last).
PROBE_LINE_EVERY = 10


@dataclass
class EvalOptions:
    """Probe budget and data options (defaults: the published protocol; see the module docstring)."""

    data: str | None = None
    split: str = "val"
    device: str = "cpu"
    batch_size: int = 256
    probe_epochs: int = 300
    probe_lr: float = 1e-3
    probe_hidden: int = 1024
    probe_weight_decay: float = 0.0
    part: str = "all"
    pair_sampling: str = "fresh"
    #: pairs (rotation, colour; single views for view-rotation) and views (classify) per training object: drawn
    #: afresh every epoch ("fresh"; the paper's protocol is 1 of each) or once ("fixed"); `views` also sets the
    #: sequences per training object of ``aggregate`` (drawn once).
    pairs_per_object: int = 1
    views: int = 1
    #: seeded pairs (views, sequences) per evaluated object for the rotation, colour, view-rotation and aggregate
    #: scores and the equivariance errors.
    test_pairs: int = 10
    #: early stopping: held-out objects from this split, else from `holdout_fraction` of the training objects.
    stop_split: str | None = None
    holdout_fraction: float = 0.0
    patience: int = 10
    seed: int = 0
    num_workers: int = 0
    #: a bar over each probe's epochs on a terminal, and a line every `PROBE_LINE_EVERY` epochs and at its end.
    progress: bool = False

    def check(self) -> None:
        if self.part not in PARTS:
            raise OrbitsetError(f"unknown part {self.part!r}; choose one of {', '.join(PARTS)}")
        if self.pair_sampling not in PAIR_SAMPLING:
            raise OrbitsetError(f"pair_sampling must be one of {', '.join(PAIR_SAMPLING)}, not {self.pair_sampling!r}")
        for name in ("batch_size", "probe_hidden", "pairs_per_object", "views", "test_pairs", "patience"):
            if getattr(self, name) < 1:
                raise OrbitsetError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.probe_epochs < 0 or self.probe_lr <= 0:
            raise OrbitsetError(f"probe-epochs must be >= 0 and probe-lr > 0, got {self.probe_epochs} and {self.probe_lr}")
        if self.stop_split is not None and self.stop_split in ("train", self.split):
            raise OrbitsetError(f"stop_split {self.stop_split!r} must differ from the training and evaluated splits")


# --- features ----------------------------------------------------------------------------------------------------


def _batches(loader, device):
    for batch in loader:
        yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


#: The last few `orbit_features` results, keyed by (checkpoint path, its mtime, data, split, seed, device): the
#: evaluations of one run share one pass over each split.
_FEATURE_CACHE: dict[tuple, dict[str, Any]] = {}
_FEATURE_CACHE_SIZE = 3


def orbit_features(model: ImageModel, cfg: TrainConfig, opts: EvalOptions, split: str) -> dict[str, Any]:
    """Every view of every object of `split`: representation (N, V, D), rotations (N, V, 3, 3), latents (N, V, F),
    labels (N,), object keys, factor names. Reuses the result for the same checkpoint file (unchanged), data, split,
    seed and device."""
    from orbitset.models.train import CHECKPOINT_FILE

    checkpoint = Path(cfg.out) / CHECKPOINT_FILE
    key = (str(checkpoint.resolve()), checkpoint.stat().st_mtime_ns if checkpoint.is_file() else None,
           str(opts.data or cfg.data), split, opts.seed, str(opts.device))
    if key[1] is None or key not in _FEATURE_CACHE:
        features = _compute_orbit_features(model, cfg, opts, split)
        if key[1] is None:
            return features
        _FEATURE_CACHE[key] = features
        while len(_FEATURE_CACHE) > _FEATURE_CACHE_SIZE:
            _FEATURE_CACHE.pop(next(iter(_FEATURE_CACHE)))
    return _FEATURE_CACHE[key]


@torch.no_grad()
def _compute_orbit_features(model: ImageModel, cfg: TrainConfig, opts: EvalOptions, split: str) -> dict[str, Any]:
    from orbitset.loaders import ViewLoader
    from orbitset.manifests.model import load_manifest

    loader = ViewLoader(opts.data or cfg.data, batch_size=max(1, opts.batch_size // 16), mode="all", split=split,
                        num_workers=opts.num_workers, seed=opts.seed, shuffle=False, size=cfg.size, device=opts.device)
    out: dict[str, list[torch.Tensor]] = {"rep": [], "rotations": [], "latents": [], "label": []}
    keys: list[str] = []
    for batch in _batches(loader, opts.device):
        views = batch["views"]
        n, v = views.shape[:2]
        out["rep"].append(model.method.representation(views.flatten(0, 1)).float().reshape(n, v, -1).cpu())
        out["rotations"].append(batch["rotations"].cpu())
        out["latents"].append(batch["latents"].cpu())
        out["label"].append(batch["label"].cpu())
        keys.extend(batch["key"])
    if not out["label"]:
        raise OrbitsetError(f"the {split!r} split of {opts.data or cfg.data} has no objects")
    orbits: dict[str, Any] = {k: torch.cat(v) for k, v in out.items()}
    orbits["keys"] = keys
    orbits["factor_names"] = [f.name for f in load_manifest(opts.data or cfg.data).factors]
    return orbits


def _select(orbits: dict[str, Any], mask: torch.Tensor) -> dict[str, Any]:
    """The orbits of the objects where `mask` is true."""
    chosen = dict(orbits)
    for key in ("rep", "rotations", "latents", "label"):
        chosen[key] = orbits[key][mask]
    chosen["keys"] = [k for k, m in zip(orbits["keys"], mask.tolist()) if m]
    return chosen


def _part(model: ImageModel, orbits: dict[str, Any], part: str) -> torch.Tensor:
    n, v, d = orbits["rep"].shape
    return model.method.part(orbits["rep"].reshape(n * v, d), part).reshape(n, v, -1)


def draw_pairs(objects: int, views: int, per_object: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """`per_object` random pairs of distinct views per object: (object, view a, view b) index tensors."""
    if views < 2:
        raise OrbitsetError(f"pairs need at least 2 views per object, the dataset has {views}")
    obj = torch.arange(objects).repeat_interleave(per_object)
    a = torch.randint(views, (len(obj),), generator=generator)
    b = (a + torch.randint(1, views, (len(obj),), generator=generator)) % views
    return obj, a, b


def _check_euler(cfg: TrainConfig, orbits: dict[str, Any]) -> None:
    if cfg.quaternion == "raw" and tuple(orbits["factor_names"][:3]) != EULER_LATENTS:
        raise OrbitsetError(f"the run uses the raw quaternion, composed from Euler latents {EULER_LATENTS}, but "
                            f"this dataset's first factors are {orbits['factor_names'][:3]}; evaluate on data like "
                            "the training data, or train with --quaternion canonical")


def pair_targets(task: str, cfg: TrainConfig, orbits: dict[str, Any], obj, a, b) -> torch.Tensor:
    """Targets of pairs: the relative quaternion in the run's convention ("rotation") or the hue deltas ("color")."""
    if task == "rotation":
        _check_euler(cfg, orbits)
        return relative_quaternion(cfg.quaternion, orbits["rotations"][obj, a], orbits["rotations"][obj, b],
                                   orbits["latents"][obj, a], orbits["latents"][obj, b])
    columns = hue_delta_columns(orbits["factor_names"])
    return (orbits["latents"][obj, b][:, columns] - orbits["latents"][obj, a][:, columns]).float()


# --- probes ------------------------------------------------------------------------------------------------------


class Standardize(nn.Module):
    """x -> (x - mean) / std with the statistics of the probe's training features (an affine map: it changes what
    the optimiser sees, not what a linear or MLP probe can express)."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", features.mean(dim=0))
        self.register_buffer("std", features.std(dim=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def holdout_mask(keys: list[str], fraction: float, seed: int) -> torch.Tensor:
    """Boolean mask of the rows whose object is in a seeded random `fraction` of the distinct objects (whole objects,
    so that no held-out object also has rows in the fitting set)."""
    objects = sorted(set(keys))
    count = int(round(len(objects) * fraction))
    if fraction > 0 and not 0 < count < len(objects):
        raise OrbitsetError(f"holdout_fraction={fraction} of {len(objects)} training objects holds out none or all; "
                            "use more objects or a fraction between 0 and 1")
    chosen = torch.randperm(len(objects), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    held = {objects[i] for i in chosen}
    return torch.tensor([key in held for key in keys], dtype=torch.bool)


Sample = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def train_probe(probe: nn.Module, sample: Sample, loss_fn: Callable, opts: EvalOptions,
                held: tuple[torch.Tensor, torch.Tensor] | None = None, label: str = "probe") -> tuple[nn.Module, int]:
    """Fit `probe` with Adam (`probe_lr`, weight decay `probe_weight_decay`) in mini-batches of `batch_size` for up
    to `probe_epochs` epochs, epoch e on the rows ``sample(e)`` (a fresh draw or the same rows every epoch).

    Features are standardised with epoch 0's statistics first (`Standardize`, part of the returned probe). With
    `held` (inputs, targets of held-out objects) the probe keeps the weights of its best held-out loss and stops
    after `patience` epochs without improvement. Progress (`opts.progress`) is labelled `label`. Returns the probe
    (eval mode) and the epochs run."""
    from tqdm import tqdm

    from orbitset.progress import EpochLines, format_numbers, on_terminal

    lines = EpochLines(label, opts.probe_epochs, enabled=opts.progress, every=PROBE_LINE_EVERY)
    bar = tqdm(total=opts.probe_epochs, desc=label, unit="epoch", leave=False,
               disable=not (opts.progress and on_terminal()))
    x, y = sample(0)
    probe = nn.Sequential(Standardize(x), probe)
    generator = torch.Generator().manual_seed(opts.seed)
    optimizer = torch.optim.Adam(probe.parameters(), lr=opts.probe_lr, weight_decay=opts.probe_weight_decay)
    best, best_state, since_best, epochs = float("inf"), None, 0, 0
    for epoch in range(opts.probe_epochs):
        if epoch:
            x, y = sample(epoch)
        probe.train()
        order = torch.randperm(len(x), generator=generator)
        summed, rows = 0.0, 0
        for start in range(0, len(x), opts.batch_size):
            index = order[start : start + opts.batch_size]
            if len(index) < 2:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(probe(x[index]), y[index])
            loss.backward()
            optimizer.step()
            summed, rows = summed + float(loss.detach()) * len(index), rows + len(index)
        epochs = epoch + 1
        numbers, stopping = {"loss": summed / max(rows, 1)}, False
        if held is not None:
            with torch.no_grad():
                held_loss = float(loss_fn(probe.eval()(held[0]), held[1]))
            numbers["held_out_loss"] = held_loss
            if held_loss < best:
                best, best_state, since_best = held_loss, {k: v.clone() for k, v in probe.state_dict().items()}, 0
            else:
                since_best += 1
                stopping = since_best >= opts.patience
        bar.update(1)
        bar.set_postfix_str(format_numbers(numbers), refresh=False)
        lines.epoch_done(epochs, numbers, stopping)
        if stopping:
            break
    bar.close()
    if best_state is not None:
        probe.load_state_dict(best_state)
    return probe.eval(), epochs


def mlp_probe(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The regression probe of 3DIEBench: in -> hidden -> hidden -> out with ReLU."""
    return mlp_head(in_dim, [hidden, hidden, out_dim])


def _fit_and_stop_sets(model: ImageModel, cfg: TrainConfig, opts: EvalOptions) -> tuple[dict, dict | None]:
    """The training orbits to fit on and the held-out orbits for early stopping (None without early stopping)."""
    train = orbit_features(model, cfg, opts, "train")
    if opts.stop_split is not None:
        return train, orbit_features(model, cfg, opts, opts.stop_split)
    if opts.holdout_fraction > 0:
        mask = holdout_mask(train["keys"], opts.holdout_fraction, opts.seed)
        return _select(train, ~mask), _select(train, mask)
    return train, None


def classify(model: ImageModel, cfg: TrainConfig, opts: EvalOptions) -> dict[str, Any]:
    fit, stop = _fit_and_stop_sets(model, cfg, opts)
    test = orbit_features(model, cfg, opts, opts.split)
    reps = _part(model, fit, opts.part)
    n, v, _ = reps.shape
    labels = fit["label"].long()
    fixed = torch.randint(v, (n, opts.views), generator=torch.Generator().manual_seed(opts.seed))

    def sample(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if opts.pair_sampling == "fixed":
            return reps[torch.arange(n)[:, None], fixed].flatten(0, 1), labels.repeat_interleave(opts.views)
        view = torch.randint(v, (n, opts.views), generator=torch.Generator().manual_seed(opts.seed * 100003 + epoch))
        return reps[torch.arange(n)[:, None], view].flatten(0, 1), labels.repeat_interleave(opts.views)

    def every_view(orbits):
        part = _part(model, orbits, opts.part)
        return part.flatten(0, 1), orbits["label"].long().repeat_interleave(part.shape[1])

    torch.manual_seed(opts.seed)
    probe, epochs = train_probe(nn.Linear(reps.shape[-1], cfg.num_classes), sample, F.cross_entropy, opts,
                                every_view(stop) if stop is not None else None, f"{cfg.method} classify probe")
    x_test, y_test = every_view(test)
    with torch.no_grad():
        top1 = float((probe(x_test).argmax(1) == y_test).float().mean())
    return {"part": opts.part, "top1": top1, "chance": 1.0 / cfg.num_classes, "epochs_run": epochs,
            "train_objects": n, "test_objects": len(test["label"]), "test_views": len(y_test)}


def _pair_inputs(model, cfg, opts, task, orbits, obj, a, b):
    reps = _part(model, orbits, opts.part)
    return torch.cat([reps[obj, a], reps[obj, b]], 1), pair_targets(task, cfg, orbits, obj, a, b)


def _draw(task: str, objects: int, views: int, per_object: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The samples of a regression task: pairs (`draw_pairs`), or (object, view) single views for "view-rotation"."""
    if task != "view-rotation":
        return draw_pairs(objects, views, per_object, generator)
    obj = torch.arange(objects).repeat_interleave(per_object)
    return obj, torch.randint(views, (len(obj),), generator=generator)


def _inputs(model, cfg, opts, task, orbits, drawn) -> tuple[torch.Tensor, torch.Tensor]:
    """Probe inputs and targets of drawn samples (see `_draw`)."""
    if task != "view-rotation":
        return _pair_inputs(model, cfg, opts, task, orbits, *drawn)
    _check_euler(cfg, orbits)
    obj, view = drawn
    return (_part(model, orbits, opts.part)[obj, view],
            view_quaternion(cfg.quaternion, orbits["rotations"][obj, view], orbits["latents"][obj, view]))


def _regression(model: ImageModel, cfg: TrainConfig, opts: EvalOptions, task: str) -> dict[str, Any]:
    fit, stop = _fit_and_stop_sets(model, cfg, opts)
    test = orbit_features(model, cfg, opts, opts.split)
    n, v = fit["rep"].shape[:2]
    fixed = _draw(task, n, v, opts.pairs_per_object, torch.Generator().manual_seed(opts.seed))

    def sample(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        drawn = fixed if opts.pair_sampling == "fixed" else _draw(
            task, n, v, opts.pairs_per_object, torch.Generator().manual_seed(opts.seed * 100003 + epoch))
        return _inputs(model, cfg, opts, task, fit, drawn)

    def scored(orbits, seed) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        drawn = _draw(task, len(orbits["label"]), orbits["rep"].shape[1], opts.test_pairs,
                      torch.Generator().manual_seed(seed))
        return (*_inputs(model, cfg, opts, task, orbits, drawn), drawn)

    # The probe predicts the offset from the training mean, so that it starts at the constant predictor.
    mean = sample(0)[1].mean(dim=0)

    def offset(epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = sample(epoch)
        return x, y - mean

    held = None
    if stop is not None:
        x_held, y_held, _ = scored(stop, opts.seed + 2000)
        held = (x_held, y_held - mean)
    torch.manual_seed(opts.seed)
    x0 = sample(0)[0]
    fitted, epochs = train_probe(mlp_probe(x0.shape[1], opts.probe_hidden, len(mean)), offset, F.mse_loss, opts, held,
                                 f"{cfg.method} {task} probe")
    x_test, y_test, drawn = scored(test, opts.seed + 1000)
    with torch.no_grad():
        predicted = fitted(x_test) + mean
        r2 = r2_both(predicted, y_test)
    result = {"part": opts.part, "r2": r2["r2_global_mean"], **r2,
              "r2_mean_baseline": r2_global_mean(mean.expand_as(y_test), y_test),
              "pair_sampling": opts.pair_sampling, "epochs_run": epochs, "train_objects": n,
              "test_views" if task == "view-rotation" else "test_pairs": len(x_test),
              "quaternion": None if task == "color" else cfg.quaternion}
    if task == "rotation":  # the angular errors of the same test pairs
        obj, a, b = drawn
        result.update(rotation_errors(predicted, test["rotations"][obj, a], test["rotations"][obj, b],
                                      [test["keys"][i] for i in obj.tolist()], opts.data or cfg.data))
    return result


def rotation(model, cfg, opts):
    return _regression(model, cfg, opts, "rotation")


def color(model, cfg, opts):
    return _regression(model, cfg, opts, "color")


def view_rotation(model, cfg, opts):
    return _regression(model, cfg, opts, "view-rotation")


def draw_sequences(objects: int, views: int, length: int, per_object: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_object` sequences of `length` distinct random views per object: (object (M,), views (M, length))."""
    if views < length:
        raise OrbitsetError(f"sequences of {length} distinct views need objects with at least {length} views, the "
                            f"dataset has {views}")
    obj = torch.arange(objects).repeat_interleave(per_object)
    return obj, torch.rand(len(obj), views, generator=generator).argsort(dim=1)[:, :length]


@torch.no_grad()
def _aggregates(model, cfg: TrainConfig, orbits: dict[str, Any], obj: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """Aggregate representations of sequences (object, K views): the first K - 1 views with the actions to their
    successors (the last one, to the K-th view, is not seen by the aggregate)."""
    steps = views.shape[1] - 1
    pairs = obj.repeat_interleave(steps), views[:, :-1].reshape(-1), views[:, 1:].reshape(-1)
    actions = _conditions(cfg, orbits, *pairs).reshape(len(obj), steps, -1)
    return model.method.cpu().aggregate(orbits["rep"][obj[:, None], views[:, :-1]], actions)


def aggregate(model, cfg, opts):
    if not hasattr(model.method, "aggregate"):
        raise OrbitsetError(f"{cfg.method} has no aggregate representation; 'aggregate' evaluates sequence methods "
                            "(seq-jepa)")
    fit, stop = _fit_and_stop_sets(model, cfg, opts)
    test = orbit_features(model, cfg, opts, opts.split)

    def sequences(orbits, per_object, seed):
        obj, views = draw_sequences(len(orbits["label"]), orbits["rep"].shape[1], cfg.views, per_object,
                                    torch.Generator().manual_seed(seed))
        return _aggregates(model, cfg, orbits, obj, views), orbits["label"][obj].long()

    fixed = sequences(fit, opts.views, opts.seed)  # drawn once: a fresh draw would rerun the aggregator every epoch
    torch.manual_seed(opts.seed)
    held = sequences(stop, opts.test_pairs, opts.seed + 2000) if stop is not None else None
    probe, epochs = train_probe(nn.Linear(fixed[0].shape[1], cfg.num_classes), lambda epoch: fixed, F.cross_entropy,
                                opts, held)
    x_test, y_test = sequences(test, opts.test_pairs, opts.seed + 1000)
    with torch.no_grad():
        top1 = float((probe(x_test).argmax(1) == y_test).float().mean())
    model.method.to(opts.device)
    return {"top1": top1, "chance": 1.0 / cfg.num_classes, "context_views": cfg.views - 1, "epochs_run": epochs,
            "train_objects": len(fit["label"]), "test_sequences": len(y_test)}


def _conditions(cfg: TrainConfig, orbits: dict[str, Any], obj, a, b) -> torch.Tensor:
    """Predictor conditions of pairs (object, view a, view b): the quaternion in the run's convention, then the hue
    deltas for the rotation+color condition."""
    condition = pair_targets("rotation", cfg, orbits, obj, a, b)
    if cfg.condition == "rotation+color":
        condition = torch.cat([condition, pair_targets("color", cfg, orbits, obj, a, b)], dim=-1)
    return condition


@torch.no_grad()
def _predictions(model: ImageModel, cfg: TrainConfig, opts: EvalOptions) -> dict[str, torch.Tensor]:
    """Embeddings of every view and their predictions from view 0 (j = 0..V-1), (N, V, E) each."""
    orbits = orbit_features(model, cfg, opts, opts.split)
    method = model.method.cpu()
    n, v, d = orbits["rep"].shape
    embeddings = method.target_embedding(orbits["rep"].reshape(n * v, d)).reshape(n, v, -1)
    obj = torch.arange(n).repeat_interleave(v)
    target = torch.arange(v).repeat(n)
    condition = _conditions(cfg, orbits, obj, torch.zeros_like(target), target)
    predicted = method.predict(embeddings[obj, 0], condition).reshape(n, v, -1)
    model.method.to(opts.device)
    return {"embeddings": embeddings, "predicted": predicted, "rotations": orbits["rotations"]}


def retrieval(model, cfg, opts):
    p = _predictions(model, cfg, opts)
    embeddings, predicted = F.normalize(p["embeddings"], dim=-1), F.normalize(p["predicted"], dim=-1)
    n, v, _ = embeddings.shape
    if v < 2:
        raise OrbitsetError("retrieval needs at least 2 views per object")
    similarity = torch.einsum("njd,nkd->njk", predicted, embeddings)  # query j (from view 0) against all views
    true = similarity.gather(2, torch.arange(v).expand(n, -1).unsqueeze(2))
    rank = 1 + (similarity > true).sum(dim=2).float()
    hits = {f"h@{k}": float((rank <= k).float().mean()) for k in (1, 2, 5, 10)}
    return {"mrr": float((1 / rank).mean()), **hits, "views": v, "objects": n, "queries": n * v,
            "predictor": bool(model.method.has_predictor)}


def pre(model, cfg, opts):
    p = _predictions(model, cfg, opts)
    n, v, _ = p["embeddings"].shape
    bank = F.normalize(p["embeddings"].reshape(n * v, -1), dim=-1)
    queries = F.normalize(p["predicted"].reshape(n * v, -1), dim=-1)
    nearest = torch.cat([(chunk @ bank.T).argmax(dim=1) for chunk in queries.split(4096)])  # bounded memory
    quats = geometry.matrix_to_quat(p["rotations"].double()).reshape(n * v, 4)
    error = 1 - (quats * quats[nearest]).sum(dim=1).pow(2)
    return {"pre": float(error.mean()), "queries": len(queries), "bank": len(bank)}


def scaled_identity_beta(embedding_a: torch.Tensor, embedding_b: torch.Tensor, w: torch.Tensor) -> float:
    """The least-squares beta of the predictor beta * w * I: argmin_beta sum_n ||beta w_n e_a,n - e_b,n||^2."""
    scaled = w[:, None] * embedding_a
    return float((scaled * embedding_b).sum() / (scaled * scaled).sum().clamp_min(1e-12))


def _relative_errors(predicted: torch.Tensor, target: torch.Tensor) -> float:
    return float(((predicted - target).norm(dim=1) / target.norm(dim=1).clamp_min(1e-12)).mean())


@torch.no_grad()
def image_equivariance(model: ImageModel, cfg: TrainConfig, opts: EvalOptions) -> dict[str, Any]:
    """Mean relative errors over `test_pairs` pairs per evaluated object: invariance of the invariant part and, with
    a predictor, ||W(q) e_a - e_b|| / ||e_b|| beside the identity's and the best beta * w * I's (w: the quaternion's
    real part), so that a predictor that learned only a scaling is visible."""
    orbits = orbit_features(model, cfg, opts, opts.split)
    method = model.method.cpu()
    n, v, d = orbits["rep"].shape
    obj, a, b = draw_pairs(n, v, opts.test_pairs, torch.Generator().manual_seed(opts.seed + 1000))
    rep_a, rep_b = orbits["rep"][obj, a], orbits["rep"][obj, b]
    inv_a, inv_b = method.invariant_part(rep_a), method.invariant_part(rep_b)
    result: dict[str, Any] = {"invariance_error": _relative_errors(inv_a, inv_b),
                              "reduction": "mean over view pairs of the same object", "pairs": len(obj)}
    if method.has_predictor:
        condition = _conditions(cfg, orbits, obj, a, b)
        e_a, e_b = method.target_embedding(rep_a), method.target_embedding(rep_b)
        beta = scaled_identity_beta(e_a, e_b, condition[:, 3])
        result.update({
            "equivariance_error": _relative_errors(method.predict(e_a, condition), e_b),
            "identity_error": _relative_errors(e_a, e_b),
            "scaled_identity_error": _relative_errors(beta * condition[:, 3:4] * e_a, e_b),
            "scaled_identity_beta": beta,
            "quaternion": cfg.quaternion,
        })
    model.method.to(opts.device)
    return result


# --- point clouds ------------------------------------------------------------------------------------------------


def _point_batches(cfg: TrainConfig, opts: EvalOptions, rotate: str | None, seed: int):
    from orbitset.loaders import PointLoader

    loader = PointLoader(opts.data or cfg.data, batch_size=opts.batch_size, split=opts.split,
                         num_workers=opts.num_workers, seed=seed, shuffle=False, num_points=cfg.num_points,
                         rotate=rotate, device=opts.device)
    return _batches(loader, opts.device)


@torch.no_grad()
def pointcloud(model, cfg, opts):
    results: dict[str, Any] = {"up_axis": "z", "train_rotation": cfg.rotation}
    for test in ("z", "so3"):
        correct = total = 0
        for batch in _point_batches(cfg, opts, test, opts.seed):
            correct += int((model.classifier(batch["points"].float()).argmax(1) == batch["label"]).sum())
            total += len(batch["label"])
        results[f"{cfg.rotation}/{test}"] = correct / max(total, 1)
    results["objects"] = total
    return results


@torch.no_grad()
def point_equivariance(model, cfg, opts):
    """Relative invariance errors of the global features and logits (and the equivariance error of VN's vector
    layers) under random SO(3) rotations of the test clouds: in float32, as the model runs, and with a float64 copy
    of the model (``*_float64``), which separates rounding from a broken invariance."""
    import copy

    classifier = model.classifier
    exact = copy.deepcopy(classifier).double()
    errors: dict[str, list[float]] = {}
    for index, batch in enumerate(_point_batches(cfg, opts, None, opts.seed)):
        points = batch["points"].float()
        rotations = equivariance.random_rotations(len(points), opts.seed + index, torch.float64).to(points.device)
        for suffix, net, dtype in (("", classifier, torch.float32), ("_float64", exact, torch.float64)):
            x, r = points.to(dtype), rotations.to(dtype)
            errors.setdefault(f"features{suffix}", []).append(equivariance.invariance_error(net.features, x, r))
            errors.setdefault(f"logits{suffix}", []).append(equivariance.invariance_error(net, x, r))
            if hasattr(net, "equivariant_features"):
                errors.setdefault(f"equivariant_layers{suffix}", []).append(
                    equivariance.equivariance_error(net.equivariant_features, x, r))
    result = {f"invariance_error_{k}": max(v) for k, v in errors.items() if not k.startswith("equivariant_layers")}
    for suffix in ("", "_float64"):
        if f"equivariant_layers{suffix}" in errors:
            result[f"equivariance_error{suffix}"] = max(errors[f"equivariant_layers{suffix}"])
    return {**result, "dtype": "float32", "rotations": "so3", "reduction": "max over test objects"}


def orbit_plot(model, cfg, opts, out: Path):
    from orbitset.models import plots

    if cfg.is_point_model:
        curves = plots.point_orbit_curves(model.classifier, _point_batches(cfg, opts, None, opts.seed), cfg, opts.data or cfg.data)
        plots.polar_orbit_plot(curves, out, title=f"{cfg.method} ({cfg.rotation}-trained): true-class probability")
        return {"figure": str(out), "mean_probability": {k: float(v.mean()) for k, v in curves["about_z"].items()}}
    orbits = orbit_features(model, cfg, opts, opts.split)
    stats = plots.image_orbit_plot(model.method.cpu(), orbits, out, f"{cfg.method}: invariant similarity along orbits")
    return {"figure": str(out), **stats}


IMAGE_FUNCTIONS = {"classify": classify, "rotation": rotation, "color": color, "view-rotation": view_rotation,
                   "aggregate": aggregate, "retrieval": retrieval, "pre": pre, "equivariance": image_equivariance}
POINT_FUNCTIONS = {"pointcloud": pointcloud, "equivariance": point_equivariance}


def evaluate(task: str, run: str | os.PathLike, opts: EvalOptions) -> dict[str, Any]:
    """Run `task` on the run's last checkpoint; write and return ``RUN/eval/TASK.json`` (``TASK-PART.json`` for
    the part "inv" or "equi")."""
    from orbitset.manifests.model import write_json_atomic

    if task not in TASKS:
        raise OrbitsetError(f"unknown evaluation {task!r}; choose one of {', '.join(TASKS)}")
    opts.check()
    cfg, model = load_run(run, opts.device)
    cfg.out = str(run)  # where the run is now (it may have moved since training)
    allowed = POINT_TASKS if cfg.is_point_model else IMAGE_TASKS
    if task not in allowed:
        kind = "point-cloud" if cfg.is_point_model else "image"
        raise OrbitsetError(f"{task!r} does not apply to the {kind} run {run} ({cfg.method}); use one of {', '.join(allowed)}")
    if opts.part != "all" and task not in PART_TASKS:
        raise OrbitsetError(f"{task!r} works in the method's own embedding space; --part {opts.part} applies only to "
                            f"{', '.join(PART_TASKS)}")
    torch.manual_seed(opts.seed)
    out_dir = Path(run) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    if task == "orbit-plot":
        metrics = orbit_plot(model, cfg, opts, out_dir / "orbit-plot.png")
    else:
        metrics = (POINT_FUNCTIONS if cfg.is_point_model else IMAGE_FUNCTIONS)[task](model, cfg, opts)
    result = {"task": task, "run": str(run), "method": cfg.method, "data": opts.data or cfg.data, "split": opts.split,
              "part": opts.part, "probe_epochs": opts.probe_epochs, **metrics}
    write_json_atomic(out_dir / (f"{task}.json" if opts.part == "all" else f"{task}-{opts.part}.json"), result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """A two-column text table of a result's numbers."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in result.items() if not isinstance(v, dict)]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
