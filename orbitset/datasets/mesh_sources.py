"""Asset sources for mesh collections on disk, and `open_source`, which turns an ``--assets`` spec into a source.

Layouts (every class name and object id is made a valid sample-key part with `key_part`):

- ``shapenet:PATH`` -- ShapeNetCore v2, ``SYNSET/ID/models/model_normalized.obj``. The class name is the synset id,
  or the first name of the synset in ``taxonomy.json`` when that file is in PATH. Classes are ordered by synset id,
  so a class index is the position of its synset in the sorted list of synsets of the tree (3DIEBench's labels).
  Meshes are centred but not rescaled (ShapeNet is already normalised). When PATH holds 3DIEBench's split files
  (``train_images.npy`` / ``val_images.npy``, entries like ``/02691156/<id>/``) only the objects they list are used,
  with their split.
- ``modelnet:PATH`` -- ModelNet40, ``CLASS/train|test/*.off``; the split is the folder (``test`` is reported as
  ``val``, orbitset's held-out split).
- ``objaverse:PATH`` -- a folder of ``UID.glb`` / ``.gltf`` files at any depth (the download's ``000-000/``
  sub-folders mean nothing); every object is keyed by its uid. The class comes from a categories file (``categories``
  in `open_source`, ``--categories`` on the command line): JSON ``{uid: category}`` or ``{category: [uid, ...]}``
  (the LVIS annotations' form), or CSV rows ``uid,category``; objects it does not list are left out, with a
  warning. Without one, every object is in class ``objaverse``, with a warning.
- ``folder:PATH`` -- any folder of meshes (obj, off, ply, stl, glb, gltf); class = first sub-folder, the folder's
  own name for files directly in PATH.

File sources list the files they found in mesh formats they do not read (`FileSource.unsupported`, paths relative to
the root), and what the user should know about the listing (`FileSource.warnings`).
- ``procedural`` / ``procedural:N`` -- the embedded procedural objects (N instances per class, default 100).
- ``procedural-symmetric`` / ``procedural-symmetric:N`` -- objects of known rotation group (N per class, default 6;
  `orbitset.datasets.symmetric`).

Files are read by `orbitset.datasets.mesh_files.load_mesh_file` (appearance, up axis by format); any failure is an
`AssetError` naming the file relative to the source root.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orbitset.datasets.mesh_files import MESH_SUFFIXES, load_mesh_file
from orbitset.datasets.sources import AssetRef, AssetSource, RawAsset, key_part
from orbitset.errors import AssetError

GLTF_SUFFIXES = (".glb", ".gltf")
SPEC_FORMS = ("procedural", "procedural:N", "procedural-symmetric[:N]", "shapenet:PATH", "modelnet:PATH", "objaverse:PATH", "folder:PATH")
SHAPENET_MODEL = Path("models") / "model_normalized.obj"
SHAPENET_SPLIT_FILES = {"train": "train_images.npy", "val": "val_images.npy"}


#: Mesh formats orbitset does not read; files in them are listed as unsupported, not silently skipped.
OTHER_MESH_SUFFIXES = (
    ".dae", ".fbx", ".3ds", ".blend", ".usd", ".usda", ".usdc", ".usdz", ".x3d", ".wrl", ".vrml", ".3mf", ".dxf",
    ".step", ".stp", ".iges", ".igs", ".ifc", ".abc", ".lwo", ".x", ".ase", ".vtk", ".vtp", ".xaml", ".amf",
)


def open_source(spec: str, categories: str | Path | None = None) -> AssetSource:
    """The asset source an ``--assets`` spec names (see the module docstring for the forms); `categories` is the
    categories file of an ``objaverse:`` source."""
    kind, _, argument = spec.partition(":")
    if categories is not None and kind != "objaverse":
        raise AssetError(f"--categories is for objaverse: assets; {spec!r} takes its classes from its own layout")
    if kind == "objaverse" and argument:
        return ObjaverseSource(argument, categories=categories)
    if kind == "procedural-symmetric":
        from orbitset.datasets.symmetric import SymmetricSource

        if argument and (not argument.isdigit() or int(argument) < 1):
            raise AssetError(f"--assets {spec!r}: N in 'procedural-symmetric:N' must be a positive integer")
        return SymmetricSource(int(argument)) if argument else SymmetricSource()
    if kind == "procedural":
        from orbitset.datasets.procedural import ProceduralSource

        if not argument:
            return ProceduralSource()
        if not argument.isdigit() or int(argument) < 1:
            raise AssetError(f"--assets {spec!r}: N in 'procedural:N' must be a positive integer (instances per class)")
        return ProceduralSource(instances_per_class=int(argument))
    sources = {"shapenet": ShapeNetSource, "modelnet": ModelNetSource, "folder": FolderSource}
    if kind not in sources or not argument:
        raise AssetError(f"unknown asset spec {spec!r}; use one of: {', '.join(SPEC_FORMS)}")
    return sources[kind](argument)


class FileSource(AssetSource):
    """A source whose objects are mesh files under `root`. Subclasses implement `_scan` -> (ref, file, split)."""

    #: What the layout looks like, for the "no objects found" message.
    layout: str = "mesh files"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise AssetError(f"{self.name} assets: {self.root} is not a directory; pass the folder that holds the collection")
        self._files: dict[AssetRef, Path] = {}
        self._splits: dict[AssetRef, str | None] = {}
        #: Files under the root in mesh formats this source does not read (relative paths).
        self.unsupported: list[str] = []
        #: What the user should know about the listing (objects left out, classes guessed).
        self.warnings: list[str] = []
        by_key: dict[str, Path] = {}
        for ref, path, split in self._scan():
            if ref.key in by_key:
                raise AssetError(
                    f"{self.name} assets: {by_key[ref.key]} and {path} both map to sample key {ref.key!r}; rename one of them"
                )
            by_key[ref.key] = path
            self._files[ref] = path
            self._splits[ref] = split
        if not self._files:
            raise AssetError(f"{self.name} assets: no objects found under {self.root}; expected {self.layout}")
        self._objects = sorted(self._files, key=lambda ref: (ref.class_name, ref.object_id))

    def _scan(self) -> list[tuple[AssetRef, Path, str | None]]:
        raise NotImplementedError

    def objects(self) -> list[AssetRef]:
        return list(self._objects)

    def path_of(self, ref: AssetRef) -> Path:
        """The mesh file of `ref`."""
        try:
            return self._files[ref]
        except KeyError:
            raise AssetError(f"{self.name} assets: {ref.key!r} is not an object of {self.root}") from None

    def split_of(self, ref: AssetRef) -> str | None:
        """The split the layout assigns to `ref` ('train' or 'val'), or None when the layout defines none."""
        self.path_of(ref)
        return self._splits[ref]

    def load_raw(self, ref: AssetRef, appearance: str = "source") -> RawAsset:
        path = self.path_of(ref)
        return load_mesh_file(path, appearance, shown=path.relative_to(self.root).as_posix())


class FolderSource(FileSource):
    """Any folder of meshes: class = first sub-folder (the folder's own name for files directly in it)."""

    name = "folder"
    suffixes: tuple[str, ...] = MESH_SUFFIXES
    layout = "CLASS/NAME.{obj,off,ply,stl,glb,gltf} files"

    def _mesh_files(self) -> list[Path]:
        """Files under the root in this source's formats, sorted; files in other mesh formats go to `unsupported`."""
        found = []
        for path in sorted(self.root.rglob("*")):
            suffix = path.suffix.lower()
            if not path.is_file():
                continue
            if suffix in self.suffixes:
                found.append(path)
            elif suffix in MESH_SUFFIXES + OTHER_MESH_SUFFIXES:
                self.unsupported.append(path.relative_to(self.root).as_posix())
        return found

    def _scan(self) -> list[tuple[AssetRef, Path, str | None]]:
        found = []
        for path in self._mesh_files():
            relative = path.relative_to(self.root)
            class_name = key_part(relative.parts[0]) if len(relative.parts) > 1 else key_part(self.root.resolve().name)
            inner = relative.parts[1:] if len(relative.parts) > 1 else relative.parts
            object_id = key_part("/".join(inner)[: -len(path.suffix)])
            found.append((AssetRef(class_name, object_id, relative.as_posix()), path, None))
        return found


class ObjaverseSource(FolderSource):
    """Objaverse GLB/glTF files keyed by uid, classes from a categories file (see the module docstring)."""

    name = "objaverse"
    suffixes = GLTF_SUFFIXES
    layout = "UID.glb files (at any depth)"
    default_class = "objaverse"

    def __init__(self, root: str | Path, categories: str | Path | None = None) -> None:
        self._categories = read_categories(Path(categories).expanduser()) if categories is not None else None
        super().__init__(root)

    def _scan(self) -> list[tuple[AssetRef, Path, str | None]]:
        found, unlisted = [], []
        for path in self._mesh_files():
            uid = path.stem
            if self._categories is None:
                category = self.default_class
            elif uid in self._categories:
                category = self._categories[uid]
            else:
                unlisted.append(uid)
                continue
            found.append((AssetRef(key_part(category), key_part(uid), path.relative_to(self.root).as_posix()), path, None))
        if self._categories is None:
            self.warnings.append(
                f"objaverse assets: no categories file, so all objects are in one class {self.default_class!r}; pass "
                "--categories FILE (JSON or CSV uid -> category, e.g. the LVIS annotations) for real classes"
            )
        elif unlisted:
            self.warnings.append(
                f"objaverse assets: {len(unlisted)} objects have no category in the categories file and are left out "
                f"(e.g. {', '.join(unlisted[:3])})"
            )
        return found


def read_categories(path: Path) -> dict[str, str]:
    """uid -> category from a JSON (``{uid: category}`` or ``{category: [uids]}``) or CSV (``uid,category`` rows,
    an optional header) file; AssetError naming the file when it is neither."""
    import csv

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AssetError(f"categories file {path}: cannot read it ({exc})") from exc
    expected = "expected JSON {uid: category} or {category: [uid, ...]}, or CSV rows 'uid,category'"
    if path.suffix.lower() == ".csv":
        rows = [row for row in csv.reader(text.splitlines()) if row and any(cell.strip() for cell in row)]
        if rows and [cell.strip().lower() for cell in rows[0][:2]] in (["uid", "category"], ["uid", "class"]):
            rows = rows[1:]
        if not rows or any(len(row) < 2 for row in rows):
            raise AssetError(f"categories file {path}: {expected}")
        return {row[0].strip(): row[1].strip() for row in rows}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssetError(f"categories file {path}: not valid JSON ({exc}); {expected}") from exc
    if isinstance(data, dict) and data and all(isinstance(v, str) for v in data.values()):
        return {str(uid): category for uid, category in data.items()}
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        return {str(uid): str(category) for category, uids in data.items() for uid in uids}
    raise AssetError(f"categories file {path}: {expected}")


class ModelNetSource(FileSource):
    """ModelNet40 (or 10): ``CLASS/train|test/NAME.off``; split from the folder, 'test' reported as 'val'."""

    name = "modelnet"
    layout = "CLASS/train/NAME.off and CLASS/test/NAME.off files"
    _SPLITS = {"train": "train", "test": "val"}

    def _scan(self) -> list[tuple[AssetRef, Path, str | None]]:
        found = []
        for path in sorted(self.root.glob("*/*/*")):
            folder = path.parent.name
            if path.suffix.lower() != ".off" or folder not in self._SPLITS or not path.is_file():
                continue
            relative = path.relative_to(self.root)
            ref = AssetRef(key_part(relative.parts[0]), key_part(path.stem), relative.as_posix())
            found.append((ref, path, self._SPLITS[folder]))
        return found


class ShapeNetSource(FileSource):
    """ShapeNetCore v2: ``SYNSET/ID/models/model_normalized.obj``, classes ordered by synset id, not rescaled."""

    name = "shapenet"
    normalise_scale = False
    layout = "SYNSET/ID/models/model_normalized.obj files (8-digit synset folders)"

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        self._synsets = sorted(p.name for p in root.glob("*") if p.is_dir() and p.name.isdigit() and len(p.name) == 8)
        self._class_of_synset = _synset_class_names(root, self._synsets)
        super().__init__(root)

    def _scan(self) -> list[tuple[AssetRef, Path, str | None]]:
        selection = _read_shapenet_splits(self.root)
        if selection is None:
            listed = [
                (synset, model.parent.parent.name, None)
                for synset in self._synsets
                for model in sorted((self.root / synset).glob(f"*/{SHAPENET_MODEL.as_posix()}"))
            ]
        else:
            listed = selection
        found = []
        for synset, object_id, split in listed:
            if synset not in self._class_of_synset:
                raise AssetError(
                    f"shapenet assets: split files in {self.root} list synset {synset} but {self.root / synset} is missing"
                )
            ref = AssetRef(self._class_of_synset[synset], key_part(object_id), f"{synset}/{object_id}")
            found.append((ref, self.root / synset / object_id / SHAPENET_MODEL, split))
        return found

    def classes(self) -> list[str]:
        """Class names in the order of their sorted synset ids (3DIEBench's label = position here)."""
        used = {ref.class_name for ref in self._objects}
        return [self._class_of_synset[s] for s in self._synsets if self._class_of_synset[s] in used]

    def synset_of(self, ref: AssetRef) -> str:
        """The synset id of `ref`."""
        return self.path_of(ref).relative_to(self.root).parts[0]


def _synset_class_names(root: Path, synsets: list[str]) -> dict[str, str]:
    """synset -> class name: the first taxonomy.json name of the synset, else the synset id; duplicates get the id."""
    taxonomy_path = root / "taxonomy.json"
    names: dict[str, str] = {}
    if taxonomy_path.is_file():
        try:
            entries = json.loads(taxonomy_path.read_text())
            names = {e["synsetId"]: key_part(e["name"].split(",")[0]) for e in entries if e.get("synsetId") in synsets}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AssetError(
                f"{taxonomy_path}: not a ShapeNet taxonomy (a JSON list of {{'synsetId', 'name'}} entries): {exc}; "
                "fix or remove it to name classes by synset id"
            ) from exc
    chosen = {synset: names.get(synset, synset) for synset in synsets}
    counts: dict[str, int] = {}
    for name in chosen.values():
        counts[name] = counts.get(name, 0) + 1
    return {synset: (name if counts[name] == 1 else f"{name}-{synset}") for synset, name in chosen.items()}


def _read_shapenet_splits(root: Path) -> list[tuple[str, str, str]] | None:
    """(synset, object id, split) from 3DIEBench's split files in `root`, or None when there are none."""
    present = {split: root / name for split, name in SHAPENET_SPLIT_FILES.items() if (root / name).is_file()}
    if not present:
        return None
    listed = []
    for split, path in present.items():
        try:
            entries = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise AssetError(
                f"{path}: cannot read the split file without unpickling ({exc}); orbitset never unpickles files. "
                "Convert it once in a trusted session: np.save(path, np.load(path, allow_pickle=True).astype(str))"
            ) from exc
        if entries.dtype.kind not in "US" or entries.ndim != 1:
            raise AssetError(f"{path}: expected a 1-d array of strings like '/02691156/<id>/', got {entries.dtype} {entries.shape}")
        for entry in entries.tolist():
            text = entry.decode() if isinstance(entry, bytes) else entry
            parts = [p for p in text.split("/") if p]
            if len(parts) != 2:
                raise AssetError(f"{path}: entry {text!r} is not of the form '/SYNSET/ID/'")
            listed.append((parts[0], parts[1], split))
    return listed
