"""Throughput of orbitset's PairLoader against the bare JPEG decode bound and a 3DIEBench-style loose-file loader.

Writes its own dataset (`orbitset.testing.write_synthetic_dataset`: 256 px, quality 90 JPEGs, 3DIEBench latents) and
the same images in 3DIEBench's original layout (SYNSET/OBJECT/image_i.jpg + latent_i.npy), then prints, in one run:

1. the bare decode bound: Pillow decoding the same JPEGs in a tight loop, 2 per pair (pairs/s, one process);
2. orbitset PairLoader pairs/s with 0 (inline), 1 and all workers (normalised float batches on the CPU);
3. the loose-file baseline, written the way 3DIEBench's loader works (per pair: two PIL opens, two np.load latents,
   scipy Euler -> relative quaternion, resize, to-tensor, normalise; torch DataLoader), at the same worker counts;
4. the GPU path (decode on the device) when CUDA is present;

and the ratios orbitset(1 worker) / decode bound (target >= 0.8) and orbitset / loose files at equal workers
(target >= 2). Throughputs are whole epochs (worker start included), best of --repeats runs.

Usage: python benchmarks/loader.py [--objects 200] [--views 50] [--size 256] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from orbitset.loaders import MEAN_3DIEBENCH, STD_3DIEBENCH, PairLoader
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


def decode_bound(shards: Path, pairs: int) -> float:
    """Pairs/s of Pillow decoding 2 JPEGs per pair in a tight loop (bytes already in memory)."""
    from PIL import Image

    blobs = []
    for shard in sorted(shards.glob("*.tar")):
        with ShardReader(shard) as reader:
            for key in reader.keys():
                blobs += [reader.read(key, ["000.jpg"])["000.jpg"], reader.read(key, ["001.jpg"])["001.jpg"]]
    start = time.perf_counter()
    for index in range(2 * pairs):
        with Image.open(io.BytesIO(blobs[index % len(blobs)])) as image:
            np.asarray(image.convert("RGB"))
    return pairs / (time.perf_counter() - start)


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


def epochs_rate(make_iterable, epochs: int, device: str = "cpu") -> float:
    """Pairs/s over `epochs` whole epochs (iterator and worker start included)."""
    pairs = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in make_iterable():
            pairs += len(batch["key"]) if isinstance(batch, dict) else len(batch[0])
    if device == "cuda":
        torch.cuda.synchronize()
    return pairs / (time.perf_counter() - start)


def best(function, repeats: int) -> float:
    return max(function() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--views", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="'all workers' count")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement")
    parser.add_argument("--repeats", type=int, default=2)
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
          f"{args.epochs} epochs per measurement, best of {args.repeats}")

    bound = best(lambda: decode_bound(shards, 2 * args.objects), args.repeats)
    print(f"(1) bare decode bound (2 Pillow decodes per pair, 1 process): {bound:8.1f} pairs/s")

    worker_counts = sorted({0, 1, args.workers})
    ours: dict[tuple[bool, int], float] = {}
    theirs: dict[int, float] = {}
    for normalize in (False, True):
        what = "normalised float on the CPU" if normalize else "uint8 (normalised later on the device)"
        for workers in worker_counts:
            loader = PairLoader(shards, args.batch_size, num_workers=workers, seed=0, normalize=normalize)
            ours[normalize, workers] = rate = best(lambda: epochs_rate(lambda: loader, args.epochs), args.repeats)
            print(f"(2) orbitset PairLoader, {workers} worker(s), {what}: {rate:8.1f} pairs/s")
    dataset = LooseFiles3DIEBench(loose, args.views, args.size)
    for workers in worker_counts:
        if workers == 0:
            continue

        def make():
            return torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers)

        theirs[workers] = best(lambda: epochs_rate(make, args.epochs), args.repeats)
        print(f"(3) 3DIEBench-style loose files, {workers} worker(s):             {theirs[workers]:8.1f} pairs/s")
    if torch.cuda.is_available():
        for decode_mode in ("gpu", "cpu"):
            try:
                gpu = PairLoader(shards, args.batch_size, num_workers=args.workers, seed=0, device="cuda", decode=decode_mode)
            except Exception as exc:  # e.g. no GPU JPEG decoder installed
                print(f"(4) GPU path, decode={decode_mode}: not run ({exc})")
                continue
            rate = best(lambda: epochs_rate(lambda: gpu, args.epochs, "cuda"), args.repeats)
            print(f"(4) orbitset on CUDA, decode={decode_mode}, {args.workers} worker(s):       {rate:8.1f} pairs/s")
    else:
        print("(4) GPU path: not run (no CUDA device)")

    for normalize in (False, True):
        what = "normalised float" if normalize else "uint8"
        print(f"ratio orbitset(1 worker, {what}) / decode bound:        {ours[normalize, 1] / bound:6.2f}  (target >= 0.8)")
        for workers, rate in theirs.items():
            print(f"ratio orbitset({what}) / loose files at {workers} worker(s):  {ours[normalize, workers] / rate:6.2f}  (target >= 2)")

if __name__ == "__main__":
    main()
