"""geometry.py against scipy.spatial.transform.Rotation, on thousands of random cases and the edge angles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from orbitset import geometry

TOL = 1e-9
EDGES = [-math.pi, -math.pi / 2, 0.0, math.pi / 2, math.pi]


@pytest.fixture(scope="module")
def euler_cases() -> np.ndarray:
    """5000 random angles in [-pi, pi]^3 plus every combination of the edge angles (+- pi/2, +- pi, 0)."""
    rng = np.random.default_rng(0)
    random = rng.uniform(-math.pi, math.pi, size=(5000, 3))
    edges = np.array(list(itertools.product(EDGES, repeat=3)))
    return np.concatenate([random, edges])


def same_rotation_quat(q1: np.ndarray, q2: np.ndarray) -> float:
    """Largest difference between quaternions up to the sign q ~ -q."""
    return float(np.minimum(np.abs(q1 - q2).max(-1), np.abs(q1 + q2).max(-1)).max())


@pytest.mark.parametrize("convention", ["xyz", "zyx", "XYZ", "zxz"])
def test_euler_to_matrix_matches_scipy(euler_cases, convention):
    ours = geometry.euler_to_matrix(euler_cases, convention=convention)
    ref = Rotation.from_euler(convention, euler_cases).as_matrix()
    assert ours.dtype == np.float64
    assert np.abs(ours - ref).max() < TOL


def test_euler_round_trip_gives_the_same_rotation(euler_cases):
    matrices = geometry.euler_to_matrix(euler_cases)
    angles = geometry.matrix_to_euler(matrices)
    assert np.abs(geometry.euler_to_matrix(angles) - matrices).max() < 1e-8
    # away from gimbal lock the angles themselves agree with scipy's branch choice
    regular = np.abs(np.abs(euler_cases[:, 1]) - math.pi / 2) > 1e-3
    ref = Rotation.from_matrix(matrices[regular]).as_euler("xyz")
    assert np.abs(np.angle(np.exp(1j * (angles[regular] - ref)))).max() < 1e-8


def test_quaternions_match_scipy(euler_cases):
    matrices = Rotation.from_euler("xyz", euler_cases).as_matrix()
    quats = geometry.matrix_to_quat(matrices)
    assert np.all(quats[:, 3] >= 0), "matrix_to_quat returns canonical quaternions"
    assert same_rotation_quat(quats, Rotation.from_matrix(matrices).as_quat()) < TOL
    assert np.abs(geometry.quat_to_matrix(quats) - matrices).max() < TOL
    # Euler -> quaternion keeps scipy's composed sign exactly
    assert np.abs(geometry.euler_to_quat(euler_cases) - Rotation.from_euler("xyz", euler_cases).as_quat()).max() < TOL


def test_canonical_quat_flips_negative_w_only():
    q = np.array([[0.1, 0.2, 0.3, -0.9], [0.1, 0.2, 0.3, 0.9]])
    out = geometry.canonical_quat(q)
    assert np.allclose(out[0], -q[0]) and np.allclose(out[1], q[1])


def test_relative_rotation_and_3diebench_quaternion(euler_cases):
    a, b = euler_cases[:2000], euler_cases[2000:4000]
    rot_a, rot_b = Rotation.from_euler("xyz", a), Rotation.from_euler("xyz", b)
    ref = rot_a.inv() * rot_b
    rel = geometry.relative_rotation(rot_a.as_matrix(), rot_b.as_matrix())
    assert np.abs(rel - ref.as_matrix()).max() < TOL
    assert np.abs(rot_a.as_matrix() @ rel - rot_b.as_matrix()).max() < TOL  # R_b = R_a R_ab
    # 3DIEBench's form is scipy's quaternion of the composition, sign included
    assert np.abs(geometry.relative_quat_3diebench(a, b) - ref.as_quat()).max() < TOL


def test_axis_angle_and_6d_round_trips(euler_cases):
    matrices = Rotation.from_euler("xyz", euler_cases).as_matrix()
    rotvec = geometry.matrix_to_axis_angle(matrices)
    ref = Rotation.from_matrix(matrices).as_rotvec()
    # at angle pi the axis sign is ambiguous: compare the rotations, and the vectors elsewhere
    assert np.abs(geometry.axis_angle_to_matrix(rotvec) - matrices).max() < 1e-8
    regular = np.linalg.norm(ref, axis=-1) < math.pi - 1e-6
    assert np.abs(rotvec[regular] - ref[regular]).max() < 1e-8
    sixd = geometry.matrix_to_6d(matrices)
    assert sixd.shape == (len(matrices), 6)
    assert np.allclose(sixd[:, :3], matrices[:, :, 0]) and np.allclose(sixd[:, 3:], matrices[:, :, 1])
    assert np.abs(geometry.sixd_to_matrix(sixd) - matrices).max() < TOL


def test_geodesic_angle_matches_scipy_magnitude(euler_cases):
    a = Rotation.from_euler("xyz", euler_cases[:1000])
    b = Rotation.from_euler("xyz", euler_cases[1000:2000])
    ours = geometry.geodesic_angle(a.as_matrix(), b.as_matrix())
    assert np.abs(ours - (a.inv() * b).magnitude()).max() < 1e-7


def test_torch_inputs_give_torch_outputs_with_gradients():
    angles = torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64, requires_grad=True)
    matrix = geometry.euler_to_matrix(angles)
    assert isinstance(matrix, torch.Tensor)
    matrix.sum().backward()
    assert angles.grad is not None
    ref = Rotation.from_euler("xyz", angles.detach().numpy()).as_matrix()
    assert np.abs(matrix.detach().numpy() - ref).max() < TOL


def test_random_rotation_is_deterministic_and_uniform():
    first = geometry.random_rotation(20000, np.random.default_rng(7))
    again = geometry.random_rotation(20000, np.random.default_rng(7))
    assert np.array_equal(first, again)
    assert np.abs(first @ first.transpose(0, 2, 1) - np.eye(3)).max() < 1e-12
    assert np.allclose(np.linalg.det(first), 1.0)
    # Haar measure: the rotation angle has density (1 - cos t) / pi, so E[cos t] = -1/2, and each column is uniform
    # on the sphere, so the mean of every matrix entry is 0.
    angles = Rotation.from_matrix(first).magnitude()
    assert abs(np.cos(angles).mean() + 0.5) < 0.02
    assert np.abs(first.mean(axis=0)).max() < 0.02


def test_spherical_to_cartesian_3diebench_camera():
    position = geometry.spherical_to_cartesian(2.5, math.pi / 4, math.pi / 2)
    assert np.allclose(position, [0.0, 2.5 / math.sqrt(2), 2.5 / math.sqrt(2)], atol=1e-12)


def test_look_at_projects_target_to_image_centre_with_z_up():
    eye = np.array([0.0, 1.77, 1.77])
    extrinsics = geometry.look_at(eye)
    k = geometry.intrinsics_from_fov(0.691111, 256, 256)
    pixels, depth = geometry.project(np.array([[0, 0, 0], [0, 0, 0.5], [0.5, 0, 0]]), k, extrinsics)
    assert np.allclose(pixels[0], [127.5, 127.5]) and np.isclose(depth[0], np.linalg.norm(eye))
    assert pixels[1, 1] < pixels[0, 1], "world +Z appears upwards (smaller row) in the image"
    # camera at +Y looking towards -Y: world +X is on the image's left
    assert pixels[2, 0] < pixels[0, 0]
    assert np.allclose(extrinsics[:3, :3] @ extrinsics[:3, :3].T, np.eye(3))


def test_blender_opencv_conversion_round_trip_and_axes():
    extrinsics = geometry.look_at([1.0, -2.0, 1.5], [0.1, 0.2, -0.3])
    pose = geometry.opencv_to_blender_pose(extrinsics)
    assert np.allclose(geometry.blender_to_opencv_extrinsics(pose), extrinsics)
    # Blender cameras look down their local -Z: that axis must point from the eye to the target
    forward = -pose[:3, 2]
    expected = np.array([0.1, 0.2, -0.3]) - np.array([1.0, -2.0, 1.5])
    assert np.allclose(forward, expected / np.linalg.norm(expected))
    assert np.allclose(pose[:3, 3], [1.0, -2.0, 1.5])


def test_intrinsics_from_fov_uses_the_larger_side():
    k = geometry.intrinsics_from_fov(math.pi / 2, 200, 100)
    assert np.isclose(k[0, 0], 100.0) and np.isclose(k[1, 1], 100.0)
    assert np.allclose(k[:2, 2], [99.5, 49.5])
    with pytest.raises(ValueError, match="field of view"):
        geometry.intrinsics_from_fov(0.0, 10, 10)


def test_look_at_rejects_degenerate_cameras():
    with pytest.raises(ValueError, match="coincide"):
        geometry.look_at([0, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="parallel"):
        geometry.look_at([0, 0, 3], [0, 0, 0])


def test_relative_transforms_are_inverse_times_pose_in_both_frames():
    rng = np.random.default_rng(4)
    rotations = Rotation.random(6, random_state=5).as_matrix()
    local = rng.uniform(-0.5, 0.5, (6, 3))  # 3DIEBench-T's translation in the object frame
    offsets = np.einsum("vij,vj->vi", rotations, local)  # translations.npy: the world offset R t
    rot_a, rot_b, off_a, off_b = rotations[:3], rotations[3:], offsets[:3], offsets[3:]
    for frame, order in (("object", lambda r, t: (t, r)), ("base", lambda r, t: (r, t))):
        got = geometry.relative_transform(frame, rot_a, off_a, rot_b, off_b)
        assert got.shape == (3, 4, 4)
        for i in range(3):
            matrices = []
            for rotation, translation in ((rot_a[i], local[i]), (rot_b[i], local[3 + i])):
                rotate, move = np.eye(4), np.eye(4)
                rotate[:3, :3], move[:3, 3] = rotation, translation
                first, second = order(rotate, move)
                matrices.append(first @ second)
            np.testing.assert_allclose(got[i], np.linalg.inv(matrices[0]) @ matrices[1], atol=1e-12)
        as_torch = geometry.relative_transform(frame, *(torch.as_tensor(x) for x in (rot_a, off_a, rot_b, off_b)))
        assert isinstance(as_torch, torch.Tensor)
        np.testing.assert_allclose(as_torch.numpy(), got, atol=1e-12)
    # the base frame's matrix is the rendered pose: it maps view a's object points where view b's lie
    pose = geometry.pose_matrix(rotations, offsets)
    relative = geometry.relative_transform("base", rot_a, off_a, rot_b, off_b)
    np.testing.assert_allclose(pose[:3] @ relative, pose[3:], atol=1e-12)
    with pytest.raises(ValueError, match="frame"):
        geometry.relative_transform("camera", rot_a, off_a, rot_b, off_b)
