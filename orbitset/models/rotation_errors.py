"""Angular errors of predicted relative rotations, plain and symmetry-aware (`eval rotation`, beside R^2).

Metrics (degrees): ``geodesic_error_deg_mean`` / ``_median``: the angle between the predicted rotation (the probe's
quaternion, x y z w, normalised) and the true R_ab = R_a^T R_b. ``symmetric_error_deg_*``: the same angle to the
nearest equally right answer S_a^T R_ab S_b, S_a and S_b among the object's symmetries (`orbitset.symmetry`; each
continuous axis sampled every degree, as bop_toolkit does; an SO3 object's error is 0), overall and split into
asymmetric (group C1) and symmetric objects (``_asymmetric`` / ``_symmetric``, with their pair counts). Without
symmetry records for the dataset, or for pairs of objects whose detection failed, the symmetry-aware figures
leave those pairs out (``pairs_without_symmetry``) and say so.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

import numpy as np
import torch

from orbitset import geometry
from orbitset.errors import ManifestError


def _summary(degrees: np.ndarray, suffix: str = "") -> dict[str, Any]:
    if len(degrees) == 0:
        return {f"symmetric_error_deg_mean{suffix}": None, f"symmetric_error_deg_median{suffix}": None}
    return {f"symmetric_error_deg_mean{suffix}": float(degrees.mean()),
            f"symmetric_error_deg_median{suffix}": float(np.median(degrees))}


def symmetric_errors(predicted: np.ndarray, target: np.ndarray, records: Sequence[dict | None]) -> np.ndarray:
    """(N,) symmetry-aware angles in degrees of predicted (N, 3, 3) against target (N, 3, 3), pair i's object having
    symmetry record `records[i]` (NaN where it is None or a failure)."""
    from orbitset.symmetry.records import equivalents

    out = np.full(len(predicted), math.nan)
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        if record and record.get("group"):
            groups.setdefault(json.dumps(record, sort_keys=True), []).append(index)
    for text, indices in groups.items():
        record = json.loads(text)
        if record["group"] == "SO3":
            out[indices] = 0.0
            continue
        angles = geometry.symmetric_geodesic_angle(predicted[indices], target[indices], equivalents(record))
        out[indices] = np.degrees(angles)
    return out


def rotation_errors(predicted_quat: torch.Tensor, rot_a: torch.Tensor, rot_b: torch.Tensor, keys: Sequence[str],
                    dataset: str | os.PathLike) -> dict[str, Any]:
    """The metrics of the module docstring for pairs (predicted quaternion, R_a, R_b, object key); symmetry records
    come from `dataset`'s sidecar (`orbitset.symmetry.records`)."""
    from orbitset.symmetry.records import object_records

    predicted = np.asarray(geometry.quat_to_matrix(predicted_quat.detach().double().cpu().numpy()))
    target = np.asarray(geometry.relative_rotation(rot_a.double().cpu().numpy(), rot_b.double().cpu().numpy()))
    plain = np.degrees(np.asarray(geometry.geodesic_angle(predicted, target)))
    out: dict[str, Any] = {"geodesic_error_deg_mean": float(plain.mean()),
                           "geodesic_error_deg_median": float(np.median(plain))}
    try:
        by_key = object_records(dataset)
    except (ManifestError, OSError) as exc:
        return {**out, **_summary(np.empty(0)), "symmetry_records": f"none ({exc})"}
    records = [by_key.get(key) for key in keys]
    aware = symmetric_errors(predicted, target, records)
    known = ~np.isnan(aware)
    asymmetric = np.array([bool(r and r.get("group") == "C1") for r in records])
    symmetric = known & ~asymmetric
    return {**out, **_summary(aware[known]), **_summary(aware[asymmetric], "_asymmetric"),
            **_summary(aware[symmetric], "_symmetric"), "pairs_asymmetric": int(asymmetric.sum()),
            "pairs_symmetric": int(symmetric.sum()), "pairs_without_symmetry": int((~known).sum()),
            "symmetry_records": "symmetry.json"}
