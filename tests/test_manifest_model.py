"""The manifest model: atomic, sorted, reproducible writing and validated loading."""

from __future__ import annotations

import json

import pytest

from orbitset.errors import ManifestError
from orbitset.manifests.model import Manifest, load_manifest, write_manifest
from orbitset.testing import write_synthetic_dataset


def test_round_trip_and_totals(tmp_path):
    manifest = write_synthetic_dataset(tmp_path, classes=2, objects_per_class=4, views=3, size=16)
    loaded = load_manifest(tmp_path)
    assert loaded.to_json() == manifest.to_json()
    assert loaded.totals()["objects"] == 8 and loaded.totals()["views"] == 24
    assert set(loaded.splits) == {"train", "val"}
    assert sum(s.objects for s in loaded.shards_for("val")) == 2
    with pytest.raises(ManifestError, match="no split 'test'.*'train', 'val'"):
        loaded.shards_for("test")


def test_identical_datasets_have_identical_manifests_but_for_created(tmp_path):
    first = write_synthetic_dataset(tmp_path / "a").to_json()
    second = write_synthetic_dataset(tmp_path / "b").to_json()
    first.pop("created"), second.pop("created")
    assert first == second
    text = (tmp_path / "a" / "manifest.json").read_text()
    assert list(json.loads(text)) == sorted(json.loads(text)), "keys are sorted"
    assert not list((tmp_path / "a").glob("*.partial")), "no temporary file is left behind"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["shards"][0].update(name="../escape.tar"), "not a plain"),
        (lambda d: d["shards"][0].update(name="sub/dir.tar"), "not a plain"),
        (lambda d: d["shards"][0].update(sha256="xyz"), "invalid sha256"),
        (lambda d: d["shards"][0].update(bytes=-1), "invalid bytes"),
        (lambda d: d["shards"].append(dict(d["shards"][0])), "listed twice"),
        (lambda d: d.update(format_version=99), "version 99 is not supported"),
        (lambda d: d.pop("format"), "not an orbitset manifest"),
        (lambda d: d.pop("classes"), "malformed"),
    ],
)
def test_bad_manifests_are_refused(tmp_path, change, message):
    data = write_synthetic_dataset(tmp_path).to_json()
    change(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_manifest(tmp_path)


def test_missing_and_corrupt_manifest_messages(tmp_path):
    with pytest.raises(ManifestError, match="no manifest at"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="invalid JSON"):
        load_manifest(tmp_path)


def test_write_refuses_unsafe_names(tmp_path):
    manifest = write_synthetic_dataset(tmp_path)
    bad = Manifest.from_json(manifest.to_json())
    object.__setattr__(bad.shards[0], "name", "/abs.tar")
    with pytest.raises(ManifestError, match="not a plain"):
        write_manifest(bad, tmp_path)
