"""orbitset at 3DIEBench's size, in one run: the commands' times and peak memory, and the loaders' start-up and memory.

Writes once, cached, a synthetic dataset of 3DIEBench's size (`orbitset.testing.write_synthetic_dataset`: 55 classes x
954 objects = 52,470 objects, 50 views of 32 px, 100 objects per shard, a fifth of each class in ``val``: 526 shards;
`--objects` for fewer) and a tiny one of the same kind (`--tiny-objects`, the reference the memory targets are
stated against), then prints:

- the dataset's generation time and peak memory (recorded when it was written);
- ``orbitset stats``, ``card`` and ``verify`` time and peak memory, each run as its own process;
- the conversion of a 3DIEBench-layout archive (``orbitset download 3diebench --url ARCHIVE --splits-from DIR``)
  at two sizes (``--convert-objects``), with the ratio of the peak memories (target: the larger within 1.2x of the
  smaller: memory flat in the number of objects);
- the loaders (benchmarks/scale_loaders.py, each figure from a fresh process), on the tiny and the full dataset:
  construction time, time to the first batch, pairs/s, RSS and PSS of the main process and of each worker for 0 and
  2 workers, and the difference full - tiny per process (the index's memory; the tiny dataset is read with more
  pairs per object, so that its epoch lasts the timed batches); `--ranks` ranks x 2 workers under
  torch.distributed (gloo) and their PSS together; DALI's webdataset reader with and without orbitset's ``.idx``
  files (when the ``dali`` extra is installed); loopback HTTP with ``cache_limit`` at a quarter of the dataset;
  with `--before-repo`, pairs/s and construction of another checkout in alternating rounds.

Peak memory is the peak RSS of the process that ran the command (ru_maxrss from wait4); beside every wall time the
CPU time (user + system of the process and its workers) is printed, the steadier figure on a shared machine.

Usage: python benchmarks/scale.py [--data DIR] [--objects 52470] [--tiny-objects 110] [--views 50] [--size 32]
       [--convert-objects 550 5280] [--only generate,stats,...] [--device cpu|cuda]
       [--before-repo OLD --before-dataset DIR_V1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from scale_loaders import Run, compare_code, measure_dali, measure_http, measure_loader, measure_ranks, run_measured

CLASSES = 55
OBJECTS_PER_SHARD = 100
VAL_FRACTION = 0.2


def python(code: str) -> list[str]:
    """The command that runs `code` in this interpreter (niced: the machine is shared)."""
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
    (folder / "generation.json").write_text(json.dumps({"seconds": run.seconds, "cpu": run.cpu, "peak_mb": run.peak_mb}))
    return folder, run


def ensure_archive(data: Path, objects: int, size: int) -> tuple[Path, Path]:
    """A cached gzip tar of about `objects` objects (3 synsets, 50 views of `size` px JPEGs of about the published
    archive's file size) in 3DIEBench's published layout, and the folder of its split files
    (`orbitset.datasets.sie_synthetic`, as the conversion tests build theirs)."""
    import shutil

    from orbitset.datasets.sie_synthetic import SYNSETS, write_sie_archive, write_sie_tree

    per_synset = max(1, objects // len(SYNSETS))
    folder = data / f"sie-archive-{per_synset * len(SYNSETS)}-{size}px"
    archive, splits = folder / "3DIEBench.tar.gz", folder / "splits"
    if not archive.exists():
        shutil.rmtree(folder, ignore_errors=True)
        tree = write_sie_tree(folder / "tree", splits, objects_per_synset=per_synset, views=50, size=size, hues=64,
                              noise=2.0)
        partial = folder / ".3DIEBench.tar.gz.partial"
        write_sie_archive(tree.root, partial, compresslevel=1)
        shutil.rmtree(tree.root)
        os.replace(partial, archive)
    return archive, splits


# --- commands ----------------------------------------------------------------------------------------------------


def measure_command(name: str, dataset: Path, scratch: Path) -> Run:
    """``orbitset stats|card|verify DATASET`` as its own process (figures and cards written under `scratch`)."""
    arguments = {
        "stats": ["stats", str(dataset), "--png", str(scratch / "stats.png")],
        "card": ["card", str(dataset)],
        "verify": ["verify", str(dataset)],
    }[name]
    return run_measured(orbitset_command(*arguments), env={"OMP_NUM_THREADS": "1"})


def measure_convert(data: Path, objects: int, size: int, scratch: Path) -> tuple[Run, int]:
    """``orbitset download 3diebench --url ARCHIVE --splits-from DIR`` of a cached archive of about `objects` objects
    (built first when missing, not timed): the run and the objects it converted."""
    import shutil

    archive, splits = ensure_archive(data, objects, size)
    out = scratch / f"converted-{objects}"
    shutil.rmtree(out, ignore_errors=True)
    run = run_measured(orbitset_command("download", "3diebench", "--url", str(archive), "--splits-from", str(splits),
                                        "--out", str(out), "--objects-per-shard", "256"), env={"OMP_NUM_THREADS": "1"})
    converted = json.loads((out / "manifest.json").read_text())["shards"] if run.status == 0 else []
    shutil.rmtree(out, ignore_errors=True)
    return run, sum(entry["objects"] for entry in converted)


# --- the run -----------------------------------------------------------------------------------------------------

STAGES = ("generate", "stats", "card", "verify", "convert", "loader", "ranks", "dali", "http")


def loader_line(label: str, figures: dict[str, Any]) -> str:
    """One loader measurement: times, pairs/s, and RSS/PSS of the main process and of each worker (MB)."""
    workers = ", ".join(f"{w['rss']:.0f}/{w['pss']:.0f}" for w in figures["workers"]) or "none"
    offsets = f" (offsets held {figures['offsets_mb']:.1f} MB)" if figures.get("offsets_mb") is not None else ""
    process = f" [process {figures['wall_s']:.1f} s wall, {figures['cpu_s']:.1f} s CPU]" if "wall_s" in figures else ""
    return (f"{label}: construct {figures['construct_s']:.2f} s, first batch {figures['first_batch_s']:.2f} s, "
            f"{figures['pairs_per_s']:.0f} pairs/s; main RSS/PSS {figures['main']['rss']:.0f}/"
            f"{figures['main']['pss']:.0f} MB{offsets}, workers RSS/PSS {workers} MB{process}")


def above_tiny(full: dict[str, Any], tiny: dict[str, Any]) -> str:
    """Per-process memory of `full` above `tiny` (the same loader on the tiny dataset): main, and the largest
    worker against the largest worker."""
    def largest(figures: dict[str, Any], kind: str) -> float:
        return max((w[kind] for w in figures["workers"]), default=0.0)

    main = f"main RSS {full['main']['rss'] - tiny['main']['rss']:+.0f}, PSS {full['main']['pss'] - tiny['main']['pss']:+.0f} MB"
    if not full["workers"]:
        return main
    return (f"{main}; largest worker RSS {largest(full, 'rss') - largest(tiny, 'rss'):+.0f}, "
            f"PSS {largest(full, 'pss') - largest(tiny, 'pss'):+.0f} MB")


def print_commands(stages: set[str], dataset: Path, args: argparse.Namespace) -> None:
    """The figures of the stages among stats, card, verify (on `dataset`) and convert (its own archives)."""
    with tempfile.TemporaryDirectory(prefix="orbitset-scale-", dir=args.data) as scratch:
        for name in ("stats", "card", "verify"):
            if name in stages:
                print(f"{name + ':':9} {measure_command(name, dataset, Path(scratch)).figure()}", flush=True)
        if "convert" in stages:
            peaks = []
            for count in args.convert_objects:
                run, converted = measure_convert(args.data, count, args.convert_size, Path(scratch))
                peaks.append(run.peak_mb)
                print(f"convert {converted:,} objects: {run.figure()}", flush=True)
            print(f"convert peak memory, {args.convert_objects[1]:,} / {args.convert_objects[0]:,} objects: "
                  f"{peaks[1] / peaks[0]:.2f} (target <= 1.2)", flush=True)


def print_loaders(stages: set[str], dataset: Path, tiny: Path, args: argparse.Namespace) -> None:
    """The figures of the loader stages (loader and ranks on `tiny` and `dataset`, dali, http) and, with
    --before-repo, the comparison with another checkout."""
    device = {"device": args.device} if args.device != "cpu" else {}
    # the tiny dataset's epoch made long enough for the timed batches on every rank (more pairs per object)
    tiny_objects = sum(entry["objects"] for entry in json.loads((tiny / "manifest.json").read_text())["shards"])
    options = {"tiny": {**device, "pairs_per_object": math.ceil((args.batches + 1) * 64 * args.ranks / tiny_objects)},
               "full": device}
    if "loader" in stages:
        for workers in (0, 2):
            figures = {}
            for name, source in (("tiny", tiny), ("full", dataset)):
                figures[name] = measure_loader(str(source), workers, args.batches, **options[name])
                print(loader_line(f"PairLoader, {name}, {workers} workers", figures[name]), flush=True)
            print(f"  full - tiny, {workers} workers: {above_tiny(figures['full'], figures['tiny'])} "
                  f"(target: <= 50 MB per process)", flush=True)
    if "ranks" in stages:
        together = {}
        for name, source in (("tiny", tiny), ("full", dataset)):
            ranks = measure_ranks(str(source), args.ranks, 2, args.batches, **options[name])
            for rank, figures in enumerate(ranks["per_rank"]):
                print(loader_line(f"rank {rank}/{args.ranks}, {name}, 2 workers", figures), flush=True)
            together[name] = ranks["total_pss_mb"]
            print(f"{args.ranks} ranks x 2 workers, {name}: PSS together {ranks['total_pss_mb']:.0f} MB; slowest "
                  f"construction {ranks['construct_s']:.2f} s, slowest first batch {ranks['first_batch_s']:.2f} s "
                  f"[{ranks['wall_s']:.1f} s wall, {ranks['cpu_s']:.1f} s CPU]", flush=True)
        print(f"  full - tiny, {args.ranks} ranks x 2 workers together: {together['full'] - together['tiny']:+.0f} MB PSS "
              f"(target: under 2,000 MB in all)", flush=True)
    if "dali" in stages:
        dali = measure_dali(str(dataset))
        for figures in dali or []:
            print(f"DALI webdataset reader, {'with' if figures['with_index'] else 'without'} .idx: open + first batch "
                  f"{figures['open_and_first_batch_s']:.2f} s, RSS {figures['rss_mb']:.0f} MB "
                  f"[process {figures['wall_s']:.1f} s wall, {figures['cpu_s']:.1f} s CPU]", flush=True)
        if dali is None:
            print("DALI: not installed (pip install -e .[dali])")
    if "http" in stages:
        figures = measure_http(str(dataset), 0.25)
        print(loader_line("loopback HTTP, cache_limit a quarter of the dataset, 2 workers", figures))
        print(f"  cache peak {figures['peak_cache_mb']:.1f} MB, limit {figures['limit_mb']:.1f} MB + largest shard "
              f"{figures['largest_shard_mb']:.1f} MB: {'within' if figures['within_bound'] else 'ABOVE'} the bound",
              flush=True)
    if args.before_repo is not None:
        result = compare_code(str(dataset), args.before_repo, str(args.before_dataset), rounds=args.rounds)
        print(f"this checkout / {args.before_repo} (2 workers, {args.rounds} alternating rounds): pairs/s ratio "
              f"{result['pairs_per_s_after_over_before']:.2f} (median); {json.dumps(result)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "orbitset" / "scale", help="Folder of the cached datasets and archives.")
    parser.add_argument("--objects", type=int, default=CLASSES * 954, help="Objects of the synthetic dataset.")
    parser.add_argument("--tiny-objects", type=int, default=2 * CLASSES,
                        help="Objects of the tiny dataset the loaders' memory is compared with.")
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--size", type=int, default=32, help="Image side of the synthetic datasets (px).")
    parser.add_argument("--convert-objects", type=int, nargs=2, default=(550, 5280), metavar=("SMALL", "LARGE"),
                        help="Objects of the two 3DIEBench-layout archives converted.")
    parser.add_argument("--convert-size", type=int, default=256, help="Image side of the archives (px).")
    parser.add_argument("--batches", type=int, default=40, help="Batches of 64 pairs timed after the first.")
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--only", default=",".join(STAGES), help=f"Comma-separated stages among {','.join(STAGES)}.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="Where the loaders put batches.")
    parser.add_argument("--before-repo", type=Path, default=None,
                        help="Another orbitset checkout whose loader is compared with this one's (pairs/s).")
    parser.add_argument("--before-dataset", type=Path, default=None,
                        help="The same shards with a manifest that checkout reads (with --before-repo).")
    parser.add_argument("--rounds", type=int, default=3, help="Alternating rounds of --before-repo's comparison.")
    args = parser.parse_args()
    stages = set(args.only.split(","))
    if unknown := stages - set(STAGES):
        parser.error(f"--only: unknown stages {sorted(unknown)}; choose among {','.join(STAGES)}")
    if (args.before_repo is None) != (args.before_dataset is None):
        parser.error("--before-repo and --before-dataset go together")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here; run it on a GPU machine")
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"python {platform.python_version()}; device {args.device}", flush=True)
    if "convert" in stages:
        print_commands({"convert"}, Path(), args)
    if not stages & {"generate", "stats", "card", "verify", "loader", "ranks", "dali", "http"} and not args.before_repo:
        return
    dataset, written = ensure_dataset(args.data, args.objects, args.views, args.size)
    manifest = json.loads((dataset / "manifest.json").read_text())
    objects = sum(entry["objects"] for entry in manifest["shards"])
    print(f"dataset: {dataset} ({objects:,} objects x {args.views} views, {len(manifest['shards'])} shards, "
          f"{sum(e['bytes'] for e in manifest['shards']) / 1e9:.2f} GB; index files: "
          f"{'yes' if any(dataset.glob('*.idx')) else 'no'})", flush=True)
    if "generate" in stages and (dataset / "generation.json").exists():
        recorded = json.loads((dataset / "generation.json").read_text())
        cached = "" if written else " (when it was written)"
        print(f"generate: {recorded['seconds']:8.1f} s wall {recorded['cpu']:7.1f} s CPU  peak "
              f"{recorded['peak_mb']:7.0f} MB{cached}", flush=True)
    print_commands(stages & {"stats", "card", "verify"}, dataset, args)
    if stages & {"loader", "ranks", "dali", "http"} or args.before_repo is not None:
        tiny, _ = ensure_dataset(args.data, args.tiny_objects, args.views, args.size)
        print_loaders(stages, dataset, tiny, args)


if __name__ == "__main__":
    main()
