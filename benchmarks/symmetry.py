"""orbitset's symmetry detector against trimesh's inertia test, on meshes of known rotation group.

Shapes are built from primitives (boxes, regular prisms and pyramids, the Platonic solids, propellers of n chiral
blades, cylinders, cones, capsules, tori, spheres, asymmetric blobs, a cylinder with a small bump, a cylinder with
one painted patch), each turned by a random rotation, so the true group and its axes are known exactly. Two sets:

- `dev`: the development set. orbitset.symmetry's TOLERANCE and OUTLIER_FRACTION were chosen on it.
- `eval`: the same kinds with other sizes, proportions, orders and seeds. No setting was chosen on it; its figures
  are the ones to report.

Per set it prints, for orbitset and for trimesh (`Trimesh.symmetry`: None -> C1, "radial" -> counted right for
Cinf and Dinf, "spherical" -> SO3, no order), the exact-group accuracy, the largest axis error of correctly named
groups (degrees: each true axis against the nearest found axis of the same order), false symmetries (a group
reported for a C1 shape) and seconds per object; and one line per shape that orbitset gets wrong.

Usage: OMP_NUM_THREADS=1 python benchmarks/symmetry.py [--set dev|eval|both] [--faces] [--sweep]
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


def shapes(which: str) -> list[tuple[str, trimesh.Trimesh, str, list]]:
    """Every benchmark shape of set `which` ("dev" or "eval") in its own frame with its true group and axes."""
    rng = np.random.default_rng(0 if which == "dev" else 2)
    dev = which == "dev"
    out = []
    box = (1.0, 0.7, 0.4) if dev else (0.8, 0.45, 1.2)
    out.append((f"box {box}", trimesh.creation.box(box), "D2", [(X, 2), (Y, 2), (Z, 2)]))
    square = (0.6, 0.6, 1.2) if dev else (0.9, 0.9, 0.35)
    out.append((f"square box {square}", trimesh.creation.box(square), "D4", [(Z, 4), (X, 2), (Y, 2)]))
    for n in ((3, 5, 6, 8, 12) if dev else (3, 4, 5, 7, 9, 10, 11, 12)):
        r, h = (0.5, 0.8) if dev else (0.35 + 0.03 * n, 1.3 - 0.04 * n)
        if n == 4 and abs(h - r * math.sqrt(2)) < 0.1:
            h *= 1.5
        out.append((f"prism {n} r={r:.2f} h={h:.2f}", _prism(n, r, h), f"D{n}", [(Z, n), (X, 2)]))
    for n in ((3, 4, 6, 9, 11) if dev else (3, 5, 7, 8, 10, 12)):
        r, h = (0.5, 0.9) if dev else (0.4, 0.5 + 0.05 * n)
        out.append((f"pyramid {n} r={r:.2f} h={h:.2f}", _pyramid(n, r, h), f"C{n}", [(Z, n)]))
    diag = np.ones(3) / math.sqrt(3)
    platonic = {"tetrahedron": ("T", [(diag, 3), (X, 2)]), "cube": ("O", [(Z, 4), (diag, 3)]),
                "octahedron": ("O", [(Z, 4), (diag, 3)]),
                "icosahedron": ("I", [(np.array([0, 1, PHI]) / math.hypot(1, PHI), 5)]),
                "dodecahedron": ("I", [(np.array([0, PHI, 1]) / math.hypot(1, PHI), 5)])}
    for name, (group, axes) in platonic.items():
        if dev == (name in ("tetrahedron", "cube", "icosahedron")) or not dev:
            scale = 1.0 if dev else 0.6
            out.append((name, _platonic(name).apply_scale(scale), group, axes))
    for n in ((2, 3, 5) if dev else (2, 4, 6, 7)):
        out.append((f"propeller {n}", _propeller(n, 0.45 if dev else 0.55), f"C{n}", [(Z, n)]))
    out.append(("cylinder", trimesh.creation.cylinder(radius=0.4, height=1.0 if dev else 0.35, sections=64), "Dinf",
                [(Z, None)]))
    out.append(("cone", trimesh.creation.cone(radius=0.5, height=0.8 if dev else 1.4, sections=64), "Cinf", [(Z, None)]))
    out.append(("capsule", trimesh.creation.capsule(radius=0.3, height=0.6 if dev else 1.1), "Dinf", [(Z, None)]))
    out.append(("torus", trimesh.creation.torus(major_radius=1.0, minor_radius=0.3 if dev else 0.45,
                                                major_sections=64, minor_sections=32), "Dinf", [(Z, None)]))
    out.append(("sphere", trimesh.creation.icosphere(subdivisions=3 if dev else 4, radius=0.7), "SO3", []))
    for _ in range(2 if dev else 3):
        out.append(("blob", _blob(rng), "C1", []))
    out.append(("cylinder with bump", _with_bump(0.4, 1.0 if dev else 0.75, 0.06 if dev else 0.05), "C1", []))
    out.append(("cylinder with painted patch", _painted(0.4, 1.0 if dev else 0.85, rng), "C1", []))
    return out


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


def run(which: str, tolerance: float = TOLERANCE, outliers: float = OUTLIER_FRACTION, quiet: bool = False) -> float:
    rng = np.random.default_rng(100 if which == "dev" else 102)
    rows = {"orbitset": [], "trimesh": []}
    for name, mesh, truth, axes in shapes(which):
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
    role = "settings were chosen on this set" if which == "dev" else "no setting was chosen on this set"
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
    args = parser.parse_args()
    if args.sweep:
        sweep()
    for which in (("dev", "eval") if args.set == "both" else (args.set,)):
        run(which)
    if args.faces:
        time_large()


if __name__ == "__main__":
    main()
