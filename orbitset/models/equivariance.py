"""Equivariance checks shipped with the library (in the spirit of e3nn's ``assert_equivariant``).

A function f is equivariant when f(g . x) = g . f(x) for every rotation g, with an *action* of g on the input and
one on the output. Actions provided here, for a batch of rotations R (B, 3, 3) acting on column vectors:
- `act_points`: points as rows (B, P, 3) -> x @ R^T (each point p -> R p);
- `act_vectors`: vector-neuron features (B, C, 3, ...) with the 3-vector on dimension 2 -> R v on that dimension;
- `act_trivial`: invariant outputs (unchanged).
Errors are relative: ||f(g x) - g f(x)|| / ||g f(x)||, per sample, maximum over the batch.
"""

from __future__ import annotations

from typing import Callable

import torch

from orbitset import geometry

Action = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def random_rotations(count: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`count` Haar-uniform rotation matrices (count, 3, 3), reproducible for `seed`."""
    generator = torch.Generator().manual_seed(seed)
    return geometry.random_rotation(count, generator).to(dtype)


def z_rotations(angles: torch.Tensor) -> torch.Tensor:
    """Rotations about the world Z axis (orbitset's up axis) by `angles` radians: (N,) -> (N, 3, 3)."""
    cos, sin, zero, one = torch.cos(angles), torch.sin(angles), torch.zeros_like(angles), torch.ones_like(angles)
    return torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=-1).reshape(-1, 3, 3)


def act_points(points: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate (B, P, 3) row points by (B, 3, 3) rotations: p -> R p."""
    return points @ rotations.transpose(-1, -2).to(points.dtype)


def act_vectors(features: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate vector features (B, C, 3, ...) on dimension 2."""
    return torch.einsum("bij,bcj...->bci...", rotations.to(features.dtype), features)


def act_trivial(features: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """The action on invariants: nothing changes."""
    return features


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    difference = (value - reference).flatten(1).norm(dim=1)
    scale = reference.flatten(1).norm(dim=1).clamp_min(torch.finfo(reference.dtype).tiny)
    return float((difference / scale).max())


@torch.no_grad()
def equivariance_error(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, rotations: torch.Tensor,
                       act_in: Action = act_points, act_out: Action = act_vectors) -> float:
    """max over the batch of ||f(act_in(x, R)) - act_out(f(x), R)|| / ||act_out(f(x), R)||."""
    return _relative_error(fn(act_in(inputs, rotations)), act_out(fn(inputs), rotations))


def invariance_error(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, rotations: torch.Tensor,
                     act_in: Action = act_points) -> float:
    """max over the batch of ||f(g x) - f(x)|| / ||f(x)||."""
    return equivariance_error(fn, inputs, rotations, act_in, act_trivial)


def assert_equivariant(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, rotations: torch.Tensor,
                       act_in: Action = act_points, act_out: Action = act_vectors, tolerance: float = 1e-5) -> float:
    """Raise AssertionError when the relative equivariance error exceeds `tolerance`; return the error."""
    error = equivariance_error(fn, inputs, rotations, act_in, act_out)
    if not error <= tolerance:
        raise AssertionError(f"equivariance error {error:.3g} exceeds the tolerance {tolerance:.3g}")
    return error
