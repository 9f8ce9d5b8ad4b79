"""The dataset card: its YAML header parses into Hugging Face metadata whose configs load the shards, its links
exist, and its tables match the dataset."""

from __future__ import annotations

import re

import pytest
import yaml

from orbitset.errors import ShardError
from orbitset.manifests.model import load_manifest
from orbitset.publish.card import card_text, size_category
from orbitset.publish.facts import brace_pattern, read_facts
from orbitset.testing import synthetic_sample, write_synthetic_dataset
from tests.loaders.conftest import write_samples


def header_and_body(text: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert match, "the card must start with a YAML header between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def test_header_parses_and_describes_the_dataset(published):
    header, _ = header_and_body((published / "README.md").read_text())
    manifest = load_manifest(published)
    assert header["license"] == "other"
    assert header["size_categories"] == ["n<1K"]
    assert "image-feature-extraction" in header["task_categories"]
    (config,) = header["configs"]
    assert {entry["split"]: entry["path"] for entry in config["data_files"]} == {"train": "train-*.tar", "val": "val-*.tar"}
    assert sorted(p.name for p in published.glob("train-*.tar")) == manifest.splits["train"]


def test_every_link_exists_and_tables_match(published):
    _, body = header_and_body((published / "README.md").read_text())
    links = re.findall(r"\]\(([^)]+)\)", body)
    assert {"contact_sheet.png", "manifest.json", "croissant.json"} <= set(links)
    for link in links:
        assert (published / link).is_file(), f"the card links {link}, which is not beside it"
    manifest = load_manifest(published)
    per_split = {split: sum(s.objects for s in manifest.shards_for(split)) for split in manifest.splits}
    assert f"| **all** | {per_split['train']} | {per_split['val']} | {sum(per_split.values())} |" in body
    for factor in manifest.factors:  # the factor table: name, unit, range
        assert re.search(rf"\| `{factor.name}` \| {re.escape(factor.unit)} \| \[{factor.low:.4g}, {factor.high:.4g}\] \|", body)
    assert "Garrido" in body and "@inproceedings" in body  # the recipe derives from 3DIEBench
    assert "None: every object of the recipe was produced." in body
    assert "wds.WebDataset('path/to/this/folder/train-{000000..000001}.tar'" in body


def test_hugging_face_reads_the_folder_through_the_card_configs(published, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = datasets.load_dataset(str(published), cache_dir=str(tmp_path))
    manifest = load_manifest(published)
    for split in manifest.splits:
        assert rows[split].num_rows == sum(s.objects for s in manifest.shards_for(split))


def test_synthetic_dataset_card_has_no_citation_and_lists_failures(tmp_path):
    manifest = write_synthetic_dataset(tmp_path, classes=2, objects_per_class=2, views=3, size=16)
    from orbitset.manifests.model import Failure, write_manifest

    manifest.failures = [Failure("class1/7", "mesh has no faces")]
    write_manifest(manifest, tmp_path)
    text = card_text(read_facts(tmp_path), license="cc-by-4.0", contact_sheet=False)
    header, body = header_and_body(text)
    assert header["license"] == "cc-by-4.0"
    assert "Citation" not in body and "contact_sheet.png" not in body
    assert "- `class1/7`: mesh has no faces" in body


def test_samples_with_different_fields_are_refused(tmp_path):
    plain = synthetic_sample("class0", 0, 0, views=3, size=16, seed=0)
    with_points = synthetic_sample("class1", 1, 1, views=3, size=16, seed=0, points=8)
    write_samples(tmp_path, [plain, with_points])
    with pytest.raises(ShardError, match=r"train-000000.tar sample 'class1__0001'.*\['points.npy'\]"):
        read_facts(tmp_path)


def test_brace_pattern_and_size_category():
    assert brace_pattern(["train-000000.tar", "train-000001.tar", "train-000002.tar"]) == "train-{000000..000002}.tar"
    assert brace_pattern(["val-000004.tar"]) == "val-000004.tar"
    assert brace_pattern(["train-000000.tar", "train-000002.tar"]) is None
    assert brace_pattern(["a-01.tar", "b-02.tar"]) is None
    assert [size_category(n) for n in (0, 999, 1000, 52_472)] == ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K"]


def test_card_counts_objects_with_appearance_notes(tmp_path):
    manifest = write_synthetic_dataset(tmp_path, classes=2, objects_per_class=2, views=3, size=16)
    from orbitset.manifests.model import write_manifest

    assert "appearance_notes" not in card_text(read_facts(tmp_path), license="cc-by-4.0", contact_sheet=False)
    manifest.extra["appearance_notes"] = {"objects": 2, "features": {"alpha": 1, "transmission": 2}}
    write_manifest(manifest, tmp_path)
    _, body = header_and_body(card_text(read_facts(tmp_path), license="cc-by-4.0", contact_sheet=False))
    assert "- 2 objects have material features that the other render backend draws differently (alpha 1, transmission 2)" in body
