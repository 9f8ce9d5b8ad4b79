"""orbitset's symmetry detector against trimesh's inertia test, on meshes of known rotation group.

Shapes are built from primitives (boxes, regular prisms and pyramids, the Platonic solids, propellers of n chiral
blades, cylinders, cones, capsules, tori, spheres, asymmetric blobs, a cylinder with a small bump, a cylinder with
one painted patch), each turned by a random rotation, so the true group and its axes are known exactly. Two sets:

- `dev`: the development set, fixed. orbitset.symmetry's TOLERANCE and OUTLIER_FRACTION were chosen on it (the
  middle of the plateau `--sweep` shows).
- `eval`: the same kinds with sizes, proportions, orders and rotations drawn from `--seed` (default 3). No setting
  was chosen on any eval set; its figures are the ones to report. (An earlier, fixed eval set scored 34/35: it
  found an octahedron to be T, a bug in the search order, fixed since; the seeded sets were first run after that.)

Per set it prints, for orbitset and for trimesh (`Trimesh.symmetry`: None -> C1, "radial" -> counted right for
Cinf and Dinf, "spherical" -> SO3, no order), the exact-group accuracy, the largest axis error of correctly named
groups (degrees: each true axis against the nearest found axis of the same order), false symmetries (a group
reported for a C1 shape) and seconds per object; and one line per shape that orbitset gets wrong.

Usage: OMP_NUM_THREADS=1 python benchmarks/symmetry.py [--set dev|eval|both] [--seed N] [--faces] [--sweep]
(--faces: time 20k-face meshes; --sweep: the development set's accuracy over the grid of tolerances the defaults
were chosen from)
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import trimesh

from orbitset.geometry import random_rotation
from orbitset.symmetry import OUTLIER_FRACTION, TOLERANCE, detect_symmetry

PHI = (1 + 5**0.5) / 2


# --- shapes: (name, mesh, group, axes [(axis, order or None)]) in their own frame ----------------------------------


def _prism(n: int, radius: float, height: float) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, height=height, sections=n)


def _pyramid(n: int, radius: float, height: float) -> trimesh.Trimesh:
    return trimesh.creation.cone(radius=radius, height=height, sections=n)


def _platonic(name: str) -> trimesh.Trimesh:
    if name == "tetrahedron":
        points = [(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]
    elif name == "cube":
        points = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    elif name == "octahedron":
        points = [(s, 0, 0) for s in (-1, 1)] + [(0, s, 0) for s in (-1, 1)] + [(0, 0, s) for s in (-1, 1)]
    elif name == "icosahedron":
        points = [p for a in (-1, 1) for b in (-PHI, PHI) for p in ((0, a, b), (a, b, 0), (b, 0, a))]
    else:  # dodecahedron
        points = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
        points += [p for a in (-1 / PHI, 1 / PHI) for b in (-PHI, PHI) for p in ((0, a, b), (a, b, 0), (b, 0, a))]
    return trimesh.convex.convex_hull(np.array(points, dtype=float))


def _propeller(n: int, blade: float) -> trimesh.Trimesh:
    """A hub and n flat blades bent sideways in their plane (a pinwheel: chiral in the plane, so no flip axis)."""
    parts = [trimesh.creation.cylinder(radius=0.12, height=0.1, sections=48)]
    arm = trimesh.creation.box((blade - 0.1, 0.08, 0.05))
    arm.apply_translation([(blade + 0.1) / 2, 0, 0])
    tip = trimesh.creation.box((0.08, 0.25 * blade, 0.05))
    tip.apply_translation([blade - 0.04, 0.04 + 0.125 * blade, 0])
    for k in range(n):
        for piece in (arm.copy(), tip.copy()):
            piece.apply_transform(trimesh.transformations.rotation_matrix(2 * math.pi * k / n, [0, 0, 1]))
            parts.append(piece)
    return trimesh.util.concatenate(parts)


def _blob(rng: np.random.Generator) -> trimesh.Trimesh:
    """A sphere with low-frequency random radial bumps: asymmetric."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    v = sphere.vertices
    radius = np.ones(len(v))
    for _ in range(6):
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        radius += rng.uniform(0.1, 0.3) * np.exp(-((v @ d - 1) ** 2) / 0.3) * rng.choice([-1, 1])
    return trimesh.Trimesh(v * radius[:, None], sphere.faces, process=False)


def _with_bump(radius: float, height: float, bump: float) -> trimesh.Trimesh:
    body = trimesh.creation.cylinder(radius=radius, height=height, sections=96)
    ball = trimesh.creation.icosphere(subdivisions=2, radius=bump)
    ball.apply_translation([radius, 0, 0.3 * height])
    return trimesh.util.concatenate([body, ball])


def _painted(radius: float, height: float, rng: np.random.Generator) -> trimesh.Trimesh:
    body = trimesh.creation.cylinder(radius=radius, height=height, sections=96)
    body = body.subdivide().subdivide()
    colours = np.tile(np.array([200, 200, 200, 255], np.uint8), (len(body.faces), 1))
    centres = body.triangles_center
    angle = np.arctan2(centres[:, 1], centres[:, 0])
    patch = (np.abs(angle - 0.4) < 0.45) & (centres[:, 2] > 0.05 * height) & (centres[:, 2] < 0.35 * height)
    patch &= np.hypot(centres[:, 0], centres[:, 1]) > 0.99 * radius
    colours[patch] = [200, 30, 30, 255]
    body.visual = trimesh.visual.ColorVisuals(body, face_colors=colours)
    return body


Z = np.array([0.0, 0.0, 1.0])
X = np.array([1.0, 0.0, 0.0])
Y = np.array([0.0, 1.0, 0.0])
_DIAGONAL = np.ones(3) / math.sqrt(3)
PLATONIC = {"tetrahedron": ("T", [(_DIAGONAL, 3), (X, 2)]), "cube": ("O", [(Z, 4), (_DIAGONAL, 3)]),
            "octahedron": ("O", [(Z, 4), (_DIAGONAL, 3)]),
            "icosahedron": ("I", [(np.array([0, 1, PHI]) / math.hypot(1, PHI), 5)]),
            "dodecahedron": ("I", [(np.array([0, PHI, 1]) / math.hypot(1, PHI), 5)])}


def _dev_shapes() -> list[tuple[str, trimesh.Trimesh, str, list]]:
    """The development set: fixed sizes and proportions (the detector's settings were chosen on it)."""
    rng = np.random.default_rng(0)
    out = [("box", trimesh.creation.box((1.0, 0.7, 0.4)), "D2", [(X, 2), (Y, 2), (Z, 2)]),
           ("square box", trimesh.creation.box((0.6, 0.6, 1.2)), "D4", [(Z, 4), (X, 2), (Y, 2)])]
    out += [(f"prism {n}", _prism(n, 0.5, 0.8), f"D{n}", [(Z, n), (X, 2)]) for n in (3, 5, 6, 8, 12)]
    out += [(f"pyramid {n}", _pyramid(n, 0.5, 0.9), f"C{n}", [(Z, n)]) for n in (3, 4, 6, 9, 11)]
    out += [(name, _platonic(name), group, axes) for name, (group, axes) in PLATONIC.items()
            if name in ("tetrahedron", "cube", "icosahedron")]
    out += [(f"propeller {n}", _propeller(n, 0.45), f"C{n}", [(Z, n)]) for n in (2, 3, 5)]
    out += [("cylinder", trimesh.creation.cylinder(radius=0.4, height=1.0, sections=64), "Dinf", [(Z, None)]),
            ("cone", trimesh.creation.cone(radius=0.5, height=0.8, sections=64), "Cinf", [(Z, None)]),
            ("capsule", trimesh.creation.capsule(radius=0.3, height=0.6), "Dinf", [(Z, None)]),
            ("torus", trimesh.creation.torus(major_radius=1.0, minor_radius=0.3, major_sections=64, minor_sections=32),
             "Dinf", [(Z, None)]),
            ("sphere", trimesh.creation.icosphere(subdivisions=3, radius=0.7), "SO3", [])]
    out += [("blob", _blob(rng), "C1", []) for _ in range(2)]
    out += [("cylinder with bump", _with_bump(0.4, 1.0, 0.06), "C1", []),
            ("cylinder with painted patch", _painted(0.4, 1.0, rng), "C1", [])]
    return out


def _apart(rng: np.random.Generator, low: float, high: float, avoid: list[float], gap: float = 0.12) -> float:
    """A uniform draw in [low, high] at least `gap` (relative) from every value of `avoid` (which would add symmetry:
    a cube, a regular tetrahedron)."""
    while True:
        value = rng.uniform(low, high)
        if all(abs(value - a) > gap * a for a in avoid):
            return value


def _eval_shapes(seed: int) -> list[tuple[str, trimesh.Trimesh, str, list]]:
    """A held-out set: the same kinds with sizes, proportions and orders drawn from `seed` (no setting chosen on it)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.4, 1.2)
    b = _apart(rng, 0.4, 1.2, [a])
    c = _apart(rng, 0.4, 1.2, [a, b])
    side, height = rng.uniform(0.5, 1.0), 0.0
    height = _apart(rng, 0.3, 1.5, [side])
    out = [(f"box {a:.2f} {b:.2f} {c:.2f}", trimesh.creation.box((a, b, c)), "D2", [(X, 2), (Y, 2), (Z, 2)]),
           (f"square box {side:.2f} {height:.2f}", trimesh.creation.box((side, side, height)), "D4",
            [(Z, 4), (X, 2), (Y, 2)])]
    for n in sorted(rng.choice(np.arange(3, 13), 6, replace=False).tolist()):
        r = rng.uniform(0.3, 0.6)
        h = _apart(rng, 0.3, 1.5, [r * math.sqrt(2)] if n == 4 else [])  # n = 4 with h = side: a cube
        out.append((f"prism {n} r={r:.2f} h={h:.2f}", _prism(n, r, h), f"D{n}", [(Z, n), (X, 2)]))
    for n in sorted(rng.choice(np.arange(3, 13), 6, replace=False).tolist()):
        r = rng.uniform(0.3, 0.6)
        h = _apart(rng, 0.3, 1.5, [r * math.sqrt(2)] if n == 3 else [])  # n = 3 with h = r sqrt 2: a tetrahedron
        out.append((f"pyramid {n} r={r:.2f} h={h:.2f}", _pyramid(n, r, h), f"C{n}", [(Z, n)]))
    out += [(name, _platonic(name).apply_scale(rng.uniform(0.3, 1.5)), group, axes) for name, (group, axes)
            in PLATONIC.items()]
    out += [(f"propeller {n}", _propeller(int(n), rng.uniform(0.35, 0.7)), f"C{n}", [(Z, int(n))])
            for n in sorted(rng.choice(np.arange(2, 9), 3, replace=False).tolist())]
    out += [("cylinder", trimesh.creation.cylinder(radius=rng.uniform(0.2, 0.6), height=rng.uniform(0.2, 1.5),
                                                   sections=64), "Dinf", [(Z, None)]),
            ("cone", trimesh.creation.cone(radius=rng.uniform(0.2, 0.6), height=rng.uniform(0.3, 1.5), sections=64),
             "Cinf", [(Z, None)]),
            ("capsule", trimesh.creation.capsule(radius=rng.uniform(0.2, 0.4), height=rng.uniform(0.3, 1.2)), "Dinf",
             [(Z, None)]),
            ("torus", trimesh.creation.torus(major_radius=1.0, minor_radius=rng.uniform(0.2, 0.6), major_sections=64,
                                             minor_sections=32), "Dinf", [(Z, None)]),
            ("sphere", trimesh.creation.icosphere(subdivisions=int(rng.integers(3, 5)), radius=rng.uniform(0.3, 1.0)),
             "SO3", [])]
    out += [("blob", _blob(rng), "C1", []) for _ in range(3)]
    radius, height = rng.uniform(0.3, 0.5), rng.uniform(0.6, 1.2)
    out += [("cylinder with bump", _with_bump(radius, height, rng.uniform(0.05, 0.08)), "C1", []),
            ("cylinder with painted patch", _painted(radius, height, rng), "C1", [])]
    return out


def shapes(which: str, seed: int = 3) -> list[tuple[str, trimesh.Trimesh, str, list]]:
    """Every shape of set `which` ("dev", or "eval" drawn from `seed`) in its own frame, with its group and axes."""
    return _dev_shapes() if which == "dev" else _eval_shapes(seed)


def _axis_error(found: list, truth: list, rotation: np.ndarray) -> float:
    """Largest angle (degrees) between a true axis (turned by `rotation`) and the nearest found axis of its order."""
    worst = 0.0
    for axis, order in truth:
        turned = rotation @ axis
        same = [a for a, n in found if n == order]
        if not same:
            return math.inf
        cosine = max(abs(float(a @ turned)) for a in same)
        worst = max(worst, math.degrees(math.acos(min(1.0, cosine))))
    return worst


def _trimesh_group(mesh: trimesh.Trimesh, truth: str) -> str:
    kind = mesh.symmetry
    if kind is None:
        return "C1"
    if kind == "spherical":
        return "SO3"
    return truth if truth in ("Cinf", "Dinf") else "Cinf"


def run(which: str, tolerance: float = TOLERANCE, outliers: float = OUTLIER_FRACTION, quiet: bool = False,
        seed: int = 3) -> float:
    """Score both detectors on set `which` (each shape under a random rotation); print the table unless `quiet`;
    return orbitset's exact-group accuracy."""
    rng = np.random.default_rng(100 if which == "dev" else [seed, 100])
    rows = {"orbitset": [], "trimesh": []}
    for name, mesh, truth, axes in shapes(which, seed):
        rotation = random_rotation(1, rng)[0]
        turned = mesh.copy()
        transform = np.eye(4)
        transform[:3, :3] = rotation
        turned.apply_transform(transform)
        turned.apply_translation(-turned.bounds.mean(axis=0))
        start = time.perf_counter()
        result = detect_symmetry(turned, appearance="source", tolerance=tolerance, outlier_fraction=outliers)
        seconds = time.perf_counter() - start
        error = _axis_error(result.axes, axes, rotation) if result.group == truth else math.nan
        rows["orbitset"].append((name, truth, result.group, error, seconds))
        start = time.perf_counter()
        plain = trimesh.Trimesh(turned.vertices, turned.faces, process=False)
        answer = _trimesh_group(plain, truth)
        seconds = time.perf_counter() - start
        error = math.nan
        if answer == truth and truth in ("Cinf", "Dinf"):
            axis = plain.symmetry_axis
            error = math.degrees(math.acos(min(1.0, abs(float(axis @ (rotation @ Z))))))
        rows["trimesh"].append((name, truth, answer, error, seconds))
    orbitset_rows = rows["orbitset"]
    accuracy = sum(1 for r in orbitset_rows if r[1] == r[2]) / len(orbitset_rows)
    if quiet:
        return accuracy
    role = "settings were chosen on this set" if which == "dev" else f"seed {seed}: no setting was chosen on this set"
    print(f"== {which} set ({len(orbitset_rows)} shapes) -- {role}")
    print(f"{'detector':10} {'exact group':>12} {'max axis err':>13} {'false sym.':>11} {'s/object':>9}")
    for detector, results in rows.items():
        correct = [r for r in results if r[1] == r[2]]
        asymmetric = [r for r in results if r[1] == "C1"]
        false = sum(1 for r in asymmetric if r[2] != "C1")
        errors = [r[3] for r in correct if not math.isnan(r[3])]
        print(f"{detector:10} {len(correct):>5}/{len(results):<3} {100 * len(correct) / len(results):4.0f}% "
              f"{max(errors, default=0.0):12.2f}d {false:>5}/{len(asymmetric):<5} {np.mean([r[4] for r in results]):9.3f}")
    for name, truth, group, error, _ in orbitset_rows:
        if group != truth or error > 2.0:
            print(f"  orbitset wrong: {name}: true {truth}, found {group}, axis error {error:.2f} deg")
    return accuracy


def sweep() -> None:
    """Exact-group accuracy on the development set for a grid of tolerances (how the defaults were chosen)."""
    print("== dev set accuracy by (tolerance x diameter, outlier fraction)")
    for tolerance in (0.0025, 0.005, 0.01):
        cells = [f"{o}: {100 * run('dev', tolerance, o, quiet=True):3.0f}%" for o in (0.001, 0.003, 0.01)]
        print(f"tolerance {tolerance}: " + "  ".join(cells))


def time_large() -> None:
    """Seconds of one detection on meshes of about 20k faces (asymmetric, continuous, dihedral)."""
    blob = _blob(np.random.default_rng(5)).subdivide().subdivide()
    cylinder = trimesh.creation.cylinder(radius=0.4, height=1.0, sections=128).subdivide_to_size(0.1)
    prism = _prism(8, 0.5, 0.8).subdivide_to_size(0.035)
    print("== about 20k faces, one core")
    for name, mesh in (("blob", blob), ("cylinder", cylinder), ("prism 8", prism)):
        start = time.perf_counter()
        result = detect_symmetry(mesh)
        print(f"{name}: {len(mesh.faces)} faces, {result.group}, {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("dev", "eval", "both"), default="both")
    parser.add_argument("--faces", action="store_true", help="also time 20k-face meshes")
    parser.add_argument("--sweep", action="store_true", help="dev-set accuracy over a grid of tolerances")
    parser.add_argument("--seed", type=int, default=3, help="seed of the eval set's sizes, proportions and rotations")
    args = parser.parse_args()
    if args.sweep:
        sweep()
    for which in (("dev", "eval") if args.set == "both" else (args.set,)):
        run(which, seed=args.seed)
    if args.faces:
        time_large()


if __name__ == "__main__":
    main()
