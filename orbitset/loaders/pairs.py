"""PairLoader: per object, pairs of distinct views with the exact relative transformation between them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from orbitset import geometry
from orbitset.geometry import Array
from orbitset.errors import SchemaError, ShardError, UsageError
from orbitset.loaders.images import IMAGE_FIELDS, ImageLoader
from orbitset.loaders.objects import ObjectFields
from orbitset.loaders.plan import pair_views
from orbitset.loaders.sources import Source

ROTATION_FORMATS = ("quat", "quat_raw", "matrix", "6d", "axis_angle")
#: Latent columns that hold the object rotation as Euler angles (3DIEBench's names).
ROTATION_FACTORS = ("rot_x", "rot_y", "rot_z")
TRANSLATION_NAMES = ("translation_x", "translation_y", "translation_z")


def relative_rotation_as(rotation: str, rot_a: Array, rot_b: Array, euler_a: Array | None = None,
                         euler_b: Array | None = None) -> Array:
    """Relative rotation R_a^T R_b of (N, 3, 3) pairs (numpy arrays or tensors) in representation `rotation` (see
    `PairLoader`)."""
    if rotation == "quat_raw":
        return geometry.relative_quat_3diebench(euler_a, euler_b)
    relative = geometry.relative_rotation(rot_a, rot_b)
    if rotation == "quat":
        return geometry.matrix_to_quat(relative)
    if rotation == "6d":
        return geometry.matrix_to_6d(relative)
    if rotation == "axis_angle":
        return geometry.matrix_to_axis_angle(relative)
    return relative


class PairLoader(ImageLoader):
    """Batches of view pairs of the same object, with their relative rotation and factor deltas.

    Per object read, `pairs_per_object` pairs (a, b) of distinct views are drawn from uniform integers hashed from
    (seed, epoch, object key) (`orbitset.loaders.plan.pair_views`): the pairs do not depend on worker count, order
    or resumption. One epoch = every
    object of the rank once (``pairs_per_object=1`` is 3DIEBench's epoch).

    Batch keys: ``view_a``, ``view_b`` (N, 3, H, W): uint8 when ``normalize=False``, else `dtype` normalised with
    3DIEBench's mean/std; ``rel_rotation`` of R_ab = R_a^T R_b as `rotation`: "quat" (x, y, z, w, canonical w >= 0),
    "quat_raw" (3DIEBench's quaternion of R_a^-1 R_b composed from the Euler latents, sign not canonicalised; only for
    datasets whose first latents are rot_x, rot_y, rot_z), "matrix" (N, 3, 3), "6d" (first two columns) or
    "axis_angle" (rotation vector, radians); ``rot_a``, ``rot_b`` (N, 3, 3); ``rel_latents`` (N, K): b - a for every
    non-rotation factor (hue deltas as 3DIEBench defines them: plain difference) and for translations where the
    samples have ``translations.npy``, named by `rel_latent_names`; ``latents_a``, ``latents_b`` (N, F); ``label``
    (N,); ``key`` (list of str); ``index_a``, ``index_b`` (N,) view indices.

    Options shared by the loaders: `split` (a manifest's split; None = "train" if present), `num_workers`, `device`
    ("cuda" decodes JPEGs on the GPU when a GPU decoder is installed), `seed`, `shuffle`, `size` (output side in
    pixels; None = stored size), `resampled` (draw objects with replacement), `drop_last`, `on_error` ("raise" or
    "skip": skip corrupt objects, count them in `skipped` and warn at the end of the epoch), `verify` ("size",
    "sha256" or "none": checks of the shards against the manifest), `fix_channels` (swap R and B for samples whose
    meta.json says channel_order "bgr", e.g. converted original 3DIEBench; on by default), `channels_last` (True,
    the default: image tensors are (N, 3, H, W) views in channels-last memory, the decoder's own layout, which costs
    nothing and suits convolutions; False: contiguous (N, 3, H, W), at the cost of one transposing pass per batch),
    `symmetry` (True: add ``symmetry``, per item the object's rotation-group record, `orbitset.symmetry.records`:
    group, order, BOP's symmetries_discrete and symmetries_continuous; from symmetry.json or meta.json).
    """

    image_slots = 2
    record_fields = ("key", "label", "index_a", "index_b", "_rows_a", "_rows_b", *IMAGE_FIELDS)
    exact_fields = frozenset({"_rows_a", "_rows_b"})

    def __init__(self, source: Source, batch_size: int, *, pairs_per_object: int = 1, rotation: str = "quat", **kwargs):
        if rotation not in ROTATION_FORMATS:
            raise UsageError(f"rotation must be one of {ROTATION_FORMATS}, got {rotation!r}")
        if pairs_per_object < 1:
            raise UsageError(f"pairs_per_object must be at least 1, got {pairs_per_object}")
        self.per_object, self.rotation = pairs_per_object, rotation
        super().__init__(source, batch_size, **kwargs)
        first = self._first_object()
        self.factor_names = list(first.meta["factor_names"])
        self._other = np.array([i for i, name in enumerate(self.factor_names) if name not in ROTATION_FACTORS], dtype=np.int64)
        self._translations = first.has("translations.npy") and not any(n.startswith("trans") for n in self.factor_names)
        self.rel_latent_names = [self.factor_names[i] for i in self._other] + (list(TRANSLATION_NAMES) if self._translations else [])
        if rotation == "quat_raw" and tuple(self.factor_names[:3]) != ROTATION_FACTORS:
            raise UsageError(
                f"rotation='quat_raw' needs Euler latents rot_x, rot_y, rot_z first (3DIEBench); this dataset's factors are "
                f"{self.factor_names}; use rotation='quat'"
            )
        # the first call imports what the rotation maths needs (seconds): here, not at the first batch
        identity, zeros = np.eye(3)[None], np.zeros((1, 3))
        relative_rotation_as(rotation, identity, identity, zeros, zeros)

    def _prepare(self, obj: ObjectFields) -> tuple[tuple[int, int, bool, np.ndarray], int]:
        """((views, label, bgr, rows), bytes) for ``obj.prepare``: `obj` checked once per object and process, and its
        per-view rows, (V, 9 + F [+ 3]) float64: rotation matrix (row-major), latents and, where the loader reads
        them, translation; a pair's record then holds just its two rows (exact: float64 holds every stored float)."""
        views = obj.num_views
        if views < 2:
            raise ShardError(f"{obj.where()} has {views} view(s); pairs need at least 2")
        meta = obj.meta
        if meta["factor_names"] != self.factor_names:
            raise SchemaError(f"{obj.where('meta.json')}: factors {meta['factor_names']} differ from the dataset's {self.factor_names}")
        columns = [("rotations.npy", (views, 3, 3)), ("latents.npy", (views, len(self.factor_names)))]
        if self._translations:
            columns.append(("translations.npy", (views, 3)))
        arrays = [obj.array(field, shape).reshape(views, -1) for field, shape in columns]
        rows = np.concatenate(arrays, axis=1, dtype=np.float64)
        return (views, meta["class_index"], self._bgr(obj), rows), rows.nbytes

    def _read_object(self, obj: ObjectFields, subs: list[int], epoch: int) -> list[tuple]:
        views, label, bgr, rows = obj.prepared or obj.prepare(self._prepare)
        pairs = pair_views(self.seed, epoch, obj.key, self.per_object, views)
        records = []
        for sub in subs:
            a, b = pairs[sub]
            records.append((obj.key, label, a, b, rows[a], rows[b], (obj.image(a), obj.image(b)), bgr, obj, (a, b)))
        return records

    def _derived(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """From the two views' rows: ``rot_a``, ``rot_b``, ``latents_a``, ``latents_b``, ``rel_latents`` (b - a of
        the other factors, then of the translations) and ``rel_rotation``."""
        rows_a, rows_b = batch["_rows_a"], batch["_rows_b"]
        factors = len(self.factor_names)
        rot_a, rot_b = rows_a[:, :9].reshape(-1, 3, 3), rows_b[:, :9].reshape(-1, 3, 3)
        latents_a, latents_b = rows_a[:, 9 : 9 + factors], rows_b[:, 9 : 9 + factors]
        other = torch.as_tensor(self._other, device=rows_a.device)
        deltas = latents_b.index_select(1, other) - latents_a.index_select(1, other)
        if self._translations:
            deltas = torch.cat([deltas, rows_b[:, 9 + factors :] - rows_a[:, 9 + factors :]], dim=1)
        euler = (latents_a[:, :3], latents_b[:, :3]) if self.rotation == "quat_raw" else (None, None)
        return {"rot_a": rot_a, "rot_b": rot_b, "latents_a": latents_a, "latents_b": latents_b, "rel_latents": deltas,
                "rel_rotation": relative_rotation_as(self.rotation, rot_a, rot_b, *euler)}

    def _finalize(self, raw: dict[str, Any]) -> dict[str, Any] | None:
        batch = super()._finalize(raw)
        if batch is None:
            return None
        images = self._images(batch)
        batch["view_a"], batch["view_b"] = images[0], images[1]
        return batch
