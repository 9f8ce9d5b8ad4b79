"""Webdataset pipeline stages: object samples in, sequence or pair records out, as `SequenceLoader` and `PairLoader`
draw and compute them.

For pipelines that already use webdataset, or that stream shards where seeking is impossible (``pipe:``, HTTP, S3
through fsspec)::

    import webdataset as wds
    from orbitset.loaders.wds import PairStage, SequenceStage

    pairs = wds.WebDataset("train-{000000..000099}.tar", shardshuffle=False).compose(PairStage(seed=0)).batched(32)
    sequences = wds.WebDataset("train-{000000..000099}.tar", shardshuffle=False).compose(SequenceStage(views=4))

Each sample read yields `sequences_per_object` (`pairs_per_object`) records (dicts) with the loader's keys and
conventions for one item, all float32 computed in float64. `SequenceStage`: ``views`` (K, 3, H, W), uint8 or
normalised with 3DIEBench's mean and std; ``rotations`` (K, 3, 3), ``latents`` (K, F), ``rel_rotation`` (K - 1, ...)
of R_j^T R_{j+1} in the `rotation` representation, ``rel_latents`` (K - 1, F'), ``rel_transform`` (K - 1, 4, 4) with
a `transform`; ``label``, ``key``, ``indices`` (K,). `PairStage`: ``view_a``, ``view_b``, ``rot_a``, ``rot_b``,
``latents_a``, ``latents_b``, ``rel_rotation``, ``rel_latents`` (``rel_transform``), ``label``, ``key``,
``index_a``, ``index_b``. The views of item j of an object are the loader's for the same (seed, epoch, key): the
same shards give the same items, whatever the order the stream delivers the samples in.
The stages read raw samples (field -> bytes): put them before any ``.decode()``.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from orbitset.errors import SchemaError, ShardError, UsageError
from orbitset.loaders.decode import decode_cpu, normalize_hwc
from orbitset.loaders.plan import sequence_views
from orbitset.loaders.relative import ViewRows, check_options
from orbitset.schema import load_json, load_npy


class SequenceStage:
    """Webdataset stage (a callable from an iterator of raw samples to an iterator of sequence records of `views`
    views); see the module docstring. `set_epoch` changes the draws as the loaders' epochs do."""

    #: What errors call the items.
    noun = "sequences"

    def __init__(self, *, views: int, sequences_per_object: int = 1, seed: int = 0, epoch: int = 0,
                 rotation: str = "quat", transform: str | None = None, size: int | None = None, normalize: bool = True,
                 dtype: torch.dtype = torch.float32, fix_channels: bool = True):
        check_options(rotation, transform)
        if views < 2:
            raise UsageError(f"views must be at least 2 (a sequence of distinct views of one object), got {views}")
        if sequences_per_object < 1:
            raise UsageError(f"{self.noun}_per_object must be at least 1, got {sequences_per_object}")
        self.views, self.per_object, self.seed, self.epoch = views, sequences_per_object, seed, epoch
        self.rotation, self.transform = rotation, transform
        self.size, self.normalize, self.dtype, self.fix_channels = size, normalize, dtype, fix_channels
        #: The rows' layout per (factor names, whether the sample has translations).
        self._layouts: dict[tuple, ViewRows] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, samples: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in samples:
            yield from self.items(sample)

    def items(self, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The records of one raw sample (``__key__`` and field -> bytes, as webdataset's tar readers give)."""
        key = sample.get("__key__")
        if not isinstance(key, str):
            raise SchemaError("sample has no '__key__' string; pass raw webdataset samples")
        where = f"sample {key!r}" + (f" of {sample['__url__']}" if "__url__" in sample else "")
        views = sorted(name for name in sample if name[:3].isdigit() and name.count(".") == 1)
        if len(views) < self.views:
            raise ShardError(f"{where} has {len(views)} view(s) but {self.noun} need {self.views}")
        for name in (*views[:1], "meta.json", "latents.npy", "rotations.npy"):
            if not isinstance(sample.get(name), (bytes, bytearray)):
                raise SchemaError(f"{where} field {name!r} is missing or already decoded; put the stage before .decode()")
        meta = load_json(sample["meta.json"], f"{where} meta.json")
        names, moved = tuple(meta["factor_names"]), "translations.npy" in sample
        layout = self._layouts.get((names, moved))
        if layout is None:
            layout = self._layouts[names, moved] = ViewRows(names, moved, self.rotation, self.transform, where)

        def array(field: str, shape: tuple[int, ...]) -> np.ndarray:
            values = load_npy(sample[field], f"{where} {field}")
            if values.shape != shape:
                raise ShardError(f"{where} {field} has shape {values.shape}, not {shape} ({len(views)} views)")
            return values

        rows = layout.rows(len(views), names, array, f"{where} meta.json")
        drawn = sequence_views(self.seed, self.epoch, key, self.per_object, len(views), self.views)
        derived = layout.derive(torch.from_numpy(rows[np.array(drawn)]))
        bgr = self.fix_channels and meta.get("channel_order") == "bgr"
        records = []
        for row, sequence in enumerate(drawn):
            record = {"key": key, "label": int(meta["class_index"]), "indices": torch.tensor(sequence),
                      "views": torch.stack([self._image(sample[views[v]], bgr, f"{where} view {v}") for v in sequence])}
            record.update((name, value[row].float()) for name, value in derived.items())
            records.append(self._named(record))
        return records

    def _named(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record under this stage's key names."""
        return record

    def _image(self, data: bytes, bgr: bool, what: str) -> torch.Tensor:
        try:
            pixels = torch.from_numpy(decode_cpu(data, self.size, bgr))
        except (OSError, ValueError) as exc:
            raise ShardError(f"{what}: cannot decode the image ({type(exc).__name__}: {exc}); the shard is corrupt") from exc
        if self.normalize:
            return normalize_hwc(pixels.contiguous(), self.dtype, channels_last=False)
        return pixels.permute(2, 0, 1).contiguous()


class PairStage(SequenceStage):
    """Webdataset stage of `PairLoader`'s pair records (sequences of 2 views under the pair's key names); see the
    module docstring."""

    noun = "pairs"

    def __init__(self, *, pairs_per_object: int = 1, **options):
        super().__init__(views=2, sequences_per_object=pairs_per_object, **options)

    def pairs(self, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pair records of one raw sample (see `SequenceStage.items`)."""
        return self.items(sample)

    def _named(self, record: dict[str, Any]) -> dict[str, Any]:
        views, indices = record.pop("views"), record.pop("indices")
        rotations, latents = record.pop("rotations"), record.pop("latents")
        record.update({"view_a": views[0], "view_b": views[1], "index_a": int(indices[0]), "index_b": int(indices[1]),
                       "rot_a": rotations[0], "rot_b": rotations[1], "latents_a": latents[0], "latents_b": latents[1]})
        for name in ("rel_rotation", "rel_latents", "rel_transform"):
            if name in record:
                record[name] = record[name][0]
        return record
