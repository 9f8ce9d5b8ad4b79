"""DALI's webdataset reader reads every object of an orbitset dataset through orbitset's .idx files (skipped without
the optional `dali` extra: ``pip install -e .[dali]``)."""

from __future__ import annotations

import pytest

from orbitset.manifests.model import load_manifest
from orbitset.shards import ShardReader

dali = pytest.importorskip("nvidia.dali", reason="DALI is not installed (pip install -e .[dali])")


def test_dali_reads_every_object_through_the_idx_files(dataset):
    from nvidia.dali import fn, pipeline_def

    shards = load_manifest(dataset).shards
    expected = []
    for entry in shards:
        with ShardReader(dataset / entry.name) as reader:
            expected += [reader.read(key) for key in reader.keys()]
    fields = sorted(name for name in expected[0] if not name.startswith("__"))
    assert len(fields) > 10  # views, latents, rotations, meta, camera, class

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def read_all():
        return tuple(fn.readers.webdataset(paths=[str(dataset / e.name) for e in shards],
                                           index_paths=[str(dataset / e.dali_index.name) for e in shards],
                                           ext=fields, random_shuffle=False, name="reader"))

    pipeline = read_all()
    pipeline.build()
    assert pipeline.epoch_size("reader") == len(expected) == sum(e.objects for e in shards)
    for sample in expected:
        outputs = pipeline.run()
        assert [outputs[i].at(0).tobytes() for i in range(len(fields))] == [sample[name] for name in fields]
