"""Small, valid datasets built on the fly for tests and benchmarks (no renderer needed).

`write_synthetic_dataset` writes object samples whose images are real baseline JPEGs (a floor whose colour is the
view's floor hue, with an object silhouette whose position depends on the view's rotation), 3DIEBench-style
latents (7 factors, same order and ranges) and the matching rotations, sharded by split, with a manifest.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from orbitset import geometry
from orbitset.errors import UsageError
from orbitset.manifests.model import Factor, Manifest, software_versions
from orbitset.progress import object_progress
from orbitset.threediebench import FACTORS as FACTORS_3DIEBENCH
from orbitset.schema import ObjectSample
from orbitset.shards import ShardWriter


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """uint8 (H, W, 3) RGB -> baseline (non-progressive) JPEG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="JPEG", quality=quality, progressive=False)
    return buffer.getvalue()


def synthetic_view(latents: np.ndarray, rotation: np.ndarray, class_index: int, size: int) -> np.ndarray:
    """A cheap stand-in render: floor colour from the floor hue, a blob placed by the rotated object axes."""
    from orbitset.render.scene import hsv_to_rgb

    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = np.array(hsv_to_rgb(float(latents[3]), 0.6, 0.6)) * 255
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1) - 0.5
    for axis, weight in enumerate((0.30, 0.2, 0.1)):
        cx, cy = rotation[0, axis] * weight, rotation[1, axis] * weight
        radius = 0.06 + 0.02 * ((class_index + axis) % 3)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
        image[inside] = np.array(hsv_to_rgb(float(latents[6]) + axis / 3, 1.0, 0.8)) * 255
    return image


def synthetic_points(class_index: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 6) float32 points and unit normals on an ellipsoid whose axis lengths depend on the class."""
    radii = np.array([1.0, 0.7, 0.4])[np.roll(np.arange(3), class_index % 3)] * (1 + 0.3 * (class_index // 3))
    directions = rng.standard_normal((count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    normals = directions / radii
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return np.concatenate([directions * radii, normals], axis=1).astype(np.float32)


def synthetic_sample(class_name: str, class_index: int, object_index: int, views: int, size: int, seed: int,
                     points: int = 0) -> ObjectSample:
    """One valid object sample with `views` JPEG views of `size` px and 3DIEBench-style latents (and `points`
    surface points with normals when non-zero)."""
    rng = np.random.default_rng([seed, class_index, object_index])
    lows = np.array([f[2] for f in FACTORS_3DIEBENCH])
    highs = np.array([f[3] for f in FACTORS_3DIEBENCH])
    latents = lows + (highs - lows) * rng.random((views, len(FACTORS_3DIEBENCH)))
    rotations = geometry.euler_to_matrix(latents[:, :3])
    images = [encode_jpeg(synthetic_view(latents[v], rotations[v], class_index, size)) for v in range(views)]
    scene_k = geometry.intrinsics_from_fov(0.691111, size, size)
    extrinsics = geometry.look_at(geometry.spherical_to_cartesian(2.5, math.pi / 4, math.pi / 2))
    meta = {
        "class_name": class_name,
        "class_index": class_index,
        "num_views": views,
        "factor_names": [f[0] for f in FACTORS_3DIEBENCH],
        "factor_units": [f[1] for f in FACTORS_3DIEBENCH],
        "source_id": f"synthetic/{class_name}/{object_index}",
        "renderer": "synthetic",
        "seed": seed,
    }
    return ObjectSample(
        key=f"{class_name}__{object_index:04d}",
        images=images,
        latents=latents,
        rotations=rotations,
        camera={"width": size, "height": size, "K": scene_k.tolist(), "extrinsics": extrinsics.tolist()},
        meta=meta,
        points=synthetic_points(class_index, points, rng) if points else None,
    )


def write_synthetic_dataset(
    out: str | Path,
    classes: int = 3,
    objects_per_class: int = 4,
    views: int = 6,
    size: int = 32,
    objects_per_shard: int = 4,
    val_fraction: float = 0.25,
    seed: int = 0,
    name: str = "synthetic",
    points: int = 0,
    progress: bool = False,
) -> Manifest:
    """Write a dataset (shards per split, their sidecars and manifest.json) to `out` and return its manifest.

    Every `round(1 / val_fraction)`-th object of a class goes to ``val``; the rest to ``train``. Samples are written
    as they are made (``train`` first, class by class), so memory does not grow with the dataset; `progress` shows
    objects written, objects/s and ETA on stderr.
    """
    for argument, value in (("classes", classes), ("objects_per_class", objects_per_class), ("views", views), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"write_synthetic_dataset: {argument} must be an integer of at least 1, got {value!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"write_synthetic_dataset: val_fraction must be in [0, 1), got {val_fraction!r}")
    class_names = [f"class{c}" for c in range(classes)]
    every = max(2, round(1 / val_fraction)) if val_fraction > 0 else 0

    def split_of(object_index: int) -> str:
        return "val" if every and object_index % every == every - 1 else "train"

    writer = ShardWriter(out, objects_per_shard=objects_per_shard, identity={"seed": seed})
    with writer, object_progress(classes * objects_per_class, "write synthetic", progress) as bar:
        for split in ("train", "val"):  # each sample is rendered, written and dropped: memory is one sample
            for class_index, class_name in enumerate(class_names):
                for object_index in (i for i in range(objects_per_class) if split_of(i) == split):
                    sample = synthetic_sample(class_name, class_index, object_index, views, size, seed, points)
                    writer.add(split, sample.key, sample.encode())
                    bar.update(1)
    return writer.write_manifest(
        name=name,
        classes=class_names,
        factors=[Factor(n, u, lo, hi) for n, u, lo, hi in FACTORS_3DIEBENCH],
        seed=seed,
        recipe={"name": "synthetic", "views": views, "size": size},
        software=software_versions(renderer="synthetic"),
    )
