"""CLI commands of orbitset.loaders (registered on the main app by orbitset.cli); heavy imports stay inside commands."""

from __future__ import annotations

import click


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    app.add_command(bench_loader)


@click.command("bench-loader")
@click.argument("source")
@click.option("--split", default=None, help="Split of the dataset (default: train when present).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0), help="Worker processes.")
@click.option("--size", default=None, type=click.IntRange(min=1), help="Output side in pixels (default: as stored).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N] (GPU decoding when available).")
@click.option("--epochs", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--pairs-per-object", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--uint8", is_flag=True, help="Deliver uint8 views (skip normalisation).")
def bench_loader(source, split, batch_size, workers, size, device, epochs, pairs_per_object, uint8) -> None:
    """Measure PairLoader throughput (pairs/s) on a dataset folder, manifest or shard URL."""
    import time

    import torch

    from orbitset.loaders import PairLoader

    loader = PairLoader(source, batch_size, split=split, num_workers=workers, size=size, device=device,
                        pairs_per_object=pairs_per_object, normalize=not uint8)
    click.echo(f"{len(loader)} batches of {batch_size} pairs per epoch, {workers} worker(s), device {device}")
    for epoch in range(epochs):
        pairs, start = 0, time.perf_counter()
        for batch in loader:
            pairs += len(batch["key"])
        if loader.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        skipped = f", {loader.skipped} skipped" if loader.skipped else ""
        click.echo(f"epoch {epoch}: {pairs} pairs in {elapsed:.2f} s = {pairs / elapsed:.1f} pairs/s{skipped}")
