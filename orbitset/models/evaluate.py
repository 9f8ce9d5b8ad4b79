"""Standard evaluations of a trained run, on frozen features (3DIEBench protocol, REFERENCE.md).

Tasks (`TASKS`); each returns a dict of metrics and is written to ``RUN/eval/TASK.json`` by `evaluate`:
- ``classify``: linear probe on the representation, `views` random views per object, top-1 on validation objects;
- ``rotation``: MLP probe (2D -> 1024 -> 1024 -> 4) on [rep_a, rep_b] predicting the relative quaternion; R^2 with
  one global mean (`orbitset.models.losses.r2_score`), reported with the R^2 of the constant predictor (the
  per-component training mean, ``r2_mean_baseline``), which a useful probe must beat;

Probes are fitted on features computed once (frozen trunk) with AdamW; a slice of the *training* objects
(`holdout_fraction`, whole objects) is held out for early stopping (`patience` epochs), never the evaluated split.
- ``color``: the same probe predicting the (floor, spot) hue deltas;
- ``retrieval``: predict view j's embedding from view 0's and rank the true view among the object's views by cosine
  similarity (MRR, H@1, H@5); invariant methods predict with the identity;
- ``pre``: the same predictions, nearest neighbour over every embedding of the split; error = mean(1 - <q, q_nn>^2)
  between the target view's rotation quaternion and the neighbour's;
- ``pointcloud``: accuracy of a point-cloud run under test rotations about Z (orbitset's up axis) and in SO(3); keys
  are ``TRAIN/TEST`` protocol names, e.g. ``z/z`` and ``z/so3``;
- ``equivariance``: relative invariance error ||f(g x) - f(x)|| / ||f(x)|| of the invariant parts and, where the model
  has a predictor or equivariant layers, the equivariance error;
- ``orbit-plot``: a NERO-style figure of the model's output along orbits (``RUN/eval/orbit-plot.png``).
"""

from __future__ import annotations

import json
import math
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
from orbitset.models.losses import r2_score
from orbitset.models.methods import hue_delta_columns
from orbitset.models.train import ImageModel, TrainConfig, load_run

IMAGE_TASKS = ("classify", "rotation", "color", "retrieval", "pre", "equivariance", "orbit-plot")
POINT_TASKS = ("pointcloud", "equivariance", "orbit-plot")
TASKS = tuple(dict.fromkeys(IMAGE_TASKS + POINT_TASKS))


@dataclass
class EvalOptions:
    """Probe budget and data options (defaults: the published protocol: Adam 1e-3, batch 256, 300 epochs)."""

    data: str | None = None
    split: str = "val"
    device: str = "cpu"
    batch_size: int = 256
    probe_epochs: int = 300
    probe_lr: float = 1e-3
    probe_hidden: int = 1024
    probe_weight_decay: float = 0.0
    holdout_fraction: float = 0.0
    patience: int = 10
    views: int = 1
    pairs_per_object: int = 1
    seed: int = 0
    num_workers: int = 0


# --- feature extraction ------------------------------------------------------------------------------------------


def _batches(loader, device):
    for batch in loader:
        yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def pair_features(model: ImageModel, cfg: TrainConfig, opts: EvalOptions, split: str, seed: int) -> dict[str, torch.Tensor]:
    """Representations of both views of `pairs_per_object` pairs per object, with their targets."""
    from orbitset.loaders import PairLoader

    loader = PairLoader(opts.data or cfg.data, batch_size=opts.batch_size, split=split, num_workers=opts.num_workers,
                        seed=seed, shuffle=False, size=cfg.size, pairs_per_object=opts.pairs_per_object, device=opts.device)
    out: dict[str, list[torch.Tensor]] = {"rep_a": [], "rep_b": [], "rel_rotation": [], "rel_latents": [], "label": []}
    keys: list[str] = []
    for batch in _batches(loader, opts.device):
        keys.extend(batch["key"])
        out["rep_a"].append(model.method.representation(batch["view_a"]).float().cpu())
        out["rep_b"].append(model.method.representation(batch["view_b"]).float().cpu())
        for key in ("rel_rotation", "rel_latents", "label"):
            out[key].append(batch[key].cpu())
    if not out["label"]:
        raise OrbitsetError(f"the {split!r} split of {opts.data or cfg.data} has no objects")
    features = {k: torch.cat(v) for k, v in out.items()}
    features["rel_latent_names"] = list(loader.rel_latent_names)  # type: ignore[assignment]
    features["keys"] = keys  # type: ignore[assignment]
    return features


@torch.no_grad()
def view_features(model: ImageModel, cfg: TrainConfig, opts: EvalOptions, split: str, seed: int) -> dict[str, torch.Tensor]:
    """Representations of `opts.views` random views per object (one pass of the single-view loader per view)."""
    from orbitset.loaders import ViewLoader

    reps, labels, keys = [], [], []
    for repeat in range(opts.views):
        loader = ViewLoader(opts.data or cfg.data, batch_size=opts.batch_size, mode="single", split=split,
                            num_workers=opts.num_workers, seed=seed + repeat, shuffle=False, size=cfg.size, device=opts.device)
        for batch in _batches(loader, opts.device):
            reps.append(model.method.representation(batch["view"]).float().cpu())
            keys.extend(batch["key"])
            labels.append(batch["label"].cpu())
    if not labels:
        raise OrbitsetError(f"the {split!r} split of {opts.data or cfg.data} has no objects")
    return {"rep": torch.cat(reps), "label": torch.cat(labels), "keys": keys}


@torch.no_grad()
def orbit_features(model: ImageModel, cfg: TrainConfig, opts: EvalOptions, split: str) -> dict[str, torch.Tensor]:
    """Every view of every object: representation (N, V, D), rotations (N, V, 3, 3), latents, labels."""
    from orbitset.loaders import ViewLoader

    loader = ViewLoader(opts.data or cfg.data, batch_size=max(1, opts.batch_size // 16), mode="all", split=split,
                        num_workers=opts.num_workers, seed=opts.seed, shuffle=False, size=cfg.size, device=opts.device)
    out: dict[str, list[torch.Tensor]] = {"rep": [], "rotations": [], "latents": [], "label": []}
    for batch in _batches(loader, opts.device):
        views = batch["views"]
        n, v = views.shape[:2]
        out["rep"].append(model.method.representation(views.flatten(0, 1)).float().reshape(n, v, -1).cpu())
        out["rotations"].append(batch["rotations"].cpu())
        out["latents"].append(batch["latents"].cpu())
        out["label"].append(batch["label"].cpu())
    if not out["label"]:
        raise OrbitsetError(f"the {split!r} split of {opts.data or cfg.data} has no objects")
    return {k: torch.cat(v) for k, v in out.items()}


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


def train_probe(probe: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: Callable, opts: EvalOptions,
                keys: list[str] | None = None) -> nn.Module:
    """Fit `probe` on fixed features with AdamW (`probe_lr`, `probe_weight_decay`), mini-batches of `batch_size`, up
    to `probe_epochs` epochs.

    With `keys` (the object of every row) and `holdout_fraction` > 0, that fraction of the training objects is held
    out and the probe keeps the weights of its best held-out loss, stopping after `patience` epochs without
    improvement. Features are standardised with the fitting rows' statistics first (`Standardize`, part of the
    returned probe)."""
    fit = torch.ones(len(inputs), dtype=torch.bool)
    if keys is not None and opts.holdout_fraction > 0:
        fit = ~holdout_mask(keys, opts.holdout_fraction, opts.seed)
    x_fit, y_fit, x_held, y_held = inputs[fit], targets[fit], inputs[~fit], targets[~fit]
    probe = nn.Sequential(Standardize(x_fit), probe)
    generator = torch.Generator().manual_seed(opts.seed)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=opts.probe_lr, weight_decay=opts.probe_weight_decay)
    best, best_state, since_best = float("inf"), None, 0
    for _ in range(opts.probe_epochs):
        probe.train()
        order = torch.randperm(len(x_fit), generator=generator)
        for start in range(0, len(x_fit), opts.batch_size):
            index = order[start : start + opts.batch_size]
            if len(index) < 2:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss_fn(probe(x_fit[index]), y_fit[index]).backward()
            optimizer.step()
        if len(x_held):
            with torch.no_grad():
                held_loss = float(loss_fn(probe.eval()(x_held), y_held))
            if held_loss < best:
                best, best_state, since_best = held_loss, {k: v.clone() for k, v in probe.state_dict().items()}, 0
            else:
                since_best += 1
                if since_best >= opts.patience:
                    break
    if best_state is not None:
        probe.load_state_dict(best_state)
    return probe.eval()


def mlp_probe(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The regression probe of 3DIEBench: in -> hidden -> hidden -> out with ReLU."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out_dim))


def classify(model: ImageModel, cfg: TrainConfig, opts: EvalOptions) -> dict[str, Any]:
    train = view_features(model, cfg, opts, "train", opts.seed)
    test = view_features(model, cfg, opts, opts.split, opts.seed + 1000)
    torch.manual_seed(opts.seed)
    probe = train_probe(nn.Linear(train["rep"].shape[1], cfg.num_classes), train["rep"], train["label"].long(),
                        F.cross_entropy, opts, train["keys"])
    with torch.no_grad():
        top1 = float((probe(test["rep"]).argmax(1) == test["label"]).float().mean())
    return {"top1": top1, "chance": 1.0 / cfg.num_classes, "train_samples": len(train["rep"]),
            "test_samples": len(test["rep"])}


def _regression(model: ImageModel, cfg: TrainConfig, opts: EvalOptions, target: Callable) -> dict[str, Any]:
    train = pair_features(model, cfg, opts, "train", opts.seed)
    test = pair_features(model, cfg, opts, opts.split, opts.seed + 1000)
    x_train = torch.cat([train["rep_a"], train["rep_b"]], 1)
    x_test = torch.cat([test["rep_a"], test["rep_b"]], 1)
    y_train, y_test = target(train).float(), target(test).float()
    torch.manual_seed(opts.seed)
    # The probe predicts the offset from the training mean, so that it starts at the constant predictor.
    mean = y_train.mean(dim=0)
    fitted = train_probe(mlp_probe(x_train.shape[1], opts.probe_hidden, y_train.shape[1]), x_train, y_train - mean,
                         F.mse_loss, opts, train["keys"])

    def probe(x: torch.Tensor) -> torch.Tensor:
        return fitted(x) + mean

    with torch.no_grad():
        r2_test = r2_score(probe(x_test), y_test)
        r2_train = r2_score(probe(x_train), y_train)
    baseline = r2_score(mean.expand_as(y_test), y_test)
    return {"r2": r2_test, "r2_train": r2_train, "r2_mean_baseline": baseline, "train_pairs": len(x_train),
            "test_pairs": len(x_test)}


def rotation(model, cfg, opts):
    return _regression(model, cfg, opts, lambda f: f["rel_rotation"])


def color(model, cfg, opts):
    return _regression(model, cfg, opts, lambda f: f["rel_latents"][:, hue_delta_columns(f["rel_latent_names"])])


def _orbit_condition(cfg: TrainConfig, rotations: torch.Tensor, latents: torch.Tensor, factor_names: list[str]) -> torch.Tensor:
    """Conditions from view 0 to every view: (N, V, C) canonical quaternions of R_0^T R_j (+ hue deltas)."""
    relative = geometry.relative_rotation(rotations[:, :1].double(), rotations.double())
    condition = geometry.canonical_quat(geometry.matrix_to_quat(relative)).float()
    if cfg.condition == "rotation+color":
        columns = hue_delta_columns(factor_names)
        hues = latents[..., columns] - latents[:, :1, columns]
        condition = torch.cat([condition, hues.float()], dim=-1)
    return condition


@torch.no_grad()
def _predictions(model: ImageModel, cfg: TrainConfig, opts: EvalOptions) -> dict[str, torch.Tensor]:
    from orbitset.manifests.model import load_manifest

    orbits = orbit_features(model, cfg, opts, opts.split)
    method = model.method.cpu()
    n, v, d = orbits["rep"].shape
    embeddings = method.target_embedding(orbits["rep"].reshape(n * v, d)).reshape(n, v, -1)
    factor_names = [f.name for f in load_manifest(opts.data or cfg.data).factors]
    condition = _orbit_condition(cfg, orbits["rotations"], orbits["latents"], factor_names)
    source = embeddings[:, :1].expand(-1, v, -1).reshape(n * v, -1)
    predicted = method.predict(source, condition.reshape(n * v, -1)).reshape(n, v, -1)
    model.method.to(opts.device)
    return {"embeddings": embeddings, "predicted": predicted, "rotations": orbits["rotations"]}


def retrieval(model, cfg, opts):
    p = _predictions(model, cfg, opts)
    embeddings, predicted = F.normalize(p["embeddings"], dim=-1), F.normalize(p["predicted"], dim=-1)
    n, v, _ = embeddings.shape
    if v < 2:
        raise OrbitsetError("retrieval needs at least 2 views per object")
    similarity = torch.einsum("njd,nkd->njk", predicted, embeddings)[:, 1:]  # queries j >= 1 against all views
    true = similarity.gather(2, torch.arange(1, v).expand(n, -1).unsqueeze(2))
    rank = 1 + (similarity > true).sum(dim=2).float()
    return {"mrr": float((1 / rank).mean()), "h@1": float((rank <= 1).float().mean()),
            "h@5": float((rank <= 5).float().mean()), "views": v, "objects": n,
            "predictor": bool(model.method.has_predictor)}


def pre(model, cfg, opts):
    p = _predictions(model, cfg, opts)
    n, v, _ = p["embeddings"].shape
    bank = F.normalize(p["embeddings"].reshape(n * v, -1), dim=-1)
    queries = F.normalize(p["predicted"][:, 1:].reshape(n * (v - 1), -1), dim=-1)
    nearest = (queries @ bank.T).argmax(dim=1)
    quats = geometry.matrix_to_quat(p["rotations"].double()).reshape(n * v, 4)
    target = quats.reshape(n, v, 4)[:, 1:].reshape(-1, 4)
    error = 1 - (target * quats[nearest]).sum(dim=1).pow(2)
    return {"pre": float(error.mean()), "queries": len(queries), "bank": len(bank)}


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
def equivariance_eval(model, cfg, opts):
    if cfg.is_point_model:
        classifier = model.classifier
        errors: dict[str, list[float]] = {}
        for index, batch in enumerate(_point_batches(cfg, opts, None, opts.seed)):
            points = batch["points"].float()
            rotations = equivariance.random_rotations(len(points), opts.seed + index).to(points.device)
            errors.setdefault("features", []).append(equivariance.invariance_error(classifier.features, points, rotations))
            errors.setdefault("logits", []).append(equivariance.invariance_error(classifier, points, rotations))
            if hasattr(classifier, "equivariant_features"):
                errors.setdefault("equivariant_layers", []).append(
                    equivariance.equivariance_error(classifier.equivariant_features, points, rotations))
        result = {f"invariance_error_{k}": max(v) for k, v in errors.items() if k != "equivariant_layers"}
        if "equivariant_layers" in errors:
            result["equivariance_error"] = max(errors["equivariant_layers"])
        return {**result, "dtype": "float32", "rotations": "so3", "reduction": "max over test objects"}
    features = pair_features(model, cfg, opts, opts.split, opts.seed)
    method = model.method.cpu()
    inv_a, inv_b = method.invariant_part(features["rep_a"]), method.invariant_part(features["rep_b"])
    result = {"invariance_error": float(((inv_b - inv_a).norm(dim=1) / inv_a.norm(dim=1).clamp_min(1e-12)).mean()),
              "reduction": "mean over view pairs of the same object"}
    if method.has_predictor:
        condition = model.pair_condition({"rel_rotation": features["rel_rotation"], "rel_latents": features["rel_latents"]})
        e_a, e_b = method.target_embedding(features["rep_a"]), method.target_embedding(features["rep_b"])
        scale = e_b.norm(dim=1).clamp_min(1e-12)
        result["equivariance_error"] = float(((method.predict(e_a, condition) - e_b).norm(dim=1) / scale).mean())
        result["identity_error"] = float(((e_a - e_b).norm(dim=1) / scale).mean())
    model.method.to(opts.device)
    return result


def orbit_plot(model, cfg, opts, out: Path):
    from orbitset.models import plots

    if cfg.is_point_model:
        curves = plots.point_orbit_curves(model.classifier, _point_batches(cfg, opts, None, opts.seed), cfg, opts.data or cfg.data)
        plots.polar_orbit_plot(curves, out, title=f"{cfg.method} ({cfg.rotation}-trained): true-class probability")
        return {"figure": str(out), "mean_probability": {k: float(v.mean()) for k, v in curves["about_z"].items()}}
    orbits = orbit_features(model, cfg, opts, opts.split)
    stats = plots.image_orbit_plot(model.method.cpu(), orbits, out, f"{cfg.method}: invariant similarity along orbits")
    return {"figure": str(out), **stats}


IMAGE_FUNCTIONS = {"classify": classify, "rotation": rotation, "color": color, "retrieval": retrieval, "pre": pre,
                   "equivariance": equivariance_eval}
POINT_FUNCTIONS = {"pointcloud": pointcloud, "equivariance": equivariance_eval}


def evaluate(task: str, run: str | os.PathLike, opts: EvalOptions) -> dict[str, Any]:
    """Run `task` on the run's last checkpoint; write and return ``RUN/eval/TASK.json``."""
    from orbitset.manifests.model import write_json_atomic

    if task not in TASKS:
        raise OrbitsetError(f"unknown evaluation {task!r}; choose one of {', '.join(TASKS)}")
    cfg, model = load_run(run, opts.device)
    allowed = POINT_TASKS if cfg.is_point_model else IMAGE_TASKS
    if task not in allowed:
        kind = "point-cloud" if cfg.is_point_model else "image"
        raise OrbitsetError(f"{task!r} does not apply to the {kind} run {run} ({cfg.method}); use one of {', '.join(allowed)}")
    torch.manual_seed(opts.seed)
    out_dir = Path(run) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    if task == "orbit-plot":
        metrics = orbit_plot(model, cfg, opts, out_dir / "orbit-plot.png")
    else:
        metrics = (POINT_FUNCTIONS if cfg.is_point_model else IMAGE_FUNCTIONS)[task](model, cfg, opts)
    result = {"task": task, "run": str(run), "method": cfg.method, "data": opts.data or cfg.data, "split": opts.split,
              "probe_epochs": opts.probe_epochs, **metrics}
    write_json_atomic(out_dir / f"{task}.json", result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """A two-column text table of a result's numbers."""
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in result.items() if not isinstance(v, dict)]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
