"""CLI commands of orbitset.manifests: verify, stats, download, index (registered by orbitset.cli).

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

    result = dataset_stats(dataset, split=split, progress=True)
    click.echo(result.text())
    figure = result.plot(png or manifest_path(dataset).parent / "stats.png")
    click.echo(f"\nfigure: {figure}")


_RESUME_NOTE = (
    "Datasets converted from their source (3diebench, 3diebench-t, 3diebench-ood; see --list) are read as a stream and "
    "converted on the fly: the archive is not kept and nothing is unpacked, so the extra disk is the shards plus at "
    "most one partial shard. A dropped connection is resumed in place (HTTP Range). An interrupted run keeps its "
    "complete shards; running the same command again resumes: it reads the source again from its start (the part "
    "already converted is downloaded and decompressed again, not converted again) and skips the kept shards' objects; "
    "an OUT that holds the finished dataset is left as it is."
)


@click.command(epilog=_RESUME_NOTE)
@click.argument("source", required=False)
@click.option("--out", "-o", type=click.Path(file_okay=False), help="Folder for the shards and manifest.")
@click.option("--list", "list_names", is_flag=True, help="List every registered name with its source, size, licence and needs.")
@click.option("--url", default=None, help="Read a converted dataset's source from this URL or path instead (mirror, local copy).")
@click.option("--splits-from", default=None, help="Folder or URL folder with <split>_images.npy and <split>_labels.npy "
              "(default: the registry's split files, checked by checksum).")
@click.option("--fix-colors", is_flag=True, help="Re-encode 3DIEBench images with red and blue in RGB order (for other "
              "tools; orbitset's loaders fix the order at decode time without it).")
@click.option("--objects-per-shard", type=click.IntRange(1), default=256, show_default=True, help="Converted datasets: objects per shard.")
@click.option("--views", type=click.IntRange(1), default=50, show_default=True, help="Converted datasets: views per object.")
@click.option("--split", default=None, help="Published shards: fetch only this split.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=4, show_default=True, help="Shards fetched in parallel.")
@click.option("--retries", type=click.IntRange(0), default=5, show_default=True, help="Retries per shard or per broken connection.")
@click.option("--timeout", type=click.FloatRange(0.01), default=30.0, show_default=True, help="Seconds per blocking read.")
@click.option("--backoff", type=click.FloatRange(0.0), default=0.5, show_default=True, help="Seconds before the first retry (doubles).")
def download(source: str | None, out: str | None, list_names: bool, url: str | None, splits_from: str | None,
             fix_colors: bool, objects_per_shard: int, views: int, split: str | None, jobs: int, retries: int, timeout: float,
             backoff: float) -> None:
    """Get a dataset into OUT: a registered NAME (see --list) or a manifest URL or path; verified and resumable."""
    from orbitset.datasets.registry import datasets, lookup
    from orbitset.manifests.download import DownloadOptions, download_dataset

    if list_names:
        click.echo("\n\n".join(entry.describe() for entry in datasets().values()))
        return
    if source is None or out is None:
        raise click.UsageError("give a dataset NAME (or manifest URL) and --out DIR, or --list")
    entry = lookup(source)
    options = DownloadOptions(jobs=jobs, retries=retries, timeout=timeout, backoff=backoff)
    if entry is not None:
        click.echo(f"{source}: {entry.description}; licence: {entry.licence}")
    if entry is not None and entry.kind == "convert":
        from orbitset.datasets.commands import echo_conversion
        from orbitset.datasets.convert import ConvertSettings, download_converted

        settings = ConvertSettings(layout=entry.layout, views=views, objects_per_shard=objects_per_shard,
                                   fix_colors=fix_colors)
        report = download_converted(source, out, url=url, splits_from=splits_from, settings=settings, options=options)
        echo_conversion(report)
        return
    if url is not None:
        raise click.UsageError("--url replaces the source of a converted dataset; for shards, pass the manifest URL as SOURCE")
    report = download_dataset(source, out, split=split, options=options)
    click.echo(report.summary())


@click.command("index")
@click.argument("dataset", type=click.Path(exists=True))
def index(dataset: str) -> None:
    """Write the index files of DATASET's shards (orbitset's offsets and DALI's .idx) and list them in its manifest."""
    from orbitset.manifests.reindex import index_dataset

    manifest = index_dataset(dataset, progress=True)
    click.echo(f"{len(manifest.shards)} shard(s) indexed: loaders and DALI now open them without scanning")


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    for command in (verify, stats, download, index):
        app.add_command(command)
