"""The smoke plan's dataset recipe and claim checks (the full `orbitset smoke` run takes minutes and is not a test)."""

import dataclasses

from orbitset.manifests.model import load_manifest
from orbitset.models.smoke import SmokePlan, check_claims, ensure_dataset, smoke_recipe
from orbitset.render.recipes import SHIPPED
from orbitset.testing import write_synthetic_dataset


def test_smoke_recipe_is_3diebench_with_a_closer_camera():
    plan = SmokePlan(views=5, size=32, camera_distance=1.25)
    recipe = smoke_recipe(plan)
    base = SHIPPED["3diebench"]
    assert recipe.factors == base.factors and recipe.euler == base.euler and recipe.fixed == base.fixed
    assert (recipe.views, recipe.size) == (5, 32)
    assert recipe.scene.camera.distance == 1.25
    assert recipe.scene.camera == dataclasses.replace(base.scene.camera, distance=1.25)
    assert dataclasses.replace(recipe.scene, camera=base.scene.camera) == base.scene
    assert SHIPPED["3diebench"].scene.camera.distance == 2.5  # the shipped recipe is unchanged
    assert recipe.hash() != smoke_recipe(dataclasses.replace(plan, camera_distance=2.5)).hash()


def test_ensure_dataset_renders_the_plan_and_flags_another_dataset(tmp_path, capsys):
    plan = SmokePlan(objects=2, views=2, size=16, render_workers=1)
    out = tmp_path / "smoke"
    assert ensure_dataset(out, plan)
    assert load_manifest(out).recipe_hash == smoke_recipe(plan).hash()
    assert ensure_dataset(out, plan)  # reused, not rendered again
    other = tmp_path / "other"
    write_synthetic_dataset(other, classes=2, objects_per_class=1, views=2, size=16, points=8)
    assert not ensure_dataset(other, plan)
    assert "not the smoke plan's" in capsys.readouterr().out


def _results(sie: float, vicreg: float, random: float) -> dict:
    image = {"rotation": {"r2_mean_baseline": 0.24}, "classify": {"top1": 0.5, "chance": 1 / 12}}
    results = {run: {"rotation": {**image["rotation"], "r2": r2}, "classify": dict(image["classify"])}
               for run, r2 in (("sie", sie), ("vicreg", vicreg), ("random", random))}
    results.update({run: {"pointcloud": {"z/z": 1.0, "z/so3": 1.0}, "equivariance": {"invariance_error_features": 0.0}}
                    for run in ("vn-pointnet", "fa-pointnet")})
    results["pointnet"] = {"pointcloud": {"z/z": 1.0, "z/so3": 0.5}}
    return results


def test_rotation_claim_needs_the_margin_over_both_baselines():
    plan = SmokePlan(margin_r2=0.05)
    assert check_claims(_results(0.40, 0.30, 0.20), plan)[0][1]
    assert not check_claims(_results(0.34, 0.30, 0.20), plan)[0][1]
    assert not check_claims(_results(0.40, 0.20, 0.36), plan)[0][1]
