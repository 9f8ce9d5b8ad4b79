"""Bad input ends in a clear outcome: failed runs exit non-zero with their reasons, empty datasets say so, skipped
files and badly framed views are reported, splits keep every class learnable, Ray and pyrender problems are one line."""

from __future__ import annotations

import json
import socket
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from orbitset.cli import app, main
from orbitset.datasets.procedural import ProceduralSource
from orbitset.errors import DependencyError, RenderError
from orbitset.manifests.model import load_manifest
from orbitset.render.dataset import assign_splits
from orbitset.render.executors import RayExecutor, cluster_address, connect_ray
from orbitset.render.job import SMALL_OBJECT_FRACTION, framing_counts
from orbitset.render.recipes import get_recipe
from tests.render.helpers import read_dataset

FAST = ["--views", "2", "--size", "24", "--layers", "mask", "--no-progress"]


def test_a_run_where_every_object_fails_exits_non_zero_listing_reasons_and_files_it_skipped(tmp_path, capsys):
    tree = tmp_path / "meshes" / "things"
    tree.mkdir(parents=True)
    (tree / "a.obj").write_text("# nothing here\n")
    (tree / "b.glb").write_bytes(b"\x00\x01 not a glb")
    (tree / "c.dae").write_text("<COLLADA/>")
    out = tmp_path / "out"
    status = main(["render", "--recipe", "3diebench", "--assets", f"folder:{tmp_path / 'meshes'}", "--out", str(out), *FAST])
    captured = capsys.readouterr()
    assert status != 0
    assert "failed things__a: AssetError: things/a.obj: the file holds no triangles" in captured.out
    assert "failed things__b: AssetError: things/b.glb: cannot read" in captured.out
    assert "skipped 1 files in formats orbitset does not read: things/c.dae" in captured.out
    assert captured.err.strip().count("\n") == 0 and "every object failed (2)" in captured.err
    manifest = load_manifest(out)  # the run's record is kept
    assert manifest.extra["unsupported_files"] == ["things/c.dae"]
    assert {f.object for f in manifest.failures} == {"things__a", "things__b"}
    for command in (["show", str(out)], ["stats", str(out)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert "holds no objects" in err and "2 objects failed" in err and "\n" not in err


def _shapenet_box(path: Path, extents) -> None:
    path.parent.mkdir(parents=True)
    trimesh.creation.box(extents=extents).export(path)


def test_failed_classes_badly_framed_views_and_selected_classes_are_reported(tmp_path, capsys):
    root = tmp_path / "shapenet"
    _shapenet_box(root / "02691156" / "big" / "models" / "model_normalized.obj", (4.0, 4.0, 4.0))  # fills the frame
    _shapenet_box(root / "02691156" / "fine" / "models" / "model_normalized.obj", (0.5, 0.3, 0.4))
    broken = root / "03001627" / "broken" / "models" / "model_normalized.obj"
    broken.parent.mkdir(parents=True)
    broken.write_text("v 0 0 0\n")
    out = tmp_path / "out"
    status = main(["render", "--recipe", "3diebench", "--assets", f"shapenet:{root}", "--out", str(out), *FAST])
    captured = capsys.readouterr()
    assert status == 0
    assert "class '03001627': every object failed; its index is unused" in captured.out
    assert "02691156__big: views badly framed (2 touching the border)" in captured.out
    manifest = load_manifest(out)
    assert manifest.extra["classes_without_objects"] == ["03001627"]
    assert manifest.extra["framing_warnings"] == {"02691156__big": {"touches_border": 2}}
    samples = {key: sample for key, (_, sample) in read_dataset(out).items()}
    assert samples["02691156__big"].meta["framing"] == {"touches_border": 2}
    assert samples["02691156__fine"].meta["framing"] == {}
    assert samples["02691156__fine"].meta["asset"]["up_axis"] == "y"
    # a class with no selected object gets no index
    again = main(["render", "--recipe", "3diebench", "--assets", f"shapenet:{root}", "--out", str(tmp_path / "one"),
                  "--objects", "1", *FAST])
    capsys.readouterr()
    assert again == 0 and load_manifest(tmp_path / "one").classes == ["02691156"]


def test_framing_counts_each_kind():
    size = 100
    empty = np.zeros((size, size), bool)
    border = empty.copy()
    border[0:10, 40:60] = True
    small = empty.copy()
    small[50:52, 50:52] = True  # 0.04% of the image
    fine = empty.copy()
    fine[30:70, 30:70] = True
    assert small.mean() < SMALL_OBJECT_FRACTION < fine.mean()
    assert framing_counts([empty, border, small, fine, fine]) == {"empty": 1, "touches_border": 1, "small": 1}
    assert framing_counts([fine]) == {}


def test_random_split_keeps_a_training_object_in_every_class_of_two_or_more():
    source = ProceduralSource(instances_per_class=2, classes=["chair", "mug", "lamp"])
    refs = source.objects()
    splits = assign_splits(refs, source, seed=0, val_fraction=0.999)
    for class_name in ("chair", "mug", "lamp"):
        assert sorted(splits[r.key] for r in refs if r.class_name == class_name) == ["train", "val"]
    single = ProceduralSource(instances_per_class=1, classes=["chair"])
    assert assign_splits(single.objects(), single, seed=0, val_fraction=0.999) == {"chair__0000": "val"}
    # the rule leaves a split that already has training objects alone
    assert assign_splits(refs, source, seed=0, val_fraction=0.0) == {r.key: "train" for r in refs}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_ray_cluster_is_one_line_within_seconds(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(RenderError) as info:
        list(RayExecutor(address=address).run(None, []))
    assert time.monotonic() - start < 20
    message = str(info.value)
    assert "\n" not in message and f"cannot reach the Ray cluster at {address} (from --address)" in message
    assert "RAY_ADDRESS" in message


def test_ray_address_comes_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert cluster_address(None) == ("10.0.0.7:6379", "RAY_ADDRESS")
    assert cluster_address("10.0.0.8:6379") == ("10.0.0.8:6379", "--address")
    monkeypatch.delenv("RAY_ADDRESS")
    assert cluster_address(None) == (None, "local")
    help_text = CliRunner().invoke(app, ["render", "--help"], terminal_width=200).output
    assert "RAY_ADDRESS" in " ".join(help_text.split())


def test_a_cluster_requiring_a_token_is_one_line_saying_what_to_set(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    class AuthenticationError(Exception):
        pass

    def refuse(**_):
        raise AuthenticationError("Authentication failed: token missing\n" + "  detail\n" * 70)

    fake_ray = types.SimpleNamespace(init=refuse, exceptions=types.SimpleNamespace(AuthenticationError=AuthenticationError))
    with pytest.raises(RenderError) as info:
        connect_ray(fake_ray, None)
    assert "\n" not in str(info.value) and "RAY_AUTH_TOKEN" in str(info.value)


def test_missing_pyrender_names_the_commands_that_install_it(monkeypatch):
    from orbitset.render.backends import raster

    monkeypatch.setitem(sys.modules, "pyrender", None)
    with pytest.raises(DependencyError) as info:
        raster.import_pyrender()
    assert "pip install 'orbitset[render]' && pip install --no-deps pyrender==0.1.45" in str(info.value)


def test_recipe_appearance_is_checked_and_recorded():
    recipe = get_recipe("3diebench")
    assert recipe.appearance == "source" and recipe.to_json()["appearance"] == "source"
    uniform = recipe.with_overrides(appearance="uniform")
    assert uniform.hash() != recipe.hash()
    with pytest.raises(RenderError, match="appearance 'shiny'"):
        recipe.with_overrides(appearance="shiny")
    assert json.loads(json.dumps(uniform.to_json()))["appearance"] == "uniform"
