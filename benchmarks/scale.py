"""orbitset at 3DIEBench's size: the commands' times and peak memory, and the loaders' start-up and memory.

Writes once, cached, a synthetic dataset of 3DIEBench's size (`orbitset.testing.write_synthetic_dataset`: 55 classes x
954 objects = 52,470 objects, 50 views of 32 px, 100 objects per shard, a fifth of each class in ``val``: 526 shards),
then prints in one run, each figure from its own function:

- the dataset's generation time and peak memory (when this run wrote it);
- ``orbitset stats``, ``card`` and ``verify`` time and peak memory, each run as its own process;
- ``orbitset convert`` of a 3DIEBench-layout archive at two sizes (``--convert-objects``), with the ratio of the
  peak memories (target: the larger within 1.2x of the smaller: memory flat in the number of objects);
- the loaders: construction time, time to the first batch, pairs/s, RSS and PSS of the main process and of each
  worker for 0 and 2 workers; 4 ranks under torch.distributed (gloo); DALI's webdataset reader with and without
  ``.idx`` files (when the ``dali`` extra is installed); loopback HTTP with ``cache_limit`` at a quarter of the
  dataset. Figures whose feature this checkout lacks print "n/a (needs ...)".

Peak memory is the peak RSS (VmHWM) of the process that ran the command, read from the kernel when it exits.

Usage: python benchmarks/scale.py [--data DIR] [--objects 52470] [--views 50] [--size 32]
       [--convert-objects 550 5280] [--only stats,card,...] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLASSES = 55
OBJECTS_PER_SHARD = 100
VAL_FRACTION = 0.2


@dataclass
class Run:
    """One measured child process: wall seconds, peak RSS in MB, exit status and its output."""

    seconds: float
    peak_mb: float
    status: int
    stdout: str
    stderr: str

    def figure(self) -> str:
        failed = "" if self.status == 0 else f"  (exit {self.status}: {self.stderr.strip().splitlines()[-1:]})"
        return f"{self.seconds:8.1f} s  peak {self.peak_mb:7.0f} MB{failed}"


def run_measured(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run `command` as a child process: its wall time and its own peak RSS (ru_maxrss from wait4; stderr, where
    progress goes, is kept in a file and only its last lines read)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(seconds, usage.ru_maxrss / 1024, child.returncode, out.read(), err.read()[-4000:])


def python(code: str) -> list[str]:
    """The command that runs `code` in this interpreter (niced, one BLAS thread: the machine is shared)."""
    return ["nice", "-n", "10", sys.executable, "-c", code]


def orbitset_command(*arguments: str) -> list[str]:
    return ["nice", "-n", "10", sys.executable, "-m", "orbitset", *arguments]


def dataset_shape(objects: int) -> tuple[int, int]:
    """(classes, objects per class) of a synthetic dataset of about `objects` objects (55 classes as 3DIEBench)."""
    classes = min(CLASSES, objects)
    return classes, max(1, objects // classes)


def ensure_dataset(data: Path, objects: int, views: int, size: int) -> tuple[Path, Run | None]:
    """The cached synthetic dataset (written now, in a child process that is measured, when missing) and that run."""
    classes, per_class = dataset_shape(objects)
    folder = data / f"synthetic-{classes}x{per_class}-{views}v-{size}px"
    if (folder / "manifest.json").exists():
        return folder, None
    code = ("from orbitset.testing import write_synthetic_dataset as w; "
            f"w({str(folder)!r}, classes={classes}, objects_per_class={per_class}, views={views}, size={size}, "
            f"objects_per_shard={OBJECTS_PER_SHARD}, val_fraction={VAL_FRACTION}, name='scale', progress=True)")
    run = run_measured(python(code), env={"OMP_NUM_THREADS": "1"})
    if run.status != 0:
        raise SystemExit(f"writing {folder} failed: {run.stderr.strip().splitlines()[-1:]}")
    (folder / "generation.json").write_text(json.dumps({"seconds": run.seconds, "peak_mb": run.peak_mb}))
    return folder, run
