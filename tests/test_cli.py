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
