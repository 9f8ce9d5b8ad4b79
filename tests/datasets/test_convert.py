"""3DIEBench conversion: a synthetic tree and archive in the exact published layout, converted from a local tree, a
local archive, an archive served on 127.0.0.1 (with dropped connections and a killed process), and fsspec trees;
broken objects, truncated archives, the colour fix, and the sie-layout export."""

from __future__ import annotations

import colorsys
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from orbitset import geometry
from orbitset.cli import main
from orbitset.datasets import registry
from orbitset.datasets.convert import ConvertSettings, convert_source, download_converted, read_split_dir
from orbitset.datasets.export import export_sie_layout
from orbitset.datasets.remote import git_blob_id
from orbitset.datasets.sie_layout import VIEW_COUNT
from orbitset.datasets.sie_source import open_archive
from orbitset.datasets.sie_synthetic import floor_jpeg, write_sie_archive, write_sie_tree
from orbitset.datasets.tar_stream import tar_members
from orbitset.errors import AssetError, DownloadError, ShardError
from orbitset.loaders.decode import decode_cpu
from orbitset.manifests.model import load_manifest
from orbitset.manifests.verify import decoded_samples, verify_dataset
from orbitset.testing import write_synthetic_dataset

from ..manifests.faulty_server import FaultyServer

VIEWS = 25
SETTINGS = ConvertSettings(views=VIEWS, objects_per_shard=4)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """60 objects x 25 views (3,000 files + folders) as a tree, its split files, and its gzip tar in a served folder."""
    base = tmp_path_factory.mktemp("sie")
    write_sie_tree(base / "tree", base / "splits", objects_per_synset=20, views=VIEWS)
    (base / "served").mkdir()
    write_sie_archive(base / "tree", base / "served" / "3DIEBench.tar.gz")
    return base


@pytest.fixture(scope="module")
def from_tree(source: Path, tmp_path_factory) -> dict[str, str]:
    """Shard name -> sha256 of the local tree's conversion: the reference every other way in must reproduce."""
    out = tmp_path_factory.mktemp("from-tree")
    report = convert_source(source / "tree", out, SETTINGS, split_files=read_split_dir(str(source / "splits")), progress=False)
    assert report.manifest.failures == [] and report.manifest.totals()["objects"] == 60
    return _digests(out)


def _digests(out: Path) -> dict[str, str]:
    return {entry.name: entry.sha256 for entry in load_manifest(out).shards}


def _count_partials_at_each_rename(monkeypatch, out: Path) -> list[int]:
    """Record, each time a partial shard in `out` is renamed into place, how many partial shards `out` holds then
    (a shard's index files are written, each through its own partial file, while the shard is still partial)."""
    counts: list[int] = []
    replace = os.replace

    def counting_replace(source, target, *args, **kwargs):
        if Path(source).parent == out and str(source).endswith(".tar.partial"):
            counts.append(len([p for p in os.listdir(out) if p.endswith(".tar.partial")]))
        return replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting_replace)
    return counts


def test_tree_conversion_is_sharded_in_source_order_with_the_original_labels(source: Path, tmp_path: Path):
    report = convert_source(source / "tree", tmp_path / "ds", SETTINGS, split_files=read_split_dir(str(source / "splits")),
                            progress=False)
    manifest = report.manifest
    classes = sorted({p.name for p in (source / "tree").iterdir()})
    assert manifest.classes == classes
    assert {e.split for e in manifest.shards} == {"train", "val"}
    assert [e.objects for e in manifest.shards if e.split == "val"] == [4, 4, 4, 4, 2]  # 18 val objects
    assert verify_dataset(tmp_path / "ds", deep=True).ok
    keys = []
    for entry in manifest.shards:
        for sample in decoded_samples(tmp_path / "ds" / entry.name):
            synset, object_id = sample.meta["source_id"].split("/")
            keys.append((entry.split, synset, object_id))
            assert sample.label == classes.index(synset)
            assert sample.meta["channel_order"] == "bgr"
            folder = source / "tree" / synset / object_id
            assert sample.images == [(folder / f"image_{i}.jpg").read_bytes() for i in range(VIEWS)]
            assert np.array_equal(sample.latents[3], np.load(folder / "latent_3.npy"))
            np.testing.assert_array_equal(sample.rotations, geometry.euler_to_matrix(sample.latents[:, :3]))
    for split in ("train", "val"):
        assert [(s, o) for sp, s, o in keys if sp == split] == sorted((s, o) for sp, s, o in keys if sp == split)


def test_local_archive_converts_to_the_same_shards_as_the_tree(source: Path, from_tree: dict, tmp_path: Path):
    files = read_split_dir(str(source / "splits"))
    report = convert_source(source / "served" / "3DIEBench.tar.gz", tmp_path / "ds", SETTINGS, split_files=files, progress=False)
    assert _digests(tmp_path / "ds") == from_tree
    assert report.read_bytes == (source / "served" / "3DIEBench.tar.gz").stat().st_size


def test_archive_reader_agrees_with_tarfile_and_reads_long_and_pax_names(tmp_path: Path):
    long = "x" * 120 + "/02691156/" + "a" * 90 + "/image_0.jpg"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
            for name, data in ((long, b"\xff\xd8jpeg"), ("top/02691156/b/latent_0.npy", b"npy" * 300)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("top/02691156/b/image_1.jpg")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        buffer.seek(0)
        members = list(tar_members(buffer, "test.tar.gz", lambda: 0))
        assert members == [(long, b"\xff\xd8jpeg"), ("top/02691156/b/latent_0.npy", b"npy" * 300)], fmt


def test_download_over_http_survives_a_dropped_connection_and_never_has_two_partial_shards(source: Path, from_tree: dict, tmp_path: Path, monkeypatch):
    with FaultyServer(source / "served") as server:
        server.faults["/3DIEBench.tar.gz"] = ["truncate", "drop"]
        out = tmp_path / "ds"
        partials = _count_partials_at_each_rename(monkeypatch, out)
        status = main(["download", "3diebench", "--url", server.url + "/3DIEBench.tar.gz", "--splits-from",
                       str(source / "splits"), "--out", str(out), "--objects-per-shard", "4", "--views", str(VIEWS), "--backoff", "0.01",
                       "--timeout", "2"])
        ranges = server.ranges("/3DIEBench.tar.gz")
    assert status == 0
    size = (source / "served" / "3DIEBench.tar.gz").stat().st_size
    assert ranges[0] is None and ranges[-1] == f"bytes={size // 2}-", "the stream resumes where the connection dropped"
    assert _digests(out) == from_tree
    shards = [name for name in os.listdir(out) if name.endswith(".tar")]
    assert len(partials) >= len(shards) and set(partials) == {1}, "every shard was written alone: never two partials at once"


def test_download_killed_mid_transfer_resumes_keeping_complete_shards(source: Path, from_tree: dict, tmp_path: Path):
    out = tmp_path / "ds"
    with FaultyServer(source / "served", slow_chunk=2048, slow_seconds=0.1) as server:
        server.faults["/3DIEBench.tar.gz"] = ["slow"]
        url = server.url + "/3DIEBench.tar.gz"
        args = ["download", "3diebench", "--url", url, "--splits-from", str(source / "splits"), "--out", str(out),
                "--objects-per-shard", "4", "--views", str(VIEWS)]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        process = subprocess.Popen([sys.executable, "-m", "orbitset", *args], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not list(out.glob("*.json")) and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.01)
            process.kill()
        finally:
            process.wait()
        assert not (out / "manifest.json").exists(), "killed before the end"
        assert list(out.glob("*.tar")) and list(out.glob("*.json"))
        assert main(args) == 0
    report_objects = load_manifest(out).totals()["objects"]
    assert _digests(out) == from_tree and report_objects == 60
    assert not list(out.glob(".*partial"))


def test_truncated_archive_is_reported_with_how_far_it_got_and_a_rerun_resumes(source: Path, from_tree: dict, tmp_path: Path):
    archive = source / "served" / "3DIEBench.tar.gz"
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    files = read_split_dir(str(source / "splits"))
    with pytest.raises(DownloadError, match=r"truncated .* after [\d,]+ bytes .*complete shard\(s\) are kept.*resume"):
        convert_source(cut, tmp_path / "ds", SETTINGS, split_files=files, progress=False)
    kept = list((tmp_path / "ds").glob("*.tar"))
    assert kept and not (tmp_path / "ds" / "manifest.json").exists()
    report = convert_source(archive, tmp_path / "ds", SETTINGS, split_files=files, progress=False)
    assert report.kept == len(kept) and report.written == len(from_tree) - len(kept)
    assert _digests(tmp_path / "ds") == from_tree


def test_other_settings_on_an_unfinished_output_are_refused(source: Path, tmp_path: Path):
    archive = source / "served" / "3DIEBench.tar.gz"
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    files = read_split_dir(str(source / "splits"))
    with pytest.raises(DownloadError):
        convert_source(cut, tmp_path / "ds", SETTINGS, split_files=files, progress=False)
    with pytest.raises(ShardError, match="different dataset"):
        convert_source(archive, tmp_path / "ds", ConvertSettings(views=VIEWS, objects_per_shard=5), split_files=files, progress=False)


def test_fsspec_trees_loose_or_archived_give_the_same_shards(source: Path, from_tree: dict, tmp_path: Path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    loose = f"/hub-{tmp_path.name}/loose"
    for path in (source / "tree").rglob("*"):
        if path.is_file():
            memory.pipe(f"{loose}/{path.relative_to(source / 'tree').as_posix()}", path.read_bytes())
    for path in (source / "splits").iterdir():
        memory.pipe(f"{loose}/data/{path.name}", path.read_bytes())  # split files found inside the source
    archived = f"/hub-{tmp_path.name}/archived"
    memory.pipe(f"{archived}/part-0.tar.gz", (source / "served" / "3DIEBench.tar.gz").read_bytes())
    files = read_split_dir(str(source / "splits"))
    for label, url, split_files in (("memory", f"memory://{loose}", None), ("file", (source / "tree").as_uri(), files),
                                    ("archived", f"memory://{archived}", files)):
        convert_source(url, tmp_path / label, SETTINGS, split_files=split_files, jobs=3, progress=False)
        assert _digests(tmp_path / label) == from_tree, label


def test_broken_objects_are_recorded_and_skipped_in_trees_and_archives(source: Path, tmp_path: Path):
    tree = tmp_path / "tree"
    shutil.copytree(source / "tree", tree)
    objects = sorted((s.name, o.name) for s in tree.iterdir() for o in s.iterdir())
    broken = {objects[0]: "missing image_2.jpg", objects[1]: "object arrays are refused",
              objects[2]: "not a JPEG", objects[3]: VIEW_COUNT.format(found=VIEWS + 1, views=VIEWS), objects[4]: "shape (5,)"}
    folder = [tree / s / o for s, o in objects[:5]]
    (folder[0] / "image_2.jpg").unlink()
    np.save(folder[1] / "latent_1.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    (folder[2] / "image_0.jpg").write_bytes(b"GIF89a not a jpeg")
    shutil.copy(folder[3] / "image_0.jpg", folder[3] / f"image_{VIEWS}.jpg")
    shutil.copy(folder[3] / "latent_0.npy", folder[3] / f"latent_{VIEWS}.npy")
    np.save(folder[4] / "latent_0.npy", np.zeros(5))
    unlisted = tree / objects[0][0] / "0123abcd"
    shutil.copytree(tree / objects[5][0] / objects[5][1], unlisted)
    shutil.rmtree(tree / objects[6][0] / objects[6][1])
    write_sie_archive(tree, tmp_path / "broken.tar.gz")
    files = read_split_dir(str(source / "splits"))
    digests = []
    for label, src in (("tree", tree), ("archive", tmp_path / "broken.tar.gz")):
        manifest = convert_source(src, tmp_path / label, SETTINGS, split_files=files, progress=False).manifest
        reasons = {f.object: f.reason for f in manifest.failures}
        for (synset, object_id), expected in broken.items():
            assert expected in reasons.pop(f"{synset}/{object_id}"), (label, expected)
        assert "not listed in any split" in reasons.pop(f"{objects[0][0]}/0123abcd")
        assert "not found in the source" in reasons.pop(f"{objects[6][0]}/{objects[6][1]}")
        assert reasons == {}
        assert manifest.totals()["objects"] == 60 - 6
        assert verify_dataset(tmp_path / label, deep=True).ok
        digests.append(_digests(tmp_path / label))
    assert digests[0] == digests[1]


def test_an_archive_without_split_files_is_refused_and_a_tree_without_goes_to_split_all(source: Path, tmp_path: Path):
    with pytest.raises(AssetError, match="--splits-from"):
        convert_source(source / "served" / "3DIEBench.tar.gz", tmp_path / "a", SETTINGS, progress=False)
    manifest = convert_source(source / "tree", tmp_path / "b", SETTINGS, progress=False).manifest
    assert {e.split for e in manifest.shards} == {"all"} and manifest.totals()["objects"] == 60


def test_labels_that_break_the_sorted_synset_rule_and_pickled_split_files_are_refused(source: Path, tmp_path: Path):
    files = read_split_dir(str(source / "splits"))

    def npy(array, pickle=False) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=pickle)
        return buffer.getvalue()

    shifted = dict(files, **{"train_labels.npy": npy((np.load(source / "splits" / "train_labels.npy") + 1) % 3)})
    with pytest.raises(AssetError, match="sorted synsets"):
        convert_source(source / "tree", tmp_path / "a", SETTINGS, split_files=shifted, progress=False)
    pickled = dict(files, **{"val_images.npy": npy(np.array(["/x/y/", None], dtype=object), pickle=True)})
    with pytest.raises(AssetError, match="never unpickled"):
        convert_source(source / "tree", tmp_path / "b", SETTINGS, split_files=pickled, progress=False)


def _hue(pixels: np.ndarray) -> float:
    r, g, b = pixels.reshape(-1, 3).mean(axis=0) / 255
    return colorsys.rgb_to_hsv(r, g, b)[0]


def _hue_error(a: float, b: float) -> float:
    return min(abs(a - b), 1 - abs(a - b))


def test_colour_order_is_fixed_at_decode_by_default_and_by_reencoding_on_request(tmp_path: Path):
    write_sie_tree(tmp_path / "tree", tmp_path / "splits", objects_per_synset=3, views=8, size=16)
    files = read_split_dir(str(tmp_path / "splits"))
    for fix in (False, True):
        settings = ConvertSettings(views=8, objects_per_shard=4, fix_colors=fix)
        convert_source(tmp_path / "tree", tmp_path / f"fix-{fix}", settings, split_files=files, progress=False)
        errors, naive = [], []
        for entry in load_manifest(tmp_path / f"fix-{fix}").shards:
            for sample in decoded_samples(tmp_path / f"fix-{fix}" / entry.name):
                assert sample.meta["channel_order"] == ("rgb" if fix else "bgr")
                for image, latent in zip(sample.images, sample.latents):
                    bgr = sample.meta["channel_order"] == "bgr"
                    errors.append(_hue_error(_hue(decode_cpu(image, None, bgr=bgr)), latent[3]))
                    naive.append(_hue_error(_hue(decode_cpu(image, None, bgr=False)), latent[3]))
        assert max(errors) < 0.02, "the measured floor hue matches the label after the fix"
        if not fix:
            assert np.median(naive) > 0.1, "without the fix the published images' hue is wrong"
    # the synthetic images really are swapped the way the original's are
    assert _hue_error(_hue(decode_cpu(floor_jpeg(0.549, 16), None)), 0.549) > 0.3


def test_convert_then_export_is_byte_identical(source: Path, tmp_path: Path):
    convert_source(source / "tree", tmp_path / "ds", SETTINGS, split_files=read_split_dir(str(source / "splits")), progress=False)
    out = tmp_path / "exported"
    export_sie_layout(tmp_path / "ds", out, progress=False)
    originals = sorted(p.relative_to(source / "tree") for p in (source / "tree").rglob("*") if p.is_file())
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and p.parent != out) == originals
    for relative in originals:
        assert (out / relative).read_bytes() == (source / "tree" / relative).read_bytes(), relative
    for split in ("train", "val"):
        original = dict(zip(np.load(source / "splits" / f"{split}_images.npy"), np.load(source / "splits" / f"{split}_labels.npy")))
        exported = dict(zip(np.load(out / f"{split}_images.npy"), np.load(out / f"{split}_labels.npy")))
        assert exported == original


def test_3diebench_t_stores_translations_in_the_world_frame(tmp_path: Path):
    write_sie_tree(tmp_path / "tree", tmp_path / "splits", objects_per_synset=2, views=3, factors=10)
    files = read_split_dir(str(tmp_path / "splits"))
    settings = ConvertSettings(layout="3diebench-t", views=3)
    manifest = convert_source(tmp_path / "tree", tmp_path / "ds", settings, split_files=files, progress=False).manifest
    assert [f.name for f in manifest.factors][7:] == ["trans_x", "trans_y", "trans_z"]
    samples = [s for e in manifest.shards for s in decoded_samples(tmp_path / "ds" / e.name)]
    assert len(samples) == 6
    for sample in samples:
        assert sample.latents.shape == (3, 10)
        np.testing.assert_allclose(sample.translations, np.einsum("vij,vj->vi", sample.rotations, sample.latents[:, 7:10]))
    write_sie_tree(tmp_path / "plain", tmp_path / "plain-splits", objects_per_synset=2, views=3)
    failed = convert_source(tmp_path / "plain", tmp_path / "bad", settings, split_files=read_split_dir(str(tmp_path / "plain-splits")),
                            progress=False).manifest
    assert len(failed.failures) == 6 and all("10 float latents" in f.reason for f in failed.failures)


def test_export_of_an_orbitset_rendered_dataset_uses_class_names(tmp_path: Path):
    write_synthetic_dataset(tmp_path / "ds", classes=2, objects_per_class=4, views=2, size=8)
    report = export_sie_layout(tmp_path / "ds", tmp_path / "tree", progress=False)
    assert report.objects == 8 and report.splits == {"train": 6, "val": 2}
    assert sorted(p.name for p in (tmp_path / "tree").iterdir() if p.is_dir()) == ["class0", "class1"]
    assert sorted(np.load(tmp_path / "tree" / "val_images.npy")) == ["/class0/0003/", "/class1/0003/"]
    latent = np.load(tmp_path / "tree" / "class1" / "0001" / "latent_1.npy")
    assert latent.shape == (7,) and latent.dtype == np.float64


def test_cli_convert_and_export(source: Path, from_tree: dict, tmp_path: Path, capsys):
    out = tmp_path / "ds"
    archive = source / "served" / "3DIEBench.tar.gz"
    args = ["convert", "3diebench", str(archive), "--out", str(out), "--views", str(VIEWS), "--objects-per-shard", "4",
            "--splits-from", str(source / "splits")]
    assert main(args) == 0
    assert "converted 60 objects" in capsys.readouterr().out
    assert _digests(out) == from_tree
    assert main(args) == 2 and "already holds a converted dataset" in capsys.readouterr().err
    assert main(["export", "sie-layout", str(out), "--out", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "val_labels.npy").exists()
    assert main(["convert", "3diebench", str(archive), "--out", str(tmp_path / "x")]) == 2
    assert "--splits-from" in capsys.readouterr().err


def test_open_archive_reports_missing_files(tmp_path: Path):
    with pytest.raises(AssetError, match="no such archive"):
        open_archive(str(tmp_path / "nothing.tar.gz"))


def test_registered_source_fetches_its_split_files_checked_by_checksum(source: Path, from_tree: dict, tmp_path: Path,
                                                                       monkeypatch):
    served = tmp_path / "served"
    shutil.copytree(source / "served", served)
    shutil.copytree(source / "splits", served / "data")
    with FaultyServer(served) as server:
        server.faults["/data/val_images.npy"] = ["truncate"]  # a small file resumes too
        splits = []
        for path in sorted((served / "data").iterdir()):
            data = path.read_bytes()
            checks = {"git_blob": git_blob_id(data)} if path.name == "train_images.npy" else {"sha256": hashlib.sha256(data).hexdigest()}
            splits.append(registry.SplitFile(path.name, f"{server.url}/data/{path.name}", **checks))
        monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        entry = registry.DatasetEntry("synthetic", source=f"{server.url}/3DIEBench.tar.gz", layout="3diebench",
                                      splits=tuple(splits), licence="CC-BY-NC 4.0")
        registry.register(entry)
        args = ["download", "synthetic", "--objects-per-shard", "4", "--views", str(VIEWS), "--backoff", "0.01"]
        assert main([*args, "--out", str(tmp_path / "ds")]) == 0
        assert _digests(tmp_path / "ds") == from_tree
        requests = len(server.requests)
        assert main([*args, "--out", str(tmp_path / "ds")]) == 0, "a finished download is kept"
        assert len(server.requests) == requests, "nothing is fetched again"
        wrong = registry.SplitFile("val_labels.npy", f"{server.url}/data/val_labels.npy", sha256="0" * 64)
        registry.register(registry.DatasetEntry("synthetic", source=entry.source, layout="3diebench", splits=(wrong,)))
        with pytest.raises(DownloadError, match="val_labels.npy: sha256 .* is not the expected"):
            download_converted("synthetic", tmp_path / "other", progress=False)
