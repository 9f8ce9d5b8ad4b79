"""The console script: help, version, and one-line errors with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orbitset.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orbitset", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "Usage: orbitset" in result.stdout and "version" in result.stdout


def test_no_arguments_shows_help():
    result = run_cli()
    assert result.returncode == 0 and "Usage: orbitset" in result.stdout


def test_version_prints_versions(capsys):
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert "orbitset 0.1.0" in out and "torch" in out


@pytest.mark.parametrize("args", [["no-such-command"], ["version", "--no-such-option"]])
def test_bad_arguments_print_one_line_and_exit_2(args):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error" in lines[0] and "--help" in lines[0]
    assert "Traceback" not in result.stderr


def test_each_part_registers_its_own_commands():
    from orbitset.cli import app

    owners = {name: command.callback.__module__ for name, command in app.commands.items() if command.callback is not None}
    assert owners["convert"] == "orbitset.datasets.commands"
    assert {c.callback.__module__ for c in app.commands["export"].commands.values()} == {"orbitset.datasets.commands"}
    assert {owners[n] for n in ("verify", "stats")} == {"orbitset.manifests.commands"}
    assert owners["render"] == "orbitset.render.commands"
    assert "convert" not in __import__("orbitset.manifests.commands", fromlist=["x"]).__dict__


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from orbitset.testing import write_synthetic_dataset

    out = tmp_path_factory.mktemp("tiny")
    write_synthetic_dataset(out, classes=2, objects_per_class=2, views=2, size=16)
    return out


@pytest.mark.parametrize("args, names", [
    (["show", "{data}", "--objects", "0"], "objects"),
    (["show", "{data}", "--tile", "3"], "tile"),
    (["show", "{data}", "--split", "test"], "no split 'test'"),
    (["train", "sie", "--data", "{data}", "--out", "{tmp}/run", "--size", "0", "--epochs", "1"], "size"),
])
def test_library_errors_from_bad_arguments_are_one_line_with_exit_2(args, names, tiny_dataset, tmp_path):
    result = run_cli(*[a.format(data=tiny_dataset, tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orbitset: error:") and names in lines[0], result.stderr
