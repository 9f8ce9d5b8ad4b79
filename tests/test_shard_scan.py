"""Sequential shard reading (orbitset.shard_scan): the same samples as ShardReader, the same refusals, and shards
with long names (pax headers) read through ShardReader from where they appear."""

from __future__ import annotations

import pytest

from orbitset.errors import ShardError
from orbitset.shard_scan import scan_shard
from orbitset.shards import ShardReader, write_shard
from orbitset.testing import synthetic_sample
from tests.test_shards import crafted_tar, regular


def _samples(keys: list[str]) -> list[dict]:
    out = []
    for index, key in enumerate(keys):
        sample = synthetic_sample("cup", 1, index, views=4, size=16, seed=0).encode()
        sample["__key__"] = key
        out.append(sample)
    return out


def _read_all(path) -> list[tuple[str, list[str], dict[str, bytes]]]:
    with ShardReader(path) as reader:
        return [(key, reader.fields(key), {f: reader.read_field(key, f) for f in reader.fields(key)}) for key in reader.keys()]


@pytest.mark.parametrize("keys", [["a__0", "a__1", "a__2"], ["a__0", "b" * 120 + "__1", "a__2"]],
                         ids=["ustar", "long-name-in-the-middle"])
def test_scan_gives_what_shard_reader_reads(tmp_path, keys):
    path = tmp_path / "train-000000.tar"
    write_shard(path, _samples(keys))
    scanned = [(s.key, s.fields, s.data) for s in scan_shard(path)]
    assert scanned == _read_all(path)
    wanted = [(s.key, s.fields, s.data) for s in scan_shard(path, {"cls", "latents.npy"})]
    assert [(k, f, {n: d[n] for n in ("cls", "latents.npy")}) for k, f, d in _read_all(path)] == wanted


def test_truncated_and_corrupt_shards_are_named(tmp_path):
    path = tmp_path / "train-000003.tar"
    write_shard(path, _samples(["a__0", "a__1"]))
    data = path.read_bytes()
    path.write_bytes(data[:3000])
    with pytest.raises(ShardError, match="train-000003.tar is truncated"):
        list(scan_shard(path))
    corrupt = bytearray(data)
    corrupt[20] ^= 0x01  # a byte of the first header's name field, after the name: the name reads the same, the
    # header's checksum fails
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ShardError, match="train-000003.tar.*checksum"):
        list(scan_shard(path))


@pytest.mark.parametrize(("member", "message"), [(regular("../evil.jpg"), "path"), (regular("dir/key.jpg"), "path"),
                                                 (regular("key.meta.pkl"), "pickle payload")])
def test_unsafe_members_are_refused(tmp_path, member, message):
    path = tmp_path / "bad.tar"
    crafted_tar(path, [regular("ok__1.000.jpg"), member])
    with pytest.raises(ShardError, match=f"bad.tar.*{message}"):
        list(scan_shard(path))
