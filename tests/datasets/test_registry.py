"""The registry of named datasets: the published sources with their licences and split checksums, the rendered
default, registration, mirrors, and $ORBITSET_REGISTRY."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orbitset.cli import main
from orbitset.datasets import registry
from orbitset.datasets.remote import git_blob_id
from orbitset.errors import DownloadError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delenv(registry.REGISTRY_ENV, raising=False)


def test_published_sources_are_real_locations_with_licences_and_checksummed_splits():
    names = registry.datasets()
    assert names["3diebench"].source == "https://dl.fbaipublicfiles.com/SIE/3DIEBench.tar.gz"
    assert names["3diebench-t"].source == "hf://datasets/athenacon/3DIEBench-T"
    assert names["3diebench-ood"].source == "hf://datasets/Hafez/3DIEBench-OOD"
    for name in ("3diebench", "3diebench-t", "3diebench-ood"):
        entry = names[name]
        assert entry.kind == "convert" and entry.layout == name
        assert entry.licence.startswith("CC-BY-NC")
        assert entry.splits and all(s.url.startswith("https://raw.githubusercontent.com/") for s in entry.splits)
        assert all(s.sha256 or s.git_blob for s in entry.splits), "every split file is checked"
        assert not any("invalid" in url for url in (entry.source, *entry.urls, *(s.url for s in entry.splits)))
        with pytest.raises(DownloadError, match=f"orbitset download {name} --out"):
            registry.manifest_urls(name)
    sha = {s.name: s.sha256 for s in names["3diebench"].splits}
    assert sha["val_images.npy"] == "9a945e83ade9197171567b2533d46cc28ffdf2cac6b5dec7e59a60f4a2684c38"
    assert {s.name for s in names["3diebench-ood"].splits} == {"val_images.npy", "val_labels.npy"}


def test_default_says_how_to_render_it():
    entry = registry.datasets()["default"]
    assert entry.kind == "render" and "orbitset render" in entry.how
    with pytest.raises(DownloadError, match="orbitset render"):
        registry.manifest_urls("default")


def test_cli_list_shows_every_name_with_source_size_licence_and_needs(capsys):
    assert main(["download", "--list"]) == 0
    printed = capsys.readouterr().out
    for name, entry in registry.datasets().items():
        assert f"{name}: " in printed
        assert entry.licence in printed and (entry.needs or entry.how) in printed
    assert "17.0 GB" in printed and "huggingface_hub" in printed
    assert main(["download", "default", "--out", "x"]) == 2
    assert "orbitset render" in capsys.readouterr().err


def test_git_blob_id_is_gits_object_id():
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_registered_names_resolve_to_their_urls_in_order():
    registry.register(registry.DatasetEntry("mine", ("https://a.example/m.json", "https://b.example/m.json")))
    assert registry.manifest_urls("mine") == ["https://a.example/m.json", "https://b.example/m.json"]


def test_anything_else_is_taken_as_a_url_or_path():
    assert registry.manifest_urls("https://x.example/d/manifest.json") == ["https://x.example/d/manifest.json"]
    assert registry.manifest_urls("some/folder") == ["some/folder"]


@pytest.mark.parametrize("entry", [registry.DatasetEntry("Bad Name", ("u",)), registry.DatasetEntry("ok", ()),
                                   registry.DatasetEntry("nolayout", source="https://x.example/a.tar.gz")])
def test_invalid_entries_are_refused(entry):
    with pytest.raises(DownloadError):
        registry.register(entry)


def test_environment_registry_file_adds_and_overrides(tmp_path: Path, monkeypatch):
    file = tmp_path / "registry.json"
    file.write_text(json.dumps({"3diebench": {"urls": ["file:///data/3d/manifest.json"], "description": "local copy"}}))
    monkeypatch.setenv(registry.REGISTRY_ENV, str(file))
    assert registry.manifest_urls("3diebench") == ["file:///data/3d/manifest.json"]
    file.write_text("[1, 2]")
    with pytest.raises(DownloadError, match="ORBITSET_REGISTRY"):
        registry.datasets()


def test_hub_sources_resolve_to_huggingface_hubs_file_system_without_network():
    fsspec = pytest.importorskip("fsspec")
    hub = pytest.importorskip("huggingface_hub")
    for name in ("3diebench-t", "3diebench-ood"):
        protocol = registry.datasets()[name].source.split("://", 1)[0]
        assert fsspec.get_filesystem_class(protocol) is hub.HfFileSystem
