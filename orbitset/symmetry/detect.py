"""The proper rotation group of an object's surface (and, optionally, its colours), found from its mesh.

Contract:

- Input: a triangle mesh in the object's canonical frame (the frame `render` uses: Z up, centred; see
  `orbitset.datasets.sources.canonical`). Open, non-manifold and multi-part meshes work: only the surface is used.
- A rotation g about the surface's area centroid c is a symmetry when the surface maps onto itself, checked both ways
  (g and g^-1) on sampled surface points: at most `outlier_fraction` of them may lie farther than
  ``tolerance * diameter`` from the surface (point-to-plane distance to the nearest reference samples, or the
  euclidean distance beyond the sampling gap), where the diameter is that of the smallest sphere about c holding the
  mesh. With appearance "source" a point also counts as an outlier when its colour differs from every nearby
  colour by more than `colour_tolerance` (RGB in [0, 1], largest channel).
- Groups: C1, Cn (n = 2..`MAX_ORDER`), Dn, T, O, I, Cinf, Dinf, SO3. An axis about which rotations by 15 and 97.3
  degrees hold is continuous (no Cn with n <= 12 holds at those angles; a 64-sided cylinder is Cinf within the
  tolerance); an n-gon with n well above `MAX_ORDER` reads as continuous too.
- Result in BOP's form (`symmetries_discrete`: flat row-major 4x4 [R | t] with t = c - R c, identity left out;
  `symmetries_continuous`: axis and offset, a point on the axis), the group's name and its order (null where
  continuous). SO3 lists three orthogonal continuous axes.
- Deterministic: every sample comes from a numpy Generator seeded by `seed`.

Method: candidate axes from the surface's second-moment tensor (its eigenvectors; a degenerate pair of eigenvalues
adds a search over directions in their plane), and, when all three are equal, from the convex hull's facets and
vertices; the order of an axis is the largest n for which every rotation by k 2 pi / n passes the test (after a
point-to-plane refinement of the axis); the verified generators are closed into a group, named from its axes (C, D,
T, O, I by the number and orders of axes and the group's size), and every element of the group is checked again on
a subsample.

One file: the sampler, the test, the candidate search and the naming share the sampled surface and its tolerances;
apart, they would pass that state through an interface with no other user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from orbitset.errors import AssetError

if TYPE_CHECKING:
    import trimesh

#: Group names, in the order of the docs.
GROUPS = ("C1", "Cn", "Dn", "T", "O", "I", "Cinf", "Dinf", "SO3")
#: Largest order n of a discrete axis that is told apart from a continuous one (at the default tolerance).
MAX_ORDER = 12
#: Surface deviation allowed, as a fraction of the diameter (chosen on benchmarks/symmetry.py's development set).
TOLERANCE = 0.005
#: Fraction of sampled points allowed beyond the tolerance (chosen on the development set).
OUTLIER_FRACTION = 0.003
#: Largest RGB difference (channels in [0, 1]) of matching colours with appearance "source".
COLOUR_TOLERANCE = 0.15
REFERENCE_POINTS = 50_000
QUERY_POINTS = 3_000
COARSE_POINTS = 256
_NEIGHBOURS = 4
_SAME_AXIS = math.cos(math.radians(3.0))  # axes closer than 3 degrees are one axis
_SAME_ROTATION = 0.07  # Frobenius distance below which two rotations are one (about 3 degrees)
_DEGENERATE = 0.03  # relative eigenvalue gap below which two moments count as equal
_CONTINUOUS_ANGLES = (math.radians(15.0), math.radians(97.3))  # no Cn with n <= 12 holds at these angles
_PLANE_STEP = math.radians(1.0)  # search step for two-fold axes in a degenerate plane


@dataclass(frozen=True)
class Symmetry:
    """An object's rotation group in its canonical frame.

    `rotations` (K, 3, 3) are the discrete elements other than the identity (for Dinf: the flip), about `centre`;
    `continuous_axes` (A, 3) unit axes through `centre` (one for Cinf/Dinf, three for SO3). `order` is |G| or None
    where the group is continuous. `appearance` is what was compared: "source" (surface and colours), "uniform"
    (surface only) or "geometry-only" (colours were asked for but could not be read: `note` says why)."""

    group: str
    order: int | None
    rotations: np.ndarray
    centre: np.ndarray
    continuous_axes: np.ndarray
    tolerance: float
    appearance: str
    note: str | None = None
    axes: list = field(default_factory=list)  # [(unit axis, order or None for continuous)], principal first

    def symmetries_discrete(self) -> list[list[float]]:
        """BOP's `symmetries_discrete`: flat row-major 4x4 [R | c - R c] per element, identity left out."""
        out = []
        for rotation in self.rotations:
            matrix = np.eye(4)
            matrix[:3, :3] = rotation
            matrix[:3, 3] = self.centre - rotation @ self.centre
            out.append([_clean(v) for v in matrix.reshape(-1)])
        return out

    def symmetries_continuous(self) -> list[dict]:
        """BOP's `symmetries_continuous`: one {"axis", "offset"} per continuous axis (offset: a point on it)."""
        offset = [_clean(v) for v in self.centre]
        return [{"axis": [_clean(v) for v in axis], "offset": offset} for axis in self.continuous_axes]

    def to_json(self) -> dict:
        """The record meta.json, the sidecar and `orbitset symmetry --json` hold."""
        return {
            "group": self.group,
            "order": self.order,
            "symmetries_discrete": self.symmetries_discrete(),
            "symmetries_continuous": self.symmetries_continuous(),
            "tolerance": self.tolerance,
            "appearance": self.appearance,
            **({"note": self.note} if self.note else {}),
        }


def _clean(value: float) -> float:
    """`value` rounded to 12 decimals (so that exact zeros and ones print as such), as a plain float."""
    rounded = round(float(value), 12)
    return 0.0 if rounded == 0 else rounded


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """3x3 rotation by `angle` radians about unit `axis` (right-hand rule), Rodrigues' formula."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def _axis_of(rotation: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit axis, angle in [0, pi]) of a rotation; for angles near pi the axis comes from R + I."""
    angle = math.acos(float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)))
    vector = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
    if np.linalg.norm(vector) > 1e-6 and angle < math.pi - 1e-3:
        return vector / np.linalg.norm(vector), angle
    symmetric = (rotation + np.eye(3)) / 2.0
    column = symmetric[:, int(np.argmax(np.diag(symmetric)))]
    axis = column / np.linalg.norm(column)
    return (axis if vector @ axis >= 0 else -axis), angle


def _canonical_axis(axis: np.ndarray) -> np.ndarray:
    """`axis` or its opposite: the one whose largest-magnitude component is positive."""
    axis = axis / np.linalg.norm(axis)
    return axis if axis[int(np.argmax(np.abs(axis)))] > 0 else -axis


# --- the sampled surface ------------------------------------------------------------------------------------------


def _face_geometry(mesh: "trimesh.Trimesh", what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(triangles (F, 3, 3), areas (F,), unit normals (F, 3), vertices used by faces (V, 3)); AssetError for no
    faces, NaN or zero extent."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0 or len(vertices) == 0:
        raise AssetError(f"{what}: the mesh has no faces; symmetry needs a surface")
    if not np.all(np.isfinite(vertices)):
        raise AssetError(f"{what}: the mesh has NaN or infinite vertex coordinates")
    triangles = vertices[faces]
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    doubled = np.linalg.norm(cross, axis=1)
    if np.ptp(triangles.reshape(-1, 3), axis=0).max() <= 0 or doubled.sum() <= 0:
        raise AssetError(f"{what}: the mesh has zero extent or zero area; symmetry needs a surface")
    normals = np.divide(cross, doubled[:, None], out=np.zeros_like(cross), where=doubled[:, None] > 0)
    return triangles, doubled / 2.0, normals, vertices[np.unique(faces)]


def _sample(triangles: np.ndarray, areas: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` points drawn uniformly on the surface: (faces (N,), barycentric (N, 3), points (N, 3))."""
    cumulative = np.cumsum(areas)
    faces = np.minimum(np.searchsorted(cumulative, rng.random(count) * cumulative[-1], side="right"), len(areas) - 1)
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    bary = np.stack([1.0 - r1, r1 * (1.0 - r2), r1 * r2], axis=1)
    points = np.einsum("nk,nkd->nd", bary, triangles[faces])
    return faces, bary, points


def surface_colours(mesh: "trimesh.Trimesh", faces: np.ndarray, bary: np.ndarray) -> np.ndarray | None:
    """(N, 3) RGB in [0, 1] of `mesh`'s visuals at surface points (face index, barycentric coordinates): texture
    images looked up at the interpolated UV (times nothing else), material colours, vertex or face colours; None when
    the mesh has no colours. Raises what reading a texture raises."""
    visual = getattr(mesh, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "texture":
        import trimesh

        material = visual.material
        image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(mesh.vertices):
            uv_points = np.einsum("nk,nkd->nd", bary, np.asarray(uv, dtype=np.float64)[np.asarray(mesh.faces)[faces]])
            rgba = trimesh.visual.color.uv_to_color(uv_points, image)
            return np.asarray(rgba, dtype=np.float64)[:, :3] / 255.0
        colour = np.asarray(material.main_color, dtype=np.float64)[:3] / 255.0
        return np.broadcast_to(colour, (len(faces), 3)).copy()
    if kind == "vertex":
        colours = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        return np.einsum("nk,nkd->nd", bary, colours[np.asarray(mesh.faces)[faces]])
    if kind == "face":
        return np.asarray(visual.face_colors, dtype=np.float64)[faces, :3] / 255.0
    return None


class _Surface:
    """Sampled surface of one mesh with the symmetry test on it."""

    def __init__(self, mesh: "trimesh.Trimesh", colours: bool, seed: int, tolerance: float, outlier_fraction: float,
                 colour_tolerance: float, what: str) -> None:
        from scipy.spatial import cKDTree

        triangles, areas, normals, self.vertices = _face_geometry(mesh, what)
        self.triangles, self.areas = triangles, areas
        self.centre = (areas[:, None] * triangles.mean(axis=1)).sum(axis=0) / areas.sum()
        self.diameter = 2.0 * float(np.linalg.norm(self.vertices - self.centre, axis=1).max())
        rng = np.random.default_rng([seed, 0x5E77])
        ref_faces, ref_bary, self.reference = _sample(triangles, areas, REFERENCE_POINTS, rng)
        query_faces, query_bary, self.query = _sample(triangles, areas, QUERY_POINTS, rng)
        self.normals = normals[ref_faces]
        self.tree = cKDTree(self.reference)
        self.note: str | None = None
        self.ref_colours = self.query_colours = None
        if colours:
            try:
                self.ref_colours = surface_colours(mesh, ref_faces, ref_bary)
                self.query_colours = surface_colours(mesh, query_faces, query_bary)
            except Exception as exc:  # a texture that cannot be decoded: PIL and trimesh raise many types
                self.ref_colours = self.query_colours = None
                self.note = f"texture unreadable ({type(exc).__name__}: {exc}); geometry only"
            if self.ref_colours is not None and np.ptp(self.ref_colours, axis=0).max() < colour_tolerance / 4:
                self.ref_colours = self.query_colours = None  # one colour everywhere: colours cannot break a symmetry
        self.tolerance = tolerance * self.diameter
        self.outlier_fraction = outlier_fraction
        self.colour_tolerance = colour_tolerance
        gaps, _ = self.tree.query(self.query)
        self.gap = float(np.quantile(gaps, 0.99))  # how far an undisplaced sample may lie from its nearest reference
        self.moments = self._second_moments()

    def _second_moments(self) -> np.ndarray:
        """Exact second-moment tensor of the surface about its centroid (area-weighted)."""
        local = self.triangles - self.centre
        summed = local.sum(axis=1)
        tensor = np.einsum("f,fki,fkj->ij", self.areas, local, local) + np.einsum("f,fi,fj->ij", self.areas, summed, summed)
        return tensor / (12.0 * self.areas.sum())

    def outliers(self, rotation: np.ndarray, count: int = QUERY_POINTS, slack: float = 1.0) -> float:
        """Fraction of the first `count` query points that `rotation` (about the centre) moves off the surface (or
        onto another colour), with the tolerance times `slack`."""
        points = self.query[:count]
        moved = (points - self.centre) @ rotation.T + self.centre
        bound = self.gap + self.tolerance * slack
        distances, index = self.tree.query(moved, k=_NEIGHBOURS, distance_upper_bound=bound)
        near = np.isfinite(distances[:, 0])  # points farther than the bound from every sample are outliers
        bad = ~near
        index, moved = index[near], moved[near]
        found = index < len(self.reference)  # neighbours within the bound (missing ones index past the end)
        safe = np.where(found, index, 0)
        offsets = moved[:, None, :] - self.reference[safe]
        plane = np.abs(np.einsum("nkd,nkd->nk", offsets, self.normals[safe]))
        plane = np.where(found, plane, np.inf).min(axis=1)
        bad[near] = np.maximum(plane, distances[near, 0] - self.gap) > self.tolerance * slack
        if self.ref_colours is not None:
            difference = np.abs(self.ref_colours[safe] - self.query_colours[:count][near][:, None, :]).max(axis=2)
            bad[near] |= np.where(found, difference, np.inf).min(axis=1) > self.colour_tolerance
        return float(bad.mean())

    def holds(self, rotation: np.ndarray, count: int = QUERY_POINTS, slack: float = 1.0) -> bool:
        """Whether `rotation` and its inverse both map the surface onto itself (a coarse test passes more)."""
        limit = self.outlier_fraction if count >= QUERY_POINTS else max(4.0 * self.outlier_fraction, 3.0 / count)
        return (self.outliers(rotation, count, slack) <= limit
                and self.outliers(rotation.T, count, slack) <= limit)

    def quick(self, rotation: np.ndarray, slack: float = 2.0) -> bool:
        return self.holds(rotation, COARSE_POINTS, slack)

    def refine(self, axis: np.ndarray, order: int, iterations: int = 6) -> np.ndarray:
        """`axis` moved to where rotation by 2 pi / `order` fits the surface best (point-to-plane Gauss-Newton on the
        rotation, projected back onto that angle after each step)."""
        angle = 2.0 * math.pi / order
        points = self.query[:1000] - self.centre
        rotation = rotation_about(axis, angle)
        for _ in range(iterations):
            moved = points @ rotation.T
            distances, index = self.tree.query(moved + self.centre)
            normals = self.normals[index]
            residual = np.einsum("nd,nd->n", moved + self.centre - self.reference[index], normals)
            keep = distances < self.gap + 3.0 * self.tolerance
            if keep.sum() < 10:
                return axis
            jacobian = np.cross(moved[keep], normals[keep])
            step = np.linalg.lstsq(jacobian, -residual[keep], rcond=None)[0]
            if not np.all(np.isfinite(step)):
                return axis
            rotation = rotation_about(step / max(np.linalg.norm(step), 1e-15), float(np.linalg.norm(step))) @ rotation
            new_axis, _ = _axis_of(rotation)
            axis = new_axis if new_axis @ axis >= 0 else -new_axis
            rotation = rotation_about(axis, angle)
            if np.linalg.norm(step) < 1e-5:
                break
        return axis


# --- axes and their orders ----------------------------------------------------------------------------------------

CONTINUOUS = 0  # order of a continuous axis in the internal lists


def _continuous(surface: _Surface, axis: np.ndarray) -> bool:
    rotations = [rotation_about(axis, angle) for angle in _CONTINUOUS_ANGLES]
    return all(surface.quick(r, slack=1.0) for r in rotations) and all(surface.holds(r) for r in rotations)


def _axis_order(surface: _Surface, axis: np.ndarray, orders, refine: bool = True) -> tuple[int, np.ndarray]:
    """(largest verified order of `axis` among `orders`, CONTINUOUS, or 1; the refined axis)."""
    if _continuous(surface, axis):
        return CONTINUOUS, axis
    for order in orders:
        if not all(surface.quick(r, slack=1.0) for r in _powers(axis, order)):
            continue
        refined = surface.refine(axis, order) if refine else axis
        for candidate in (refined, axis) if refine else (axis,):
            if all(surface.holds(r) for r in _powers(candidate, order)):
                return order, candidate
    return 1, axis


def _powers(axis: np.ndarray, order: int) -> list[np.ndarray]:
    """Rotations about `axis` by k 2 pi / `order`, k = 1 .. order // 2 (with their inverses: the whole cyclic group;
    a generator alone can pass for a nearby order, e.g. 2 pi / 11 on a ten-sided pyramid)."""
    return [rotation_about(axis, 2.0 * math.pi * k / order) for k in range(1, order // 2 + 1)]


def _plane_two_fold(surface: _Surface, normal: np.ndarray, first: np.ndarray, period: float) -> np.ndarray | None:
    """A verified two-fold axis perpendicular to `normal`, searched from `first` over angles in [0, period)."""
    second = np.cross(normal, first)
    angles = np.arange(0.0, period, _PLANE_STEP)
    scores = []
    for angle in angles:
        axis = math.cos(angle) * first + math.sin(angle) * second
        rotation = rotation_about(axis, math.pi)
        scores.append(surface.outliers(rotation, COARSE_POINTS, slack=3.0))
    for index in np.argsort(scores, kind="stable")[:3]:
        if scores[index] > 0.5:
            break
        axis = math.cos(angles[index]) * first + math.sin(angles[index]) * second
        refined = surface.refine(axis, 2)
        refined = refined - (refined @ normal) * normal  # keep it perpendicular to the principal axis
        refined /= np.linalg.norm(refined)
        for candidate in (refined, axis):
            if surface.holds(rotation_about(candidate, math.pi)):
                return candidate
    return None


def _hull_directions(surface: _Surface, limit: int = 40) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Axes along the convex hull's large facets (their normals, largest first) and along its far vertices (from
    the centre, farthest first), at most `limit` of each."""
    from scipy.spatial import ConvexHull, QhullError

    vertices = surface.vertices
    try:
        hull = ConvexHull(vertices)
    except (QhullError, ValueError):
        return [], []
    corners = vertices[hull.simplices]
    areas = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1) / 2.0
    facets: list[tuple[np.ndarray, float]] = []
    for normal, area in sorted(zip(hull.equations[:, :3], areas), key=lambda item: -item[1]):
        for i, (known, total) in enumerate(facets):
            if normal @ known > math.cos(math.radians(1.0)):
                facets[i] = (known, total + area)
                break
        else:
            facets.append((normal, area))
    facets.sort(key=lambda item: -item[1])
    facet_axes = _distinct_axes([n for n, a in facets[:limit] if a >= 0.01 * areas.sum()])
    radii = np.linalg.norm(vertices[hull.vertices] - surface.centre, axis=1)
    far = vertices[hull.vertices][np.argsort(-radii, kind="stable")] - surface.centre
    far = [p / np.linalg.norm(p) for p in far[: 20 * limit] if np.linalg.norm(p) > 0]
    vertex_axes = [a for a in _distinct_axes(far) if all(abs(a @ f) < _SAME_AXIS for f in facet_axes)][:limit]
    return facet_axes, vertex_axes


def _distinct_axes(directions: list[np.ndarray]) -> list[np.ndarray]:
    """`directions` as axes (sign ignored), later ones within 3 degrees of an earlier one dropped."""
    out: list[np.ndarray] = []
    for direction in directions:
        axis = _canonical_axis(np.asarray(direction, dtype=np.float64))
        if all(abs(axis @ known) < _SAME_AXIS for known in out):
            out.append(axis)
    return out


# --- groups -------------------------------------------------------------------------------------------------------


def _closure(generators: list[np.ndarray], limit: int = 120) -> list[np.ndarray] | None:
    """Every product of `generators` (identity first), or None when more than `limit` appear (inconsistent axes)."""
    elements = [np.eye(3)]
    stack = np.eye(3)[None]
    frontier = [np.eye(3)]
    while frontier:
        found = []
        for element in frontier:
            for generator in generators:
                product = element @ generator
                if np.linalg.norm(stack - product, axis=(1, 2)).min() > _SAME_ROTATION:
                    elements.append(product)
                    stack = np.concatenate([stack, product[None]])
                    found.append(product)
                    if len(elements) > limit:
                        return None
        frontier = found
    return elements


def _axes_of_group(elements: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
    """[(axis, order)] of a finite group's elements, highest order first."""
    axes: list[list] = []
    for element in elements[1:]:
        axis, _ = _axis_of(element)
        for entry in axes:
            if abs(entry[0] @ axis) > _SAME_AXIS:
                entry[1] += 1
                break
        else:
            axes.append([_canonical_axis(axis), 1])
    return sorted(((a, n + 1) for a, n in axes), key=lambda item: -item[1])


def _name(elements: list[np.ndarray]) -> str | None:
    """The group's name from its elements, or None when they form no proper rotation group we know."""
    size = len(elements)
    axes = _axes_of_group(elements)
    if size == 1:
        return "C1"
    high = [n for _, n in axes if n >= 3]
    top = axes[0][1]
    if len(high) <= 1:
        if size == top and len(axes) == 1:
            return f"C{top}"
        if size == 2 * top and len(axes) == top + 1:
            return f"D{top}"
        return None
    return {(12, 3): "T", (24, 4): "O", (60, 5): "I"}.get((size, top))


def _finite_group(surface: _Surface, axes: list[tuple[np.ndarray, int]]) -> tuple[str, list[np.ndarray]] | None:
    """(name, elements) of the group the verified (axis, order) pairs generate, every element verified."""
    generators = [rotation_about(axis, 2.0 * math.pi / order) for axis, order in axes]
    elements = _closure(generators)
    if elements is None:
        return None
    name = _name(elements)
    if name is None or not all(surface.quick(element, slack=1.0) for element in elements[1:]):
        return None
    return name, elements


def _result(surface: _Surface, name: str, elements: list[np.ndarray], continuous: list[np.ndarray], appearance: str,
            tolerance: float) -> Symmetry:
    finite = len(elements) if not continuous else None
    rotations = np.array([_snap(e) for e in elements[1:]]).reshape(-1, 3, 3)
    axes = [(a, n) for a, n in _axes_of_group(elements)] if elements[1:] else []
    axes = [(a, None) for a in continuous] + axes
    return Symmetry(name, finite, rotations, surface.centre.copy(), np.array(continuous).reshape(-1, 3), tolerance,
                    appearance, surface.note, axes)


def _snap(rotation: np.ndarray) -> np.ndarray:
    """The nearest rotation matrix (SVD), so that accumulated products stay orthonormal."""
    u, _, vt = np.linalg.svd(rotation)
    out = u @ vt
    if np.linalg.det(out) < 0:
        u[:, -1] *= -1
        out = u @ vt
    return out


def detect_symmetry(mesh: "trimesh.Trimesh", appearance: str = "source", seed: int = 0,
                    tolerance: float = TOLERANCE, outlier_fraction: float = OUTLIER_FRACTION,
                    colour_tolerance: float = COLOUR_TOLERANCE, what: str = "mesh") -> Symmetry:
    """The rotation group of `mesh` (canonical frame) as a `Symmetry`; AssetError naming `what` for a mesh with no
    faces, NaN vertices or zero extent. `appearance` "source" compares colours too, "uniform" the surface only."""
    if appearance not in ("source", "uniform"):
        raise AssetError(f"appearance {appearance!r} is not one of source, uniform")
    surface = _Surface(mesh, appearance == "source", seed, tolerance, outlier_fraction, colour_tolerance, what)
    compared = appearance if surface.note is None else "geometry-only"
    done = lambda name, elements, continuous=(): _result(surface, name, elements, list(continuous), compared, tolerance)  # noqa: E731
    identity = [np.eye(3)]
    full_orders = range(MAX_ORDER, 1, -1)

    values, vectors = np.linalg.eigh(surface.moments)
    scale = max(values[-1], 1e-300)
    low_pair = (values[1] - values[0]) / scale < _DEGENERATE
    high_pair = (values[2] - values[1]) / scale < _DEGENERATE
    eigen_axes = [_canonical_axis(vectors[:, i]) for i in range(3)]

    if low_pair and high_pair:
        probes = [rotation_about(_canonical_axis(np.array(v)), a) for v, a in
                  (((1, 2, 3), 1.1), ((-3, 1, 2), 2.3), ((2, -1, 1), 0.7))]
        if all(surface.quick(r, slack=1.0) for r in probes) and all(surface.holds(r) for r in probes):
            return done("SO3", identity, np.eye(3))
        candidates = [(a, full_orders) for a in eigen_axes]
        facet_axes, vertex_axes = _hull_directions(surface)
        candidates += [(a, full_orders) for a in facet_axes] + [(a, range(5, 1, -1)) for a in vertex_axes]
        found: list[tuple[np.ndarray, int]] = []
        group = None
        for axis, orders in candidates:
            if any(abs(axis @ known) > _SAME_AXIS for known in [a for a, _ in found] + _settled_axes(group)):
                continue  # tested already, or its order cannot grow in any group containing the one found
            order, refined = _axis_order(surface, axis, orders)
            if order == CONTINUOUS:
                return _about_principal(surface, refined, CONTINUOUS, done)
            if order > 1:
                found.append((refined, order))
                if len(found) >= 2 and any(n >= 3 for _, n in found):
                    group = _finite_group(surface, found) or group
                    if group is not None and group[0] == "I":
                        break  # no finite rotation group contains I
        if group is not None:
            return done(*group)
        principal = max(found, key=lambda item: item[1], default=None)
        if principal is None:
            return done("C1", identity)
        return _about_principal(surface, principal[0], principal[1], done, extra=found)

    if low_pair or high_pair:
        unique = eigen_axes[2] if low_pair else eigen_axes[0]
        order, axis = _axis_order(surface, unique, full_orders, refine=False)
        return _about_principal(surface, axis, order, done)

    found = [(a, 2) for a in eigen_axes if surface.quick(rotation_about(a, math.pi)) and surface.holds(rotation_about(a, math.pi))]
    group = _finite_group(surface, found) if found else None
    return done(*group) if group else done("C1", identity)


def _settled_axes(group: tuple[str, list[np.ndarray]] | None) -> list[np.ndarray]:
    """Axes of a group found so far whose order no larger group can raise: every axis of O and I, and axes of
    order >= 3 (two-fold axes of T, D2 or D4 are four-fold in O)."""
    if group is None:
        return []
    return [axis for axis, order in _axes_of_group(group[1]) if order >= 3 or group[0] in ("O", "I")]


def _about_principal(surface: _Surface, axis: np.ndarray, order: int, done, extra=()) -> Symmetry:
    """The group of an object whose only possible axis of order >= 3 is `axis` (verified `order`: CONTINUOUS, 1, or
    n): adds two-fold axes perpendicular to it (dihedral groups)."""
    first = _canonical_axis(np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0]))
    if order == CONTINUOUS:
        flip = rotation_about(first, math.pi)
        if surface.quick(flip) and surface.holds(flip):
            return done("Dinf", [np.eye(3), flip], [axis])
        return done("Cinf", [np.eye(3)], [axis])
    two_fold = _plane_two_fold(surface, axis, first, math.pi / max(order, 1))
    generators = [(axis, order)] if order > 1 else []
    if two_fold is not None:
        generators.append((two_fold, 2))
    generators += [(a, 2) for a, n in extra if n == 2 and abs(a @ axis) < 1 - 1e-6
                   and all(abs(a @ g) < _SAME_AXIS for g, _ in generators)]
    while generators:
        group = _finite_group(surface, generators)
        if group is not None:
            return done(*group)
        generators = generators[:-1]
    return done("C1", [np.eye(3)])
