"""Conversion throughput of a 3DIEBench-layout gzip tar against `tar -tzf` reading the same archive.

Writes a synthetic tree in the exact published layout (`orbitset.datasets.sie_synthetic`: 256 px JPEGs of about
6 KB, the published archive's mean file size, with a texture so that gzip cannot shrink them; 7-float latents) and
its gzip tar, then times on the same machine, interleaved, best of --repeats:

1. ``tar -tzf ARCHIVE > /dev/null``: decompress and list every member, the least any reader of the archive does;
2. ``convert_source(ARCHIVE)``: decompress, parse, build and validate every object sample, write the shards (sha256
   while writing) and the manifest, exactly what ``orbitset download 3diebench`` does after the transfer.

then the CPU seconds of the conversion's stages run alone (read the archive, build and encode samples, write shards),
and prints both rates (archive MB/s, files/s), their CPU seconds (user + system, child processes included), and
conversion time / tar time, wall and CPU (target: at most 2). On a shared machine the CPU ratio is the steadier one.

Usage: python benchmarks/convert.py [--objects-per-synset 40] [--views 50] [--repeats 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _tar_seconds(archive: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``tar -tzf`` (tar and its gzip)."""
    started, cpu = time.perf_counter(), _cpu()
    subprocess.run(["tar", "-tzf", str(archive)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, _cpu() - cpu


def _convert_seconds(archive: Path, splits: Path, out: Path, views: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the conversion (this process and its shard-writing process)."""
    from orbitset.datasets.convert import ConvertSettings, convert_source, read_split_dir

    shutil.rmtree(out, ignore_errors=True)
    files = read_split_dir(str(splits))
    started, cpu = time.perf_counter(), _cpu()
    report = convert_source(archive, out, ConvertSettings(views=views, objects_per_shard=64), split_files=files, progress=False)
    seconds = time.perf_counter() - started, _cpu() - cpu
    assert not report.manifest.failures, report.manifest.failures[:3]
    return seconds


def _breakdown(archive: Path, views: int) -> dict[str, float]:
    """CPU seconds of the conversion's three stages run one after the other in this process: reading the archive
    (inflate, parse, group objects), building and encoding the samples, writing the shards."""
    from orbitset.datasets.sie_layout import LAYOUTS, ObjectFiles, build_samples
    from orbitset.datasets.sie_source import open_archive
    from orbitset.shards import write_shard

    cpu = time.process_time()
    objects = list(open_archive(str(archive)).objects)
    read = time.process_time() - cpu
    cpu = time.process_time()
    samples = []
    for start in range(0, len(objects), 64):
        batch = [ObjectFiles(o.synset, o.object_id, 0, o.files) for o in objects[start : start + 64]]
        samples += [sample.encode() for sample in build_samples(LAYOUTS["3diebench"], batch, views)]
    build = time.process_time() - cpu
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as scratch:
        for start in range(0, len(samples), 64):
            write_shard(Path(scratch) / f"s-{start}.tar", samples[start : start + 64])
    return {"read archive": read, "build + encode": build, "write shards": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects-per-synset", type=int, default=40, help="Objects per synset (3 synsets).")
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temporary one).")
    args = parser.parse_args()

    from orbitset import geometry
    from orbitset.datasets.sie_synthetic import write_sie_archive, write_sie_tree

    work = args.work or Path(tempfile.mkdtemp(prefix="orbitset-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    archive = work / "3DIEBench.tar.gz"
    if not archive.exists():
        tree = write_sie_tree(work / "tree", work / "splits", objects_per_synset=args.objects_per_synset,
                              views=args.views, size=256, hues=64, noise=2.0)
        write_sie_archive(tree.root, archive)
        shutil.rmtree(tree.root)
    files = 2 * args.views * 3 * args.objects_per_synset
    size = archive.stat().st_size
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"archive: {archive} ({size / 1e6:.1f} MB, {files:,} files of {3 * args.objects_per_synset} objects)")
    geometry.euler_to_matrix([[0.0, 0.0, 0.0]])  # first use imports roma/torch parts: keep it out of the timing

    tar, convert = [], []
    for _ in range(args.repeats):
        tar.append(_tar_seconds(archive))
        convert.append(_convert_seconds(archive, work / "splits", work / "shards", args.views))
    for label, runs in (("tar -tzf", tar), ("convert", convert)):
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        print(f"{label:>9}: {wall:6.2f} s wall ({size / 1e6 / wall:6.1f} MB/s, {files / wall:7,.0f} files/s), {cpu:6.2f} s CPU")
    walls = [c[0] / t[0] for t, c in zip(tar, convert)]
    stages = _breakdown(archive, args.views)
    print("conversion CPU by stage (run alone): " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    print(f"convert / tar -tzf, wall time: {min(w for w, _ in convert) / min(w for w, _ in tar):.2f} (best of each; "
          f"per round {', '.join(f'{r:.2f}' for r in walls)}); CPU time: "
          f"{min(c for _, c in convert) / min(c for _, c in tar):.2f} (target <= 2)")


if __name__ == "__main__":
    main()
