"""The manifest (``manifest.json`` beside the shards): a typed model, atomic writing and validated loading.

The manifest is written last and atomically (temporary file + rename) with sorted keys, so two identical datasets
have identical manifests apart from ``created``. A reader trusts a shard only after its size (and, when asked, its
sha256) matches the entry here. Shard names are plain file names, never paths.

The format is a JSON Schema shipped with the package (``manifest.schema.json``, see `manifest_schema`); every loaded
manifest is validated against it (jsonschema is imported on first use) and then by the typed checks of
`Manifest.check`, which also run when jsonschema is not installed.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import platform
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from orbitset.errors import ManifestError

FORMAT = "orbitset-manifest"
#: Version written; version 1 (before shards listed their index files) still loads.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
_SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.tar$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SCHEMA_RESOURCE = "manifest.schema.json"


@dataclass(frozen=True)
class IndexFile:
    """An index file beside a shard (`orbitset.shard_index`): plain file name, size in bytes, sha256 hex."""

    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ShardEntry:
    """One shard: plain file name, size in bytes, sha256 hex, object and view counts, the split it belongs to, and
    its index files (orbitset's offsets and DALI's ``.idx``; None for shards written before orbitset wrote them)."""

    name: str
    bytes: int
    sha256: str
    objects: int
    views: int
    split: str
    index: IndexFile | None = None
    dali_index: IndexFile | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ShardEntry":
        """From its JSON form (a manifest's or a sidecar's entry)."""
        files = {name: IndexFile(**data[name]) for name in ("index", "dali_index") if data.get(name) is not None}
        return cls(**{**data, **files})

    def to_json(self) -> dict[str, Any]:
        """Its JSON form; index files only when it has them (a version-1 entry stays as it was)."""
        return {k: v for k, v in asdict(self).items() if v is not None or k not in ("index", "dali_index")}

    @classmethod
    def from_info(cls, info: "ShardEntry", split: str) -> "ShardEntry":
        """`info` (an entry returned by `orbitset.shards.write_shard`) recorded under `split`.

        Kept only for datasets/convert.py until it writes through `orbitset.shards.ShardWriter`."""
        return replace(info, split=split)


@dataclass(frozen=True)
class Factor:
    """A per-view factor (one column of ``latents.npy``): name, unit, and the range it was drawn from."""

    name: str
    unit: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Failure:
    """An object that could not be produced, and why (it was skipped; the rest of the dataset is complete)."""

    object: str
    reason: str


def failure_lines(failures: list[Failure], examples: int = 3, reasons: int = 10) -> list[str]:
    """The failures grouped by reason, most frequent first, one line each: how many objects, the reason, the first
    `examples` objects; at most `reasons` lines, then one line counting the rest."""
    grouped: dict[str, list[str]] = {}
    for failure in failures:
        grouped.setdefault(failure.reason, []).append(failure.object)
    ranked = sorted(grouped.items(), key=lambda item: -len(item[1]))
    lines = [f"{len(objects)} object(s): {reason} (e.g. {', '.join(objects[:examples])}"
             f"{', ...' if len(objects) > examples else ''})" for reason, objects in ranked[:reasons]]
    if len(ranked) > reasons:
        lines.append(f"... and {len(ranked) - reasons} other reasons ({sum(len(o) for _, o in ranked[reasons:])} "
                     "objects; see the manifest's failures)")
    return lines


def require_objects(manifest: "Manifest", made: str, error: type[Exception], hint: str = "") -> None:
    """Raise `error` (one line) when `manifest` lists no object: a run where nothing was `made` ("rendered",
    "converted") must not pass for a dataset. The reasons are the caller's to print first; `hint` ends the message."""
    if manifest.totals()["objects"]:
        return
    failed = len(manifest.failures)
    what = f"every object failed ({failed}), reasons listed above" if failed else "the source holds no object"
    raise error(f"{what}; nothing was {made}" + (f"; {hint}" if hint else ""))


@dataclass
class Manifest:
    """A dataset: what it is, how it was made, which shards hold which split, and what failed."""

    name: str
    shards: list[ShardEntry]
    classes: list[str]
    factors: list[Factor]
    version: str = "1"
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_hash: str = ""
    seed: int | None = None
    failures: list[Failure] = field(default_factory=list)
    software: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: Objects per symmetry group (orbitset.symmetry); None when the dataset does not record symmetry.
    symmetry_groups: dict[str, int] | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def splits(self) -> dict[str, list[str]]:
        """Split name -> shard names, in manifest order."""
        out: dict[str, list[str]] = {}
        for shard in self.shards:
            out.setdefault(shard.split, []).append(shard.name)
        return out

    def shards_for(self, split: str | None) -> list[ShardEntry]:
        """Shards of `split` (all shards when None); ManifestError naming the available splits if it has none."""
        if split is None:
            return list(self.shards)
        chosen = [shard for shard in self.shards if shard.split == split]
        if not chosen:
            raise ManifestError(f"dataset {self.name!r} has no split {split!r}; its splits are {sorted(self.splits)}")
        return chosen

    def totals(self) -> dict[str, int]:
        return {
            "shards": len(self.shards),
            "objects": sum(s.objects for s in self.shards),
            "views": sum(s.views for s in self.shards),
            "bytes": sum(s.bytes for s in self.shards),
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["shards"] = [shard.to_json() for shard in self.shards]
        data.update(format=FORMAT, format_version=FORMAT_VERSION, splits=self.splits, totals=self.totals())
        return data

    @classmethod
    def from_json(cls, data: Any, source: str = "manifest") -> "Manifest":
        """Build and check a Manifest from parsed JSON; ManifestError says which entry is wrong."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestError(f"{source}: not an orbitset manifest (missing \"format\": \"{FORMAT}\")")
        if data.get("format_version") not in READABLE_VERSIONS:
            raise ManifestError(
                f"{source}: manifest format version {data.get('format_version')!r} is not supported "
                f"(this orbitset reads versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade orbitset or "
                "re-create the manifest"
            )
        _validate_against_schema(data, source)
        try:
            shards = [ShardEntry.from_json(entry) for entry in data["shards"]]
            manifest = cls(
                name=data["name"],
                version=str(data.get("version", "1")),
                shards=shards,
                classes=list(data["classes"]),
                factors=[Factor(**f) for f in data["factors"]],
                recipe=dict(data.get("recipe", {})),
                recipe_hash=str(data.get("recipe_hash", "")),
                seed=data.get("seed"),
                failures=[Failure(**f) for f in data.get("failures", [])],
                software=dict(data.get("software", {})),
                extra=dict(data.get("extra", {})),
                symmetry_groups=data.get("symmetry_groups"),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"{source}: malformed manifest ({type(exc).__name__}: {exc})") from exc
        manifest.check(source)
        for derived, expected in (("splits", manifest.splits), ("totals", manifest.totals())):
            if derived in data and data[derived] != expected:
                raise ManifestError(
                    f"{source}: {derived!r} {data[derived]} disagrees with the shard list ({expected}); the manifest was "
                    "edited by hand or is corrupt: re-create or re-download it"
                )
        return manifest

    def check(self, source: str = "manifest") -> None:
        """Shard names are plain and unique, sizes and counts are non-negative integers, hashes are sha256 hex."""
        seen: set[str] = set()
        for shard in self.shards:
            if not _SHARD_NAME.match(shard.name) or ".." in shard.name:
                raise ManifestError(f"{source}: shard name {shard.name!r} is not a plain '*.tar' file name (no paths allowed)")
            if shard.name in seen:
                raise ManifestError(f"{source}: shard {shard.name!r} is listed twice")
            seen.add(shard.name)
            for name in ("bytes", "objects", "views"):
                value = getattr(shard, name)
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ManifestError(f"{source}: shard {shard.name!r} has an invalid {name} {value!r}")
            if not isinstance(shard.sha256, str) or not _SHA256.match(shard.sha256):
                raise ManifestError(f"{source}: shard {shard.name!r} has an invalid sha256 {shard.sha256!r}")
            if not isinstance(shard.split, str) or not shard.split:
                raise ManifestError(f"{source}: shard {shard.name!r} has an invalid split {shard.split!r}")
            for kind, suffix in (("index", ".oidx"), ("dali_index", ".idx")):
                record = getattr(shard, kind)
                if record is None:
                    continue
                if record.name != shard.name[: -len(".tar")] + suffix:
                    raise ManifestError(f"{source}: shard {shard.name!r} lists {kind} {record.name!r}; it must be named "
                                        f"like the shard, with {suffix}")
                if not isinstance(record.bytes, int) or isinstance(record.bytes, bool) or record.bytes < 0 or \
                        not isinstance(record.sha256, str) or not _SHA256.match(record.sha256):
                    raise ManifestError(f"{source}: shard {shard.name!r} lists {kind} with an invalid size or sha256")


@functools.lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of manifests (format version `FORMAT_VERSION`), read from the package data."""
    text = importlib.resources.files("orbitset.manifests").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


def _validate_against_schema(data: dict[str, Any], source: str) -> None:
    """ManifestError naming the first offending entry if `data` breaks the JSON Schema; skipped without jsonschema.

    Of the shard entries only the first is validated here (the schema costs milliseconds per entry, seconds for a
    dataset of thousands of shards, every time a loader starts); `ShardEntry.from_json` and `Manifest.check` check
    every entry for the same (known keys only, types, names, sizes, hashes)."""
    try:
        import jsonschema
    except ImportError:
        return
    if isinstance(data.get("shards"), list):
        data = {**data, "shards": data["shards"][:1]}
    validator = jsonschema.Draft202012Validator(manifest_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        meaning = f" ({error.schema['description']})" if isinstance(error.schema, dict) and "description" in error.schema else ""
        raise ManifestError(
            f"{source}: manifest entry {where}: {error.message}{meaning}; re-create or re-download the manifest"
        )


def software_versions(**extra: str) -> dict[str, str]:
    """Versions of Python, orbitset, numpy and torch (plus `extra`, e.g. the renderer's)."""
    import numpy
    import torch

    from orbitset import __version__

    versions = {"python": platform.python_version(), "orbitset": __version__, "numpy": numpy.__version__, "torch": torch.__version__}
    versions.update(extra)
    return versions


def manifest_path(path: str | os.PathLike) -> Path:
    """`path` itself if it is a file, else ``path/manifest.json``."""
    path = Path(path)
    return path if path.suffix == ".json" else path / MANIFEST_NAME


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file in the same folder as `path`, fsync it and rename it into place, so that
    `path` is never seen partial."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix="." + path.name, suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as sorted, indented JSON atomically (`write_bytes_atomic`)."""
    write_bytes_atomic(path, (json.dumps(data, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8"))


def write_manifest(manifest: Manifest, directory: str | os.PathLike) -> Path:
    """Check `manifest` and write it atomically as ``directory/manifest.json``; returns the path."""
    manifest.check(str(directory))
    data = manifest.to_json()
    _validate_against_schema(data, str(directory))
    path = Path(directory) / MANIFEST_NAME
    write_json_atomic(path, data)
    return path


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest from a dataset folder or a ``.json`` file; ManifestError says what is missing or wrong."""
    file = manifest_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            f"no manifest at {file}: point at a dataset folder written by orbitset's render, convert or download command"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{file}: invalid JSON ({exc}); the manifest is corrupt, re-create or re-download it") from exc
    return Manifest.from_json(data, source=str(file))
