"""Blender backend through the render stage: the `orbitset render` CLI end to end (fast and workbench presets) and
point clouds projecting into Blender's masks. Tiny images (32-64 px), two or three objects, a few views each."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from orbitset.cli import main
from orbitset.datasets.procedural import ProceduralSource
from orbitset.manifests.model import load_manifest
from orbitset.render.recipes import get_recipe

from .helpers import check_points_project_inside_mask, read_dataset

pytestmark = pytest.mark.blender


def _render(out, *extra: str) -> int:
    return main(["render", "--recipe", "3diebench", "--assets", "procedural", "--backend", "blender", "--out", str(out),
                 "--views", "2", "--size", "32", "--no-progress", *extra])


def test_cli_renders_valid_shards_and_a_manifest_with_the_fast_preset(tmp_path, capsys):
    out = tmp_path / "fast"
    assert _render(out, "--objects", "3", "--preset", "fast") == 0
    assert "wrote 3 objects, 6 views" in capsys.readouterr().out
    manifest = load_manifest(out)
    assert manifest.failures == [] and manifest.totals()["views"] == 6
    assert manifest.extra["backend"] == "blender" and manifest.extra["preset"] == "fast"
    samples = read_dataset(out)  # decodes and validates every sample
    assert len(samples) == 3
    for _, sample in samples.values():
        assert sample.num_views == 2 and sample.meta["renderer"].endswith("cycles fast")
        assert sample.masks is not None and sample.depths is None and sample.points.shape == (2048, 6)
        for image, mask in zip(sample.images, sample.masks):
            rgb = np.asarray(Image.open(io.BytesIO(image)))
            assert rgb.shape == (32, 32, 3) and rgb.std() > 5
            assert 0 < (np.asarray(Image.open(io.BytesIO(mask))) > 0).sum() < 32 * 32  # the object, not the floor


def test_workbench_preset_needs_rgb_only_layers(tmp_path, capsys):
    refused = tmp_path / "refused"
    assert _render(refused, "--objects", "2", "--preset", "workbench") == 2  # the recipe's layers include the mask
    error = capsys.readouterr().err
    assert "'workbench' preset cannot render the mask" in error and "--layers points" in error
    assert not refused.exists()  # refused before any work

    out = tmp_path / "preview"
    assert _render(out, "--objects", "2", "--preset", "workbench", "--layers", "points") == 0
    samples = read_dataset(out)
    assert load_manifest(out).failures == [] and len(samples) == 2
    for _, sample in samples.values():
        assert sample.meta["renderer"].endswith("workbench workbench") and sample.masks is None
        assert sample.points is not None and len(sample.images) == 2


def test_points_project_inside_the_blender_mask():
    """As for the raster backend: >= 95% of the visible points of each view land inside Blender's object mask."""
    from orbitset.render.backends.blender import BlenderBackend

    recipe = get_recipe("3diebench-t").with_overrides(size=64, views=3)
    backend = BlenderBackend(recipe.scene_spec(), preset="fast", threads=2)
    try:
        checked = check_points_project_inside_mask(backend, recipe, ProceduralSource(instances_per_class=1, classes=["chair", "mug"]))
    finally:
        backend.close()
    assert checked == 6


def test_fast_preset_matches_the_original_generator_on_a_reference_view():
    """One view of the original generator's renders (benchmarks/data/3diebench-generator, a box without MTL),
    re-rendered from its recorded latents: about one grey level apart on average (benchmarks/fidelity.py has all)."""
    from pathlib import Path

    from orbitset.datasets.mesh_sources import ShapeNetSource
    from orbitset.render import factors
    from orbitset.render.backends.blender import BlenderBackend
    from orbitset.render.recorded import match_recorded, read_recorded_factors

    root = Path(__file__).resolve().parents[2] / "benchmarks/data/3diebench-generator/primitives"
    recipe = get_recipe("3diebench")
    source = ShapeNetSource(root / "meshes")
    refs, latents, _, _ = match_recorded(read_recorded_factors(root / "renders", recipe), source.objects())
    ref = next(r for r in refs if r.source_id == "02691156/a1")
    state = factors.view_states(recipe, latents[ref.key][:1], recipe.scene_spec())[0]
    backend = BlenderBackend(recipe.scene_spec(), preset="fast", threads=2)
    try:
        backend.set_asset(source.load(ref))
        rgb = backend.render(state).rgb.astype(np.float64)
    finally:
        backend.close()
    original = np.asarray(Image.open(root / "renders/02691156/a1/image_0.jpg").convert("RGB"))[..., ::-1]  # R/B swapped
    difference = np.abs(rgb - original).mean(axis=(0, 1))
    assert np.all(difference < 3.0), difference
    swapped_back = np.abs(rgb - original[..., ::-1]).mean(axis=(0, 1))
    assert swapped_back.max() > 3 * difference.max()  # the comparison sees colours: unswapped is far off
