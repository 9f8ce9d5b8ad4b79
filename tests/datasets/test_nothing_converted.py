"""A conversion or a download that converts no object exits with status 2, its failures grouped by reason, and says
``--views N`` when every object of the source has N views: trees and archives in the original generator's layout
with 3 views per object, converted locally and downloaded from 127.0.0.1."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from orbitset.cli import main
from orbitset.datasets import registry
from orbitset.datasets.sie_layout import VIEW_COUNT
from orbitset.datasets.sie_synthetic import write_sie_archive, write_sie_tree
from orbitset.manifests.model import load_manifest

from ..manifests.faulty_server import FaultyServer


@pytest.fixture(scope="module")
def three_views(tmp_path_factory) -> Path:
    """6 objects of 3 views each, as the original generator writes a run with 3 views: a tree, its split files, and
    its archive in a served folder with the split files under data/."""
    base = tmp_path_factory.mktemp("three-views")
    write_sie_tree(base / "tree", base / "splits", objects_per_synset=2, views=3)
    (base / "served").mkdir()
    write_sie_archive(base / "tree", base / "served" / "3DIEBench.tar.gz")
    shutil.copytree(base / "splits", base / "served" / "data")
    return base


def test_convert_that_converts_nothing_exits_2_with_its_reasons_and_the_views_that_would_work(three_views: Path,
                                                                                                tmp_path: Path, capsys):
    args = ["convert", "3diebench", str(three_views / "tree"), "--splits-from", str(three_views / "splits")]
    assert main([*args, "--out", str(tmp_path / "fifty")]) == 2
    captured = capsys.readouterr()
    assert "converted 0 objects" in captured.out
    listed = re.search(r"failed: 6 object\(s\): (.*) \(e\.g\. ([^)]*)\)", captured.out)
    assert listed is not None, captured.out
    assert listed[1] == VIEW_COUNT.format(found=3, views=50)
    assert listed[2].endswith(", ...") and len(listed[2].split(", ")) == 4
    err = captured.err.strip().splitlines()[-1]  # the lines above it are the progress bar's
    assert err.startswith("orbitset: error: every object failed (6)") and "nothing was converted" in err
    assert "again with --views 3 " in err
    assert main([*args, "--out", str(tmp_path / "three"), "--views", "3"]) == 0, "the hint converts the tree"
    assert load_manifest(tmp_path / "three").totals()["objects"] == 6


def test_convert_without_one_common_view_count_gives_no_views_hint(three_views: Path, tmp_path: Path, capsys):
    tree = tmp_path / "tree"
    shutil.copytree(three_views / "tree", tree)
    first = sorted(p for p in tree.glob("*/*") if p.is_dir())[0]
    (first / "image_2.jpg").unlink()
    args = ["convert", "3diebench", str(tree), "--splits-from", str(three_views / "splits"), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "failed: 5 object(s): " + VIEW_COUNT.format(found=3, views=50) in captured.out
    assert "failed: 1 object(s): missing image_2.jpg" in captured.out
    assert "every object failed (6)" in captured.err and "--views" not in captured.err


def test_download_whose_objects_all_fail_exits_2_with_the_views_hint_and_again_when_rerun(three_views: Path,
                                                                                      tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with FaultyServer(three_views / "served") as server:
        splits = tuple(registry.SplitFile(p.name, f"{server.url}/data/{p.name}", sha256=hashlib.sha256(p.read_bytes()).hexdigest())
                       for p in sorted((three_views / "splits").iterdir()))
        registry.register(registry.DatasetEntry("three", source=f"{server.url}/3DIEBench.tar.gz", layout="3diebench",
                                                splits=splits))
        out = tmp_path / "ds"
        for attempt in ("first", "rerun"):
            assert main(["download", "three", "--out", str(out), "--backoff", "0.01"]) == 2, attempt
            captured = capsys.readouterr()
            assert "converted 0 objects" in captured.out and "failed: 6 object(s): " in captured.out, attempt
            assert "every object failed (6)" in captured.err, attempt
            assert "run the same command again with --views 3 " in captured.err, attempt
        assert main(["download", "three", "--out", str(tmp_path / "ok"), "--views", "3"]) == 0
    assert load_manifest(tmp_path / "ok").totals()["objects"] == 6
