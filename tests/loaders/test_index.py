"""Shard index files: written with each shard, read by the loaders instead of scanning, checked against their shard;
datasets written before them still load (and `orbitset index` adds them); batches are the same either way."""

from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pytest
import torch

from orbitset.cli import main
from orbitset.errors import ShardError
from orbitset.loaders import PairLoader, PointLoader, ViewLoader
from orbitset.manifests.model import MANIFEST_NAME, load_manifest
from orbitset.shard_index import ShardOffsets, read_index
from orbitset.shards import scan_offsets


@pytest.fixture
def copy(dataset, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(dataset, target)
    return target


def strip_index_files(directory):
    """Make `directory` a dataset as written before index files: no .oidx/.idx, a version-1 manifest."""
    for path in [*directory.glob("*.oidx"), *directory.glob("*.idx")]:
        path.unlink()
    data = json.loads((directory / MANIFEST_NAME).read_text())
    for shard in data["shards"]:
        del shard["index"], shard["dali_index"]
    data["format_version"] = 1
    (directory / MANIFEST_NAME).write_text(json.dumps(data))
    for sidecar in directory.glob("*-*.json"):
        record = json.loads(sidecar.read_text())
        if record.get("info"):
            del record["info"]["index"], record["info"]["dali_index"]
            sidecar.write_text(json.dumps(record))


def epoch_batches(loader):
    return [{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()} for batch in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for name in x:
            if isinstance(x[name], torch.Tensor):
                assert torch.equal(x[name], y[name]), name
            else:
                assert x[name] == y[name], name


def test_every_shard_has_its_index_files_listed_in_the_manifest(dataset):
    manifest = load_manifest(dataset)
    for entry in manifest.shards:
        for record, suffix in ((entry.index, ".oidx"), (entry.dali_index, ".idx")):
            path = dataset / record.name
            assert record.name == entry.name.replace(".tar", suffix) and path.stat().st_size == record.bytes
        stored = ShardOffsets.from_bytes((dataset / entry.index.name).read_bytes(), entry.index.name)
        checked = read_index(dataset / entry.index.name, dataset / entry.name, entry.sha256, entry.index)
        scanned = scan_offsets(dataset / entry.name)
        assert checked.objects == entry.objects and checked.shard_sha256 == entry.sha256
        np.testing.assert_array_equal(stored.headers, scanned.headers)
        for offsets in (stored, checked):  # read back for use: the same values in narrower integers, no headers
            for name in ("keys", "starts", "offsets", "sizes"):
                np.testing.assert_array_equal(getattr(offsets, name), getattr(scanned, name))
            assert [offsets.fields[i] for i in offsets.field_ids] == [scanned.fields[i] for i in scanned.field_ids]
        assert checked.nbytes < 0.6 * stored.nbytes


def test_index_bytes_round_trip_and_refuse_truncation(dataset):
    entry = load_manifest(dataset).shards[0]
    data = (dataset / entry.index.name).read_bytes()
    offsets = ShardOffsets.from_bytes(data, "x")
    assert offsets.to_bytes() == data
    with pytest.raises(ShardError, match="truncated"):
        ShardOffsets.from_bytes(data[:-3], "x")
    with pytest.raises(ShardError, match="not an orbitset index"):
        ShardOffsets.from_bytes(b"PK" + data[2:], "x")


def test_the_main_process_opens_one_shard_and_workers_the_rest(dataset):
    loader = PairLoader(dataset, 4, num_workers=0)
    assert list(loader._main.readers._readers) == [0]  # the first object's shard, for the dataset's factor names
    keys = [k for batch in loader for k in batch["key"]]
    assert len(keys) == 9 and list(loader._main.readers._readers) == [0]  # the stream read with its own state


@pytest.mark.parametrize("make", [
    lambda d: PairLoader(d, 4, normalize=False, seed=2, num_workers=2),
    lambda d: ViewLoader(d, 3, mode="all", normalize=False, split="val"),
])
def test_batches_are_byte_identical_with_and_without_index_files(copy, dataset, make, monkeypatch, tmp_path):
    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    with_index = epoch_batches(make(dataset))
    strip_index_files(copy)
    with pytest.warns(UserWarning, match=r"have no index files.*orbitset index DIR"):
        loader = make(copy)
    assert_same_batches(with_index, epoch_batches(loader))
    built = sorted((tmp_path / "cache" / "index").iterdir())  # each shard scanned once, its index kept in the cache
    assert built and all(p.suffix == ".oidx" for p in built)
    stamps = [p.stat().st_mtime_ns for p in built]
    with pytest.warns(UserWarning, match="have no index files"):
        assert_same_batches(with_index, epoch_batches(make(copy)))
    assert [p.stat().st_mtime_ns for p in built] == stamps  # read back, not rebuilt


def test_orbitset_index_adds_the_index_files_to_an_old_dataset(copy, dataset, monkeypatch, tmp_path):
    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    strip_index_files(copy)
    with pytest.warns(UserWarning) as caught:
        PairLoader(copy, 4)
    (hint,) = re.findall(r"'(orbitset index DIR)'", str(caught[0].message))
    assert main(hint.replace("DIR", str(copy)).split()[1:]) == 0
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == 2
    for shard in manifest["shards"]:  # a writer resuming in the folder keeps listing them
        sidecar = json.loads((copy / shard["name"].replace(".tar", ".json")).read_text())
        assert sidecar["info"]["index"] == shard["index"] and sidecar["info"]["dali_index"] == shard["dali_index"]
    for name in ("oidx", "idx"):
        assert sorted(p.read_bytes() for p in copy.glob(f"*.{name}")) == sorted(p.read_bytes() for p in dataset.glob(f"*.{name}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_batches(epoch_batches(PairLoader(dataset, 4, normalize=False)),
                            epoch_batches(PairLoader(copy, 4, normalize=False)))


def test_orbitset_index_refuses_a_shard_that_does_not_match_the_manifest(copy, capsys):
    shard = copy / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    before = (copy / MANIFEST_NAME).read_bytes()
    assert main(["index", str(copy)]) == 2
    assert "train-000001.tar: sha256" in capsys.readouterr().err
    assert (copy / MANIFEST_NAME).read_bytes() == before


def _swap_index(copy, shard, other):
    (copy / f"{shard}.oidx").write_bytes((copy / f"{other}.oidx").read_bytes())


@pytest.mark.parametrize("damage, problem", [
    # another shard's index in its place: not the file the manifest lists
    (lambda copy: _swap_index(copy, "train-000000", "train-000001"), "it is not the index file the manifest lists"),
    # the manifest forgot about it (a folder of shards): the index says it is for a shard of another size
    (lambda copy: _swap_index(copy, "train-000000", "train-000002"), "it was made for a shard of"),
])
def test_an_index_that_does_not_match_its_shard_is_named_with_its_fix(copy, damage, problem, monkeypatch, tmp_path):
    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    damage(copy)
    source = copy if "manifest" in problem else sorted(copy.glob("train-*.tar"))
    with pytest.raises(ShardError, match=rf"index .*train-000000\.oidx does not match shard train-000000\.tar: "
                                         rf"{problem}.*rebuild it with 'orbitset index ") as raised:
        list(PairLoader(source, 4))
    (hint,) = re.findall(r"'(orbitset index [^']+)'", str(raised.value))
    assert hint == f"orbitset index {copy}"
    assert main(hint.split()[1:]) == 0
    assert len([b for b in PairLoader(source, 4)]) == 3


def test_offsets_onto_another_members_header_are_detected(copy):
    entry = load_manifest(copy).shards[0]
    offsets = ShardOffsets.from_bytes((copy / entry.index.name).read_bytes(), "x")
    offsets.offsets[5] = offsets.headers[6]  # member 5's data now starts on member 6's header
    assert offsets.check(entry.bytes) == "a member's header lies inside another member's data (overlapping or out of order)"
    shifted = ShardOffsets.from_bytes((copy / entry.index.name).read_bytes(), "x")
    for array in (shifted.headers, shifted.offsets):
        array += 512  # consistent, inside the file, but every header is where another member's data is
    assert shifted.check(entry.bytes) is None
    with open(copy / entry.name, "rb") as shard:
        assert shifted.check_headers(shard.fileno()) == "member 0 has no tar header at byte 512"


def test_point_loader_reads_through_the_index(point_dataset):
    batch = next(iter(PointLoader(point_dataset, 4, num_points=8)))
    assert batch["points"].shape == (4, 8, 3)
