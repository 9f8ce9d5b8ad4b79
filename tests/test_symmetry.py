"""The symmetry detector: groups of primitives under random rotations, real asymmetric meshes, colours, bad input,
BOP's format, and the `orbitset symmetry` command."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from orbitset.geometry import random_rotation
from orbitset.symmetry import detect_symmetry
from orbitset.symmetry.records import equivalents, record_of

ASSETS = Path(__file__).parent / "data" / "assets"


def turned(mesh: trimesh.Trimesh, seed: int) -> tuple[trimesh.Trimesh, np.ndarray]:
    """`mesh` under a random rotation, centred on its bounding box (the canonical frame's centring)."""
    rotation = random_rotation(1, np.random.default_rng(seed))[0]
    out = mesh.copy()
    transform = np.eye(4)
    transform[:3, :3] = rotation
    out.apply_transform(transform)
    out.apply_translation(-out.bounds.mean(axis=0))
    return out, rotation


def painted_cylinder() -> trimesh.Trimesh:
    body = trimesh.creation.cylinder(radius=0.4, height=1.0, sections=64).subdivide().subdivide()
    colours = np.tile(np.array([200, 200, 200, 255], np.uint8), (len(body.faces), 1))
    centre = body.triangles_center
    patch = (np.abs(np.arctan2(centre[:, 1], centre[:, 0]) - 0.3) < 0.4) & (centre[:, 2] > 0.1) & (centre[:, 2] < 0.4)
    colours[patch & (np.hypot(centre[:, 0], centre[:, 1]) > 0.39)] = [30, 30, 200, 255]
    body.visual = trimesh.visual.ColorVisuals(body, face_colors=colours)
    return body


@pytest.mark.parametrize("name, mesh, group, order, axis", [
    ("box", trimesh.creation.box((1.0, 0.6, 0.3)), "D2", 4, None),
    ("hexagonal prism", trimesh.creation.cylinder(radius=0.5, height=0.7, sections=6), "D6", 12, (0, 0, 1)),
    ("pentagonal pyramid", trimesh.creation.cone(radius=0.5, height=0.8, sections=5), "C5", 5, (0, 0, 1)),
    ("cube", trimesh.creation.box((1.0, 1.0, 1.0)), "O", 24, None),
    ("icosahedron", trimesh.creation.icosahedron(), "I", 60, None),
    ("octahedron", trimesh.convex.convex_hull(np.vstack([np.eye(3), -np.eye(3)])), "O", 24, None),  # T's 2-fold -> C4
    ("cylinder", trimesh.creation.cylinder(radius=0.3, height=1.0, sections=64), "Dinf", None, (0, 0, 1)),
    ("cone", trimesh.creation.cone(radius=0.5, height=0.7, sections=64), "Cinf", None, (0, 0, 1)),
    ("sphere", trimesh.creation.icosphere(subdivisions=3), "SO3", None, None),
])
def test_primitives_under_random_rotations(name, mesh, group, order, axis):
    mesh, rotation = turned(mesh, seed=len(name))
    result = detect_symmetry(mesh, appearance="uniform")
    assert (result.group, result.order) == (group, order), name
    if axis is not None:  # the principal axis, turned with the mesh, within 2 degrees
        found = result.axes[0][0]
        assert math.degrees(math.acos(min(1.0, abs(found @ (rotation @ np.array(axis)))))) < 2.0
    points = mesh.sample(500, seed=1)
    tree = cKDTree(mesh.sample(20000, seed=2))
    for matrix in result.symmetries_discrete():  # every element maps the surface onto itself
        m = np.asarray(matrix).reshape(4, 4)
        assert np.allclose(m[3], [0, 0, 0, 1]) and not np.allclose(m[:3, :3], np.eye(3))
        distance, _ = tree.query(points @ m[:3, :3].T + m[:3, 3])
        assert np.quantile(distance, 0.95) < 0.03


def test_order_is_the_largest_whose_whole_cyclic_group_holds():
    """A generator alone can pass for a nearby order (2 pi / 11 on a ten-sided pyramid): every power is checked."""
    mesh, _ = turned(trimesh.creation.cone(radius=0.5, height=0.9, sections=10), seed=3)
    assert detect_symmetry(mesh, appearance="uniform").group == "C10"


def test_chiral_propeller_has_no_flip_axes():
    hub = trimesh.creation.cylinder(radius=0.12, height=0.1, sections=48)
    arm = trimesh.creation.box((0.4, 0.08, 0.05))
    arm.apply_translation([0.3, 0, 0])
    tip = trimesh.creation.box((0.08, 0.12, 0.05))
    tip.apply_translation([0.46, 0.1, 0])
    parts = [hub]
    for k in range(3):
        for piece in (arm.copy(), tip.copy()):
            piece.apply_transform(trimesh.transformations.rotation_matrix(2 * math.pi * k / 3, [0, 0, 1]))
            parts.append(piece)
    mesh, _ = turned(trimesh.util.concatenate(parts), seed=4)
    assert detect_symmetry(mesh).group == "C3"


@pytest.mark.parametrize("name", ["duck.obj", "duck.glb", "duck_draco.glb", "duck_colours.ply", "duck_modelnet.off"])
@pytest.mark.parametrize("appearance", ["source", "uniform"])
def test_real_asymmetric_meshes_have_no_symmetry(name, appearance):
    """The duck (pybullet_data, in five files) is asymmetric: no rotation maps it onto itself."""
    from orbitset.datasets.mesh_files import load_mesh_file
    from orbitset.datasets.sources import canonical

    if name == "duck_draco.glb":
        pytest.importorskip("DracoPy")
    raw = load_mesh_file(ASSETS / name, appearance=appearance)
    mesh, _ = canonical(raw.mesh, raw.up_axis, True)
    assert detect_symmetry(mesh, appearance=appearance).group == "C1"


@pytest.mark.parametrize("name, group", [("bunny.obj", "C1"), ("prism_toy.obj", "C2"), ("tray.obj", "C4")])
def test_real_meshes_of_known_group(name, group):
    """pybullet_data meshes: the bunny is asymmetric; the trapezoidal prism toy turns onto itself only by a half turn
    about the axis through its two parallel faces; the open square tray by quarter turns about its vertical axis."""
    from orbitset.datasets.mesh_files import load_mesh_file
    from orbitset.datasets.sources import canonical

    raw = load_mesh_file(ASSETS / name, appearance="uniform")
    mesh, _ = canonical(raw.mesh, raw.up_axis, True)
    assert detect_symmetry(mesh, appearance="uniform").group == group


def test_textured_square_sheet_is_asymmetric_but_its_surface_is_not():
    """cloth_z_up.obj is a flat square of 8 triangles: its surface alone is D4 (a square sheet turned over is the
    same sheet); its texture breaks every one of those rotations."""
    from orbitset.datasets.mesh_files import load_mesh_file
    from orbitset.datasets.sources import canonical

    for appearance, group in (("source", "C1"), ("uniform", "D4")):
        raw = load_mesh_file(ASSETS / "cloth_z_up.obj", appearance=appearance)
        mesh, _ = canonical(raw.mesh, raw.up_axis, True)
        result = detect_symmetry(mesh, appearance=appearance)
        assert result.group == group and result.appearance == appearance


def test_colours_break_a_geometric_symmetry():
    mesh, _ = turned(painted_cylinder(), seed=5)
    assert detect_symmetry(mesh, appearance="uniform").group == "Dinf"
    assert detect_symmetry(mesh, appearance="source").group == "C1"


def test_unreadable_texture_falls_back_to_geometry_and_says_so():
    mesh = trimesh.creation.box((1.0, 0.6, 0.3))
    mesh.visual = trimesh.visual.TextureVisuals(uv=np.zeros((len(mesh.vertices), 2)),
                                                material=trimesh.visual.material.SimpleMaterial(image=object()))
    result = detect_symmetry(mesh, appearance="source")
    assert result.group == "D2" and result.appearance == "geometry-only" and "texture unreadable" in result.note


@pytest.mark.parametrize("vertices, faces, reason", [
    (np.zeros((3, 3)), np.zeros((0, 3), dtype=int), "no faces"),
    (np.array([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]]), np.array([[0, 1, 2]]), "NaN"),
    (np.zeros((3, 3)), np.array([[0, 1, 2]]), "zero extent"),
])
def test_bad_meshes_are_recorded_failures(vertices, faces, reason):
    record = record_of(trimesh.Trimesh(vertices, faces, process=False), "uniform", "bad.obj")
    assert record["group"] is None and reason in record["failure"] and "bad.obj" in record["failure"]


def test_deterministic_and_bop_form():
    mesh, _ = turned(trimesh.creation.cylinder(radius=0.5, height=0.7, sections=6), seed=6)
    first, second = (detect_symmetry(mesh).to_json() for _ in range(2))
    assert first == second
    assert len(first["symmetries_discrete"]) == 11 and all(len(m) == 16 for m in first["symmetries_discrete"])
    assert first["symmetries_continuous"] == []
    json.dumps(first, allow_nan=False)


def test_equivalents_sample_continuous_axes_at_one_degree_at_most():
    mesh, _ = turned(trimesh.creation.cylinder(radius=0.3, height=1.0, sections=64), seed=7)
    record = detect_symmetry(mesh, appearance="uniform").to_json()
    rotations = equivalents(record)
    assert len(rotations) == 2 * 360 and np.allclose(rotations[0], np.eye(3))
    assert np.allclose(rotations @ np.swapaxes(rotations, 1, 2), np.eye(3), atol=1e-9)


def test_cli_json_lines_and_failures(tmp_path):
    bad = tmp_path / "empty.off"
    bad.write_text("OFF\n0 0 0\n")
    shutil.copy(ASSETS / "duck_modelnet.off", tmp_path / "duck.off")
    result = subprocess.run([sys.executable, "-m", "orbitset", "symmetry", "--json", str(tmp_path / "duck.off"),
                             str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["path"] for line in lines] == [str(tmp_path / "duck.off"), str(bad)]
    assert lines[0]["group"] == "C1" and lines[0]["order"] == 1 and lines[0]["symmetries_discrete"] == []
    assert lines[1]["group"] is None and "no triangles" in lines[1]["failure"]
    only_bad = subprocess.run([sys.executable, "-m", "orbitset", "symmetry", str(bad)], capture_output=True, text=True,
                              timeout=120)
    assert only_bad.returncode == 2 and "failed" in only_bad.stdout and "could be analysed" in only_bad.stderr
