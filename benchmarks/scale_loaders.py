"""The loader measurements of benchmarks/scale.py, each in a fresh process so that none inherits another's memory
or open shards:

- `measure_loader`: PairLoader construction time, time to the first batch, pairs/s over the next batches, and RSS
  and PSS (Linux /proc smaps_rollup) of the main process and of each worker, for a number of workers;
- `measure_ranks`: the same with `ranks` processes under torch.distributed (gloo, on this machine), each with its
  workers: the PSS of all of them together;
- `measure_dali`: DALI's webdataset reader on a CPU pipeline, opened with and without orbitset's ``.idx`` files
  (time to build and read the first batch, RSS), when DALI is installed (the optional ``dali`` extra);
- `measure_http`: the dataset served over loopback HTTP, read by a PairLoader with ``cache_limit`` at a fraction of
  the dataset: time to the first batch, the cache's peak size against the limit plus one shard;
- `compare_code`: pairs/s and construction time of this checkout against another checkout of orbitset (e.g. the
  code before index files) on the same shards, in alternating rounds: the ratio of each round and their median.

`run_measured` is the one measured child process of both files: wall time, CPU time (user + system, its reaped
children included) and peak RSS. Every measurement returns a dict with the process's ``wall_s`` and ``cpu_s``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """One measured child process: wall seconds, CPU seconds (user + system, its reaped children included), peak
    RSS in MB, exit status, output (stderr: its last 4,000 characters)."""

    seconds: float
    cpu: float
    peak_mb: float
    status: int
    stdout: str
    stderr: str

    def figure(self) -> str:
        failed = "" if self.status == 0 else f"  (exit {self.status}: {self.stderr.strip().splitlines()[-1:]})"
        return f"{self.seconds:8.1f} s wall {self.cpu:7.1f} s CPU  peak {self.peak_mb:7.0f} MB{failed}"


def run_measured(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run `command` as a child process (its environment: this one's updated with `env`): wall time, CPU time and
    peak RSS from wait4 (stdout and stderr go to files, so progress output cannot block it)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode, out.read(),
                   err.read()[-4000:])


def memory(pid: int) -> dict[str, float]:
    """RSS and PSS of process `pid` in MB (Linux: /proc/PID/smaps_rollup; zeros when it has gone)."""
    values = {"rss": 0.0, "pss": 0.0}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                values[name.lower()] = int(rest.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (its loader workers)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _loader_figures(source: str, workers: int, batches: int, batch_size: int, synchronize: Any = None,
                    **options: Any) -> dict[str, Any]:
    """In this process: construct a PairLoader, time its first batch and `batches` more, and measure memory while
    the loader and its workers are alive (between two calls of `synchronize`, when given: other processes measure
    at the same time, so that PSS splits what they share)."""
    import numpy as np

    from orbitset.geometry import matrix_to_quat
    from orbitset.loaders import PairLoader

    before_imports = time.perf_counter()
    matrix_to_quat(np.eye(3)[None])  # the rotation maths' imports (seconds), once per process, as PairLoader does
    start = time.perf_counter()
    loader = PairLoader(source, batch_size, num_workers=workers, normalize=False, seed=0, **options)
    constructed = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter()
    pairs = 0
    for _, batch in zip(range(batches), iterator):
        pairs += len(batch["key"])
    elapsed = time.perf_counter() - first
    if synchronize is not None:
        synchronize()
    main = memory(os.getpid())
    workers_memory = [memory(pid) for pid in children(os.getpid())]
    if synchronize is not None:
        synchronize()
    inline = getattr(getattr(loader, "_stream", None), "data_loader", None)  # 0 workers: the stream's own state
    state = getattr(getattr(inline, "dataset", None), "state", None)
    offsets_mb = state.readers.bytes / 2**20 if workers == 0 and hasattr(state, "readers") else None
    return {"imports_s": start - before_imports, "construct_s": constructed - start, "first_batch_s": first - constructed,
            "pairs": pairs, "pairs_per_s": pairs / elapsed, "offsets_mb": offsets_mb,
            "main": main, "workers": workers_memory, "shards": len(loader.shards),
            "objects": sum(e.objects for e in loader.manifest.shards) if loader.manifest else None}


def _in_fresh_process(function: str, *args: Any, pythonpath: Path = ROOT, env: dict[str, str] | None = None) -> Any:
    """Run ``function(*args)`` of this module in a new interpreter importing orbitset from `pythonpath` (niced, one
    BLAS thread: the machine is shared): its result, with the process's ``wall_s`` and ``cpu_s`` added."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import scale_loaders as m; "
            f"print('RESULT' + json.dumps(m.{function}(*json.loads(sys.argv[1]))))")
    run = run_measured(["nice", "-n", "10", sys.executable, "-c", code, json.dumps(args)],
                       env={"PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1", **(env or {})},
                       cwd=pythonpath)  # -c puts the working folder first
    line = next((line for line in run.stdout.splitlines() if line.startswith("RESULT")), None)
    if run.status != 0 or line is None:
        raise RuntimeError(f"{function} failed (exit {run.status}):\n{run.stderr}")
    return {**json.loads(line[len("RESULT"):]), "wall_s": run.seconds, "cpu_s": run.cpu}


def measure_loader(dataset: str, workers: int = 0, batches: int = 40, batch_size: int = 64,
                   pythonpath: Path = ROOT, **options: Any) -> dict[str, Any]:
    """`_loader_figures` in a fresh process (see the module docstring); `options` go to PairLoader."""
    return _in_fresh_process("_loader_figures_kw", dataset, workers, batches, batch_size, options, pythonpath=pythonpath)


def _loader_figures_kw(source: str, workers: int, batches: int, batch_size: int, options: dict) -> dict[str, Any]:
    return _loader_figures(source, workers, batches, batch_size, **options)


def _rank(rank: int, world: int, port: int, dataset: str, workers: int, batches: int, out: str, options: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        figures = _loader_figures(dataset, workers, batches, 64, synchronize=dist.barrier,
                                  multiprocessing_context="fork", **options)
        Path(out, f"rank{rank}.json").write_text(json.dumps(figures))
    finally:
        dist.destroy_process_group()


def _ranks_figures(dataset: str, ranks: int, workers: int, batches: int, options: dict) -> dict[str, Any]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_rank, args=(ranks, port, dataset, workers, batches, out, options), nprocs=ranks, start_method="fork")
        per_rank = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(ranks)]
    pss = sum(r["main"]["pss"] + sum(w["pss"] for w in r["workers"]) for r in per_rank)
    return {"ranks": ranks, "workers": workers, "total_pss_mb": pss, "per_rank": per_rank,
            "construct_s": max(r["construct_s"] for r in per_rank), "first_batch_s": max(r["first_batch_s"] for r in per_rank)}


def measure_ranks(dataset: str, ranks: int = 4, workers: int = 2, batches: int = 10, **options: Any) -> dict[str, Any]:
    """`ranks` gloo processes x `workers` workers each on `dataset`: their PSS together (measured at once, every
    loader alive), slowest construction and first batch, and each rank's `_loader_figures` (``per_rank``);
    `options` go to PairLoader."""
    return _in_fresh_process("_ranks_figures", dataset, ranks, workers, batches, options)


def _dali_figures(dataset: str, with_index: bool) -> dict[str, Any]:
    from nvidia.dali import fn, pipeline_def

    from orbitset.manifests.model import load_manifest

    shards = load_manifest(dataset).shards
    paths = [str(Path(dataset) / e.name) for e in shards]
    index = {"index_paths": [str(Path(dataset) / e.dali_index.name) for e in shards]} if with_index else {}

    @pipeline_def(batch_size=64, num_threads=2, device_id=None)
    def read():
        return tuple(fn.readers.webdataset(paths=paths, ext=["000.jpg", "latents.npy"], random_shuffle=True,
                                           name="reader", **index))

    start = time.perf_counter()
    pipeline = read()
    pipeline.build()
    pipeline.run()
    return {"with_index": with_index, "open_and_first_batch_s": time.perf_counter() - start,
            "rss_mb": memory(os.getpid())["rss"]}


def measure_dali(dataset: str) -> list[dict[str, Any]] | None:
    """DALI's reader with and without orbitset's ``.idx`` files (fresh processes); None without DALI."""
    import importlib.util

    if importlib.util.find_spec("nvidia") is None or importlib.util.find_spec("nvidia.dali") is None:
        return None
    return [_in_fresh_process("_dali_figures", dataset, flag) for flag in (True, False)]


def measure_http(dataset: str, fraction: float = 0.25, workers: int = 2, batches: int = 20) -> dict[str, Any]:
    """The dataset over loopback HTTP with ``cache_limit`` = `fraction` of its bytes: first batch time, pairs/s and
    the cache's peak size (polled) against the limit plus the largest shard."""
    from orbitset.manifests.model import load_manifest

    manifest = load_manifest(dataset)
    total = sum(e.bytes + (e.index.bytes if e.index else 0) for e in manifest.shards)
    limit, largest = int(total * fraction), max(e.bytes for e in manifest.shards)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(dataset))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    peak, stop = [0], threading.Event()
    with tempfile.TemporaryDirectory() as cache:
        def watch():
            while not stop.wait(0.01):
                size = sum(p.stat().st_size for p in Path(cache).glob("[!.]*") if p.is_file())
                peak[0] = max(peak[0], size)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            figures = _in_fresh_process("_loader_figures_kw", f"http://127.0.0.1:{server.server_address[1]}/", workers,
                                        batches, 64, {"cache_limit": limit}, env={"ORBITSET_CACHE": cache})
        finally:
            stop.set()
            watcher.join()
            server.shutdown()
    figures.update(limit_mb=limit / 1e6, largest_shard_mb=largest / 1e6, peak_cache_mb=peak[0] / 1e6,
                   within_bound=peak[0] <= limit + largest)
    return figures


def compare_code(dataset: str, before_repo: Path, before_dataset: str, workers: int = 2, batches: int = 40,
                 rounds: int = 3) -> dict[str, Any]:
    """This checkout against `before_repo` (reading `before_dataset`: the same shards with the manifest that code
    reads), in `rounds` alternating rounds: pairs/s and construction time of each, and the median ratios."""
    results: dict[str, list[dict[str, Any]]] = {"after": [], "before": []}
    for _ in range(rounds):
        results["before"].append(measure_loader(before_dataset, workers, batches, pythonpath=before_repo))
        results["after"].append(measure_loader(dataset, workers, batches))
    ratio = statistics.median(a["pairs_per_s"] / b["pairs_per_s"] for a, b in zip(results["after"], results["before"]))
    return {"pairs_per_s_after_over_before": ratio,
            "after_pairs_per_s": [r["pairs_per_s"] for r in results["after"]],
            "before_pairs_per_s": [r["pairs_per_s"] for r in results["before"]],
            "after_construct_s": [r["construct_s"] for r in results["after"]],
            "before_construct_s": [r["construct_s"] for r in results["before"]],
            "after_pss_mb": [r["main"]["pss"] for r in results["after"]],
            "before_pss_mb": [r["main"]["pss"] for r in results["before"]],
            "after_worker_pss_mb": [[w["pss"] for w in r["workers"]] for r in results["after"]],
            "before_worker_pss_mb": [[w["pss"] for w in r["workers"]] for r in results["before"]]}
