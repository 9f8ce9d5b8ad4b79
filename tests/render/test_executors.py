"""Local executor robustness: workers that never start, and renders after Blender was loaded in this process."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orbitset.errors import RenderError
from orbitset.render.dataset import render_dataset
from orbitset.render.executors import WorkerLimits


def test_a_worker_that_never_starts_stops_the_run_with_an_error(tmp_path):
    started = time.monotonic()
    with pytest.raises(RenderError, match="did not start backend.*within 3 s"):
        render_dataset(
            "3diebench", "procedural:1", tmp_path, backend="tests.render.helpers:NeverStartsBackend", objects=1, views=1,
            size=16, layers=(), progress=False, limits=WorkerLimits(startup_timeout=3),
        )
    assert time.monotonic() - started < 60
    assert not list(tmp_path.glob("*.tar")), "nothing was written"


@pytest.mark.blender
def test_blender_renders_from_a_process_that_already_loaded_bpy(tmp_path):
    """Forking after bpy is loaded deadlocks Blender in the child; the executor must spawn instead."""
    code = (
        "import bpy, sys\n"
        "from orbitset.render.dataset import render_dataset\n"
        "from orbitset.render.executors import WorkerLimits, worker_start_method\n"
        "assert worker_start_method() == 'spawn'\n"
        f"m = render_dataset('3diebench', 'procedural:1', {str(tmp_path)!r}, backend='blender', preset='fast', objects=1,"
        " views=1, size=16, layers=(), progress=False, limits=WorkerLimits(startup_timeout=120, timeout=120))\n"
        "print(m.totals()['views'], len(m.failures))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["1", "0"]
