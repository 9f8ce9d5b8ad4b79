"""The smoke plan's dataset recipe and claim checks (the full `orbitset smoke` run takes minutes and is not a test)."""

import dataclasses

from orbitset.manifests.model import load_manifest
import pytest

from orbitset.errors import OrbitsetError
from orbitset.models.smoke import SmokePlan, ensure_dataset, smoke_recipe, split_objects
from orbitset.models.smoke_claims import check_claims, exceeds, mean_spread
from orbitset.render.recipes import SHIPPED
from orbitset.testing import write_synthetic_dataset


def test_smoke_recipe_is_3diebench_with_a_closer_camera():
    plan = SmokePlan(views=5, render_size=32, camera_distance=1.25)
    recipe = smoke_recipe(plan)
    base = SHIPPED["3diebench"]
    assert recipe.factors == base.factors and recipe.euler == base.euler and recipe.fixed == base.fixed
    assert (recipe.views, recipe.size) == (5, 32)  # the render size; the models may train smaller
    assert recipe.appearance == "uniform" and smoke_recipe(dataclasses.replace(plan, appearance="source")).appearance == "source"
    assert recipe.scene.camera.distance == 1.25
    assert recipe.scene.camera == dataclasses.replace(base.scene.camera, distance=1.25)
    assert dataclasses.replace(recipe.scene, camera=base.scene.camera) == base.scene
    assert SHIPPED["3diebench"].scene.camera.distance == 2.5  # the shipped recipe is unchanged
    assert recipe.hash() != smoke_recipe(dataclasses.replace(plan, camera_distance=2.5)).hash()


def test_objects_split_into_train_val_by_key_and_test_instances_apart():
    plan = SmokePlan(objects=200, val_fraction=0.2, test_instances=(70, 73))
    splits = split_objects(plan)
    assert set(splits) == {"train", "val", "test"}
    keys = [k for names in splits.values() for k in names]
    assert len(keys) == len(set(keys)) == 200 + 12 * 3
    assert 20 <= len(splits["val"]) <= 60
    instances = {s: {int(k.rsplit("__", 1)[1]) for k in splits[s]} for s in splits}
    assert instances["test"] == {70, 71, 72} and max(instances["train"] | instances["val"]) < 70
    assert split_objects(plan) == splits  # reproducible
    more = split_objects(dataclasses.replace(plan, objects=300))
    assert all(set(splits[s]) <= set(more[s]) for s in splits)  # an object keeps its split as the set grows
    with pytest.raises(OrbitsetError, match="lower `objects`"):
        split_objects(dataclasses.replace(plan, objects=12 * 70 + 1))


def test_ensure_dataset_renders_the_plan_and_refuses_a_dataset_without_test_objects(tmp_path, capsys):
    plan = SmokePlan(objects=6, views=2, render_size=16, render_workers=1, val_fraction=0.3, test_instances=(70, 71))
    out = tmp_path / "smoke"
    assert ensure_dataset(out, plan)
    manifest = load_manifest(out)
    assert manifest.recipe_hash == smoke_recipe(plan).hash()
    assert set(manifest.splits) == {"train", "val", "test"}
    per_split = {s: sum(shard.objects for shard in manifest.shards_for(s)) for s in manifest.splits}
    expected = {s: len(keys) for s, keys in split_objects(plan).items()}
    assert per_split == expected and sum(expected.values()) == 6 + 12 and expected["test"] == 12
    assert ensure_dataset(out, plan)  # reused, not rendered again
    other = tmp_path / "other"
    write_synthetic_dataset(other, classes=2, objects_per_class=1, views=2, size=16, points=8)
    with pytest.raises(OrbitsetError, match="no test, val split"):
        ensure_dataset(other, plan)


def _results(equi, inv, vicreg, top1=(0.5, 0.5, 0.5), pointnet_so3=(0.5, 0.5, 0.5), vn_upright=1.0,
             vn_error=1e-6, predictor=(0.5, 0.9, 0.8), seq_top1=(0.4, 0.45, 0.5), seq_r2=(0.05, 0.06, 0.07)) -> dict:
    learnt, identity, scaled = predictor
    sie = [{"rotation-equi": {"r2": e}, "rotation-inv": {"r2": i}, "classify": {"top1": t, "chance": 1 / 12},
            "equivariance": {"equivariance_error": learnt, "identity_error": identity, "scaled_identity_error": scaled}}
           for e, i, t in zip(equi, inv, top1)]
    vic = [{"rotation": {"r2": v, "r2_mean_baseline": 0.24}, "classify": {"top1": t, "chance": 1 / 12}}
           for v, t in zip(vicreg, top1)]
    exact = {"invariance_error_features": 1e-6, "invariance_error_features_float64": 1e-15}
    fa = [{"pointcloud": {"z/z": 1.0, "z/so3": 1.0}, "equivariance": exact}] * 3
    vn = [{"pointcloud": {"z/z": vn_upright, "z/so3": vn_upright},
           "equivariance": {**exact, "invariance_error_features": vn_error}}] * 3
    pointnet = [{"pointcloud": {"z/z": 1.0, "z/so3": s}} for s in pointnet_so3]
    seq = [{"classify": {"top1": t, "chance": 1 / 12}, "aggregate": {"top1": t},
            "rotation": {"r2_per_component": r, "r2_global_mean": r + 0.2, "r2_mean_baseline": 0.24}}
           for t, r in zip(seq_top1, seq_r2)]
    return {"sie": sie, "vicreg": vic, "seq-jepa": seq, "pointnet": pointnet, "vn-pointnet": vn, "fa-pointnet": fa}


def test_a_claim_holds_only_by_more_than_the_spread():
    plan = SmokePlan(margin_parts=0.1)
    holds = check_claims(_results((0.50, 0.52, 0.48), (0.30, 0.31, 0.29), (0.35, 0.36, 0.34)), plan.margin_parts)
    assert [c.holds for c in holds] == [True] * 6 and all(c.why == "" for c in holds)
    # the same means with large spreads: the parts claim (0.2 - 0.1 margin vs spreads 0.2 + 0.01) fails
    noisy = check_claims(_results((0.30, 0.50, 0.70), (0.30, 0.31, 0.29), (0.35, 0.36, 0.34)), plan.margin_parts)
    assert not noisy[0].holds and not noisy[1].holds
    assert "0.500 ± 0.200" in noisy[0].evidence
    assert "differ by +0.200, which must exceed 0.100 + the spreads 0.210" in noisy[0].why
    short = check_claims(_results((0.40, 0.41, 0.39), (0.31, 0.32, 0.30), (0.35, 0.36, 0.34)), plan.margin_parts)
    assert not short[0].holds and short[1].holds  # below the 0.1 margin on the parts, above VICReg
    low = check_claims(_results((0.5,) * 3, (0.3,) * 3, (0.3,) * 3, top1=(0.2, 0.3, 0.4)), plan.margin_parts)
    assert not low[2].holds  # mean 0.3 > 3x chance 0.25, but not by the spread 0.1
    robust = check_claims(_results((0.5,) * 3, (0.3,) * 3, (0.3,) * 3, pointnet_so3=(0.9, 0.5, 0.5)), plan.margin_parts)
    assert not robust[3].holds  # PointNet's mean drop 0.37 is not above 0.15 by its spread 0.23


def test_a_failed_claim_says_why_from_the_same_runs():
    plan = SmokePlan()
    stuck = check_claims(_results((0.3,) * 3, (0.3,) * 3, (0.4,) * 3, predictor=(1.1, 0.7, 0.6)), plan.margin_parts)
    assert "worse than the identity (error 1.10 against 0.70 for W = I and 0.60 for the best beta w I)" in stuck[0].why
    assert "constant predictor scores R^2 0.240" in stuck[1].why
    scaling = check_claims(_results((0.3,) * 3, (0.3,) * 3, (0.4,) * 3, predictor=(0.9, 0.93, 0.8)), plan.margin_parts)
    assert "beats the identity but not the best scaling of it (error 0.90 against 0.93" in scaling[0].why
    learnt = check_claims(_results((0.3,) * 3, (0.3,) * 3, (0.4,) * 3, predictor=(0.5, 0.7, 0.6)), plan.margin_parts)
    assert "identity" not in learnt[0].why and "differ by +0.000" in learnt[0].why
    chance = check_claims(_results((0.5,) * 3, (0.3,) * 3, (0.3,) * 3, vn_upright=0.09), plan.margin_parts)
    assert not chance[3].holds and "vn-pointnet has not learnt to classify" in chance[3].why  # its zero drop is vacuous
    rounding = check_claims(_results((0.5,) * 3, (0.3,) * 3, (0.3,) * 3, vn_error=2e-4), plan.margin_parts)
    assert not rounding[4].holds and "in float64 errs by 1.0e-15" in rounding[4].why


def test_seq_jepa_claim_needs_both_what_and_how():
    plan = SmokePlan()
    assert check_claims(_results((0.5,) * 3, (0.3,) * 3, (0.3,) * 3), plan.margin_parts)[5].holds
    noisy = check_claims(_results((0.5,) * 3, (0.3,) * 3, (0.3,) * 3, seq_r2=(-0.05, 0.05, 0.15)), plan.margin_parts)[5]
    assert not noisy.holds and "R^2 per component: the means differ by +0.050" in noisy.why and "top-1" not in noisy.why
    assert "with one global mean 0.250 ± 0.100, against the constant predictor's 0.240 ± 0.000" in noisy.why
    blind = check_claims(_results((0.5,) * 3, (0.3,) * 3, (0.3,) * 3, seq_top1=(0.2, 0.25, 0.3)), plan.margin_parts)[5]
    assert not blind.holds and blind.why.startswith("top-1: the means differ by +0.000")
    assert "aggregate of 3 views 0.250 ± 0.050" in blind.evidence


def test_mean_spread_and_exceeds():
    assert mean_spread([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_spread([4.0]) == (4.0, 0.0)
    assert exceeds([1.0, 1.0], [0.5, 0.5], 0.4) and not exceeds([1.0, 1.0], [0.5, 0.5], 0.5)
    assert exceeds([1.0, 2.0, 3.0], 0.9) and not exceeds([1.0, 2.0, 3.0], 1.0)
