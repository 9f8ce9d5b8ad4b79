"""The dataset card: ``README.md`` beside the manifest, in the Hugging Face form (YAML header, then Markdown).

The header carries the licence, task and size categories and ``configs`` whose ``data_files`` point at each split's
shards, so that ``datasets.load_dataset(FOLDER_OR_REPO)`` reads the shards as they are. The body says what a sample
holds, the recipe with its factor table (ranges and units), class counts per split, failures, the contact sheet,
how to load the data with orbitset, Hugging Face `datasets` and plain `webdataset`, and the 3DIEBench citation when
the recipe derives from it. Every link in it points at a file beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from orbitset.manifests.model import MANIFEST_NAME
from orbitset.publish.croissant import CROISSANT_NAME
from orbitset.publish.facts import CITATION_3DIEBENCH, LICENSE_3DIEBENCH, DatasetFacts, brace_pattern
from orbitset.symmetry.records import SIDECAR_NAME, symmetry_counts

CARD_NAME = "README.md"
CONTACT_SHEET_NAME = "contact_sheet.png"
#: Hugging Face size categories: (upper bound on samples, label).
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))
TASK_CATEGORIES = ["image-feature-extraction", "image-classification"]


def size_category(samples: int) -> str:
    """The Hugging Face size category of a dataset of `samples` rows (objects here)."""
    return next((label for bound, label in SIZE_CATEGORIES if samples < bound), "n>100M")


def default_license(facts: DatasetFacts) -> str:
    """3DIEBench's licence for conversions of its published images; "other" (the publisher decides) otherwise."""
    return LICENSE_3DIEBENCH if facts.converted_original and facts.derives_from_3diebench else "other"


def split_files(facts: DatasetFacts) -> dict[str, list[str]]:
    """Split -> data file patterns relative to the card: ``SPLIT-*.tar`` when it matches exactly that split's shards
    (by their names), else the shard names."""
    out: dict[str, list[str]] = {}
    names = [entry.name for entry in facts.manifest.shards]
    for split, shards in facts.splits.items():
        prefix = f"{split}-"
        matching = [name for name in names if name.startswith(prefix)]
        out[split] = [f"{prefix}*.tar"] if sorted(matching) == sorted(shards) else list(shards)
    return out


def card_header(facts: DatasetFacts, license: str) -> dict[str, Any]:
    """The YAML header of the card (Hugging Face dataset card metadata)."""
    header: dict[str, Any] = {
        "license": license,
        "pretty_name": facts.manifest.name,
        "task_categories": TASK_CATEGORIES,
        "size_categories": [size_category(facts.objects)],
        "tags": ["orbitset", "webdataset", "equivariance", "multi-view", "3d", "synthetic"],
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": split, "path": paths if len(paths) > 1 else paths[0]}
                           for split, paths in split_files(facts).items()],
        }],
    }
    return header


def _shard_spec(names: list[str], folder: str) -> str:
    """Python source of webdataset's shard list: one brace pattern when the names allow it, else the list."""
    pattern = brace_pattern(names)
    if pattern is not None:
        return repr(f"{folder}/{pattern}")
    return repr([f"{folder}/{name}" for name in names])


def _sample_table(facts: DatasetFacts) -> list[str]:
    views, image = facts.views, facts.image_format
    rows = [
        (f"`000.{image}` ... `{views - 1:03d}.{image}`", f"the {views} views, {image.upper()}"),
        ("`latents.npy`", f"({views}, {len(facts.manifest.factors)}) float64: the factors of each view (table below)"),
        ("`rotations.npy`", f"({views}, 3, 3) float64: the object rotation of each view (object frame -> world)"),
        ("`camera.json`", "image size, intrinsics K and extrinsics (OpenCV convention)"),
        ("`meta.json`", "class name and index, factor names and units, renderer, recipe hash, mesh normalisation"),
        ("`cls`", "class index as decimal text"),
    ]
    layers = facts.layers()
    if "mask" in layers:
        rows.append(("`000.mask.png` ...", "8-bit object mask per view (255 = object)"))
    if "depth" in layers:
        rows.append(("`000.depth.png` ...", "16-bit depth per view (value x meta.json `depth_unit` scene units)"))
    if "points" in layers:
        rows.append(("`points.npy`", "(N, 6) float32: surface points and unit normals in the canonical object frame"))
    if "translations" in layers:
        rows.append(("`translations.npy`", f"({views}, 3) float64: object translation of each view"))
    return ["| member | content |", "|---|---|", *(f"| {member} | {content} |" for member, content in rows)]


def _factor_table(facts: DatasetFacts) -> list[str]:
    lines = ["| column | factor | unit | range |", "|---|---|---|---|"]
    for column, factor in enumerate(facts.manifest.factors):
        span = f"[{factor.low:.4g}, {factor.high:.4g}]" if factor.low is not None and factor.high is not None else "recorded"
        lines.append(f"| {column} | `{factor.name}` | {factor.unit} | {span} |")
    return lines


def _class_table(facts: DatasetFacts) -> list[str]:
    splits = list(facts.splits)
    lines = ["| class | " + " | ".join(splits) + " | total |", "|---|" + "---|" * (len(splits) + 1)]
    for name in facts.manifest.classes:
        counts = [facts.counts.get((split, name), 0) for split in splits]
        if sum(counts):
            lines.append(f"| {name} | " + " | ".join(map(str, counts)) + f" | {sum(counts)} |")
    totals = [sum(c for (s, _), c in facts.counts.items() if s == split) for split in splits]
    lines.append("| **all** | " + " | ".join(map(str, totals)) + f" | {sum(totals)} |")
    return lines


def _recipe_lines(facts: DatasetFacts) -> list[str]:
    manifest = facts.manifest
    recipe = manifest.recipe
    if facts.converted_original:
        return [f"Converted from the published `{recipe.get('converter')}` images by orbitset "
                f"{manifest.software.get('orbitset', '')}; latents and splits as published."]
    lines = [
        f"- recipe `{recipe.get('name', manifest.name)}` (sha256 `{manifest.recipe_hash or 'not recorded'}`), seed {manifest.seed}",
        f"- renderer: {manifest.software.get('renderer', 'not recorded')}; meshes: `{manifest.extra.get('assets', 'not recorded')}`",
        f"- {facts.views} views per object, {recipe.get('size', '?')} px {recipe.get('image_format', facts.image_format)} images",
    ]
    noted = manifest.extra.get("appearance_notes") or {}
    if noted.get("objects"):
        features = ", ".join(f"{feature} {count}" for feature, count in noted.get("features", {}).items())
        lines.append(f"- {noted['objects']} objects have material features that the other render backend draws "
                     f"differently ({features}); each one's meta.json says how in `appearance_notes`")
    return lines


def _symmetry_lines(facts: DatasetFacts) -> list[str]:
    """The "Symmetry" section: objects per rotation group (`orbitset.symmetry`), when recorded."""
    counts = symmetry_counts(facts.root, facts.manifest)
    if not counts:
        return []
    return ["## Symmetry", "", f"Objects per proper rotation group of their surface and colours (every object's group "
            f"and its symmetries in BOP's form are in [`{SIDECAR_NAME}`]({SIDECAR_NAME}) and its meta.json):", "",
            "| group | objects |", "|---|---|", *(f"| {group} | {count} |" for group, count in counts.items()), ""]


def card_text(facts: DatasetFacts, license: str | None = None, contact_sheet: bool = True) -> str:
    """The card's full text (header and body); `contact_sheet` links ``contact_sheet.png`` beside the card."""
    manifest = facts.manifest
    license = license or default_license(facts)
    totals = manifest.totals()
    header = yaml.safe_dump(card_header(facts, license), sort_keys=False, default_flow_style=False)
    splits = facts.splits
    first_split = "train" if "train" in splits else next(iter(splits))
    data_files = {split: paths if len(paths) > 1 else paths[0] for split, paths in split_files(facts).items()}
    body = [
        f"# {manifest.name}",
        "",
        f"{totals['objects']} objects of {len(manifest.classes)} classes, each seen in {facts.views} views under known "
        f"transformations ({', '.join(f'`{f.name}`' for f in manifest.factors)}): {totals['views']} images in "
        f"{totals['shards']} WebDataset tar shards ({totals['bytes'] / 1e6:.1f} MB). A sample is one object with all "
        "its views; pairs of its views, with their exact relative rotation, train invariant and equivariant "
        "representations. Made with orbitset.",
        "",
    ]
    if contact_sheet:
        body += [f"![Contact sheet: one row per object, its views left to right]({CONTACT_SHEET_NAME})", ""]
    body += ["## What a sample holds", "", "Members of each sample, named `<key>.<member>` with key `<class>__<object>`:", "",
             *_sample_table(facts), "", "## Recipe", "", *_recipe_lines(facts), "", "### Factors (columns of `latents.npy`)",
             "", *_factor_table(facts), "", "Each factor is drawn independently and uniformly per view from its range.", "",
             "## Classes per split", "", *_class_table(facts), "", *_symmetry_lines(facts), "## Failures", ""]
    if manifest.failures:
        body += [f"{len(manifest.failures)} object(s) could not be produced and are absent:", "",
                 *(f"- `{f.object}`: {f.reason}" for f in manifest.failures), ""]
    else:
        body += ["None: every object of the recipe was produced.", ""]
    body += [
        "## Loading", "",
        "With orbitset (pairs of views with their relative rotation; `ViewLoader` and `PointLoader` likewise):", "",
        "```python", "from orbitset.loaders import PairLoader", "",
        f'loader = PairLoader("path/to/this/folder", batch_size=32, split="{first_split}")',
        'for batch in loader:  # view_a, view_b, rel_rotation, rel_latents, label, ...', "    ...", "```", "",
        "With Hugging Face `datasets` (one row per object; images decoded as PIL, arrays as lists):", "",
        "```python", "from datasets import load_dataset", "",
        f'rows = load_dataset("webdataset", data_dir="path/to/this/folder", data_files={data_files!r})',
        f'rows["{first_split}"][0]["000.{facts.image_format}"], rows["{first_split}"][0]["latents.npy"]', "```", "",
        "With plain `webdataset`:", "",
        "```python", "import webdataset as wds", "",
        f'samples = wds.WebDataset({_shard_spec(splits[first_split], "path/to/this/folder")}, shardshuffle=False).decode("rgb8")',
        "```", "",
        f"Files beside this card: [`{MANIFEST_NAME}`]({MANIFEST_NAME}) (shard sizes and sha256, recipe, failures) and "
        f"[`{CROISSANT_NAME}`]({CROISSANT_NAME}) (Croissant 1.1 metadata).", "",
        "## Licence", "",
        f"`{license}`" + (" (the publisher of this dataset sets it: the licence of the meshes rendered applies)."
                          if license == "other" else "."), "",
    ]
    if facts.derives_from_3diebench:
        body += ["## Citation", "", "The recipe derives from 3DIEBench; please cite:", "", "```bibtex",
                 CITATION_3DIEBENCH, "```", ""]
    return f"---\n{header}---\n\n" + "\n".join(body)


def write_card(facts: DatasetFacts, license: str | None = None, contact_sheet: bool = True,
               out: str | os.PathLike | None = None) -> Path:
    """Write the card (``README.md`` beside the manifest, or `out`); with `contact_sheet`, first draw
    ``contact_sheet.png`` beside it when it is missing. Returns the card's path."""
    path = Path(out) if out is not None else facts.root / CARD_NAME
    if contact_sheet and not (path.parent / CONTACT_SHEET_NAME).exists():
        from orbitset.show import contact_sheet as draw

        draw(facts.root, path.parent / CONTACT_SHEET_NAME)
    text = card_text(facts, license, contact_sheet)
    partial = path.with_name("." + path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path
