"""The condition of a pair of views that an equivariant method's predictor receives, and its quaternion convention.

A condition is the relative rotation R_ab = R_a^T R_b of view b with respect to view a as a quaternion (x, y, z, w),
optionally followed by the hue deltas (floor, spot) of b minus a ("rotation+color").

Quaternion conventions (`QUATERNIONS`):
- ``"raw"`` (SIE's): 3DIEBench's quaternion of R_a^-1 R_b composed from the Euler latents, sign as composed (scipy's
  ``(Ra.inv() * Rb).as_quat()``), never canonicalised. On 3DIEBench's ranges every pose quaternion has w > 0, so
  q_b = q_a (x) q_ab holds for every pair: an embedding linear in the pose quaternion is exactly predictable by a
  predictor linear in q_ab. Needs datasets whose first latents are the Euler angles rot_x, rot_y, rot_z.
- ``"canonical"``: the same rotation with w >= 0 (q and -q are one rotation); the sign flips on the pairs whose raw
  w is negative, where a linear predictor's target becomes its negated prediction.
"""

from __future__ import annotations

from typing import Sequence

import torch

from orbitset.errors import OrbitsetError

#: Width of each condition kind: the quaternion, then the two hue deltas.
CONDITIONS = {"rotation": 4, "rotation+color": 6}
HUE_FACTORS = ("floor_hue", "spot_hue")
#: The latents the raw convention composes its quaternions from (3DIEBench's Euler angles, in this order).
EULER_LATENTS = ("rot_x", "rot_y", "rot_z")
#: Quaternion convention -> the `PairLoader` rotation format that delivers it.
QUATERNIONS = {"raw": "quat_raw", "canonical": "quat"}


def check_quaternion(quaternion: str) -> str:
    """The loader rotation format of a quaternion convention; a clear error for an unknown one."""
    if quaternion not in QUATERNIONS:
        raise OrbitsetError(f"unknown quaternion convention {quaternion!r}; choose one of {', '.join(QUATERNIONS)}")
    return QUATERNIONS[quaternion]


def relative_quaternion(quaternion: str, rot_a: torch.Tensor, rot_b: torch.Tensor, latents_a: torch.Tensor,
                        latents_b: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions of R_a^T R_b in convention `quaternion`, from (..., 3, 3) rotations and (..., F) latents
    whose first three columns are the Euler angles (used by the raw convention only)."""
    from orbitset.loaders.relative import relative_rotation_as

    fmt = check_quaternion(quaternion)
    shape = rot_a.shape[:-2]
    flat = [t.reshape(-1, *t.shape[len(shape):]).double() for t in (rot_a, rot_b, latents_a[..., :3], latents_b[..., :3])]
    return torch.as_tensor(relative_rotation_as(fmt, *flat)).reshape(*shape, 4).float()


def view_quaternion(quaternion: str, rotations: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """(..., 4) pose quaternions of single views in convention `quaternion`: "raw" composed from the Euler latents
    (the first three columns; scipy's ``from_euler("xyz", angles).as_quat()``, as seq-JEPA's single-view target),
    "canonical" from the (..., 3, 3) rotations with w >= 0."""
    from orbitset import geometry

    check_quaternion(quaternion)
    if quaternion == "raw":
        return torch.as_tensor(geometry.euler_to_quat(latents[..., :3].double())).float()
    return torch.as_tensor(geometry.matrix_to_quat(rotations.double())).float()


def hue_delta_columns(latent_names: Sequence[str]) -> list[int]:
    """Indices of the floor and spot hue factors in a list of latent (or latent-delta) names."""
    columns = []
    for factor in HUE_FACTORS:
        matches = [i for i, name in enumerate(latent_names) if factor in name]
        if not matches:
            raise OrbitsetError(
                f"the dataset has no {factor!r} factor (factors: {', '.join(latent_names)}); "
                "the rotation+color condition needs 3DIEBench-style hue factors"
            )
        columns.append(matches[0])
    return columns


def pair_condition(rel_rotation: torch.Tensor, rel_latents: torch.Tensor | None, rel_latent_names: Sequence[str],
                   condition: str) -> torch.Tensor:
    """The condition vectors (..., C) of pairs (..., 4) (a batch, or a batch of sequences' consecutive pairs): the
    quaternion as given, then the hue deltas for "rotation+color"."""
    if condition == "rotation":
        return rel_rotation.float()
    if rel_latents is None:
        raise OrbitsetError("the rotation+color condition needs the latent deltas of the pairs (rel_latents)")
    hues = rel_latents[..., hue_delta_columns(rel_latent_names)]
    return torch.cat([rel_rotation, hues], dim=-1).float()
