"""Throughput of orbitset's PairLoader against the bare JPEG decode bound and a 3DIEBench-style loose-file loader,
and of SequenceLoader against PairLoader per view read.

Writes its own dataset (`orbitset.testing.write_synthetic_dataset`: 256 px, quality 90 JPEGs, 3DIEBench latents) and
the same images in 3DIEBench's original layout (SYNSET/OBJECT/image_i.jpg + latent_i.npy), then prints, in one run:

1. the bare decode bound: the loaders' CPU decoder (libjpeg-turbo through simplejpeg) decoding the same JPEGs in a
   tight loop, 2 per pair (pairs/s, one process), and Pillow's decoding of them for reference;
2. orbitset PairLoader pairs/s with 0 (inline), 1 and all workers: uint8 batches (what training on a GPU uses:
   normalisation happens on the device) and normalised float batches on the CPU, both channels-last (the default),
   and uint8 contiguous NCHW batches (``channels_last=False``) with 1 worker;
3. the loose-file baseline, written the way 3DIEBench's loader works (per pair: two PIL opens, two np.load latents,
   scipy Euler -> relative quaternion, resize, to-tensor, normalise; torch DataLoader), at the same worker counts;
4. the GPU path (decode on the device) when CUDA is present;
5. the 1-worker loader against the decode bound on one pinned CPU, in short alternating windows (`pinned_ratio`);
6. SequenceLoader with K = --sequence-views views per item (uint8, 1 and all workers), batches of as many images as
   PairLoader's;

and the ratios orbitset(1 worker) / decode bound (target >= 0.8), orbitset / loose files at equal workers
(target >= 2) and SequenceLoader / PairLoader views read per second at equal workers (target >= 0.9). Each pairs/s figure is the best of --repeats interleaved rounds, each measuring whole epochs for at
least --seconds after a warm-up epoch (workers persist across epochs, for the baseline too); beside pairs/s it prints
pairs per CPU-second of all the processes involved, which other load on the machine distorts less. The ratios are the
median over the rounds of the ratio within each round, so that a moment of idle machine lucky for one configuration
does not decide them; the 1-worker loaders are measured between two decode bounds, and compared with their mean (a
round takes about a minute, over which a shared machine's speed can drift). (5) measures the 1-worker target
the way the machine's noise disturbs least: the vCPUs of a shared VM differ in speed from moment to moment, so the
bound and the loader's worker run on the same CPU, alternating every 0.25 s.

Usage: python benchmarks/loader.py [--objects 200] [--views 50] [--size 256] [--workers 2] [--seconds 1]
       [--pinned-seconds 60] [--sequence-views 4] [--only-sequences] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from orbitset.loaders import MEAN_3DIEBENCH, STD_3DIEBENCH, PairLoader, SequenceLoader
from orbitset.loaders.decode import decode_cpu, decode_pillow
from orbitset.schema import decode
from orbitset.shards import ShardReader
from orbitset.testing import write_synthetic_dataset


def write_datasets(work: Path, objects: int, views: int, size: int) -> tuple[Path, Path]:
    """The shards (orbitset) and the same JPEGs and latents as loose files (3DIEBench layout)."""
    shards, loose = work / "shards", work / "loose"
    if not (shards / "manifest.json").exists():
        classes = 4
        write_synthetic_dataset(shards, classes=classes, objects_per_class=objects // classes, views=views, size=size,
                                objects_per_shard=50, val_fraction=0.0, name="bench")
    if not loose.exists():
        partial = work / "loose.partial"
        for shard in sorted(shards.glob("*.tar")):
            with ShardReader(shard) as reader:
                for fields in reader:
                    sample = decode(fields, validate_sample=False)
                    folder = partial / f"0{sample.label:07d}" / sample.key.split("__")[1]
                    folder.mkdir(parents=True, exist_ok=True)
                    for index, image in enumerate(sample.images):
                        (folder / f"image_{index}.jpg").write_bytes(image)
                        np.save(folder / f"latent_{index}.npy", sample.latents[index])
        partial.rename(loose)
    return shards, loose


def first_views(shards: Path) -> list[bytes]:
    """Views 0 and 1 of every object, as JPEG bytes in memory."""
    blobs = []
    for shard in sorted(shards.glob("*.tar")):
        with ShardReader(shard) as reader:
            for key in reader.keys():
                blobs += [reader.read(key, ["000.jpg"])["000.jpg"], reader.read(key, ["001.jpg"])["001.jpg"]]
    return blobs


def decode_bound(blobs: list[bytes], seconds: float, decode=decode_cpu) -> tuple[float, float]:
    """(pairs/s, pairs per CPU-second) of `decode` (the loaders' CPU decoder by default) decoding 2 JPEGs per pair in
    a tight loop, passes over `blobs` for at least `seconds` (bytes in memory, each to a fresh (H, W, 3) uint8 array)."""
    decodes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while decodes == 0 or time.perf_counter() - wall < seconds:
        for blob in blobs:
            decode(blob, None)
        decodes += len(blobs)
    return decodes / 2 / (time.perf_counter() - wall), decodes / 2 / (time.process_time() - cpu)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of this process and of the live processes `pids` (Linux /proc)."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _worker_pids(iterable) -> list[int]:
    """The worker processes of `iterable`, a torch DataLoader or an orbitset loader that has started iterating."""
    stream = getattr(iterable, "_stream", None)
    data_loader = stream.data_loader if stream is not None else iterable
    iterator = getattr(data_loader, "_iterator", None)
    return [worker.pid for worker in getattr(iterator, "_workers", [])]


def epochs_rate(iterable, seconds: float, device: str = "cpu") -> tuple[float, float]:
    """(pairs/s, pairs per CPU-second of all processes) over whole epochs lasting at least `seconds` in all, after one
    warm-up epoch (which also takes any batches the workers made ahead while other configurations ran)."""
    for _ in iterable:  # warm-up: starts the (persistent) workers, fills the page cache
        pass
    pids = _worker_pids(iterable)
    pairs = 0
    wall, cpu = time.perf_counter(), _cpu_seconds(pids)
    while pairs == 0 or time.perf_counter() - wall < seconds:
        for batch in iterable:
            pairs += len(batch["key"]) if isinstance(batch, dict) else len(batch[0])
    if device == "cuda":
        torch.cuda.synchronize()
    return pairs / (time.perf_counter() - wall), pairs / (_cpu_seconds(pids) - cpu)


def pinned_ratio(loader: PairLoader, blobs: list[bytes], seconds: float, window: float = 0.25) -> list[float] | None:
    """Pairs/s of a 1-worker `loader` over the decode bound's, from windows of `window` seconds alternating for
    `seconds` in all, on one pinned CPU: the bound runs there, and so does the loader's worker while the main process
    moves to the other CPUs. This machine's vCPUs differ in speed from moment to moment and its speed drifts within
    seconds; short alternating windows on one CPU cancel both. The batches the worker made ahead while the bound ran
    are skipped, and before each bound window the worker gets 0.1 s to fill its queue and stop.
    Returns [ratio of the totals, then of each window pair], or None where fewer than 2 CPUs can be pinned."""
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None
    cpus = os.sched_getaffinity(0)
    measured = max(cpus)

    def endless():
        while True:
            yield from loader

    stream = endless()
    for _ in range(2 * len(loader)):  # warm-up: the worker starts, the caches fill
        next(stream)
    for pid in _worker_pids(loader):
        os.sched_setaffinity(pid, {measured})
    bound_pairs = bound_total = loader_pairs = loader_total = 0.0  # pairs and seconds of each, summed over windows
    ratios = []
    try:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            os.sched_setaffinity(0, {measured})
            time.sleep(0.1)
            bound_start = time.perf_counter()
            bound_rate = decode_bound(blobs, window)[0]
            bound_seconds = time.perf_counter() - bound_start
            os.sched_setaffinity(0, cpus - {measured})
            for _ in range(loader.prefetch_factor + 1):
                next(stream)
            pairs, loader_start = 0, time.perf_counter()
            while time.perf_counter() - loader_start < window:
                pairs += len(next(stream)["key"])
            loader_seconds = time.perf_counter() - loader_start
            bound_pairs, bound_total = bound_pairs + bound_rate * bound_seconds, bound_total + bound_seconds
            loader_pairs, loader_total = loader_pairs + pairs, loader_total + loader_seconds
            ratios.append(pairs / loader_seconds / bound_rate)
    finally:
        os.sched_setaffinity(0, cpus)
        stream.close()
    return [loader_pairs / loader_total / (bound_pairs / bound_total), *ratios]


class LooseFiles3DIEBench(torch.utils.data.Dataset):
    """3DIEBench's loader, re-implemented: one object per item, two random views read as loose files."""

    def __init__(self, root: Path, views: int, size: int):
        self.folders = sorted(p for p in root.glob("*/*") if p.is_dir())
        self.labels = [int(p.parent.name) for p in self.folders]
        self.views, self.size = views, size
        self.mean = torch.tensor(MEAN_3DIEBENCH).view(3, 1, 1)
        self.std = torch.tensor(STD_3DIEBENCH).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.folders)

    def _image(self, path: Path) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (self.size, self.size):  # torchvision's Resize(256) is a no-op at 256 px
                image = image.resize((self.size, self.size), Image.BILINEAR)
            tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)
        return (tensor - self.mean) / self.std

    def __getitem__(self, index: int):
        from scipy.spatial.transform import Rotation

        folder = self.folders[index]
        a, b = np.random.choice(self.views, 2, replace=False)
        image_a, image_b = self._image(folder / f"image_{a}.jpg"), self._image(folder / f"image_{b}.jpg")
        latent_a, latent_b = np.load(folder / f"latent_{a}.npy"), np.load(folder / f"latent_{b}.npy")
        rotation = Rotation.from_euler("xyz", latent_a[:3]).inv() * Rotation.from_euler("xyz", latent_b[:3])
        return image_a, image_b, torch.FloatTensor(rotation.as_quat()), self.labels[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="'all workers' count")
    parser.add_argument("--seconds", type=float, default=1.0, help="least time per measurement (whole epochs)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pinned-seconds", type=float, default=60.0, help="length of the pinned alternation (5)")
    parser.add_argument("--sequence-views", type=int, default=4, help="views per SequenceLoader item (6)")
    parser.add_argument("--only-sequences", action="store_true", help="measure only PairLoader against SequenceLoader")
    parser.add_argument("--work", type=Path, default=None, help="folder for the datasets (reused when present)")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="orbitset-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    shards, loose = write_datasets(work, args.objects, args.views, args.size)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}; torch {torch.__version__}")
    print(f"dataset: {args.objects} objects x {args.views} views, {args.size} px q90 JPEG "
          f"(written/reused in {time.perf_counter() - started:.0f} s at {work}); batch {args.batch_size}, "
          f"whole epochs over at least {args.seconds:g} s per measurement, best of {args.repeats} rounds; load average {os.getloadavg()[0]:.1f}")

    blobs = first_views(shards)
    loose_files = LooseFiles3DIEBench(loose, args.views, args.size)
    worker_counts = sorted({0, 1, args.workers})
    configs = {("bound", False, 1): lambda: decode_bound(blobs, args.seconds),
               ("pillow", False, 1): lambda: decode_bound(blobs, args.seconds, decode_pillow)}
    for normalize in (False, True):
        for workers in worker_counts:
            pair_loader = PairLoader(shards, args.batch_size, num_workers=workers, seed=0, normalize=normalize)
            configs["orbitset", normalize, workers] = (
                lambda pl=pair_loader: epochs_rate(pl, args.seconds)
            )
    channels_first = PairLoader(shards, args.batch_size, num_workers=1, seed=0, normalize=False, channels_last=False)
    configs["orbitset-nchw", False, 1] = lambda: epochs_rate(channels_first, args.seconds)
    for workers in worker_counts[1:]:
        baseline = torch.utils.data.DataLoader(
            loose_files, batch_size=args.batch_size, shuffle=True, num_workers=workers, persistent_workers=True
        )
        configs["loose", True, workers] = lambda dl=baseline: epochs_rate(dl, args.seconds)
    if torch.cuda.is_available():
        for decode_mode in ("gpu", "cpu"):
            try:
                gpu = PairLoader(shards, args.batch_size, num_workers=args.workers, seed=0, device="cuda", decode=decode_mode)
            except Exception as exc:  # e.g. no GPU JPEG decoder installed
                print(f"(4) GPU path, decode={decode_mode}: not run ({exc})")
                continue
            configs["cuda-" + decode_mode, True, args.workers] = lambda g=gpu: epochs_rate(g, args.seconds, "cuda")
    length = args.sequence_views
    for workers in worker_counts[1:]:  # the same images per batch as PairLoader's
        sequences = SequenceLoader(shards, max(1, args.batch_size * 2 // length), views=length, num_workers=workers,
                                   seed=0, normalize=False)
        configs["sequence", False, workers] = lambda sl=sequences: epochs_rate(sl, args.seconds)
    if args.only_sequences:
        configs = {name: measure for name, measure in configs.items()
                   if name[0] == "sequence" or (name[0] == "orbitset" and not name[1] and name[2] > 0)}
    bound = ("bound", False, 1)
    bracketed = [("orbitset", False, 1), ("orbitset", True, 1)]  # measured between two decode bounds
    rounds: list[dict[tuple, tuple[float, float]]] = []
    if args.only_sequences:  # each PairLoader beside the SequenceLoader with as many workers
        configs = dict(sorted(configs.items(), key=lambda item: (item[0][2], item[0][0] == "sequence")))
    for number in range(args.repeats):  # interleaved rounds: the machine's load hits every configuration alike
        measured: dict[tuple, tuple[float, float]] = {}
        order = list(configs.items())
        if args.only_sequences and number % 2:  # and which of the two runs first alternates
            order.reverse()
        for name, measure in order:
            if name in bracketed and bound in configs:
                measured["before", *name] = configs[bound]()
            measured[name] = measure()
            if name in bracketed and bound in configs:
                measured["after", *name] = configs[bound]()
        rounds.append(measured)
    wall = {name: max(r[name][0] for r in rounds) for name in configs}
    efficiency = {name: max(r[name][1] for r in rounds) for name in configs}

    def ratio(ours: tuple, theirs: tuple) -> str:
        """Median over rounds of the ratio within a round, wall [CPU-second]; against the decode bound, the bound is
        the mean of the two measured just before and just after (the machine's speed drifts over a round's minute)."""
        def reference(r: dict, k: int) -> float:
            if theirs == bound and ("before", *ours) in r:
                return (r["before", *ours][k] + r["after", *ours][k]) / 2
            return r[theirs][k]
        within = [np.median([r[ours][k] / reference(r, k) for r in rounds]) for k in (0, 1)]
        return f"{within[0]:5.2f} [{within[1]:5.2f}]"

    labels = {"bound": "(1) bare decode bound, 2 decodes per pair (simplejpeg)",
              "pillow": "(1) for reference: 2 Pillow decodes per pair", "orbitset": "(2) orbitset PairLoader",
              "orbitset-nchw": "(2) orbitset PairLoader, contiguous NCHW",
              "loose": "(3) 3DIEBench-style loose files", "cuda-gpu": "(4) orbitset on CUDA, GPU decode",
              "cuda-cpu": "(4) orbitset on CUDA, CPU decode",
              "sequence": f"(6) orbitset SequenceLoader, K = {length} (sequences/s)"}
    print(f"{'configuration':64s} {'pairs/s':>9s} {'pairs/CPU-s':>12s}")
    for (name, normalize, workers) in configs:
        form = "" if name in ("bound", "pillow") else (", normalised float" if normalize else ", uint8 (normalise on device)")
        label = f"{labels[name]}{form}, {workers} worker(s)" if name not in ("bound", "pillow") else labels[name]
        print(f"{label:64s} {wall[name, normalize, workers]:9.1f} {efficiency[name, normalize, workers]:12.1f}")
    if not torch.cuda.is_available():
        print("(4) GPU path: not run (no CUDA device)")
    if not args.only_sequences:
        print("ratios: median over the rounds of the ratio within each round (wall pairs/s; in brackets pairs per "
              "CPU-second,\nwhich the machine's load distorts less); 1 worker / decode bound against bounds measured "
              "just before and after:")
        for normalize in (False, True):
            form = "normalised float" if normalize else "uint8"
            ours = ("orbitset", normalize, 1)
            print(f"  orbitset 1 worker ({form}) / decode bound, unpinned: {ratio(ours, bound)}  (target >= 0.8, "
                  f"measured in (5))")
            for workers in worker_counts[1:]:
                ours, theirs = ("orbitset", normalize, workers), ("loose", True, workers)
                print(f"  orbitset ({form}) / loose files, {workers} worker(s): {ratio(ours, theirs)}  (target >= 2)")
        pinned = pinned_ratio(PairLoader(shards, args.batch_size, num_workers=1, seed=0, normalize=False), blobs,
                              args.pinned_seconds)
        if pinned is None:
            print("(5) pinned alternation: not run (needs Linux and 2 CPUs)")
        else:
            total, windows = pinned[0], np.array(pinned[1:])
            low, middle, high = np.percentile(windows, [25, 50, 75])
            print(f"(5) orbitset 1 worker (uint8) / decode bound, on one pinned CPU, {len(windows)} alternating windows "
                  f"of 0.25 s:\n  {total:5.2f}  (ratio of the totals; windows' median {middle:.2f}, quartiles "
                  f"{low:.2f}-{high:.2f})  (target >= 0.8)")
    print(f"(6) views read per second, SequenceLoader (K = {length}) / PairLoader (K = 2), uint8, median over the rounds "
          f"of the ratio within each round, wall [per CPU-second] (each round's wall ratio):")
    for workers in worker_counts[1:]:
        within = [[r["sequence", False, workers][k] * length / (r["orbitset", False, workers][k] * 2) for r in rounds]
                  for k in (0, 1)]
        print(f"  {workers} worker(s): {np.median(within[0]):5.2f} [{np.median(within[1]):5.2f}]  "
              f"({', '.join(f'{x:.2f}' for x in within[0])}; best rounds: PairLoader {wall['orbitset', False, workers] * 2:.0f}, "
              f"SequenceLoader {wall['sequence', False, workers] * length:.0f} views/s)  (target >= 0.9)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
