"""Shard writing (atomic, deterministic) and safe indexed reading."""

from __future__ import annotations

import io
import tarfile

import pytest
import webdataset as wds

from orbitset.errors import ShardError
from orbitset.schema import decode
from orbitset.integrity import file_sha256
from orbitset.shards import ShardReader, index_shard, iter_samples, write_shard
from orbitset.testing import synthetic_sample


def samples(count: int = 3, views: int = 5):
    return [synthetic_sample("cup", 1, i, views=views, size=16, seed=0).encode() for i in range(count)]


def test_write_then_read_by_seeking(tmp_path):
    info = write_shard(tmp_path / "train-000000.tar", samples())
    assert (info.objects, info.views) == (3, 15)
    assert info.bytes == (tmp_path / "train-000000.tar").stat().st_size
    assert info.sha256 == file_sha256(tmp_path / "train-000000.tar")
    with ShardReader(tmp_path / "train-000000.tar") as reader:
        assert reader.keys() == ["cup__0000", "cup__0001", "cup__0002"]
        two_views = reader.read("cup__0001", ["003.jpg", "latents.npy"])
        full = decode(reader.read("cup__0001"))
    assert set(two_views) == {"__key__", "__shard__", "003.jpg", "latents.npy"}
    assert two_views["003.jpg"] == full.images[3]


def test_shards_are_byte_reproducible_and_webdataset_readable(tmp_path):
    first = write_shard(tmp_path / "a.tar", samples())
    second = write_shard(tmp_path / "b.tar", samples())
    assert first.sha256 == second.sha256
    keys = [s["__key__"] for s in wds.WebDataset(str(tmp_path / "a.tar"), shardshuffle=False)]
    assert keys == ["cup__0000", "cup__0001", "cup__0002"]


def test_failed_write_leaves_no_file(tmp_path):
    def broken():
        yield samples(1)[0]
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_shard(tmp_path / "x.tar", broken())
    assert list(tmp_path.iterdir()) == []


def test_truncated_shard_is_named(tmp_path):
    path = tmp_path / "train-000003.tar"
    write_shard(path, samples())
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ShardError, match="train-000003.tar.*truncated|train-000003.tar.*not a readable"):
        index_shard(path)


def crafted_tar(path, members):
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def regular(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (regular("../evil.jpg"), "path"),
        (regular("/etc/evil.jpg"), "path"),
        (regular("dir/key.jpg"), "path"),
        (regular("key.meta.pkl"), "pickle payload"),
        (regular("key.pyd"), "pickle payload"),
        (regular("noextension"), "not 'key.field'"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, member, message):
    path = tmp_path / "bad.tar"
    crafted_tar(path, [regular("ok__1.000.jpg"), member])
    with pytest.raises(ShardError, match=f"bad.tar.*{message}"):
        index_shard(path)
    with pytest.raises(ShardError, match=message):
        list(iter_samples(open(path, "rb"), "bad.tar"))


def test_links_are_refused(tmp_path):
    link = tarfile.TarInfo("key__1.000.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    path = tmp_path / "link.tar"
    crafted_tar(path, [(link, None)])
    with pytest.raises(ShardError, match="link.tar.*is a link"):
        index_shard(path)


def test_stream_reading_groups_members_by_key(tmp_path):
    write_shard(tmp_path / "s.tar", samples(2, views=2))
    with open(tmp_path / "s.tar", "rb") as stream:
        got = list(iter_samples(stream, "s.tar"))
    assert [s["__key__"] for s in got] == ["cup__0000", "cup__0001"]
    assert decode(got[1]).num_views == 2


def _manifest_fields():
    from orbitset.manifests.model import Factor

    return {"name": "t", "classes": ["cup"], "factors": [Factor("rot_x", "rad")]}


def test_streaming_writer_names_rolls_and_writes_manifest_last(tmp_path):
    from orbitset.manifests.model import load_manifest
    from orbitset.shards import ShardWriter

    writer = ShardWriter(tmp_path, objects_per_shard=2, identity={"seed": 0})
    open_partials = []
    for index, sample in enumerate(samples(5, views=2)):
        writer.add("train" if index < 3 else "val", sample["__key__"], sample)
        open_partials.append(len(list(tmp_path.glob(".*.partial"))))
        assert not (tmp_path / "manifest.json").exists()
    writer.add_failure("val", "cup__0099", "mesh has no faces")
    manifest = writer.write_manifest(**_manifest_fields())
    assert max(open_partials) == 1
    assert [s.name for s in manifest.shards] == ["train-000000.tar", "train-000001.tar", "val-000000.tar"]
    assert [(s.objects, s.views, s.split) for s in manifest.shards] == [(2, 4, "train"), (1, 2, "train"), (2, 4, "val")]
    for entry in manifest.shards:
        assert entry.sha256 == file_sha256(tmp_path / entry.name)
        assert entry.bytes == (tmp_path / entry.name).stat().st_size
    assert [(f.object, f.reason) for f in manifest.failures] == [("cup__0099", "mesh has no faces")]
    assert load_manifest(tmp_path).shards == manifest.shards
    # the failure opened val-000001, which holds no sample: a sidecar (for resume) but no tar
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        "manifest.json", "train-000000.json", "train-000001.json", "val-000000.json", "val-000001.json"]
    assert not (tmp_path / "val-000001.tar").exists()


def test_streaming_writer_resumes_complete_shards_and_rewrites_the_rest(tmp_path):
    from orbitset.shards import ShardWriter

    data = samples(5, views=2)
    first = ShardWriter(tmp_path, objects_per_shard=2, identity={"seed": 0})
    for sample in data[:3]:
        first.add("train", sample["__key__"], sample)
    # killed here: train-000000 complete, train-000001 still a partial file
    assert (tmp_path / ".train-000001.tar.partial").exists()
    done_bytes = (tmp_path / "train-000000.tar").read_bytes()

    second = ShardWriter(tmp_path, objects_per_shard=2, identity={"seed": 0})
    assert not list(tmp_path.glob(".*.partial"))
    skip = second.resume("train")
    assert skip == [data[0]["__key__"], data[1]["__key__"]]
    for sample in data[len(skip):]:
        second.add("train", sample["__key__"], sample)
    manifest = second.write_manifest(**_manifest_fields())
    assert [(s.name, s.objects) for s in manifest.shards] == [("train-000000.tar", 2), ("train-000001.tar", 2), ("train-000002.tar", 1)]
    assert (tmp_path / "train-000000.tar").read_bytes() == done_bytes

    fresh = ShardWriter(tmp_path / "fresh", objects_per_shard=2)
    for sample in data:
        fresh.add("train", sample["__key__"], sample)
    assert [s.sha256 for s in fresh.write_manifest(**_manifest_fields()).shards] == [s.sha256 for s in manifest.shards]


def test_writer_refuses_a_folder_of_another_dataset(tmp_path):
    from orbitset.shards import ShardWriter

    writer = ShardWriter(tmp_path, objects_per_shard=2, identity={"seed": 0})
    writer.write_shard("train-000000.tar", "train", ["cup__0000"], samples(1))
    other = ShardWriter(tmp_path, objects_per_shard=2, identity={"seed": 1})
    with pytest.raises(ShardError, match="train-000000.tar of a different dataset"):
        other.resume("train")
    same = ShardWriter(tmp_path, objects_per_shard=2, identity={"seed": 0})
    assert same.completed("train-000000.tar", "train", ["cup__0000"]).entry.objects == 1


def test_whole_shard_of_failures_leaves_only_a_sidecar_and_is_kept(tmp_path):
    from orbitset.manifests.model import Failure
    from orbitset.shards import ShardWriter

    writer = ShardWriter(tmp_path)
    record = writer.write_shard("val-000000.tar", "val", ["cup__0000"], [], [Failure("cup__0000", "timeout")])
    assert record.entry is None and not (tmp_path / "val-000000.tar").exists()
    again = ShardWriter(tmp_path).completed("val-000000.tar", "val", ["cup__0000"])
    assert again is not None and again.failures == [Failure("cup__0000", "timeout")]


def test_shard_whose_tar_changed_size_is_not_complete(tmp_path):
    from orbitset.shards import ShardWriter

    ShardWriter(tmp_path).write_shard("train-000000.tar", "train", ["cup__0000"], samples(1))
    tar = tmp_path / "train-000000.tar"
    tar.write_bytes(tar.read_bytes()[:-512])
    assert ShardWriter(tmp_path).completed("train-000000.tar", "train", ["cup__0000"]) is None


@pytest.mark.parametrize("field", ["weights.pkl", "model.pt", "../escape.jpg"])
def test_writer_refuses_members_a_reader_would_refuse(tmp_path, field):
    sample = {**samples(1)[0], field: b"payload"}
    with pytest.raises(ShardError, match="x.tar"):
        write_shard(tmp_path / "x.tar", [sample])
    assert list(tmp_path.iterdir()) == []
