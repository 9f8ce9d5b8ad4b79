"""Every method trains from the CLI on a tiny dataset, resumes from its checkpoint, and evaluates."""

import json
import math

import pytest
import torch

from orbitset.cli import main
from orbitset.models.train import CHECKPOINT_FILE, load_checkpoint
from orbitset.testing import write_synthetic_dataset

IMAGE_METHODS = ["sie", "sie-color", "vicreg", "simclr", "equimod", "sen", "augself"]
POINT_METHODS = {"pointnet": "widths=[8,16]", "vn-pointnet": "widths=[4,4,8,8]", "fa-pointnet": "widths=[8,16]"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    write_synthetic_dataset(out, classes=2, objects_per_class=4, views=4, size=16, points=48)
    return out


def run_cli(*args):
    assert main([str(a) for a in args]) == 0


def image_train_args(method, data, out):
    return ["train", method, "--data", data, "--out", out, "--backbone", "small", "--size", 16, "--batch-size", 3,
            "--param", "projector_dims=[16,16]"]


def point_train_args(method, data, out):
    return ["train", method, "--data", data, "--out", out, "--batch-size", 3, "--num-points", 24, "--param",
            POINT_METHODS[method], "--param", "head=[8]"]


@pytest.mark.parametrize("method", IMAGE_METHODS + list(POINT_METHODS))
def test_train_one_epoch_then_resume(method, data, tmp_path):
    args = (image_train_args if method in IMAGE_METHODS else point_train_args)(method, data, tmp_path)
    run_cli(*args, "--epochs", 1)
    first = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert first["epoch"] == 1
    run_cli(*args, "--epochs", 2, "--resume")
    second = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert second["epoch"] == 2
    assert any(not torch.equal(first["model"][k], v) for k, v in second["model"].items())
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs[0] == 1 and epochs[-1] == 2  # the resumed run appended to the first epoch's metrics


def read_eval(run, name):
    return json.loads((run / "eval" / f"{name}.json").read_text())


def test_image_evaluations_and_report(data, tmp_path):
    run = tmp_path / "sie"
    run_cli(*image_train_args("sie-color", data, run), "--epochs", 1)
    probe = ["--probe-epochs", 2, "--probe-hidden", 16, "--batch-size", 4]
    for task in ("classify", "rotation", "color", "retrieval", "pre", "equivariance", "orbit-plot"):
        run_cli("eval", task, "--run", run, *probe)
    for part in ("inv", "equi"):
        run_cli("eval", "rotation", "--run", run, "--part", part, *probe)
    # 2 classes x 4 objects, every 4th object in val: 6 train and 2 val objects of 4 views each
    classify = read_eval(run, "classify")
    assert classify["part"] == "all" and 0 <= classify["top1"] <= 1 and classify["chance"] == 0.5
    assert (classify["train_objects"], classify["test_views"], classify["epochs_run"]) == (6, 8, 2)
    for name, part in (("rotation", "all"), ("rotation-inv", "inv"), ("rotation-equi", "equi")):
        rotation = read_eval(run, name)
        assert rotation["part"] == part and rotation["quaternion"] == "raw" and rotation["pair_sampling"] == "fresh"
        assert math.isfinite(rotation["r2"]) and rotation["r2"] <= 1 and rotation["r2_mean_baseline"] <= 1
        assert rotation["r2"] == rotation["r2_global_mean"] and rotation["r2_per_component"] <= 1
        assert (rotation["train_objects"], rotation["test_pairs"]) == (6, 2 * 10)
    assert read_eval(run, "rotation-inv")["r2"] != read_eval(run, "rotation-equi")["r2"]
    color = read_eval(run, "color")
    assert color["part"] == "all" and math.isfinite(color["r2"]) and color["r2"] <= 1 and color["quaternion"] is None
    retrieval = read_eval(run, "retrieval")
    hits = [retrieval[f"h@{k}"] for k in (1, 2, 5, 10)]
    assert hits == sorted(hits) and hits[-1] == 1.0  # 4 views: the true one is always within the first 10
    assert 0.25 <= retrieval["mrr"] <= 1 and retrieval["queries"] == 2 * 4 and retrieval["predictor"]
    pre = read_eval(run, "pre")
    assert 0 <= pre["pre"] <= 1 and pre["queries"] == pre["bank"] == 2 * 4  # every view queried, view 0 included
    equivariance = read_eval(run, "equivariance")
    for key in ("equivariance_error", "identity_error", "scaled_identity_error", "invariance_error"):
        assert equivariance[key] > 0
    assert equivariance["quaternion"] == "raw" and equivariance["pairs"] == 20
    assert read_eval(run, "orbit-plot")["mean_similarity"] <= 1
    assert (run / "eval" / "orbit-plot.png").stat().st_size > 0
    report = tmp_path / "report.md"
    run_cli("report", run, "--out", report)
    text = report.read_text()
    assert "rotation R^2 (equi, global mean)" in text and "rotation R^2 (equi, per component)" in text
    assert "H@10" in text and "sie (sie-color)" in text
    assert (tmp_path / "report.png").is_file()


def seq_jepa_args(data, out):
    return ["train", "seq-jepa", "--data", data, "--out", out, "--backbone", "small", "--size", 16, "--batch-size", 3,
            "--views", 4, "--param", "action_dim=16", "--param", "pred_hidden=16", "--param", "num_layers=1"]


def test_seq_jepa_trains_resumes_and_evaluates(data, tmp_path, capsys):
    run = tmp_path / "seq"
    run_cli(*seq_jepa_args(data, run), "--epochs", 1)
    first = load_checkpoint(run / CHECKPOINT_FILE)
    config = json.loads((run / "config.json").read_text())
    assert (config["views"], config["warmup_epochs"], config["lr"], config["weight_decay"]) == (4, 20, 4e-4, 0.0)
    run_cli(*seq_jepa_args(data, run), "--epochs", 2, "--resume")
    second = load_checkpoint(run / CHECKPOINT_FILE)
    assert second["epoch"] == 2
    target = [k for k in second["model"] if k.startswith("method.target_encoder.") and k.endswith("weight")]
    assert target and any(not torch.equal(first["model"][k], second["model"][k]) for k in target)  # EMA moved it
    probe = ["--probe-epochs", 2, "--probe-hidden", 16, "--batch-size", 4]
    for task in ("classify", "rotation", "view-rotation", "aggregate"):
        run_cli("eval", task, "--run", run, *probe)
    for task in ("rotation", "view-rotation"):
        result = read_eval(run, task)
        assert result["r2"] == result["r2_global_mean"] and math.isfinite(result["r2_per_component"])
        assert result["quaternion"] == "raw"
    assert read_eval(run, "view-rotation")["test_views"] == 2 * 10
    aggregate = read_eval(run, "aggregate")
    assert 0 <= aggregate["top1"] <= 1 and aggregate["context_views"] == 3 and aggregate["test_sequences"] == 2 * 10
    capsys.readouterr()
    sie = tmp_path / "sie"
    run_cli(*image_train_args("sie", data, sie), "--epochs", 0)
    assert main(["eval", "aggregate", "--run", str(sie)]) == 2
    assert "has no aggregate representation" in capsys.readouterr().err
    assert main([*seq_jepa_args(data, tmp_path / "k9"), "--views", 9, "--epochs", 1]) == 2
    assert "has 4 view(s) but sequences need 9; pass views <= 4" in capsys.readouterr().err


def test_part_and_bad_arguments_are_clear_errors(data, tmp_path, capsys):
    run = tmp_path / "vicreg"
    run_cli(*image_train_args("vicreg", data, run), "--epochs", 0)
    assert main(["eval", "rotation", "--run", str(run), "--part", "equi"]) == 2
    assert "does not split" in capsys.readouterr().err
    assert main(["eval", "retrieval", "--run", str(run), "--part", "inv"]) == 2
    assert "applies only to" in capsys.readouterr().err
    assert main(["train", "sie", "--data", str(data), "--out", str(tmp_path / "bad"), "--size", "0"]) == 2
    assert "size must be at least 8" in capsys.readouterr().err
    assert main(["train", "sie", "--data", str(data), "--out", str(tmp_path / "bad"), "--protocol", "3diebench-paper",
                 "--size", "64"]) == 2
    assert "--protocol 3diebench-paper fixes size=256" in capsys.readouterr().err


def test_point_evaluations(data, tmp_path):
    run = tmp_path / "fa"
    run_cli(*point_train_args("fa-pointnet", data, run), "--epochs", 1)
    for task in ("pointcloud", "equivariance", "orbit-plot"):
        run_cli("eval", task, "--run", run, "--batch-size", 4)
    result = json.loads((run / "eval" / "pointcloud.json").read_text())
    assert set(result) >= {"z/z", "z/so3", "up_axis"} and result["up_axis"] == "z"
    errors = json.loads((run / "eval" / "equivariance.json").read_text())
    assert errors["invariance_error_features"] < 1e-4
    assert errors["invariance_error_features_float64"] < 1e-12 and errors["invariance_error_logits_float64"] < 1e-12


def test_point_equivariance_in_float64_separates_rounding_from_a_broken_invariance(data, tmp_path):
    run = tmp_path / "vn"
    run_cli(*point_train_args("vn-pointnet", data, run), "--epochs", 1)
    run_cli("eval", "equivariance", "--run", run, "--batch-size", 4)
    vn = json.loads((run / "eval" / "equivariance.json").read_text())
    assert vn["equivariance_error_float64"] < 1e-12 < vn["equivariance_error"] < 1e-3
    assert vn["invariance_error_features_float64"] < 1e-12
    run = tmp_path / "pointnet"
    run_cli(*point_train_args("pointnet", data, run), "--epochs", 1)
    run_cli("eval", "equivariance", "--run", run, "--batch-size", 4)
    assert json.loads((run / "eval" / "equivariance.json").read_text())["invariance_error_features_float64"] > 1e-3


def test_task_that_does_not_apply_is_a_clear_error(data, tmp_path, capsys):
    run_cli(*point_train_args("pointnet", data, tmp_path), "--epochs", 0)
    assert main(["eval", "rotation", "--run", str(tmp_path)]) == 2
    assert "does not apply" in capsys.readouterr().err
