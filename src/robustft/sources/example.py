"""The README's "Your own dataset" example: a small image-classification dataset in class folders,
as a researcher brings one, drawn from the mini world so that it needs no download.

    python -m robustft.sources.example data/shapes

writes `data/shapes/<split>/<class folder>/<i>.png`: 4 classes (one, "lightning bolt", has a space:
its folder is `lightning_bolt`), photos for train / val / test and sketches as the shifted test
set, at 64 px (the backbone reads them at its own size). `config/examples/own-dataset.yaml` reads
these folders. Deterministic: the same files every time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .. import world

CLASSES = ("circle", "square", "star", "lightning bolt")
# split: (domain, images per class, seed)
SPLITS = {
    "train": ("photo", 100, 0),
    "val": ("photo", 25, 1),
    "test": ("photo", 50, 2),
    "sketch": ("sketch", 50, 3),
}
IMAGE_SIZE = 64


def write_example(out: str | Path, image_size: int = IMAGE_SIZE) -> Path:
    """Write the example's class folders under `out`; return `out`."""
    from PIL import Image

    out = Path(out)
    labels = [world.CLASSNAMES.index(c) for c in CLASSES]
    for split, (domain, per_class, seed) in SPLITS.items():
        wanted = np.repeat(labels, per_class)
        images, _ = world.render_images(domain, wanted, seed=seed, image_size=image_size)
        counts = dict.fromkeys(CLASSES, 0)
        for image, label in zip(images, wanted, strict=True):
            name = world.CLASSNAMES[label]
            folder = out / split / name.replace(" ", "_")  # a class name's folder
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{counts[name]:03d}.png")
            counts[name] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m robustft.sources.example <folder>", file=sys.stderr)
        return 2
    out = write_example(args[0])
    total = sum(n for _, n, _ in SPLITS.values()) * len(CLASSES)
    print(f"{total} images in {len(SPLITS)} splits of {len(CLASSES)} class folders: {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
