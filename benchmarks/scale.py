"""orbitset at 3DIEBench's size: the commands' times and peak memory, and the loaders' start-up and memory.

Writes once, cached, a synthetic dataset of 3DIEBench's size (`orbitset.testing.write_synthetic_dataset`: 55 classes x
954 objects = 52,470 objects, 50 views of 32 px, 100 objects per shard, a fifth of each class in ``val``: 526 shards),
then prints in one run, each figure from its own function:

- the dataset's generation time and peak memory (when this run wrote it);
- ``orbitset stats``, ``card`` and ``verify`` time and peak memory, each run as its own process;
- the conversion of a 3DIEBench-layout archive (``orbitset download 3diebench --url ARCHIVE --splits-from DIR``)
  at two sizes (``--convert-objects``), with the ratio of the peak memories (target: the larger within 1.2x of the smaller: memory flat in the number of objects);
- the loaders: construction time, time to the first batch, pairs/s, RSS and PSS of the main process and of each
  worker for 0 and 2 workers; 4 ranks under torch.distributed (gloo); DALI's webdataset reader with and without
  ``.idx`` files (when the ``dali`` extra is installed); loopback HTTP with ``cache_limit`` at a quarter of the
  dataset. Figures whose feature this checkout lacks print "n/a (needs ...)".

Peak memory is the peak RSS of the process that ran the command (ru_maxrss from wait4, when it exits); beside wall time
each command's CPU time (user + system) is printed, the steadier figure on a shared machine.

One file, as the other benchmarks: every figure is one function over the same cached data and the same child-process
measurement (`run_measured`), run by one command.

Usage: python benchmarks/scale.py [--data DIR] [--objects 52470] [--views 50] [--size 32]
       [--convert-objects 550 5280] [--only stats,card,...] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    """One measured child process: wall seconds, CPU seconds (user + system), peak RSS in MB, exit status, output."""

    seconds: float
    cpu: float
    peak_mb: float
    status: int
    stdout: str
    stderr: str

    def figure(self) -> str:
        failed = "" if self.status == 0 else f"  (exit {self.status}: {self.stderr.strip().splitlines()[-1:]})"
        return f"{self.seconds:8.1f} s wall {self.cpu:7.1f} s CPU  peak {self.peak_mb:7.0f} MB{failed}"


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
        return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode, out.read(),
                   err.read()[-4000:])


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


# --- loaders -----------------------------------------------------------------------------------------------------


def memory_of(pid: int) -> dict[str, float]:
    """RSS and PSS (MB) of process `pid` from /proc/PID/smaps_rollup (zeros when it has gone)."""
    figures = {"rss": 0.0, "pss": 0.0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("Rss", "Pss"):
                figures[name.lower()] = int(value.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return figures


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (DataLoader workers), from /proc/*/stat."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def probe_loader(dataset: str, workers: int, seconds: float, device: str, extra: dict) -> dict:
    """In this process: PairLoader construction time, time to the first batch, pairs/s over `seconds`, and RSS/PSS of
    this process and of each worker after the first batch. Under torch.distributed (RANK set) the ranks wait for
    each other before measuring memory, so that PSS splits what they share."""
    import torch

    from orbitset.loaders import PairLoader

    distributed = "RANK" in os.environ
    if distributed:
        torch.distributed.init_process_group("gloo")
    started = time.perf_counter()
    loader = PairLoader(dataset, batch_size=64, split="train", num_workers=workers, device=device, seed=0, **extra)
    constructed = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter()
    if distributed:
        torch.distributed.barrier()
    memory = {"main": memory_of(os.getpid()), "workers": [memory_of(pid) for pid in children_of(os.getpid())]}
    pairs, clock = 0, time.perf_counter()
    for batch in batches:
        pairs += len(batch["key"])
        if time.perf_counter() - clock >= seconds:
            break
    rate = pairs / max(time.perf_counter() - clock, 1e-9)
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"construct_s": constructed - started, "first_batch_s": first - constructed, "pairs_per_s": rate, **memory}


def _probe_command(dataset: str, workers: int, seconds: float, device: str, extra: dict) -> list[str]:
    return python(f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import scale, json; "
                  f"print('PROBE ' + json.dumps(scale.probe_loader({dataset!r}, {workers}, {seconds}, {device!r}, "
                  f"{extra!r})))")


def _probe_result(run: Run) -> dict | str:
    for line in run.stdout.splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[len("PROBE "):])
    return f"failed (exit {run.status}): {run.stderr.strip().splitlines()[-1:] or '?'}"


def measure_loader(dataset: Path, workers: int, seconds: float, device: str, extra: dict | None = None) -> dict | str:
    """`probe_loader` in its own process: its figures, or why it failed."""
    return _probe_result(run_measured(_probe_command(str(dataset), workers, seconds, device, extra or {}),
                                      env={"OMP_NUM_THREADS": "1"}))


def measure_ranks(dataset: Path, ranks: int, workers: int, seconds: float, device: str) -> list[dict | str]:
    """`probe_loader` in `ranks` processes under torch.distributed (gloo, loopback), started together."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    children = []
    for rank in range(ranks):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "WORLD_SIZE": str(ranks),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        children.append(subprocess.Popen(_probe_command(str(dataset), workers, seconds, device, {}), env=env,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for child in children:
        stdout, stderr = child.communicate()
        results.append(_probe_result(Run(0.0, 0.0, 0.0, child.returncode, stdout, stderr)))
    return results


def loader_lines(label: str, result: dict | str) -> list[str]:
    if isinstance(result, str):
        return [f"{label}: {result}"]
    workers = result["workers"]
    shown = ", ".join(f"{w['rss']:.0f}/{w['pss']:.0f}" for w in workers) or "none"
    return [f"{label}: construct {result['construct_s']:.2f} s, first batch {result['first_batch_s']:.2f} s, "
            f"{result['pairs_per_s']:.0f} pairs/s; main RSS/PSS {result['main']['rss']:.0f}/{result['main']['pss']:.0f} MB, "
            f"workers RSS/PSS {shown} MB"]


def total_pss(results: list[dict | str]) -> float | None:
    """PSS of every rank and worker together (MB); None when a rank failed."""
    if any(isinstance(r, str) for r in results):
        return None
    return sum(r["main"]["pss"] + sum(w["pss"] for w in r["workers"]) for r in results)  # type: ignore[index]


def index_files_present(dataset: Path) -> bool:
    """True when the shards have DALI ``.idx`` files beside them (written by the index-writing shard writer)."""
    return any(dataset.glob("*.idx"))


def measure_dali(dataset: Path, with_index: bool) -> str:
    """DALI's webdataset reader on a CPU pipeline over the train shards: time to build the pipeline and read one
    batch, and the process's peak RSS; with or without orbitset's ``.idx`` files."""
    import importlib.util

    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
        return "n/a (needs the optional dali extra: nvidia-dali-cuda120)"
    if with_index and not index_files_present(dataset):
        return "n/a (needs the shards' .idx files: 'orbitset index DIR' from the index-writing branch)"
    code = f"""
import json, time
from pathlib import Path
from nvidia.dali import fn, pipeline_def
shards = sorted(str(p) for p in Path({str(dataset)!r}).glob("train-*.tar"))
indexes = [s[:-len(".tar")] + ".idx" for s in shards] if {with_index!r} else None
@pipeline_def(batch_size=64, num_threads=2, device_id=None)
def pipe():
    image, label = fn.readers.webdataset(paths=shards, index_paths=indexes, ext=["000.jpg", "cls"], missing_component_behavior="error")
    return image, label
started = time.perf_counter()
p = pipe(); p.build(); p.run()
print("DALI", time.perf_counter() - started)
"""
    run = run_measured(python(code))
    seconds = next((float(line.split()[1]) for line in run.stdout.splitlines() if line.startswith("DALI ")), None)
    if seconds is None:
        return f"failed (exit {run.status}): {run.stderr.strip().splitlines()[-1:]}"
    return f"build + first batch {seconds:.2f} s, peak RSS {run.peak_mb:.0f} MB"


def measure_http(dataset: Path, seconds: float) -> str:
    """PairLoader over loopback HTTP with ``cache_limit`` at a quarter of the dataset: first batch time and the
    largest the cache folder grew while it ran."""
    import inspect
    import tempfile
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from orbitset.loaders import PairLoader

    if "cache_limit" not in inspect.signature(PairLoader).parameters:
        return "n/a (needs PairLoader's cache_limit: the bounded remote cache branch)"
    manifest = json.loads((dataset / "manifest.json").read_text())
    limit = sum(entry["bytes"] for entry in manifest["shards"]) // 4

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(dataset)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/manifest.json"
    with tempfile.TemporaryDirectory(prefix="orbitset-scale-cache-") as cache:
        peak = [0]
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.2):
                peak[0] = max(peak[0], sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file()))

        threading.Thread(target=watch, daemon=True).start()
        os.environ["ORBITSET_CACHE"] = cache
        result = measure_loader(url, 2, seconds, "cpu", {"cache_limit": limit})
        stop.set()
    server.shutdown()
    first = result if isinstance(result, str) else f"first batch {result['first_batch_s']:.2f} s"
    return f"{first}; cache peak {peak[0] / 1e6:.0f} MB against a limit of {limit / 1e6:.0f} MB"


# --- the run -----------------------------------------------------------------------------------------------------

STAGES = ("generate", "stats", "card", "verify", "convert", "loader", "ranks", "dali", "http")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "orbitset" / "scale", help="Folder of the cached datasets and archives.")
    parser.add_argument("--objects", type=int, default=CLASSES * 954, help="Objects of the synthetic dataset.")
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--size", type=int, default=32, help="Image side of the synthetic dataset (px).")
    parser.add_argument("--convert-objects", type=int, nargs=2, default=(550, 5280), metavar=("SMALL", "LARGE"),
                        help="Objects of the two 3DIEBench-layout archives converted.")
    parser.add_argument("--convert-size", type=int, default=256, help="Image side of the archives (px).")
    parser.add_argument("--seconds", type=float, default=10.0, help="Seconds of pairs/s measurement per loader.")
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--only", default=",".join(STAGES), help=f"Comma-separated stages among {','.join(STAGES)}.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="Where the loaders put batches.")
    args = parser.parse_args()
    stages = set(args.only.split(","))
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here; run it on a GPU machine")
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"python {platform.python_version()}; device {args.device}")
    dataset, written = ensure_dataset(args.data, args.objects, args.views, args.size)
    manifest = json.loads((dataset / "manifest.json").read_text())
    objects = sum(entry["objects"] for entry in manifest["shards"])
    print(f"dataset: {dataset} ({objects:,} objects x {args.views} views, {len(manifest['shards'])} shards, "
          f"{sum(e['bytes'] for e in manifest['shards']) / 1e9:.2f} GB; index files: "
          f"{'yes' if index_files_present(dataset) else 'no'})")
    if "generate" in stages:
        recorded = json.loads((dataset / "generation.json").read_text()) if (dataset / "generation.json").exists() else None
        if recorded:
            cached = "" if written else " (when it was written)"
            cpu = f" {recorded['cpu']:7.1f} s CPU" if "cpu" in recorded else ""
            print(f"generate: {recorded['seconds']:8.1f} s wall{cpu}  peak {recorded['peak_mb']:7.0f} MB{cached}")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="orbitset-scale-", dir=args.data) as scratch:
        for name in ("stats", "card", "verify"):
            if name in stages:
                print(f"{name + ':':9} {measure_command(name, dataset, Path(scratch)).figure()}")
        if "convert" in stages:
            peaks = []
            for count in args.convert_objects:
                run, converted = measure_convert(args.data, count, args.convert_size, Path(scratch))
                peaks.append(run.peak_mb)
                print(f"convert {converted:,} objects: {run.figure()}")
            print(f"convert peak memory, {args.convert_objects[1]:,} / {args.convert_objects[0]:,} objects: "
                  f"{peaks[1] / peaks[0]:.2f} (target <= 1.2)")
    if "loader" in stages:
        for workers in (0, 2):
            for line in loader_lines(f"PairLoader, {workers} workers", measure_loader(dataset, workers, args.seconds,
                                                                                     args.device)):
                print(line)
    if "ranks" in stages:
        results = measure_ranks(dataset, args.ranks, 2, args.seconds, args.device)
        for rank, result in enumerate(results):
            for line in loader_lines(f"rank {rank}/{args.ranks}, 2 workers", result):
                print(line)
        pss = total_pss(results)
        print(f"{args.ranks} ranks x 2 workers, PSS together: " + ("n/a (a rank failed)" if pss is None else f"{pss:.0f} MB"))
    if "dali" in stages:
        for with_index in (False, True):
            print(f"DALI webdataset reader, {'with' if with_index else 'without'} .idx: {measure_dali(dataset, with_index)}")
    if "http" in stages:
        print(f"loopback HTTP, cache_limit a quarter of the dataset: {measure_http(dataset, args.seconds)}")


if __name__ == "__main__":
    main()
