"""Shared helpers of the render tests: read every sample of a dataset, and a backend that hangs on one mesh."""

from __future__ import annotations

import time
from pathlib import Path

from orbitset.manifests.model import load_manifest
from orbitset.render.backends.raster import RasterBackend
from orbitset.schema import decode
from orbitset.shards import ShardReader

#: A mesh with exactly this many vertices makes `HangingBackend` sleep far past any test timeout.
HANG_VERTICES = 4


def read_dataset(root: Path) -> dict:
    """key -> (shard name, decoded and validated ObjectSample) for every sample listed by the manifest."""
    manifest = load_manifest(root)
    out = {}
    for entry in manifest.shards:
        with ShardReader(root / entry.name) as reader:
            for fields in reader:
                out[fields["__key__"]] = (entry.name, decode(fields))
    return out


class HangingBackend(RasterBackend):
    """The raster backend, except that it hangs (as a stuck renderer would) on meshes of HANG_VERTICES vertices."""

    def set_mesh(self, mesh) -> None:
        if len(mesh.vertices) == HANG_VERTICES:
            time.sleep(3600)
        super().set_mesh(mesh)
