"""ViewLoader: one view per object (classification probes) or every view of an object (retrieval metrics)."""

from __future__ import annotations

from typing import Any

from orbitset.errors import ShardError, UsageError
from orbitset.loaders.images import IMAGE_FIELDS, ImageLoader
from orbitset.loaders.objects import ObjectFields
from orbitset.loaders.plan import object_draws
from orbitset.loaders.sources import Source

VIEW_MODES = ("single", "all")


class ViewLoader(ImageLoader):
    """Batches of single views, or of all views of each object.

    ``mode="single"``: one view per object, drawn from an integer hashed from (seed, epoch, key); keys ``view``
    (N, 3, H, W), ``rotation`` (N, 3, 3), ``latents`` (N, F), ``label`` (N,), ``key``, ``index`` (N,) view index.
    ``mode="all"``: every view in index order; keys ``views`` (N, V, 3, H, W), ``rotations`` (N, V, 3, 3),
    ``latents`` (N, V, F), ``label``, ``key``; every object must have the same number of views V (with
    ``channels_last=False``, ``views`` is contiguous; by default each image is channels-last in memory).
    Other options as `PairLoader` (images uint8 or normalised, `size`, `fix_channels`, distribution, resumption).
    """

    def __init__(self, source: Source, batch_size: int, *, mode: str = "single", **kwargs):
        if mode not in VIEW_MODES:
            raise UsageError(f"mode must be one of {VIEW_MODES}, got {mode!r}")
        self.mode = mode
        fields = ("key", "label", "rotations", "latents") if mode == "all" else ("key", "label", "index", "rotation", "latents")
        self.record_fields = (*fields, *IMAGE_FIELDS)
        super().__init__(source, batch_size, **kwargs)
        self.num_views = self._first_object().num_views
        if mode == "all":
            self.image_slots, self.images_by_record = self.num_views, True

    def _read_object(self, obj: ObjectFields, subs: list[int], epoch: int) -> list[tuple]:
        latents, rotations, label = obj.array("latents.npy"), obj.array("rotations.npy"), obj.meta["class_index"]
        if self.mode == "all":
            if obj.num_views != self.num_views:
                raise ShardError(f"{obj.where()} has {obj.num_views} views, others {self.num_views}; mode='all' needs equal counts")
            return [(obj.key, label, rotations, latents, *self._image_record(obj, range(obj.num_views)))]
        view = object_draws(self.seed, epoch, obj.key, 1)[0] % obj.num_views
        return [(obj.key, label, view, rotations[view], latents[view], *self._image_record(obj, (view,)))]

    def _finalize(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        batch = super()._finalize(raw)
        if batch is None:
            return None
        images = self._images(batch)
        if self.mode == "all":
            views = images.transpose(0, 1)
            batch["views"] = views if self.channels_last else views.contiguous()
        else:
            batch["view"] = images[0]
        return batch
