"""Named datasets: a name -> where its manifest is published (a primary URL and mirrors).

`orbitset download NAME` resolves the name here; anything that is not a registered name is taken as a manifest URL
or path. Shards are fetched from the folder of the manifest URL that answered, falling back to the mirrors.

The built-in entries are placeholders until the datasets are published (``published=False``): asking for one says so
and how to get the data another way, instead of timing out on an address that does not exist yet. More entries can
be added with `register` or from a JSON file named by the environment variable ``ORBITSET_REGISTRY``:
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
class DatasetEntry:
    """A named dataset: `urls` are manifest URLs, the primary first, then mirrors holding the same files."""

    name: str
    urls: tuple[str, ...]
    description: str = ""
    published: bool = True
    how_else: str = ""


_PLACEHOLDER_BASE = "https://datasets.orbitset.invalid"
_PLACEHOLDER_MIRROR = "https://mirror.orbitset.invalid"


def _placeholder(name: str, description: str, how_else: str) -> DatasetEntry:
    return DatasetEntry(
        name=name,
        urls=(f"{_PLACEHOLDER_BASE}/{name}/manifest.json", f"{_PLACEHOLDER_MIRROR}/{name}/manifest.json"),
        description=description,
        published=False,
        how_else=how_else,
    )


_CONVERT = "if you hold the original files, convert them: 'orbitset convert {variant} SRC --out DIR --splits-from SIE_DATA_DIR'"

_REGISTRY: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        _placeholder(
            "3diebench",
            "3DIEBench: 52,472 ShapeNet objects x 50 views, rotation + floor/spot colours (7 latents)",
            _CONVERT.format(variant="3diebench"),
        ),
        _placeholder(
            "3diebench-t",
            "3DIEBench-T: 3DIEBench plus a translation per axis in [-0.5, 0.5] (10 latents)",
            _CONVERT.format(variant="3diebench-t"),
        ),
        _placeholder(
            "3diebench-ood",
            "3DIEBench-OOD: validation objects with Euler angles drawn outside [-pi/2, pi/2]",
            _CONVERT.format(variant="3diebench-ood"),
        ),
        _placeholder(
            "default",
            "orbitset's default dataset: procedural meshes rendered with the 3DIEBench scene",
            "render it locally with 'orbitset render' (see 'orbitset render --help')",
        ),
    )
}


def register(entry: DatasetEntry) -> None:
    """Add or replace a named dataset (names are lower case ``[a-z0-9._-]``; at least one URL)."""
    if not _NAME.match(entry.name):
        raise DownloadError(f"dataset name {entry.name!r} must be lower case letters, digits, '.', '_' or '-'")
    if not entry.urls:
        raise DownloadError(f"dataset {entry.name!r} needs at least one manifest URL")
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

    A registered but unpublished name raises DownloadError saying how else to get the data.
    """
    entry = lookup(name_or_url)
    if entry is None:
        return [name_or_url]
    if not entry.published:
        raise DownloadError(
            f"dataset {entry.name!r} is not published yet (its registry URLs are placeholders); {entry.how_else}, "
            "or pass the URL of a manifest.json to 'orbitset download'"
        )
    return list(entry.urls)
