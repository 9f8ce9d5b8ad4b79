"""PairLoader: per object, pairs of distinct views with the exact relative transformation between them."""

from __future__ import annotations

from typing import Any

import torch

from orbitset.loaders.sequences import SequenceLoader
from orbitset.loaders.sources import Source


class PairLoader(SequenceLoader):
    """Batches of view pairs of the same object, with their relative rotation and factor deltas.

    A pair is a `SequenceLoader` sequence of 2 views, under the pair's key names. Per object read,
    `pairs_per_object` pairs (a, b) of distinct views are drawn from uniform integers hashed from (seed, epoch,
    object key) (`orbitset.loaders.plan.pair_views`): the pairs do not depend on worker count, order or resumption.
    One epoch = every object of the rank once (``pairs_per_object=1`` is 3DIEBench's epoch).

    Batch keys: ``view_a``, ``view_b`` (N, 3, H, W): uint8 when ``normalize=False``, else `dtype` normalised with
    3DIEBench's mean/std; ``rel_rotation`` of R_ab = R_a^T R_b as `rotation`: "quat" (x, y, z, w, canonical w >= 0),
    "quat_raw" (3DIEBench's quaternion of R_a^-1 R_b composed from the Euler latents, sign not canonicalised; only for
    datasets whose first latents are rot_x, rot_y, rot_z), "matrix" (N, 3, 3), "6d" (first two columns) or
    "axis_angle" (rotation vector, radians); ``rot_a``, ``rot_b`` (N, 3, 3); ``rel_latents`` (N, K): b - a for every
    non-rotation factor (hue deltas as 3DIEBench defines them: plain difference) and for translations where the
    samples have ``translations.npy`` but no translation factor, named by `rel_latent_names`; ``latents_a``,
    ``latents_b`` (N, F); ``label`` (N,); ``key`` (list of str); ``index_a``, ``index_b`` (N,) view indices. With
    `transform` ("matrix4_object" or "matrix4_base"; only for datasets with translations, the ``3diebench-t``
    recipe's): ``rel_transform`` (N, 4, 4), M_a^-1 M_b with the per-view M of `orbitset.geometry.relative_transform`.

    Options shared by the loaders: `split` (a manifest's split; None = "train" if present), `num_workers`, `device`
    ("cuda" decodes JPEGs on the GPU when a GPU decoder is installed), `seed`, `shuffle`, `size` (output side in
    pixels; None = stored size), `resampled` (draw objects with replacement), `drop_last`, `on_error` ("raise" or
    "skip": skip corrupt objects, count them in `skipped` and warn at the end of the epoch), `verify` ("size",
    "sha256" or "none": checks of the shards against the manifest), `fix_channels` (swap R and B for samples whose
    meta.json says channel_order "bgr", e.g. converted original 3DIEBench; on by default), `channels_last` (True,
    the default: image tensors are (N, 3, H, W) views in channels-last memory, the decoder's own layout, which costs
    nothing and suits convolutions; False: contiguous (N, 3, H, W), at the cost of one transposing pass per batch).
    """

    images_by_record = False
    noun = "pairs"

    def __init__(self, source: Source, batch_size: int, *, pairs_per_object: int = 1, rotation: str = "quat",
                 transform: str | None = None, **kwargs):
        super().__init__(source, batch_size, views=2, sequences_per_object=pairs_per_object, rotation=rotation,
                         transform=transform, **kwargs)

    def _derived(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The sequence's fields of the two views under the pair's names (``rot_a``, ``latents_b``, ...)."""
        derived = super()._derived(batch)
        pair = {"rot_a": derived["rotations"][:, 0], "rot_b": derived["rotations"][:, 1],
                "latents_a": derived["latents"][:, 0], "latents_b": derived["latents"][:, 1]}
        pair.update((name, derived[name][:, 0]) for name in ("rel_latents", "rel_rotation", "rel_transform") if name in derived)
        return pair

    def _place_images(self, batch: dict[str, Any], images: torch.Tensor) -> None:
        """``view_a``, ``view_b`` (N, 3, H, W) from the (2, N, 3, H, W) images, ``index_a``, ``index_b`` from
        ``indices``."""
        batch["view_a"], batch["view_b"] = images[0], images[1]
        indices = batch.pop("indices")
        batch["index_a"], batch["index_b"] = indices[:, 0], indices[:, 1]
