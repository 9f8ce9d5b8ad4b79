"""`orbitset index DIR`: write the index files of a dataset's shards (for datasets written before orbitset wrote them,
or to rebuild one that does not match its shard) and list them in the manifest.

Each shard is checked against the manifest first (size and sha256: an index binds itself to that sha256), then its
headers are scanned once and its two index files (`orbitset.shard_index`) are written beside it atomically (and
listed in its sidecar, when it has one). The manifest is rewritten last, atomically, listing every shard's index files: an interrupted run leaves the old
manifest, which still loads.
"""

from __future__ import annotations

import dataclasses
import os

from orbitset.errors import ShardError
from orbitset.integrity import integrity_problem
from orbitset.manifests.model import Manifest, load_manifest, manifest_path, write_manifest
from orbitset.shard_index import write_index_files
from orbitset.shards import record_index_files, scan_offsets


def index_dataset(dataset: str | os.PathLike, progress: bool = False) -> Manifest:
    """Write the index files of every shard of the local dataset `dataset` (a folder or its manifest) and rewrite
    its manifest listing them; returns the new manifest. With `progress`, a bar of the bytes checked and scanned.
    ShardError naming every shard that does not match the manifest (the manifest is then left as it was)."""
    file = manifest_path(dataset)
    manifest = load_manifest(file)
    directory = file.parent
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(e.bytes for e in manifest.shards), unit="B", unit_scale=True, desc="index")
    shards, problems = [], []
    for entry in manifest.shards:
        problem = integrity_problem(directory / entry.name, entry.bytes, entry.sha256)
        if problem is not None:
            problems.append(f"{entry.name}: {problem}")
        else:
            index, dali = write_index_files(scan_offsets(directory / entry.name, entry.sha256), directory)
            shards.append(dataclasses.replace(entry, index=index, dali_index=dali))
            record_index_files(directory, shards[-1])
        if bar is not None:
            bar.update(entry.bytes)
    if bar is not None:
        bar.close()
    if problems:
        raise ShardError(f"{len(problems)} shard(s) of {directory} do not match the manifest, so it was left as it was "
                         f"({'; '.join(problems)}); re-download or re-render them, then index the dataset again")
    manifest = dataclasses.replace(manifest, shards=shards)
    write_manifest(manifest, directory)
    return manifest
