"""SequenceLoader: per object, K distinct views in drawn order with the exact relative transformations between them."""

from __future__ import annotations

from typing import Any

import torch

from orbitset.errors import ShardError, UsageError
from orbitset.loaders.images import IMAGE_FIELDS, ImageLoader
from orbitset.loaders.objects import ObjectFields
from orbitset.loaders.plan import sequence_views
from orbitset.loaders.relative import ViewRows
from orbitset.loaders.sources import Source


class SequenceLoader(ImageLoader):
    """Batches of sequences of K = `views` distinct views of the same object, with the relative transformation
    between each view and the next.

    Per object read, `sequences_per_object` sequences are drawn without replacement from uniform integers hashed from
    (seed, epoch, object key) (`orbitset.loaders.plan.sequence_views`), in drawn order: they do not depend on worker
    count, order or resumption, and K = 2 gives PairLoader's pairs (a, b) for the same seed. One epoch = every object
    of the rank once per sequence. Only the K views of a sequence are read and decoded.

    Batch keys: ``views`` (N, K, 3, H, W): uint8 when ``normalize=False``, else `dtype` normalised with 3DIEBench's
    mean/std (each image channels-last in memory unless ``channels_last=False``); ``rotations`` (N, K, 3, 3);
    ``latents`` (N, K, F); ``rel_rotation`` (N, K - 1, ...): R_j^T R_{j+1} of views j and j + 1 as `rotation` (the
    formats of `PairLoader`: "quat", "quat_raw", "matrix", "6d", "axis_angle"); ``rel_latents`` (N, K - 1, F'):
    j + 1 minus j of the non-rotation factors and, where the samples have ``translations.npy`` but no translation
    factor, of the translations (named by `rel_latent_names`); ``label`` (N,); ``key`` (list of str); ``indices``
    (N, K) view indices. With `transform` ("matrix4_object" or "matrix4_base"; only for datasets with translations,
    the ``3diebench-t`` recipe's): ``rel_transform`` (N, K - 1, 4, 4), M_j^-1 M_{j+1} with the per-view M of
    `orbitset.geometry.relative_transform`: T(t) @ R in the object frame, R @ T(t) in the base frame (EquiCaps').

    An object with fewer than K views raises ShardError naming it (skipped under ``on_error="skip"``); objects may
    otherwise have different view counts. Other options as `PairLoader` (distribution, resumption, error policy, GPU
    decoding).
    """

    images_by_record = True
    record_fields = ("key", "label", "indices", "_rows", *IMAGE_FIELDS)
    exact_fields = frozenset({"_rows"})
    #: What errors call the items.
    noun = "sequences"

    def __init__(self, source: Source, batch_size: int, *, views: int, sequences_per_object: int = 1,
                 rotation: str = "quat", transform: str | None = None, **kwargs):
        if views < 2:
            raise UsageError(f"views must be at least 2 (a sequence of distinct views of one object), got {views}")
        if sequences_per_object < 1:
            raise UsageError(f"{self.noun}_per_object must be at least 1, got {sequences_per_object}")
        self.views, self.image_slots, self.per_object = views, views, sequences_per_object
        super().__init__(source, batch_size, **kwargs)
        first = self._first_object()
        if first.num_views < views:
            raise UsageError(f"views={views} is more than the {first.num_views} views of {first.where()}; pass views "
                             f"<= {first.num_views}")
        #: View count of the dataset's first object (named when another object has too few).
        self._first_views = first.num_views
        self.layout = ViewRows(first.meta["factor_names"], first.has("translations.npy"), rotation, transform,
                               first.where())
        self.rotation, self.transform = rotation, transform
        self.factor_names, self.rel_latent_names = self.layout.factor_names, self.layout.rel_latent_names

    def _prepare(self, obj: ObjectFields) -> tuple[tuple[int, int, bool, Any], int]:
        """((views, label, bgr, rows), bytes) for ``obj.prepare``: `obj` checked once per object and process, and its
        per-view rows (`ViewRows.rows`); a sequence's record then holds just its views' rows."""
        views = obj.num_views
        if views < self.views:
            mixed = f" (the first object has {self._first_views}: view counts differ)" if views != self._first_views else ""
            raise ShardError(f"{obj.where()} has {views} view(s) but {self.noun} need {self.views}{mixed}; "
                             f"on_error='skip' leaves such objects out")
        rows = self.layout.rows(views, obj.meta["factor_names"], obj.array, obj.where("meta.json"))
        return (views, obj.meta["class_index"], self._bgr(obj), rows), rows.nbytes

    def _read_object(self, obj: ObjectFields, subs: list[int], epoch: int) -> list[tuple]:
        views, label, bgr, rows = obj.prepared or obj.prepare(self._prepare)
        drawn = sequence_views(self.seed, epoch, obj.key, self.per_object, views, self.views)
        records = []
        for sub in subs:
            sequence = drawn[sub]
            records.append((obj.key, label, sequence, rows[list(sequence)], tuple(obj.image(v) for v in sequence), bgr,
                            obj, sequence))
        return records

    def _derived(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """`ViewRows.derive` of the sequences' rows."""
        return self.layout.derive(batch["_rows"])

    def _finalize(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        batch = super()._finalize(raw)
        if batch is not None:
            self._place_images(batch, self._images(batch))
        return batch

    def _place_images(self, batch: dict[str, Any], images: torch.Tensor) -> None:
        """Put the batch's (K, N, 3, H, W) images into it: ``views`` (N, K, 3, H, W)."""
        views = images.transpose(0, 1)
        batch["views"] = views if self.channels_last else views.contiguous()
