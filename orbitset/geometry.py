"""Rotation, camera and frame conventions of orbitset, in one place, for numpy and torch.

Conventions (docs/design.md, "Conventions"):
- World frame right-handed, Z up. Angles in radians, lengths in scene units.
- Rotation matrices act on column vectors; rotation matrices in files are float64.
- Euler angles are named by a scipy/roma convention string: lower case = extrinsic (fixed axes), upper case =
  intrinsic. 3DIEBench uses "xyz" extrinsic: R = Rz(c) @ Ry(b) @ Rx(a), the same as scipy ``from_euler("xyz")``.
- Quaternions are (x, y, z, w), scipy and roma order. "Canonical" means w >= 0.
- Relative rotation of a pair (a, b): R_ab = R_a^T R_b, so that R_b = R_a R_ab.
- 6D representation: the first two columns of R, concatenated (column 0 then column 1).
- Rigid transforms are 4x4 homogeneous matrices [[R, x], [0, 1]] acting on column vectors. An object drawn at
  x_world = R x_object + p has world offset p (``translations.npy``); for 3DIEBench-T, p = R t with t the translation
  in the object frame (its latents trans_x, trans_y, trans_z), i.e. the pose R @ T(t). The relative 4x4 transform
  of a pair is M_a^-1 M_b (so that M_b = M_a M_ab, as for rotations), with per-view M as EquiCaps builds it:
  "object" frame M = T(t) @ R = [[R, t]], "base" frame M = R @ T(t) = [[R, p]] (`relative_transform`).
- Cameras: intrinsics K in pixels with pixel centres at integer coordinates (OpenCV); extrinsics are 4x4
  world-to-camera matrices in the OpenCV camera frame (x right, y down, z forward). Blender's camera frame
  (x right, y up, looking down -z) is converted only by `blender_to_opencv_extrinsics`.
- Spherical coordinates: theta is the polar angle from +Z, phi the azimuth from +X towards +Y.

Every function takes numpy arrays or torch tensors with arbitrary leading batch dimensions and returns the same kind;
numpy inputs are computed in float64.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, TypeVar, Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]
F = TypeVar("F", bound=Callable)

#: Euler convention of 3DIEBench's object rotations.
EULER_3DIEBENCH = "xyz"

_BLENDER_TO_OPENCV_CAMERA = np.diag([1.0, -1.0, -1.0])


def _roma():
    """roma, imported on first use so that `import orbitset.geometry` needs only numpy and torch."""
    import roma

    return roma


def _array_api(fn: F) -> F:
    """Run `fn` on torch tensors; numpy arguments are converted to float64 tensors and results back to numpy."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if any(isinstance(a, torch.Tensor) for a in args):
            return fn(*args, **kwargs)
        converted = [torch.as_tensor(np.asarray(a, dtype=np.float64)) if not isinstance(a, str) else a for a in args]
        out = fn(*converted, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.numpy() for o in out)
        return out.numpy()

    return wrapper  # type: ignore[return-value]


# --- rotations -------------------------------------------------------------------------------------------------


@_array_api
def euler_to_matrix(angles: Array, convention: str = EULER_3DIEBENCH) -> Array:
    """(..., 3) Euler angles (radians) -> (..., 3, 3) rotation matrices."""
    return _roma().euler_to_rotmat(convention, angles)


@_array_api
def matrix_to_euler(matrix: Array, convention: str = EULER_3DIEBENCH) -> Array:
    """(..., 3, 3) rotation matrices -> (..., 3) Euler angles (radians), scipy's choice of branch."""
    return _roma().rotmat_to_euler(convention, matrix)


@_array_api
def euler_to_quat(angles: Array, convention: str = EULER_3DIEBENCH) -> Array:
    """(..., 3) Euler angles -> (..., 4) unit quaternions (x, y, z, w), sign as composed (not canonicalised)."""
    return _roma().euler_to_unitquat(convention, angles)


@_array_api
def quat_to_euler(quat: Array, convention: str = EULER_3DIEBENCH) -> Array:
    """(..., 4) quaternions (x, y, z, w) -> (..., 3) Euler angles."""
    return matrix_to_euler(quat_to_matrix(quat), convention)


@_array_api
def matrix_to_quat(matrix: Array) -> Array:
    """(..., 3, 3) rotation matrices -> (..., 4) canonical unit quaternions (x, y, z, w), w >= 0."""
    return canonical_quat(_roma().rotmat_to_unitquat(matrix))


@_array_api
def quat_to_matrix(quat: Array) -> Array:
    """(..., 4) quaternions (x, y, z, w), normalised first -> (..., 3, 3) rotation matrices."""
    return _roma().unitquat_to_rotmat(_roma().quat_normalize(quat))


@_array_api
def canonical_quat(quat: Array) -> Array:
    """Flip the sign of quaternions with w < 0 so that w >= 0 (q and -q are the same rotation)."""
    sign = torch.where(quat[..., 3:4] < 0, -1.0, 1.0).to(quat.dtype)
    return quat * sign


@_array_api
def matrix_to_axis_angle(matrix: Array) -> Array:
    """(..., 3, 3) -> (..., 3) rotation vectors (axis times angle in radians, angle in [0, pi])."""
    return _roma().rotmat_to_rotvec(matrix)


@_array_api
def axis_angle_to_matrix(rotvec: Array) -> Array:
    """(..., 3) rotation vectors -> (..., 3, 3) rotation matrices."""
    return _roma().rotvec_to_rotmat(rotvec)


@_array_api
def matrix_to_6d(matrix: Array) -> Array:
    """(..., 3, 3) -> (..., 6): column 0 then column 1 of each matrix."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], dim=-1)


@_array_api
def sixd_to_matrix(sixd: Array) -> Array:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt on the two columns (exact inverse of `matrix_to_6d` on rotations)."""
    columns = torch.stack([sixd[..., :3], sixd[..., 3:]], dim=-1)
    return _roma().special_gramschmidt(columns)


@_array_api
def relative_rotation(rot_a: Array, rot_b: Array) -> Array:
    """R_ab = R_a^T R_b for (..., 3, 3) matrices, so that R_b = R_a R_ab."""
    return rot_a.transpose(-1, -2) @ rot_b


@_array_api
def relative_quat_3diebench(euler_a: Array, euler_b: Array) -> Array:
    """3DIEBench's relative rotation: quaternion (x, y, z, w) of R_a^-1 R_b composed from Euler ("xyz") quaternions.

    The sign is the one quaternion composition gives (as scipy's ``(Ra.inv() * Rb).as_quat()``), not canonicalised.
    """
    q_a = _roma().euler_to_unitquat(EULER_3DIEBENCH, euler_a)
    q_b = _roma().euler_to_unitquat(EULER_3DIEBENCH, euler_b)
    return _roma().quat_product(_roma().quat_conjugation(q_a), q_b)


@_array_api
def geodesic_angle(rot_a: Array, rot_b: Array) -> Array:
    """Angle in radians, in [0, pi], of the rotation taking R_a to R_b."""
    return _roma().rotmat_geodesic_distance(rot_a, rot_b)


def random_rotation(count: int, rng: np.random.Generator | torch.Generator | None = None, dtype=torch.float64) -> Array:
    """`count` rotation matrices drawn uniformly (Haar) from SO(3).

    With a numpy Generator the result is a numpy float64 array (deterministic for the generator's seed); with a torch
    Generator or None it is a torch tensor.
    """
    if isinstance(rng, np.random.Generator):
        quat = rng.standard_normal((count, 4))
        quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
        return quat_to_matrix(quat)
    quat = torch.randn(count, 4, generator=rng, dtype=dtype)
    return _roma().unitquat_to_rotmat(_roma().quat_normalize(quat))


# --- rigid transforms (4x4) -----------------------------------------------------------------------------------

#: The frames of `relative_transform`.
TRANSFORM_FRAMES = ("object", "base")


@_array_api
def pose_matrix(rotation: Array, translation: Array) -> Array:
    """(..., 3, 3) rotations and (..., 3) translations -> (..., 4, 4) homogeneous matrices [[R, x], [0, 0, 0, 1]]."""
    top = torch.cat([rotation, translation.unsqueeze(-1)], dim=-1)
    bottom = torch.zeros((*top.shape[:-2], 1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 3] = 1
    return torch.cat([top, bottom], dim=-2)


@_array_api
def relative_pose(rot_a: Array, trans_a: Array, rot_b: Array, trans_b: Array) -> Array:
    """M_a^-1 M_b of M = `pose_matrix` (R, x), in closed form: [[R_a^T R_b, R_a^T (x_b - x_a)], [0, 1]], (..., 4, 4)."""
    inverse = rot_a.transpose(-1, -2)
    return pose_matrix(inverse @ rot_b, (inverse @ (trans_b - trans_a).unsqueeze(-1)).squeeze(-1))


@_array_api
def relative_transform(frame: str, rot_a: Array, offset_a: Array, rot_b: Array, offset_b: Array) -> Array:
    """Relative 4x4 transforms M_a^-1 M_b, (..., 4, 4), from (..., 3, 3) rotations and (..., 3) world offsets
    p = R t (``translations.npy``), with the per-view M of `frame` (see the module docstring): "object":
    M = T(t) @ R, "base": M = R @ T(t), t = R^T p the translation in the object frame (3DIEBench-T's latents)."""
    if frame == "base":
        return relative_pose(rot_a, offset_a, rot_b, offset_b)
    if frame == "object":
        in_object = lambda rot, offset: (rot.transpose(-1, -2) @ offset.unsqueeze(-1)).squeeze(-1)  # noqa: E731
        return relative_pose(rot_a, in_object(rot_a, offset_a), rot_b, in_object(rot_b, offset_b))
    raise ValueError(f"frame must be one of {TRANSFORM_FRAMES}, got {frame!r}")


# --- frames and cameras ----------------------------------------------------------------------------------------


@_array_api
def spherical_to_cartesian(radius: Array, theta: Array, phi: Array) -> Array:
    """(r, polar angle from +Z, azimuth from +X towards +Y) -> (..., 3) cartesian point."""
    sin_theta = torch.sin(theta)
    return torch.stack(
        [radius * sin_theta * torch.cos(phi), radius * sin_theta * torch.sin(phi), radius * torch.cos(theta)], dim=-1
    )


def look_at(eye: Array, target: Array = (0.0, 0.0, 0.0), up: Array = (0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 world-to-camera extrinsics (OpenCV frame: x right, y down, z forward) of a camera at `eye` facing `target`.

    `up` is the world direction that appears upwards in the image; it must not be parallel to the viewing direction.
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm == 0:
        raise ValueError("look_at: eye and target coincide; place the camera away from the point it looks at")
    forward /= norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-12:
        raise ValueError("look_at: the up vector is parallel to the viewing direction; choose another up vector")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes expressed in world coordinates
    extrinsics = np.eye(4)
    extrinsics[:3, :3] = rotation
    extrinsics[:3, 3] = -rotation @ eye
    return extrinsics


def blender_to_opencv_extrinsics(camera_to_world_blender: Array) -> np.ndarray:
    """Blender camera `matrix_world` (camera-to-world, camera looks down -z, y up) -> OpenCV world-to-camera 4x4."""
    pose = np.asarray(camera_to_world_blender, dtype=np.float64)
    world_to_camera = np.linalg.inv(pose)
    out = np.eye(4)
    out[:3, :] = _BLENDER_TO_OPENCV_CAMERA @ world_to_camera[:3, :]
    return out


def opencv_to_blender_pose(world_to_camera_opencv: Array) -> np.ndarray:
    """Inverse of `blender_to_opencv_extrinsics`: OpenCV world-to-camera -> Blender camera-to-world 4x4."""
    extrinsics = np.asarray(world_to_camera_opencv, dtype=np.float64)
    world_to_camera_blender = np.eye(4)
    world_to_camera_blender[:3, :] = _BLENDER_TO_OPENCV_CAMERA @ extrinsics[:3, :]
    return np.linalg.inv(world_to_camera_blender)


def intrinsics_from_fov(fov: float, width: int, height: int) -> np.ndarray:
    """3x3 K for a pinhole camera whose field of view `fov` (radians) spans the larger image side (Blender's 'AUTO'
    sensor fit), square pixels, principal point at the image centre ((W-1)/2, (H-1)/2 with integer pixel centres)."""
    if not 0 < fov < math.pi:
        raise ValueError(f"field of view must be in (0, pi) radians, got {fov}")
    focal = (max(width, height) / 2.0) / math.tan(fov / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def project(points: Array, intrinsics: Array, extrinsics: Array) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) world points: returns (N, 2) pixel coordinates (x right, y down) and (N,) camera-frame depth."""
    pts = np.asarray(points, dtype=np.float64)
    ext = np.asarray(extrinsics, dtype=np.float64)
    cam = pts @ ext[:3, :3].T + ext[:3, 3]
    depth = cam[:, 2]
    uvw = cam @ np.asarray(intrinsics, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = uvw[:, :2] / uvw[:, 2:3]
    return pixels, depth
