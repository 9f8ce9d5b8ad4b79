"""Per-view rows of an object and the relative transformations between consecutive views of a sequence.

One implementation for `SequenceLoader`, `PairLoader` (a pair is a sequence of 2) and their webdataset stages: an
object's fields become one float64 row per view (`ViewRows.rows`, exact: float64 holds every stored float), a
sequence's rows are its views' rows, and `ViewRows.derive` computes everything relative from them, on any device.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from orbitset import geometry
from orbitset.errors import SchemaError, UsageError
from orbitset.geometry import Array

ROTATION_FORMATS = ("quat", "quat_raw", "matrix", "6d", "axis_angle")
#: The relative 4x4 transforms (`orbitset.geometry.relative_transform` in the object or the base frame).
TRANSFORMS = ("matrix4_object", "matrix4_base")
#: Latent columns that hold the object rotation as Euler angles (3DIEBench's names).
ROTATION_FACTORS = ("rot_x", "rot_y", "rot_z")
TRANSLATION_NAMES = ("translation_x", "translation_y", "translation_z")
#: The recipe whose datasets carry translations (for errors).
TRANSLATION_RECIPE = "3diebench-t"


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


def check_options(rotation: str, transform: str | None) -> None:
    """UsageError for a `rotation` or `transform` that is not one of the names above."""
    if rotation not in ROTATION_FORMATS:
        raise UsageError(f"rotation must be one of {ROTATION_FORMATS}, got {rotation!r}")
    if transform is not None and transform not in TRANSFORMS:
        raise UsageError(f"transform must be None or one of {TRANSFORMS}, got {transform!r}")


class ViewRows:
    """How one dataset's objects become per-view rows, and what a sequence's rows give.

    A row is (9 + F [+ 3]) float64: the rotation matrix (row-major), the F latents and, where read, the world
    translation p (``translations.npy``). Translations are read when the samples have them and either no factor is a
    translation already (their deltas then follow the other factors' in ``rel_latents``) or a 4x4 `transform` is
    asked for. `where` names the dataset's first object in errors about options it cannot serve."""

    def __init__(self, factor_names: Sequence[str], has_translations: bool, rotation: str, transform: str | None,
                 where: str):
        check_options(rotation, transform)
        self.factor_names, self.rotation, self.transform = list(factor_names), rotation, transform
        self.other = np.array([i for i, n in enumerate(self.factor_names) if n not in ROTATION_FACTORS], dtype=np.int64)
        self.translation_deltas = has_translations and not any(n.startswith("trans") for n in self.factor_names)
        self.read_translations = self.translation_deltas or (has_translations and transform is not None)
        #: Names of the ``rel_latents`` columns.
        self.rel_latent_names = [self.factor_names[i] for i in self.other] + (
            list(TRANSLATION_NAMES) if self.translation_deltas else [])
        if rotation == "quat_raw" and tuple(self.factor_names[:3]) != ROTATION_FACTORS:
            raise UsageError(
                f"rotation='quat_raw' needs Euler latents rot_x, rot_y, rot_z first (3DIEBench); this dataset's factors are "
                f"{self.factor_names}; use rotation='quat'"
            )
        if transform is not None and not has_translations:
            raise UsageError(
                f"transform={transform!r} needs translations, and {where} has no translations.npy; datasets of the "
                f"'{TRANSLATION_RECIPE}' recipe (3DIEBench-T) have them; use rotation='matrix' for the 3x3 relative rotation"
            )
        # the first call imports what the rotation maths needs (seconds): here, not at the first batch
        identity, zeros = np.eye(3)[None], np.zeros((1, 3))
        relative_rotation_as(rotation, identity, identity, zeros, zeros)

    def rows(self, views: int, factor_names: Sequence[str], array: Callable[[str, tuple[int, ...]], np.ndarray],
             where: str) -> np.ndarray:
        """(V, 9 + F [+ 3]) float64 rows of an object with `views` views and `factor_names` (its meta.json's), whose
        numeric fields `array(field, shape)` returns (raising for another shape); SchemaError names `where` when its
        factors differ from the dataset's."""
        if list(factor_names) != self.factor_names:
            raise SchemaError(f"{where}: factors {list(factor_names)} differ from the dataset's {self.factor_names}")
        columns = [("rotations.npy", (views, 3, 3)), ("latents.npy", (views, len(self.factor_names)))]
        if self.read_translations:
            columns.append(("translations.npy", (views, 3)))
        return np.concatenate([array(field, shape).reshape(views, -1) for field, shape in columns], axis=1,
                              dtype=np.float64)

    def derive(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """From (N, K, C) float64 rows of K views: ``rotations`` (N, K, 3, 3), ``latents`` (N, K, F), and between
        consecutive views j, j + 1: ``rel_rotation`` (N, K - 1, ...) of R_j^T R_{j+1} as `rotation`, ``rel_latents``
        (N, K - 1, F'): j + 1 minus j of the other factors, then of the translations where they are deltas, and with
        a `transform`, ``rel_transform`` (N, K - 1, 4, 4)."""
        count, length = rows.shape[:2]
        factors = len(self.factor_names)
        rotations = rows[..., :9].reshape(count, length, 3, 3)
        latents = rows[..., 9 : 9 + factors]
        other = torch.as_tensor(self.other, device=rows.device)
        deltas = latents.index_select(2, other).diff(dim=1)
        translations = rows[..., 9 + factors :]
        if self.translation_deltas:
            deltas = torch.cat([deltas, translations.diff(dim=1)], dim=2)
        pairs = count * (length - 1)
        rot_a, rot_b = rotations[:, :-1].reshape(pairs, 3, 3), rotations[:, 1:].reshape(pairs, 3, 3)
        euler = ((latents[:, :-1, :3].reshape(pairs, 3), latents[:, 1:, :3].reshape(pairs, 3))
                 if self.rotation == "quat_raw" else (None, None))
        relative = relative_rotation_as(self.rotation, rot_a, rot_b, *euler)
        out = {"rotations": rotations, "latents": latents, "rel_latents": deltas,
               "rel_rotation": relative.reshape(count, length - 1, *relative.shape[1:])}
        if self.transform is not None:
            frame = self.transform.removeprefix("matrix4_")
            transform = geometry.relative_transform(frame, rot_a, translations[:, :-1].reshape(pairs, 3), rot_b,
                                                    translations[:, 1:].reshape(pairs, 3))
            out["rel_transform"] = transform.reshape(count, length - 1, 4, 4)
        return out
