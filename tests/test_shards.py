"""Shard writing (atomic, deterministic) and safe indexed reading."""

from __future__ import annotations

import io
import tarfile

import pytest
import webdataset as wds

from orbitset.errors import ShardError
from orbitset.schema import decode
from orbitset.shards import ShardReader, file_sha256, index_shard, iter_samples, write_shard
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
