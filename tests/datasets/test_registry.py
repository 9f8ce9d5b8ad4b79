"""The registry of named datasets: built-in placeholders, registration, mirrors, and $ORBITSET_REGISTRY."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orbitset.datasets import registry
from orbitset.errors import DownloadError


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delenv(registry.REGISTRY_ENV, raising=False)


def test_builtin_names_exist_and_are_placeholders_until_published():
    names = registry.datasets()
    assert {"3diebench", "3diebench-t", "3diebench-ood", "default"} <= set(names)
    for name in ("3diebench", "3diebench-t", "3diebench-ood", "default"):
        entry = names[name]
        assert len(entry.urls) >= 2, "a primary URL and at least one mirror"
        assert all(url.endswith("/manifest.json") for url in entry.urls)
        with pytest.raises(DownloadError, match="not published"):
            registry.manifest_urls(name)


def test_registered_names_resolve_to_their_urls_in_order():
    registry.register(registry.DatasetEntry("mine", ("https://a.example/m.json", "https://b.example/m.json")))
    assert registry.manifest_urls("mine") == ["https://a.example/m.json", "https://b.example/m.json"]


def test_anything_else_is_taken_as_a_url_or_path():
    assert registry.manifest_urls("https://x.example/d/manifest.json") == ["https://x.example/d/manifest.json"]
    assert registry.manifest_urls("some/folder") == ["some/folder"]


@pytest.mark.parametrize("entry", [registry.DatasetEntry("Bad Name", ("u",)), registry.DatasetEntry("ok", ())])
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
