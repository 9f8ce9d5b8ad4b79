"""The bench-loader command, and datasets read over HTTP (loopback) through the shard cache."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from orbitset.cli import main
from orbitset.errors import ShardError
from orbitset.loaders import PairLoader


def test_bench_loader_command(dataset, capsys):
    assert main(["bench-loader", str(dataset), "--batch-size", "4", "--workers", "0", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 batches of 4 pairs" in out and "epoch 0: 9 pairs" in out
    assert main(["bench-loader", str(dataset), "--split", "nope"]) == 2


def serve(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def served(dataset):
    server, url = serve(dataset)
    yield url
    server.shutdown()


@pytest.mark.network
def test_remote_manifest_is_cached_and_checked(served, dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    local = [b["key"] for b in PairLoader(dataset, 4, seed=3)]
    remote = PairLoader(served, 4, seed=3)
    assert [b["key"] for b in remote] == local
    cached = sorted(p for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    assert sorted(p.suffix for p in cached) == [".oidx"] * 3 + [".tar"] * 3  # each shard with its index
    # a cached shard truncated after the fact (size differs from the manifest's) is fetched again
    victim = next(p for p in cached if p.suffix == ".tar")
    whole = victim.read_bytes()
    victim.write_bytes(whole[:-512])
    assert [b["key"] for b in PairLoader(served, 4, seed=3)] == local
    assert victim.read_bytes() == whole


@pytest.mark.network
def test_remote_shard_list(served, tmp_path, monkeypatch):
    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    loader = PairLoader([f"{served}/val-000000.tar"], 3)
    assert sorted(k for b in loader for k in b["key"]) == ["class0__0003", "class1__0003", "class2__0003"]


@pytest.mark.network
def test_remote_shard_sha256_checked_on_first_download(dataset, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("ORBITSET_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shard = copy / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF  # same size, other content: only the hash can tell
    shard.write_bytes(bytes(data))
    server, url = serve(copy)
    try:
        with pytest.raises(ShardError, match=r"train-000001\.tar: sha256"):
            list(PairLoader(url, 4))  # fetched when first read
        assert not any(p.name.endswith("train-000001.tar") for p in (tmp_path / "cache").iterdir())
    finally:
        server.shutdown()
