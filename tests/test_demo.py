"""`orbitset demo` (what `make demo` runs) works end to end on a tiny setting, and a second run reuses its work."""

from __future__ import annotations

import json
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
    captured = capsys.readouterr()
    first = captured.out
    assert "\r" not in captured.err + first, "no progress bar in a log: stderr is not a terminal here"
    for run in ("sie", "vicreg"):
        epochs = re.findall(rf"^{run} epoch (\d)/2: loss [0-9.e+-]+, .*samples_per_s [0-9.e+]+, seconds [0-9.e+-]+; "
                            r"(\d+:\d\d) left$", first, re.M)
        assert [e for e, _ in epochs] == ["1", "2"] and epochs[-1][1] == "00:00", first
        for task in ("classify", "rotation"):
            probe = re.findall(rf"^{run} {task} probe epoch (\d+)/100: loss [0-9.e+-]+, held_out_loss [0-9.e+-]+; "
                               r"(stopped early|\d+:\d\d left)$", first, re.M)
            ran = json.loads((tmp_path / "runs" / run / "eval" / f"{task}.json").read_text())["epochs_run"]
            assert probe and int(probe[-1][0]) == ran, (run, task, probe)
            assert all(int(e) % 10 == 0 for e, _ in probe[:-1])
    readme = (tmp_path / "README.md").read_text()
    assert "(results.md)" in readme and (tmp_path / "results.md").is_file()
    assert re.search(r"- sie: top-1 [0-9.]+ \((NOT )?above chance", readme)
    assert re.search(r"vicreg: top-1 .* rotation R\^2 ", first)
    started = time.perf_counter()
    assert main(argv) == 0
    assert time.perf_counter() - started < 60
    assert capsys.readouterr().out.count("trained") >= 2
