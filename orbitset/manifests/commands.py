"""CLI commands of orbitset.manifests: verify, stats, download, convert, export (registered by orbitset.cli).

Heavy imports stay inside the command bodies. Library errors propagate to `orbitset.cli.main`, which prints them as
one line and exits with status 2; `verify` exits with status 1 when a shard is bad, missing or unlisted.
"""

from __future__ import annotations

import click


@click.command()
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--deep", is_flag=True, help="Also decode and validate every sample and check the recorded counts.")
@click.option("--split", default=None, help="Check only this split's shards.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, help="Shards checked in parallel (default: up to 4).")
def verify(dataset: str, deep: bool, split: str | None, jobs: int | None) -> int:
    """Check every shard of DATASET (a folder or its manifest.json) against the manifest: size and sha256."""
    from orbitset.manifests.verify import verify_dataset

    report = verify_dataset(dataset, deep=deep, split=split, jobs=jobs, progress=True)
    click.echo(report.table())
    click.echo(report.summary(), err=not report.ok)
    return 0 if report.ok else 1


@click.command()
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--split", default=None, help="Only this split.")
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None, help="Figure path (default: DATASET/stats.png).")
def stats(dataset: str, split: str | None, png: str | None) -> None:
    """Objects per class and split, factor histograms and pair relative-angle histogram of DATASET (text + PNG)."""
    from orbitset.manifests.model import manifest_path
    from orbitset.manifests.stats import dataset_stats

    result = dataset_stats(dataset, split=split)
    click.echo(result.text())
    figure = result.plot(png or manifest_path(dataset).parent / "stats.png")
    click.echo(f"\nfigure: {figure}")


@click.command()
@click.argument("source")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the shards and manifest.")
@click.option("--split", default=None, help="Fetch only this split.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=4, show_default=True, help="Shards fetched in parallel.")
@click.option("--retries", type=click.IntRange(0), default=5, show_default=True, help="Retries per shard.")
@click.option("--timeout", type=click.FloatRange(0.01), default=30.0, show_default=True, help="Seconds per blocking read.")
@click.option("--backoff", type=click.FloatRange(0.0), default=0.5, show_default=True, help="Seconds before the first retry (doubles).")
def download(source: str, out: str, split: str | None, jobs: int, retries: int, timeout: float, backoff: float) -> None:
    """Fetch a dataset (a registered NAME, a manifest URL or path) into OUT, verifying every shard; resumable."""
    from orbitset.datasets.registry import datasets
    from orbitset.manifests.download import DownloadOptions, download_dataset

    if source in datasets():
        click.echo(f"{source}: {datasets()[source].description}")
    options = DownloadOptions(jobs=jobs, retries=retries, timeout=timeout, backoff=backoff)
    report = download_dataset(source, out, split=split, options=options)
    click.echo(report.summary())


@click.command()
@click.argument("layout", type=click.Choice(["3diebench", "3diebench-t", "3diebench-ood"]))
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the shards and manifest.")
@click.option("--splits-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder with train_images.npy, val_images.npy and *_labels.npy (default: SRC if it has them).")
@click.option("--views", type=click.IntRange(1), default=50, show_default=True, help="Views per object.")
@click.option("--workers", "-w", type=click.IntRange(1), default=None, help="Processes (default: up to 4).")
@click.option("--objects-per-shard", type=click.IntRange(1), default=256, show_default=True)
@click.option("--compare-read", is_flag=True, help="First time a plain read of the same files, and print both rates.")
def convert(layout: str, src: str, out: str, splits_from: str | None, views: int, workers: int | None,
            objects_per_shard: int, compare_read: bool) -> None:
    """Convert a published LAYOUT tree SRC (SYNSET/OBJ/image_i.jpg + latent_i.npy) into orbitset shards in OUT."""
    from orbitset.datasets.convert import convert_3diebench, read_throughput, scan_tree

    baseline = None
    if compare_read:
        baseline = read_throughput(scan_tree(src, layout, splits_from, views), workers=workers)
        click.echo(f"plain read (cat-like, same files): {baseline.describe()}")
    report = convert_3diebench(src, out, layout=layout, splits_from=splits_from, views=views, workers=workers,
                               objects_per_shard=objects_per_shard)
    click.echo(report.summary())
    if baseline is not None:
        click.echo(f"conversion / plain read: {report.throughput.images_per_second / baseline.images_per_second:.2f} (images/s)")


@click.group()
def export() -> None:
    """Write an orbitset dataset in another layout."""


@export.command("sie-layout")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Root of the SYNSET/OBJ/ tree.")
def export_sie_layout_command(dataset: str, out: str) -> None:
    """Write DATASET as 3DIEBench's tree (SYNSET/OBJ/image_i.jpg + latent_i.npy) plus split and label .npy files."""
    from orbitset.datasets.convert import export_sie_layout

    report = export_sie_layout(dataset, out)
    click.echo(report.summary())


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    for command in (verify, stats, download, convert, export):
        app.add_command(command)
