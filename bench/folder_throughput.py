"""Images/s of the training input path, with the real train transform (CLIP's RandomResizedCrop
224, scale 0.9-1, bicubic; seeded per example): a folder of full-size JPEGs (decode + crop +
resize per image: `FolderSplit`, read by threads, or by a torch DataLoader's worker processes)
against pre-resized uint8 shards (`robustft.shards`: 256 px short side, centre square; the same
transform on uint8 tensors: `ShardSplit`). The folder is generated: ImageNet-sized JPEGs (500x375,
quality 90) of smooth colour fields with texture, so decoding costs what photos cost.

    python bench/folder_throughput.py [--images 512] [--batch 128] [--threads 1 2] [--size 256]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robustft.data import DatasetInfo, load_split, shard_sources
from robustft.preprocess import Preprocess, item_seed
from robustft.shards import write_shards

CLASSES = 8


def make_jpegs(root: Path, n: int, classes: int = CLASSES) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(n):
        c = i % classes
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        f = rng.uniform(0.005, 0.05, 3)
        base = 127 + 80 * np.sin(xx[..., None] * f + yy[..., None] * f[::-1] + rng.uniform(0, 6, 3))
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.jpg", quality=90)


def make_dataset(root: Path, n: int) -> Path:
    """A prepared dataset directory (meta.json + a `train` folder of full-size JPEGs)."""
    make_jpegs(root / "train", n)
    names = [f"c{c}" for c in range(CLASSES)]
    info = DatasetInfo(name="jpegs", classnames=names, templates=["{}"], train="train",
                       val="train", test="train", shifts=[], image_size=224)  # fmt: skip
    (root / "meta.json").write_text(json.dumps(info.__dict__))
    return root


def train_rate(split, n: int, batch: int, seed: int = 0) -> float:
    """Images/s of `get_batch` with the train transform (seeded per example), step after step."""
    steps = range(0, n, batch)
    split.get_batch(range(min(batch, n)))  # warm-up (thread pool, file cache)
    t0 = time.perf_counter()
    for step, s in enumerate(steps):
        idx = range(s, min(s + batch, n))
        split.get_batch(idx, [item_seed(seed, step, p) for p in range(len(idx))])
    return n / (time.perf_counter() - t0)


class _Examples(torch.utils.data.Dataset):
    """(index, seed) -> one transformed uint8 example: what a DataLoader worker computes."""

    def __init__(self, split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key):
        i, seed = key
        return self.split.item(i, seed)


def loader_rate(split, n: int, batch: int, workers: int, seed: int = 0) -> float:
    """The same batches through a torch DataLoader with `workers` worker processes."""
    batches = [[(i, item_seed(seed, step, p)) for p, i in enumerate(range(s, min(s + batch, n)))]
               for step, s in enumerate(range(0, n, batch))]  # fmt: skip
    loader = torch.utils.data.DataLoader(
        _Examples(split), batch_sampler=batches, num_workers=workers,
        collate_fn=lambda xs: split.preprocess.normalise(torch.stack(xs)),
        multiprocessing_context="fork" if workers else None,
    )  # fmt: skip
    t0 = time.perf_counter()  # worker start-up counts: a job pays it too
    for _ in loader:
        pass
    return n / (time.perf_counter() - t0)


def measure(root: Path, n: int, batch: int, threads: list[int], size: int) -> dict:
    pre = Preprocess("clip", "clip", 224)
    results = {}
    t0 = time.perf_counter()
    write_shards(root / "shards", shard_sources(root, ["train"]), size, threads=max(threads))
    results[f"shard_writing_{max(threads)}_threads"] = n / (time.perf_counter() - t0)
    for t in threads:
        torch.set_num_threads(t)
        folder = load_split(root, "train", pre, workers=t)
        results[f"folder_jpeg_{t}_threads"] = train_rate(folder, n, batch)
        results[f"folder_jpeg_dataloader_{t}_workers"] = loader_rate(folder, n, batch, t)
        shards = load_split(root, "train", pre, shards=root / "shards", workers=t)
        results[f"shards_uint8_{t}_threads"] = train_rate(shards, n, batch)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=256, help="shard size (short side, centre)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp), args.images)
        results = measure(root, args.images, args.batch, args.threads, args.size)
    print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
