"""verify: size and sha256 of every shard, deep sample checks, unlisted shards, crafted unsafe tars; the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from orbitset.cli import main
from orbitset.errors import ShardError
from orbitset.manifests.model import load_manifest
from orbitset.manifests.verify import verify_dataset
from orbitset.datasets.export import export_sie_layout
from orbitset.testing import synthetic_sample
from orbitset.shards import write_shard

from .conftest import write_crafted_shard


def _statuses(report) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def test_clean_dataset_verifies(dataset: Path):
    for deep in (False, True):
        report = verify_dataset(dataset, deep=deep)
        assert report.ok, report.table()
        assert len(report.checks) == 4
    report.raise_for_problems()


@pytest.mark.parametrize("shard_index", range(4))
def test_a_single_flipped_byte_in_any_shard_is_detected(dataset: Path, shard_index: int):
    names = [entry.name for entry in load_manifest(dataset).shards]
    path = dataset / names[shard_index]
    data = bytearray(path.read_bytes())
    position = (len(data) * (shard_index + 1)) // 5  # a different place in each shard
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    report = verify_dataset(dataset)
    assert _statuses(report) == {n: ("sha256" if n == names[shard_index] else "ok") for n in names}
    with pytest.raises(ShardError, match=names[shard_index]):
        report.raise_for_problems()


def test_truncated_missing_and_extra_shards_are_named(dataset: Path):
    names = [entry.name for entry in load_manifest(dataset).shards]
    truncated = dataset / names[0]
    truncated.write_bytes(truncated.read_bytes()[:-512])
    (dataset / names[1]).unlink()
    write_shard(dataset / "train-000099.tar", [synthetic_sample("class0", 0, 9, 2, 16, 0).encode()])
    report = verify_dataset(dataset)
    statuses = _statuses(report)
    assert statuses[names[0]] == "size" and "truncated" in report.checks[0].detail
    assert statuses[names[1]] == "missing"
    assert statuses["train-000099.tar"] == "extra"
    assert [c.status for c in report.checks[2:4]] == ["ok", "ok"]
    message = report.summary()
    assert all(name in message for name in (names[0], names[1], "train-000099.tar"))


def test_size_only_mode_skips_hashes_but_not_sizes(dataset: Path):
    name = load_manifest(dataset).shards[0].name
    path = dataset / name
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert verify_dataset(dataset, hashes=False).ok
    path.write_bytes(bytes(data[:-1]))
    assert _statuses(verify_dataset(dataset, hashes=False))[name] == "size"


def test_deep_check_compares_recorded_counts(dataset: Path):
    import json

    path = dataset / "manifest.json"
    data = json.loads(path.read_text())
    data["shards"][0]["views"] += 1
    data["totals"]["views"] += 1
    path.write_text(json.dumps(data))
    assert verify_dataset(dataset).ok  # bytes and hashes still match
    report = verify_dataset(dataset, deep=True)
    assert report.checks[0].status == "content" and "views" in report.checks[0].detail


@pytest.mark.parametrize(
    "evil, message",
    [
        ("dotdot", "'../escape.txt' has a path"),
        ("symlink", "is a link"),
        ("pickle", "pickle payload"),
        ("pyd", "pickle payload"),
        ("object-npy", "object arrays are refused"),
    ],
)
def test_crafted_tars_are_refused_by_deep_verify_naming_the_shard(tmp_path: Path, evil: str, message: str):
    write_crafted_shard(tmp_path, "train-000000.tar", evil)
    assert verify_dataset(tmp_path).ok  # size and sha256 are those of the crafted file
    report = verify_dataset(tmp_path, deep=True)
    check = report.checks[0]
    assert check.status == "content" and message in check.detail, check.detail
    with pytest.raises(ShardError, match="train-000000.tar"):
        report.raise_for_problems()
    with pytest.raises(ShardError, match="train-000000.tar"):
        export_sie_layout(tmp_path, tmp_path / "tree", progress=False)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "tree" / "class0").exists()


def test_cli_prints_a_table_and_exits_non_zero_naming_bad_shards(dataset: Path, capsys):
    assert main(["verify", str(dataset)]) == 0
    assert "ok" in capsys.readouterr().out
    name = load_manifest(dataset).shards[2].name
    (dataset / name).unlink()
    assert main(["verify", str(dataset / "manifest.json"), "--deep"]) == 1
    captured = capsys.readouterr()
    assert f"{name}" in captured.out and "missing" in captured.out
    assert name in captured.err
    assert main(["verify", str(dataset), "--split", "nope"]) == 2
    assert "no split 'nope'" in capsys.readouterr().err
