"""Caltech101: `101_ObjectCategories/<category>/image_NNNN.jpg`, split into train/val/test here.

The host's archive (`caltech-101.zip`, data.caltech.edu) holds `caltech-101/101_ObjectCategories.tar.gz`;
older mirrors serve that tar.gz alone. Either may be the split's `archive`. The 101 classes are the
sorted category folders without `BACKGROUND_Google` (FLYP's class order, which its CLIP-style names
follow: Faces -> "off-center face", Faces_easy -> "centered face", ...).

FLYP's split (datacreation_scripts/traintestsplit.py) draws train/val/test for every image with
probabilities 0.6/0.2/0.2 from an unseeded generator, and publishes no split lists for Caltech101,
so its split cannot be rebuilt. This one keeps its proportions, per class, with a fixed seed: every
category's images (sorted by name) are shuffled by `np.random.default_rng([SEED, class index])`
and cut at 60 % and 80 %, so each split holds every class and the split is the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

from .formats import IMAGE_SUFFIXES, Format, Inputs, LayoutError, link_file, register, unpack_once

BACKGROUND = "BACKGROUND_Google"  # clutter, not a class (FLYP's 101 classes leave it out)
FOLDER = "101_ObjectCategories"
SEED = 101
SHARES = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}


def categories_root(inputs: Inputs, spec: dict) -> Path:
    """The unpacked `101_ObjectCategories` folder, unpacking the tar.gz inside the zip once."""

    root = inputs.unpacked(spec["archive"])
    if (root / FOLDER).is_dir():
        return root / FOLDER
    inner = sorted(root.rglob(f"{FOLDER}.tar*"))
    if not inner:
        raise LayoutError(
            f"{spec['archive']} holds neither {FOLDER}/ nor {FOLDER}.tar.gz (the Caltech101 images)"
        )
    unpacked = unpack_once(inner[0], inputs.work / "_unpacked")
    if not (unpacked / FOLDER).is_dir():
        raise LayoutError(f"{inner[0].name} holds no {FOLDER}/ folder")
    return unpacked / FOLDER


def categories(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != BACKGROUND)


def split_members(files: list[str], class_index: int, part: str) -> list[str]:
    """The `part` share of one category's image files (see the module docstring)."""
    import numpy as np

    order = np.random.default_rng([SEED, class_index]).permutation(len(files))
    lo, hi = SHARES[part]
    start, stop = round(lo * len(files)), round(hi * len(files))
    return [sorted(files)[i] for i in sorted(order[start:stop])]


def _convert(inputs: Inputs, spec: dict, target: Path, folders: list[str]) -> None:

    root = categories_root(inputs, spec)
    names = categories(root)
    if len(names) != len(folders):
        raise LayoutError(
            f"{root} has {len(names)} category folders besides {BACKGROUND}, for "
            f"{len(folders)} classes (Caltech101: 101)"
        )
    for index, (name, folder) in enumerate(zip(names, folders, strict=True)):
        # hidden files ("._image_0001.jpg", macOS metadata some repacks carry) are no images
        files = [p.name for p in (root / name).iterdir()
                 if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]  # fmt: skip
        for file in split_members(files, index, spec["part"]):
            link_file(root / name / file, target / folder / file)


def _label_names(inputs: Inputs, spec: dict) -> list[str]:
    return categories(categories_root(inputs, spec))


register(
    "caltech101",
    Format(
        convert=_convert,
        label_names=_label_names,
        parts=tuple(SHARES),
        describe="Caltech101's 101_ObjectCategories (zip or tar.gz), a seeded 60/20/20 split",
    ),
)
