"""`orbitset demo` (what `make demo` runs) works end to end on a tiny setting."""

from __future__ import annotations

import re

import pytest

from orbitset.cli import main
from orbitset.manifests.model import load_manifest
from orbitset.manifests.verify import verify_dataset


def test_demo_renders_verifies_shows_and_loads(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path), "--objects", "4", "--views", "3", "--size", "32", "--workers", "1", "--no-train"])
    assert status == 0
    out = capsys.readouterr().out

    manifest = load_manifest(tmp_path / "data")
    assert manifest.totals()["objects"] + len(manifest.failures) == 4
    assert manifest.recipe["views"] == 3 and manifest.recipe["size"] == 32
    rendered = re.search(r"rendered (\d+) objects x 3 views \((\d+) images, (\d+) classes\)", out)
    assert rendered is not None, out
    assert (int(rendered[1]), int(rendered[2]), int(rendered[3])) == (
        manifest.totals()["objects"], manifest.totals()["views"], len(manifest.classes))
    report = verify_dataset(tmp_path / "data", deep=True)
    assert report.ok and f"all {manifest.totals()['shards']} shards ok (deep;" in out

    from PIL import Image

    with Image.open(tmp_path / "contact_sheet.png") as sheet:
        assert sheet.width == 3 * 96  # 3 views per row at the demo's 96 px tiles
        assert sheet.height >= 96 * min(8, manifest.totals()["objects"])
    assert (tmp_path / "stats.png").stat().st_size > 1000

    error = re.search(r"rel_rotation = R_a\^T R_b \(max error ([0-9.e+-]+)\)", out)
    assert error is not None and float(error[1]) < 1e-5
    points = re.search(r"PointLoader: points \((\d+), (\d+), (\d+)\)", out)
    train_objects = sum(s.objects for s in manifest.shards_for("train"))
    assert points is not None and int(points[1]) == min(4, train_objects) and int(points[2]) == 512, out
    assert re.search(r"\(det 1\.000\)", out)


@pytest.mark.slow
def test_demo_trains_and_evaluates_through_the_library(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--objects", "6", "--views", "3", "--size", "32", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "$ orbitset" not in out  # the demo calls library functions, not the CLI
    for task in ("rotation", "classify"):
        assert (tmp_path / "runs" / "sie" / "eval" / f"{task}.json").is_file()
        assert re.search(rf"{task}: \w+ -?[0-9.]+", out), out
