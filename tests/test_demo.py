"""`orbitset demo` (what `make demo` runs) works end to end on a tiny setting, and a second run reuses its work."""

from __future__ import annotations

import re
import time
from pathlib import Path

import yaml

from orbitset.cli import main
from orbitset.manifests.model import load_manifest


def test_demo_without_training(tmp_path, capsys, monkeypatch):
    """Also the hint 'orbitset demo' as printed (into demo-out in the working directory), made smaller."""
    from tests.test_hints import check_parses

    monkeypatch.chdir(tmp_path)
    check_parses(["demo"])
    status = main(["demo", "--objects", "4", "--views", "3", "--size", "32", "--workers", "1", "--no-train"])
    assert status == 0
    tmp_path = Path("demo-out")
    out = capsys.readouterr().out
    manifest = load_manifest(tmp_path / "data")
    rendered = re.search(r"rendered (\d+) objects x 3 views \((\d+) images, (\d+) classes\)", out)
    assert rendered is not None, out
    assert (int(rendered[1]), int(rendered[2])) == (manifest.totals()["objects"], manifest.totals()["views"])
    assert f"all {manifest.totals()['shards']} shards ok" in out
    error = re.search(r"rel_rotation = R_a\^T R_b \(max error ([0-9.e+-]+)\)", out)
    assert error is not None and float(error[1]) < 1e-5
    readme = (tmp_path / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert {"data/contact_sheet.png", "pair_sheet.png", "stats.png", "data/README.md", "data/croissant.json"} <= set(links)
    assert "results.md" not in links  # nothing was trained
    for link in links:
        assert (tmp_path / link).stat().st_size > 200, link
    card = (tmp_path / "data" / "README.md").read_text()
    assert yaml.safe_load(card.split("---\n")[1])["configs"][0]["data_files"]
    assert f"Start at {tmp_path / 'README.md'}" in out


def test_demo_trains_evaluates_and_reuses_its_work(tmp_path, capsys):
    """Tiny training (2 epochs on 24 objects): the results table and verdicts appear; the rerun skips everything."""
    argv = ["demo", "--out", str(tmp_path), "--objects", "24", "--views", "4", "--size", "32", "--workers", "1",
            "--epochs", "2"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    readme = (tmp_path / "README.md").read_text()
    assert "(results.md)" in readme and (tmp_path / "results.md").is_file()
    assert re.search(r"- sie: top-1 [0-9.]+ \((NOT )?above chance", readme)
    assert re.search(r"vicreg: top-1 .* rotation R\^2 ", first)
    started = time.perf_counter()
    assert main(argv) == 0
    assert time.perf_counter() - started < 60
    assert capsys.readouterr().out.count("trained") >= 2
