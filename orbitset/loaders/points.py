"""PointLoader: surface point clouds with normals, subsampled and optionally rotated, with the rotation returned."""

from __future__ import annotations

import math

import numpy as np

from orbitset import geometry
from orbitset.errors import ShardError, UsageError
from orbitset.loaders.loader import ObjectLoader
from orbitset.loaders.objects import ObjectFields
from orbitset.loaders.sources import Source

SAMPLINGS = ("fps", "random")
ROTATIONS = (None, "so3", "z", "view")


def rotation_about_z(angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about +Z (the world's up axis)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class PointLoader(ObjectLoader):
    """Batches of point clouds from ``points.npy`` (N, 6: xyz and unit normal in the object's canonical frame).

    ``sampling="fps"`` keeps the first `num_points` points (the stored farthest-point-sampling order);
    ``"random"`` draws `num_points` without replacement. ``rotate``: None (identity), "so3" (uniform random rotation),
    "z" (uniform random angle about +Z, the up axis) or "view" (the object rotation of a random view, i.e. the pose the
    object has in that view's image). Random choices come from a generator seeded by (seed, epoch, key).
    Keys: ``points`` (N, P, 3) = R p, ``normals`` (N, P, 3) = R n, ``rotation`` (N, 3, 3) R applied, ``label``,
    ``key``. Other options as `PairLoader` (distribution, resumption, errors, verification).
    """

    record_fields = ("key", "label", "points", "normals", "rotation")

    def __init__(self, source: Source, batch_size: int, *, num_points: int = 1024, sampling: str = "fps",
                 rotate: str | None = None, **kwargs):
        if sampling not in SAMPLINGS:
            raise UsageError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if rotate not in ROTATIONS:
            raise UsageError(f"rotate must be one of {ROTATIONS}, got {rotate!r}")
        if num_points < 1:
            raise UsageError(f"num_points must be at least 1, got {num_points}")
        self.num_points, self.sampling, self.rotate = num_points, sampling, rotate
        kwargs.pop("size", None)  # accepted for a uniform signature; point clouds have no image size
        super().__init__(source, batch_size, **kwargs)
        if not self._first_object().has("points.npy"):
            raise ShardError(f"the samples of {self.shards[0].name} have no points.npy; render the dataset with point clouds")

    def _read_object(self, obj: ObjectFields, subs: list[int], epoch: int) -> list[tuple]:
        if not obj.has("points.npy"):
            raise ShardError(f"{obj.where()} has no points.npy")
        cloud = obj.array("points.npy")
        if cloud.ndim != 2 or cloud.shape[1] != 6:
            raise ShardError(f"{obj.where('points.npy')} has shape {cloud.shape}, not (N, 6)")
        if len(cloud) < self.num_points:
            raise ShardError(f"{obj.where()} has {len(cloud)} points, fewer than num_points={self.num_points}")
        rng = self._rng(epoch, obj.key)
        chosen = cloud[: self.num_points] if self.sampling == "fps" else cloud[np.sort(rng.choice(len(cloud), self.num_points, replace=False))]
        if self.rotate == "so3":
            rotation = geometry.random_rotation(1, rng)[0]
        elif self.rotate == "z":
            rotation = rotation_about_z(rng.uniform(0, 2 * math.pi))
        elif self.rotate == "view":
            rotation = obj.array("rotations.npy")[int(rng.integers(obj.num_views))]
        else:
            rotation = np.eye(3)
        xyz, normals = chosen[:, :3].astype(np.float64), chosen[:, 3:6].astype(np.float64)
        return [(obj.key, obj.meta["class_index"], xyz @ rotation.T, normals @ rotation.T, rotation)]
