"""Named datasets: where each lives, how big it is, its licence, and how `orbitset download NAME` gets it.

Three kinds of entry:
- a published source in another layout (`source` + `layout`): 3DIEBench's archive, the Hub datasets of its variants;
  `orbitset download` streams it through the converter (`orbitset.datasets.convert`), taking split and label files
  from `splits` (each checked by sha256, or by its git blob id where only that is known);
- published orbitset shards (`urls`: manifest URLs, the primary first, then mirrors), fetched and verified by
  `orbitset.manifests.download`;
- a dataset that is rendered, not downloaded (`how` says how), such as ``default``.
More entries can be added with `register` or from a JSON file named by the environment variable ``ORBITSET_REGISTRY``:
``{"name": {"urls": ["https://.../manifest.json", "mirror..."], "description": "..."}}``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from orbitset.errors import DownloadError

REGISTRY_ENV = "ORBITSET_REGISTRY"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class SplitFile:
    """A split or label file (`name` like ``val_images.npy``) at `url`, with the checksums known of it: `sha256`, or
    `git_blob` (the id its repository's tree lists, sha1 of ``blob <size>\\0`` + content); None where unknown."""

    name: str
    url: str
    sha256: str | None = None
    git_blob: str | None = None


@dataclass(frozen=True)
class DatasetEntry:
    """A named dataset. Exactly one of `urls` (orbitset manifests), `source` (+ `layout`: converted on download) or
    `how` (rendered locally) says how to get it; `size_bytes` is the transfer size where known."""

    name: str
    urls: tuple[str, ...] = ()
    description: str = ""
    source: str = ""
    layout: str = ""
    splits: tuple[SplitFile, ...] = ()
    size_bytes: int | None = None
    size_note: str = ""
    licence: str = ""
    needs: str = ""
    how: str = ""

    @property
    def kind(self) -> str:
        """"shards" (published orbitset shards), "convert" (converted from its source) or "render"."""
        return "shards" if self.urls else "convert" if self.source else "render"

    def describe(self) -> str:
        """Several lines for ``orbitset download --list``: source, size, licence, needs."""
        where = {"shards": ", ".join(self.urls), "convert": f"{self.source} (converted while streaming, layout "
                 f"{self.layout})", "render": "rendered locally, not downloaded"}[self.kind]
        size = f"{self.size_bytes / 1e9:.1f} GB" if self.size_bytes else "not recorded"
        lines = [f"{self.name}: {self.description}", f"  source:  {where}",
                 f"  size:    {size}{f' ({self.size_note})' if self.size_note else ''}",
                 f"  licence: {self.licence or 'see the source'}"]
        if self.splits:
            checked = sum(1 for s in self.splits if s.sha256 or s.git_blob)
            lines.append(f"  splits:  {', '.join(s.name for s in self.splits)} ({checked} of {len(self.splits)} checksummed)")
        if self.needs:
            lines.append(f"  needs:   {self.needs}")
        if self.how:
            lines.append(f"  how:     {self.how}")
        return "\n".join(lines)


_CC_BY_NC = "CC-BY-NC 4.0 (non-commercial use, with attribution)"
_SIE_DATA = "https://raw.githubusercontent.com/facebookresearch/SIE/main/data/"
_EQUICAPS_DATA = "https://raw.githubusercontent.com/AberdeenML/EquiCaps/main/data/"
# The split files of SIE's data/ folder; EquiCaps' data/ holds the same files (same git blob ids). sha256 of
# train_images.npy is not recorded anywhere we know of; its git blob id is, and is checked instead.
_SPLIT_CHECKSUMS = {
    "train_images.npy": (None, "2155c85ceb0bc46ae3eeaf81f7bfb20842c74ed3"),
    "train_labels.npy": ("784aeab9ef69cc8c246f6a5ab0131557977cddd6a0323fcafc31fabf55a114dc", "4efe3a07cc6b7edd48cc93ace9c3bb1aa22f0e5b"),
    "val_images.npy": ("9a945e83ade9197171567b2533d46cc28ffdf2cac6b5dec7e59a60f4a2684c38", "c451307447c645fe1f0efb5de6b62037532e9340"),
    "val_labels.npy": ("2f0022b5b84229895de2207e2d2e4e6d890831d5a41cf3a36b2c8f6a99a86663", "6eda944a95017856af929e231c3eac6b071d06c9"),
}


def _splits(base: str, names: tuple[str, ...] = tuple(_SPLIT_CHECKSUMS)) -> tuple[SplitFile, ...]:
    return tuple(SplitFile(name, base + name, *_SPLIT_CHECKSUMS[name]) for name in names)


_REGISTRY: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            "3diebench",
            description="3DIEBench (SIE, Garrido et al. 2023): 52,472 ShapeNet objects x 50 views, rotation + floor/spot "
            "colours (7 latents)",
            source="https://dl.fbaipublicfiles.com/SIE/3DIEBench.tar.gz",
            layout="3diebench",
            splits=_splits(_SIE_DATA),
            size_bytes=17_000_000_000,
            size_note="gzip tar of about 2.6 M files, as the SIE repository states it; read once as a stream",
            licence=_CC_BY_NC,
            needs="disk for the shards (about the archive's size); the archive is not unpacked or kept",
        ),
        DatasetEntry(
            "3diebench-t",
            description="3DIEBench-T (EquiCaps, 2025): 3DIEBench plus a translation per axis in [-0.5, 0.5] (10 latents)",
            source="hf://datasets/athenacon/3DIEBench-T",
            layout="3diebench-t",
            splits=_splits(_EQUICAPS_DATA),
            size_note="Hugging Face Hub dataset; see its page for the size",
            licence=_CC_BY_NC,
            needs="huggingface_hub (pip install 'orbitset[remote]'); disk for the shards",
        ),
        DatasetEntry(
            "3diebench-ood",
            description="3DIEBench-OOD (seq-JEPA, 2025): 3DIEBench's validation objects with each Euler angle drawn "
            "from [-pi, -pi/2] U [pi/2, pi] (7 latents)",
            source="hf://datasets/Hafez/3DIEBench-OOD",
            layout="3diebench-ood",
            splits=_splits(_SIE_DATA, ("val_images.npy", "val_labels.npy")),
            size_note="Hugging Face Hub dataset; see its page for the size",
            licence=_CC_BY_NC,
            needs="huggingface_hub (pip install 'orbitset[remote]'); its objects are 3DIEBench's validation split "
            "(SIE's val_*.npy are used; --splits-from to use others)",
        ),
        DatasetEntry(
            "default",
            description="orbitset's default dataset: the 1,200 procedural objects (12 classes x 100) rendered under the "
            "3DIEBench recipe, 50 views each at 256 px (7 latents)",
            size_bytes=470_000_000,
            size_note="on disk, scaled from 12 objects",
            licence="generated locally from orbitset's procedural meshes",
            needs="a renderer (pip install 'orbitset[render]' for Blender/pyrender); with the raster backend, CPU time "
            "of a few seconds per object (--workers N renders N at once)",
            how="render it with 'orbitset render --out DIR' (options: 'orbitset render --help'); 'orbitset demo' renders "
            "a small one and trains on it",
        ),
    )
}


def register(entry: DatasetEntry) -> None:
    """Add or replace a named dataset (names are lower case ``[a-z0-9._-]``; manifest URLs, a source or a how)."""
    if not _NAME.match(entry.name):
        raise DownloadError(f"dataset name {entry.name!r} must be lower case letters, digits, '.', '_' or '-'")
    if not (entry.urls or entry.source or entry.how):
        raise DownloadError(f"dataset {entry.name!r} needs manifest URLs, a source to convert, or how to render it")
    if entry.source and not entry.layout:
        raise DownloadError(f"dataset {entry.name!r} has a source but no layout to convert it with")
    _REGISTRY[entry.name] = entry


def _from_environment() -> dict[str, DatasetEntry]:
    file = os.environ.get(REGISTRY_ENV)
    if not file:
        return {}
    try:
        with open(file, encoding="utf-8") as handle:
            data = json.load(handle)
        return {
            name: DatasetEntry(name=name, urls=tuple(spec["urls"]), description=str(spec.get("description", "")))
            for name, spec in data.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DownloadError(
            f"{REGISTRY_ENV}={file}: cannot read the dataset registry ({exc}); it must be a JSON object "
            '{"name": {"urls": ["https://.../manifest.json"]}}'
        ) from exc


def datasets() -> dict[str, DatasetEntry]:
    """All named datasets: built-in and registered ones, then those of ``$ORBITSET_REGISTRY`` (which win)."""
    return {**_REGISTRY, **_from_environment()}


def lookup(name: str) -> DatasetEntry | None:
    """The entry named `name`, or None if it is not a registered name (it may then be a URL or path)."""
    return datasets().get(name)


def manifest_urls(name_or_url: str) -> list[str]:
    """Manifest URLs to try, in order, for a dataset name, a URL or a local path.

    A name that is converted or rendered rather than published as shards raises DownloadError saying how to get it.
    """
    entry = lookup(name_or_url)
    if entry is None:
        return [name_or_url]
    if entry.kind == "convert":
        raise DownloadError(f"dataset {entry.name!r} is converted from {entry.source}, not published as orbitset "
                            f"shards; get it with 'orbitset download {entry.name} --out DIR'")
    if entry.kind == "render":
        raise DownloadError(f"dataset {entry.name!r} is not downloaded: {entry.how}")
    return list(entry.urls)
