"""Remote datasets through a bounded shard cache: eviction, limits, processes sharing the cache, block shuffle, the
same batches as the local dataset, resumption."""

from __future__ import annotations

import hashlib
import multiprocessing
import threading

import numpy as np
import pytest

from orbitset.errors import UsageError
from orbitset.loaders import PairLoader, ViewLoader
from orbitset.loaders.cache import ShardCache, parse_size
from orbitset.loaders.plan import rank_objects
from orbitset.manifests.model import load_manifest
from orbitset.testing import write_synthetic_dataset

from ..manifests.faulty_server import FaultyServer


def test_sizes_parse_with_decimal_and_binary_units():
    assert parse_size("20GB") == 20 * 10**9 and parse_size("512 MiB") == 512 * 2**20 and parse_size(1000) == 1000
    assert parse_size("1.5kb") == 1500
    for bad in ("-1GB", "lots", 0, True, "3 parsecs"):
        with pytest.raises(UsageError, match="cache_limit must be"):
            parse_size(bad)


def _files(tmp_path, count, size=1000):
    source = tmp_path / "source"
    source.mkdir()
    files = {}
    for index in range(count):
        data = bytes([index]) * size
        (source / f"f{index}.tar").write_bytes(data)
        files[f"f{index}.tar"] = (size, hashlib.sha256(data).hexdigest(), [str(source / f"f{index}.tar")])
    return files


def _cached(cache):
    return sorted(p.name for p in cache.root.iterdir() if not p.name.startswith("."))


def test_least_recently_used_files_are_evicted_beyond_the_limit(tmp_path):
    files = _files(tmp_path, 4)
    cache = ShardCache(tmp_path / "cache", limit=2500)
    for name in ("f0.tar", "f1.tar"):
        cache.fetch(name, *files[name])
    assert _cached(cache) == ["f0.tar", "f1.tar"]
    import os
    import time

    os.utime(cache.root / "f0.tar", (time.time() - 10, time.time() - 10))
    os.utime(cache.root / "f1.tar", (time.time() - 5, time.time() - 5))
    assert cache.cached("f0.tar", 1000) is not None  # used again: now the most recent
    cache.fetch("f2.tar", *files["f2.tar"])
    assert _cached(cache) == ["f0.tar", "f2.tar"] and cache.usage() <= 2500
    (cache.root / "f2.tar").write_bytes(b"truncated")  # damaged in the cache: fetched again, whole
    assert cache.fetch("f2.tar", *files["f2.tar"]).read_bytes() == bytes([2]) * 1000
    with pytest.raises(UsageError, match=r"cache_limit=2500 bytes is smaller than big\.tar"):
        cache.fetch("big.tar", 3000, "0" * 64, ["nowhere"])


def _fetch_in_process(root, url, size, sha256):
    ShardCache(root, limit=10**6).fetch("shared.tar", size, sha256, [url])


@pytest.mark.network
def test_processes_sharing_a_cache_fetch_a_file_once_and_never_see_it_half_written(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    data = np.random.default_rng(0).bytes(200_000)
    (source / "shared.tar").write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    with FaultyServer(source, slow_chunk=20_000, slow_seconds=0.05) as server:
        server.faults["/shared.tar"] = ["slow", "slow", "slow"]
        seen: list[int] = []
        stop = threading.Event()

        def watch():  # the file is either absent or whole
            while not stop.is_set():
                try:
                    seen.append(len((tmp_path / "cache" / "shared.tar").read_bytes()))
                except FileNotFoundError:
                    pass

        watcher = threading.Thread(target=watch)
        watcher.start()
        context = multiprocessing.get_context("fork")
        processes = [context.Process(target=_fetch_in_process, args=(tmp_path / "cache", f"{server.url}/shared.tar",
                                                                    len(data), sha256)) for _ in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        stop.set()
        watcher.join()
        assert [p.exitcode for p in processes] == [0, 0, 0]
        assert server.count("/shared.tar") == 1
    assert (tmp_path / "cache" / "shared.tar").read_bytes() == data
    assert set(seen) <= {len(data)}


def test_block_shuffle_reads_a_window_of_shards_at_a_time_and_every_object_once():
    counts = [7, 8, 8, 5, 8, 8, 8, 8, 3, 8]
    full = rank_objects(counts, seed=1, epoch=2, rank=0, world_size=1, shuffle=True, drop_last=False, resampled=False)
    for window in (1, 2, 3):
        order = rank_objects(counts, seed=1, epoch=2, rank=0, world_size=1, shuffle=True, drop_last=False,
                             resampled=False, window=window)
        assert sorted(order) == sorted(full) and order != full
        shard_order = list(dict.fromkeys(shard for shard, _ in order))  # the epoch's shard order, as blocks follow it
        blocks = [shard_order[start : start + window] for start in range(0, len(counts), window)]
        cut = np.cumsum([sum(counts[s] for s in block) for block in blocks])[:-1]
        for block, part in zip(blocks, np.split(np.array(order), cut)):
            assert set(part[:, 0]) == set(block)  # each stretch of the order reads its block's shards only
    assert len({shard for shard, _ in full[:16]}) > 3  # without a window the first 16 objects span many shards


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    """16 train shards of 2 objects (4 views of 16 px)."""
    out = tmp_path_factory.mktemp("many")
    write_synthetic_dataset(out, classes=4, objects_per_class=8, views=4, size=16, objects_per_shard=2,
                            val_fraction=0.0, seed=5)
    return out


def _cache_bytes(root):
    total = 0
    for path in root.glob("*"):
        if not path.name.startswith("."):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
    return total


@pytest.mark.network
def test_a_quarter_of_the_dataset_in_the_cache_gives_the_local_batches(many_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    manifest = load_manifest(many_shards)
    dataset_bytes = sum(e.bytes + e.index.bytes for e in manifest.shards)
    largest = max(e.bytes for e in manifest.shards)
    limit = dataset_bytes // 4
    with FaultyServer(many_shards) as server:
        with pytest.raises(UsageError, match="smaller than the largest shard"):
            PairLoader(server.url + "/manifest.json", 4, cache_limit=largest - 1)
        remote = PairLoader(server.url + "/manifest.json", 4, seed=7, num_workers=2, cache_limit=limit,
                            normalize=False)
        assert remote.shuffle_window == limit // largest // 2 >= 1
        assert server.count("/train-000015.tar") == 0  # nothing fetched ahead of the plan
        peak, stop = [0], threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], _cache_bytes(tmp_path / "cache"))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            remote_epochs = [[(b["key"], b["view_a"].clone(), b["index_a"].tolist(), b["index_b"].tolist())
                              for b in remote] for _ in range(2)]
        finally:
            stop.set()
            watcher.join()
        assert sum(server.count(f"/{e.name}") for e in manifest.shards) > len(manifest.shards)  # evicted, fetched again
    assert 0 < peak[0] <= limit + largest
    local = PairLoader(many_shards, 4, seed=7, shuffle_window=remote.shuffle_window, normalize=False)
    for epoch in remote_epochs:
        local_epoch = list(local)
        assert [b[0] for b in epoch] == [b["key"] for b in local_epoch]
        for got, want in zip(epoch, local_epoch):
            assert (got[2], got[3]) == (want["index_a"].tolist(), want["index_b"].tolist())
            assert got[1].equal(want["view_a"])
    unwindowed = PairLoader(many_shards, 4, seed=7)  # the same pairs, in another order
    pairs = {(k, a, b) for batch in remote_epochs[0] for k, a, b in zip(batch[0], batch[2], batch[3])}
    assert pairs == {(k, a, b) for batch in unwindowed for k, a, b in
                     zip(batch["key"], batch["index_a"].tolist(), batch["index_b"].tolist())}


@pytest.mark.network
def test_resuming_with_a_bounded_cache_continues_with_the_same_batches(many_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    limit = sum(e.bytes for e in load_manifest(many_shards).shards) // 4
    with FaultyServer(many_shards) as server:
        url = server.url + "/manifest.json"
        whole = [b["key"] for b in ViewLoader(url, 3, seed=1, cache_limit=limit)]
        interrupted = ViewLoader(url, 3, seed=1, cache_limit=limit)
        for done, _ in enumerate(interrupted, 1):
            if done == 4:
                break
        state = interrupted.state_dict()
        resumed = ViewLoader(url, 3, seed=1, cache_limit=limit)
        resumed.load_state_dict(state)
        assert [b["key"] for b in resumed] == whole[4:]
