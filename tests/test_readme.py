"""The README's blocks marked ``sh test`` and ``python test`` run, in order, in one folder: its commands stay true."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(sh|python) test\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    return [(match[1], match[2]) for match in BLOCK.finditer((ROOT / "README.md").read_text(encoding="utf-8"))]


def test_readme_has_readme_blocks_for_each_job():
    blocks = readme_blocks()
    commands = " ".join(text for kind, text in blocks if kind == "sh")
    for command in ("render", "verify", "show", "stats", "download", "train", "eval", "report", "card", "--pairs"):
        assert f"orbitset {command}" in commands or command in commands, command
    assert any(kind == "python" and "PairLoader" in text for kind, text in blocks)


def test_readme_commands_run(tmp_path):
    """A 12-object dataset is rendered, checked, drawn, copied, trained on, evaluated and published, as the README says."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "orbitset"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m orbitset "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    for kind, text in readme_blocks():
        command = ["bash", "-euo", "pipefail", "-c", text] if kind == "sh" else [sys.executable, "-c", text]
        result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"README block failed:\n{text}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    for made in ("my-data/manifest.json", "sheet.png", "stats.png", "my-copy/manifest.json", "runs/sie/eval/classify.json",
                 "runs/seq/eval/aggregate.json", "results.md", "my-data/README.md", "my-data/croissant.json", "pairs.png"):
        assert (work / made).is_file(), made
