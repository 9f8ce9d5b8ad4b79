"""CLI commands of orbitset.manifests: verify, stats, download (registered by orbitset.cli).

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


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    for command in (verify, stats, download):
        app.add_command(command)
