"""CLI commands of orbitset.datasets: download a named dataset, convert a published layout to shards, export shards
to it (registered by orbitset.cli).

Heavy imports stay inside the command bodies. Library errors propagate to `orbitset.cli.main`, which prints them as
one line and exits with status 2.
"""

from __future__ import annotations

import click

_RESUME_NOTE = (
    "Datasets converted from their source (3diebench, 3diebench-t, 3diebench-ood; see --list) are read as a stream and "
    "converted on the fly: the archive is not kept and nothing is unpacked, so the extra disk is the shards plus at "
    "most one partial shard. A dropped connection is resumed in place (HTTP Range). An interrupted run keeps its "
    "complete shards; running the same command again resumes: it reads the source again from its start (the part "
    "already converted is downloaded and decompressed again, not converted again) and skips the kept shards' objects."
)
_LAYOUTS = click.Choice(["3diebench", "3diebench-t", "3diebench-ood"])


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
        from orbitset.datasets.convert import ConvertSettings, download_converted

        settings = ConvertSettings(layout=entry.layout, views=views, objects_per_shard=objects_per_shard,
                                   fix_colors=fix_colors)
        report = download_converted(source, out, url=url, splits_from=splits_from, settings=settings, options=options)
        click.echo(report.summary())
        return
    if url is not None:
        raise click.UsageError("--url replaces the source of a converted dataset; for shards, pass the manifest URL as SOURCE")
    report = download_dataset(source, out, split=split, options=options)
    click.echo(report.summary())


@click.command()
@click.argument("layout", type=_LAYOUTS)
@click.argument("src")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the shards and manifest.")
@click.option("--splits-from", default=None,
              help="Folder or URL folder with train_images.npy, val_images.npy and *_labels.npy (default: SRC if it has them).")
@click.option("--views", type=click.IntRange(1), default=50, show_default=True, help="Views per object.")
@click.option("--objects-per-shard", type=click.IntRange(1), default=256, show_default=True)
@click.option("--fix-colors", is_flag=True, help="Re-encode images with red and blue in RGB order.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=8, show_default=True, help="Threads reading a tree's files ahead.")
def convert(layout: str, src: str, out: str, splits_from: str | None, views: int, objects_per_shard: int,
            fix_colors: bool, jobs: int) -> None:
    """Convert SRC in LAYOUT (SYNSET/OBJ/image_i.jpg + latent_i.npy) into orbitset shards in OUT, as a stream.

    SRC: a local .tar.gz/.tar archive, an archive URL, a local tree, or an fsspec URL of a tree (file://, memory://,
    hf://datasets/..., s3://...); the layout's root may sit at any depth. Interrupted runs resume (see 'orbitset
    download --help')."""
    from orbitset.datasets.convert import ConvertSettings, convert_source, read_split_dir

    files = read_split_dir(splits_from) if splits_from is not None else None
    settings = ConvertSettings(layout=layout, views=views, objects_per_shard=objects_per_shard, fix_colors=fix_colors)
    report = convert_source(src, out, settings, split_files=files, jobs=jobs)
    click.echo(report.summary())


@click.group()
def export() -> None:
    """Write an orbitset dataset in another layout."""


@export.command("sie-layout")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Root of the SYNSET/OBJ/ tree.")
def export_sie_layout_command(dataset: str, out: str) -> None:
    """Write DATASET as 3DIEBench's tree (SYNSET/OBJ/image_i.jpg + latent_i.npy) plus split and label .npy files."""
    from orbitset.datasets.export import export_sie_layout

    report = export_sie_layout(dataset, out)
    click.echo(report.summary())


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    for command in (download, convert, export):
        app.add_command(command)
