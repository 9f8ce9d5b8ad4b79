"""End-to-end rendering with the raster backend: valid shards, same latents whatever the workers or a kill -9,
failures recorded with reasons, point clouds that project into the masks, and factors taken from recorded datasets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from orbitset.cli import main
from orbitset.datasets.mesh_sources import open_source
from orbitset.manifests.model import load_manifest
from orbitset.render.dataset import render_dataset
from orbitset.render.executors import WorkerLimits
from orbitset.threediebench import FACTORS as FACTORS_3DIEBENCH

from .helpers import HANG_VERTICES, read_dataset

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--recipe", "3diebench", "--assets", "procedural:1", "--objects", "5", "--views", "2", "--size", "32",
        "--objects-per-shard", "1", "--val-fraction", "0.4", "--layers", "depth,mask,points", "--seed", "7", "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run with one worker, made through the CLI."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["render", *ARGS, "--out", str(out)]) == 0
    return out


def latents_and_shards(root: Path) -> dict:
    return {key: (shard, sample.latents) for key, (shard, sample) in read_dataset(root).items()}


def assert_same_dataset(a: Path, b: Path) -> None:
    left, right = latents_and_shards(a), latents_and_shards(b)
    assert sorted(left) == sorted(right)
    for key in left:
        assert left[key][0] == right[key][0], f"{key} moved from shard {left[key][0]} to {right[key][0]}"
        assert np.array_equal(left[key][1], right[key][1]), f"latents of {key} differ"
    assert load_manifest(a).splits == load_manifest(b).splits


def test_render_3diebench_procedural_raster(reference):
    manifest = load_manifest(reference)
    samples = read_dataset(reference)  # decode() validates every sample against the schema
    assert manifest.totals()["objects"] == 5 and manifest.totals()["views"] == 10 and not manifest.failures
    assert set(manifest.splits) == {"train", "val"}
    assert [f.name for f in manifest.factors] == [f[0] for f in FACTORS_3DIEBENCH]
    assert manifest.recipe["name"] == "3diebench" and len(manifest.recipe_hash) == 64
    assert "renderer" in manifest.software and "pyrender" in manifest.software["renderer"]
    assert len({s.meta["class_name"] for _, s in samples.values()}) == 5  # round-robin over classes
    for _, sample in samples.values():
        assert sample.rotations.shape == (2, 3, 3) and sample.points.shape == (2048, 6)
        assert np.allclose(sample.rotations, Rotation.from_euler("xyz", sample.latents[:, :3]).as_matrix(), atol=1e-12)
        assert sample.meta["recipe_hash"] == manifest.recipe_hash and sample.meta["depth_unit"] > 0
        assert sample.meta["class_index"] == manifest.classes.index(sample.meta["class_name"])
        from PIL import Image
        import io

        image = Image.open(io.BytesIO(sample.images[0]))
        assert image.format == "JPEG" and image.mode == "RGB" and not image.info.get("progressive")
        assert image.size == (32, 32)


def test_two_workers_give_the_same_dataset(reference, tmp_path):
    assert main(["render", *ARGS, "--out", str(tmp_path), "--workers", "2"]) == 0
    assert_same_dataset(reference, tmp_path)


def test_kill_9_then_resume_gives_the_same_dataset(reference, tmp_path):
    command = [sys.executable, "-m", "orbitset", "render", *ARGS, "--out", str(tmp_path)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.glob("*.tar") if (tmp_path / (p.stem + ".json")).exists()}
    assert done, "the run was killed before any shard was complete"
    assert not (tmp_path / "manifest.json").exists(), "the run finished before it could be killed; the test proves nothing"
    assert main(["render", *ARGS, "--out", str(tmp_path)]) == 0
    assert_same_dataset(reference, tmp_path)
    for name, stamp in done.items():
        path = tmp_path / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp, f"complete shard {name} was rendered again"
    assert not list(tmp_path.glob(".*.partial"))


def test_factors_from_an_orbitset_dataset(reference, tmp_path):
    manifest = render_dataset("3diebench", "procedural:1", tmp_path, factors_from=reference, size=24, layers=(), progress=False, seed=99,
                              objects_per_shard=1)
    assert manifest.splits == load_manifest(reference).splits
    again, before = read_dataset(tmp_path), read_dataset(reference)
    assert sorted(again) == sorted(before)
    for key, (_, sample) in again.items():
        assert np.array_equal(sample.latents, before[key][1].latents)
        assert sample.camera["width"] == 24 and sample.points is None


def _box_obj(path: Path, mesh: trimesh.Trimesh | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (mesh if mesh is not None else trimesh.creation.box(extents=(1.0, 0.6, 0.3))).export(path)


def test_factors_from_an_original_3diebench_tree(tmp_path):
    shapenet, original = tmp_path / "shapenet", tmp_path / "3diebench"
    rng = np.random.default_rng(0)
    recorded = {}
    for synset, obj in (("02691156", "aaa1"), ("03001627", "bbb2")):
        _box_obj(shapenet / synset / obj / "models" / "model_normalized.obj")
        rows = rng.uniform([-1.5, -1.5, -1.5, 0, 0, 0, 0], [1.5, 1.5, 1.5, 1, 0.7, 6.2, 1], size=(3, 7))
        for i, row in enumerate(rows):
            (original / synset / obj).mkdir(parents=True, exist_ok=True)
            np.save(original / synset / obj / f"latent_{i}.npy", row)
        recorded[f"{synset}/{obj}"] = rows
    manifest = render_dataset("3diebench", f"shapenet:{shapenet}", tmp_path / "out", factors_from=original, size=24,
                              layers=("mask",), progress=False)
    samples = read_dataset(tmp_path / "out")
    assert manifest.totals()["objects"] == 2 and manifest.totals()["views"] == 6
    for _, sample in samples.values():
        assert np.array_equal(sample.latents, recorded[sample.meta["source_id"]])
        assert np.allclose(sample.rotations, Rotation.from_euler("xyz", sample.latents[:, :3]).as_matrix(), atol=1e-12)


def test_broken_meshes_are_recorded_and_skipped(tmp_path):
    tree = tmp_path / "meshes"
    _box_obj(tree / "good" / "box.obj")
    _box_obj(tree / "good" / "ball.obj", trimesh.creation.icosphere(subdivisions=1))
    _box_obj(tree / "bad" / "missing.obj")
    (tree / "bad" / "garbage.ply").write_bytes(b"ply\nformat nonsense\n\x00\xff\x13garbage")
    (tree / "bad" / "empty.obj").write_text("# no geometry\n")
    (tree / "bad" / "nan.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    _box_obj(tree / "bad" / "dense.obj", trimesh.creation.icosphere(subdivisions=3))  # 1280 faces
    _box_obj(tree / "bad" / "hang.obj", trimesh.creation.box().convex_hull.subdivide().convex_hull)
    hang = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], faces=[[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    assert len(hang.vertices) == HANG_VERTICES
    _box_obj(tree / "bad" / "hang.obj", hang)
    source = open_source(f"folder:{tree}")
    (tree / "bad" / "missing.obj").unlink()  # listed by the source, gone when rendered
    manifest = render_dataset(
        "3diebench", source, tmp_path / "out", backend="tests.render.helpers:HangingBackend", views=2, size=32,
        layers=(), max_faces=500, limits=WorkerLimits(timeout=15), progress=False, objects_per_shard=3,
    )
    reasons = {f.object: f.reason for f in manifest.failures}
    assert sorted(read_dataset(tmp_path / "out")) == ["good__ball", "good__box"]
    assert sorted(reasons) == ["bad__dense", "bad__empty", "bad__garbage", "bad__hang", "bad__missing", "bad__nan"]
    assert "missing" in reasons["bad__missing"]
    assert "no triangles" in reasons["bad__empty"] or "empty" in reasons["bad__empty"]
    assert "NaN" in reasons["bad__nan"]
    assert "face limit" in reasons["bad__dense"]
    assert "timeout" in reasons["bad__hang"]
    assert "cannot read" in reasons["bad__garbage"] or "no triangles" in reasons["bad__garbage"]
    # the failures are durable: a rerun skips the finished shards and still lists them
    again = render_dataset(
        "3diebench", source, tmp_path / "out", backend="tests.render.helpers:HangingBackend", views=2, size=32,
        layers=(), max_faces=500, limits=WorkerLimits(timeout=15), progress=False, objects_per_shard=3,
    )
    assert {f.object: f.reason for f in again.failures} == reasons


@pytest.mark.ray
def test_ray_executor_gives_the_same_dataset(reference, tmp_path):
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main(["render", *ARGS, "--out", str(tmp_path), "--executor", "ray", "--workers", "2"]) == 0
    finally:
        ray.shutdown()
    assert_same_dataset(reference, tmp_path)


def test_rerun_with_other_options_refuses_the_folder_and_keeps_it(reference, tmp_path, capsys):
    """A rerun with another seed into a finished folder is refused (one line, exit 2); nothing there is touched."""
    before = {p.name: p.read_bytes() for p in reference.iterdir() if p.is_file()}
    args = [a if a != "7" else "8" for a in ARGS]
    assert main(["render", *args, "--out", str(reference)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "of a different dataset" in error[0] and "empty --out folder" in error[0]
    assert {p.name: p.read_bytes() for p in reference.iterdir() if p.is_file()} == before
