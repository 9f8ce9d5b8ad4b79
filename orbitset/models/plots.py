"""Figures of the evaluations: NERO-style orbit plots and the summary bars of `orbitset report` (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from orbitset import geometry
from orbitset.models import equivariance


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def x_rotations(angles: torch.Tensor) -> torch.Tensor:
    """Rotations about the world X axis (a horizontal axis: tilts the object's up direction)."""
    cos, sin, zero, one = torch.cos(angles), torch.sin(angles), torch.zeros_like(angles), torch.ones_like(angles)
    return torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=-1).reshape(-1, 3, 3)


@torch.no_grad()
def point_orbit_curves(classifier, batches: Iterable[dict[str, torch.Tensor]], cfg, data: str, steps: int = 72) -> dict[str, Any]:
    """True-class probability of one validation object per class, rotated about Z (up) and about X."""
    from orbitset.manifests.model import load_manifest

    classes = load_manifest(data).classes
    chosen: dict[int, torch.Tensor] = {}
    for batch in batches:
        for points, label in zip(batch["points"], batch["label"].tolist()):
            chosen.setdefault(label, points.float())
    angles = torch.linspace(0, 2 * math.pi, steps + 1)
    curves: dict[str, Any] = {"angles": angles, "about_z": {}, "about_x": {}}
    for axis, rotations in (("about_z", equivariance.z_rotations(angles)), ("about_x", x_rotations(angles))):
        for label, points in sorted(chosen.items()):
            clouds = equivariance.act_points(points.expand(len(angles), -1, -1), rotations.to(points.device))
            probability = F.softmax(classifier(clouds), dim=1)[:, label]
            curves[axis][classes[label]] = probability.cpu()
    return curves


def polar_orbit_plot(curves: dict[str, Any], out: Path, title: str) -> Path:
    """Two polar panels (about Z, about X): radius = true-class probability, one curve per class."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, subplot_kw={"projection": "polar"}, figsize=(11, 5.5))
    for axis, name in zip(axes, ("about_z", "about_x")):
        for label, probability in curves[name].items():
            axis.plot(curves["angles"].numpy(), probability.numpy(), label=label, linewidth=1.2)
        axis.set_ylim(0, 1)
        axis.set_title(f"rotation {name.replace('_', ' ').upper()[-1]} axis" + (" (up)" if name == "about_z" else ""))
    axes[1].legend(loc="center left", bbox_to_anchor=(1.1, 0.5), fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


@torch.no_grad()
def image_orbit_plot(method, orbits: dict[str, torch.Tensor], out: Path, title: str) -> dict[str, float]:
    """Cosine similarity of the invariant part between view 0 and every other view against the rotation angle
    between them, per class; a perfectly invariant model draws a flat line at 1."""
    plt = _pyplot()
    n, v, d = orbits["rep"].shape
    invariant = F.normalize(method.invariant_part(orbits["rep"].reshape(n * v, d)).reshape(n, v, -1), dim=-1)
    similarity = (invariant[:, :1] * invariant[:, 1:]).sum(-1)
    angle = geometry.geodesic_angle(orbits["rotations"][:, :1].double().expand(-1, v - 1, -1, -1),
                                    orbits["rotations"][:, 1:].double())
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for label in orbits["label"].unique().tolist():
        mask = orbits["label"] == label
        axis.scatter(torch.rad2deg(angle[mask]).flatten().numpy(), similarity[mask].flatten().numpy(), s=6,
                     label=f"class {label}")
    axis.set_xlabel("rotation angle between views (degrees)")
    axis.set_ylabel("cosine similarity of invariant part")
    axis.set_title(title)
    axis.legend(fontsize=7, markerscale=2, ncol=2)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return {"mean_similarity": float(similarity.mean())}


def metric_bars(table: dict[str, dict[str, float]], out: Path, title: str, columns: int = 4) -> Path:
    """One panel per metric (`columns` to a row), one bar per run."""
    plt = _pyplot()
    metrics = sorted({m for row in table.values() for m in row})
    rows, cols = -(-len(metrics) // columns), min(columns, len(metrics))
    figure, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), squeeze=False)
    for axis in axes.flat[len(metrics):]:
        axis.set_visible(False)
    for axis, metric in zip(axes.flat, metrics):
        runs = [r for r in table if metric in table[r]]
        axis.bar(range(len(runs)), [table[r][metric] for r in runs], color="tab:blue")
        axis.set_xticks(range(len(runs)), runs, rotation=40, ha="right", fontsize=8)
        axis.set_title(metric, fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
