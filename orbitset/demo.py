"""The first job a newcomer runs (`make demo`): render the embedded objects, check, look, load, train, evaluate.

Each step prints what it did and where its output is; everything lands under one folder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import click

from orbitset import geometry


def _step(title: str, action: Callable[[], str]) -> None:
    click.secho(f"\n== {title}", bold=True)
    started = time.perf_counter()
    summary = action()
    click.echo(f"{summary}\n   ({time.perf_counter() - started:.1f} s)")


def run_demo(out: str | Path, objects: int = 30, views: int = 12, size: int = 96, workers: int = 2, train: bool = True) -> None:
    """Render `objects` procedural objects x `views` views at `size` px into ``out/data`` and walk through orbitset."""
    out = Path(out)
    data = out / "data"

    def render() -> str:
        from orbitset.render.dataset import render_dataset

        manifest = render_dataset(
            "3diebench", "procedural", data, backend="raster", objects=objects, views=views, size=size, workers=workers, seed=0
        )
        totals = manifest.totals()
        return (
            f"rendered {totals['objects']} objects x {views} views ({totals['views']} images, {len(manifest.classes)} classes) "
            f"with the 3DIEBench recipe on the raster backend into {totals['shards']} shards: {data}\n"
            f"   (rerunning resumes: complete shards are kept; {len(manifest.failures)} objects failed)"
        )

    def verify() -> str:
        from orbitset.manifests.verify import verify_dataset

        report = verify_dataset(data, deep=True)
        report.raise_for_problems()
        return f"{report.summary()}: every shard's size and sha256 match the manifest, every sample validates"

    def look() -> str:
        from orbitset.manifests.stats import dataset_stats
        from orbitset.show import contact_sheet

        sheet = contact_sheet(data, out / "contact_sheet.png", objects=8, views=8)
        stats = dataset_stats(data)
        figure = stats.plot(out / "stats.png")
        return f"contact sheet: {sheet}\n   statistics: {figure}\n" + "\n".join("   " + line for line in stats.text().splitlines()[:12])

    def load() -> str:
        import torch

        from orbitset.loaders import PairLoader, PointLoader

        pairs = PairLoader(data, batch_size=8, split="train", num_workers=0, seed=0, rotation="matrix")
        batch = next(iter(pairs))
        check = geometry.relative_rotation(batch["rot_a"].double(), batch["rot_b"].double())
        error = (check - batch["rel_rotation"].double()).abs().max().item()
        started, count = time.perf_counter(), 0
        for batch in pairs:
            count += len(batch["label"])
        rate = count / (time.perf_counter() - started)
        points = next(iter(PointLoader(data, batch_size=4, split="train", num_points=512, rotate="so3", seed=0)))
        return (
            f"PairLoader: view_a {tuple(batch['view_a'].shape)}, rel_rotation = R_a^T R_b (max error {error:.1e}), "
            f"rel_latents {pairs.rel_latent_names}; {rate:.0f} pairs/s in this process\n"
            f"   PointLoader: points {tuple(points['points'].shape)} under random SO(3) rotations "
            f"(det {torch.det(points['rotation'][0].double()).item():.3f})"
        )

    steps = [("render", render), ("verify", verify), ("look", look), ("load pairs and points", load)]
    if train:
        steps.append(("train and evaluate", lambda: _train_and_evaluate(data, out / "runs")))
    for title, action in steps:
        _step(title, action)
    click.secho(f"\nDone. Everything is under {out}/", bold=True)


def _train_and_evaluate(data: Path, runs: Path) -> str:
    """Train SIE with the small CNN for one epoch and probe its rotation and class information."""
    from orbitset.models.evaluate import EvalOptions, evaluate
    from orbitset.models.train import TrainConfig, train

    run = runs / "sie"
    train(TrainConfig(method="sie", data=str(data), out=str(run), epochs=1, batch_size=16, backbone="small"), progress=False)
    lines = []
    for task in ("rotation", "classify"):
        result = evaluate(task, run, EvalOptions(data=str(data)))
        numbers = ", ".join(f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float))
        lines.append(f"   {task}: {numbers}")
    return (f"trained SIE (small CNN, 1 epoch) and evaluated it: {run}/eval/*.json "
            "(tiny run: a plumbing check, not a result)\n" + "\n".join(lines))
