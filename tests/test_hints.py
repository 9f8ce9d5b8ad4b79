"""Every command the CLI prints as a hint ('orbitset ...' in a message, a help text or the demo's page) works as
printed: the hints are found in the source, each is parsed as printed (no "Missing option") and run, with its
placeholders filled in and, where a full run would take long, options that only make it smaller."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import click
import pytest

from orbitset.cli import app, main
from orbitset.datasets import registry
from orbitset.datasets.sie_synthetic import write_sie_archive, write_sie_tree
from orbitset.errors import DownloadError, OrbitsetError
from orbitset.manifests.model import load_manifest
from orbitset.manifests.verify import verify_dataset
from orbitset.testing import write_synthetic_dataset

from .manifests.faulty_server import FaultyServer

PACKAGE = Path(__file__).resolve().parents[1] / "orbitset"
QUOTED = re.compile(r"['`](orbitset [^'`]+)['`]")
TINY_TRAIN = ("--backbone", "small", "--size", "16", "--epochs", "0")


def _template(node: ast.AST) -> str:
    """A string constant, or an f-string with each replacement field written back as ``{expression}``."""
    if isinstance(node, ast.Constant):
        return node.value
    return "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}" for v in node.values)


def printed_hints() -> set[str]:
    """Every quoted 'orbitset ...' of the package's strings that reach a user: messages, option help, command help
    (the docstrings of click commands) and generated pages; other docstrings are for readers of the code."""
    hints = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
                first = node.body[0]
                is_command = any("command" in ast.unparse(d) or "group" in ast.unparse(d)
                                 for d in getattr(node, "decorator_list", []))
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and not is_command:
                    skipped.add(id(first.value))
            if isinstance(node, ast.JoinedStr):
                skipped.update(id(v) for v in node.values)
        for node in ast.walk(tree):
            text = isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))
            if text and id(node) not in skipped:
                hints.update(QUOTED.findall(" ".join(_template(node).split())))
    return hints


def argv_of(hint: str, values: dict[str, str]) -> list[str]:
    """The hint's arguments (after 'orbitset') with its placeholders replaced by `values`."""
    return [values.get(word, word) for word in hint.split()[1:]]


def check_parses(argv: list[str]) -> None:
    """Parse `argv` as the CLI would, without running the command: a missing option or argument raises."""
    with app.make_context("orbitset", list(argv), resilient_parsing=False) as ctx:
        name, command, rest = app.resolve_command(ctx, list(argv))
        command.make_context(name, rest, parent=ctx).close()


def run_hint(hint: str, values: dict[str, str] | None = None, smaller: tuple[str, ...] = ()) -> None:
    argv = argv_of(hint, values or {})
    if "--help" not in argv:
        check_parses(argv)
    assert main([*argv, *smaller]) == 0, hint


# hint -> the test that runs it (below, or FILE::TEST)
HINTS = {
    "orbitset download --list": "test_help_and_list_hints",
    "orbitset download --help": "test_help_and_list_hints",
    "orbitset render --help": "test_help_and_list_hints",
    "orbitset render --out DIR": "test_render_out_alone_renders_the_default_dataset_that_the_list_describes",
    "orbitset demo": "tests/test_demo.py::test_demo_without_training",
    "orbitset card DATASET": "test_dataset_hints",
    "orbitset download SOURCE --out {self.directory}": "test_dataset_hints",
    "orbitset download {entry.name} --out DIR": "test_download_hint_of_a_converted_dataset",
    "orbitset train METHOD --data DATASET --out {run}": "test_model_hints",
    "orbitset train METHOD --data DATASET --out {path.parent}": "test_model_hints",
    "orbitset eval TASK --run {run}": "test_model_hints",
    "orbitset index DIR": "tests/loaders/test_index.py::test_orbitset_index_adds_the_index_files_to_an_old_dataset",
    "orbitset index {path.parent}":
        "tests/loaders/test_index.py::test_an_index_that_does_not_match_its_shard_is_named_with_its_fix",
    "orbitset symmetry --annotate DATASET --assets SOURCE":
        "tests/test_symmetry_datasets.py::test_annotate_adds_groups_to_a_converted_dataset_without_touching_shards",
}


def test_every_printed_hint_is_run_here():
    assert printed_hints() == set(HINTS)
    for test in HINTS.values():
        file, _, name = test.rpartition("::")
        assert f"def {name}(" in (PACKAGE.parent / file).read_text() if file else name in globals(), test


def test_help_and_list_hints(capsys):
    for hint in ("orbitset download --list", "orbitset download --help", "orbitset render --help"):
        run_hint(hint)
    assert "default: " in capsys.readouterr().out


def test_render_out_alone_renders_the_default_dataset_that_the_list_describes(tmp_path: Path, monkeypatch):
    from orbitset.datasets.mesh_sources import open_source
    from orbitset.render.recipes import get_recipe

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    entry = registry.datasets()["default"]
    with pytest.raises(DownloadError, match="'orbitset render --out DIR'"):
        registry.manifest_urls("default")
    argv = argv_of("orbitset render --out DIR", {"DIR": str(tmp_path / "default")})
    with app.make_context("orbitset", list(argv)) as ctx:
        name, command, rest = app.resolve_command(ctx, list(argv))
        params = command.make_context(name, rest, parent=ctx).params
    recipe, source = get_recipe(params["recipe"]), open_source(params["assets"])
    objects = source.objects()
    classes = sorted({ref.class_name for ref in objects})
    assert params["objects"] is None and params["views"] is None and params["size"] is None, "all objects, the recipe's"
    assert recipe.name == "3diebench"
    assert (f"the {len(objects):,} procedural objects ({len(classes)} classes x {len(objects) // len(classes)}) "
            f"rendered under the 3DIEBench recipe, {recipe.views} views each at {recipe.size} px") in entry.description
    run_hint("orbitset render --out DIR", {"DIR": str(tmp_path / "default")},
             ("--objects", "2", "--views", "2", "--size", "32", "--no-progress"))
    manifest = load_manifest(tmp_path / "default")
    assert manifest.totals()["objects"] == 2 and manifest.recipe["name"] == "3diebench"
    assert manifest.classes == classes[: len(manifest.classes)] and manifest.failures == []


def test_dataset_hints(tmp_path: Path):
    source = tmp_path / "source"
    write_synthetic_dataset(source, classes=2, objects_per_class=2, views=2, size=16)
    run_hint("orbitset card DATASET", {"DATASET": str(source)})
    assert (source / "README.md").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(source, copy)
    shard = sorted(copy.glob("*.tar"))[0]
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    report = verify_dataset(copy)
    with pytest.raises(OrbitsetError, match=re.escape(f"'orbitset download SOURCE --out {copy}'")):
        report.raise_for_problems()
    run_hint("orbitset download SOURCE --out {self.directory}", {"SOURCE": str(source), "{self.directory}": str(copy)})
    assert verify_dataset(copy).ok


def test_download_hint_of_a_converted_dataset(tmp_path: Path, monkeypatch):
    """A registered source converted on download, served on 127.0.0.1, in the published layout (50 views)."""
    write_sie_tree(tmp_path / "tree", tmp_path / "served" / "data", objects_per_synset=1, views=50)
    write_sie_archive(tmp_path / "tree", tmp_path / "served" / "archive.tar.gz")
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    with FaultyServer(tmp_path / "served") as server:
        splits = tuple(registry.SplitFile(p.name, f"{server.url}/data/{p.name}")
                       for p in sorted((tmp_path / "served" / "data").iterdir()))
        registry.register(registry.DatasetEntry("served", source=f"{server.url}/archive.tar.gz", layout="3diebench",
                                                splits=splits))
        with pytest.raises(DownloadError, match="'orbitset download served --out DIR'"):
            registry.manifest_urls("served")
        run_hint("orbitset download {entry.name} --out DIR", {"{entry.name}": "served", "DIR": str(tmp_path / "ds")})
    assert load_manifest(tmp_path / "ds").totals()["objects"] == 3


def test_model_hints(tmp_path: Path, capsys):
    data = tmp_path / "data"
    write_synthetic_dataset(data, classes=2, objects_per_class=4, views=3, size=16)
    values = {"METHOD": "sie", "DATASET": str(data), "TASK": "classify"}
    run = tmp_path / "run"
    assert main(["eval", "classify", "--run", str(tmp_path)]) == 2
    assert f"'orbitset train METHOD --data DATASET --out {tmp_path}'" in capsys.readouterr().err
    run_hint("orbitset train METHOD --data DATASET --out {run}", {**values, "{run}": str(run)}, TINY_TRAIN)
    (run / "checkpoint.pt").rename(tmp_path / "moved.pt")
    assert main(["eval", "classify", "--run", str(run)]) == 2
    assert f"'orbitset train METHOD --data DATASET --out {run}'" in capsys.readouterr().err
    run_hint("orbitset train METHOD --data DATASET --out {path.parent}", {**values, "{path.parent}": str(run)},
             TINY_TRAIN)
    assert main(["report", str(run), "--out", str(tmp_path / "results.md")]) == 2
    assert f"`orbitset eval TASK --run {run}`" in capsys.readouterr().err
    run_hint("orbitset eval TASK --run {run}", {**values, "{run}": str(run)}, ("--probe-epochs", "2"))
    assert (run / "eval" / "classify.json").is_file()
