"""Pre-resized uint8 shards of image-folder splits, so a GPU job is not bound by JPEG decoding.

A shard holds each image of a split decoded once, its short side resized to `size` (bicubic, PIL,
as CLIP's eval transform) and its centre `size` x `size` kept: `<split>.images.npy` (N, size,
size, 3) uint8, memory-mapped when read, `<split>.labels.npy`, and `index.json` recording, per
split, the source's fingerprint (every image's path, byte size and mtime, and the class folder
order). `data.load_split` reads a split's shard only while that fingerprint still matches the
folder; a stale shard is never read (the job logs why and reads the folder), and `write_shards`
rewrites it (the log says why). The train and eval transforms then run on each example's uint8
pixels (as a PIL image: the folder's resampling, `data.ShardSplit`).

At size = the eval crop (224) the eval transform of a shard is the folder's within rounding;
train crops see the centre square only (the issue's trade: decoding ImageNet at ViT-B/16's
~6,500 images/s would take ~30 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from .outputs import atomic_output

INDEX = "index.json"
FORMAT = 1


def source_fingerprint(
    root: Path, folders: list[str], crop_border: int = 0
) -> tuple[str, list[tuple[str, int]]]:
    """(sha256 over every image's relative path, size, mtime_ns, label, the class folder order and
    the border cropped before the resize; the (path, label) list in ImageFolder's order)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    order = {name: i for i, name in enumerate(folders)}
    samples = make_dataset(str(root), {c: order[c] for c in present if c in order}, IMG_EXTENSIONS)
    header = [FORMAT, folders] + ([crop_border] if crop_border else [])  # old shards stay valid
    digest = hashlib.sha256(json.dumps(header).encode())
    for path, label in samples:
        st = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n"
                      .encode())  # fmt: skip
    return digest.hexdigest(), samples


def _index(shards: Path) -> dict:
    path = shards / INDEX
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {"format": FORMAT, "splits": {}}


def _stale(entry: dict | None, fingerprint: str, size: int | None) -> str | None:
    """Why a shard entry cannot be read for this source (None: it can)."""
    if entry is None:
        return "no shard written yet"
    if entry.get("format") != FORMAT:
        return f"shard format {entry.get('format')} is not this code's {FORMAT}"
    if size is not None and entry["size"] != size:
        return f"size {entry['size']} -> {size}"
    if entry["fingerprint"] != fingerprint:
        return (
            f"the source changed since it was written (fingerprint {entry['fingerprint'][:12]} -> "
            f"{fingerprint[:12]}: images added, removed, resized or touched)"
        )
    return None


def open_shard(shards: str | Path, split: str, folder: Path, folders: list[str], crop_border=0):
    """(images memmap, labels) of `split`'s shard if it has one that matches its image `folder`
    (class `folders` in label order, `crop_border` px cropped: `data.shard_source`); None otherwise,
    after saying why where a shard exists but is stale."""
    shards = Path(shards)
    entry = _index(shards)["splits"].get(split)
    if entry is None:
        return None  # the dataset shards other splits only
    fingerprint, _ = source_fingerprint(Path(folder), folders, crop_border)
    why = _stale({**entry, "format": _index(shards).get("format")}, fingerprint, None)
    if why:
        print(f"not reading the shard {shards / split} ({why}); reading the image folder; "
              f"rebuild it: snakemake --forcerun {shards}", flush=True)  # fmt: skip
        return None
    images = np.load(shards / f"{split}.images.npy", mmap_mode="r")
    return images, np.load(shards / f"{split}.labels.npy")


def write_shards(shards: str | Path, sources: dict, size: int, threads: int = 1) -> dict:
    """Write (or keep, where current) the shard of each split of `sources` ({split: (image folder,
    class folders, border px)}: `data.shard_sources`); returns the index."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from .preprocess import CropBorder, Preprocess

    shards = Path(shards)
    shards.mkdir(parents=True, exist_ok=True)
    index = _index(shards)
    resize = Preprocess("clip", "clip", size)  # its eval ops: short side to `size`, centre crop
    for split, (folder, folders, crop) in sources.items():
        fingerprint, samples = source_fingerprint(Path(folder), folders, crop)
        entry = index["splits"].get(split)
        why = _stale(entry and {**entry, "format": index.get("format")}, fingerprint, size)
        if why is None:
            print(f"{split}: shard up to date ({entry['n']} images)", flush=True)
            continue
        print(f"{split}: writing its shard ({why})", flush=True)
        if index["splits"].pop(split, None) is not None:  # no entry for a half-written shard
            (shards / INDEX).write_text(json.dumps(index, indent=1))
        t0 = time.time()
        target, shape = shards / f"{split}.images.npy", (len(samples), size, size, 3)
        with atomic_output(target, int(np.prod(shape))) as tmp:
            images = np.lib.format.open_memmap(tmp, "w+", np.uint8, shape)
            # Reserve the blocks now: a full disk is ENOSPC here, not a SIGBUS mid-write.
            with open(tmp, "r+b") as reserve:
                os.posix_fallocate(reserve.fileno(), 0, os.path.getsize(tmp))

            border = CropBorder(crop)

            def load(i: int, samples=samples, images=images, border=border) -> None:
                with Image.open(samples[i][0]) as img:
                    img = border(img.convert("RGB"))
                    images[i] = resize.apply(img).permute(1, 2, 0).numpy()

            with ThreadPoolExecutor(max(1, threads)) as pool:
                list(pool.map(load, range(len(samples))))
            images.flush()
            del images
        np.save(shards / f"{split}.labels.npy", np.array([t for _, t in samples], np.int64))
        index["splits"][split] = {"n": len(samples), "size": size, "fingerprint": fingerprint}
        index["format"] = FORMAT
        (shards / INDEX).write_text(json.dumps(index, indent=1))  # last: the shard is complete
        seconds = time.time() - t0
        print(f"{split}: {len(samples)} images in {seconds:.1f}s "
              f"({len(samples) / max(seconds, 1e-9):.0f} images/s)", flush=True)  # fmt: skip
    return index
