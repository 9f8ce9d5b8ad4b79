"""download: a local faulty HTTP server (127.0.0.1) truncates, corrupts, stalls and drops; every shard ends verified."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from orbitset.cli import main
from orbitset.datasets import registry
from orbitset.errors import DownloadError, ManifestError
from orbitset.manifests.download import DownloadOptions, _Progress, download_dataset, fetch_shard
from orbitset.manifests.model import load_manifest
from orbitset.manifests.verify import verify_dataset

from .faulty_server import FaultyServer

pytestmark = pytest.mark.network

FAST = DownloadOptions(jobs=3, retries=4, timeout=1.0, backoff=0.01, progress=False)


@pytest.fixture
def server(dataset: Path):
    with FaultyServer(dataset, stall_seconds=10.0) as running:
        yield running


def _shards(dataset: Path) -> list[str]:
    return [entry.name for entry in load_manifest(dataset).shards]


def test_clean_download_is_verified_and_reproduces_the_manifest(server: FaultyServer, dataset: Path, tmp_path: Path):
    out = tmp_path / "out"
    report = download_dataset(server.url + "/manifest.json", out, options=FAST)
    assert report.fetched == _shards(dataset) and report.kept == []
    assert verify_dataset(out).ok
    assert (out / "manifest.json").read_bytes() == (dataset / "manifest.json").read_bytes()
    assert not list(out.glob(".*partial"))


def test_truncation_corruption_stall_and_drop_are_survived(server: FaultyServer, dataset: Path, tmp_path: Path):
    truncated, corrupted, stalled, dropped = _shards(dataset)
    server.faults["/manifest.json"] = ["drop"]
    server.faults[f"/{truncated}"] = ["truncate"]
    server.faults[f"/{corrupted}"] = ["corrupt"]
    server.faults[f"/{stalled}"] = ["stall"]
    server.faults[f"/{dropped}"] = ["drop", "drop"]
    out = tmp_path / "out"
    report = download_dataset(server.url + "/manifest.json", out, options=FAST)
    assert sorted(report.fetched) == sorted(_shards(dataset))
    assert verify_dataset(out, deep=True).ok
    size = {e.name: e.bytes for e in load_manifest(dataset).shards}
    # a truncated or stalled transfer resumes where it stopped (HTTP Range), it does not start again
    assert server.ranges(f"/{truncated}") == [None, f"bytes={size[truncated] // 2}-"]
    assert server.ranges(f"/{stalled}") == [None, "bytes=100-"]
    # a corrupt file fails its sha256 and is fetched again from scratch
    assert server.ranges(f"/{corrupted}") == [None, None]
    assert server.count(f"/{dropped}") == 3


def test_a_shard_corrupt_twice_is_reported_and_nothing_is_taken_for_complete(server: FaultyServer, dataset: Path, tmp_path: Path):
    bad = _shards(dataset)[1]
    server.faults[f"/{bad}"] = ["corrupt", "corrupt"]
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match=f"{bad}.*sha256"):
        download_dataset(server.url + "/manifest.json", out, options=FAST)
    assert not (out / bad).exists() and not (out / "manifest.json").exists()
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(set(_shards(dataset)) - {bad})


def test_an_interrupted_download_resumes_without_refetching_complete_shards(server: FaultyServer, dataset: Path, tmp_path: Path):
    names = _shards(dataset)
    server.faults[f"/{names[0]}"] = ["truncate", "drop", "drop"]  # gives up after 2 tries, half a file on disk
    server.faults[f"/{names[3]}"] = ["drop"] * 3
    out = tmp_path / "out"
    with pytest.raises(DownloadError) as failure:
        download_dataset(server.url + "/manifest.json", out, options=DownloadOptions(retries=1, timeout=1.0, backoff=0.01, progress=False))
    assert names[0] in str(failure.value) and names[3] in str(failure.value)
    assert (out / f".{names[0]}.partial").stat().st_size == load_manifest(dataset).shards[0].bytes // 2
    before = {name: server.count(f"/{name}") for name in names}
    report = download_dataset(server.url + "/manifest.json", out, options=FAST)
    assert sorted(report.kept) == sorted(names[1:3]) and sorted(report.fetched) == sorted([names[0], names[3]])
    for name in names[1:3]:
        assert server.count(f"/{name}") == before[name], f"{name} was complete and must not be fetched again"
    assert server.ranges(f"/{names[0]}")[-1] == f"bytes={load_manifest(dataset).shards[0].bytes // 2}-"
    assert verify_dataset(out).ok


def test_a_good_shard_is_never_overwritten_and_a_bad_local_copy_is_replaced(server: FaultyServer, dataset: Path, tmp_path: Path):
    good, bad = _shards(dataset)[:2]
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(dataset / good, out / good)
    (out / bad).write_bytes(b"not a shard")
    inode = (out / good).stat().st_ino
    report = download_dataset(server.url + "/manifest.json", out, options=FAST)
    assert good in report.kept and bad in report.fetched
    assert server.count(f"/{good}") == 0 and (out / good).stat().st_ino == inode
    assert verify_dataset(out).ok


def test_server_ignoring_range_restarts_the_file(server: FaultyServer, dataset: Path, tmp_path: Path):
    name = _shards(dataset)[0]
    server.faults[f"/{name}"] = ["truncate", "ignore-range"]
    out = tmp_path / "out"
    download_dataset(server.url + "/manifest.json", out, split="train", options=FAST)
    assert verify_dataset(out).ok
    assert load_manifest(out).splits == {"train": _shards(dataset)[:3]}, "only the asked split is listed"


def test_a_stalled_connection_does_not_hang(server: FaultyServer, dataset: Path, tmp_path: Path):
    name = _shards(dataset)[0]
    server.faults[f"/{name}"] = ["stall"] * 5
    entry = load_manifest(dataset).shards[0]
    result: list = []
    options = DownloadOptions(retries=1, timeout=0.5, backoff=0.01, progress=False)

    def run():
        try:
            fetch_shard(entry, [server.url + "/manifest.json"], tmp_path, options, _Progress(0, False), threading.Event())
        except DownloadError as exc:
            result.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=8)
    assert not worker.is_alive(), "a stalled read must time out"
    assert result and "timed out" in str(result[0]).lower()


def test_mirrors_are_tried_in_order_and_names_resolve(server: FaultyServer, dataset: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(registry.DatasetEntry("tiny", (server.url + "/gone/manifest.json", server.url + "/manifest.json")))
    report = download_dataset("tiny", tmp_path / "out", options=FAST)
    assert verify_dataset(report.out).ok
    assert server.count("/gone/manifest.json") == 1


def test_converted_and_rendered_names_are_not_manifests_and_say_how_to_get_them(tmp_path: Path):
    with pytest.raises(DownloadError, match="converted from .*orbitset download 3diebench --out"):
        download_dataset("3diebench", tmp_path / "out", options=FAST)
    with pytest.raises(DownloadError, match="orbitset render"):
        download_dataset("default", tmp_path / "out", options=FAST)
    assert not (tmp_path / "out").exists()


def test_local_path_file_url_and_fsspec_sources(dataset: Path, tmp_path: Path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    for path in dataset.iterdir():
        memory.pipe(f"/published-{tmp_path.name}/{path.name}", path.read_bytes())
    sources = {
        "path": str(dataset),
        "file": (dataset / "manifest.json").as_uri(),
        "memory": f"memory://published-{tmp_path.name}/manifest.json",
    }
    for label, source in sources.items():
        out = tmp_path / label
        download_dataset(source, out, options=FAST)
        assert verify_dataset(out).ok, label


def test_downloads_only_write_inside_the_output_folder(dataset: Path, tmp_path: Path):
    import json

    data = json.loads((dataset / "manifest.json").read_text())
    data["shards"][0]["name"] = "../escaped.tar"
    (dataset / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="plain"):
        download_dataset(str(dataset), tmp_path / "out", options=FAST)
    assert not (tmp_path / "escaped.tar").exists()


def test_a_symlink_in_the_output_folder_is_not_written_through(dataset: Path, tmp_path: Path):
    name = _shards(dataset)[0]
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    (out / f".{name}.partial").symlink_to(victim)
    with pytest.raises(DownloadError, match="symlink"):
        download_dataset(str(dataset), out, options=FAST)
    assert victim.read_bytes() == b"keep me"


def test_cli_download(server: FaultyServer, dataset: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = ["download", server.url + "/manifest.json", "--out", str(out), "--jobs", "2", "--timeout", "1", "--backoff", "0.01"]
    assert main(args) == 0
    assert "4 shard(s) fetched" in capsys.readouterr().out
    assert main(args) == 0
    assert "4 already complete" in capsys.readouterr().out
    assert main(["download", "default", "--out", str(out)]) == 2
    assert "orbitset render" in capsys.readouterr().err
