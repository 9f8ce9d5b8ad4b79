"""A webdataset pipeline stage: object samples in, pair records out, as `PairLoader` draws and computes them.

For pipelines that already use webdataset, or that stream shards where seeking is impossible (``pipe:``, HTTP, S3
through fsspec)::

    import webdataset as wds
    from orbitset.loaders.wds import PairStage

    pairs = wds.WebDataset("train-{000000..000099}.tar", shardshuffle=False).compose(PairStage(seed=0)).batched(32)

Each sample read yields `pairs_per_object` records (dicts) with PairLoader's keys and conventions for one item:
``view_a``, ``view_b`` (3, H, W), uint8 or normalised with 3DIEBench's mean and std; ``rel_rotation`` (R_a^T R_b in
the `rotation` representation), ``rot_a``, ``rot_b`` (3, 3), ``latents_a``, ``latents_b`` (F,), ``rel_latents``
(b - a of the non-rotation factors, then of the translations), all float32 computed in float64; ``label``, ``key``,
``index_a``, ``index_b``. The views of pair j of an object are PairLoader's for the same (seed, epoch, key): the
same shards give the same pairs, whatever the order the stream delivers the samples in.
The stage reads raw samples (field -> bytes): put it before any ``.decode()``.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from orbitset.errors import SchemaError, ShardError
from orbitset.loaders.decode import decode_cpu, normalize_hwc
from orbitset.loaders.pairs import ROTATION_FACTORS, ROTATION_FORMATS, relative_rotation_as
from orbitset.loaders.plan import pair_views
from orbitset.schema import load_json, load_npy


class PairStage:
    """Webdataset stage (a callable from an iterator of raw samples to an iterator of pair records); see the module
    docstring. `set_epoch` changes the draws as PairLoader's epochs do."""

    def __init__(self, *, pairs_per_object: int = 1, seed: int = 0, epoch: int = 0, rotation: str = "quat",
                 size: int | None = None, normalize: bool = True, dtype: torch.dtype = torch.float32,
                 fix_channels: bool = True):
        if rotation not in ROTATION_FORMATS:
            raise ValueError(f"rotation must be one of {ROTATION_FORMATS}, got {rotation!r}")
        if pairs_per_object < 1:
            raise ValueError(f"pairs_per_object must be at least 1, got {pairs_per_object}")
        self.pairs_per_object, self.seed, self.epoch, self.rotation = pairs_per_object, seed, epoch, rotation
        self.size, self.normalize, self.dtype, self.fix_channels = size, normalize, dtype, fix_channels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, samples: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in samples:
            yield from self.pairs(sample)

    def pairs(self, sample: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pair records of one raw sample (``__key__`` and field -> bytes, as webdataset's tar readers give)."""
        key = sample.get("__key__")
        if not isinstance(key, str):
            raise SchemaError("sample has no '__key__' string; pass raw webdataset samples")
        where = f"sample {key!r}" + (f" of {sample['__url__']}" if "__url__" in sample else "")
        views = sorted(name for name in sample if name[:3].isdigit() and name.count(".") == 1)
        if len(views) < 2:
            raise ShardError(f"{where} has {len(views)} view(s); pairs need at least 2")
        for name in (*views[:1], "meta.json", "latents.npy", "rotations.npy"):
            if not isinstance(sample.get(name), (bytes, bytearray)):
                raise SchemaError(f"{where} field {name!r} is missing or already decoded; put the stage before .decode()")
        meta = load_json(sample["meta.json"], f"{where} meta.json")
        names = list(meta["factor_names"])
        latents = load_npy(sample["latents.npy"], f"{where} latents.npy").astype(np.float64)
        rotations = load_npy(sample["rotations.npy"], f"{where} rotations.npy").astype(np.float64)
        if latents.shape != (len(views), len(names)) or rotations.shape != (len(views), 3, 3):
            raise ShardError(f"{where}: latents {latents.shape} / rotations {rotations.shape} do not match {len(views)} views")
        other = [i for i, name in enumerate(names) if name not in ROTATION_FACTORS]
        translations = None
        if "translations.npy" in sample and not any(name.startswith("trans") for name in names):
            translations = load_npy(sample["translations.npy"], f"{where} translations.npy").astype(np.float64)
        bgr = self.fix_channels and meta.get("channel_order") == "bgr"
        records = []
        for a, b in pair_views(self.seed, self.epoch, key, self.pairs_per_object, len(views)):
            deltas = latents[b, other] - latents[a, other]
            if translations is not None:
                deltas = np.concatenate([deltas, translations[b] - translations[a]])
            euler = (latents[None, a, :3], latents[None, b, :3]) if self.rotation == "quat_raw" else (None, None)
            relative = relative_rotation_as(self.rotation, rotations[None, a], rotations[None, b], *euler)[0]
            records.append({
                "key": key, "label": int(meta["class_index"]), "index_a": a, "index_b": b,
                "view_a": self._image(sample[views[a]], bgr, f"{where} view {a}"),
                "view_b": self._image(sample[views[b]], bgr, f"{where} view {b}"),
                "rot_a": _float(rotations[a]), "rot_b": _float(rotations[b]),
                "latents_a": _float(latents[a]), "latents_b": _float(latents[b]),
                "rel_latents": _float(deltas), "rel_rotation": _float(relative),
            })
        return records

    def _image(self, data: bytes, bgr: bool, what: str) -> torch.Tensor:
        try:
            pixels = torch.from_numpy(decode_cpu(data, self.size, bgr))
        except (OSError, ValueError) as exc:
            raise ShardError(f"{what}: cannot decode the image ({type(exc).__name__}: {exc}); the shard is corrupt") from exc
        if self.normalize:
            return normalize_hwc(pixels.contiguous(), self.dtype, channels_last=False)
        return pixels.permute(2, 0, 1).contiguous()


def _float(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64)).float()
