"""The manifest format: shipped JSON Schema, validation on load, determinism, plain shard names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orbitset.errors import ManifestError
from orbitset.manifests.model import FORMAT_VERSION, MANIFEST_NAME, load_manifest, manifest_schema, write_manifest
from orbitset.testing import write_synthetic_dataset


def _edit(directory: Path, change) -> Path:
    path = directory / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_schema_is_package_data_and_describes_the_written_manifest(dataset: Path):
    schema = manifest_schema()
    data = json.loads((dataset / MANIFEST_NAME).read_text())
    assert set(data) <= set(schema["properties"])
    assert set(schema["required"]) <= set(data)
    assert data["format_version"] == FORMAT_VERSION and FORMAT_VERSION in schema["properties"]["format_version"]["enum"]


def test_identical_datasets_give_identical_manifests_apart_from_created(tmp_path: Path):
    for name in ("a", "b"):
        write_synthetic_dataset(tmp_path / name, classes=2, objects_per_class=2, views=2, size=8)
    a, b = (json.loads((tmp_path / n / MANIFEST_NAME).read_text()) for n in ("a", "b"))
    a.pop("created"), b.pop("created")
    assert a == b
    text = (tmp_path / "a" / MANIFEST_NAME).read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n", "keys are written sorted"


def test_round_trip_keeps_every_field(dataset: Path, tmp_path: Path):
    manifest = load_manifest(dataset)
    write_manifest(manifest, tmp_path)
    assert (tmp_path / MANIFEST_NAME).read_text() == (dataset / MANIFEST_NAME).read_text()


@pytest.mark.parametrize("bad_name", ["../evil.tar", "sub/evil.tar", "/abs/evil.tar", "..\\evil.tar", ".hidden.tar"])
def test_shard_names_with_paths_are_rejected(dataset: Path, bad_name: str):
    _edit(dataset, lambda d: d["shards"][0].update(name=bad_name))
    with pytest.raises(ManifestError, match="shard"):
        load_manifest(dataset)


def test_shard_names_are_checked_by_the_model_itself(dataset: Path, tmp_path: Path):
    import dataclasses

    manifest = load_manifest(dataset)
    manifest.shards[0] = dataclasses.replace(manifest.shards[0], name="../outside.tar")
    with pytest.raises(ManifestError, match="plain"):
        manifest.check()
    with pytest.raises(ManifestError):
        write_manifest(manifest, tmp_path)
    assert not (tmp_path / MANIFEST_NAME).exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["shards"][0].update(bytes=-1), "bytes"),
        (lambda d: d["shards"][0].update(sha256="xyz"), "sha256"),
        (lambda d: d["shards"][0].update(color="red"), "color"),
        (lambda d: d["shards"][-1].update(color="red"), "color"),  # entries after the first: by the typed checks
        (lambda d: d["shards"][-1].update(split=""), "split"),
        (lambda d: d["shards"][-1]["index"].update(sha256="xyz"), "index with an invalid size or sha256"),
        (lambda d: d["shards"][-1]["dali_index"].update(name="other.idx"), "must be named like the shard"),
        (lambda d: d.pop("classes"), "classes"),
        (lambda d: d["factors"][0].update(low="zero"), "low|zero"),
        (lambda d: d["totals"].update(objects=999), "totals"),
        (lambda d: d.update(format_version=99), "version"),
    ],
)
def test_invalid_manifests_are_refused_with_the_entry_named(dataset: Path, change, message: str):
    _edit(dataset, change)
    with pytest.raises(ManifestError, match=message):
        load_manifest(dataset)


def test_missing_and_corrupt_manifest_say_how_to_fix(tmp_path: Path, dataset: Path):
    with pytest.raises(ManifestError, match="no manifest"):
        load_manifest(tmp_path)
    (dataset / MANIFEST_NAME).write_text('{"format": "orbitset-manifest", ')
    with pytest.raises(ManifestError, match="invalid JSON"):
        load_manifest(dataset)
