"""`orbitset demo` (what `make demo` runs) works end to end on a tiny setting."""

from __future__ import annotations

from orbitset.cli import main


def test_demo_renders_verifies_shows_and_loads(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path), "--objects", "4", "--views", "3", "--size", "32", "--workers", "1", "--no-train"])
    assert status == 0
    out = capsys.readouterr().out
    assert "rendered 4 objects x 3 views" in out and "all" in out and "shards ok" in out
    for picture in ("contact_sheet.png", "stats.png"):
        assert (tmp_path / picture).stat().st_size > 1000
    assert "rel_rotation = R_a^T R_b" in out
