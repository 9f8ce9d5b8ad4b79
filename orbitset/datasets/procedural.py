"""The embedded default asset source: procedurally generated, chirally asymmetric objects.

Every class is built from a few closed primitives (boxes, cylinders, frusta, ellipsoids, tori, convex hulls) joined
by a boolean union (trimesh with the manifold3d engine), so every mesh is watertight with outward normals.

Conventions:

- Frame: right-handed, Z up; objects that have an up (chairs, lamps, tables, houses) stand on ``z = 0`` facing -Y.
- Units: raw meshes are in arbitrary units of about one; `AssetSource.load` centres them and scales them to a unit
  bounding-box diagonal.
- Asymmetry: no object is mapped onto itself by any non-trivial rotation. Each class carries large features placed
  off every symmetry axis (a handle off-centre in height, a single armrest, a shelf under half a table, a fin, a
  one-sided spoiler, ...), so that rotation targets are never ambiguous. Mirror images are allowed to differ too.
- Instances: instance ``i`` of a class draws its shape parameters (sizes, proportions, part counts) from
  ``np.random.default_rng([crc32(class_name), i])``, so a mesh depends only on (class, instance), never on the
  process, the machine or the order of generation.
- Colours: with appearance "source" every part (a primitive of the union) gets its own colour, drawn from the
  instance's seed (`part_colours`); faces are assigned to the part whose surface they lie on.
- Determinism: part vertices are snapped to a 2**-20 grid before the union (so ulp-level differences of
  platform trigonometry cannot reach the boolean engine) and the result's vertices and faces are put in a canonical
  order, so the same (class, instance) gives the same mesh bytes everywhere.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import trimesh

from orbitset.datasets.sources import AssetRef, AssetSource, RawAsset
from orbitset.errors import AssetError

_GRID = 2.0**-20  # part vertices are snapped to this grid (raw units) before the union
_SOURCE_ID = re.compile(r"^([a-z0-9_-]+)/([0-9]+)$")

Vector = Sequence[float] | np.ndarray


# --- part builders: closed primitives placed in the object frame -------------------------------------------------


def _rotation(axis: Vector, angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about `axis` (right-hand rule), from scalar libm trigonometry."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return np.array(
        [
            [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
        ]
    )


def _rotation_z_to(direction: Vector) -> np.ndarray:
    """A rotation taking +Z onto `direction` (about the axis perpendicular to both)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    axis = np.cross([0.0, 0.0, 1.0], d)
    if np.linalg.norm(axis) < 1e-12:
        return np.eye(3) if d[2] > 0 else _rotation([1.0, 0.0, 0.0], math.pi)
    return _rotation(axis, math.acos(float(np.clip(d[2], -1.0, 1.0))))


def _placed(mesh: trimesh.Trimesh, centre: Vector, rotation: np.ndarray | None = None) -> trimesh.Trimesh:
    """`mesh` (built about the origin) rotated by `rotation`, then moved to `centre`."""
    vertices = np.asarray(mesh.vertices)
    if rotation is not None:
        vertices = vertices @ rotation.T
    return trimesh.Trimesh(vertices + np.asarray(centre, dtype=np.float64), mesh.faces, process=False)


def _box(size: Vector, centre: Vector, rotation: np.ndarray | None = None) -> trimesh.Trimesh:
    """A box of edge lengths `size` (x, y, z before `rotation`) centred at `centre`."""
    return _placed(trimesh.creation.box(extents=size), centre, rotation)


def _frustum(start: Vector, end: Vector, start_radius: float, end_radius: float, sections: int = 24) -> trimesh.Trimesh:
    """A closed truncated cone from `start` to `end`; equal radii give a cylinder."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    length = float(np.linalg.norm(end - start))
    mesh = trimesh.creation.cylinder(radius=1.0, height=length, sections=sections)
    vertices = np.array(mesh.vertices)
    along = vertices[:, 2] / length + 0.5  # 0 at start, 1 at end
    vertices[:, :2] *= (start_radius + (end_radius - start_radius) * along)[:, None]
    vertices[:, 2] += length / 2.0
    return _placed(trimesh.Trimesh(vertices, mesh.faces, process=False), start, _rotation_z_to(end - start))


def _rod(start: Vector, end: Vector, radius: float, sections: int = 16) -> trimesh.Trimesh:
    """A closed cylinder of `radius` between two points."""
    return _frustum(start, end, radius, radius, sections)


def _ellipsoid(centre: Vector, radii: Vector, rotation: np.ndarray | None = None) -> trimesh.Trimesh:
    """An ellipsoid with semi-axes `radii` (x, y, z before `rotation`)."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    return _placed(trimesh.Trimesh(sphere.vertices * np.asarray(radii), sphere.faces, process=False), centre, rotation)


def _torus(centre: Vector, major_radius: float, minor_radius: float, normal: Vector) -> trimesh.Trimesh:
    """A torus whose ring lies in the plane through `centre` perpendicular to `normal` (used for handles)."""
    ring = trimesh.creation.torus(major_radius, minor_radius, major_sections=24, minor_sections=10)
    return _placed(ring, centre, _rotation_z_to(normal))


def _hull(points: Vector) -> trimesh.Trimesh:
    """The convex hull of `points` (wedges, prisms, claws)."""
    return trimesh.convex.convex_hull(np.asarray(points, dtype=np.float64))


def _prism_y(profile_xz: Vector, y0: float, y1: float) -> trimesh.Trimesh:
    """A convex prism: the polygon `profile_xz` (points in the XZ plane) extruded from ``y = y0`` to ``y = y1``."""
    profile = np.asarray(profile_xz, dtype=np.float64)
    points = [(x, y, z) for y in (y0, y1) for x, z in profile]
    return _hull(points)


def _snapped(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(np.round(np.asarray(mesh.vertices) / _GRID) * _GRID, mesh.faces, process=False)


def _canonical(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The same mesh with vertices sorted by (x, y, z) and faces sorted, each face's winding kept."""
    vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    order = np.lexsort((vertices[:, 2], vertices[:, 1], vertices[:, 0]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    faces = rank[faces]
    roll = (np.argmin(faces, axis=1)[:, None] + np.arange(3)) % 3  # smallest index first, same cyclic order
    faces = np.take_along_axis(faces, roll, axis=1)
    faces = faces[np.lexsort((faces[:, 2], faces[:, 1], faces[:, 0]))]
    return trimesh.Trimesh(vertices[order], faces, process=False)


def _part_of_faces(mesh: trimesh.Trimesh, parts: Sequence[trimesh.Trimesh]) -> np.ndarray:
    """For every face of `mesh`, the index of the part whose surface its centroid lies on: the part whose
    plane distance (the largest signed distance to the planes of its faces, 0 on a convex part's surface) is
    nearest 0."""
    centroids = np.asarray(mesh.triangles_center, dtype=np.float64)
    distances = np.empty((len(parts), len(centroids)))
    for index, part in enumerate(parts):
        normals = np.asarray(part.face_normals, dtype=np.float64)
        offsets = np.einsum("ij,ij->i", normals, np.asarray(part.triangles[:, 0], dtype=np.float64))
        distances[index] = np.abs((centroids @ normals.T - offsets).max(axis=1))
    return distances.argmin(axis=0)


def _solid(parts: Sequence[trimesh.Trimesh], cuts: Sequence[trimesh.Trimesh] = ()) -> trimesh.Trimesh:
    """The union of the closed `parts` minus the union of `cuts`, as one watertight mesh in canonical order; its
    ``metadata["parts"]`` keeps the parts (for `part_colours`)."""
    snapped = [_snapped(part) for part in parts]
    solid = trimesh.boolean.union(snapped, engine="manifold", check_volume=False)
    if cuts:
        solid = trimesh.boolean.difference(
            [solid, *(_snapped(cut) for cut in cuts)], engine="manifold", check_volume=False
        )
    solid = _canonical(solid)
    solid.metadata["parts"] = snapped
    return solid


def part_colours(mesh: trimesh.Trimesh, parts: Sequence[trimesh.Trimesh], class_name: str, instance: int) -> np.ndarray:
    """(F, 4) uint8 sRGB face colours of a `make_mesh` result made of `parts` (its ``metadata["parts"]``): one
    colour per part (cut faces: the nearest part's),
    drawn from ``np.random.default_rng([crc32(class_name), instance, 1])`` (hue uniform, saturation 0.35-0.8,
    value 0.45-0.9)."""
    import colorsys

    face_part = _part_of_faces(mesh, parts)
    rng = np.random.default_rng([zlib.crc32(class_name.encode("ascii")), int(instance), 1])
    count = len(parts)
    hues, saturations, values = rng.random(count), rng.uniform(0.35, 0.8, count), rng.uniform(0.45, 0.9, count)
    palette = np.array([colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hues, saturations, values)])
    rgba = np.concatenate([np.round(palette * 255), np.full((count, 1), 255)], axis=1).astype(np.uint8)
    return rgba[face_part]


# --- classes: each builder draws its shape parameters from `rng` and returns a watertight mesh --------------------


def _airplane(rng: np.random.Generator) -> trimesh.Trimesh:
    """Fuselage along +X (nose at +X), dihedral wings, one tall fin, tailplane, engines under the wings, one marker."""
    length, radius = rng.uniform(1.6, 2.2), rng.uniform(0.09, 0.13)
    span, chord = rng.uniform(1.3, 1.9), rng.uniform(0.22, 0.32)
    dihedral, sweep = rng.uniform(0.12, 0.2), rng.uniform(0.35, 0.6)
    wing_x, wing_z = rng.uniform(0.45, 0.6) * length, -0.7 * radius
    parts = [
        _rod([0.15 * length, 0, 0], [length, 0, 0], radius),
        _ellipsoid([length, 0, 0], [rng.uniform(2.0, 3.0) * radius, radius, radius]),
        _frustum([0.15 * length, 0, 0], [0, 0, 0.6 * radius], radius, 0.35 * radius),
    ]
    root = np.array([wing_x, 0.0, wing_z])
    wings = {side: _rotation([1, 0, 0], side * dihedral) @ _rotation([0, 0, 1], -side * sweep) for side in (-1.0, 1.0)}
    for side, wing in wings.items():
        parts.append(_box([chord, span / 2, 0.04], root + wing @ [0, side * span / 4, 0], wing))
        stabiliser = _rotation([0, 0, 1], -side * 0.4)
        parts.append(_box([0.5 * chord, 0.35 * span / 2, 0.03], [0.1 * length, side * 0.09 * span, 0.55 * radius], stabiliser))
    fin_height = rng.uniform(0.35, 0.5) * length / 2 + radius
    parts.append(_hull([[0.02 * length, -0.015, 0], [0.25 * length, -0.015, 0], [0.02 * length, -0.015, fin_height],
                        [0.1 * length, -0.015, fin_height], [0.02 * length, 0.015, 0], [0.25 * length, 0.015, 0],
                        [0.02 * length, 0.015, fin_height], [0.1 * length, 0.015, fin_height]]))
    engines_per_wing = int(rng.integers(1, 3))
    for side, wing in wings.items():
        for k in range(engines_per_wing):
            x, y, z = root + wing @ [0, side * span * (0.17 + 0.13 * k), 0]  # on the wing's mid-surface
            parts.append(_rod([x - 0.1, y, z - 0.09], [x + 0.25, y, z - 0.09], 0.06))
            parts.append(_box([0.12, 0.02, 0.1], [x + 0.05, y, z - 0.045]))
    # a radome on the left cheek of the nose: the only feature that is not mirror-symmetric about the XZ plane
    parts.append(_ellipsoid([0.85 * length, 0.8 * radius, 0.3 * radius], [0.12, 0.06, 0.06]))
    return _solid(parts)


def _car(rng: np.random.Generator) -> trimesh.Trimesh:
    """Body along +X (front at +X), cabin set back, 4 or 6 wheels, a rear spoiler on one side, one mirror."""
    length, width, height = rng.uniform(1.8, 2.4), rng.uniform(0.8, 1.0), rng.uniform(0.3, 0.42)
    wheel_radius = rng.uniform(0.16, 0.22)
    clearance = 0.6 * wheel_radius
    cabin_length, cabin_height = rng.uniform(0.35, 0.5) * length, rng.uniform(0.25, 0.35)
    cabin_x = -rng.uniform(0.12, 0.22) * length
    top = clearance + height
    nose_height = rng.uniform(0.45, 0.65) * height

    def body_top(x: float) -> float:
        return top - (x / length + 0.5) * (height - nose_height)

    body = [[x, y, z] for y in (-width / 2, width / 2)
            for x, z in ((-length / 2, clearance), (length / 2, clearance), (-length / 2, top), (length / 2, clearance + nose_height))]
    parts = [
        _hull(body),
        _hull([[cabin_x - cabin_length / 2, -0.42 * width, top - 0.15], [cabin_x + cabin_length / 2 + 0.2, -0.42 * width, top - 0.15],
               [cabin_x - cabin_length / 2, 0.42 * width, top - 0.15], [cabin_x + cabin_length / 2 + 0.2, 0.42 * width, top - 0.15],
               [cabin_x - cabin_length / 2 + 0.05, -0.38 * width, top + cabin_height],
               [cabin_x + cabin_length / 2 - 0.1, -0.38 * width, top + cabin_height],
               [cabin_x - cabin_length / 2 + 0.05, 0.38 * width, top + cabin_height],
               [cabin_x + cabin_length / 2 - 0.1, 0.38 * width, top + cabin_height]]),
    ]
    axles = [0.35 * length, -0.35 * length] + ([-0.35 * length + 2.3 * wheel_radius] if rng.random() < 0.4 else [])
    for x in axles:
        for side in (-1.0, 1.0):
            parts.append(_rod([x, side * (width / 2 - 0.1), wheel_radius], [x, side * (width / 2 + 0.06), wheel_radius], wheel_radius, 20))
    # the spoiler sits on the left half of the tail only, on one post
    spoiler_y = rng.uniform(0.12, 0.22) * width
    parts.append(_box([0.16, 0.55 * width, 0.03], [-length / 2 + 0.1, spoiler_y, top + 0.17]))
    parts.append(_box([0.05, 0.05, 0.2], [-length / 2 + 0.1, spoiler_y, top + 0.06]))
    mirror_x = cabin_x + cabin_length / 2 + 0.1
    parts.append(_box([0.06, 0.14, 0.07], [mirror_x, -width / 2 - 0.05, body_top(mirror_x) + 0.02]))
    return _solid(parts)


def _chair(rng: np.random.Generator) -> trimesh.Trimesh:
    """Four legs, a seat, a backrest (panel or slats) at +Y, and a single armrest on the +X side."""
    width, depth, seat_height = rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)
    seat_thickness, leg = rng.uniform(0.06, 0.1), rng.uniform(0.04, 0.06)
    back_height = rng.uniform(0.7, 1.1)
    parts = [_box([width, depth, seat_thickness], [0, 0, seat_height])]
    for x in (-1.0, 1.0):
        for y in (-1.0, 1.0):
            top = seat_height + (back_height if y > 0 else 0.0)
            parts.append(_box([2 * leg, 2 * leg, top], [x * (width / 2 - leg), y * (depth / 2 - leg), top / 2]))
    back_y, back_top = depth / 2 - leg, seat_height + back_height
    slats = int(rng.integers(0, 5))  # 0: a solid panel
    if slats == 0:
        parts.append(_box([width - 2 * leg, 0.05, back_height * 0.7], [0, back_y, back_top - back_height * 0.35]))
    else:
        parts.append(_box([width, 0.06, 0.12], [0, back_y, back_top - 0.06]))
        for k in range(slats):
            x = (k + 1) / (slats + 1) * (width - 2 * leg) - (width / 2 - leg)
            parts.append(_box([0.05, 0.04, back_height], [x, back_y, seat_height + back_height / 2]))
    arm_height = rng.uniform(0.22, 0.3)
    parts.append(_box([0.08, depth * 0.9, 0.05], [width / 2 - leg, 0, seat_height + arm_height]))
    parts.append(_box([0.05, 0.05, arm_height], [width / 2 - leg, -depth / 2 + 0.1, seat_height + arm_height / 2]))
    return _solid(parts)


def _guitar(rng: np.random.Generator) -> trimesh.Trimesh:
    """Standing guitar: body in the XZ plane (flat front -Y, bowl back), offset upper horn, neck up +Z, tilted headstock."""
    lower, upper = rng.uniform(0.38, 0.46), rng.uniform(0.27, 0.33)
    depth = rng.uniform(0.1, 0.16)
    horn = rng.uniform(0.15, 0.22)
    upper_z = lower + rng.uniform(0.35, 0.45)
    neck_length, neck_width = rng.uniform(0.9, 1.2), rng.uniform(0.08, 0.1)
    half = depth / 2
    y_axis = [0.0, 1.0, 0.0]
    parts = [
        _rod([0, -half, lower], [0, half, lower], lower, 32),
        _rod([horn, -half, upper_z], [horn, half, upper_z], upper, 32),
        _ellipsoid([horn + upper * 0.7, 0, upper_z + upper * 0.55], [0.09, half, 0.2], _rotation(y_axis, -0.5)),
        _box([neck_width, 0.05, neck_length], [0, -0.02, upper_z + neck_length / 2]),
        _ellipsoid([0, half - 0.02, lower], [0.92 * lower, rng.uniform(0.14, 0.2), 0.92 * lower]),  # bowl back
    ]
    tilt = _rotation([1, 0, 0], -rng.uniform(0.2, 0.3))  # the headstock leans back (+Y)
    head_length = rng.uniform(0.22, 0.3)
    head_base = np.array([0.0, -0.02, upper_z + neck_length - 0.02])
    parts.append(_box([1.6 * neck_width, 0.04, head_length], head_base + tilt @ [0.25 * neck_width, 0, head_length / 2], tilt))
    for k in range(int(rng.integers(3, 7))):  # all tuning pegs on the +X side, Fender style
        peg = head_base + tilt @ [1.05 * neck_width, 0, head_length * (0.15 + 0.13 * k)]
        parts.append(_rod(peg - [0.02, 0, 0], peg + [0.07, 0, 0], 0.015, 8))
    parts.append(_box([0.3 * lower, 0.04, 0.06], [-0.05, -half, 0.55 * lower]))  # bridge on the front
    parts.append(_hull([[-0.8 * lower, -half - 0.01, 0.5 * lower], [-0.2 * lower, -half - 0.01, 0.6 * lower],
                        [-0.3 * lower, -half - 0.01, upper_z], [-0.8 * lower, half - 0.03, 0.5 * lower],
                        [-0.2 * lower, half - 0.03, 0.6 * lower], [-0.3 * lower, half - 0.03, upper_z]]))  # pickguard
    sound_hole = _rod([0.03, -half - 0.05, upper_z - 0.05], [0.03, -half + 0.03, upper_z - 0.05], 0.09, 24)
    return _solid(parts, [sound_hole])


def _hammer(rng: np.random.Generator) -> trimesh.Trimesh:
    """Handle up +Z bending towards -X at the butt, with a grip; head along X: round face at +X, split claw at -X."""
    length, radius = rng.uniform(0.9, 1.2), rng.uniform(0.035, 0.05)
    head_length, head_size = rng.uniform(0.4, 0.55), rng.uniform(0.08, 0.11)
    butt = np.array([-rng.uniform(0.1, 0.16) * length, 0.0, 0.0])
    middle = np.array([-0.02 * length, 0.0, 0.5 * length])
    parts = [
        _frustum(middle, [0, 0, length], radius * 1.15, radius),
        _ellipsoid(middle, [radius * 1.6, radius * 1.6, radius * 1.6]),
        _frustum(butt, middle, radius * 1.7, radius * 1.5),
        _box([0.25 * head_length, head_size, 1.4 * head_size], [0, 0, length]),
        _frustum([0, 0, length], [head_length * 0.55, 0, length], head_size * 0.55, head_size * 0.7, 24),
    ]
    claw_length = head_length * rng.uniform(0.55, 0.75)
    for side in (-1.0, 1.0):
        start = np.array([-0.1 * head_length, side * 0.025, length + 0.02])
        bend = start + [-0.5 * claw_length, 0, -0.05]
        tip = bend + [-0.5 * claw_length, side * 0.01, -rng.uniform(0.12, 0.2)]
        for a, b in ((start, bend), (bend, tip)):
            parts.append(_hull([a + [0, -0.02, -0.04], a + [0, 0.02, -0.04], a + [0, -0.02, 0.04], a + [0, 0.02, 0.04],
                                b + [0, -0.015, -0.02], b + [0, 0.015, -0.02], b + [0, -0.015, 0.02], b + [0, 0.015, 0.02]]))
    # a lanyard loop at the butt, hanging towards the claw side and turned off the XZ plane
    parts.append(_torus(butt + [-0.04, 0, -0.02], 0.05, 0.012, [0.4, 1.0, 0.0]))
    return _solid(parts)


def _house(rng: np.random.Generator) -> trimesh.Trimesh:
    """Walls with a gable roof along X, a lower garage wing at +X front, an off-centre chimney and a porch."""
    width, depth, wall = rng.uniform(1.2, 1.6), rng.uniform(0.8, 1.1), rng.uniform(0.6, 0.8)
    ridge = wall + rng.uniform(0.35, 0.55)
    eave = (width / 2 + 0.05, depth / 2 + 0.08)
    parts = [
        _box([width, depth, wall], [0, 0, wall / 2]),
        _hull([[x * eave[0], y * eave[1], wall - 0.02] for x in (-1, 1) for y in (-1, 1)]
              + [[x * eave[0], 0, ridge] for x in (-1, 1)]),
    ]
    garage_width, garage_height = rng.uniform(0.45, 0.65), rng.uniform(0.4, 0.55) * wall + 0.2
    garage_depth = rng.uniform(0.6, 0.85) * depth
    parts.append(_box([garage_width + 0.05, garage_depth, garage_height],
                      [width / 2 + garage_width / 2 - 0.02, -depth / 2 + garage_depth / 2, garage_height / 2]))
    chimney_x = -rng.uniform(0.15, 0.35) * width
    parts.append(_box([0.14, 0.14, ridge - wall + 0.25], [chimney_x, 0.22 * depth, (ridge + wall) / 2 + 0.1]))
    porch_x = -rng.uniform(0.05, 0.25) * width
    parts.append(_box([0.35, 0.25, 0.06], [porch_x, -depth / 2 - 0.1, 0.03]))
    parts.append(_box([0.4, 0.3, 0.04], [porch_x, -depth / 2 - 0.12, 0.45 * wall]))
    for k in range(int(rng.integers(1, 4))):  # dormer-like window boxes along the back
        parts.append(_box([0.16, 0.08, 0.18], [(k + 0.5) / 3 * width - width / 2, depth / 2 + 0.03, 0.55 * wall]))
    return _solid(parts)


def _l_bracket(rng: np.random.Generator) -> trimesh.Trimesh:
    """An L of unequal arms (foot along +X, upright along +Z), one gusset at the +Y edge, holes off the centre line."""
    foot, upright = rng.uniform(1.0, 1.3), rng.uniform(0.5, 0.75)
    width, thickness = rng.uniform(0.45, 0.65), rng.uniform(0.07, 0.1)
    gusset = rng.uniform(0.3, 0.45) * upright
    parts = [
        _box([foot, width, thickness], [foot / 2, 0, thickness / 2]),
        _box([thickness, width, upright], [thickness / 2, 0, upright / 2]),
        _prism_y([[thickness / 2, thickness / 2], [thickness / 2 + 1.6 * gusset, thickness / 2],
                  [thickness / 2, thickness / 2 + gusset]], width / 2 - 0.06, width / 2),
    ]
    holes = []
    for k in range(int(rng.integers(2, 4))):
        x = foot * (0.35 + 0.22 * k)
        holes.append(_rod([x, -0.12 * width, -0.1], [x, -0.12 * width, thickness + 0.1], 0.05))
    holes.append(_box([0.3, 0.1, 0.1 * upright + 0.06], [0, -0.2 * width, 0.65 * upright]))  # slot in the upright
    return _solid(parts, holes)


def _lamp(rng: np.random.Generator) -> trimesh.Trimesh:
    """Desk lamp: round base, pole off the base centre, an arm reaching +X, a tilted shade, a switch on the base."""
    base_radius, pole_height = rng.uniform(0.22, 0.3), rng.uniform(0.6, 0.9)
    pole_x = -0.4 * base_radius
    arm_length, arm_rise = rng.uniform(0.45, 0.7), rng.uniform(-0.05, 0.2)
    joint = np.array([pole_x, 0.0, pole_height])
    head = joint + [arm_length, 0.0, arm_rise]
    shade_axis = np.array([rng.uniform(0.2, 0.5), 0.0, -1.0])
    shade_axis /= np.linalg.norm(shade_axis)
    shade_length = rng.uniform(0.2, 0.3)
    parts = [
        _frustum([0, 0, 0], [0, 0, 0.06], base_radius, base_radius * 0.85, 32),
        _rod([pole_x, 0, 0.03], joint, 0.025),
        _ellipsoid(joint, [0.045, 0.045, 0.045]),
        _rod(joint, head, 0.02),
        _frustum(head - 0.05 * shade_axis, head + shade_length * shade_axis, 0.05, rng.uniform(0.12, 0.17), 24),
        _box([0.08, 0.06, 0.05], [0.35 * base_radius, -0.55 * base_radius, 0.07]),
    ]
    return _solid(parts)


def _mug(rng: np.random.Generator) -> trimesh.Trimesh:
    """Hollow mug on Z widening upwards: a D handle at -X set above mid-height, a pouring lip at +Y, a foot notch under the lip."""
    radius, height = rng.uniform(0.35, 0.45), rng.uniform(0.75, 1.05)
    wall = rng.uniform(0.05, 0.07)
    handle_radius, handle_thickness = rng.uniform(0.28, 0.34) * height, rng.uniform(0.08, 0.1)
    handle_z = rng.uniform(0.62, 0.7) * height
    foot_radius = rng.uniform(0.7, 0.8) * radius

    def outer_radius(z: float) -> float:
        return foot_radius + (radius - foot_radius) * z / height

    parts = [
        _frustum([0, 0, 0], [0, 0, height], foot_radius, radius, 40),
        _torus([-outer_radius(handle_z) - 0.35 * handle_radius, 0, handle_z], handle_radius, handle_thickness, [0, 1, 0]),
        _hull([[-0.15, radius - 0.1, height - 0.25], [0.15, radius - 0.1, height - 0.25], [-0.17, radius - 0.1, height],
               [0.17, radius - 0.1, height], [0, radius + 0.18, height + 0.02], [0, radius + 0.1, height - 0.05]]),
    ]
    floor = rng.uniform(0.08, 0.12)
    cavity = _frustum([0, 0, floor], [0, 0, height + 0.1], outer_radius(floor) - wall, outer_radius(height + 0.1) - wall, 40)
    spout_channel = _hull([[-0.1, radius - 0.15, height - 0.05], [0.1, radius - 0.15, height - 0.05],
                           [0, radius + 0.3, height + 0.1], [-0.12, radius - 0.15, height + 0.2],
                           [0.12, radius - 0.15, height + 0.2]])
    notch = _box([0.5 * radius, 0.3 * radius, 0.08], [0.35 * radius, foot_radius, 0])
    return _solid(parts, [cavity, spout_channel, notch])


def _sofa(rng: np.random.Generator) -> trimesh.Trimesh:
    """Seat base along X, a backrest at +Y, one armrest at -X, and a chaise extending forward (-Y) at +X."""
    length, depth = rng.uniform(1.6, 2.2), rng.uniform(0.75, 0.95)
    seat_height, back_height = rng.uniform(0.35, 0.45), rng.uniform(0.4, 0.6)
    chaise_length, chaise_width = rng.uniform(0.5, 0.8), rng.uniform(0.55, 0.75)
    parts = [
        _box([length, depth, seat_height - 0.08], [0, 0, (seat_height + 0.08) / 2]),
        _box([length, 0.22, back_height], [0, depth / 2 - 0.11, seat_height + back_height / 2 - 0.02]),
        _box([0.22, depth, 0.25], [-length / 2 + 0.11, 0, seat_height + 0.1]),
        _box([chaise_width, chaise_length + 0.1, seat_height - 0.08],
             [length / 2 - chaise_width / 2, -depth / 2 - chaise_length / 2 + 0.05, (seat_height + 0.08) / 2]),
    ]
    for k in range(int(rng.integers(2, 4))):  # back cushions
        x = (k + 0.5) / 3 * length - length / 2
        parts.append(_ellipsoid([x, depth / 2 - 0.25, seat_height + 0.2], [0.3 * length / 3, 0.08, 0.18]))
    feet = [[-length / 2 + 0.08, -depth / 2 + 0.08], [-length / 2 + 0.08, depth / 2 - 0.08], [length / 2 - 0.08, depth / 2 - 0.08],
            [length / 2 - 0.08, -depth / 2 - chaise_length + 0.1]]
    for x, y in feet:
        parts.append(_rod([x, y, 0], [x, y, 0.1], 0.035, 12))
    return _solid(parts)


def _table(rng: np.random.Generator) -> trimesh.Trimesh:
    """Rectangular top, three round legs and one thick square leg, a shelf under the -X half, a drawer at -Y +X."""
    width, depth = rng.uniform(1.4, 2.0), rng.uniform(0.8, 1.1)
    height, top_thickness = rng.uniform(0.7, 0.9), rng.uniform(0.05, 0.08)
    leg_radius, inset = rng.uniform(0.03, 0.045), rng.uniform(0.06, 0.12)
    parts = [_box([width, depth, top_thickness], [0, 0, height - top_thickness / 2])]
    for x in (-1.0, 1.0):
        for y in (-1.0, 1.0):
            position = [x * (width / 2 - inset), y * (depth / 2 - inset)]
            if x > 0 and y > 0:  # the odd leg
                parts.append(_box([3.5 * leg_radius, 3.5 * leg_radius, height - 0.01], [*position, (height - 0.01) / 2]))
            else:
                parts.append(_rod([*position, 0], [*position, height - 0.01], leg_radius))
    shelf_height = rng.uniform(0.2, 0.35) * height
    parts.append(_box([width / 2 - inset + 0.02, depth - 2 * inset + 0.02, 0.03], [-(width / 2 - inset) / 2, 0, shelf_height]))
    drawer_width = rng.uniform(0.3, 0.45) * width
    parts.append(_box([drawer_width, 0.45 * depth, 0.14],
                      [width / 2 - inset - drawer_width / 2 - 0.1, -depth / 2 + inset + 0.22 * depth, height - top_thickness - 0.06]))
    return _solid(parts)


def _teapot(rng: np.random.Generator) -> trimesh.Trimesh:
    """Squat body on a foot, a rising spout at +X, a handle at -X turned 30 to 45 degrees and set high, an off-centre knob."""
    radius, height = rng.uniform(0.45, 0.55), rng.uniform(0.55, 0.75)
    centre = np.array([0.0, 0.0, height / 2 + 0.05])
    spout_rise = rng.uniform(0.3, 0.45)
    turn = math.radians(rng.uniform(210.0, 225.0))
    handle_radius = rng.uniform(0.2, 0.26)
    handle_centre = centre + [math.cos(turn) * (radius + 0.05), math.sin(turn) * (radius + 0.05), rng.uniform(0.1, 0.15)]
    parts = [
        _ellipsoid(centre, [radius, radius, height / 2]),
        _frustum([0, 0, 0], [0, 0, 0.12], 0.6 * radius, 0.7 * radius, 32),
        _frustum(centre + [0.6 * radius, 0, -0.1], centre + [radius + rng.uniform(0.4, 0.55), 0, spout_rise], 0.12, 0.045),
        _torus(handle_centre, handle_radius, 0.035, [-math.sin(turn), math.cos(turn), 0]),
        _frustum(centre + [0, 0, height / 2 - 0.06], centre + [0, 0, height / 2 + 0.02], 0.3 * radius, 0.28 * radius),
        _ellipsoid(centre + [0.12, -0.1, height / 2 + 0.06], [0.07, 0.07, 0.06]),
    ]
    return _solid(parts)


_BUILDERS: dict[str, Callable[[np.random.Generator], trimesh.Trimesh]] = {
    "airplane": _airplane,
    "car": _car,
    "chair": _chair,
    "guitar": _guitar,
    "hammer": _hammer,
    "house": _house,
    "l_bracket": _l_bracket,
    "lamp": _lamp,
    "mug": _mug,
    "sofa": _sofa,
    "table": _table,
    "teapot": _teapot,
}

#: Every procedural class, sorted; a class's index in a dataset is its position here.
CLASSES: tuple[str, ...] = tuple(sorted(_BUILDERS))


def make_mesh(class_name: str, instance: int) -> trimesh.Trimesh:
    """Instance `instance` (>= 0) of `class_name`: a watertight, Z-up mesh in raw units (about one).

    The shape parameters come from ``np.random.default_rng([crc32(class_name), instance])``.
    """
    if class_name not in _BUILDERS:
        raise AssetError(f"unknown procedural class {class_name!r}; choose one of {', '.join(CLASSES)}")
    if isinstance(instance, bool) or not isinstance(instance, (int, np.integer)) or instance < 0:
        raise AssetError(f"procedural instance must be an integer >= 0, got {instance!r} for class {class_name!r}")
    rng = np.random.default_rng([zlib.crc32(class_name.encode("ascii")), int(instance)])
    return _BUILDERS[class_name](rng)


class ProceduralSource(AssetSource):
    """`instances_per_class` generated objects of each of `classes` (default: all of `CLASSES`), needing no files."""

    name = "procedural"
    normalise_scale = True

    def __init__(self, instances_per_class: int = 100, classes: list[str] | None = None) -> None:
        if instances_per_class < 1:
            raise AssetError(f"instances_per_class must be at least 1, got {instances_per_class}")
        chosen = list(CLASSES) if classes is None else sorted(set(classes))
        unknown = [name for name in chosen if name not in _BUILDERS]
        if unknown or not chosen:
            raise AssetError(f"unknown procedural classes {unknown or classes!r}; choose from {', '.join(CLASSES)}")
        self.instances_per_class = instances_per_class
        self._classes = chosen

    def objects(self) -> list[AssetRef]:
        return [
            AssetRef(class_name, object_id=f"{i:04d}", source_id=f"{class_name}/{i}")
            for class_name in self._classes
            for i in range(self.instances_per_class)
        ]

    def load_raw(self, ref: AssetRef, appearance: str = "source") -> RawAsset:
        match = _SOURCE_ID.match(ref.source_id)
        if match is None:
            raise AssetError(f"procedural source id {ref.source_id!r} is not of the form '<class>/<instance>'")
        class_name, instance = match.group(1), int(match.group(2))
        if class_name not in self._classes:
            raise AssetError(f"procedural class {class_name!r} of {ref.source_id!r} is not in this source "
                             f"(classes: {', '.join(self._classes)})")
        if instance >= self.instances_per_class:
            raise AssetError(f"procedural instance {instance} of {ref.source_id!r} is out of range: this source has "
                             f"instances 0..{self.instances_per_class - 1}")
        mesh = make_mesh(class_name, instance)
        parts = mesh.metadata.pop("parts")
        if appearance == "uniform":
            return RawAsset(mesh, up_axis="z", info={})
        mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=part_colours(mesh, parts, class_name, instance))
        return RawAsset(mesh, up_axis="z", info={"colour_source": "face", "parts": len(parts)})
