"""Symmetry-aware rotation errors: the geometry helper, the evaluation's metrics, and `eval rotation` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from orbitset import geometry
from orbitset.cli import main
from orbitset.models.rotation_errors import rotation_errors
from orbitset.symmetry.detect import rotation_about
from orbitset.symmetry.records import dataset_keys, write_sidecar
from orbitset.testing import write_synthetic_dataset

Z = np.array([0.0, 0.0, 1.0])
CINF = {"group": "Cinf", "order": None, "symmetries_discrete": [],
        "symmetries_continuous": [{"axis": [0.0, 0.0, 1.0], "offset": [0.0, 0.0, 0.0]}]}
C1 = {"group": "C1", "order": 1, "symmetries_discrete": [], "symmetries_continuous": []}
SO3 = {"group": "SO3", "order": None, "symmetries_discrete": [], "symmetries_continuous": []}


def test_symmetric_angle_is_the_minimum_over_both_views_symmetries():
    rng = np.random.default_rng(0)
    predicted, target = geometry.random_rotation(6, rng), geometry.random_rotation(6, rng)
    four = np.stack([rotation_about(Z, k * math.pi / 2) for k in range(4)])
    brute = [min(geometry.geodesic_angle(p, a.T @ t @ b) for a in four for b in four) for p, t in zip(predicted, target)]
    assert np.allclose(geometry.symmetric_geodesic_angle(predicted, target, four), brute)
    assert np.allclose(geometry.symmetric_geodesic_angle(predicted, target, np.eye(3)[None]),
                       geometry.geodesic_angle(predicted, target))


def _pairs(count: int, seed: int):
    rng = np.random.default_rng(seed)
    rot_a, rot_b = geometry.random_rotation(count, rng), geometry.random_rotation(count, rng)
    return torch.as_tensor(rot_a), torch.as_tensor(rot_b)


def test_errors_split_by_symmetry(tmp_path):
    rot_a, rot_b = _pairs(12, 1)
    target = geometry.relative_rotation(rot_a.numpy(), rot_b.numpy())
    # predictions off by a turn about the object's own axis: right for Cinf objects, wrong for asymmetric ones
    turned = target @ np.stack([rotation_about(Z, 0.3 + 0.2 * i) for i in range(12)])
    predicted = torch.as_tensor(geometry.matrix_to_quat(turned))
    keys = ["can"] * 6 + ["duck"] * 6
    write_sidecar(tmp_path, {"can": CINF, "duck": C1})
    metrics = rotation_errors(predicted, rot_a, rot_b, keys, tmp_path)
    plain = np.degrees(geometry.geodesic_angle(turned, target))
    assert math.isclose(metrics["geodesic_error_deg_mean"], plain.mean(), rel_tol=1e-9)
    assert metrics["symmetric_error_deg_median_symmetric"] < 0.5  # 1-degree sampling of the axis
    assert math.isclose(metrics["symmetric_error_deg_mean_asymmetric"], plain[6:].mean(), rel_tol=1e-9)
    assert (metrics["pairs_symmetric"], metrics["pairs_asymmetric"], metrics["pairs_without_symmetry"]) == (6, 6, 0)


def test_without_records_the_symmetry_aware_error_is_absent(tmp_path):
    rot_a, rot_b = _pairs(3, 2)
    metrics = rotation_errors(torch.randn(3, 4), rot_a, rot_b, ["x"] * 3, tmp_path)
    assert metrics["symmetric_error_deg_mean"] is None and "symmetry.json" in metrics["symmetry_records"]
    assert metrics["geodesic_error_deg_mean"] > 0


def test_eval_rotation_on_so3_objects_scores_any_prediction_zero(tmp_path):
    data = tmp_path / "data"
    write_synthetic_dataset(data, classes=2, objects_per_class=4, views=4, size=16, points=48)
    keys = [key for key, _ in dataset_keys(data)]
    write_sidecar(data, {key: SO3 for key in keys})
    run = tmp_path / "run"
    assert main(["train", "sie", "--data", str(data), "--out", str(run), "--backbone", "small", "--size", "16",
                 "--batch-size", "3", "--param", "projector_dims=[16,16]", "--epochs", "1"]) == 0
    assert main(["eval", "rotation", "--run", str(run), "--probe-epochs", "1", "--probe-hidden", "8",
                 "--batch-size", "4"]) == 0
    result = json.loads((run / "eval" / "rotation.json").read_text())
    assert result["geodesic_error_deg_mean"] > 1.0  # an untrained probe is far from the labels
    assert result["symmetric_error_deg_mean"] == 0.0 and result["symmetric_error_deg_median_symmetric"] == 0.0
    assert result["pairs_symmetric"] == result["test_pairs"] and result["pairs_asymmetric"] == 0
    assert main(["report", str(run), "--out", str(tmp_path / "report.md")]) == 0
    assert "sym.-aware err. deg (median)" in (tmp_path / "report.md").read_text()
