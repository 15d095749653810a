"""Images/s of the evaluation input path: a folder of full-size JPEGs (decode + bicubic resize +
centre crop per image, `FolderSplit`, 1..N decoding threads) against pre-resized uint8 shards
(`PackedSplit`: normalisation only). The folder is generated: ImageNet-sized JPEGs (500x375,
quality 90) of smooth colour fields with texture, so decoding costs what photos cost.

    python bench/folder_throughput.py [--images 512] [--batch 128] [--threads 1 2]
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

from robustft.data import FolderSplit, PackedSplit


def make_jpegs(root: Path, n: int, classes: int = 8) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(n):
        c = i % classes
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        f = rng.uniform(0.005, 0.05, 3)
        base = 127 + 80 * np.sin(xx[..., None] * f + yy[..., None] * f[::-1] + rng.uniform(0, 6, 3))
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.jpg", quality=90)


def rate(split, n: int, batch: int) -> float:
    split.get_batch(range(min(batch, n)))  # warm-up (thread pool, file cache)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        split.get_batch(range(s, min(s + batch, n)))
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        make_jpegs(root, args.images)
        results = {}
        for threads in args.threads:
            torch.set_num_threads(threads)
            folder = FolderSplit(root, [f"c{c}" for c in range(8)], 224, workers=threads)
            results[f"folder_jpeg_{threads}_threads"] = rate(folder, args.images, args.batch)
        # The shards: the same images, decoded, resized and cropped once, stored as uint8.
        folder = FolderSplit(root, [f"c{c}" for c in range(8)], 224, workers=max(args.threads))
        x, y = folder.get_batch(range(args.images))
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        uint8 = ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        shard = Path(tmp) / "shard.npz"
        np.savez(shard, images=uint8.permute(0, 2, 3, 1).numpy(), labels=y.numpy())
        for threads in args.threads:
            torch.set_num_threads(threads)
            results[f"shards_uint8_{threads}_threads"] = rate(
                PackedSplit(shard), args.images, args.batch
            )
    print(json.dumps({k: round(v, 1) for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
