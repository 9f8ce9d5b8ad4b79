"""Surface point clouds of an object, in its canonical normalised frame, ordered by farthest-point sampling.

`surface_points(mesh, count, rng)` draws `count` points uniformly over the surface area (faces chosen in proportion
to their area, uniform barycentric coordinates), each with the unit normal of its face, from the caller's generator
(the render job seeds it from (dataset seed, object key): `orbitset.render.job.points_rng`). The points are then reordered
so that the first k of them, for every k, are a farthest-point sample of the cloud (greedy FPS starting from the
point farthest from the centroid): ``points[:1024]`` and ``points[:512]`` are FPS subsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from orbitset.errors import RenderError

if TYPE_CHECKING:
    import trimesh


def farthest_point_order(xyz: np.ndarray) -> np.ndarray:
    """Indices ordering (N, 3) points by greedy farthest-point sampling (O(N^2) time, O(N) memory)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    count = len(xyz)
    order = np.empty(count, dtype=np.int64)
    order[0] = int(np.argmax(np.linalg.norm(xyz - xyz.mean(axis=0), axis=1)))
    distance = np.linalg.norm(xyz - xyz[order[0]], axis=1)
    for i in range(1, count):
        order[i] = int(np.argmax(distance))
        np.minimum(distance, np.linalg.norm(xyz - xyz[order[i]], axis=1), out=distance)
    return order


def surface_points(mesh: "trimesh.Trimesh", count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 6) float32: xyz and unit face normal of area-weighted surface samples, in FPS order."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    triangles = vertices[faces]
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    doubled_area = np.linalg.norm(cross, axis=1)
    total = doubled_area.sum()
    if not np.isfinite(total) or total <= 0:
        raise RenderError("cannot sample surface points: the mesh has zero surface area")
    cumulative = np.cumsum(doubled_area) / total
    chosen = np.minimum(np.searchsorted(cumulative, rng.random(count), side="right"), len(faces) - 1)
    u, v = rng.random(count), rng.random(count)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    tri = triangles[chosen]
    xyz = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    normals = cross[chosen] / np.maximum(doubled_area[chosen], 1e-300)[:, None]
    points = np.concatenate([xyz, normals], axis=1)
    return points[farthest_point_order(xyz)].astype(np.float32)
