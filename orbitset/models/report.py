"""`orbitset report`: the evaluation results of several runs in one markdown table, with figures.

Every R^2 appears in both conventions, labelled: "global mean" (one mean over all components: SIE, ContextSSL,
EquiCaps) and "per component" (the average of per-component R^2: seq-JEPA, scikit-learn's default)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from orbitset.errors import OrbitsetError

#: (column title, task file, metric key), in table order.
#: The median rotation errors, plain and symmetry-aware (`orbitset.models.rotation_errors`), as table columns.
ROTATION_ERROR_COLUMNS = (
    ("rotation err. deg (median)", "rotation", "geodesic_error_deg_median"),
    ("sym.-aware err. deg (median)", "rotation", "symmetric_error_deg_median"),
    ("rotation err. deg (equi, median)", "rotation-equi", "geodesic_error_deg_median"),
    ("sym.-aware err. deg (equi, median)", "rotation-equi", "symmetric_error_deg_median"),
)
COLUMNS = (
    ("top-1", "classify", "top1"),
    ("rotation R^2 (global mean)", "rotation", "r2_global_mean"),
    ("rotation R^2 (per component)", "rotation", "r2_per_component"),
    ("rotation R^2 (inv, global mean)", "rotation-inv", "r2_global_mean"),
    ("rotation R^2 (inv, per component)", "rotation-inv", "r2_per_component"),
    ("rotation R^2 (equi, global mean)", "rotation-equi", "r2_global_mean"),
    ("rotation R^2 (equi, per component)", "rotation-equi", "r2_per_component"),
    ("R^2 of the mean (global mean)", "rotation", "r2_mean_baseline"),
    *ROTATION_ERROR_COLUMNS,
    ("colour R^2 (global mean)", "color", "r2_global_mean"),
    ("colour R^2 (per component)", "color", "r2_per_component"),
    ("MRR", "retrieval", "mrr"),
    ("H@1", "retrieval", "h@1"),
    ("H@2", "retrieval", "h@2"),
    ("H@5", "retrieval", "h@5"),
    ("H@10", "retrieval", "h@10"),
    ("PRE", "pre", "pre"),
    ("z/z", "pointcloud", "z/z"),
    ("z/SO3", "pointcloud", "z/so3"),
    ("SO3/z", "pointcloud", "so3/z"),
    ("SO3/SO3", "pointcloud", "so3/so3"),
    ("invariance err.", "equivariance", "invariance_error"),
    ("inv. err. (features)", "equivariance", "invariance_error_features"),
    ("equivariance err. (W(q); VN: vector layers)", "equivariance", "equivariance_error"),
    ("err. W = I", "equivariance", "identity_error"),
    ("err. best beta w I", "equivariance", "scaled_identity_error"),
)


def collect(run: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every ``RUN/eval/TASK.json`` of a run, by task."""
    eval_dir = Path(run) / "eval"
    if not eval_dir.is_dir():
        raise OrbitsetError(f"{run} has no evaluation results; run `orbitset eval TASK --run {run}` first")
    return {path.stem: json.loads(path.read_text()) for path in sorted(eval_dir.glob("*.json"))}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2e}" if value != 0 and abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


def metric_table(runs: list[str | os.PathLike]) -> dict[str, dict[str, float]]:
    """{run name: {column title: value}} for the columns some run has."""
    table: dict[str, dict[str, float]] = {}
    for run in runs:
        results = collect(run)
        row = {title: results[task][key] for title, task, key in COLUMNS if key in results.get(task, {})}
        method = next((r["method"] for r in results.values() if "method" in r), "?")
        table[f"{Path(run).name} ({method})"] = row
    return table


def markdown_report(runs: list[str | os.PathLike], out: str | os.PathLike | None = None) -> str:
    """The markdown table of `runs`; with `out` (a .md path) it also writes the file and a bar chart beside it, and
    copies each run's orbit plot beside it and links it."""
    table = metric_table(runs)
    titles = [title for title, _, _ in COLUMNS if any(title in row for row in table.values())]
    lines = ["| run | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(_format(row[t]) if t in row else "" for t in titles) + " |")
    text = "\n".join(lines) + "\n"
    if out is not None:
        from orbitset.models.plots import metric_bars

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        bars = out.with_suffix(".png")
        scores = {name: {t: v for t, v in row.items() if "err" not in t} for name, row in table.items()}
        metric_bars(scores, bars, "evaluation results")
        figures = [f"![metrics]({os.path.relpath(bars, out.parent)})"]
        for run in runs:
            plot = Path(run) / "eval" / "orbit-plot.png"
            if plot.is_file():  # copied beside the report, so that its links work wherever the runs live
                beside = out.with_name(f"{out.stem}-{Path(run).name}-orbit.png")
                shutil.copyfile(plot, beside)
                figures.append(f"![orbit plot of {Path(run).name}]({beside.name})")
        text += "\n" + "\n\n".join(figures) + "\n"
        out.write_text(text)
    return text
