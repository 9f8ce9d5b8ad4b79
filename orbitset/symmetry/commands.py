"""`orbitset symmetry`: the rotation group of mesh files, or of every object of a dataset (``--annotate``)."""

from __future__ import annotations

import json

import click

from orbitset.errors import AssetError, OrbitsetError, UsageError


def _describe(record: dict) -> str:
    if record.get("group") is None:
        return f"failed: {record['failure']}"
    parts = [record["group"]]
    if record.get("order") is not None:
        parts.append(f"order {record['order']}")
    for continuous in record["symmetries_continuous"]:
        parts.append("continuous axis (" + ", ".join(f"{v:.4f}" for v in continuous["axis"]) + ")")
    if record.get("note"):
        parts.append(record["note"])
    return ", ".join(parts)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--appearance", type=click.Choice(["source", "uniform"]), default="source", show_default=True,
              help="Compare colours too (textures, material and vertex colours) or the surface only.")
@click.option("--up-axis", type=click.Choice(["y", "z"]), default=None,
              help="Override each file's up axis (OBJ and glTF are Y-up, others Z-up), as render does.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line.")
@click.option("--annotate", "dataset", type=click.Path(exists=True), default=None, metavar="DATASET",
              help="Add every object's group to DATASET (folder or manifest) as symmetry.json beside the manifest.")
@click.option("--assets", default=None, metavar="SOURCE", help="With --annotate: the --assets spec DATASET was made from "
                                               "(e.g. shapenet:PATH for converted 3DIEBench).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar (with --annotate).")
def symmetry(paths: tuple[str, ...], appearance: str, up_axis: str | None, as_json: bool, dataset: str | None,
             assets: str | None, progress: bool) -> None:
    """Print the rotation group of each mesh file in PATHS (C1, Cn, Dn, T, O, I, Cinf, Dinf or SO3) in the frame
    render uses (up axis turned to +Z, centred, unit bounding-box diagonal), with BOP's symmetries_discrete and
    symmetries_continuous; or, with --annotate DATASET --assets SOURCE, record every object's group beside the
    dataset without rewriting its shards. Exits 2 when no file (or no object) could be used."""
    from pathlib import Path

    if dataset is not None:
        if paths or assets is None:
            raise UsageError("--annotate DATASET takes --assets SOURCE and no mesh paths")
        from orbitset.symmetry.records import annotate

        path, counts = annotate(dataset, assets, appearance=appearance, up_axis=up_axis, progress=progress)
        click.echo(f"wrote {path}: " + ", ".join(f"{group} {count}" for group, count in counts.items()))
        if set(counts) == {"failed"}:
            raise AssetError(f"no object of {dataset} could be analysed; the reasons are in {path}")
        return
    if not paths:
        raise UsageError("give mesh files (or --annotate DATASET --assets SOURCE)")
    from orbitset.datasets.mesh_files import load_mesh_file
    from orbitset.datasets.sources import canonical
    from orbitset.symmetry.records import record_of

    succeeded = 0
    for name in paths:
        try:
            raw = load_mesh_file(Path(name), appearance=appearance, shown=name)
            mesh, _ = canonical(raw.mesh, up_axis or raw.up_axis, True, what=name)
            record = record_of(mesh, appearance, name, raw.info.get("textures_missing", ()))
        except OrbitsetError as exc:
            record = {"group": None, "order": None, "failure": str(exc)}
        succeeded += record.get("group") is not None
        if as_json:
            click.echo(json.dumps({"path": name, **record}, sort_keys=True))
        else:
            click.echo(f"{name}: {_describe(record)}")
    if not succeeded:
        raise AssetError(f"none of the {len(paths)} mesh file(s) could be analysed (reasons above)")


def register(app: click.Group) -> None:
    """Add this part's commands to `app`."""
    app.add_command(symmetry)
