"""Recipes, factor sampling and resolution: shipped recipes, YAML recipes, hashes, seeds, rotation conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from orbitset.errors import RenderError
from orbitset.render import factors
from orbitset.render.recipes import SHIPPED, get_recipe
from orbitset.threediebench import FACTORS as FACTORS_3DIEBENCH


def test_3diebench_recipe_has_the_reference_factors_and_scene():
    recipe = get_recipe("3diebench")
    assert recipe.factor_ranges() == [(n, u, lo, hi) for n, u, lo, hi in FACTORS_3DIEBENCH]
    assert (recipe.views, recipe.size, recipe.euler) == (50, 256, "xyz")
    scene = recipe.scene_spec()
    assert np.allclose(scene.camera.position(), [0, 2.5 / math.sqrt(2), 2.5 / math.sqrt(2)])
    assert (scene.floor.z, scene.sun.energy, scene.spot.energy, scene.spot.radius) == (-1.0, 1.5, 500.0, 4.0)
    assert len(get_recipe("3diebench-t").factor_names) == 10
    assert get_recipe("so3").factor_names[:4] == ["quat_x", "quat_y", "quat_z", "quat_w"]


def test_hash_is_stable_and_tracks_changes():
    recipe = get_recipe("3diebench")
    assert recipe.hash() == get_recipe("3diebench").hash()
    assert recipe.with_overrides(size=128).hash() != recipe.hash()
    assert len({r.hash() for r in SHIPPED.values()}) == len(SHIPPED)


def test_view_factors_depend_only_on_seed_object_and_view():
    recipe = get_recipe("3diebench")
    a = factors.sample_view(recipe, 3, "mug__0001", 5)
    assert np.array_equal(a, factors.sample_view(recipe, 3, "mug__0001", 5))
    assert not np.array_equal(a, factors.sample_view(recipe, 3, "mug__0001", 6))
    assert not np.array_equal(a, factors.sample_view(recipe, 4, "mug__0001", 5))
    assert not np.array_equal(a, factors.sample_view(recipe, 3, "mug__0002", 5))
    # the first views do not change when more views are asked for
    assert np.array_equal(factors.sample_views(recipe, 3, "mug__0001", 4), factors.sample_views(recipe, 3, "mug__0001", 9)[:4])


@pytest.mark.parametrize("name", ["3diebench", "3diebench-t", "3diebench-ood"])
def test_rotations_equal_scipy_from_euler_xyz(name):
    recipe = get_recipe(name)
    latents = factors.sample_views(recipe, 0, "car__0000", 64)
    rotations = np.stack([s.rotation for s in factors.view_states(recipe, latents)])
    assert np.allclose(rotations, Rotation.from_euler("xyz", latents[:, :3]).as_matrix(), atol=1e-12)


def test_ranges_of_shipped_recipes():
    base = factors.sample_views(get_recipe("3diebench"), 1, "k__0", 500)
    assert np.all(np.abs(base[:, :3]) <= math.pi / 2)
    assert np.all((base[:, 4] >= 0) & (base[:, 4] <= math.pi / 4))
    ood = factors.sample_views(get_recipe("3diebench-ood"), 1, "k__0", 500)[:, :3]
    assert np.all((np.abs(ood) >= math.pi / 2) & (np.abs(ood) <= math.pi))
    assert (ood < 0).any() and (ood > 0).any()


def test_3diebench_t_translates_in_the_object_frame():
    recipe = get_recipe("3diebench-t")
    latents = factors.sample_views(recipe, 0, "k__0", 20)
    assert np.all(np.abs(latents[:, 7:]) <= 0.5)
    states = factors.view_states(recipe, latents)
    for row, state in zip(latents, states):
        assert np.allclose(state.translation, Rotation.from_euler("xyz", row[:3]).as_matrix() @ row[7:])


def test_so3_recipe_stores_canonical_quaternions_of_its_rotations():
    recipe = get_recipe("so3")
    latents = factors.sample_views(recipe, 0, "k__0", 200)
    quat = latents[:, :4]
    assert np.allclose(np.linalg.norm(quat, axis=1), 1) and np.all(quat[:, 3] >= 0)
    rotations = factors.rotations_of(recipe, latents)
    assert np.allclose(rotations, Rotation.from_quat(quat).as_matrix(), atol=1e-12)
    # all of SO(3): rotation angles well past pi/2 occur
    assert (Rotation.from_quat(quat).magnitude() > 2.5).any()


def test_yaml_recipe(tmp_path):
    path = tmp_path / "orbit.yaml"
    path.write_text(
        "name: orbit\nviews: 3\nsize: 64\nrotation: so3\nlayers: [mask]\n"
        "factors:\n  - {name: cam_azimuth, low: 0, high: 2*pi}\n  - {name: scale, ranges: [[0.5, 0.8], [1.2, 1.5]]}\n"
        "fixed: {floor_hue: 0.3}\ncamera: {distance: 3.0}\n"
    )
    recipe = get_recipe(str(path))
    assert recipe.factor_names == ["quat_x", "quat_y", "quat_z", "quat_w", "cam_azimuth", "scale"]
    assert recipe.factors[0].high == pytest.approx(2 * math.pi)
    latents = factors.sample_views(recipe, 0, "k__0", 200)
    assert np.all(((latents[:, 5] >= 0.5) & (latents[:, 5] < 0.8)) | ((latents[:, 5] >= 1.2) & (latents[:, 5] < 1.5)))
    states = factors.view_states(recipe, latents[:2])
    eye = -states[0].camera_extrinsics[:3, :3].T @ states[0].camera_extrinsics[:3, 3]
    assert np.linalg.norm(eye) == pytest.approx(3.0)  # the recipe's camera distance


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nfactors:\n  - {name: wobble, low: 0, high: 1}\n", "unknown factors"),
        ("name: x\nfactors:\n  - {name: floor_hue, low: 1, high: 0}\n", "low < high"),
        ("name: x\nrotation: so3\nfactors:\n  - {name: rot_x, low: 0, high: 1}\n", "so3"),
        ("name: x\ncolour: red\n", "unknown recipe keys"),
        ("name: x\nfactors:\n  - {name: floor_hue, low: one, high: 2}\n", "not a number"),
    ],
)
def test_bad_yaml_recipes_are_explained(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RenderError, match=message):
        get_recipe(str(path))


def test_unknown_recipe_name():
    with pytest.raises(RenderError, match="not a shipped recipe"):
        get_recipe("no-such-recipe")
